//! Everything that touches x86_64 hardware. `unsafe` lives here and in the
//! vendor backends only; every block says why it is sound.

pub mod acpi;
pub mod bootcpu;
pub mod cpu;
pub mod entry;
pub mod exit;
pub mod frames;
pub mod gdt;
pub mod heap;
pub mod idt;
pub mod ioapic;
pub mod lapic;
pub mod mgmt_irq;
pub mod modules;
pub mod msi;
pub mod paging;
pub mod panic;
pub mod pci;
pub mod percpu;
pub mod physmem;
pub mod pit;
pub mod platform;
pub mod rtc;
pub mod selftest;
pub mod serial;
pub mod smp;
pub mod spec;
pub mod stackmark;
pub mod xsave;

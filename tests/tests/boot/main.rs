//! Boot tests: the release kernel under QEMU (PVH direct boot, GRUB ISO on
//! SeaBIOS and OVMF) and Bochs (GRUB ISO on an Intel CPU with VT-x/EPT),
//! and the guest suite on both backends (`guests.rs`).
//!
//! One test binary, so `--test-threads` runs emulators side by side.
//! Each test's files stay in `target/boot-tests/runs/<test>/`.

mod abi;
mod bad;
mod badmod;
mod bochs;
mod bounded;
mod budget;
mod cpustate;
mod disk_irq;
mod disks;
mod dom0;
mod dom0_serial;
mod domctl;
mod driverdom;
mod evtchn;
mod grant;
mod guests;
mod hlt;
mod hltlatch;
mod intremap;
mod iommu;
mod iso;
mod lastwords;
mod lifectl;
mod linux;
mod linux_console_bochs;
mod linux_dom0;
mod linux_reboot;
mod linux_shell_shutdown;
mod linux_shutdown;
mod linux_smp;
mod linux_smp_icount;
mod linuxproto;
mod memset;
mod memset_target;
mod msi;
mod msrpass;
mod msrs;
mod netbad;
mod netidle;
mod netmgmt;
mod netping;
mod pci;
mod privilege;
mod pvh;
mod ring;
mod sched;
mod selftest;
mod server;
mod spec;
mod stackguard;
mod stage_ctl;
mod store;
mod store_log;
mod stress;
mod template;
mod triplefault;
mod upcall;
mod upload;
mod upload_store;
mod upload_tcp;
mod wallclock;
mod wx;
mod xfer;

// How far below `-m` the RAM total (`ram_bytes`: usable + ACPI ranges of
// the boot memory map) may be. Measured on QEMU 7.2 q35 (docs/testing.md):
// the same shortfall at 128 MiB and 2 GiB, so these are fixed amounts.

/// PVH: 516 KiB short, the legacy hole 0xa0000-0x100000 (384 KiB) plus the
/// ranges QEMU's e820 table marks reserved below 1 MiB.
pub const PVH_RAM_SLACK: u64 = boot_tests::MIB;
/// SeaBIOS + GRUB: 520 KiB short (SeaBIOS keeps 4 KiB more than PVH);
/// Bochs' BIOS: 388 KiB short.
pub const BIOS_RAM_SLACK: u64 = boot_tests::MIB;
/// OVMF + GRUB: 4.4 MiB short; besides the legacy hole, OVMF keeps about
/// 4 MiB of runtime-services code/data and reserved memory that GRUB
/// reports as reserved.
pub const UEFI_RAM_SLACK: u64 = 6 * boot_tests::MIB;

/// The command line of every test that should boot and exit with success.
pub const TEST_CMDLINE: &str = "exit=qemu shutdown loglevel=info";

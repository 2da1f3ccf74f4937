//! The interrupt descriptor table and the interrupt entry stubs.
//!
//! 256 stubs of 16 bytes each push the vector (and a zero error code where
//! the CPU pushes none, Intel SDM Vol. 3A 7.3), save every register and call
//! [`dispatch`]. Exceptions in the hypervisor are fatal: the report names
//! the vector, error code, RIP, CR2 and CPU, then the machine stops cleanly.

use core::arch::global_asm;
use core::sync::atomic::{AtomicBool, Ordering};

use super::gdt;

/// LAPIC timer vector.
pub const VECTOR_TIMER: u8 = 0x30;
/// The management line's UART receive interrupt (COM2 through the I/O
/// APIC, `serial::mgmt_enable_irq`).
pub const VECTOR_MGMT_RX: u8 = 0x31;
/// LAPIC spurious vector (low 4 bits all ones, as older CPUs require).
pub const VECTOR_SPURIOUS: u8 = 0xff;
/// TLB shoot-down IPI: its only job is to force a VM exit.
pub const VECTOR_SHOOTDOWN: u8 = 0xf1;
/// Legacy 8259 PIC vectors after remapping (all masked).
pub const VECTOR_PIC_BASE: u8 = 0xe0;

/// Saved registers, in the order `isr_common` pushes them.
#[repr(C)]
#[derive(Debug)]
pub struct InterruptFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

global_asm!(
    r#"
    .section .text.isr, "ax"
    .balign 16
    .global isr_stub_table
isr_stub_table:
    .set vec, 0
    .rept 256
    .balign 16
    /* Vectors 8, 10-14, 17, 21, 29, 30 push an error code themselves. */
    .if (vec == 8) || ((vec >= 10) && (vec <= 14)) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
    .else
    push 0
    .endif
    push vec
    jmp isr_common
    .set vec, vec + 1
    .endr

isr_common:
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    mov rdi, rsp
    cld
    call {dispatch}
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax
    add rsp, 16
    iretq
"#,
    dispatch = sym dispatch,
);

unsafe extern "C" {
    static isr_stub_table: [[u8; 16]; 256];
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attr: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

#[repr(C, align(16))]
struct Idt([Gate; 256]);

static mut IDT: Idt = Idt([Gate {
    offset_low: 0,
    selector: 0,
    ist: 0,
    type_attr: 0,
    offset_mid: 0,
    offset_high: 0,
    reserved: 0,
}; 256]);

/// Fills the IDT (once, on the boot CPU). Every CPU then calls [`load`].
///
/// # Safety
/// Must run once, before any CPU loads the IDT, with interrupts disabled.
pub unsafe fn init() {
    let base = (&raw const isr_stub_table) as u64;
    // SAFETY: single-threaded boot; no CPU uses the IDT yet (caller contract).
    let gates = unsafe { &mut *(&raw mut IDT).cast::<[Gate; 256]>() };
    for (vector, gate) in gates.iter_mut().enumerate() {
        let handler = base + (vector as u64) * 16;
        let ist = match vector {
            2 => gdt::IST_NMI,
            8 => gdt::IST_DOUBLE_FAULT,
            18 => gdt::IST_MACHINE_CHECK,
            _ => 0,
        };
        *gate = Gate {
            offset_low: handler as u16,
            selector: gdt::KERNEL_CS,
            ist,
            type_attr: 0x8e, // present, DPL 0, 64-bit interrupt gate
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        };
    }
}

/// Loads the IDT on this CPU.
pub fn load() {
    let ptr = x86_64::structures::DescriptorTablePointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: x86_64::VirtAddr::from_ptr(&raw const IDT),
    };
    // SAFETY: the IDT is static, filled by `init`, and its stubs live as
    // long as the hypervisor.
    unsafe { x86_64::instructions::tables::lidt(&ptr) };
}

/// Set when one CPU brings the machine down; NMIs then mean "stop".
pub static STOPPING: AtomicBool = AtomicBool::new(false);

const EXCEPTION_NAMES: [&str; 32] = [
    "#DE divide error",
    "#DB debug",
    "NMI",
    "#BP breakpoint",
    "#OF overflow",
    "#BR bound range",
    "#UD invalid opcode",
    "#NM device not available",
    "#DF double fault",
    "coprocessor segment overrun",
    "#TS invalid TSS",
    "#NP segment not present",
    "#SS stack fault",
    "#GP general protection",
    "#PF page fault",
    "reserved 15",
    "#MF x87 error",
    "#AC alignment check",
    "#MC machine check",
    "#XM SIMD error",
    "#VE virtualization exception",
    "#CP control protection",
    "reserved 22",
    "reserved 23",
    "reserved 24",
    "reserved 25",
    "reserved 26",
    "reserved 27",
    "#HV hypervisor injection",
    "#VC VMM communication",
    "#SX security",
    "reserved 31",
];

extern "C" fn dispatch(frame: &mut InterruptFrame) {
    let vector = frame.vector as u8;
    match vector {
        2 if STOPPING.load(Ordering::Acquire) => super::cpu::halt_forever(),
        0..=31 => exception(frame),
        VECTOR_TIMER => {
            let me = super::percpu::this_cpu();
            me.ticks.fetch_add(1, Ordering::Relaxed);
            // The run loop's one test after each exit sees it.
            crate::hostwork::tick(me.index as usize);
            super::lapic::rearm_tick();
            super::lapic::eoi();
        }
        VECTOR_SPURIOUS => {}
        VECTOR_MGMT_RX => {
            super::serial::note_mgmt_rx();
            super::lapic::eoi();
        }
        VECTOR_SHOOTDOWN => super::lapic::eoi(),
        v if super::msi::is_msi_vector(v) => {
            // A device's message (`arch/msi.rs`): noted, raised later.
            super::msi::note(v);
            super::lapic::eoi();
        }
        v if (VECTOR_PIC_BASE..VECTOR_PIC_BASE + 16).contains(&v) => {
            // A spurious IRQ from the masked legacy PIC: nothing to do.
        }
        v => {
            log::warn!("unexpected interrupt vector {v:#x}");
            super::lapic::eoi();
        }
    }
}

fn exception(frame: &InterruptFrame) -> ! {
    let vector = frame.vector as usize;
    let name = EXCEPTION_NAMES.get(vector).copied().unwrap_or("?");
    let cr2 = x86_64::registers::control::Cr2::read_raw();
    // A #PF (or the #DF it escalates to when the stack itself is gone) with
    // CR2 in a guard page is a stack overflow.
    let why = if matches!(vector, 8 | 14) && super::paging::is_guard(cr2) {
        " (stack overflow: CR2 is in a stack guard page)"
    } else if vector == 14 && cr2 < 0x1000 {
        " (null pointer dereference)"
    } else {
        ""
    };
    super::serial::write_fmt_emergency(format_args!(
        "FATAL: CPU exception {name} (vector {vector}) on cpu{}{why} error={:#x} rip={:#x} rsp={:#x} rflags={:#x} cr2={cr2:#x}\n",
        super::percpu::cpu_index(),
        frame.error_code,
        frame.rip,
        frame.rsp,
        frame.rflags,
    ));
    super::exit::exit(false)
}

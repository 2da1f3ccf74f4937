//! Starting the application processors (INIT-SIPI-SIPI, Intel SDM Vol. 3A
//! 9.4.4.1), all at once, and stopping every CPU on the way down.
//!
//! The real-mode trampoline is copied to a page below 1 MiB, which the
//! hypervisor maps read+execute (never writable) so that the AP can enable
//! paging while executing from it. It switches to protected mode, loads the
//! hypervisor's CR3 and enters long mode straight into [`ap_long_entry`] in
//! the image's text. Every AP runs the trampoline at the same time; each
//! takes the next CPU number with one `lock xadd` on [`AP_BOOT`] and finds
//! its stack by that number in [`AP_STACK_TOPS`].

use core::arch::global_asm;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::cpu::rdtsc;
use super::percpu::{self, MAX_CPUS};
use super::{gdt, idt, lapic, paging, pit, stackmark};

/// What the starting APs read: the page tables, and the next CPU number
/// to hand out (each AP takes one with `lock xadd`).
#[repr(C)]
pub struct ApBoot {
    cr3: AtomicU64,
    next_cpu: AtomicU64,
}

/// Read by the trampoline through absolute addresses.
#[unsafe(no_mangle)]
pub static AP_BOOT: ApBoot = ApBoot {
    cr3: AtomicU64::new(0),
    next_cpu: AtomicU64::new(1),
};

/// Each CPU's boot stack top, by CPU number, set before any SIPI.
#[unsafe(no_mangle)]
pub static AP_STACK_TOPS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Stack pages for each CPU's scheduling loop (the APs', and the boot
/// CPU's once boot is done): 128 KiB. The deepest path, a domain create
/// under a hypercall, measured about 22 KiB of it after issue 13's fixes
/// (`stacks:` lines; boot tests require at least half to stay unused).
pub const AP_STACK_PAGES: u64 = 32;
/// Pages per IST stack.
pub const IST_STACK_PAGES: u64 = 4;

/// IST stack tops for each CPU, prepared by the boot CPU.
static IST_TOPS: [[AtomicU64; 3]; MAX_CPUS] =
    [const { [const { AtomicU64::new(0) }; 3] }; MAX_CPUS];

global_asm!(
    r#"
    .section .rodata.ap_trampoline, "a"
    .balign 16
    .global ap_trampoline_start
ap_trampoline_start:
    .code16
    cli
    cld
    mov ax, cs
    mov ds, ax
    xor ebx, ebx
    mov bx, ax
    shl ebx, 4                                  /* linear base of this page */
    /* Offsets inside the page are link-address differences, computed at
       run time because memory operands may name only one symbol. */
    mov esi, offset ap_gdt
    sub esi, offset ap_trampoline_start
    lea eax, [ebx + esi]
    mov edi, offset ap_gdtr
    sub edi, offset ap_trampoline_start
    mov dword ptr [di + 2], eax                 /* GDTR base */
    lgdt [di]
    mov esi, offset ap_pm32
    sub esi, offset ap_trampoline_start
    lea eax, [ebx + esi]
    mov edi, offset ap_jmp32
    sub edi, offset ap_trampoline_start
    mov dword ptr [di], eax                     /* far pointer offset */
    mov eax, cr0
    or eax, 1
    mov cr0, eax
    /* jmp far dword [di]: 66 FF /5 (ModRM 0x2d) */
    .byte 0x66, 0xff, 0x2d

    .code32
ap_pm32:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov eax, cr4
    or eax, 1 << 5
    mov cr4, eax
    mov eax, dword ptr [{ap_boot}]              /* AP_BOOT.cr3 (below 4 GiB) */
    mov cr3, eax
    mov ecx, 0xc0000080
    rdmsr
    or eax, (1 << 8) | (1 << 11)                /* EFER.LME | EFER.NXE */
    wrmsr
    mov eax, cr0
    or eax, (1 << 31) | (1 << 16)               /* CR0.PG | CR0.WP */
    mov cr0, eax
    /* jmp far 0x18:ap_long_entry (absolute, in the image's text) */
    .byte 0xea
    .long ap_long_entry
    .short 0x18

    .balign 8
ap_gdt:
    .quad 0
    .quad 0x00cf9b000000ffff                    /* 0x08: 32-bit code */
    .quad 0x00cf93000000ffff                    /* 0x10: data */
    .quad 0x00af9b000000ffff                    /* 0x18: 64-bit code */
ap_gdt_end:
ap_gdtr:
    .short ap_gdt_end - ap_gdt - 1
    .long 0
ap_jmp32:
    .long 0
    .short 0x08
    .global ap_trampoline_end
ap_trampoline_end:

    .section .text.ap_entry, "ax"
    .code64
ap_long_entry:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    mov eax, 1
    lock xadd qword ptr [{ap_boot} + 8], rax    /* rax = this CPU's number */
    cmp rax, {max_cpus}
    jae 1f                                      /* more APs than slots: park */
    mov rsp, qword ptr [{stacks} + rax * 8]
    test rsp, rsp
    jz 1f                                       /* no stack prepared: park */
    mov rdi, rax
    xor ebp, ebp
    call {ap_main}
1:  cli
    hlt
    jmp 1b
"#,
    ap_boot = sym AP_BOOT,
    stacks = sym AP_STACK_TOPS,
    max_cpus = const MAX_CPUS,
    ap_main = sym ap_main,
);

unsafe extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
}

/// Prepares IST stacks for CPU `cpu` (run on the boot CPU).
pub fn prepare_ist(cpu: usize) -> Option<[u64; 3]> {
    let mut tops = [0u64; 3];
    for (slot, t) in tops.iter_mut().enumerate() {
        *t = paging::alloc_stack(IST_STACK_PAGES)?;
        stackmark::register(cpu, slot + 1, *t, IST_STACK_PAGES);
    }
    let slot = IST_TOPS.get(cpu)?;
    for (s, t) in slot.iter().zip(tops) {
        s.store(t, Ordering::Relaxed);
    }
    Some(tops)
}

/// Sets up a CPU's own tables: GDT/TSS with IST stacks, IDT, per-CPU data,
/// local APIC and its timer.
pub fn init_this_cpu(cpu: usize, x2apic: bool, timer_hz: u32) {
    let ist = IST_TOPS
        .get(cpu)
        .map(|s| [0, 1, 2].map(|i| s[i].load(Ordering::Relaxed)))
        .unwrap_or_default();
    // SAFETY: running on CPU `cpu` itself with its own IST stacks, which
    // the boot CPU allocated for it alone.
    unsafe { gdt::load(cpu, ist) };
    idt::load();
    lapic::init_this_cpu(x2apic);
    percpu::init_this_cpu(cpu, lapic::id());
    lapic::start_timer(timer_hz);
}

static AP_X2APIC: AtomicU64 = AtomicU64::new(0);

/// What an application processor runs once its hardware is up: set by the
/// runtime at boot ([`register_ap_entry`]), so this layer never names the
/// layers above it (Asterinas' `register_ap_entry`).
static AP_ENTRY: spin::Once<ApEntry> = spin::Once::new();

/// An AP's entry into the runtime: turns virtualization on for this CPU
/// (`Err` says why guests cannot run here; the CPU then only idles), then
/// never returns.
#[derive(Clone, Copy)]
pub struct ApEntry {
    /// Per-CPU virtualization set-up.
    pub init_virt: fn() -> Result<(), &'static str>,
    /// The CPU's scheduling loop.
    pub run: fn() -> !,
}

/// Registers what APs run; before the first [`start_ap`].
pub fn register_ap_entry(entry: ApEntry) {
    AP_ENTRY.call_once(|| entry);
}
static TIMER_HZ: AtomicU64 = AtomicU64::new(100);
/// Set when the boot CPU stops waiting: an AP that arrives later parks
/// instead of joining a machine that has already counted its CPUs.
static AP_CLOSED: AtomicBool = AtomicBool::new(false);

extern "C" fn ap_main(cpu: u64) -> ! {
    let cpu = cpu as usize;
    if AP_CLOSED.load(Ordering::Acquire) {
        super::cpu::halt_forever()
    }
    init_this_cpu(
        cpu,
        AP_X2APIC.load(Ordering::Relaxed) != 0,
        TIMER_HZ.load(Ordering::Relaxed) as u32,
    );
    let Some(entry) = AP_ENTRY.get().copied() else {
        log::error!("cpu{cpu}: no AP entry registered; it will not run guests");
        percpu::this_cpu().online.store(true, Ordering::Release);
        idle()
    };
    if let Err(why) = (entry.init_virt)() {
        log::error!("cpu{cpu}: {why}; it will not run guests");
        percpu::this_cpu().online.store(true, Ordering::Release);
        idle()
    }
    // Take the first timer interrupt (`lapic::start_timer` arms it a few
    // microseconds out) before reporting in, so that boot, which counts a
    // CPU ready when its timer works, need not wait for a later one: the
    // scheduler's first idle pass re-arms the timer for up to a tick.
    while percpu::this_cpu().ticks.load(Ordering::Relaxed) == 0 {
        x86_64::instructions::interrupts::enable_and_hlt();
    }
    x86_64::instructions::interrupts::disable();
    log::debug!("cpu{cpu} online (APIC ID {})", lapic::id());
    percpu::this_cpu().online.store(true, Ordering::Release);
    (entry.run)()
}

/// Waits for interrupts forever.
pub fn idle() -> ! {
    loop {
        // `sti; hlt` is atomic with respect to interrupts (SDM STI note).
        x86_64::instructions::interrupts::enable_and_hlt();
    }
}

/// Why an application processor did not start.
#[derive(Debug, Clone, Copy)]
pub enum StartError {
    /// No memory for its stacks or the trampoline.
    OutOfMemory,
    /// Not all reported in within the timeout; this many did (CPUs
    /// `1..=n`).
    Timeout(usize),
}

/// Copies the trampoline to `page` (below 1 MiB) and maps it read+execute.
pub fn install_trampoline(page: u64) -> Result<(), paging::MapError> {
    let (start, end) = (
        &raw const ap_trampoline_start as u64,
        &raw const ap_trampoline_end as u64,
    );
    let len = (end - start) as usize;
    assert!(len <= 4096, "AP trampoline larger than a page");
    // SAFETY: `page` is a frame below 1 MiB the caller allocated for the
    // trampoline; it is identity-mapped writable until remapped below.
    unsafe { core::ptr::copy_nonoverlapping(start as *const u8, page as *mut u8, len) };
    let mut guard = paging::KERNEL_SPACE.lock();
    let space = guard.as_mut().ok_or(paging::MapError::BadAddress(page))?;
    space.map(page, page, 4096, 0, &mut || {
        crate::arch::frames::alloc_frame()
    })?;
    x86_64::instructions::tlb::flush(x86_64::VirtAddr::new(page));
    Ok(())
}

/// Starts the CPUs with `apic_ids` through the trampoline at `page`, all
/// at once, as CPUs 1, 2, ... in the order they arrive; returns how many
/// came online (they are CPUs `1..=n`).
///
/// The timing is the SDM's (Vol. 3A 9.4.4.1, "Typical BSP Initialization
/// Sequence", and MP spec B.4): INIT, 10 ms, SIPI, 200 us, SIPI, 200 us;
/// but each wait is taken once for all APs instead of once per AP, so
/// starting 63 APs costs what starting one did. With `fast` (see
/// `CpuInfo::fast_ap_start`) there is no wait after INIT and 10 us after
/// each SIPI, as Linux does on those CPUs. The second SIPI only acts on a
/// CPU still halted after INIT (MP spec B.4.2), so sending it to all is
/// harmless.
pub fn start_aps(
    apic_ids: &[u32],
    page: u64,
    cr3: u64,
    x2apic: bool,
    timer_hz: u32,
    fast: bool,
) -> Result<usize, StartError> {
    let n = apic_ids.len().min(MAX_CPUS - 1);
    if n == 0 {
        return Ok(0);
    }
    for (cpu, top) in AP_STACK_TOPS.iter().enumerate().take(n + 1).skip(1) {
        let stack = paging::alloc_stack(AP_STACK_PAGES).ok_or(StartError::OutOfMemory)?;
        stackmark::register(cpu, 0, stack, AP_STACK_PAGES);
        prepare_ist(cpu).ok_or(StartError::OutOfMemory)?;
        top.store(stack, Ordering::Relaxed);
    }
    AP_X2APIC.store(u64::from(x2apic), Ordering::Relaxed);
    TIMER_HZ.store(u64::from(timer_hz), Ordering::Relaxed);
    AP_BOOT.cr3.store(cr3, Ordering::Release);
    let vector = (page >> 12) as u8;
    let online = || {
        (1..=n)
            .take_while(|&i| percpu::cpu(i).is_some_and(|c| c.online.load(Ordering::Acquire)))
            .count()
    };
    let (after_init_us, after_sipi_us) = if fast { (0, 10) } else { (10_000, 200) };
    for &id in &apic_ids[..n] {
        lapic::send_init(id);
    }
    // Halting waits, not spins: see `wait_until`.
    wait_until(|| false, after_init_us);
    for _ in 0..2 {
        for &id in &apic_ids[..n] {
            lapic::send_sipi(id, vector);
        }
        if wait_until(|| online() == n, after_sipi_us) {
            return Ok(n);
        }
    }
    // Emulators can be slow to schedule new vCPUs: wait up to 2 s in all.
    wait_until(|| online() == n, 2_000_000);
    AP_CLOSED.store(true, Ordering::Release);
    let up = online();
    if up < n {
        return Err(StartError::Timeout(up));
    }
    Ok(up)
}

/// Waits until `done()` or `timeout_us` went by, halting between looks
/// (woken by this CPU's timer every [`POLL_US`]) rather than spinning: an
/// emulator that runs its vCPUs in turn (QEMU TCG) then runs the others at
/// once instead of at the end of this one's time slice. Needs interrupts
/// enabled and the APIC timer running. Returns `done()`.
pub fn wait_until(done: impl Fn() -> bool, timeout_us: u64) -> bool {
    let deadline = rdtsc().saturating_add(
        (u128::from(pit::tsc_hz()) * u128::from(timeout_us) / 1_000_000).min(u128::from(u64::MAX))
            as u64,
    );
    loop {
        if done() {
            return true;
        }
        let now = rdtsc();
        if now >= deadline {
            return done();
        }
        let left_ns = u128::from(deadline - now) * 1_000_000_000 / u128::from(pit::tsc_hz());
        x86_64::instructions::interrupts::disable();
        lapic::arm_ns(left_ns.min(u128::from(POLL_US * 1000)) as u64);
        // `sti; hlt` is atomic with respect to interrupts (SDM STI note):
        // the timer cannot fire between the two.
        x86_64::instructions::interrupts::enable_and_hlt();
    }
}

/// How often [`wait_until`] looks.
const POLL_US: u64 = 20;

/// Stops every other CPU (NMI; their handler sees [`idt::STOPPING`]).
pub fn stop_other_cpus() {
    if !idt::STOPPING.swap(true, Ordering::AcqRel)
        && percpu::cpu(1).is_some_and(|c| c.online.load(Ordering::Relaxed))
    {
        lapic::send_nmi_all_but_self();
    }
}

//! The few things the guest runtime cannot do without `unsafe`: the
//! hypercall instruction, the start-info and clock pointers the hypervisor
//! hands over, the TSC, and the linker's end-of-image symbol. Everything
//! else in the runtime is safe code built on these.
#![allow(unsafe_code)]

use core::sync::atomic::{AtomicI8, AtomicPtr, AtomicU32, AtomicU64, Ordering, fence};

use crate::{HYPERCALL_VMMCALL, StartInfo, TimeInfo};

/// The instruction the hypervisor asked for ([`crate::HYPERCALL_VMCALL`] or
/// [`crate::HYPERCALL_VMMCALL`]); VMCALL until the entry point has read the
/// start info.
static INSN: AtomicU32 = AtomicU32::new(u32::MAX);

/// The start info, set once by the entry point before `main` runs.
static START: AtomicPtr<StartInfo> = AtomicPtr::new(core::ptr::null_mut());

/// The domain's [`TimeInfo`], or null when the start info names none that is
/// sane.
static CLOCK: AtomicPtr<TimeInfo> = AtomicPtr::new(core::ptr::null_mut());

/// What [`start_info`] returns before the entry point has run (only
/// possible for code that bypasses `entry_point!`).
static NO_START_INFO: StartInfo = StartInfo::zeroed();

/// Makes a raw hypercall: number in RAX, `args` in RDI, RSI, RDX, R10, R8,
/// R9; returns RAX. Only RAX changes.
///
/// This is the raw stub under the safe wrappers. The hypervisor checks every
/// argument, so nothing passed here can hurt it or another domain, but an
/// operation that writes guest memory ([`crate::HC_CONSOLE_READ`],
/// [`crate::HC_VCPU_INFO`], [`crate::HC_MEM_INFO`],
/// [`crate::HC_MEM_RELEASE`], [`crate::HC_MEM_POPULATE`],
/// [`crate::HC_MULTICALL`]) or starts code ([`crate::HC_VCPU_UP`]) at an
/// address the program is using changes that memory behind the compiler's
/// back. Use the op-group wrappers ([`super::console`], [`super::sched`],
/// [`super::vcpu`], [`super::memory`], [`super::multicall`]), which only
/// pass memory they own; the raw stubs are for tests of the hypervisor's
/// argument checks.
pub fn hypercall6(nr: u64, args: [u64; 6]) -> u64 {
    let [a1, a2, a3, a4, a5, a6] = args;
    let mut rax = nr;
    super::meter::before_call();
    // No `nomem`: a hypercall may read and write the guest memory its
    // arguments point at, so the compiler must not keep memory values in
    // registers across it. No `preserves_flags`: the ABI promises the GPRs,
    // not RFLAGS.
    if INSN.load(Ordering::Relaxed) == HYPERCALL_VMMCALL {
        // SAFETY: VMMCALL traps to the hypervisor (AMD APM Vol. 3, VMMCALL),
        // which reads RAX and the argument registers and writes only RAX and
        // the guest memory the arguments name (the ABI's register
        // convention); the stack is not touched.
        unsafe {
            core::arch::asm!("vmmcall", inout("rax") rax, in("rdi") a1, in("rsi") a2,
                in("rdx") a3, in("r10") a4, in("r8") a5, in("r9") a6, options(nostack));
        }
    } else {
        // SAFETY: as above, for VMCALL (Intel SDM Vol. 2B, VMCALL).
        unsafe {
            core::arch::asm!("vmcall", inout("rax") rax, in("rdi") a1, in("rsi") a2,
                in("rdx") a3, in("r10") a4, in("r8") a5, in("r9") a6, options(nostack));
        }
    }
    super::meter::after_call();
    rax
}

/// Takes over the start info the hypervisor passed in RDI: remembers the
/// hypercall instruction, the start info and the clock.
///
/// # Safety
/// `start` must be the RDI the hypervisor passed to vCPU 0 at entry: the
/// identity-mapped address of the start-info page, which stays mapped and
/// unwritten (by the hypervisor) for the domain's life.
pub(super) unsafe fn take_start_info(start: *const StartInfo) -> &'static StartInfo {
    // SAFETY: per the contract above, `start` points at a readable,
    // 8-byte-aligned StartInfo that nothing writes any more; every bit
    // pattern is a valid StartInfo (it is all integers).
    let info: &'static StartInfo = unsafe { &*start };
    INSN.store(info.hypercall_insn, Ordering::Relaxed);
    START.store(start.cast_mut(), Ordering::Release);
    if let Some(off) = info.time_info_offset() {
        // `time_info_offset` checked that a whole, 8-byte-aligned TimeInfo
        // lies in the start-info page after the StartInfo.
        let clock = start.cast::<u8>().wrapping_add(off).cast::<TimeInfo>();
        CLOCK.store(clock.cast_mut(), Ordering::Release);
    }
    info
}

/// The start info the hypervisor passed at entry (all zeros, which is not
/// [`StartInfo::is_valid`], before the entry point has run).
pub fn start_info() -> &'static StartInfo {
    let p = START.load(Ordering::Acquire);
    if p.is_null() {
        return &NO_START_INFO;
    }
    // SAFETY: `p` was stored by `take_start_info`, whose caller guaranteed
    // it points at a StartInfo that lives and stays unchanged forever.
    unsafe { &*p }
}

/// Reads the TSC, ordered after the loads before it (LFENCE; RDTSC, Intel
/// SDM Vol. 2B RDTSC: "LFENCE; RDTSC" waits for earlier instructions).
pub fn read_tsc() -> u64 {
    let lo: u32;
    let hi: u32;
    // SAFETY: LFENCE and RDTSC only read the TSC (CR4.TSD is clear in the
    // initial state); they touch no memory. Not `nomem`, so the compiler
    // keeps it between the version loads of the clock's read protocol.
    unsafe {
        core::arch::asm!("lfence", "rdtsc", out("eax") lo, out("edx") hi,
            options(nostack, preserves_flags));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// A consistent copy of the domain's [`TimeInfo`] and a TSC value read
/// inside the same version window, or `None` if the domain has no clock.
pub fn clock_sample() -> Option<(TimeInfo, u64)> {
    let p = CLOCK.load(Ordering::Acquire);
    if p.is_null() {
        return None;
    }
    // The hypervisor writes this memory while we read it, so every field is
    // read as an atomic of its own width (all naturally aligned: the
    // TimeInfo is 8-byte aligned, see `take_start_info`).
    let base = p.cast::<u8>();
    let at = |off: usize| base.wrapping_add(off);
    use core::mem::offset_of;
    // SAFETY: `p` points at a live TimeInfo in the start-info page, mapped
    // for the domain's life; each offset is the field's own, so each
    // pointer is aligned for its type. Nothing in this program writes the
    // page, and atomics make the hypervisor's concurrent writes well-defined
    // to read.
    let (version, flags, tsc_timestamp, system_time_ns, mul, shift, wall) = unsafe {
        (
            AtomicU32::from_ptr(at(offset_of!(TimeInfo, version)).cast()),
            AtomicU32::from_ptr(at(offset_of!(TimeInfo, flags)).cast()),
            AtomicU64::from_ptr(at(offset_of!(TimeInfo, tsc_timestamp)).cast()),
            AtomicU64::from_ptr(at(offset_of!(TimeInfo, system_time_ns)).cast()),
            AtomicU32::from_ptr(at(offset_of!(TimeInfo, tsc_to_system_mul)).cast()),
            AtomicI8::from_ptr(at(offset_of!(TimeInfo, tsc_shift)).cast()),
            AtomicU64::from_ptr(at(offset_of!(TimeInfo, wall_clock_base_ns)).cast()),
        )
    };
    loop {
        let v1 = version.load(Ordering::Acquire);
        if v1 & 1 != 0 {
            core::hint::spin_loop();
            continue;
        }
        let t = TimeInfo {
            version: v1,
            flags: flags.load(Ordering::Relaxed),
            tsc_timestamp: tsc_timestamp.load(Ordering::Relaxed),
            system_time_ns: system_time_ns.load(Ordering::Relaxed),
            tsc_to_system_mul: mul.load(Ordering::Relaxed),
            tsc_shift: shift.load(Ordering::Relaxed),
            _pad: [0; 3],
            wall_clock_base_ns: wall.load(Ordering::Relaxed),
        };
        let tsc = read_tsc();
        // The field loads must complete before the second version load.
        fence(Ordering::Acquire);
        if version.load(Ordering::Relaxed) == v1 {
            return Some((t, tsc));
        }
    }
}

/// One past the last byte of the program image (`.bss` included), from the
/// linker symbol `_end`, rounded up to a page; `None` when the linker script
/// does not define `_end`.
pub fn image_end() -> Option<u64> {
    let end: u64;
    // SAFETY: only computes an address: `_end` is declared weak, so the link
    // succeeds without it and the address is then 0. No memory is touched.
    unsafe {
        core::arch::asm!(".weak _end", "lea {}, [rip + _end]", out(reg) end,
            options(nomem, nostack, pure, preserves_flags));
    }
    if end == 0 {
        None
    } else {
        end.checked_next_multiple_of(crate::PAGE_SIZE)
    }
}

/// 64 random bits from RDRAND, or `None` when the CPU has none or it
/// failed ten times in a row (Intel's DRNG guide, 5.2.1, suggests ten
/// retries before reporting a failure).
pub fn rdrand64() -> Option<u64> {
    // CPUID.01H:ECX.RDRAND[bit 30] (Intel SDM Vol. 2B, RDRAND).
    if core::arch::x86_64::__cpuid(1).ecx & (1 << 30) == 0 {
        return None;
    }
    for _ in 0..10 {
        let value: u64;
        let ok: u8;
        // SAFETY: CPUID says RDRAND exists; it writes only the named
        // register and CF (read by SETC), and touches no memory.
        unsafe {
            core::arch::asm!("rdrand {v}", "setc {ok}", v = out(reg) value, ok = out(reg_byte) ok,
                options(nomem, nostack));
        }
        if ok != 0 {
            return Some(value);
        }
    }
    None
}

//! The vcpu op group: [`crate::HC_VCPU_UP`], [`crate::HC_VCPU_INFO`].
//!
//! A domain has [`count`] vCPUs, ids `0..count()`; vCPU 0 runs `main`. The
//! others start when the guest asks, each on its own stack, at an
//! `extern "sysv64" fn(u64) -> !`: there is no way back from it (no "vCPU
//! down" in 1.0), so a vCPU with nothing more to do waits in
//! [`super::sched::block`] or shuts the domain down. A panic on any vCPU
//! shuts the whole domain down as crashed.
//!
//! ```ignore
//! static STACK: pvabi::guest::VcpuStack<16384> = pvabi::guest::VcpuStack::new();
//!
//! extern "sysv64" fn worker(arg: u64) -> ! {
//!     pvabi::println!("vCPU 1 up with {arg}");
//!     loop {
//!         let _ = pvabi::guest::sched::block(None);
//!     }
//! }
//!
//! fn main(_: &pvabi::StartInfo) -> i32 {
//!     let Some(stack) = STACK.take() else { return 1 };
//!     match pvabi::guest::vcpu::start(1, worker, stack, 42) {
//!         Ok(()) => 0,
//!         Err(e) => { pvabi::println!("vCPU 1: {e}"); 1 }
//!     }
//! }
//! ```

use super::{hypercall6, start_info, status};
use crate::{Error, HC_VCPU_INFO, HC_VCPU_UP, VcpuInfo};

pub use super::stack::VcpuStack;

/// Smallest stack [`start`] accepts, in bytes. Real code wants far more
/// (16 KiB is a reasonable start: formatting alone takes a few KiB).
pub const STACK_MIN: usize = 256;

/// Number of vCPUs the domain may run ([`crate::StartInfo::nr_vcpus`]).
pub fn count() -> u32 {
    start_info().nr_vcpus
}

/// The initial RSP for a stack occupying `base..base + len`: the top,
/// rounded down to 16 bytes, minus 8 (as just after a `call`, which the
/// System V ABI expects at a function's first instruction). `None` if the
/// stack is smaller than [`STACK_MIN`] or wraps.
pub fn initial_rsp(base: u64, len: usize) -> Option<u64> {
    if len < STACK_MIN {
        return None;
    }
    let top = base.checked_add(u64::try_from(len).ok()?)?;
    let rsp = (top & !15).checked_sub(8)?;
    (rsp >= base).then_some(rsp)
}

/// Starts vCPU `id` at `entry` with `arg` as its argument, running on
/// `stack`, which it keeps for good. Errors: [`Error::Invalid`] for id 0, an
/// id `>= count()` or a stack smaller than [`STACK_MIN`]; [`Error::Busy`] if
/// that vCPU is already up. The new vCPU may run before this returns;
/// everything written before the call is visible to it.
pub fn start(
    id: u32,
    entry: extern "sysv64" fn(u64) -> !,
    stack: &'static mut [u8],
    arg: u64,
) -> Result<(), Error> {
    let rsp = initial_rsp(stack.as_mut_ptr() as u64, stack.len()).ok_or(Error::Invalid)?;
    // The identity map makes the function's address its guest-physical RIP.
    let rip = entry as usize as u64;
    status(hypercall6(HC_VCPU_UP, [u64::from(id), rip, rsp, arg, 0, 0])).map(|_| ())
}

/// Starts vCPU `id` on the caller's own page tables (`cr3`) at `rip` with
/// `rsp` (addresses under those tables) and `arg` in RDI
/// ([`crate::VCPU_UP_CR3`], 2.1). Errors: [`Error::Invalid`] for id 0,
/// an id `>= count()` or an unaligned `cr3`; [`Error::Busy`] if that vCPU
/// is already up; [`Error::Fault`] for a `cr3` outside guest memory.
pub fn start_with_cr3(id: u32, rip: u64, rsp: u64, arg: u64, cr3: u64) -> Result<(), Error> {
    let rdi = u64::from(id) | crate::VCPU_UP_CR3;
    status(hypercall6(HC_VCPU_UP, [rdi, rip, rsp, arg, cr3, 0])).map(|_| ())
}

/// Reports vCPU `id`'s state, CPU time and pending events (which stay
/// pending). Errors: [`Error::Invalid`] for an id `>= count()`.
pub fn info(id: u32) -> Result<VcpuInfo, Error> {
    let mut out = VcpuInfo::zeroed();
    // `out` is ours; the hypervisor fills it in (any bytes are valid).
    status(hypercall6(
        HC_VCPU_INFO,
        [u64::from(id), &raw mut out as u64, 0, 0, 0, 0],
    ))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsp_is_aligned_like_after_a_call() {
        for base in [0x1000u64, 0x1001, 0x100f, 0x7fff_f000] {
            for len in [256usize, 257, 4096, 4095, 16384 + 7] {
                let rsp = initial_rsp(base, len).unwrap_or(0);
                assert_eq!((rsp + 8) % 16, 0, "base {base:#x} len {len}");
                assert!(rsp >= base && rsp + 8 <= base + len as u64);
                assert!(base + len as u64 - (rsp + 8) < 16);
            }
        }
        assert_eq!(initial_rsp(0x1000, 255), None);
        assert_eq!(initial_rsp(u64::MAX - 100, 4096), None);
    }
}

//! The `insncount` plugin's marker (tools/insncount/src/lib.rs `MARKER`):
//! a NOP with a displacement no compiler emits, around each of
//! `diskbench=`'s workloads, so `cargo xtask bench --only disk` counts the
//! instructions the machine ran between two of them (dom0 and the
//! hypervisor under it), as it does for the Linux side's `diskload`.
//! Under anything but that plugin it is a NOP.
#![allow(unsafe_code)]

/// `nopl 0x4b4d524b(%rax)` (`0f 1f 80` + "KRMK"; Intel SDM Vol. 2B, NOP:
/// `0F 1F /0`, the multi-byte NOP).
#[inline(always)]
pub fn mark() {
    // SAFETY: a NOP: it reads no memory (NOP's operand is not accessed)
    // and changes no register or flag.
    unsafe {
        core::arch::asm!(
            ".byte 0x0f, 0x1f, 0x80, 0x4b, 0x52, 0x4d, 0x4b",
            options(nomem, nostack, preserves_flags)
        )
    };
}

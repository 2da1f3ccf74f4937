//! Upcall injection under VT-x: the VM-entry interruption-information
//! field, interrupt-window exiting, and re-injecting an event whose
//! delivery an exit cut short.

use core::sync::atomic::{AtomicU64, Ordering};

use super::super::vmx_fields::*;
use super::{VmxVcpu, vmread, vmwrite};

/// Whether "interrupt-window exiting" (primary control bit 2) may be set.
pub(super) static WINDOW_OK: AtomicU64 = AtomicU64::new(0);
/// Primary processor-based control: interrupt-window exiting (SDM Vol. 3C
/// 25.6.2, Table 25-6).
pub(super) const PROC_INTR_WINDOW: u64 = 1 << 2;
/// RFLAGS.IF.
const RFLAGS_IF: u64 = 1 << 9;

impl VmxVcpu {
    /// Injects external interrupt `vector` at the next entry if the guest
    /// can take it (RFLAGS.IF = 1, no blocking by STI or MOV SS, no event
    /// already in the VM-entry interruption-information field), else turns
    /// on interrupt-window exiting (exit reason 7) so it is tried again as
    /// soon as it can (SDM Vol. 3C 26.6, 27.2, Table 25-3).
    pub fn set_upcall(&mut self, vector: Option<u8>) {
        let mut window = false;
        if let Some(v) = vector {
            let busy = vmread(ENTRY_INTR_INFO) & (1 << 31) != 0;
            let open =
                vmread(GUEST_RFLAGS) & RFLAGS_IF != 0 && vmread(GUEST_INTERRUPTIBILITY) & 3 == 0;
            if open && !busy {
                // Type 0 (external interrupt), valid.
                vmwrite(ENTRY_INTR_INFO, u64::from(v) | (1 << 31));
            } else {
                window = WINDOW_OK.load(Ordering::Relaxed) != 0;
            }
        }
        if window != self.window {
            let proc = vmread(PROC_CONTROLS);
            vmwrite(
                PROC_CONTROLS,
                if window {
                    proc | PROC_INTR_WINDOW
                } else {
                    proc & !PROC_INTR_WINDOW
                },
            );
            self.window = window;
        }
    }

    /// An event the exit interrupted while it was being delivered (valid
    /// IDT-vectoring information) is delivered again at the next entry
    /// (SDM Vol. 3C 28.2.4): bits 31, 11 and 10:0 carry over; bit 12 is
    /// undefined there and must be 0 on entry.
    pub(super) fn reinject(&mut self) {
        let info = vmread(IDT_VECTORING_INFO);
        if info & (1 << 31) == 0 {
            return;
        }
        vmwrite(ENTRY_INTR_INFO, info & 0x8000_0fff);
        if info & (1 << 11) != 0 {
            vmwrite(ENTRY_EXC_ERRCODE, vmread(IDT_VECTORING_ERRCODE));
        }
        vmwrite(ENTRY_INSTR_LEN, vmread(EXIT_INSTR_LEN));
    }
}

//! Intel VT-d (Intel Virtualization Technology for Directed I/O, spec
//! rev. 4.1): one remapping unit in legacy mode. A root table of 256
//! entries (one per bus), each pointing at a context table of 256 entries
//! (one per device/function); a device whose context entry is not
//! present has every DMA request blocked and reported as a fault
//! (VT-d 3.4, fault reasons 1/2). Attaching writes a context entry that
//! points at the domain's second-level table ([`super::pt`]).
//!
//! Invalidation is queued (VT-d 6.5.2, `vtd_qi.rs`) where the unit has
//! it, and then interrupt remapping is on too (`vtd_qi.rs`: the table,
//! IRE, compatibility-format interrupts blocked). A unit without queued
//! invalidation keeps register-based invalidation (VT-d 6.5.1: CCMD and
//! IOTLB registers) and no interrupt remapping. Either completes before
//! `invalidate` returns, so `detach` returns only after the unit has
//! dropped the entry.

use super::encode;
use super::mmio::{Regs, flush_cache};

#[path = "vtd_qi.rs"]
mod qi;
use crate::arch::frames;
use crate::domain::memory::FrameTables;
use crate::mm::gpt::TableMemory;

// Register offsets (VT-d 11.4).
const VER: u64 = 0x00;
const CAP: u64 = 0x08;
const ECAP: u64 = 0x10;
const GCMD: u64 = 0x18;
const GSTS: u64 = 0x1c;
const RTADDR: u64 = 0x20;
const CCMD: u64 = 0x28;
const FSTS: u64 = 0x34;
const FECTL: u64 = 0x38;

// GCMD/GSTS bits (VT-d 11.4.4, 11.4.5).
const TE: u32 = 1 << 31;
const SRTP: u32 = 1 << 30;
const WBF: u32 = 1 << 27;
/// GSTS bits that are not one-shot commands: what must be written back
/// to GCMD to leave everything else as it is (VT-d 11.4.4, the
/// programming note: `GSTS & 0x96FF_FFFF`).
const GSTS_KEEP: u32 = 0x96ff_ffff;

// CAP fields (VT-d 11.4.2).
const CAP_RWBF: u64 = 1 << 4;
fn cap_sagaw(cap: u64) -> u64 {
    (cap >> 8) & 0x1f
}
fn cap_fro(cap: u64) -> u64 {
    ((cap >> 24) & 0x3ff) * 16
}
fn cap_nfr(cap: u64) -> u64 {
    ((cap >> 40) & 0xff) + 1
}
fn cap_nd(cap: u64) -> u32 {
    4 + 2 * (cap & 7) as u32
}

// ECAP fields (VT-d 11.4.3).
const ECAP_C: u64 = 1 << 0;
const ECAP_QI: u64 = 1 << 1;
const ECAP_IR: u64 = 1 << 3;
const ECAP_EIM: u64 = 1 << 4;
const ECAP_PT: u64 = 1 << 6;
fn ecap_iro(ecap: u64) -> u64 {
    ((ecap >> 8) & 0x3ff) * 16
}

// CCMD (VT-d 11.4.6): ICC starts and reports, CIRG 01 global.
const CCMD_ICC: u64 = 1 << 63;
const CCMD_GLOBAL: u64 = 1 << 61;
// IOTLB register (VT-d 11.4.8.1): IVT, IIRG 01 global, drain reads/writes.
const IOTLB_IVT: u64 = 1 << 63;
const IOTLB_GLOBAL: u64 = 1 << 60;
const IOTLB_DR: u64 = 1 << 49;
const IOTLB_DW: u64 = 1 << 48;

/// How long to poll a register for the unit to finish (iterations of a
/// PAUSE loop: tens of milliseconds at the least; QEMU completes at once).
const SPIN: u64 = 50_000_000;

/// Why a unit could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VtdError {
    Map(u64),
    /// Neither 3- nor 4-level second-level tables (SAGAW).
    NoAgaw(u64),
    NoMemory,
    /// The unit did not finish a command in time: which one.
    Timeout(&'static str),
}

pub use super::encode::VtdFault as Fault;

/// What a fault reason means (VT-d 7.1.3, table 7-1), for the log.
pub fn reason_text(r: u8) -> &'static str {
    match r {
        1 => "root entry not present",
        2 => "context entry not present",
        3 => "invalid context entry",
        4 => "address beyond the table's width",
        5 => "write to a page not mapped writable",
        6 => "read of a page not mapped readable",
        7 => "second-level table address invalid",
        _ => "see VT-d table 7-1",
    }
}

/// One DMA-remapping unit, running.
pub struct Vtd {
    regs: Regs,
    pub cap: u64,
    pub ecap: u64,
    pub version: u32,
    /// Second-level walk length used for every domain (3 or 4).
    pub levels: u32,
    coherent: bool,
    root: u64,
    /// Context table per bus, 0 where none yet.
    context: [u64; 256],
    /// The invalidation queue, where the unit has one.
    qi: Option<qi::Qi>,
    /// The interrupt-remapping table; 0 while remapping is off.
    irt: u64,
}

/// Writes word `index` (< 512) of a table frame this module owns, as the
/// unit reads it: one whole 64-bit store.
fn store(table: u64, index: u64, value: u64) {
    FrameTables::default().write_entry(table, index as usize, value);
}

impl Vtd {
    /// Takes over the unit at `base`: every device blocked, translation on.
    pub fn start(base: u64) -> Result<Self, VtdError> {
        let probe = Regs::map(base, 4096).map_err(|_| VtdError::Map(base))?;
        let (cap, ecap) = (probe.r64(CAP), probe.r64(ECAP));
        // The block must reach the fault records and the IOTLB register.
        let len = (cap_fro(cap) + cap_nfr(cap) * 16).max(ecap_iro(ecap) + 16);
        let regs = Regs::map(base, len.max(4096)).map_err(|_| VtdError::Map(base))?;
        let levels = match cap_sagaw(cap) {
            s if s & 0b100 != 0 => 4,
            s if s & 0b010 != 0 => 3,
            _ => return Err(VtdError::NoAgaw(cap)),
        };
        let root = frames::alloc_zeroed_frame().ok_or(VtdError::NoMemory)?;
        let mut unit = Vtd {
            regs,
            cap,
            ecap,
            version: regs.r32(VER),
            levels,
            coherent: ecap & ECAP_C != 0,
            root,
            context: [0; 256],
            qi: None,
            irt: 0,
        };
        // Fault events are polled, not signalled: mask the interrupt
        // (FECTL.IM, VT-d 11.4.10).
        regs.w32(FECTL, 1 << 31);
        unit.sync(root, 4096);
        if ecap & ECAP_QI != 0 {
            unit.start_qi()?;
        }
        // Root table pointer, legacy mode (RTADDR.TTM = 00), then SRTP
        // (VT-d 11.4.5: the unit latches it once RTPS reads 1).
        regs.w64(RTADDR, root);
        unit.command(SRTP, SRTP, true, "set root table pointer")?;
        unit.invalidate()?;
        unit.command(TE, TE, true, "enable translation")?;
        // Remapping needs the queue: the interrupt entry cache has no
        // register-based invalidation.
        if ecap & ECAP_IR != 0 && unit.qi.is_some() {
            unit.start_ir()?;
        }
        Ok(unit)
    }

    /// The register block's physical base.
    pub fn base(&self) -> u64 {
        self.regs.base()
    }

    /// The address-width in bits of the tables used.
    pub fn agaw_bits(&self) -> u32 {
        12 + 9 * self.levels
    }

    /// What the unit offers, for the boot log.
    pub fn features(&self) -> ([(&'static str, bool); 5], u32) {
        let e = self.ecap;
        (
            [
                ("QI", e & ECAP_QI != 0),
                ("IR", e & ECAP_IR != 0),
                ("EIM", e & ECAP_EIM != 0),
                ("PT", e & ECAP_PT != 0),
                ("coherent", e & ECAP_C != 0),
            ],
            cap_nd(self.cap),
        )
    }

    /// Domain ids the unit supports (CAP.ND).
    pub fn domain_ids(&self) -> u32 {
        1 << cap_nd(self.cap)
    }

    /// Issues a GCMD command and waits for GSTS to show `status` set (or
    /// clear when `set` is false).
    fn command(
        &self,
        cmd: u32,
        status: u32,
        set: bool,
        what: &'static str,
    ) -> Result<(), VtdError> {
        let keep = self.regs.r32(GSTS) & GSTS_KEEP;
        self.regs.w32(GCMD, keep | cmd);
        self.wait(|| (self.regs.r32(GSTS) & status != 0) == set, what)
    }

    fn wait(&self, mut done: impl FnMut() -> bool, what: &'static str) -> Result<(), VtdError> {
        for _ in 0..SPIN {
            if done() {
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err(VtdError::Timeout(what))
    }

    /// Makes table writes visible to a non-coherent unit, and drains its
    /// write buffer where it asks for that (CAP.RWBF, VT-d 6.8).
    fn sync(&self, addr: u64, len: u64) {
        if !self.coherent {
            flush_cache(addr, len);
        }
    }

    fn flush_write_buffer(&self) -> Result<(), VtdError> {
        if self.cap & CAP_RWBF != 0 {
            self.command(WBF, WBF, false, "flush write buffer")?;
        }
        Ok(())
    }

    /// Global context-cache then IOTLB invalidation (VT-d 6.5.1.1,
    /// 6.5.1.2), each waited for: when this returns the unit holds no
    /// entry it read before.
    pub fn invalidate(&mut self) -> Result<(), VtdError> {
        self.flush_write_buffer()?;
        if self.qi.is_some() {
            return self.run(
                &[
                    super::encode_ir::vtd_qi_context_global(),
                    super::encode_ir::vtd_qi_iotlb_global(),
                ],
                "context-cache and IOTLB invalidation",
            );
        }
        self.regs.w64(CCMD, CCMD_ICC | CCMD_GLOBAL);
        self.wait(
            || self.regs.r64(CCMD) & CCMD_ICC == 0,
            "context-cache invalidation",
        )?;
        let iotlb = ecap_iro(self.ecap) + 8;
        self.regs
            .w64(iotlb, IOTLB_IVT | IOTLB_GLOBAL | IOTLB_DR | IOTLB_DW);
        self.wait(
            || self.regs.r64(iotlb) & IOTLB_IVT == 0,
            "IOTLB invalidation",
        )
    }

    /// Points requester `rid` at the second-level table `slpt` (of
    /// `self.levels` levels) under domain id `did`, or blocks it (`None`).
    /// Invalidates and waits before returning.
    pub fn set_context(&mut self, rid: u16, slpt: Option<(u64, u16)>) -> Result<(), VtdError> {
        let bus = usize::from(rid >> 8);
        let devfn = u64::from(rid & 0xff);
        if self.context[bus] == 0 {
            if slpt.is_none() {
                return Ok(()); // no context table: already blocked
            }
            let t = frames::alloc_zeroed_frame().ok_or(VtdError::NoMemory)?;
            self.sync(t, 4096);
            self.context[bus] = t;
            // Root entry (VT-d 9.1): bit 0 present, bits 63:12 the
            // context table.
            store(self.root, bus as u64 * 2, t | 1);
            self.sync(self.root + bus as u64 * 16, 16);
        }
        let ctx = self.context[bus];
        match slpt {
            Some((table, did)) => {
                // High word first, so the entry is whole once P is set.
                let (lo, hi) = encode::vtd_context(table, self.levels, did);
                store(ctx, devfn * 2 + 1, hi);
                store(ctx, devfn * 2, lo);
            }
            None => store(ctx, devfn * 2, 0),
        }
        self.sync(ctx + devfn * 16, 16);
        self.invalidate()
    }

    /// Reads and clears every recorded fault (VT-d 7.1.3: the primary
    /// fault log, records from FSTS.FRI on, each with F set until
    /// cleared by writing 1).
    pub fn take_faults(&self, mut each: impl FnMut(Fault)) {
        let fsts = self.regs.r32(FSTS);
        let n = cap_nfr(self.cap);
        let first = u64::from((fsts >> 8) & 0xff) % n;
        for k in 0..n {
            let rec = cap_fro(self.cap) + ((first + k) % n) * 16;
            let hi = self.regs.r64(rec + 8);
            let Some(fault) = encode::vtd_fault(self.regs.r64(rec), hi) else {
                continue;
            };
            each(fault);
            // F is write-1-to-clear, in the record's top dword.
            self.regs.w32(rec + 12, 1 << 31);
        }
        // Primary fault overflow (bit 0) is write-1-to-clear too.
        if fsts & 1 != 0 {
            self.regs.w32(FSTS, 1);
        }
    }
}

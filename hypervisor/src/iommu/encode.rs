//! The bit layouts the units read and write, as pure functions so the
//! spec facts are host-tested: VT-d context entries and fault records,
//! AMD-Vi device-table entries, commands and events.

/// A VT-d context entry (VT-d 9.3) for a device translated through the
/// second-level table at `table` of `levels` (3 or 4) levels under domain
/// id `did`: (low word, high word). Low: P (bit 0), FPD 0, TT 00
/// (untranslated requests through the second level), SLPTPTR. High: AW
/// (bits 2:0; 1 = 39-bit 3-level, 2 = 48-bit 4-level), DID (bits 23:8).
pub fn vtd_context(table: u64, levels: u32, did: u16) -> (u64, u64) {
    let aw = u64::from(levels.saturating_sub(2));
    ((table & !0xfff) | 1, aw | (u64::from(did) << 8))
}

/// One VT-d fault record (VT-d 11.4.14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VtdFault {
    pub source: u16,
    pub addr: u64,
    pub write: bool,
    pub reason: u8,
}

/// Decodes a fault record's two words, if its F bit (127) is set. Low:
/// FI (bits 63:12, the faulting page). High: SID (bits 79:64), FR (bits
/// 103:96), T1 (bit 126: 0 = write, 1 = read), F (bit 127).
pub fn vtd_fault(lo: u64, hi: u64) -> Option<VtdFault> {
    (hi & (1 << 63) != 0).then_some(VtdFault {
        source: (hi & 0xffff) as u16,
        addr: lo & !0xfff,
        write: hi & (1 << 62) == 0,
        reason: ((hi >> 32) & 0xff) as u8,
    })
}

const DTE_V: u64 = 1 << 0;
const DTE_TV: u64 = 1 << 1;
const DTE_IR: u64 = 1 << 61;
const DTE_IW: u64 = 1 << 62;

/// An AMD-Vi device-table entry (AMD IOMMU spec 2.2.2.1), its four words.
/// Translating: V, TV, Mode = `levels`, the root, IR and IW; word 1 holds
/// the domain id (bits 15:0). Blocking (`to` = None): V, TV, mode 4 over
/// `empty` with IR = IW = 0, so every request fails the DTE's own
/// permission check. Words 2 and 3 stay 0: interrupts are not remapped
/// (IV = 0) and nothing else is used.
pub fn amd_dte(to: Option<(u64, u32, u16)>, empty: u64) -> [u64; 4] {
    match to {
        Some((root, levels, did)) => [
            DTE_V
                | DTE_TV
                | (u64::from(levels & 7) << 9)
                | (root & 0x000f_ffff_ffff_f000)
                | DTE_IR
                | DTE_IW,
            u64::from(did),
            0,
            0,
        ],
        None => [
            DTE_V | DTE_TV | (4 << 9) | (empty & 0x000f_ffff_ffff_f000),
            0,
            0,
            0,
        ],
    }
}

/// COMPLETION_WAIT (opcode 01h, 2.4.1) storing `data` at `addr` (8-byte
/// aligned) when every earlier command has completed: S = bit 0, the
/// address in bits 51:3, the opcode in bits 63:60.
pub fn amd_completion_wait(addr: u64, data: u64) -> [u64; 2] {
    [(addr & 0x000f_ffff_ffff_fff8) | 1 | (1 << 60), data]
}

/// INVALIDATE_DEVTAB_ENTRY (opcode 02h, 2.4.2): the device id in bits 15:0.
pub fn amd_inv_devtab(devid: u16) -> [u64; 2] {
    [u64::from(devid) | (2 << 60), 0]
}

/// INVALIDATE_IOMMU_PAGES (opcode 03h, 2.4.3) for every page of domain
/// `did` (bits 47:32): S = 1, PDE = 1, address 7FFF_FFFF_FFFF_F000h.
pub fn amd_inv_pages(did: u16) -> [u64; 2] {
    [
        (u64::from(did) << 32) | (3 << 60),
        0x7fff_ffff_ffff_f000 | 3,
    ]
}

/// INVALIDATE_IOMMU_ALL (opcode 08h, 2.4.8; only where EFR.IASup).
pub fn amd_inv_all() -> [u64; 2] {
    [8 << 60, 0]
}

/// One AMD-Vi event-log entry (2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmdEvent {
    /// Event code (2 = IO_PAGE_FAULT).
    pub code: u8,
    pub devid: u16,
    pub addr: u64,
    pub write: bool,
    pub flags: u16,
}

/// Decodes an event: DeviceID in bits 15:0, flags in bits 59:48 (RW, bit
/// 53: 1 = write), the code in bits 63:60, the address in the second word.
pub fn amd_event(lo: u64, hi: u64) -> AmdEvent {
    let flags = ((lo >> 48) & 0xfff) as u16;
    AmdEvent {
        code: (lo >> 60) as u8,
        devid: (lo & 0xffff) as u16,
        addr: hi,
        write: flags & (1 << 5) != 0,
        flags,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vtd_context_entry_bits() {
        let (lo, hi) = vtd_context(0x12_3000, 3, 0x42);
        assert_eq!(lo, 0x12_3001, "SLPTPTR | P, TT = 00, FPD = 0");
        assert_eq!(hi & 7, 1, "AW 1: 39-bit, 3 levels");
        assert_eq!((hi >> 8) & 0xffff, 0x42, "DID in bits 87:72");
        assert_eq!(vtd_context(0x12_3000, 4, 1).1 & 7, 2, "AW 2: 48-bit");
    }

    #[test]
    fn vtd_fault_record_decode() {
        // A write by 00:02.0 to 0x600000, reason 1, F set, T1 = 0.
        let hi = (1u64 << 63) | (1 << 32) | 0x0010;
        assert_eq!(
            vtd_fault(0x60_0000, hi),
            Some(VtdFault {
                source: 0x10,
                addr: 0x60_0000,
                write: true,
                reason: 1
            })
        );
        assert!(
            !vtd_fault(0x60_0000, hi | (1 << 62)).is_some_and(|f| f.write),
            "T1 = 1: read"
        );
        assert_eq!(
            vtd_fault(0x60_0000, hi & !(1 << 63)),
            None,
            "F clear: no fault"
        );
    }

    #[test]
    fn amd_dte_bits() {
        let t = amd_dte(Some((0x55_5000, 4, 7)), 0x9000);
        assert_eq!(t[0] & 3, 3, "V and TV");
        assert_eq!((t[0] >> 9) & 7, 4, "mode = levels");
        assert_eq!(t[0] & 0x000f_ffff_ffff_f000, 0x55_5000);
        assert_eq!(t[0] >> 61 & 3, 3, "IR and IW");
        assert_eq!(t[1], 7, "domain id");
        let b = amd_dte(None, 0x9000);
        assert_eq!(b[0] & 3, 3, "blocked entries stay valid");
        assert_eq!(b[0] >> 61 & 3, 0, "IR = IW = 0");
        assert_eq!(b[0] & 0x000f_ffff_ffff_f000, 0x9000);
        // Reserved bits QEMU checks (bits 7:2, 52, 53, 63 of word 0; word 3).
        for d in [t, b] {
            assert_eq!(d[0] & 0x8030_0000_0000_00fc, 0);
            assert_eq!(d[3], 0);
        }
    }

    #[test]
    fn amd_commands() {
        let c = amd_completion_wait(0x7000, 9);
        assert_eq!(c[0] >> 60, 1);
        assert_eq!(c[0] & 1, 1, "store");
        assert_eq!(c[0] & 0x000f_ffff_ffff_fff8, 0x7000);
        assert_eq!((c[0] >> 52) & 0xff, 0, "reserved bits 59:52 clear");
        assert_eq!(c[1], 9);
        assert_eq!(amd_inv_devtab(0x10), [0x2000_0000_0000_0010, 0]);
        let p = amd_inv_pages(5);
        assert_eq!(p[0] >> 60, 3);
        assert_eq!((p[0] >> 32) & 0xffff, 5);
        assert_eq!(p[1] & 3, 3, "S and PDE");
        assert_eq!(p[1] & !0xfff, 0x7fff_ffff_ffff_f000);
        assert_eq!(amd_inv_all()[0] >> 60, 8);
    }

    #[test]
    fn amd_event_decode() {
        let lo = (2u64 << 60) | (1 << 53) | 0x0010;
        let e = amd_event(lo, 0x60_0000);
        assert_eq!(
            (e.code, e.devid, e.addr, e.write),
            (2, 0x10, 0x60_0000, true)
        );
        assert!(!amd_event(2 << 60, 0).write);
    }
}

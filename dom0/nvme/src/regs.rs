//! Controller registers (NVMe 1.4 3.1, BAR0).

/// Controller Capabilities (64-bit).
pub const CAP: u64 = 0x00;
/// Version.
pub const VS: u64 = 0x08;
/// Controller Configuration.
pub const CC: u64 = 0x14;
/// Controller Status.
pub const CSTS: u64 = 0x1c;
/// Admin Queue Attributes.
pub const AQA: u64 = 0x24;
/// Admin Submission Queue base (64-bit).
pub const ASQ: u64 = 0x28;
/// Admin Completion Queue base (64-bit).
pub const ACQ: u64 = 0x30;
/// First doorbell (NVMe 1.4 3.1.24).
pub const DOORBELLS: u64 = 0x1000;

/// CC.EN.
pub const CC_EN: u32 = 1;
/// CSTS.RDY.
pub const CSTS_RDY: u32 = 1;
/// CSTS.CFS: controller fatal status.
pub const CSTS_CFS: u32 = 1 << 1;

/// The CAP fields the driver uses (NVMe 1.4 3.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    /// Maximum Queue Entries Supported, as a count (the field is 0-based).
    pub max_entries: u32,
    /// Worst-case time for CSTS.RDY to change after CC.EN, in ms (TO is in
    /// 500 ms units).
    pub timeout_ms: u64,
    /// Doorbell stride in bytes: `4 << DSTRD`.
    pub doorbell_stride: u64,
    /// CSS bit 0: the NVM command set is supported.
    pub nvm: bool,
    /// Smallest memory page size, bytes: `2^(12 + MPSMIN)`.
    pub page_min: u64,
    /// Largest memory page size, bytes: `2^(12 + MPSMAX)`.
    pub page_max: u64,
}

impl Cap {
    /// Decodes CAP.
    pub fn decode(cap: u64) -> Self {
        Self {
            max_entries: (cap & 0xffff) as u32 + 1,
            timeout_ms: ((cap >> 24) & 0xff) * 500,
            doorbell_stride: 4 << ((cap >> 32) & 0xf),
            nvm: (cap >> 37) & 1 != 0,
            page_min: 1 << (12 + ((cap >> 48) & 0xf)),
            page_max: 1 << (12 + ((cap >> 52) & 0xf)),
        }
    }
}

/// CC to enable the controller with 4 KiB pages, the NVM command set,
/// round-robin arbitration and 64-byte SQ / 16-byte CQ entries (NVMe 1.4
/// 3.1.5: IOSQES = 6, IOCQES = 4, MPS = 0, CSS = 000b, AMS = 000b).
pub const fn cc_enable() -> u32 {
    (6 << 16) | (4 << 20) | CC_EN
}

/// AQA for admin queues of `sq` and `cq` entries (fields 0-based).
pub const fn aqa(sq: u16, cq: u16) -> u32 {
    ((cq as u32 - 1) << 16) | (sq as u32 - 1)
}

/// Offset of queue `qid`'s submission tail doorbell.
pub const fn sq_doorbell(qid: u16, stride: u64) -> u64 {
    DOORBELLS + (2 * qid as u64) * stride
}

/// Offset of queue `qid`'s completion head doorbell.
pub const fn cq_doorbell(qid: u16, stride: u64) -> u64 {
    DOORBELLS + (2 * qid as u64 + 1) * stride
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cap_fields() {
        // QEMU 7.2's controller: MQES 0x7ff, CQR, TO 0xf, DSTRD 0,
        // CSS NVM (bit 37), MPSMIN 0, MPSMAX 4.
        let cap: u64 = 0x7ff | 1 << 16 | 0xf << 24 | 1 << 37 | 4 << 52;
        let c = Cap::decode(cap);
        assert_eq!(c.max_entries, 0x800);
        assert_eq!(c.timeout_ms, 7500);
        assert_eq!(c.doorbell_stride, 4);
        assert!(c.nvm);
        assert_eq!(c.page_min, 4096);
        assert_eq!(c.page_max, 65536);
        let c = Cap::decode(2 << 32 | 1 << 48);
        assert_eq!(c.doorbell_stride, 16);
        assert_eq!(c.page_min, 8192);
        assert!(!c.nvm);
        assert_eq!(c.max_entries, 1);
    }

    #[test]
    fn config_and_doorbells() {
        assert_eq!(cc_enable(), 0x0046_0001);
        assert_eq!(aqa(32, 32), 0x001f_001f);
        assert_eq!(aqa(2, 64), 0x003f_0001);
        assert_eq!(sq_doorbell(0, 4), 0x1000);
        assert_eq!(cq_doorbell(0, 4), 0x1004);
        assert_eq!(sq_doorbell(1, 4), 0x1008);
        assert_eq!(cq_doorbell(1, 4), 0x100c);
        assert_eq!(cq_doorbell(1, 16), 0x1030);
    }
}

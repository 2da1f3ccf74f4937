//! Submission queue entries (NVMe 1.4 4.2), PRP lists (4.3) and
//! completion queue entries (4.6).

/// Admin opcodes (NVMe 1.4 5, figure 139).
pub mod admin {
    /// Create I/O Submission Queue.
    pub const CREATE_SQ: u8 = 0x01;
    /// Create I/O Completion Queue.
    pub const CREATE_CQ: u8 = 0x05;
    /// Identify.
    pub const IDENTIFY: u8 = 0x06;
    /// Set Features.
    pub const SET_FEATURES: u8 = 0x09;
}

/// NVM command set opcodes (NVMe 1.4 6, figure 346).
pub mod nvm {
    /// Flush.
    pub const FLUSH: u8 = 0x00;
    /// Write.
    pub const WRITE: u8 = 0x01;
    /// Read.
    pub const READ: u8 = 0x02;
}

/// Identify CNS values (NVMe 1.4 5.15.1).
pub const CNS_NAMESPACE: u32 = 0x00;
/// Identify Controller.
pub const CNS_CONTROLLER: u32 = 0x01;
/// Set Features: Number of Queues (NVMe 1.4 5.21.1.7).
pub const FID_NUMBER_OF_QUEUES: u32 = 0x07;

/// Memory page size the driver configures (CC.MPS = 0).
pub const PAGE: u64 = 4096;
/// PRP entries in one list page.
pub const PRP_PER_PAGE: usize = (PAGE / 8) as usize;

/// A 64-byte submission queue entry as 16 dwords.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sqe(pub [u32; 16]);

impl Sqe {
    /// An entry with opcode, command id and namespace (CDW0: OPC 7:0,
    /// FUSE 9:8 = 0, PSDT 15:14 = 0 (PRPs), CID 31:16; CDW1: NSID).
    pub fn new(opcode: u8, cid: u16, nsid: u32) -> Self {
        let mut d = [0; 16];
        d[0] = u32::from(opcode) | u32::from(cid) << 16;
        d[1] = nsid;
        Self(d)
    }

    /// Sets the data pointer: PRP1 (CDW6-7) and PRP2 (CDW8-9).
    pub fn prps(mut self, prp1: u64, prp2: u64) -> Self {
        self.0[6] = prp1 as u32;
        self.0[7] = (prp1 >> 32) as u32;
        self.0[8] = prp2 as u32;
        self.0[9] = (prp2 >> 32) as u32;
        self
    }

    /// Sets command dwords 10-15 (`cdw[0]` is CDW10).
    pub fn cdw(mut self, cdw: [u32; 6]) -> Self {
        self.0[10..16].copy_from_slice(&cdw);
        self
    }

    /// The command id.
    pub fn cid(&self) -> u16 {
        (self.0[0] >> 16) as u16
    }

    /// Identify with `cns` into the 4 KiB page at `buf`.
    pub fn identify(cid: u16, nsid: u32, cns: u32, buf: u64) -> Self {
        Self::new(admin::IDENTIFY, cid, nsid)
            .prps(buf, 0)
            .cdw([cns, 0, 0, 0, 0, 0])
    }

    /// Set Features, Number of Queues: `n` submission and `n` completion
    /// queues (0-based counts in CDW11: NSQR 15:0, NCQR 31:16).
    pub fn set_queues(cid: u16, n: u16) -> Self {
        let m = u32::from(n.max(1) - 1);
        Self::new(admin::SET_FEATURES, cid, 0).cdw([FID_NUMBER_OF_QUEUES, m << 16 | m, 0, 0, 0, 0])
    }

    /// Create I/O Completion Queue `qid` of `entries` at `base`,
    /// physically contiguous, interrupts off (NVMe 1.4 5.3: CDW10 QSIZE
    /// 31:16 0-based, QID 15:0; CDW11 IEN bit 1 = 0, PC bit 0 = 1).
    pub fn create_cq(cid: u16, qid: u16, entries: u16, base: u64) -> Self {
        Self::new(admin::CREATE_CQ, cid, 0).prps(base, 0).cdw([
            u32::from(entries - 1) << 16 | u32::from(qid),
            1,
            0,
            0,
            0,
            0,
        ])
    }

    /// [`Sqe::create_cq`] with interrupts on, through MSI-X vector
    /// `vector` (NVMe 1.4 5.3, figure 150: CDW11 IV 31:16, IEN bit 1 = 1,
    /// PC bit 0 = 1). The controller then sends that vector's message
    /// whenever it posts an entry to the queue (Interrupt Coalescing,
    /// feature 08h, is left at its reset value: no aggregation).
    pub fn create_cq_irq(cid: u16, qid: u16, entries: u16, base: u64, vector: u16) -> Self {
        Self::new(admin::CREATE_CQ, cid, 0).prps(base, 0).cdw([
            u32::from(entries - 1) << 16 | u32::from(qid),
            u32::from(vector) << 16 | 0b11,
            0,
            0,
            0,
            0,
        ])
    }

    /// Create I/O Submission Queue `qid` of `entries` at `base` on
    /// completion queue `cqid`, physically contiguous (NVMe 1.4 5.4:
    /// CDW11 CQID 31:16, QPRIO 2:1 = 0, PC bit 0 = 1).
    pub fn create_sq(cid: u16, qid: u16, entries: u16, base: u64, cqid: u16) -> Self {
        Self::new(admin::CREATE_SQ, cid, 0).prps(base, 0).cdw([
            u32::from(entries - 1) << 16 | u32::from(qid),
            u32::from(cqid) << 16 | 1,
            0,
            0,
            0,
            0,
        ])
    }

    /// Read or Write of `blocks` (1..=65536) logical blocks at `lba`
    /// (NVMe 1.4 6.9 / 6.15: SLBA in CDW10-11, NLB 0-based in CDW12 15:0).
    pub fn rw(
        write: bool,
        cid: u16,
        nsid: u32,
        lba: u64,
        blocks: u32,
        prp1: u64,
        prp2: u64,
    ) -> Self {
        let op = if write { nvm::WRITE } else { nvm::READ };
        Self::new(op, cid, nsid).prps(prp1, prp2).cdw([
            lba as u32,
            (lba >> 32) as u32,
            (blocks - 1) & 0xffff,
            0,
            0,
            0,
        ])
    }

    /// Flush of namespace `nsid` (NVMe 1.4 6.8).
    pub fn flush(cid: u16, nsid: u32) -> Self {
        Self::new(nvm::FLUSH, cid, nsid)
    }
}

/// The data pointer of a transfer of `len` bytes at bus address `addr`
/// (NVMe 1.4 4.3): PRP1 is `addr` (any dword-aligned offset); if the
/// transfer ends in PRP1's page PRP2 is 0; if it ends in the next page,
/// PRP2 is that page; otherwise PRP2 is `list` and the list holds the
/// address of every page after the first. `None` if `len` is 0, `addr`
/// is not dword-aligned, or the list would not fit one page (the caller
/// splits transfers below that).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prp {
    /// PRP1.
    pub prp1: u64,
    /// PRP2.
    pub prp2: u64,
    /// The entries to write to the list page (empty unless PRP2 = list).
    pub list: [u64; PRP_PER_PAGE],
    /// How many of `list` are used.
    pub list_len: usize,
}

impl Prp {
    /// Builds the data pointer (see the type's doc).
    pub fn build(addr: u64, len: u64, list: u64) -> Option<Self> {
        if len == 0 || !addr.is_multiple_of(4) {
            return None;
        }
        let first_page = addr & !(PAGE - 1);
        let last_page = (addr.checked_add(len - 1)?) & !(PAGE - 1);
        let pages = (last_page - first_page) / PAGE + 1;
        let mut p = Prp {
            prp1: addr,
            prp2: 0,
            list: [0; PRP_PER_PAGE],
            list_len: 0,
        };
        match pages {
            1 => {}
            2 => p.prp2 = first_page + PAGE,
            n if (n - 1) as usize <= PRP_PER_PAGE => {
                if !list.is_multiple_of(PAGE) {
                    return None;
                }
                p.prp2 = list;
                for i in 1..n {
                    p.list[(i - 1) as usize] = first_page + i * PAGE;
                }
                p.list_len = (n - 1) as usize;
            }
            _ => return None,
        }
        Some(p)
    }
}

/// A completion queue entry (NVMe 1.4 4.6, figure 124), from its four
/// dwords.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cqe {
    /// DW0: command specific.
    pub result: u32,
    /// SQ head pointer.
    pub sq_head: u16,
    /// SQ identifier.
    pub sq_id: u16,
    /// Command identifier.
    pub cid: u16,
    /// Phase tag.
    pub phase: bool,
    /// Status Code Type (SF bits 27:25 of DW3).
    pub sct: u8,
    /// Status Code (DW3 bits 24:17).
    pub sc: u8,
    /// Do Not Retry.
    pub dnr: bool,
}

impl Cqe {
    /// Decodes the four dwords of an entry.
    pub fn decode(d: [u32; 4]) -> Self {
        Self {
            result: d[0],
            sq_head: d[2] as u16,
            sq_id: (d[2] >> 16) as u16,
            cid: d[3] as u16,
            phase: (d[3] >> 16) & 1 != 0,
            sc: (d[3] >> 17) as u8,
            sct: ((d[3] >> 25) & 7) as u8,
            dnr: d[3] >> 31 != 0,
        }
    }

    /// Whether the command succeeded (SCT 0, SC 0).
    pub fn ok(&self) -> bool {
        self.sct == 0 && self.sc == 0
    }

    /// The status in words for an error message (NVMe 1.4 4.6.1.2).
    pub fn status(&self) -> &'static str {
        match (self.sct, self.sc) {
            (0, 0x00) => "successful completion",
            (0, 0x01) => "invalid command opcode",
            (0, 0x02) => "invalid field in command",
            (0, 0x04) => "data transfer error",
            (0, 0x06) => "internal error",
            (0, 0x0b) => "invalid namespace or format",
            (0, 0x13) => "PRP offset invalid",
            (0, 0x80) => "LBA out of range",
            (0, 0x81) => "capacity exceeded",
            (0, 0x82) => "namespace not ready",
            (1, 0x01) => "invalid completion queue",
            (1, 0x02) => "invalid queue identifier",
            (1, 0x03) => "invalid queue size",
            (2, _) => "media or data integrity error",
            (0, _) => "generic command status",
            (1, _) => "command specific status",
            _ => "other status",
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sqe_encoding() {
        let s = Sqe::identify(7, 0, CNS_CONTROLLER, 0x1234_5000);
        assert_eq!(s.0[0], 0x0007_0006);
        assert_eq!(s.0[1], 0);
        assert_eq!((s.0[6], s.0[7]), (0x1234_5000, 0));
        assert_eq!(s.0[10], 1);
        assert_eq!(s.cid(), 7);

        let s = Sqe::rw(true, 3, 1, 0x1_0000_0002, 8, 0xa000, 0xb000);
        assert_eq!(s.0[0], 0x0003_0001);
        assert_eq!(s.0[1], 1);
        assert_eq!((s.0[10], s.0[11], s.0[12]), (2, 1, 7));
        assert_eq!((s.0[6], s.0[8]), (0xa000, 0xb000));
        let s = Sqe::rw(false, 3, 1, 0, 65536, 0x8_0000_1000, 0);
        assert_eq!(s.0[0] & 0xff, 2);
        assert_eq!(s.0[12], 0xffff);
        assert_eq!(s.0[7], 8);

        let s = Sqe::create_cq(1, 1, 64, 0x20_0000);
        assert_eq!(s.0[0] & 0xff, 5);
        assert_eq!((s.0[10], s.0[11]), (63 << 16 | 1, 1));
        let s = Sqe::create_cq_irq(1, 1, 64, 0x20_0000, 1);
        assert_eq!((s.0[0] & 0xff, s.0[6]), (5, 0x20_0000));
        assert_eq!((s.0[10], s.0[11]), (63 << 16 | 1, 1 << 16 | 0b11));
        let s = Sqe::create_cq_irq(1, 3, 16, 0x20_0000, 0x7ff);
        assert_eq!((s.0[10], s.0[11]), (15 << 16 | 3, 0x7ff << 16 | 0b11));
        let s = Sqe::create_sq(2, 1, 64, 0x21_0000, 1);
        assert_eq!(s.0[0] & 0xff, 1);
        assert_eq!((s.0[10], s.0[11]), (63 << 16 | 1, 1 << 16 | 1));
        assert_eq!(s.0[6], 0x21_0000);
        let s = Sqe::set_queues(4, 1);
        assert_eq!((s.0[0] & 0xff, s.0[10], s.0[11]), (9, 7, 0));
        assert_eq!(Sqe::flush(5, 1).0[..2], [0x0005_0000, 1]);
    }

    #[test]
    fn prp_one_and_two_pages() {
        let p = Prp::build(0x10_0000, 4096, 0).unwrap();
        assert_eq!((p.prp1, p.prp2, p.list_len), (0x10_0000, 0, 0));
        // 512 bytes near the end of a page stay in it.
        let p = Prp::build(0x10_0e00, 512, 0).unwrap();
        assert_eq!(p.prp2, 0);
        // Crossing into the next page: PRP2 is that page.
        let p = Prp::build(0x10_0e00, 1024, 0).unwrap();
        assert_eq!((p.prp1, p.prp2), (0x10_0e00, 0x10_1000));
        let p = Prp::build(0x10_0000, 8192, 0).unwrap();
        assert_eq!(p.prp2, 0x10_1000);
    }

    #[test]
    fn prp_list() {
        // Three pages: PRP2 points at the list of the 2nd and 3rd.
        let p = Prp::build(0x10_0000, 3 * 4096, 0x50_0000).unwrap();
        assert_eq!((p.prp1, p.prp2, p.list_len), (0x10_0000, 0x50_0000, 2));
        assert_eq!(p.list[..2], [0x10_1000, 0x10_2000]);
        // An offset first page: 8 KiB from 0x...200 touches three pages.
        let p = Prp::build(0x10_0200, 8192, 0x50_0000).unwrap();
        assert_eq!(p.list_len, 2);
        assert_eq!(p.list[..2], [0x10_1000, 0x10_2000]);
        // The most one list page holds: 513 pages.
        let p = Prp::build(0x10_0000, 513 * 4096, 0x50_0000).unwrap();
        assert_eq!(p.list_len, 512);
        assert_eq!(p.list[511], 0x10_0000 + 512 * 4096);
        assert!(Prp::build(0x10_0000, 514 * 4096, 0x50_0000).is_none());
        // A list that is not page-aligned, no data, misaligned data.
        assert!(Prp::build(0x10_0000, 3 * 4096, 0x50_0008).is_none());
        assert!(Prp::build(0x10_0000, 0, 0).is_none());
        assert!(Prp::build(0x10_0002, 512, 0).is_none());
        assert!(Prp::build(u64::MAX - 3, 8, 0).is_none());
    }

    #[test]
    fn cqe_decoding() {
        let c = Cqe::decode([0xdead, 0, 0x0001_0005, 0x0001_0009]);
        assert_eq!((c.result, c.sq_head, c.sq_id, c.cid), (0xdead, 5, 1, 9));
        assert!(c.phase && c.ok());
        assert_eq!(c.status(), "successful completion");
        // LBA out of range (SCT 0, SC 0x80), DNR set, phase 0.
        let c = Cqe::decode([0, 0, 0, 0x80 << 17 | 1 << 31 | 3]);
        assert!(!c.phase && !c.ok() && c.dnr);
        assert_eq!((c.sct, c.sc, c.cid), (0, 0x80, 3));
        assert_eq!(c.status(), "LBA out of range");
        // Invalid queue identifier: SCT 1, SC 2.
        let c = Cqe::decode([0, 0, 0, 1 << 25 | 2 << 17]);
        assert_eq!(c.status(), "invalid queue identifier");
    }
}

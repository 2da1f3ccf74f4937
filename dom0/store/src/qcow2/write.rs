//! Writing a qcow2 version 3 file (qcow2 spec), streamed in file order so
//! dom0 can send it as it goes: header, L1 table, refcount table,
//! refcount blocks, L2 tables, data clusters. Clusters that read as all
//! zeros are left unallocated (the file is sparse). Every cluster the
//! file holds has refcount 1 and every L1/L2 entry carries COPIED, which
//! is what `qemu-img check` expects of an image without snapshots.

use alloc::vec;
use alloc::vec::Vec;

use crate::error::{Result, StoreError};

/// 64 KiB clusters, QEMU's default.
const CLUSTER_BITS: u32 = 16;
const CS: u64 = 1 << CLUSTER_BITS;
/// 16-bit refcounts (refcount_order 4, what version 2 fixed and QEMU's
/// default for version 3).
const REFCOUNT_ORDER: u32 = 4;
const COPIED: u64 = 1 << 63;

/// Where everything goes, in clusters from the start of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportPlan {
    /// Virtual size.
    pub size: u64,
    /// Per virtual cluster: whether it has non-zero bytes.
    pub present: Vec<bool>,
    pub l1_entries: u64,
    pub l1_clusters: u64,
    pub rt_clusters: u64,
    pub rb_clusters: u64,
    /// L2 tables, one per L1 entry with any present cluster.
    pub l2_clusters: u64,
    pub data_clusters: u64,
}

impl ExportPlan {
    /// Plans a file for `size` bytes of which the clusters in `present`
    /// are allocated.
    pub fn new(size: u64, present: Vec<bool>) -> Self {
        let per_l2 = CS / 8;
        let l1_entries = (present.len() as u64).div_ceil(per_l2).max(1);
        let l1_clusters = (l1_entries * 8).div_ceil(CS);
        let l2_clusters = present
            .chunks(per_l2 as usize)
            .filter(|c| c.iter().any(|&p| p))
            .count() as u64;
        let data_clusters = present.iter().filter(|&&p| p).count() as u64;
        let fixed = 1 + l1_clusters + l2_clusters + data_clusters;
        // The refcount structures count themselves: iterate to a fixed point.
        let per_rb = CS * 8 / (1 << REFCOUNT_ORDER);
        let (mut rt, mut rb) = (1u64, 1u64);
        loop {
            let total = fixed + rt + rb;
            let rb2 = total.div_ceil(per_rb);
            let rt2 = (rb2 * 8).div_ceil(CS);
            if (rb2, rt2) == (rb, rt) {
                break;
            }
            (rb, rt) = (rb2.max(rb), rt2.max(rt));
        }
        ExportPlan {
            size,
            present,
            l1_entries,
            l1_clusters,
            rt_clusters: rt,
            rb_clusters: rb,
            l2_clusters,
            data_clusters,
        }
    }

    fn l1_at(&self) -> u64 {
        1
    }
    fn rt_at(&self) -> u64 {
        self.l1_at() + self.l1_clusters
    }
    fn rb_at(&self) -> u64 {
        self.rt_at() + self.rt_clusters
    }
    fn l2_at(&self) -> u64 {
        self.rb_at() + self.rb_clusters
    }
    fn data_at(&self) -> u64 {
        self.l2_at() + self.l2_clusters
    }
    /// Clusters in the file.
    pub fn clusters(&self) -> u64 {
        self.data_at() + self.data_clusters
    }
    /// Bytes in the file.
    pub fn file_size(&self) -> u64 {
        self.clusters() * CS
    }

    fn header(&self) -> Vec<u8> {
        let mut h = vec![0u8; CS as usize];
        let mut put = |at: usize, b: &[u8]| h[at..at + b.len()].copy_from_slice(b);
        put(0, &super::MAGIC);
        put(4, &3u32.to_be_bytes());
        put(20, &CLUSTER_BITS.to_be_bytes());
        put(24, &self.size.to_be_bytes());
        put(36, &(self.l1_entries as u32).to_be_bytes());
        put(40, &(self.l1_at() * CS).to_be_bytes());
        put(48, &(self.rt_at() * CS).to_be_bytes());
        put(56, &(self.rt_clusters as u32).to_be_bytes());
        // No snapshots, no features; refcount_order; header_length 104,
        // then the end-of-extensions marker (type 0, length 0) at 104.
        put(96, &REFCOUNT_ORDER.to_be_bytes());
        put(100, &104u32.to_be_bytes());
        h
    }

    /// Entries (big-endian u64) padded to whole clusters.
    fn table(entries: impl Iterator<Item = u64>, clusters: u64) -> Vec<u8> {
        let mut t: Vec<u8> = entries.flat_map(u64::to_be_bytes).collect();
        t.resize((clusters * CS) as usize, 0);
        t
    }
}

/// Writes a qcow2 file of the `size` bytes `read(offset, buf)` gives, to
/// `sink` in order; reads every cluster twice (once to find the zero
/// ones). Returns the file's length.
pub fn export(
    size: u64,
    mut read: impl FnMut(u64, &mut [u8]) -> Result<()>,
    sink: &mut impl FnMut(&[u8]) -> Result<()>,
) -> Result<u64> {
    let n = size.div_ceil(CS);
    if n > (u32::MAX as u64) * (CS / 8) {
        return Err(StoreError::Qcow2(alloc::format!(
            "{size} bytes is too large to export"
        )));
    }
    let mut buf = vec![0u8; CS as usize];
    let mut chunk = |i: u64, buf: &mut [u8]| -> Result<()> {
        let at = i * CS;
        let len = (size - at).min(CS) as usize;
        buf[len..].fill(0);
        read(at, &mut buf[..len])
    };
    let mut present = Vec::with_capacity(n as usize);
    for i in 0..n {
        chunk(i, &mut buf)?;
        present.push(buf.iter().any(|&b| b != 0));
    }
    let plan = ExportPlan::new(size, present);
    let per_l2 = (CS / 8) as usize;
    sink(&plan.header())?;
    // L1: the L2 tables in order of the L1 entries that have one.
    let mut next_l2 = plan.l2_at();
    let l1 = plan.present.chunks(per_l2).map(|c| {
        if c.iter().any(|&p| p) {
            next_l2 += 1;
            ((next_l2 - 1) * CS) | COPIED
        } else {
            0
        }
    });
    sink(&ExportPlan::table(l1, plan.l1_clusters))?;
    let rt = (0..plan.rb_clusters).map(|i| (plan.rb_at() + i) * CS);
    sink(&ExportPlan::table(rt, plan.rt_clusters))?;
    // Refcount blocks: 1 for each cluster of the file, 0 beyond.
    let total = plan.clusters();
    for b in 0..plan.rb_clusters {
        let per_rb = CS / 2;
        let mut rb = vec![0u8; CS as usize];
        for j in 0..per_rb {
            if b * per_rb + j < total {
                rb[(j * 2) as usize..(j * 2 + 2) as usize].copy_from_slice(&1u16.to_be_bytes());
            }
        }
        sink(&rb)?;
    }
    let mut next_data = plan.data_at();
    for c in plan.present.chunks(per_l2) {
        if !c.iter().any(|&p| p) {
            continue;
        }
        let l2 = c.iter().map(|&p| {
            if p {
                next_data += 1;
                ((next_data - 1) * CS) | COPIED
            } else {
                0
            }
        });
        sink(&ExportPlan::table(l2, 1))?;
    }
    for i in 0..n {
        if plan.present[i as usize] {
            chunk(i, &mut buf)?;
            sink(&buf)?;
        }
    }
    Ok(plan.file_size())
}

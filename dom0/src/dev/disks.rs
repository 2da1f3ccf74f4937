//! dom0's disks: found at start, logged, and checked on request.
//!
//! Every PCI function a disk driver claims ([`super::claim`]) is opened if
//! an IOMMU translates its DMA (`PCI_CAP_IOMMU`; under `iommu=off-unsafe`
//! bus addresses are host-physical and the drivers would DMA to the wrong
//! memory, so the disk is named and left alone). One line per disk:
//! `disk 0000:00:04.0 nvme 64 MiB, 512-byte blocks, model "...",
//! completions by MSI-X entry 1 (port 5)` (or `completions polled (why)`,
//! `completion.rs`), or why it is not used; then `disks: N` (with `none
//! usable` when N is 0).
//!
//! The self-check runs when dom0's command line has
//! `diskcheck=<first-lba>+<blocks>`: on every disk it writes
//! [`pattern`] to those blocks, flushes, reads them back, compares, and
//! logs `disk <bdf> check ok (N blocks written and read, crc32 XXXXXXXX)`
//! where the CRC-32 (IEEE) is of the bytes written, or `check FAILED: ...`
//! naming what went wrong; then `disk <bdf> completion interrupts: N`, the
//! completion interrupts the disk has seen so far, counted whether or not
//! a wait was parked for them (`Completions::drain`; 0 when polled), with
//! `(D found pending after the check)`: those no wait took. A test then finds the same bytes in the disk's
//! image file at `first-lba * block size`.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use pvabi::{PCI_CAP_IOMMU, PciDevice};

use super::block::BlockDevice;
use super::{DevError, Driver, claim};
use crate::say;

/// Blocks per transfer of the self-check (bounds the buffer it takes).
const CHECK_CHUNK_BYTES: usize = 64 * 1024;

/// The disks found at start, as `hvctl host` lists them (the log line
/// without `disk `).
static LINES: spin::Mutex<Vec<String>> = spin::Mutex::new(Vec::new());

/// What `hvctl host` lists under `disks:`.
pub fn lines() -> Vec<String> {
    LINES.lock().clone()
}

/// Opens every disk among `devs`, logging each; `poll`: the command-line
/// option that forces polled completions (`disk=poll`, `wake=poll`).
pub fn open_all(devs: &[PciDevice], poll: Option<&str>) -> Vec<Box<dyn BlockDevice>> {
    let mut out: Vec<Box<dyn BlockDevice>> = Vec::new();
    for d in devs {
        let Some(driver) = claim(d) else { continue };
        let name = format!("{} {}", crate::pci::bdf(d.sbdf), crate::pci::kind(d));
        if driver == Driver::VirtioNet {
            continue;
        }
        if d.caps & PCI_CAP_IOMMU == 0 {
            say(&format!(
                "disk {name} not used: no IOMMU translates its DMA (iommu=off-unsafe), \
                 so bus addresses would not be dom0's"
            ));
            continue;
        }
        let opened: Result<Box<dyn BlockDevice>, DevError> = match driver {
            Driver::VirtioBlk => super::virtio_blk::VirtioBlk::open(d, poll)
                .map(|b| Box::new(b) as Box<dyn BlockDevice>),
            Driver::Nvme => {
                super::nvme::Nvme::open(d, poll).map(|b| Box::new(b) as Box<dyn BlockDevice>)
            }
            Driver::VirtioNet => continue,
        };
        match opened {
            Ok(b) => {
                let line = describe(b.as_ref());
                say(&format!("{line}, {}", b.completions().describe()));
                LINES.lock().push(line.trim_start_matches("disk ").into());
                out.push(b);
            }
            Err(e) => say(&format!("disk {e}: not used")),
        }
    }
    if out.is_empty() {
        say("disks: 0 (none usable)");
    } else {
        say(&format!("disks: {}", out.len()));
    }
    out
}

/// `disk 0000:00:04.0 nvme 64 MiB, 512-byte blocks, model "..."`.
pub fn describe(b: &dyn BlockDevice) -> String {
    let bytes = b.bytes();
    let size = if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{} GiB", bytes >> 30)
    } else if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes >> 10)
    };
    format!(
        "disk {} {} {size}, {}-byte blocks, model \"{}\"",
        b.bdf(),
        b.kind(),
        b.block_size(),
        b.model().escape_default()
    )
}

/// Parses `diskcheck=<first-lba>+<blocks>`.
pub fn parse_check(arg: &str) -> Option<(u64, u64)> {
    let (a, n) = arg.split_once('+')?;
    let (a, n) = (a.parse().ok()?, n.parse().ok()?);
    (n > 0).then_some((a, n))
}

/// The self-check's contents of block `lba` (`bs` bytes): the line
/// `kestrel disk check lba=<16 hex digits>\n`, then byte `i` of the block
/// is `(lba * 131 + i * 7) mod 251` (a test recomputes it).
pub fn pattern(lba: u64, block: &mut [u8]) {
    for (i, b) in block.iter_mut().enumerate() {
        *b = ((lba.wrapping_mul(131).wrapping_add(i as u64 * 7)) % 251) as u8;
    }
    let head = format!("kestrel disk check lba={lba:016x}\n");
    let n = head.len().min(block.len());
    block[..n].copy_from_slice(&head.as_bytes()[..n]);
}

/// Runs the self-check on `b` over `blocks` blocks from `first`; returns
/// the CRC-32 of what was written.
pub fn check(b: &mut dyn BlockDevice, first: u64, blocks: u64) -> Result<u32, DevError> {
    let bs = b.block_size();
    // The whole range first, so that nothing is written when it does not
    // fit (each transfer is checked again by the driver).
    if first.checked_add(blocks).is_none_or(|end| end > b.blocks()) {
        return Err(b.error(format!(
            "check range {first}..+{blocks} is beyond the disk's {} blocks",
            b.blocks()
        )));
    }
    let per = (CHECK_CHUNK_BYTES / bs).max(1) as u64;
    let mut crc = crc32fast::Hasher::new();
    let mut lba = first;
    while lba < first + blocks {
        let n = per.min(first + blocks - lba);
        let mut space = vec![0u8; n as usize * bs + 1];
        let buf = &mut space[skew(lba, first, per)..][..n as usize * bs];
        for (i, blk) in buf.chunks_mut(bs).enumerate() {
            pattern(lba + i as u64, blk);
        }
        b.write(lba, buf)?;
        crc.update(buf);
        lba += n;
    }
    b.flush()?;
    let mut lba = first;
    let mut want = vec![0u8; bs];
    while lba < first + blocks {
        let n = per.min(first + blocks - lba);
        let mut space = vec![0u8; n as usize * bs + 1];
        let buf = &mut space[skew(lba, first, per)..][..n as usize * bs];
        b.read(lba, buf)?;
        for (i, blk) in buf.chunks(bs).enumerate() {
            pattern(lba + i as u64, &mut want);
            if blk != want.as_slice() {
                let at = blk.iter().zip(&want).position(|(x, y)| x != y).unwrap_or(0);
                return Err(b.error(format!(
                    "block {} read back differs from what was written (first at byte {at}: {:#04x}, wrote {:#04x})",
                    lba + i as u64,
                    blk[at],
                    want[at]
                )));
            }
        }
        lba += n;
    }
    Ok(crc.finalize())
}

/// Where in its allocation the check's buffer for the chunk at `lba`
/// starts: byte 1 (not dword-aligned, so a driver that DMAs in place
/// must bounce it, nvme/xfer.rs) for every second chunk, byte 0 for the
/// others (in place), so that the check covers both ways.
fn skew(lba: u64, first: u64, per: u64) -> usize {
    (((lba - first) / per) % 2) as usize
}

/// Runs the self-check on every disk, logging each result.
pub fn check_all(disks: &mut [Box<dyn BlockDevice>], first: u64, blocks: u64) {
    for b in disks.iter_mut() {
        match check(b.as_mut(), first, blocks) {
            Ok(crc) => say(&format!(
                "disk {} check ok ({blocks} blocks written and read, crc32 {crc:08x})",
                b.bdf()
            )),
            Err(e) => say(&format!("disk {} check FAILED: {e}", b.bdf())),
        }
        // A completion MSI that came while nobody waited is still
        // pending: count it (completion.rs).
        b.completions_mut().drain();
        let c = b.completions();
        say(&format!(
            "disk {} completion interrupts: {} ({} found pending after the check)",
            b.bdf(),
            c.interrupts(),
            c.drained()
        ));
    }
}

//! A driver domain's driver (issue 14, docs/pci.md *Driver domains*):
//! run unprivileged with QEMU's `edu` device assigned to it by dom0
//! (`pci = [...]` in its configuration), behind an IOMMU, it
//!
//! 1. finds the device through `HC_PCI_LIST` (the list is its own: the
//!    device must be there, BAR0 mapped, `PCI_CAP_IOMMU` set);
//! 2. maps BAR0, turns memory space and bus mastering on;
//! 3. DMAs a pattern from its memory into edu's buffer and back to
//!    another page (QEMU docs/specs/edu.rst: 0x80 source, 0x88
//!    destination, 0x90 count, 0x98 command; bit 0 starts and clears when
//!    done, bit 1 = from the buffer at device address 0x40000 to memory),
//!    and checks the copy;
//! 4. binds edu's MSI to a port (`HC_PCI_MSI_BIND`: the owner's, not
//!    dom0's), runs one more transfer with the command's "raise an
//!    interrupt when done" bit (bit 2; status register 0x24, acknowledge
//!    0x64), waits (2 s at most) for the event on that port, acknowledges
//!    and unbinds;
//! 5. DMAs edu's buffer to `outside=<GPA>` (decimal), beyond its memory: the IOMMU
//!    must refuse it (the hypervisor logs the fault; the boot test also
//!    checks dom0's canary at that address) and its own pages must be as
//!    they were;
//! 6. starts one more transfer into its own memory and exits at once,
//!    the transfer in flight: the hypervisor must cut the device's DMA
//!    off before the domain's frames go back (`pci: ... DMA cut off`).
//!
//! Every line starts `edudma:`; the checks print `ok` or `FAILED`, the
//! last line counts them; the exit code is the number failed.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use kestrel_guests::{Checks, num_arg, raw};
use pvabi::guest::{evtchn, memory, mmio, pci, time};
use pvabi::{PCI_BAR_MAPPED, PCI_CAP_IOMMU, PCI_MSI, PciDevice};

pvabi::entry_point!(main);

static CHECKS: Checks = Checks::new("edudma");

/// edu's DMA buffer, as the device addresses it.
const EDU_BUF: u64 = 0x4_0000;
/// Bytes per transfer: QEMU 7.2's edu aborts QEMU on one that ends
/// exactly at its buffer's end (docs/iommu.md), so half of it.
const LEN: u64 = 2048;

/// One transfer; waits (2 s of system time at most) until edu says it is
/// done (it runs from a QEMU timer, 100 ms of virtual time later).
fn dma(m: &mmio::Mmio, src: u64, dst: u64, to_memory: bool) -> bool {
    start(m, src, dst, to_memory);
    let end = time::now_ns() + 2_000_000_000;
    while m.read32(0x98).unwrap_or(1) & 1 != 0 {
        if time::now_ns() > end {
            return false;
        }
        let _ = time::sleep_ns(1_000_000);
    }
    true
}

/// Programs and starts a transfer (32-bit accesses: edu takes them at
/// 0x80-0x98, and every address here is below 4 GiB).
fn start(m: &mmio::Mmio, src: u64, dst: u64, to_memory: bool) {
    start_cmd(m, src, dst, 1 | if to_memory { 2 } else { 0 });
}

fn start_cmd(m: &mmio::Mmio, src: u64, dst: u64, cmd: u32) {
    let _ = m.write32(0x80, src as u32);
    let _ = m.write32(0x88, dst as u32);
    let _ = m.write32(0x90, LEN as u32);
    let _ = m.write32(0x98, cmd);
}

/// Step 4: edu's MSI bound to a port of this domain, one transfer that
/// raises it when done, the event awaited on that port (2 s at most).
fn msi_event(m: &mmio::Mmio, sbdf: u32, src: u64) {
    let port = match pci::msi_bind(sbdf, PCI_MSI, 0) {
        Ok(p) => p,
        Err(e) => {
            pvabi::println!("edudma: MSI bind refused: {e}: FAILED");
            CHECKS.check("MSI bound", 0, 1);
            return;
        }
    };
    CHECKS.check("MSI bound", 1, 1);
    // Memory to edu's buffer: start, raise an interrupt when done.
    start_cmd(m, src, EDU_BUF, 1 | 4);
    let end = time::now_ns() + 2_000_000_000;
    let mut got = false;
    while !got && time::now_ns() < end {
        // Ok(false): another event woke this vCPU; wait again.
        got = evtchn::send_wait(None, port, Some(end)) == Ok(true);
    }
    // Acknowledge what edu raised (0x100: DMA done).
    let status = m.read32(0x24).unwrap_or(0);
    let _ = m.write32(0x64, status);
    if got {
        pvabi::println!(
            "edudma: MSI delivered as event on port {port} (interrupt status {status:#x})"
        );
    } else {
        pvabi::println!(
            "edudma: no event on port {port} within 2 s of the DMA's interrupt (status {status:#x}): FAILED"
        );
    }
    CHECKS.check("MSI delivered as an event", i64::from(got), 1);
    CHECKS.check("MSI unbound", i64::from(pci::msi_unbind(port).is_ok()), 1);
}

/// Word `i` of the pattern.
fn pattern(i: u64) -> u64 {
    0x6564_7500_0000_0000 ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn words_are(at: u64, f: impl Fn(u64) -> u64) -> bool {
    (0..LEN / 8).all(|i| raw::read(at + i * 8) == f(i))
}

fn main(si: &pvabi::StartInfo) -> i32 {
    let outside = num_arg(si, "outside", 0);
    let mut list = [PciDevice::default(); 8];
    let n = pci::list(&mut list, 0).unwrap_or(0);
    let Some(d) = list[..n]
        .iter()
        .find(|d| d.vendor == 0x1234 && d.device == 0x11e8)
    else {
        pvabi::println!("edudma: no edu among my {n} PCI functions: FAILED");
        return 1;
    };
    let bar = d.bars[0];
    pvabi::println!(
        "edudma: edu {:04x}:{:02x}:{:02x}.{:x} is mine (domain {}): BAR0 {:#x}+{:#x}{}{}",
        d.sbdf >> 16,
        (d.sbdf >> 8) & 0xff,
        (d.sbdf >> 3) & 31,
        d.sbdf & 7,
        si.domain_id,
        bar.base,
        bar.size,
        if bar.flags & PCI_BAR_MAPPED != 0 {
            " mapped"
        } else {
            " NOT MAPPED"
        },
        if d.caps & PCI_CAP_IOMMU != 0 {
            ", behind an IOMMU"
        } else {
            ", no IOMMU"
        }
    );
    let fenced = d.caps & PCI_CAP_IOMMU != 0;
    CHECKS.check("BAR0 mapped", i64::from(bar.flags & PCI_BAR_MAPPED), 2);
    CHECKS.check("behind an IOMMU", i64::from(fenced), 1);
    let (Ok(m), Some(free)) = (mmio::map(bar.base, 4096), memory::free_region()) else {
        pvabi::println!("edudma: BAR0 not mappable or no free memory: FAILED");
        return 1;
    };
    // Memory space and bus mastering on (command register bits 1, 2).
    if let Ok(cmd) = pci::config_read(d.sbdf, 4, 2) {
        let _ = pci::config_write(d.sbdf, 4, 2, cmd | 0b110);
    }
    CHECKS.check(
        "identification register",
        i64::from(m.read32(0).unwrap_or(0) & 0xff == 0xed),
        1,
    );
    // Three pages of its own: the pattern, the copy, the in-flight target.
    let (src, dst, last) = (free.start, free.start + 4096, free.start + 8192);
    for i in 0..LEN / 8 {
        raw::write(src + i * 8, pattern(i));
        raw::write(dst + i * 8, 0);
        raw::write(last + i * 8, 0);
    }
    // 3. Into edu's buffer and back, at guest-physical addresses.
    let there = dma(&m, src, EDU_BUF, false);
    let back = there && dma(&m, EDU_BUF, dst, true);
    CHECKS.check("DMA into edu's buffer and back done", i64::from(back), 1);
    let same = words_are(dst, pattern);
    pvabi::println!(
        "edudma: DMA round trip through edu at GPA {src:#x} -> {dst:#x}: {}",
        if same {
            "pattern arrived"
        } else {
            "WRONG BYTES"
        }
    );
    CHECKS.check("pattern arrived", i64::from(same), 1);
    // 4. edu's interrupt, as an event of this domain.
    msi_event(&m, d.sbdf, src);
    // 5. Outside its memory.
    if outside != 0 {
        let mem = si.memory_bytes;
        CHECKS.check(
            "outside= lies beyond my memory",
            i64::from(outside >= mem),
            1,
        );
        let done = dma(&m, EDU_BUF, outside, true);
        pvabi::println!(
            "edudma: DMA to GPA {outside:#x} outside my {} MiB: edu {}",
            mem >> 20,
            if done {
                "finished it"
            } else {
                "never finished"
            }
        );
        // A transfer the IOMMU refuses still completes at the device.
        CHECKS.check("outside DMA done at the device", i64::from(done), 1);
        let intact = words_are(src, pattern) && words_are(dst, pattern) && words_are(last, |_| 0);
        CHECKS.check(
            "own memory intact after the outside DMA",
            i64::from(intact),
            1,
        );
        // Give the hypervisor's fault poll (every 10 ms) time to log it.
        let _ = time::sleep_ns(50_000_000);
    }
    // 6. A transfer in flight as it ends.
    start(&m, EDU_BUF, last, true);
    let (checks, failed) = CHECKS.counts();
    pvabi::println!("edudma: {checks} checks, {failed} failed; exiting with a transfer in flight");
    failed as i32
}

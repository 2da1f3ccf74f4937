//! An MSI-X message delivered as an event (pvabi `HC_PCI_MSI_BIND` with
//! `PCI_MSIX`): run as the control domain behind an IOMMU (the NVMe's DMA
//! then uses guest-physical addresses), it binds entry 0 of the QEMU NVMe
//! controller's MSI-X table (the admin completion queue's vector, NVMe
//! 1.4 3.1.9 / 7.6.1), brings the controller up with an admin queue pair
//! in its own memory, submits Identify Controller and waits for the
//! completion's interrupt on the port (tests/tests/boot/msi.rs).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use kestrel_guests::raw;
use pvabi::guest::{evtchn, memory, mmio, pci, time};
use pvabi::{PCI_BAR_MAPPED, PCI_MSIX, PciDevice, sbdf};

pvabi::entry_point!(main);

const NVME: u32 = sbdf(0, 0, 5, 0);

fn say(s: &str) {
    pvabi::println!("msixnvme: {s}");
}

/// Waits until `f` holds or 2 s of system time pass.
fn until(mut f: impl FnMut() -> bool) -> bool {
    let end = time::now_ns() + 2_000_000_000;
    while time::now_ns() < end {
        if f() {
            return true;
        }
        let _ = time::sleep_ns(100_000);
    }
    f()
}

fn main(_si: &pvabi::StartInfo) -> i32 {
    let Some(free) = memory::free_region() else {
        say("no free memory");
        return 1;
    };
    // Three pages: submission queue, completion queue, identify data.
    let (sq, cq, data) = (free.start, free.start + 4096, free.start + 8192);
    for a in (sq..sq + 3 * 4096).step_by(8) {
        raw::write(a, 0);
    }
    let mut list = [PciDevice::default(); 8];
    let n = pci::list(&mut list, 0).unwrap_or(0);
    let Some(bar) = list[..n]
        .iter()
        .find(|d| d.sbdf == NVME)
        .map(|d| d.bars[0])
        .filter(|b| b.flags & PCI_BAR_MAPPED != 0)
    else {
        say("BAR0 not mapped");
        return 1;
    };
    // Registers and the first doorbells (the MSI-X table's pages are not
    // the guest's: they are never mapped).
    let Ok(m) = mmio::map(bar.base, 0x2000) else {
        say("BAR0 map failed");
        return 1;
    };
    let port = match pci::msi_bind(NVME, PCI_MSIX, 0) {
        Ok(p) => p,
        Err(e) => {
            pvabi::println!("msixnvme: bind failed: {e}");
            return 1;
        }
    };
    if let Ok(cmd) = pci::config_read(NVME, 4, 2) {
        let _ = pci::config_write(NVME, 4, 2, cmd | 0x6);
    }
    let stride = 4u64 << ((m.read32(0x04).unwrap_or(0)) & 0xf); // CAP.DSTRD
    // Disable, set the admin queues (2 entries each), enable (NVMe 1.4 7.6.1).
    let _ = m.write32(0x14, 0);
    if !until(|| m.read32(0x1c).unwrap_or(1) & 1 == 0) {
        say("controller never stopped");
        return 1;
    }
    let _ = m.write32(0x24, 1 << 16 | 1); // AQA: ACQS = ASQS = 2 entries
    let _ = m.write32(0x28, sq as u32);
    let _ = m.write32(0x2c, (sq >> 32) as u32);
    let _ = m.write32(0x30, cq as u32);
    let _ = m.write32(0x34, (cq >> 32) as u32);
    let _ = m.write32(0x14, 4 << 20 | 6 << 16 | 1); // IOCQES 4, IOSQES 6, EN
    if !until(|| m.read32(0x1c).unwrap_or(0) & 1 == 1) {
        say("controller never ready");
        return 1;
    }
    // Identify Controller: opcode 0x06, CID 1, PRP1 = data, CNS = 1.
    raw::write(sq, 0x0001_0006);
    raw::write(sq + 24, data);
    raw::write(sq + 40, 1);
    let _ = m.write32(0x1000, 1); // SQ0 tail
    let got = evtchn::send_wait(None, port, Some(time::now_ns() + 2_000_000_000)) == Ok(true);
    // The completion: phase tag 1, status 0, CID 1.
    let dw3 = (raw::read(cq + 8) >> 32) as u32;
    let ok = dw3 & 1 << 16 != 0 && dw3 >> 17 == 0 && dw3 & 0xffff == 1;
    let vid = raw::read(data) as u16;
    let _ = m.write32(0x1000 + stride, 1); // CQ0 head
    pvabi::println!(
        "msixnvme: identify completion {} (vendor {vid:#06x}); msix entry 0 -> port {port}: {}",
        if ok { "ok" } else { "BAD" },
        if got { "event delivered" } else { "NO EVENT" }
    );
    let unbound = pci::msi_unbind(port).is_ok();
    say(if unbound { "unbound" } else { "unbind FAILED" });
    i32::from(!(ok && got && unbound))
}

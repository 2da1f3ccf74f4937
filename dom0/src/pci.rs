//! dom0's PCI devices: at start it lists what the hypervisor gave it,
//! reads a config register of each through the filtered hypercall, and
//! reaches the registers of the devices it knows through a mapped BAR
//! (`docs/pci.md`): an NVMe controller's version register, the QEMU `edu`
//! device's identification and liveness registers. That proves the whole
//! path (assignment, BAR mapping at GPA = HPA, uncached) before the
//! drivers of issue 14 arrive.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use pvabi::guest::{mmio, pci};
use pvabi::{PCI_BAR_IO, PCI_BAR_MAPPED, PCI_BAR_MEM32, PciDevice};

use crate::say;

/// A name for the log, from vendor/device and class.
pub fn kind(d: &PciDevice) -> &'static str {
    match (d.vendor, d.device, d.class, d.subclass) {
        (0x1af4, 0x1001 | 0x1042, ..) => "virtio-blk",
        (0x1af4, 0x1000 | 0x1041, ..) => "virtio-net",
        (0x1af4, ..) => "virtio",
        (0x1234, 0x11e8, ..) => "edu",
        (_, _, 0x01, 0x08) => "nvme",
        (_, _, 0x01, 0x06) => "sata",
        (_, _, 0x01, _) => "storage",
        (_, _, 0x02, _) => "network",
        (_, _, 0x03, _) => "display",
        (_, _, 0x0c, 0x03) => "usb",
        (_, _, 0x0c, 0x05) => "smbus",
        _ => "device",
    }
}

/// `SSSS:BB:DD.F` of an SBDF word (the configuration's `pci = [...]`
/// spelling).
pub use kestrel_toolstack::config::pci::show_bdf as bdf;

/// One line per device.
pub fn describe(d: &PciDevice) -> String {
    let mut s = format!(
        "pci {} {:04x}:{:04x} {}",
        bdf(d.sbdf),
        d.vendor,
        d.device,
        kind(d)
    );
    for b in d.bars.iter().take(usize::from(d.nr_bars)) {
        let k = match b.kind {
            PCI_BAR_IO => "io",
            PCI_BAR_MEM32 => "mem32",
            _ => "mem64",
        };
        let m = if b.flags & PCI_BAR_MAPPED != 0 {
            " mapped"
        } else {
            ""
        };
        let _ = write!(s, " BAR{} {k} {:#x}+{:#x}{m}", b.index, b.base, b.size);
    }
    s
}

/// Every device dom0 owns.
pub fn devices() -> Vec<PciDevice> {
    let mut out = Vec::new();
    let mut buf = [PciDevice::default(); 8];
    loop {
        match pci::list(&mut buf, out.len() as u32) {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// The first mapped memory BAR with index `index`, mapped into dom0.
fn bar(d: &PciDevice, index: u8) -> Option<mmio::Mmio> {
    let b = d
        .bars
        .iter()
        .take(usize::from(d.nr_bars))
        .find(|b| b.index == index && b.kind != PCI_BAR_IO && b.flags & PCI_BAR_MAPPED != 0)?;
    // The first page holds the registers read below.
    match mmio::map(b.base, 4096) {
        Ok(m) => Some(m),
        Err(e) => {
            say(&format!("pci {}: BAR{index}: {e}", bdf(d.sbdf)));
            None
        }
    }
}

/// Lists dom0's devices and proves access to each.
pub fn show() {
    let devs = devices();
    say(&format!("pci: {} devices", devs.len()));
    for d in &devs {
        say(&describe(d));
        // Config space through the hypercall: the ids again, and the
        // command register.
        match (
            pci::config_read(d.sbdf, 0, 4),
            pci::config_read(d.sbdf, 4, 2),
        ) {
            (Ok(id), Ok(cmd)) => {
                let ok = id == (u32::from(d.device) << 16 | u32::from(d.vendor));
                say(&format!(
                    "pci {} config: id {:08x} ({}), command {cmd:#06x}",
                    bdf(d.sbdf),
                    id,
                    if ok { "matches" } else { "MISMATCH" }
                ));
            }
            (a, b) => say(&format!(
                "pci {} config read failed: {a:?} {b:?}",
                bdf(d.sbdf)
            )),
        }
        match kind(d) {
            "nvme" => {
                // NVMe 1.4 3.1: VS at BAR0 + 0x08 (major 31:16, minor 15:8).
                if let Some(vs) = bar(d, 0).and_then(|m| m.read32(0x08)) {
                    say(&format!(
                        "pci {} nvme: version {}.{} through BAR0",
                        bdf(d.sbdf),
                        vs >> 16,
                        (vs >> 8) & 0xff
                    ));
                }
            }
            "edu" => {
                // QEMU docs/specs/edu.rst: 0x00 identification
                // 0xRRrr00edu, 0x04 liveness (reads back the inverse).
                if let Some(m) = bar(d, 0) {
                    let id = m.read32(0).unwrap_or(0);
                    let _ = m.write32(4, 0x1234_5678);
                    let live = m.read32(4).unwrap_or(0);
                    say(&format!(
                        "pci {} edu: id {id:#010x}, liveness {:#010x} through BAR0",
                        bdf(d.sbdf),
                        live
                    ));
                }
            }
            "display" => {
                // A frame buffer: any word proves the mapping (no kill).
                if let Some(v) = bar(d, 0).and_then(|m| m.read32(0)) {
                    say(&format!(
                        "pci {} display: BAR0 word 0 = {v:#010x} through the mapping",
                        bdf(d.sbdf)
                    ));
                }
            }
            _ => {}
        }
    }
}

//! A forged interrupt message (issue 14, interrupt remapping): run as the
//! control domain behind an IOMMU, it binds the QEMU `edu` device's MSI
//! and checks that one raised interrupt arrives as an event; then it
//! drives the edu's DMA engine (QEMU docs/specs/edu.rst: 0x80 source,
//! 0x88 destination, 0x90 count, 0x98 command: bit 0 start, cleared when
//! done; bit 1 set = from the edu's buffer at device address 0x40000 to
//! memory) to write a message of its own making to the interrupt range:
//! first its data word from its own memory into the edu's buffer, then
//! from the buffer to `FORGED_ADDR`. The hypervisor's remapping must stop
//! it (tests/tests/boot/intremap.rs): no vector arrives.
//!
//! The forged message is in the remappable format (VT-d 5.1.2.2) naming
//! interrupt index `FORGED_INDEX`, which no binding uses, with data
//! `FORGED_VECTOR`; without remapping the APIC takes it as a
//! compatibility-format message for APIC 0 with that vector (address
//! bits 19:12 = 0, bit 2 = 0: physical), which the hypervisor logs as a
//! vector with no message bound. The machine needs `edu,dma_mask=...`
//! wide enough for 0xFEEx_xxxx (QEMU's default is 28 bits).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use kestrel_guests::raw;
use pvabi::guest::{evtchn, memory, mmio, pci, time};
use pvabi::{PCI_BAR_MAPPED, PCI_MSI, PciDevice, sbdf};

pvabi::entry_point!(main);

const EDU: u32 = sbdf(0, 0, 6, 0);
const EDU_BUF: u64 = 0x4_0000;
/// IRTE index 0x7f, remappable format: 0FEEh, handle in bits 19:5, bit 4.
const FORGED_INDEX: u64 = 0x7f;
const FORGED_ADDR: u64 = 0xfee0_0000 | FORGED_INDEX << 5 | 1 << 4;
/// A vector the hypervisor hands out last (0x40 up): never bound here.
const FORGED_VECTOR: u32 = 0xd0;

fn say(s: &str) {
    pvabi::println!("msiforge: {s}");
}

/// Runs one edu DMA transfer and waits for it (2 s of system time).
/// The registers take 32-bit writes (the addresses here are below 4 GiB).
fn dma(m: &mmio::Mmio, src: u64, dst: u64, len: u32, to_memory: bool) -> bool {
    let _ = m.write32(0x80, src as u32);
    let _ = m.write32(0x88, dst as u32);
    let _ = m.write32(0x90, len);
    let _ = m.write32(0x98, 1 | u32::from(to_memory) << 1);
    let end = time::now_ns() + 2_000_000_000;
    while time::now_ns() < end {
        if m.read32(0x98).unwrap_or(1) & 1 == 0 {
            return true;
        }
        let _ = time::sleep_ns(100_000);
    }
    false
}

fn main(_si: &pvabi::StartInfo) -> i32 {
    let Some(free) = memory::free_region() else {
        say("no free memory");
        return 1;
    };
    let mut list = [PciDevice::default(); 8];
    let n = pci::list(&mut list, 0).unwrap_or(0);
    let Some(bar) = list[..n]
        .iter()
        .find(|d| d.sbdf == EDU)
        .map(|d| d.bars[0])
        .filter(|b| b.flags & PCI_BAR_MAPPED != 0)
    else {
        say("edu BAR0 not mapped");
        return 1;
    };
    let Ok(m) = mmio::map(bar.base, 4096) else {
        say("edu BAR0 map failed");
        return 1;
    };
    let port = match pci::msi_bind(EDU, PCI_MSI, 0) {
        Ok(p) => p,
        Err(e) => {
            pvabi::println!("msiforge: bind failed: {e}");
            return 1;
        }
    };
    if let Ok(cmd) = pci::config_read(EDU, 4, 2) {
        let _ = pci::config_write(EDU, 4, 2, cmd | 0x6);
    }
    // The bound message works: one interrupt, one event.
    let _ = m.write32(0x60, 1);
    let got = evtchn::send_wait(None, port, Some(time::now_ns() + 2_000_000_000)) == Ok(true);
    let _ = m.write32(0x64, m.read32(0x24).unwrap_or(0));
    pvabi::println!(
        "msiforge: edu msi -> port {port}: {}",
        if got { "event delivered" } else { "NO EVENT" }
    );
    // The forgery: the data word into the edu's buffer, then out to the
    // interrupt range.
    raw::write(free.start, u64::from(FORGED_VECTOR));
    let staged = dma(&m, free.start, EDU_BUF, 4, false);
    let sent = staged && dma(&m, EDU_BUF, FORGED_ADDR, 4, true);
    pvabi::println!(
        "msiforge: forged message {FORGED_ADDR:#x} data {FORGED_VECTOR:#x} written by the edu's DMA: {}",
        if sent { "done" } else { "DMA did not finish" }
    );
    // Give a delivered vector time to be seen and logged.
    let _ = time::sleep_ns(50_000_000);
    let unbound = pci::msi_unbind(port).is_ok();
    say(if unbound { "unbound" } else { "unbind FAILED" });
    i32::from(!(got && sent && unbound))
}

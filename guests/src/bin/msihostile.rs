//! Device interrupts as events, attacked (pvabi `HC_PCI_MSI_BIND`,
//! unreleased): run as the control domain, so the hypervisor gives it the
//! QEMU `edu` (00:06.0, MSI) and NVMe (00:05.0, MSI-X) functions. It binds
//! what it may not (a bridge the hypervisor keeps, a missing function, a
//! capability the device lacks, an entry past the table, bad arguments),
//! the same message twice, more than its limit, and frees a message port
//! the wrong ways: each must fail with the documented error, and the edu's
//! binding must still deliver exactly the interrupts the device raised
//! (tests/tests/boot/msi.rs). It ends with the edu's MSI still bound, so
//! the domain's end must disable it.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use kestrel_guests::Checks;
use pvabi::guest::{evtchn, mmio, pci, time};
use pvabi::{
    EBUSY, EINVAL, ENOENT, ENOMEM, EPERM, EVTCHN_STATE_FREE, EVTCHN_STATE_MSI, HC_PCI_MSI_BIND,
    HC_PCI_MSI_UNBIND, PCI_BAR_MAPPED, PCI_MSI, PCI_MSI_MAX_BOUND, PCI_MSIX, PciDevice, sbdf,
};

pvabi::entry_point!(main);

static CHECKS: Checks = Checks::new("msihostile");

fn code<T>(r: Result<T, pvabi::Error>) -> i64 {
    r.map_or_else(|e| e.code(), |_| 0)
}

const EDU: u32 = sbdf(0, 0, 6, 0);
const NVME: u32 = sbdf(0, 0, 5, 0);
const BRIDGE: u32 = sbdf(0, 0, 0, 0);

/// Raises `n` edu interrupts one at a time; returns how many arrived as
/// an event on `port` (each waited for up to 2 s of system time).
fn raise(m: &mmio::Mmio, port: u32, n: u32) -> u32 {
    let mut got = 0;
    for _ in 0..n {
        let _ = m.write32(0x60, 1);
        let deadline = time::now_ns() + 2_000_000_000;
        loop {
            match evtchn::send_wait(None, port, Some(deadline)) {
                Ok(true) => {
                    got += 1;
                    break;
                }
                Ok(false) if time::now_ns() < deadline => {}
                _ => break,
            }
        }
        let _ = m.write32(0x64, 1);
    }
    got
}

fn main(_si: &pvabi::StartInfo) -> i32 {
    let raw = |nr, a: [u64; 6]| code(pci::raw(nr, a));
    let e = u64::from(EDU);
    // Arguments first.
    CHECKS.check("kind 0", raw(HC_PCI_MSI_BIND, [e, 0, 0, 0, 0, 0]), EINVAL);
    CHECKS.check("kind 3", raw(HC_PCI_MSI_BIND, [e, 3, 0, 0, 0, 0]), EINVAL);
    CHECKS.check(
        "msi entry 1",
        raw(HC_PCI_MSI_BIND, [e, PCI_MSI, 1, 0, 0, 0]),
        EINVAL,
    );
    CHECKS.check(
        "msix entry 2048",
        raw(HC_PCI_MSI_BIND, [u64::from(NVME), PCI_MSIX, 2048, 0, 0, 0]),
        EINVAL,
    );
    CHECKS.check(
        "sbdf above 32 bits",
        raw(HC_PCI_MSI_BIND, [1 << 32, PCI_MSI, 0, 0, 0, 0]),
        EINVAL,
    );
    // Then the function, then ownership, then the capability.
    CHECKS.check(
        "no such function",
        code(pci::msi_bind(sbdf(0, 0, 0x1e, 0), PCI_MSI, 0)),
        ENOENT,
    );
    CHECKS.check(
        "the hypervisor's bridge",
        code(pci::msi_bind(BRIDGE, PCI_MSI, 0)),
        EPERM,
    );
    CHECKS.check(
        "edu has no msix",
        code(pci::msi_bind(EDU, PCI_MSIX, 0)),
        EINVAL,
    );
    CHECKS.check(
        "entry past the nvme table",
        code(pci::msi_bind(NVME, PCI_MSIX, 2047)),
        EINVAL,
    );
    // One binding per message.
    let port = match pci::msi_bind(EDU, PCI_MSI, 0) {
        Ok(p) => p,
        Err(e) => {
            pvabi::println!("msihostile: edu msi bind failed: {e}");
            return 1;
        }
    };
    CHECKS.check("edu msi twice", code(pci::msi_bind(EDU, PCI_MSI, 0)), EBUSY);
    CHECKS.check(
        "status: a message port",
        evtchn::status_of(port).map_or(-1, |s| i64::from(s.state)),
        i64::from(EVTCHN_STATE_MSI),
    );
    CHECKS.check("close instead of unbind", code(evtchn::close(port)), EBUSY);
    CHECKS.check("send on it", code(evtchn::send(port)), EINVAL);
    CHECKS.check("unbind port 0", code(pci::msi_unbind(0)), ENOENT);
    let ipi = evtchn::bind_ipi(0).unwrap_or(0);
    CHECKS.check("unbind an ipi port", code(pci::msi_unbind(ipi)), ENOENT);
    CHECKS.check(
        "unbind port above 32 bits",
        raw(HC_PCI_MSI_UNBIND, [1 << 32, 0, 0, 0, 0, 0]),
        EINVAL,
    );
    // The limit: the edu's one and the NVMe's entries up to it.
    let mut nv = [0u32; PCI_MSI_MAX_BOUND as usize];
    let mut ok = 0;
    for (i, p) in nv
        .iter_mut()
        .enumerate()
        .take(PCI_MSI_MAX_BOUND as usize - 1)
    {
        if let Ok(q) = pci::msi_bind(NVME, PCI_MSIX, i as u32) {
            *p = q;
            ok += 1;
        }
    }
    CHECKS.check("nvme entries bound", ok, i64::from(PCI_MSI_MAX_BOUND) - 1);
    CHECKS.check(
        "one over the limit",
        code(pci::msi_bind(NVME, PCI_MSIX, 40)),
        ENOMEM,
    );
    CHECKS.check(
        "nvme entry 3 twice",
        code(pci::msi_bind(NVME, PCI_MSIX, 3)),
        EBUSY,
    );
    let mut freed = 0;
    for &p in nv.iter().filter(|&&p| p != 0) {
        freed += i64::from(pci::msi_unbind(p).is_ok());
    }
    CHECKS.check(
        "nvme entries unbound",
        freed,
        i64::from(PCI_MSI_MAX_BOUND) - 1,
    );
    // Nothing of that changed the edu's binding: it delivers.
    let mut list = [PciDevice::default(); 8];
    let n = pci::list(&mut list, 0).unwrap_or(0);
    let Some(bar) = list[..n]
        .iter()
        .find(|d| d.sbdf == EDU)
        .map(|d| d.bars[0])
        .filter(|b| b.flags & PCI_BAR_MAPPED != 0)
    else {
        pvabi::println!("msihostile: edu BAR0 not mapped");
        return 1;
    };
    let Ok(m) = mmio::map(bar.base, 4096) else {
        pvabi::println!("msihostile: edu BAR0 map failed");
        return 1;
    };
    if let Ok(cmd) = pci::config_read(EDU, 4, 2) {
        let _ = pci::config_write(EDU, 4, 2, cmd | 0x6);
    }
    CHECKS.check("edu interrupts delivered", i64::from(raise(&m, port, 5)), 5);
    // Masked: no event while masked; unmasking delivers the one pending.
    let _ = evtchn::mask(port);
    let _ = m.write32(0x60, 1);
    let _ = m.write32(0x64, 1);
    let _ = evtchn::unmask(port);
    CHECKS.check(
        "pending while masked, delivered on unmask",
        i64::from(evtchn::send_wait(None, port, Some(time::now_ns() + 2_000_000_000)) == Ok(true)),
        1,
    );
    CHECKS.check("unbind", code(pci::msi_unbind(port)), 0);
    CHECKS.check("unbind again", code(pci::msi_unbind(port)), ENOENT);
    CHECKS.check(
        "status: free",
        evtchn::status_of(port).map_or(-1, |s| i64::from(s.state)),
        i64::from(EVTCHN_STATE_FREE),
    );
    // Unbound: the device's interrupt reaches no port.
    let _ = m.write32(0x60, 1);
    let _ = m.write32(0x64, 1);
    // Bound again (a vector given back is reused): delivers again, and is
    // left bound for the domain's end to release.
    let again = pci::msi_bind(EDU, PCI_MSI, 0).unwrap_or(0);
    CHECKS.check("bound again", i64::from(again != 0), 1);
    CHECKS.check("delivers again", i64::from(raise(&m, again, 2)), 2);
    let (n, failed) = CHECKS.counts();
    pvabi::println!("msihostile: {n} checks, {failed} failed");
    i32::from(failed != 0)
}

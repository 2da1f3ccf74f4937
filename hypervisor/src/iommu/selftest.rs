//! `selftest=iommu-dma`: proves from inside a QEMU machine that the IOMMU
//! fences DMA, with QEMU's `edu` device (QEMU docs/specs/edu.rst: BAR0
//! registers 0x80 source, 0x88 destination, 0x90 count, 0x98 command;
//! bit 0 starts a transfer and clears when it is done, bit 1 set = from
//! its 4 KiB buffer at device address 0x40000 to memory).
//!
//! (a) blocked by default: edu writes its buffer over a hypervisor frame;
//! (b) attached to a scratch domain: a pattern round-trips through edu
//!     into the frame behind the right guest-physical address, and a
//!     write outside the domain's space faults and changes nothing;
//! (c) detached: the same write is blocked again.
//! Every line starts `iommu-selftest:`; the last says PASS or FAIL.
//! Without an IOMMU, (a) lands and the test says so (the control run).
//!
//! The device is found with legacy 0xCF8/0xCFC configuration access on
//! bus 0 (PCI Local Bus 3.0, 3.2.2.3.2), enough for QEMU; `pci/` brings
//! ECAM enumeration.

use x86_64::instructions::port::Port;

use super::dmar::rid;
use crate::arch::{frames, percpu};
use crate::domain::ids::DomainId;
use crate::domain::memory::{CHUNK, DomainMemory};

const EDU_VENDOR: u32 = 0x1234;
const EDU_DEVICE: u32 = 0x11e8;
const EDU_BUF: u64 = 0x4_0000;
const LEN: u64 = 4096;
/// Bytes per transfer: QEMU 7.2's edu refuses (aborts QEMU on) a transfer
/// that ends exactly at its buffer's end, so use half of it.
const DMA_LEN: u64 = 2048;

fn cfg_addr(bus: u8, dev: u8, func: u8, off: u8) -> u32 {
    0x8000_0000
        | u32::from(bus) << 16
        | u32::from(dev) << 11
        | u32::from(func) << 8
        | u32::from(off & 0xfc)
}

fn cfg_read(bus: u8, dev: u8, func: u8, off: u8) -> u32 {
    // SAFETY: ports 0xCF8/0xCFC are the host bridge's configuration
    // mechanism #1; the boot CPU is the only user during the self-test.
    unsafe {
        Port::<u32>::new(0xcf8).write(cfg_addr(bus, dev, func, off));
        Port::<u32>::new(0xcfc).read()
    }
}

fn cfg_write(bus: u8, dev: u8, func: u8, off: u8, v: u32) {
    // SAFETY: as in `cfg_read`; only the edu device's command register
    // is written.
    unsafe {
        Port::<u32>::new(0xcf8).write(cfg_addr(bus, dev, func, off));
        Port::<u32>::new(0xcfc).write(v);
    }
}

struct Edu {
    bar: u64,
}

impl Edu {
    fn reg(&self, off: u64) -> *mut u64 {
        (self.bar + off) as *mut u64
    }

    fn w(&self, off: u64, v: u64) {
        // SAFETY: edu's BAR0 lies in the uncached MMIO hole below 4 GiB,
        // identity-mapped (checked in `find`); 0x80..0xa0 are its DMA
        // registers, written with 8-byte accesses as edu accepts.
        unsafe { core::ptr::write_volatile(self.reg(off), v) }
    }

    fn r(&self, off: u64) -> u64 {
        // SAFETY: as in `w`.
        unsafe { core::ptr::read_volatile(self.reg(off)) }
    }

    /// One transfer; waits until edu says it is done (its DMA runs from
    /// a timer 100 ms of QEMU's virtual time later). False on timeout.
    fn dma(&self, src: u64, dst: u64, to_memory: bool) -> bool {
        self.w(0x80, src);
        self.w(0x88, dst);
        self.w(0x90, DMA_LEN);
        self.w(0x98, 1 | if to_memory { 2 } else { 0 });
        let start = ticks();
        while self.r(0x98) & 1 != 0 {
            if ticks() - start > 1000 {
                return false;
            }
            core::hint::spin_loop();
        }
        true
    }
}

fn ticks() -> u64 {
    percpu::this_cpu()
        .ticks
        .load(core::sync::atomic::Ordering::Relaxed)
}

fn find() -> Option<(u16, Edu)> {
    for dev in 0..32u8 {
        let id = cfg_read(0, dev, 0, 0);
        if id & 0xffff == EDU_VENDOR && id >> 16 == EDU_DEVICE {
            let bar = u64::from(cfg_read(0, dev, 0, 0x10) & !0xf);
            println!("iommu-selftest: edu at 00:{dev:02x}.0, BAR0 {bar:#x}");
            if bar == 0 || !crate::arch::physmem::is_mapped(bar, 0x1000) {
                println!("iommu-selftest: edu BAR0 unassigned or unmapped");
                return None;
            }
            // Memory space and bus mastering on (command register bits 1, 2).
            let cmd = cfg_read(0, dev, 0, 4);
            cfg_write(0, dev, 0, 4, (cmd & 0xffff) | 0b110);
            return Some((rid(0, dev, 0), Edu { bar }));
        }
    }
    println!("iommu-selftest: no edu device (QEMU -device edu)");
    None
}

macro_rules! println {
    ($($arg:tt)*) => { crate::println!($($arg)*) };
}
use println;

fn fill(hpa: u64, byte: u8) {
    // SAFETY: `hpa` is a frame this test owns (its own or the scratch
    // domain's), identity-mapped.
    unsafe { core::ptr::write_bytes(hpa as *mut u8, byte, LEN as usize) }
}

/// Whether every byte a transfer reaches at `hpa` is `byte`.
fn all(hpa: u64, byte: u8) -> bool {
    // SAFETY: as in `fill`; DMA has completed (edu said so).
    let s = unsafe { core::slice::from_raw_parts(hpa as *const u8, DMA_LEN as usize) };
    s.iter().all(|b| *b == byte)
}

fn check(ok: &mut bool, what: &str, held: bool) {
    println!(
        "iommu-selftest: {what}: {}",
        if held { "ok" } else { "FAILED" }
    );
    *ok &= held;
}

/// A fault-log check. QEMU 7.2's AMD-Vi never writes its event log
/// (`amdvi_test_mask` ORs where it should AND, so `amdvi_log_event`
/// always returns early; fixed upstream after 7.2), so under AMD-Vi the
/// count is reported, not required; the boot test checks QEMU's own
/// trace of the unit's page faults instead.
fn check_fault(ok: &mut bool, what: &str, faults: usize) {
    if super::vendor() == Some("AMD-Vi") {
        println!(
            "iommu-selftest: {what}: {faults} logged (not required: QEMU 7.2 AMD-Vi writes no events)"
        );
    } else {
        check(ok, what, faults > 0);
    }
}

/// Runs the test; true if every check held.
pub fn run() -> bool {
    let present = super::present();
    println!(
        "iommu-selftest: IOMMU {}",
        super::vendor().unwrap_or("absent")
    );
    let Some((rid, edu)) = find() else {
        println!("iommu-selftest: FAIL");
        return false;
    };
    let mut ok = true;
    // 2 MiB aligned, so never below 2 MiB: its address is not a GPA of
    // the one-chunk scratch domain below.
    let Some(victim) = frames::alloc_aligned(1, CHUNK) else {
        println!("iommu-selftest: no frame; FAIL");
        return false;
    };
    // (a) edu's buffer (zeros at power-on) over a hypervisor frame.
    fill(victim, 0xaa);
    super::poll_faults();
    let done = edu.dma(EDU_BUF, victim, true);
    let faults = super::poll_faults();
    let intact = all(victim, 0xaa);
    println!(
        "iommu-selftest: hostile DMA into hypervisor frame {victim:#x}: {}",
        if intact { "blocked" } else { "LANDED" }
    );
    check(&mut ok, "edu finished the hostile transfer", done);
    check(&mut ok, "hypervisor frame unchanged", intact);
    if present {
        check_fault(&mut ok, "fault logged for the hostile DMA", faults);
    } else {
        check(&mut ok, "fault logged for the hostile DMA", faults > 0);
    }
    if !present {
        println!("iommu-selftest: FAIL");
        return false;
    }

    // (b) a scratch domain of one 2 MiB chunk.
    let dom = DomainId(0x7fff_0000);
    let Some(mem) = DomainMemory::new(CHUNK) else {
        println!("iommu-selftest: no memory for the scratch domain; FAIL");
        return false;
    };
    let (Some(src), Some(dst)) = (mem.frame(0x1000), mem.frame(0x2000)) else {
        println!("iommu-selftest: scratch domain without frames; FAIL");
        return false;
    };
    check(
        &mut ok,
        "victim frame outside the scratch domain's GPA range",
        victim >= CHUNK,
    );
    if let Err(e) = super::attach(0, rid, dom, &mem) {
        println!("iommu-selftest: attach failed: {e}; FAIL");
        return false;
    }
    fill(src, 0x5a);
    check(
        &mut ok,
        "edu read GPA 0x1000",
        edu.dma(0x1000, EDU_BUF, false),
    );
    check(
        &mut ok,
        "edu wrote GPA 0x2000",
        edu.dma(EDU_BUF, 0x2000, true),
    );
    check(
        &mut ok,
        "pattern arrived in the frame behind GPA 0x2000",
        all(dst, 0x5a),
    );
    check(
        &mut ok,
        "no fault for DMA inside the domain",
        super::poll_faults() == 0,
    );
    // Outside the domain: the victim's host address is not a GPA it owns.
    fill(victim, 0xaa);
    edu.dma(EDU_BUF, victim, true);
    check_fault(
        &mut ok,
        "DMA outside the domain faulted",
        super::poll_faults(),
    );
    check(&mut ok, "hypervisor frame unchanged", all(victim, 0xaa));

    // (c) detached: blocked again; the domain's frame keeps its zeros.
    if let Err(e) = super::detach(0, rid) {
        println!("iommu-selftest: detach failed: {e}; FAIL");
        return false;
    }
    fill(dst, 0);
    edu.dma(EDU_BUF, 0x2000, true);
    check_fault(&mut ok, "DMA after detach faulted", super::poll_faults());
    check(&mut ok, "domain frame unchanged after detach", all(dst, 0));
    drop(mem);
    frames::free_frames(victim, 1);
    println!("iommu-selftest: {}", if ok { "PASS" } else { "FAIL" });
    ok
}

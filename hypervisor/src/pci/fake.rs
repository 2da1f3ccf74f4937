//! A fake configuration space for host tests: functions with BARs that
//! size like hardware (only the address bits above the size stick), and
//! the fixtures the PCI tests share (addresses on bus 0, the functions
//! they put there, device-table entries).

use std::cell::RefCell;
use std::collections::BTreeMap;

use super::assign::{Fence, Keep};
use super::header::{Caps, Function};
use super::table::Device;
use super::walk::Segment;
use super::{Bdf, ConfigAccess};

/// Device `dev`, function 0, on bus 0 of segment 0: where the fixtures put
/// their functions.
pub fn bdf(dev: u8) -> Bdf {
    Bdf {
        seg: 0,
        bus: 0,
        dev,
        func: 0,
    }
}

/// Segment 0, bus 0 alone: what the fixtures walk.
pub const BUS0: [Segment; 1] = [Segment {
    seg: 0,
    bus_start: 0,
    bus_end: 0,
}];

/// Where [`FakeFn::virtio`]'s BAR4 starts.
pub const VIRTIO_BAR4: u64 = 0xfe00_0000;

/// An NVMe-like function (1b36:0010, class 01.08.02) at [`bdf`]`(dev)`: no
/// BARs, no capabilities, not a bridge.
pub fn nvme(dev: u8) -> Function {
    Function {
        bdf: bdf(dev),
        vendor: 0x1b36,
        device: 0x0010,
        class: 1,
        subclass: 8,
        prog_if: 2,
        header_type: 0,
        bars: Default::default(),
        caps: Caps::default(),
        bridge: None,
    }
}

/// A function as the table holds it after the boot walk: unowned, nothing
/// mapped, with this policy.
pub fn found(f: Function, policy: Result<Fence, Keep>) -> Device {
    Device {
        f,
        policy,
        owner: None,
        mapped: 0,
    }
}

/// [`nvme`]`(dev)` in the table, unowned.
pub fn device(dev: u8, policy: Result<Fence, Keep>) -> Device {
    found(nvme(dev), policy)
}

/// One fake function.
#[derive(Clone)]
pub struct FakeFn {
    /// Config space, dwords.
    pub regs: [u32; 1024],
    /// For each BAR register (0x10..0x28), the writable bits; 0 = not a BAR.
    pub bar_masks: [u32; 6],
    /// Which BAR registers are the upper half of a 64-bit BAR.
    pub upper: [bool; 6],
}

impl FakeFn {
    /// A function with these ids, class dword and header type byte.
    pub fn new(vendor: u16, device: u16, class: u32, header_type: u8) -> Self {
        let mut regs = [0u32; 1024];
        regs[0] = u32::from(device) << 16 | u32::from(vendor);
        regs[2] = class;
        regs[3] = u32::from(header_type) << 16;
        Self {
            regs,
            bar_masks: [0; 6],
            upper: [false; 6],
        }
    }

    /// A virtio-like function (1af4:1042, class 01.00): BAR0 4 KiB of
    /// memory at 0xfeb0_0000, BAR4 64-bit prefetchable 16 KiB at
    /// 0xfe00_0000; no capabilities yet.
    pub fn virtio() -> Self {
        Self::new(0x1af4, 0x1042, 0x0100_0000, 0)
            .mem_bar(0, 0xfeb0_0000, 0x1000, false, false)
            .mem_bar(4, VIRTIO_BAR4, 0x4000, true, true)
    }

    /// QEMU's edu device (1234:11e8, class ff): no BARs, no capabilities.
    pub fn edu() -> Self {
        Self::new(0x1234, 0x11e8, 0x00ff_0000, 0)
    }

    /// A memory BAR at register `i`: `size` bytes, 64-bit when `wide`.
    pub fn mem_bar(mut self, i: usize, base: u64, size: u64, wide: bool, pf: bool) -> Self {
        let ty = if wide { 4 } else { 0 } | if pf { 8 } else { 0 };
        let mask = !(size - 1);
        self.regs[4 + i] = (base as u32 & !0xf) | ty;
        self.bar_masks[i] = (mask as u32) & !0xf;
        if wide {
            self.regs[5 + i] = (base >> 32) as u32;
            self.bar_masks[i + 1] = (mask >> 32) as u32;
            self.upper[i + 1] = true;
        }
        self
    }

    /// An I/O BAR at register `i` (upper 16 bits hardwired to 0).
    pub fn io_bar(mut self, i: usize, base: u16, size: u32) -> Self {
        self.regs[4 + i] = u32::from(base) | 1;
        self.bar_masks[i] = !(size - 1) & 0xfffc;
        self
    }

    /// A capability list: (offset, id, next) entries, with status bit 4.
    pub fn caps(mut self, first: u8, list: &[(u8, u8, u8)]) -> Self {
        self.regs[1] |= 1 << 20;
        self.regs[0x34 / 4] = u32::from(first);
        for &(at, id, next) in list {
            let r = &mut self.regs[usize::from(at) / 4];
            let sh = (at & 3) * 8;
            *r = (*r & !(0xffff << sh)) | (u32::from(next) << 8 | u32::from(id)) << sh;
        }
        self
    }

    /// A bridge's secondary and subordinate bus.
    pub fn buses(mut self, secondary: u8, subordinate: u8) -> Self {
        self.regs[6] = u32::from(subordinate) << 16 | u32::from(secondary) << 8;
        self
    }
}

/// The whole fake space.
#[derive(Default)]
pub struct FakeConfig {
    /// Functions by address.
    pub fns: RefCell<BTreeMap<Bdf, FakeFn>>,
    /// BAR writes seen while the function decoded memory or I/O.
    pub live_bar_writes: RefCell<u32>,
    /// Every config read, counted (proves a walk ends).
    pub reads: RefCell<u64>,
}

impl FakeConfig {
    /// Adds a function.
    pub fn add(&self, bdf: Bdf, f: FakeFn) {
        self.fns.borrow_mut().insert(bdf, f);
    }
}

impl ConfigAccess for FakeConfig {
    fn read32(&self, bdf: Bdf, off: u16) -> u32 {
        *self.reads.borrow_mut() += 1;
        self.fns
            .borrow()
            .get(&bdf)
            .map_or(0xffff_ffff, |f| f.regs[usize::from(off / 4)])
    }

    fn write32(&self, bdf: Bdf, off: u16, value: u32) {
        let mut fns = self.fns.borrow_mut();
        let Some(f) = fns.get_mut(&bdf) else { return };
        let r = usize::from(off / 4);
        match r {
            1 => f.regs[1] = (f.regs[1] & 0xffff_0000) | (value & 0xffff),
            4..=9 if f.bar_masks[r - 4] != 0 || f.regs[r] & 1 == 1 => {
                if f.regs[1] & 3 != 0 {
                    *self.live_bar_writes.borrow_mut() += 1;
                }
                let m = f.bar_masks[r - 4];
                // Low type bits are read-only.
                let low = if f.upper[r - 4] {
                    0
                } else if f.regs[r] & 1 == 1 {
                    3
                } else {
                    0xf
                };
                f.regs[r] = (value & m) | (f.regs[r] & low);
            }
            4..=9 => {}
            0 | 2 | 3 => {}
            _ => f.regs[r] = value,
        }
    }

    fn limit(&self) -> u16 {
        4096
    }
}

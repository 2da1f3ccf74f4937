//! The bus walk: from each segment's first bus, every device and
//! function, down through PCI-to-PCI bridges to their secondary buses.
//!
//! Bus numbers come from the bridges (firmware-programmed), so they are
//! checked: a bus outside the segment's range, or one already walked (two
//! bridges claiming it, or a bridge pointing back up), is not walked again,
//! so a bad topology costs at most one pass over each bus.

use alloc::vec::Vec;

use super::header::{Function, read_function, read8};
use super::{Bdf, ConfigAccess};

/// A segment and the buses its config space covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// PCI segment group.
    pub seg: u16,
    /// First bus (the root bus, where the walk starts).
    pub bus_start: u8,
    /// Last bus reachable through this config space.
    pub bus_end: u8,
}

/// Every function found under `segments`, in walk order.
pub fn walk(cfg: &dyn ConfigAccess, segments: &[Segment]) -> Vec<Function> {
    let mut out = Vec::new();
    for s in segments {
        let mut walked = [false; 256];
        let mut todo = alloc::vec![s.bus_start];
        while let Some(bus) = todo.pop() {
            if bus < s.bus_start || bus > s.bus_end || walked[usize::from(bus)] {
                continue;
            }
            walked[usize::from(bus)] = true;
            let mut children = Vec::new();
            for dev in 0..32u8 {
                scan_device(cfg, s.seg, bus, dev, &mut out, &mut children);
            }
            // Walk children in bus order (the stack pops the last first).
            children.sort_unstable_by(|a, b| b.cmp(a));
            todo.extend(children);
        }
    }
    out
}

fn scan_device(
    cfg: &dyn ConfigAccess,
    seg: u16,
    bus: u8,
    dev: u8,
    out: &mut Vec<Function>,
    children: &mut Vec<u8>,
) {
    let f0 = Bdf {
        seg,
        bus,
        dev,
        func: 0,
    };
    let Some(first) = read_function(cfg, f0) else {
        return;
    };
    // Header type bit 7: functions 1-7 may exist (PCI Local Bus 3.0 6.2.1).
    let multi = read8(cfg, f0, 0x0e) & 0x80 != 0;
    let mut take = |f: Function| {
        if let Some((secondary, _)) = f.bridge
            && secondary > bus
        {
            children.push(secondary);
        }
        out.push(f);
    };
    take(first);
    if multi {
        for func in 1..8 {
            if let Some(f) = read_function(cfg, Bdf { func, ..f0 }) {
                take(f);
            }
        }
    }
}

#[cfg(test)]
mod tests;

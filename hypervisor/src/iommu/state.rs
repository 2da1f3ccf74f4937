//! The running IOMMU units and which device is attached to which domain.

use alloc::collections::BTreeMap;
use alloc::collections::btree_map::Entry;
use alloc::string::String;
use alloc::vec::Vec;

use super::amdvi::{self, AmdVi};
use super::dmar::{self, Dmar};
use super::ivrs::{self, Ivhd};
use super::pt::{Format, IoPageTable, PtError};
use super::vtd::{self, Vtd};
use super::{Bdf, IommuError};
use crate::domain::ids::DomainId;
use crate::domain::memory::{DomainMemory, FrameTables};
use crate::sync::Mutex;

const PAGE: u64 = 4096;

enum Hw {
    Vtd(alloc::boxed::Box<Vtd>),
    Amd(AmdVi, Ivhd),
}

struct Unit {
    segment: u16,
    hw: Hw,
}

impl Unit {
    fn base(&self) -> u64 {
        match &self.hw {
            Hw::Vtd(v) => v.base(),
            Hw::Amd(a, _) => a.base(),
        }
    }

    fn format(&self) -> (Format, u32) {
        match &self.hw {
            Hw::Vtd(v) => (Format::VtdSecondLevel, v.levels),
            // 4 levels (48-bit device addresses): every unit has them
            // (EFR.HATS is about 5 and 6 levels).
            Hw::Amd(..) => (Format::AmdVi, 4),
        }
    }

    /// The id the unit sees `rid`'s requests under (AMD-Vi aliases).
    fn source(&self, rid: u16) -> u16 {
        match &self.hw {
            Hw::Vtd(_) => rid,
            Hw::Amd(_, ivhd) => ivhd.source_id(rid).unwrap_or(rid),
        }
    }
}

/// One domain's DMA space on one unit, shared by its devices there.
struct Space {
    pt: IoPageTable,
    devices: usize,
    /// The unit's domain id for it (tags its cached translations).
    did: u16,
}

#[derive(Default)]
struct State {
    dmar: Option<Dmar>,
    ivrs: Option<ivrs::Ivrs>,
    units: Vec<Unit>,
    /// (segment, rid) → (unit index, domain).
    attached: BTreeMap<(u16, u16), (usize, DomainId)>,
    /// (unit index, domain) → its tables.
    spaces: BTreeMap<(usize, DomainId), Space>,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

#[path = "state_ir.rs"]
mod ir;
pub use ir::{irq_bind, irq_unbind, remap_ioapic};

/// Finds the IOMMU units in the ACPI tables at `rsdp`, starts each with
/// every device blocked, and logs one line per unit. Returns how many run.
pub fn init(rsdp: Option<u64>) -> usize {
    let mut st = State::default();
    if let Some(bytes) = super::tables::find(rsdp, *b"DMAR") {
        match dmar::parse(bytes) {
            Ok(d) => {
                start_vtd(&d, &mut st);
                st.dmar = Some(d);
            }
            Err(e) => log::error!("iommu: DMAR rejected: {e}; VT-d left off"),
        }
    }
    if let Some(bytes) = super::tables::find(rsdp, *b"IVRS") {
        match ivrs::parse(bytes) {
            Ok(r) => {
                start_amd(&r, &mut st);
                st.ivrs = Some(r);
            }
            Err(e) => log::error!("iommu: IVRS rejected: {e}; AMD-Vi left off"),
        }
    }
    let n = st.units.len();
    if n == 0 {
        log::info!("iommu: none found");
    }
    *STATE.lock() = Some(st);
    crate::domain::dma::register(crate::domain::dma::DmaHooks {
        has_devices,
        cut_off: detach_domain,
        poll_faults,
    });
    n
}

fn start_vtd(d: &Dmar, st: &mut State) {
    for (i, u) in d.units.iter().enumerate() {
        match Vtd::start(u.base) {
            Ok(hw) => {
                let (feat, _) = hw.features();
                let mut offers = String::new();
                for (name, on) in feat {
                    if on {
                        offers.push_str(", ");
                        offers.push_str(name);
                    }
                }
                log::info!(
                    "iommu: VT-d unit {i} at {:#x} ver {}.{} segment {}, {}-bit AGAW{offers}, {} domain ids{}; translation on, every device blocked",
                    u.base,
                    (hw.version >> 4) & 0xf,
                    hw.version & 0xf,
                    u.segment,
                    hw.agaw_bits(),
                    hw.domain_ids(),
                    if u.include_all {
                        ", all devices of its segment"
                    } else {
                        ""
                    },
                );
                ir::log_vtd(i, &hw);
                st.units.push(Unit {
                    segment: u.segment,
                    hw: Hw::Vtd(alloc::boxed::Box::new(hw)),
                });
            }
            Err(e) => log::error!(
                "iommu: VT-d unit {i} at {:#x} failed to start: {e:?}",
                u.base
            ),
        }
    }
    for r in &d.rmrrs {
        log::warn!(
            "iommu: RMRR {:#x}..={:#x} on segment {}: identity-mapped for its devices when they are attached, blocked until then",
            r.base,
            r.limit,
            r.segment
        );
    }
}

fn start_amd(r: &ivrs::Ivrs, st: &mut State) {
    for (i, u) in r.units().enumerate() {
        match AmdVi::start(u.base) {
            Ok(hw) => {
                // EFR bits (3.4.5): 2 XTSup (x2APIC interrupts), 4 GTSup
                // (guest translation), 6 IASup (INVALIDATE_IOMMU_ALL),
                // 7 GASup (guest virtual APIC), 8 HESup.
                let efr = hw.efr;
                let mut offers = String::new();
                for (bit, name) in [(2, "XT"), (4, "GT"), (6, "IA"), (7, "GA"), (8, "HE")] {
                    if efr & (1 << bit) != 0 {
                        offers.push_str(", ");
                        offers.push_str(name);
                    }
                }
                log::info!(
                    "iommu: AMD-Vi unit {i} at {:#x} (IVHD type {:#x}, device {}) segment {}, {} device ranges, EFR {efr:#x}{offers}; enabled, every device blocked",
                    u.base,
                    u.ty,
                    Bdf(u.segment, u.iommu_devid),
                    u.segment,
                    u.ranges.len(),
                );
                log::info!(
                    "iommu: interrupt remapping on: AMD-Vi unit {i}, a {}-entry table per attached device",
                    super::encode_ir::AMD_IRT_ENTRIES
                );
                st.units.push(Unit {
                    segment: u.segment,
                    hw: Hw::Amd(hw, u.clone()),
                });
            }
            Err(e) => log::error!(
                "iommu: AMD-Vi unit {i} at {:#x} failed to start: {e:?}",
                u.base
            ),
        }
    }
    if !r.memory.is_empty() {
        log::warn!(
            "iommu: {} IVMD ranges: unity ranges mapped for their devices when attached, blocked until then",
            r.memory.len()
        );
    }
}

/// The kind of the first running unit: `"VT-d"` or `"AMD-Vi"`.
pub fn vendor() -> Option<&'static str> {
    let guard = STATE.lock();
    guard.as_ref()?.units.first().map(|u| match u.hw {
        Hw::Vtd(_) => "VT-d",
        Hw::Amd(..) => "AMD-Vi",
    })
}

/// Whether any IOMMU unit runs.
pub fn present() -> bool {
    STATE.lock().as_ref().is_some_and(|s| !s.units.is_empty())
}

fn unit_of(st: &State, seg: u16, rid: u16) -> Option<usize> {
    if let Some(d) = st.dmar.as_ref()
        && let Some(i) = d.unit_for(seg, rid)
    {
        // DMAR indices count every DRHD; ours only the started ones.
        let base = d.units.get(i)?.base;
        return st
            .units
            .iter()
            .position(|u| u.base() == base && u.segment == seg);
    }
    st.units.iter().position(|u| match &u.hw {
        Hw::Amd(_, ivhd) => u.segment == seg && ivhd.source_id(rid).is_some(),
        Hw::Vtd(_) => false,
    })
}

/// Whether a running unit translates the device `(seg, rid)`.
pub fn covers(seg: u16, rid: u16) -> bool {
    STATE
        .lock()
        .as_ref()
        .is_some_and(|s| unit_of(s, seg, rid).is_some())
}

/// Whether any device is attached to `dom` (its memory may then be
/// reached by DMA: see docs/threat-model.md, *IOMMU*).
pub fn has_devices(dom: DomainId) -> bool {
    STATE
        .lock()
        .as_ref()
        .is_some_and(|s| s.attached.values().any(|(_, d)| *d == dom))
}

/// The unit's domain id for `dom`: ours + 1, as VT-d reserves 0 when
/// the unit caches not-present entries (VT-d 6.2.2, CAP.CM) and we use
/// 0 for blocked AMD-Vi entries; kept within what the unit supports.
fn did(u: &Unit, dom: DomainId) -> u16 {
    let max = match &u.hw {
        Hw::Vtd(v) => v.domain_ids(),
        Hw::Amd(..) => 1 << 16,
    };
    ((dom.0.wrapping_add(1)) % max).max(1) as u16
}

/// Lets `(seg, rid)` DMA into `dom`'s memory: every present page of
/// `mem`, GPA → HPA, writable; nothing else. The first device of a
/// domain on a unit builds the domain's tables there.
pub fn attach(seg: u16, rid: u16, dom: DomainId, mem: &DomainMemory) -> Result<(), IommuError> {
    let mut guard = STATE.lock();
    let st = guard.as_mut().ok_or(IommuError::NoIommu)?;
    if st.units.is_empty() {
        return Err(IommuError::NoIommu);
    }
    if st.attached.contains_key(&(seg, rid)) {
        return Err(IommuError::AlreadyAttached { seg, rid });
    }
    let u = unit_of(st, seg, rid).ok_or(IommuError::NotCovered { seg, rid })?;
    let (format, levels) = st.units[u].format();
    let did = did(&st.units[u], dom);
    // The unit tags cached translations by domain id: two live domains
    // must never share one on a unit (ids wrap after CAP.ND / 65,536).
    if st
        .spaces
        .iter()
        .any(|(&(uu, d), sp)| uu == u && d != dom && sp.did == did)
    {
        return Err(IommuError::DomainIdInUse(did));
    }
    // Devices behind one alias share one table entry (AMD-Vi): they must
    // belong to the same domain.
    let source = st.units[u].source(rid);
    if let Some((_, &(_, other))) = st
        .attached
        .iter()
        .find(|&(&(_, r), &(uu, d))| uu == u && d != dom && st.units[u].source(r) == source)
    {
        return Err(IommuError::AliasConflict { seg, rid, other });
    }
    let mut tables = FrameTables::default();
    if let Entry::Vacant(slot) = st.spaces.entry((u, dom)) {
        let mut pt =
            IoPageTable::new(format, levels, &mut tables).map_err(|_| IommuError::NoMemory)?;
        let mut gpa = 0;
        while gpa < mem.phys_size() {
            if let Some(hpa) = mem.frame(gpa)
                && let Err(e) = pt.map(gpa, hpa, true, &mut tables)
            {
                pt.destroy(&mut tables);
                return Err(match e {
                    PtError::OutOfMemory => IommuError::NoMemory,
                    _ => IommuError::BadAddress(gpa),
                });
            }
            gpa += PAGE;
        }
        slot.insert(Space {
            pt,
            devices: 0,
            did,
        });
    }
    let identity = identity_ranges(st, u, seg, rid, source);
    let Some(space) = st.spaces.get_mut(&(u, dom)) else {
        return Err(IommuError::NoMemory);
    };
    if let Err(e) = map_identity(&mut space.pt, &identity, &mut tables) {
        if space.devices == 0
            && let Some(space) = st.spaces.remove(&(u, dom))
        {
            space.pt.destroy(&mut tables);
        }
        return Err(e);
    }
    let root = space.pt.root();
    let done = match &mut st.units[u].hw {
        Hw::Vtd(v) => v.set_context(source, Some((root, did))).map_err(vtd_err),
        Hw::Amd(a, _) => a
            .set_dte(source, Some((root, levels, did)), 0)
            .map_err(amd_err),
    };
    if let Err(e) = done {
        // A table no device uses goes again.
        if space.devices == 0
            && let Some(space) = st.spaces.remove(&(u, dom))
        {
            space.pt.destroy(&mut tables);
        }
        return Err(e);
    }
    space.devices += 1;
    st.attached.insert((seg, rid), (u, dom));
    log::info!("iommu: {} attached to domain {dom}", Bdf(seg, rid));
    Ok(())
}

/// The memory firmware keeps using for DMA by this device, which must
/// stay reachable at the same address: its RMRRs (VT-d 8.4) or the IVMD
/// unity ranges of its source id (AMD IOMMU spec 5.2.2.3). (start,
/// length, writable).
fn identity_ranges(st: &State, u: usize, seg: u16, rid: u16, source: u16) -> Vec<(u64, u64, bool)> {
    match st.units[u].hw {
        Hw::Vtd(_) => st.dmar.as_ref().map_or(Vec::new(), |d| {
            d.rmrrs_for(seg, rid)
                .map(|r| (r.base, r.limit - r.base + 1, true))
                .collect()
        }),
        Hw::Amd(..) => st
            .ivrs
            .as_ref()
            .map_or(Vec::new(), |r| r.unity_for(source).collect()),
    }
}

/// Maps each range identity (device address = host address) into `pt`.
/// A page already mapped to itself (another device of the domain with
/// the same region) is fine; one the domain's own memory holds at that
/// address is a conflict: the device could not reach both.
fn map_identity(
    pt: &mut IoPageTable,
    ranges: &[(u64, u64, bool)],
    tables: &mut FrameTables,
) -> Result<(), IommuError> {
    for &(start, len, write) in ranges {
        let first = start & !(PAGE - 1);
        let end = start.saturating_add(len).next_multiple_of(PAGE);
        let mut page = first;
        while page < end {
            match pt.translate(page, tables) {
                Some((hpa, _)) if hpa == page => {}
                Some(_) => return Err(IommuError::ReservedRegionConflict(page)),
                None => pt.map(page, page, write, tables).map_err(|e| match e {
                    PtError::OutOfMemory => IommuError::NoMemory,
                    _ => IommuError::BadAddress(page),
                })?,
            }
            page += PAGE;
        }
    }
    Ok(())
}

/// Blocks `(seg, rid)`'s DMA again. When this returns the unit's caches
/// are invalidated and the invalidation has completed, so the caller may
/// free the domain's frames. The domain's tables go with its last device.
pub fn detach(seg: u16, rid: u16) -> Result<(), IommuError> {
    let mut guard = STATE.lock();
    let st = guard.as_mut().ok_or(IommuError::NoIommu)?;
    let Some(&(u, dom)) = st.attached.get(&(seg, rid)) else {
        return Ok(());
    };
    let did = st.spaces.get(&(u, dom)).map_or(0, |sp| sp.did);
    let source = st.units[u].source(rid);
    // Another device of the domain behind the same alias keeps the
    // shared entry (AMD-Vi): only its bookkeeping goes.
    let shared = st
        .attached
        .iter()
        .any(|(&(_, r), &(uu, _))| uu == u && r != rid && st.units[u].source(r) == source);
    if !shared {
        match &mut st.units[u].hw {
            Hw::Vtd(v) => v.set_context(source, None).map_err(vtd_err)?,
            Hw::Amd(a, _) => a.set_dte(source, None, did).map_err(amd_err)?,
        }
    }
    st.attached.remove(&(seg, rid));
    if let Some(space) = st.spaces.get_mut(&(u, dom)) {
        space.devices -= 1;
        if space.devices == 0
            && let Some(space) = st.spaces.remove(&(u, dom))
        {
            space.pt.destroy(&mut FrameTables::default());
        }
    }
    log::info!(
        "iommu: {} detached from domain {dom}, its DMA blocked",
        Bdf(seg, rid)
    );
    Ok(())
}

/// Detaches every device of `dom` (a dying domain), each completed.
pub fn detach_domain(dom: DomainId) {
    let devices: Vec<(u16, u16)> = STATE.lock().as_ref().map_or(Vec::new(), |s| {
        s.attached
            .iter()
            .filter(|(_, (_, d))| *d == dom)
            .map(|(k, _)| *k)
            .collect()
    });
    for (seg, rid) in devices {
        if let Err(e) = detach(seg, rid) {
            // The unit did not confirm: its caches may still hold the
            // domain's pages. Freeing them now could hand a device
            // another owner's memory; stopping is the safe end.
            panic!(
                "iommu: cutting off {} of dying domain {dom} failed: {e}",
                Bdf(seg, rid)
            );
        }
    }
}

fn vtd_err(e: vtd::VtdError) -> IommuError {
    match e {
        vtd::VtdError::Timeout(what) => IommuError::Hardware(what),
        vtd::VtdError::NoMemory => IommuError::NoMemory,
        _ => IommuError::Hardware("register access"),
    }
}

fn amd_err(e: amdvi::AmdViError) -> IommuError {
    match e {
        amdvi::AmdViError::Timeout(what) => IommuError::Hardware(what),
        amdvi::AmdViError::NoMemory => IommuError::NoMemory,
        amdvi::AmdViError::Map(_) => IommuError::Hardware("register access"),
    }
}

/// Logs every fault the units recorded since the last call, once each;
/// returns how many.
pub fn poll_faults() -> usize {
    let guard = STATE.lock();
    let Some(st) = guard.as_ref() else { return 0 };
    let mut n = 0;
    for (i, u) in st.units.iter().enumerate() {
        match &u.hw {
            Hw::Vtd(v) => v.take_faults(|f| {
                n += 1;
                if ir::log_vtd_fault(i, u.segment, &f) {
                    return;
                }
                log::warn!(
                    "iommu: DMA fault on VT-d unit {i}: device {} {} at {:#x}: reason {} ({})",
                    Bdf(u.segment, f.source),
                    if f.write { "write" } else { "read" },
                    f.addr,
                    f.reason,
                    vtd::reason_text(f.reason)
                );
            }),
            Hw::Amd(a, _) => a.take_events(|e| {
                n += 1;
                log::warn!(
                    "iommu: DMA fault on AMD-Vi unit {i}: device {} {} at {:#x}: event {} ({}), flags {:#x}",
                    Bdf(u.segment, e.devid),
                    if e.write { "write" } else { "read" },
                    e.addr,
                    e.code,
                    amdvi::event_text(e.code),
                    e.flags
                );
            }),
        }
    }
    n
}

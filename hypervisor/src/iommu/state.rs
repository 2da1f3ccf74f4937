//! The running IOMMU units and which device is attached to which domain.

use alloc::collections::BTreeMap;
use alloc::collections::btree_map::Entry;
use alloc::vec::Vec;

use super::dmar::{self, Dmar};
use super::pt::{Format, IoPageTable};
use super::vtd::{self, Vtd};
use super::{Bdf, IommuError};
use crate::domain::ids::DomainId;
use crate::domain::memory::{DomainMemory, FrameTables};
use crate::sync::Mutex;

const PAGE: u64 = 4096;

struct VtdUnit {
    segment: u16,
    hw: Vtd,
}

/// One domain's DMA space on one unit, shared by its devices there.
struct Space {
    pt: IoPageTable,
    devices: usize,
}

#[derive(Default)]
struct State {
    dmar: Option<Dmar>,
    vtd: Vec<VtdUnit>,
    /// (segment, rid) → (unit index, domain).
    attached: BTreeMap<(u16, u16), (usize, DomainId)>,
    /// (unit index, domain) → its tables.
    spaces: BTreeMap<(usize, DomainId), Space>,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

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
    let n = st.vtd.len();
    if n == 0 {
        log::info!("iommu: none found");
    }
    *STATE.lock() = Some(st);
    n
}

fn start_vtd(d: &Dmar, st: &mut State) {
    for (i, u) in d.units.iter().enumerate() {
        match Vtd::start(u.base) {
            Ok(hw) => {
                let (feat, _) = hw.features();
                let mut offers = alloc::string::String::new();
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
                st.vtd.push(VtdUnit {
                    segment: u.segment,
                    hw,
                });
            }
            Err(e) => log::error!(
                "iommu: VT-d unit {i} at {:#x} failed to start: {e:?}",
                u.base
            ),
        }
    }
    if d.flags & 1 != 0 {
        log::info!(
            "iommu: interrupt remapping offered by the platform, not enabled yet (interrupts pass through unremapped)"
        );
    }
    for r in &d.rmrrs {
        log::info!(
            "iommu: RMRR {:#x}..={:#x} on segment {} (identity-mapped only for its devices when attached)",
            r.base,
            r.limit,
            r.segment
        );
    }
}

/// Whether any IOMMU unit runs.
pub fn present() -> bool {
    STATE.lock().as_ref().is_some_and(|s| !s.vtd.is_empty())
}

fn unit_of(st: &State, seg: u16, rid: u16) -> Option<usize> {
    let d = st.dmar.as_ref()?;
    let i = d.unit_for(seg, rid)?;
    // Unit indices count only the units that started: map the DMAR index
    // to ours by base address.
    let base = d.units.get(i)?.base;
    st.vtd
        .iter()
        .position(|u| u.hw_base() == base && u.segment == seg)
}

impl VtdUnit {
    fn hw_base(&self) -> u64 {
        self.hw.base()
    }
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

/// Lets `(seg, rid)` DMA into `dom`'s memory: every present page of
/// `mem`, GPA → HPA, writable; nothing else. The first device of a
/// domain on a unit builds the domain's tables there.
pub fn attach(seg: u16, rid: u16, dom: DomainId, mem: &DomainMemory) -> Result<(), IommuError> {
    let mut guard = STATE.lock();
    let st = guard.as_mut().ok_or(IommuError::NoIommu)?;
    if st.vtd.is_empty() {
        return Err(IommuError::NoIommu);
    }
    if st.attached.contains_key(&(seg, rid)) {
        return Err(IommuError::AlreadyAttached { seg, rid });
    }
    let u = unit_of(st, seg, rid).ok_or(IommuError::NotCovered { seg, rid })?;
    let levels = st.vtd[u].hw.levels;
    let mut tables = FrameTables::default();
    if let Entry::Vacant(slot) = st.spaces.entry((u, dom)) {
        let mut pt = IoPageTable::new(Format::VtdSecondLevel, levels, &mut tables)
            .map_err(|_| IommuError::NoMemory)?;
        let mut gpa = 0;
        while gpa < mem.phys_size() {
            if let Some(hpa) = mem.frame(gpa)
                && let Err(e) = pt.map(gpa, hpa, true, &mut tables)
            {
                pt.destroy(&mut tables);
                return Err(match e {
                    super::pt::PtError::OutOfMemory => IommuError::NoMemory,
                    _ => IommuError::BadAddress(gpa),
                });
            }
            gpa += PAGE;
        }
        slot.insert(Space { pt, devices: 0 });
    }
    let Some(space) = st.spaces.get_mut(&(u, dom)) else {
        return Err(IommuError::NoMemory);
    };
    // Domain id on the unit: ours + 1, as 0 is reserved when the unit
    // caches not-present entries (VT-d 6.2.2, CAP.CM), within CAP.ND.
    let did = ((dom.0 + 1) % st.vtd[u].hw.domain_ids()).max(1) as u16;
    let root = space.pt.root();
    st.vtd[u]
        .hw
        .set_context(rid, Some((root, did)))
        .map_err(hw_err)?;
    space.devices += 1;
    st.attached.insert((seg, rid), (u, dom));
    log::info!("iommu: {} attached to domain {dom}", Bdf(seg, rid));
    Ok(())
}

/// Blocks `(seg, rid)`'s DMA again. When this returns the unit's caches
/// are invalidated and the invalidation has completed, so the caller may
/// free the domain's frames. The domain's tables go with its last device.
pub fn detach(seg: u16, rid: u16) -> Result<(), IommuError> {
    let mut guard = STATE.lock();
    let st = guard.as_mut().ok_or(IommuError::NoIommu)?;
    let Some((u, dom)) = st.attached.remove(&(seg, rid)) else {
        return Ok(());
    };
    st.vtd[u].hw.set_context(rid, None).map_err(hw_err)?;
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

fn hw_err(e: vtd::VtdError) -> IommuError {
    match e {
        vtd::VtdError::Timeout(what) => IommuError::Hardware(what),
        vtd::VtdError::NoMemory => IommuError::NoMemory,
        _ => IommuError::Hardware("register access"),
    }
}

/// Logs every fault the units recorded since the last call, once each;
/// returns how many.
pub fn poll_faults() -> usize {
    let guard = STATE.lock();
    let Some(st) = guard.as_ref() else { return 0 };
    let mut n = 0;
    for (i, u) in st.vtd.iter().enumerate() {
        u.hw.take_faults(|f| {
            n += 1;
            log::warn!(
                "iommu: DMA fault on VT-d unit {i}: device {} {} at {:#x}: reason {} ({})",
                Bdf(u.segment, f.source),
                if f.write { "write" } else { "read" },
                f.addr,
                f.reason,
                vtd::reason_text(f.reason)
            );
        });
    }
    n
}

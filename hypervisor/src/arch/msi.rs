//! Device interrupts, the host side (pvabi `HC_PCI_MSI_BIND`): the IDT
//! handler for the vectors messages carry ([`note`]: only a bit set and
//! the EOI, as for the management line's interrupt, `mgmt_irq.rs`), the
//! CPU they go to, and 32-bit access to the MSI-X tables, whose pages are
//! mapped uncached into the hypervisor at boot ([`map_table`]) and never
//! into a guest (`pci/bars.rs`). `pci/msi_live.rs` decides everything.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use spin::Mutex;

use crate::pci::msi::{Mmio32, VECTOR_END, VECTOR_FIRST};

/// Bit `v`: vector `v` came since the runtime last looked.
static PENDING: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
/// Some bit of [`PENDING`] may be set (the run loop's cheap test).
static ANY: AtomicBool = AtomicBool::new(false);
/// The APIC id messages target: the boot CPU's, if it fits the 8-bit
/// destination field; `u32::MAX` otherwise (no message can reach it
/// without interrupt remapping: x2APIC ids above 255, Intel SDM Vol. 3A,
/// APIC chapter, "Message Address Register Format").
static DEST: AtomicU32 = AtomicU32::new(u32::MAX);

/// At boot, before the other CPUs start: messages go to the boot CPU, and
/// every MSI-X table the walk found is mapped ([`map_table`]).
pub fn setup(found: &[crate::pci::header::Function], bsp_apic: u32) {
    init(bsp_apic);
    for f in found {
        if let Some((addr, len)) = crate::pci::msi::msix_table_range(f)
            && !map_table(addr, len)
        {
            log::warn!(
                "pci: {}: MSI-X table at {addr:#x}+{len:#x} not mapped: its entries cannot be bound",
                f.bdf
            );
        }
    }
}

/// Records the CPU messages go to (the boot CPU).
fn init(bsp_apic: u32) {
    if bsp_apic <= 0xff {
        DEST.store(bsp_apic, Ordering::Release);
    } else {
        log::warn!(
            "pci: device interrupts unavailable: the boot CPU's APIC id {bsp_apic} does not fit a message's 8-bit destination"
        );
    }
}

/// The 8-bit APIC id messages target (`None`: none can be reached).
pub fn dest() -> Option<u8> {
    u8::try_from(DEST.load(Ordering::Acquire)).ok()
}

/// Whether the IDT handler should call [`note`] for `v`.
#[inline]
pub fn is_msi_vector(v: u8) -> bool {
    (VECTOR_FIRST..VECTOR_END).contains(&v)
}

/// The interrupt handler's part: notes `v` (a message's vector). The
/// caller sends the EOI. Nothing else: raising the port takes locks that
/// interrupted code may hold; the run loop does it (`msi_live::poll`).
pub fn note(v: u8) {
    PENDING[usize::from(v / 64)].fetch_or(1 << (v % 64), Ordering::AcqRel);
    ANY.store(true, Ordering::Release);
    crate::hostwork::note(crate::hostwork::MSI);
}

/// Whether a vector may have come since the last [`take`] (one load: the
/// run loop's test after every exit).
#[inline(always)]
pub fn any() -> bool {
    ANY.load(Ordering::Relaxed)
}

/// The vectors that came since the last call (cleared).
pub fn take() -> [u64; 4] {
    if !ANY.swap(false, Ordering::AcqRel) {
        return [0; 4];
    }
    core::array::from_fn(|i| PENDING[i].swap(0, Ordering::AcqRel))
}

/// MSI-X table ranges mapped uncached at boot: (start, end).
static TABLES: Mutex<Vec<(u64, u64)>> = Mutex::new(Vec::new());

/// Maps an MSI-X table (`len` bytes at host-physical `addr`) uncached into
/// the hypervisor's identity map, before the other CPUs start (no other
/// CPU can hold a stale translation of it then). PCI Local Bus 3.0
/// 6.8.2: the table is accessed with aligned dwords and must not be cached.
pub fn map_table(addr: u64, len: u64) -> bool {
    let Some(end) = addr.checked_add(len) else {
        return false;
    };
    let page = addr & !0xfff;
    let ok = super::paging::map_uncached(page, end.next_multiple_of(0x1000) - page).is_ok();
    if ok {
        TABLES.lock().push((addr, end));
    }
    ok
}

/// Dword access to the MSI-X tables mapped by [`map_table`]; anything
/// else reads all ones and is not written.
pub struct TableMmio;

fn mapped(addr: u64) -> bool {
    addr.is_multiple_of(4)
        && TABLES
            .lock()
            .iter()
            .any(|&(s, e)| addr >= s && addr.saturating_add(4) <= e)
}

impl Mmio32 for TableMmio {
    fn read32(&self, addr: u64) -> u32 {
        if !mapped(addr) {
            return u32::MAX;
        }
        // SAFETY: `addr` is a dword-aligned address inside an MSI-X table
        // that `map_table` mapped uncached, identity, for the hypervisor's
        // lifetime; device registers, not memory any Rust object lives in.
        unsafe { core::ptr::read_volatile(addr as *const u32) }
    }

    fn write32(&self, addr: u64, value: u32) {
        if !mapped(addr) {
            return;
        }
        // SAFETY: as in `read32`; only `pci/msi.rs` writes, and only table
        // entries of a function's bound messages.
        unsafe { core::ptr::write_volatile(addr as *mut u32, value) }
    }
}

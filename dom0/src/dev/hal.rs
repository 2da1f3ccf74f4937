//! virtio-drivers' [`Hal`] for dom0: DMA memory, bus addresses, device
//! registers.
//!
//! dom0 runs on the identity map the hypervisor built (guest-virtual =
//! guest-physical), and an assigned device's DMA goes through the IOMMU,
//! which translates every bus address through dom0's guest-physical map
//! (docs/iommu.md: VT-d second-level / AMD-Vi host page tables built from
//! dom0's nested tables). So the bus address of any dom0 buffer is its
//! virtual address: nothing is copied nor bounced, and `share`/`unshare`
//! only hand the address over. PCIe DMA on x86 snoops the CPU caches (unless
//! a device sets No Snoop, which these drivers never ask for), so no cache
//! maintenance is needed either.
//!
//! Without `iommu=off-unsafe` a device is assigned only behind an IOMMU
//! (docs/pci.md); with it, bus address = host-physical, which differs from
//! dom0's guest-physical address unless the hypervisor placed dom0 at its
//! host address: drivers then DMA to the wrong memory. That mode is
//! documented as unsafe and the drivers are not meant for it.
#![allow(unsafe_code)]

use alloc::alloc::{alloc_zeroed, dealloc};
use core::alloc::Layout;
use core::ptr::NonNull;

use pvabi::guest::mmio;
use spin::Mutex;
use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE, PhysAddr};

/// dom0's DMA and MMIO glue.
#[derive(Debug)]
pub struct DomHal;

/// A mapped BAR range dom0 may touch: `(base, len)`.
static MAPPED_BARS: Mutex<alloc::vec::Vec<(u64, u64)>> = Mutex::new(alloc::vec::Vec::new());

/// Records that `[base, base + len)` is a BAR the hypervisor mapped for
/// dom0 (`PCI_BAR_MAPPED`), so [`DomHal::mmio_phys_to_virt`] may map it.
pub fn allow_bar(base: u64, len: u64) {
    let mut bars = MAPPED_BARS.lock();
    if !bars.contains(&(base, len)) {
        bars.push((base, len));
    }
}

/// Whether `[paddr, paddr + size)` lies inside one recorded BAR.
fn inside_bar(paddr: u64, size: u64) -> bool {
    let Some(end) = paddr.checked_add(size) else {
        return false;
    };
    MAPPED_BARS
        .lock()
        .iter()
        .any(|&(b, l)| paddr >= b && end <= b.saturating_add(l))
}

/// Whether a device may DMA to or from `[addr, addr + len)` in place:
/// non-empty, not wrapping, and not overlapping a BAR recorded with
/// [`allow_bar`] (dom0's memory is identity-mapped and the IOMMU maps all
/// of it, module doc; a device register range is not memory).
pub fn dma_target_ok(addr: u64, len: u64) -> bool {
    let Some(end) = addr.checked_add(len) else {
        return false;
    };
    len != 0
        && !MAPPED_BARS
            .lock()
            .iter()
            .any(|&(b, l)| addr < b.saturating_add(l) && b < end)
}

/// Maps the register range `[paddr, paddr + size)` of a mapped BAR
/// uncached at the same address (rounded out to whole pages) and returns
/// it. `None` if it is not inside a BAR recorded with [`allow_bar`], or
/// the mapping fails (the reason is in the log).
pub fn map_registers(paddr: u64, size: u64) -> Option<NonNull<u8>> {
    if size == 0 || !inside_bar(paddr, size) {
        return None;
    }
    let page = PAGE_SIZE as u64;
    let start = paddr & !(page - 1);
    let end = paddr.checked_add(size)?.checked_next_multiple_of(page)?;
    match mmio::map(start, end - start) {
        Ok(_) => NonNull::new(paddr as *mut u8),
        Err(e) => {
            crate::say(&alloc::format!(
                "dev: registers {paddr:#x}+{size:#x} not mapped: {e}"
            ));
            None
        }
    }
}

fn layout(pages: usize) -> Option<Layout> {
    Layout::from_size_align(pages.checked_mul(PAGE_SIZE)?, PAGE_SIZE).ok()
}

/// Allocates `pages` zeroed, page-aligned pages from dom0's heap for DMA;
/// `None` if the heap has no room.
pub fn dma_pages(pages: usize) -> Option<NonNull<u8>> {
    let l = layout(pages.max(1))?;
    // SAFETY: the layout has a non-zero size.
    NonNull::new(unsafe { alloc_zeroed(l) })
}

/// Frees what [`dma_pages`] returned for the same `pages`.
///
/// # Safety
/// `p` came from `dma_pages(pages)` and no device uses it any more.
pub unsafe fn free_dma_pages(p: NonNull<u8>, pages: usize) {
    if let Some(l) = layout(pages.max(1)) {
        // SAFETY: the caller's contract: same pointer and layout as the
        // allocation.
        unsafe { dealloc(p.as_ptr(), l) };
    }
}

// SAFETY: `dma_alloc` returns zeroed, page-aligned memory that belongs to
// the driver until `dma_dealloc`; its bus address is its address (identity
// map + IOMMU over dom0's guest-physical space, module doc);
// `mmio_phys_to_virt` maps the device range at its own address, and only
// ranges inside BARs the hypervisor mapped for dom0.
unsafe impl Hal for DomHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        match dma_pages(pages) {
            Some(p) => (p.as_ptr() as PhysAddr, p),
            // virtio-drivers reads a zero address as failure.
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        // SAFETY: the trait's contract: `vaddr` came from `dma_alloc(pages)`.
        unsafe { free_dma_pages(vaddr, pages) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        // The transport only sees BARs that the configuration access
        // reports (mapped ones, `cfg.rs`), so this holds; touching any
        // other address would get dom0 killed, so stop with a clear
        // message instead.
        match map_registers(paddr, size as u64) {
            Some(p) => p,
            None => panic!("dev: {paddr:#x}+{size:#x} is not inside a BAR mapped for dom0"),
        }
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        // Identity map + IOMMU over all of dom0's memory: the buffer's
        // address is its bus address; no bounce buffer.
        buffer.as_ptr() as *mut u8 as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {
        // Nothing was copied in `share`, so nothing to copy back.
    }
}

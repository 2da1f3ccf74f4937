//! Placing a new guest in its memory: the ELF image, and everything the
//! guest needs to run its first instruction in 64-bit mode.
//!
//! # Guest-physical layout
//!
//! RAM is `0..M` (`M` = [`GuestMemory::size`], a multiple of 4 KiB). The
//! ELF's `PT_LOAD` segments go at their `p_paddr`. The builder reserves the
//! top of memory, from low to high addresses:
//!
//! ```text
//! reserved_start  stack, STACK_SIZE (64 KiB); RSP starts at its top
//!                 PML4, then the PDPTs, then the PDs (the guest's own
//!                 initial page tables)
//!                 GDT page: null, code64 (0x08), data (0x10)
//! M - 4 KiB       start-info page (pvabi::StartInfo at its start)
//! M
//! ```
//!
//! The stack is lowest so that an overflow runs into the guest's own free
//! memory rather than over its page tables. No segment may overlap the
//! reserved area; everything in it belongs to the guest afterwards.
//!
//! The initial page tables identity-map guest memory (guest-virtual ==
//! guest-physical) with 2 MiB pages, present + writable + executable,
//! supervisor. When `M` is not a multiple of 2 MiB the last page reaches
//! past `M`; those addresses are not backed in the EPT/NPT, so touching them
//! faults the guest, as any access outside its memory does. Because of the
//! identity map, every `PT_LOAD` must have `p_vaddr == p_paddr`.
#![forbid(unsafe_code)]

use core::fmt;

use pvabi::StartInfo;

use super::{GuestMemory, OutOfBounds};
use crate::elf::{self, ElfError, ElfKind};
pub use crate::virt::boot::{BootState, Segment};

/// Bytes of initial stack.
pub const STACK_SIZE: u64 = 64 * 1024;
/// Largest guest memory the builder accepts (1 TiB): keeps the initial
/// page tables small (at most 2 PDPTs and 1024 PDs).
pub const MAX_GUEST_MEMORY: u64 = 1 << 40;

const PAGE: u64 = 4096;
const SIZE_2M: u64 = 2 << 20;
const SIZE_1G: u64 = 1 << 30;
const SIZE_512G: u64 = 1 << 39;

/// Long-mode page-table entry bits (Intel SDM Vol. 3A 4.5, AMD APM Vol. 2
/// 5.3): present, writable, page size.
const PTE_P: u64 = 1 << 0;
const PTE_W: u64 = 1 << 1;
const PTE_PS: u64 = 1 << 7;

/// Selector of the 64-bit code segment (GDT entry 1).
pub const CODE_SELECTOR: u16 = 0x08;
/// Selector of the data segment (GDT entry 2).
pub const DATA_SELECTOR: u16 = 0x10;
/// 64-bit code: present, DPL 0, execute/read, accessed, L = 1, G = 1
/// (Intel SDM Vol. 3A 3.4.5). Accessed is preset so the CPU never writes the
/// descriptor, and because VM entry requires it for CS (Intel SDM Vol. 3C
/// 27.3.1.2).
pub const CODE64_DESCRIPTOR: u64 = 0x00af_9b00_0000_ffff;
/// Data: present, DPL 0, read/write, accessed, D/B = 1, G = 1, limit 4 GiB.
pub const DATA_DESCRIPTOR: u64 = 0x00cf_9300_0000_ffff;
/// The GDT: null, code, data.
const GDT: [u64; 3] = [0, CODE64_DESCRIPTOR, DATA_DESCRIPTOR];

/// CR0: PE, MP, ET, NE, WP, PG (Intel SDM Vol. 3A 2.5).
pub const GUEST_CR0: u64 = (1 << 0) | (1 << 1) | (1 << 4) | (1 << 5) | (1 << 16) | (1 << 31);
/// CR4: PAE (required by long mode), OSFXSR and OSXMMEXCPT so SSE works.
pub const GUEST_CR4: u64 = (1 << 5) | (1 << 9) | (1 << 10);
/// EFER: LME, LMA, NXE. (EFER.SVME, which SVM requires in the guest's VMCB,
/// is the AMD backend's business, not part of the guest's view.)
pub const GUEST_EFER: u64 = (1 << 8) | (1 << 10) | (1 << 11);
/// RFLAGS: only the always-one bit 1; interrupts off.
pub const GUEST_RFLAGS: u64 = 0x2;

/// Where the builder put things, all guest-physical.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Guest memory size.
    pub memory_bytes: u64,
    /// Start of the reserved area (= bottom of the stack).
    pub reserved_start: u64,
    /// One past the top of the stack.
    pub stack_top: u64,
    /// The PML4; the PDPTs and PDs follow it.
    pub page_tables: u64,
    /// Number of page-table pages (PML4 + PDPTs + PDs).
    pub page_table_pages: u64,
    /// The GDT.
    pub gdt: u64,
    /// The start-info page (`memory_bytes - 4 KiB`).
    pub start_info: u64,
}

impl Layout {
    /// The layout for guest memory of `size` bytes.
    pub fn for_memory(size: u64) -> Result<Self, BuildError> {
        if !size.is_multiple_of(PAGE) {
            return Err(BuildError::MemorySizeUnaligned(size));
        }
        if size > MAX_GUEST_MEMORY {
            return Err(BuildError::MemoryTooLarge {
                size,
                max: MAX_GUEST_MEMORY,
            });
        }
        // size <= 2^40, so none of these overflow.
        let pdpts = size.div_ceil(SIZE_512G);
        let pds = size.div_ceil(SIZE_1G);
        let page_table_pages = 1 + pdpts + pds;
        // Stack, tables, GDT page, start-info page.
        let reserved = STACK_SIZE + (page_table_pages + 2) * PAGE;
        let reserved_start = size
            .checked_sub(reserved)
            .ok_or(BuildError::MemoryTooSmall {
                size,
                need: reserved,
            })?;
        let stack_top = reserved_start + STACK_SIZE;
        let gdt = stack_top + page_table_pages * PAGE;
        Ok(Self {
            memory_bytes: size,
            reserved_start,
            stack_top,
            page_tables: stack_top,
            page_table_pages,
            gdt,
            start_info: gdt + PAGE,
        })
    }
}

/// What [`build`] made: the vCPU's initial state and where everything was
/// put in guest memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Built {
    /// The first vCPU's initial state (the backends load it).
    pub boot: BootState,
    /// Where everything was put.
    pub layout: Layout,
}

/// Why a guest could not be built. Nothing is written to guest memory
/// unless every check passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildError {
    /// The image failed [`elf::check`].
    Elf(ElfError),
    /// The image is `ET_DYN`; only fixed-address executables are loaded.
    NotExec,
    /// A segment's `p_vaddr` differs from its `p_paddr`; the guest starts
    /// with an identity map, so it would not find its code.
    NotIdentityMapped {
        /// Program header index.
        segment: u16,
        /// `p_vaddr`.
        vaddr: u64,
        /// `p_paddr`.
        paddr: u64,
    },
    /// Guest memory size is not a multiple of 4 KiB.
    MemorySizeUnaligned(u64),
    /// Guest memory is over [`MAX_GUEST_MEMORY`].
    MemoryTooLarge {
        /// Guest memory size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// Guest memory cannot even hold the reserved area.
    MemoryTooSmall {
        /// Guest memory size.
        size: u64,
        /// Bytes the reserved area needs.
        need: u64,
    },
    /// A segment reaches beyond guest memory.
    SegmentOutsideMemory {
        /// Program header index.
        segment: u16,
        /// First guest-physical byte.
        start: u64,
        /// One past the last.
        end: u64,
        /// Guest memory size.
        memory: u64,
    },
    /// A segment overlaps the builder's area at the top of memory.
    SegmentOverlapsReserved {
        /// Program header index.
        segment: u16,
        /// First guest-physical byte.
        start: u64,
        /// One past the last.
        end: u64,
        /// Start of the reserved area.
        reserved_start: u64,
    },
    /// The command line does not fit the start-info page.
    CmdlineTooLong {
        /// Its length in bytes.
        len: usize,
        /// [`pvabi::CMDLINE_MAX`].
        max: usize,
    },
    /// Neither [`pvabi::HYPERCALL_VMCALL`] nor [`pvabi::HYPERCALL_VMMCALL`].
    BadHypercallInsn(u32),
    /// A Linux command line longer than Linux keeps, or with a NUL in it.
    LinuxCmdline {
        /// Its length in bytes.
        len: usize,
        /// Longest accepted (NUL excluded).
        max: usize,
    },
    /// The Linux kernel, its initramfs and the zero page do not fit in
    /// guest memory together.
    InitrdTooLarge {
        /// The initramfs' size.
        len: u64,
        /// Bytes left for it between the kernel and the loader's pages.
        room: u64,
    },
    /// A write to guest memory failed (a [`GuestMemory`] smaller than it
    /// said).
    Memory(OutOfBounds),
}

impl From<ElfError> for BuildError {
    fn from(e: ElfError) -> Self {
        Self::Elf(e)
    }
}

impl From<OutOfBounds> for BuildError {
    fn from(e: OutOfBounds) -> Self {
        Self::Memory(e)
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Elf(e) => write!(f, "bad guest image: {e}"),
            Self::NotExec => f.write_str(
                "bad guest image: position-independent (ET_DYN); only ET_EXEC is loaded",
            ),
            Self::NotIdentityMapped {
                segment,
                vaddr,
                paddr,
            } => write!(
                f,
                "segment {segment} has virtual address {vaddr:#x} but physical address \
                 {paddr:#x}; guests start identity-mapped, so they must be equal"
            ),
            Self::MemorySizeUnaligned(s) => {
                write!(f, "guest memory size {s:#x} is not a multiple of 4 KiB")
            }
            Self::MemoryTooLarge { size, max } => {
                write!(
                    f,
                    "guest memory size {size:#x} is over the limit of {max:#x}"
                )
            }
            Self::MemoryTooSmall { size, need } => write!(
                f,
                "guest memory of {size:#x} bytes is too small: stack, page tables, GDT and \
                 start info alone need {need:#x}"
            ),
            Self::SegmentOutsideMemory {
                segment,
                start,
                end,
                memory,
            } => write!(
                f,
                "segment {segment} at {start:#x}..{end:#x} is outside guest memory \
                 (0..{memory:#x})"
            ),
            Self::SegmentOverlapsReserved {
                segment,
                start,
                end,
                reserved_start,
            } => write!(
                f,
                "segment {segment} at {start:#x}..{end:#x} overlaps the stack, page tables and \
                 start info reserved from {reserved_start:#x}"
            ),
            Self::CmdlineTooLong { len, max } => {
                write!(f, "command line of {len} bytes is longer than {max}")
            }
            Self::BadHypercallInsn(i) => write!(f, "unknown hypercall instruction {i}"),
            Self::LinuxCmdline { len, max } => write!(
                f,
                "Linux command line of {len} bytes is longer than {max} or contains a NUL byte"
            ),
            Self::InitrdTooLarge { len, room } => write!(
                f,
                "initramfs of {len} bytes does not fit: {room} bytes are free above the kernel"
            ),
            Self::Memory(e) => write!(f, "writing guest memory: {e}"),
        }
    }
}

use crate::elf::LoadSegment as Segment64;

/// Checks every segment fits below `limit` (the lowest address the
/// builder writes itself). `identity`: each must also have
/// `p_vaddr == p_paddr` (pvabi guests start identity-mapped; a Linux
/// `vmlinux` is linked high and placed by `p_paddr`).
pub(super) fn check_segments(
    segments: &[Segment64],
    layout: &Layout,
    limit: u64,
    identity: bool,
) -> Result<(), BuildError> {
    for &s in segments {
        if identity && s.vaddr != s.paddr {
            return Err(BuildError::NotIdentityMapped {
                segment: s.index,
                vaddr: s.vaddr,
                paddr: s.paddr,
            });
        }
        // `check` ruled out wrap-around; saturate anyway.
        let end = s.paddr.saturating_add(s.memsz);
        if end > layout.memory_bytes {
            return Err(BuildError::SegmentOutsideMemory {
                segment: s.index,
                start: s.paddr,
                end,
                memory: layout.memory_bytes,
            });
        }
        if end > limit {
            return Err(BuildError::SegmentOverlapsReserved {
                segment: s.index,
                start: s.paddr,
                end,
                reserved_start: limit,
            });
        }
    }
    Ok(())
}

pub(super) fn load_segments(
    mem: &mut impl GuestMemory,
    image: &[u8],
    segments: &[Segment64],
) -> Result<(), BuildError> {
    for &s in segments {
        // A segment with no file bytes (all bss) reads nothing: `elf::check`
        // does not bound its offset, so neither may this (found by the
        // `elf` fuzz target: the image passed the checks, the first segment
        // was written, then this one failed).
        let bytes = if s.filesz == 0 {
            &[][..]
        } else {
            usize::try_from(s.offset)
                .ok()
                .zip(usize::try_from(s.filesz).ok())
                .and_then(|(off, len)| image.get(off..off.checked_add(len)?))
                // Ruled out by `elf::check`; report rather than panic.
                .ok_or(ElfError::Truncated {
                    segment: s.index,
                    needs: s.offset.saturating_add(s.filesz),
                    have: image.len() as u64,
                })?
        };
        mem.write(s.paddr, bytes)?;
        // The zero-fill (bss) after the file bytes; `filesz <= memsz`.
        let bss = s.memsz.saturating_sub(s.filesz);
        mem.fill(s.paddr.saturating_add(s.filesz), bss, 0)?;
    }
    Ok(())
}

pub(super) fn write_u64(
    mem: &mut impl GuestMemory,
    gpa: u64,
    value: u64,
) -> Result<(), OutOfBounds> {
    mem.write(gpa, &value.to_le_bytes())
}

/// Writes the identity map described in the module docs. The area is
/// already zeroed.
fn write_page_tables(mem: &mut impl GuestMemory, l: &Layout) -> Result<(), BuildError> {
    // Bounded by MAX_GUEST_MEMORY, so the arithmetic below cannot overflow.
    let pdpts = l.memory_bytes.div_ceil(SIZE_512G);
    let pds = l.memory_bytes.div_ceil(SIZE_1G);
    let pml4 = l.page_tables;
    let pdpt_base = pml4 + PAGE;
    let pd_base = pdpt_base + pdpts * PAGE;
    for i in 0..pdpts {
        write_u64(mem, pml4 + i * 8, (pdpt_base + i * PAGE) | PTE_P | PTE_W)?;
    }
    // PD j sits in PDPT j / 512 at slot j % 512: the PDPTs are contiguous,
    // so that is simply the j-th entry after pdpt_base.
    for j in 0..pds {
        write_u64(mem, pdpt_base + j * 8, (pd_base + j * PAGE) | PTE_P | PTE_W)?;
    }
    let pages_2m = l.memory_bytes.div_ceil(SIZE_2M);
    for k in 0..pages_2m {
        write_u64(mem, pd_base + k * 8, (k * SIZE_2M) | PTE_P | PTE_W | PTE_PS)?;
    }
    Ok(())
}

/// Builds a guest in `mem`: loads the ELF `image` (which must be
/// `ET_EXEC`, identity-linked, and leave the top of memory free; see the
/// module docs), writes the start-info page, stack, page tables and GDT,
/// and returns the vCPU's initial state and the layout. `hypercall_insn` is
/// [`pvabi::HYPERCALL_VMCALL`] or [`pvabi::HYPERCALL_VMMCALL`], whichever
/// the running backend traps.
///
/// Every check runs before the first write, so on error guest memory is as
/// it was.
pub fn build(
    mem: &mut impl GuestMemory,
    image: &[u8],
    cmdline: &str,
    domain_id: u32,
    hypercall_insn: u32,
) -> Result<Built, BuildError> {
    let (summary, layout) = check_image(mem, image, hypercall_insn)?;
    check_segments(&summary.segments, &layout, layout.reserved_start, true)?;
    let mut info = start_info(&layout, domain_id, hypercall_insn);
    info.set_cmdline(cmdline.as_bytes())
        .map_err(|_| BuildError::CmdlineTooLong {
            len: cmdline.len(),
            max: pvabi::CMDLINE_MAX,
        })?;
    load_segments(mem, image, &summary.segments)?;
    write_reserved(mem, &layout, &info)?;
    Ok(Built {
        boot: boot_state(summary.entry, &layout),
        layout,
    })
}

/// The checks every image kind shares: a fixed-address ELF, a known
/// hypercall instruction, a memory size the layout accepts.
pub(super) fn check_image(
    mem: &impl GuestMemory,
    image: &[u8],
    hypercall_insn: u32,
) -> Result<(elf::ElfSummary, Layout), BuildError> {
    let summary = elf::check(image)?;
    if summary.kind != ElfKind::Exec {
        return Err(BuildError::NotExec);
    }
    if hypercall_insn != pvabi::HYPERCALL_VMCALL && hypercall_insn != pvabi::HYPERCALL_VMMCALL {
        return Err(BuildError::BadHypercallInsn(hypercall_insn));
    }
    let layout = Layout::for_memory(mem.size())?;
    Ok((summary, layout))
}

/// The start info of a domain laid out as `layout` (command line empty).
pub(super) fn start_info(layout: &Layout, domain_id: u32, hypercall_insn: u32) -> StartInfo {
    let mut info = StartInfo::zeroed();
    info.magic = pvabi::START_INFO_MAGIC;
    info.abi_version = pvabi::PVABI_VERSION;
    info.hypercall_insn = hypercall_insn;
    info.domain_id = domain_id;
    info.nr_vcpus = 1;
    info.flags = 0;
    info.memory_bytes = layout.memory_bytes;
    info.start_info_gpa = layout.start_info;
    info.page_tables_gpa = layout.page_tables;
    info.stack_top = layout.stack_top;
    info
}

/// Zeroes the reserved area at the top of memory and writes the page
/// tables, the GDT and `info` into it.
pub(super) fn write_reserved(
    mem: &mut impl GuestMemory,
    layout: &Layout,
    info: &StartInfo,
) -> Result<(), BuildError> {
    let reserved_len = layout.memory_bytes - layout.reserved_start;
    mem.fill(layout.reserved_start, reserved_len, 0)?;
    write_page_tables(mem, layout)?;
    for (i, d) in (0u64..).zip(GDT) {
        write_u64(mem, layout.gdt + i * 8, d)?;
    }
    mem.write(layout.start_info, info.bytes())?;
    Ok(())
}

/// vCPU 0's state: 64-bit mode on the builder's tables and GDT, RIP =
/// `entry`, RDI = the start info, RSI = 0 (the Linux loader sets it).
pub(super) fn boot_state(entry: u64, layout: &Layout) -> BootState {
    BootState {
        rip: entry,
        rsp: layout.stack_top - 8,
        rdi: layout.start_info,
        rsi: 0,
        rflags: GUEST_RFLAGS,
        cr0: GUEST_CR0,
        cr3: layout.page_tables,
        cr4: GUEST_CR4,
        efer: GUEST_EFER,
        gdt_base: layout.gdt,
        gdt_limit: (GDT.len() * 8 - 1) as u16,
        cs: CODE_SELECTOR,
        ds: DATA_SELECTOR,
        code: Segment::flat(CODE_SELECTOR, CODE64_DESCRIPTOR),
        data: Segment::flat(DATA_SELECTOR, DATA_DESCRIPTOR),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::check_range;
    use std::boxed::Box;
    use std::collections::BTreeMap;
    use std::string::ToString;
    use std::vec::Vec;

    /// Sparse guest memory: untouched pages read as `background`, so tests
    /// can see what the builder zeroed and large memories cost nothing.
    pub(crate) struct TestMem {
        size: u64,
        background: u8,
        pages: BTreeMap<u64, Box<[u8; 4096]>>,
        writes: usize,
    }

    impl TestMem {
        pub(crate) fn new(size: u64, background: u8) -> Self {
            Self {
                size,
                background,
                pages: BTreeMap::new(),
                writes: 0,
            }
        }

        fn byte(&self, gpa: u64) -> u8 {
            assert!(gpa < self.size);
            self.pages
                .get(&(gpa / PAGE))
                .map_or(self.background, |p| p[(gpa % PAGE) as usize])
        }

        pub(crate) fn read(&self, gpa: u64, len: u64) -> Vec<u8> {
            (gpa..gpa + len).map(|a| self.byte(a)).collect()
        }

        pub(crate) fn u64_at(&self, gpa: u64) -> u64 {
            u64::from_le_bytes(self.read(gpa, 8).try_into().unwrap())
        }

        /// Calls `f(page, offset_in_page, index_in_access)` per chunk.
        fn each_chunk(&mut self, gpa: u64, len: u64, mut f: impl FnMut(&mut [u8], usize)) {
            let mut done = 0;
            while done < len {
                let a = gpa + done;
                let off = a % PAGE;
                let n = (PAGE - off).min(len - done);
                let bg = self.background;
                let page = self
                    .pages
                    .entry(a / PAGE)
                    .or_insert_with(|| Box::new([bg; 4096]));
                f(&mut page[off as usize..(off + n) as usize], done as usize);
                done += n;
            }
        }
    }

    impl GuestMemory for TestMem {
        fn size(&self) -> u64 {
            self.size
        }

        fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), OutOfBounds> {
            check_range(gpa, bytes.len() as u64, self.size)?;
            self.writes += 1;
            self.each_chunk(gpa, bytes.len() as u64, |dst, at| {
                dst.copy_from_slice(&bytes[at..at + dst.len()]);
            });
            Ok(())
        }

        fn fill(&mut self, gpa: u64, len: u64, byte: u8) -> Result<(), OutOfBounds> {
            check_range(gpa, len, self.size)?;
            self.writes += 1;
            self.each_chunk(gpa, len, |dst, _| dst.fill(byte));
            Ok(())
        }
    }

    /// A `PT_LOAD` for [`image`].
    pub(crate) struct Seg<'a> {
        pub(crate) flags: u32,
        pub(crate) vaddr: u64,
        pub(crate) paddr: u64,
        pub(crate) data: &'a [u8],
        pub(crate) memsz: u64,
    }

    fn seg(flags: u32, addr: u64, data: &[u8], memsz: u64) -> Seg<'_> {
        Seg {
            flags,
            vaddr: addr,
            paddr: addr,
            data,
            memsz,
        }
    }

    pub(crate) const RX: u32 = elf::PF_X | 4;
    pub(crate) const RW: u32 = 4 | 2;

    /// An ELF64 x86_64 image: header, program headers, then each
    /// segment's data at the next 4 KiB-aligned file offset.
    pub(crate) fn image(e_type: u16, entry: u64, segs: &[Seg<'_>]) -> Vec<u8> {
        let mut b = std::vec![0u8; 0x1000];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[6] = 1;
        b[16..18].copy_from_slice(&e_type.to_le_bytes());
        b[18..20].copy_from_slice(&elf::EM_X86_64.to_le_bytes());
        b[20..24].copy_from_slice(&1u32.to_le_bytes());
        b[24..32].copy_from_slice(&entry.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[52..54].copy_from_slice(&64u16.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&(segs.len() as u16).to_le_bytes());
        for (i, s) in segs.iter().enumerate() {
            let offset = b.len() as u64;
            b.extend_from_slice(s.data);
            b.resize(b.len().next_multiple_of(0x1000), 0);
            let o = 64 + 56 * i;
            b[o..o + 4].copy_from_slice(&elf::PT_LOAD.to_le_bytes());
            b[o + 4..o + 8].copy_from_slice(&s.flags.to_le_bytes());
            b[o + 8..o + 16].copy_from_slice(&offset.to_le_bytes());
            b[o + 16..o + 24].copy_from_slice(&s.vaddr.to_le_bytes());
            b[o + 24..o + 32].copy_from_slice(&s.paddr.to_le_bytes());
            b[o + 32..o + 40].copy_from_slice(&(s.data.len() as u64).to_le_bytes());
            b[o + 40..o + 48].copy_from_slice(&s.memsz.to_le_bytes());
            b[o + 48..o + 56].copy_from_slice(&0x1000u64.to_le_bytes());
        }
        b
    }

    const MIB: u64 = 1 << 20;
    const TEXT: &[u8] = &[0x0f, 0x01, 0xd9, 0xf4, 0xeb, 0xfd];

    /// Text at 1 MiB, data + bss at 2 MiB + 4 KiB.
    fn kernel() -> Vec<u8> {
        image(
            elf::ET_EXEC,
            MIB + 2,
            &[
                seg(RX, MIB, TEXT, 0x10),
                seg(RW, 2 * MIB + 0x1000, &[1, 2, 3, 4, 5], 0x3000),
            ],
        )
    }

    /// A four-level walk of the guest's own tables: GVA -> GPA.
    pub(crate) fn walk(mem: &TestMem, cr3: u64, va: u64) -> Option<u64> {
        let mut table = cr3;
        for level in [4u32, 3, 2] {
            let index = (va >> (12 + 9 * (level - 1))) & 0x1ff;
            let e = mem.u64_at(table + index * 8);
            if e & PTE_P == 0 {
                return None;
            }
            assert_eq!(e & PTE_W, PTE_W, "writable at level {level}");
            assert_eq!(e >> 52, 0, "no NX or high bits at level {level}");
            assert_eq!(e & 0b100, 0, "supervisor only at level {level}");
            if level == 2 {
                assert_eq!(e & PTE_PS, PTE_PS, "2 MiB leaves");
                return Some((e & 0x000f_ffff_ffe0_0000) | (va & (SIZE_2M - 1)));
            }
            assert_eq!(e & PTE_PS, 0, "no 1 GiB pages");
            table = e & 0x000f_ffff_ffff_f000;
        }
        None
    }

    /// A bss-only segment whose file offset lies past the image's end is
    /// valid (it reads no file bytes): the builder zeroes it like any bss
    /// (found by the `elf` fuzz target, which saw the text written, then
    /// the build fail).
    #[test]
    fn bss_only_segment_with_offset_past_the_end() {
        let mut img = image(
            elf::ET_EXEC,
            MIB,
            &[seg(RX, MIB, TEXT, 0x10), seg(RW, 2 * MIB, &[], 0x2000)],
        );
        let o = 64 + 56 + 8;
        img[o..o + 8].copy_from_slice(&0xdead_0000u64.to_le_bytes());
        let mut mem = TestMem::new(64 * MIB, 0xaa);
        build(&mut mem, &img, "", 1, pvabi::HYPERCALL_VMCALL).unwrap();
        assert_eq!(mem.read(MIB, TEXT.len() as u64), TEXT);
        assert!(mem.read(2 * MIB, 0x2000).iter().all(|&b| b == 0));
    }

    #[test]
    fn loads_segments_and_zeroes_bss() {
        let mut mem = TestMem::new(64 * MIB, 0xaa);
        let Built { boot, .. } =
            build(&mut mem, &kernel(), "hello", 7, pvabi::HYPERCALL_VMCALL).unwrap();
        assert_eq!(mem.read(MIB, TEXT.len() as u64), TEXT);
        // The text segment's bss (memsz 0x10) is zeroed too.
        assert_eq!(mem.read(MIB + 6, 10), [0; 10]);
        assert_eq!(mem.byte(MIB + 0x10), 0xaa, "nothing past memsz");
        assert_eq!(mem.byte(MIB - 1), 0xaa, "nothing before");
        let data = 2 * MIB + 0x1000;
        assert_eq!(mem.read(data, 5), [1, 2, 3, 4, 5]);
        assert!(mem.read(data + 5, 0x3000 - 5).iter().all(|&b| b == 0));
        assert_eq!(mem.byte(data + 0x3000), 0xaa);
        assert_eq!(boot.rip, MIB + 2);
    }

    #[test]
    fn layout_and_registers() {
        let size = 64 * MIB;
        let mut mem = TestMem::new(size, 0xaa);
        let Built { boot, layout } =
            build(&mut mem, &kernel(), "", 3, pvabi::HYPERCALL_VMMCALL).unwrap();
        let l = layout;
        // 64 MiB: PML4 + 1 PDPT + 1 PD.
        assert_eq!(l.page_table_pages, 3);
        assert_eq!(l.start_info, size - PAGE);
        assert_eq!(l.gdt, size - 2 * PAGE);
        assert_eq!(l.page_tables, size - 5 * PAGE);
        assert_eq!(l.stack_top, l.page_tables);
        assert_eq!(l.reserved_start, l.stack_top - STACK_SIZE);
        // The stack was zeroed (the background was 0xaa).
        assert!(
            mem.read(l.reserved_start, STACK_SIZE)
                .iter()
                .all(|&b| b == 0)
        );
        assert_eq!(mem.byte(l.reserved_start - 1), 0xaa);
        assert_eq!(boot.rsp, l.stack_top - 8);
        assert_eq!((boot.rsp + 8) % 16, 0);
        assert_eq!(mem.u64_at(boot.rsp), 0, "zero return address");
        assert_eq!(boot.rdi, l.start_info);
        assert_eq!(boot.cr3, l.page_tables);
        assert_eq!(boot.cr0, 0x8001_0033);
        assert_eq!(boot.cr4, 0x620);
        assert_eq!(boot.efer, 0xd00);
        assert_eq!(boot.rflags, 2);
        assert_eq!(boot.gdt_base, l.gdt);
        assert_eq!(boot.gdt_limit, 23);
        assert_eq!(mem.u64_at(l.gdt), 0);
        assert_eq!(mem.u64_at(l.gdt + 8), CODE64_DESCRIPTOR);
        assert_eq!(mem.u64_at(l.gdt + 16), DATA_DESCRIPTOR);
        assert_eq!(mem.u64_at(l.gdt + 24), 0);
        assert_eq!((boot.cs, boot.code.selector), (0x08, 0x08));
        assert_eq!((boot.ds, boot.data.selector), (0x10, 0x10));
        assert_eq!((boot.code.base, boot.code.limit), (0, 0xffff_ffff));
        assert_eq!((boot.data.base, boot.data.limit), (0, 0xffff_ffff));
        // Access rights: code 0x9b + L|G, data 0x93 + D/B|G.
        assert_eq!(boot.code.vmx_access_rights(), 0xa09b);
        assert_eq!(boot.data.vmx_access_rights(), 0xc093);
        assert_eq!(boot.code.svm_attributes(), 0xa9b);
        assert_eq!(boot.data.svm_attributes(), 0xc93);
    }

    #[test]
    fn start_info_fields() {
        let mut mem = TestMem::new(64 * MIB, 0xaa);
        let Built { boot, layout } =
            build(&mut mem, &kernel(), "console=hvc0 quiet", 9, 1).unwrap();
        let page = mem.read(boot.rdi, PAGE);
        let si = StartInfo::from_page(&page).unwrap();
        assert!(si.is_valid());
        assert_eq!(si.magic, pvabi::START_INFO_MAGIC);
        assert_eq!(si.abi_version, pvabi::PVABI_VERSION);
        assert_eq!(si.hypercall_insn, pvabi::HYPERCALL_VMMCALL);
        assert_eq!(si.domain_id, 9);
        assert_eq!(si.nr_vcpus, 1);
        assert_eq!(si.flags, 0);
        assert_eq!(si.memory_bytes, 64 * MIB);
        assert_eq!(si.start_info_gpa, boot.rdi);
        assert_eq!(si.page_tables_gpa, boot.cr3);
        assert_eq!(si.stack_top, layout.stack_top);
        assert_eq!(si.cmdline(), b"console=hvc0 quiet");
        assert!(page[pvabi::START_INFO_SIZE..].iter().all(|&b| b == 0));
        // The longest command line fits exactly.
        let long = "x".repeat(pvabi::CMDLINE_MAX);
        let mut mem = TestMem::new(64 * MIB, 0);
        let boot = build(&mut mem, &kernel(), &long, 0, 0).unwrap().boot;
        let si = StartInfo::from_page(&mem.read(boot.rdi, PAGE)).unwrap();
        assert_eq!(si.cmdline(), long.as_bytes());
    }

    fn check_identity_map(size: u64, tables: u64) {
        let mut mem = TestMem::new(size, 0);
        let Built { boot, layout } = build(&mut mem, &kernel(), "", 0, 0).unwrap();
        assert_eq!(layout.page_table_pages, tables, "size {size:#x}");
        let last_2m = (size - 1) & !(SIZE_2M - 1);
        for va in [
            0,
            0x1234,
            MIB + 2,
            SIZE_2M,
            SIZE_1G - 1,
            SIZE_1G,
            size / 2 + 0x777,
            boot.rsp,
            layout.start_info,
            size - 1,
            last_2m + SIZE_2M - 1,
        ] {
            if va < last_2m + SIZE_2M {
                assert_eq!(walk(&mem, boot.cr3, va), Some(va), "va {va:#x}");
            }
        }
        assert_eq!(walk(&mem, boot.cr3, last_2m + SIZE_2M), None);
        assert_eq!(walk(&mem, boot.cr3, 1 << 47), None);
        assert_eq!(walk(&mem, boot.cr3, SIZE_512G * 3), None);
    }

    #[test]
    fn identity_map_walks() {
        // PML4 + PDPT + PDs, by size.
        check_identity_map(64 * MIB, 3);
        check_identity_map(SIZE_1G, 3);
        check_identity_map(SIZE_1G + SIZE_2M, 4);
        check_identity_map(3 * SIZE_1G + 5 * PAGE, 6);
        check_identity_map(64 * MIB + 0x3000, 3);
        // Past 512 GiB: a second PDPT.
        check_identity_map(SIZE_512G + SIZE_1G, 1 + 2 + 513);
    }

    #[test]
    fn nothing_written_on_error() {
        let mut mem = TestMem::new(64 * MIB, 0xaa);
        let img = image(
            elf::ET_EXEC,
            MIB,
            &[seg(RX, MIB, TEXT, 0x10), seg(RW, 63 * MIB, &[1], 2 * MIB)],
        );
        assert!(build(&mut mem, &img, "", 0, 0).is_err());
        assert_eq!(mem.writes, 0);
        assert!(mem.pages.is_empty());
    }

    fn err(mem_size: u64, img: &[u8], cmdline: &str, insn: u32) -> BuildError {
        let mut mem = TestMem::new(mem_size, 0);
        let e = build(&mut mem, img, cmdline, 0, insn).unwrap_err();
        assert_eq!(mem.writes, 0, "{e}");
        e
    }

    #[test]
    fn errors() {
        let k = kernel();
        let size = 64 * MIB;
        // ELF errors are wrapped.
        let mut bad = k.clone();
        bad[0] = 0;
        let e = err(size, &bad, "", 0);
        assert_eq!(e, BuildError::Elf(ElfError::BadMagic));
        assert_eq!(
            e.to_string(),
            "bad guest image: not an ELF file (bad magic)"
        );
        assert_eq!(
            err(size, &k[..10], "", 0),
            BuildError::Elf(ElfError::TooShort { have: 10 })
        );

        let dyn_img = image(elf::ET_DYN, MIB, &[seg(RX, MIB, TEXT, 0x10)]);
        let e = err(size, &dyn_img, "", 0);
        assert_eq!(e, BuildError::NotExec);
        assert!(e.to_string().contains("ET_DYN"));

        let mut high = seg(RX, MIB, TEXT, 0x10);
        high.vaddr = 0xffff_ffff_8010_0000;
        let img = image(elf::ET_EXEC, 0xffff_ffff_8010_0000, &[high]);
        let e = err(size, &img, "", 0);
        assert_eq!(
            e,
            BuildError::NotIdentityMapped {
                segment: 0,
                vaddr: 0xffff_ffff_8010_0000,
                paddr: MIB
            }
        );
        assert_eq!(
            e.to_string(),
            "segment 0 has virtual address 0xffffffff80100000 but physical address 0x100000; \
             guests start identity-mapped, so they must be equal"
        );

        // Outside memory: the second segment ends past 64 MiB.
        let img = image(
            elf::ET_EXEC,
            MIB,
            &[seg(RX, MIB, TEXT, 0x10), seg(RW, 63 * MIB, &[1], 2 * MIB)],
        );
        let e = err(size, &img, "", 0);
        assert_eq!(
            e,
            BuildError::SegmentOutsideMemory {
                segment: 1,
                start: 63 * MIB,
                end: 65 * MIB,
                memory: size
            }
        );
        assert_eq!(
            e.to_string(),
            "segment 1 at 0x3f00000..0x4100000 is outside guest memory (0..0x4000000)"
        );
        // Entirely beyond memory.
        let img = image(elf::ET_EXEC, 128 * MIB, &[seg(RX, 128 * MIB, TEXT, 0x10)]);
        assert!(matches!(
            err(size, &img, "", 0),
            BuildError::SegmentOutsideMemory { segment: 0, .. }
        ));

        // Overlapping the reserved area by one byte, and just touching it.
        let reserved = Layout::for_memory(size).unwrap().reserved_start;
        let img = image(
            elf::ET_EXEC,
            MIB,
            &[
                seg(RX, MIB, TEXT, 0x10),
                seg(RW, reserved - 0x1000, &[], 0x1001),
            ],
        );
        let e = err(size, &img, "", 0);
        assert_eq!(
            e,
            BuildError::SegmentOverlapsReserved {
                segment: 1,
                start: reserved - 0x1000,
                end: reserved + 1,
                reserved_start: reserved
            }
        );
        assert!(
            e.to_string()
                .starts_with("segment 1 at 0x3fea000..0x3feb001 overlaps")
        );
        let img = image(
            elf::ET_EXEC,
            MIB,
            &[
                seg(RX, MIB, TEXT, 0x10),
                seg(RW, reserved - 0x1000, &[], 0x1000),
            ],
        );
        assert!(build(&mut TestMem::new(size, 0), &img, "", 0, 0).is_ok());

        // Memory sizes.
        let e = err(size + 1, &k, "", 0);
        assert_eq!(e, BuildError::MemorySizeUnaligned(size + 1));
        assert_eq!(
            e.to_string(),
            "guest memory size 0x4000001 is not a multiple of 4 KiB"
        );
        let e = err(MAX_GUEST_MEMORY + PAGE, &k, "", 0);
        assert!(matches!(e, BuildError::MemoryTooLarge { .. }));
        assert!(e.to_string().contains("over the limit of 0x10000000000"));
        let need = STACK_SIZE + 5 * PAGE;
        let e = err(need - PAGE, &k, "", 0);
        assert_eq!(
            e,
            BuildError::MemoryTooSmall {
                size: need - PAGE,
                need
            }
        );
        assert!(e.to_string().contains("too small"));
        // A memory that holds the reserved area but not the kernel.
        assert!(matches!(
            err(2 * MIB, &k, "", 0),
            BuildError::SegmentOutsideMemory { segment: 1, .. }
        ));
        assert!(matches!(
            err(MIB + 0x15000, &k, "", 0),
            BuildError::SegmentOverlapsReserved { segment: 0, .. }
        ));

        // Command line and hypercall instruction.
        let long = "y".repeat(pvabi::CMDLINE_MAX + 1);
        let e = err(size, &k, &long, 0);
        assert_eq!(
            e,
            BuildError::CmdlineTooLong {
                len: 1025,
                max: 1024
            }
        );
        assert_eq!(
            e.to_string(),
            "command line of 1025 bytes is longer than 1024"
        );
        let e = err(size, &k, "", 2);
        assert_eq!(e, BuildError::BadHypercallInsn(2));
        assert_eq!(e.to_string(), "unknown hypercall instruction 2");

        let oob = OutOfBounds {
            gpa: 1,
            len: 2,
            size: 3,
        };
        assert!(
            BuildError::from(oob)
                .to_string()
                .starts_with("writing guest memory: ")
        );
    }

    #[test]
    fn garbage_images_never_panic() {
        let good = kernel();
        // Up to 3 bytes of the headers changed (proptest, shrunk when one
        // panics).
        crate::testing::check(2000, 7, |r| {
            let mut img = good.clone();
            for _ in 0..1 + r.below(3) {
                let i = r.below(200) as usize;
                img[i] = r.below(256) as u8;
            }
            let _ = build(&mut TestMem::new(16 * MIB, 0), &img, "", 0, 0);
        });
    }
}

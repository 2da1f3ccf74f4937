//! Checking (not loading) an ELF64 x86_64 image, typically a boot module.
//!
//! The image comes from the boot loader and may be anything: truncated by a
//! short read, built for the wrong architecture, or hostile. [`check`]
//! validates everything a loader will later rely on, with checked
//! arithmetic throughout, and reports problems a person can act on.
//! Field layout per the System V gABI (ELF-64 Object File Format 1.5).
#![forbid(unsafe_code)]

use alloc::vec::Vec;
use core::fmt;

/// `e_machine` for x86_64.
pub const EM_X86_64: u16 = 62;
/// Executable file.
pub const ET_EXEC: u16 = 2;
/// Shared object / position-independent executable.
pub const ET_DYN: u16 = 3;
/// Loadable segment.
pub const PT_LOAD: u32 = 1;
/// Segment is executable.
pub const PF_X: u32 = 1;

/// Size of the ELF64 file header.
const EHDR_SIZE: usize = 64;
/// Size of an ELF64 program header (`e_phentsize` may be larger).
const PHDR_SIZE: u16 = 56;
/// Most `PT_LOAD` segments accepted; the overlap check is quadratic and real
/// kernels have fewer than ten.
pub const MAX_LOAD_SEGMENTS: usize = 64;

/// Whether the image is a fixed-address or a relocatable executable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElfKind {
    /// `ET_EXEC`: addresses are absolute.
    Exec,
    /// `ET_DYN`: addresses are relative to a load base.
    Dyn,
}

/// What [`check`] learned about a valid image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfSummary {
    /// `ET_EXEC` or `ET_DYN`.
    pub kind: ElfKind,
    /// Entry point (virtual; relative to the load base for `Dyn`).
    pub entry: u64,
    /// Number of non-empty `PT_LOAD` segments.
    pub load_segments: usize,
    /// Lowest `p_vaddr` of a loaded segment.
    pub vaddr_start: u64,
    /// One past the highest byte of any loaded segment (`p_vaddr + p_memsz`).
    pub vaddr_end: u64,
    /// Lowest `p_paddr` of a loaded segment.
    pub paddr_start: u64,
    /// One past the highest `p_paddr + p_memsz`.
    pub paddr_end: u64,
    /// The segments themselves, in program-header order. On the heap: an
    /// inline array of [`MAX_LOAD_SEGMENTS`] made this summary 4.6 KiB,
    /// copied into each caller's frame on the domain-create path, which
    /// then nearly filled a 64 KiB stack (issue 13).
    pub segments: Vec<LoadSegment>,
}

impl ElfSummary {
    /// Bytes of memory the loaded image spans (`vaddr_end - vaddr_start`).
    pub fn memory_span(&self) -> u64 {
        self.vaddr_end - self.vaddr_start
    }
}

/// Why an image was rejected. Segment numbers are indices in the program
/// header table, as `readelf -l` prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElfError {
    /// The image is shorter than the ELF header.
    TooShort {
        /// Image size.
        have: u64,
    },
    /// The first four bytes are not `\x7fELF`.
    BadMagic,
    /// Not ELFCLASS64.
    NotElf64,
    /// Not little-endian.
    NotLittleEndian,
    /// `e_ident[EI_VERSION]` or `e_version` is not 1.
    BadVersion(u32),
    /// Not built for x86_64.
    WrongMachine(u16),
    /// Neither `ET_EXEC` nor `ET_DYN`.
    BadType(u16),
    /// `e_phentsize` smaller than a program header.
    BadPhentsize(u16),
    /// The program header table lies (partly) outside the image.
    PhdrsOutOfBounds {
        /// Bytes the table needs from the start of the image (saturated).
        needs: u64,
        /// Image size.
        have: u64,
    },
    /// The section header table lies (partly) outside the image. Loading
    /// needs no sections, but the table sits at the end of the file, so this
    /// is how a file cut short after its segments is caught.
    ShdrsOutOfBounds {
        /// Bytes the table needs from the start of the image (saturated).
        needs: u64,
        /// Image size.
        have: u64,
    },
    /// No non-empty `PT_LOAD` segment.
    NoLoadSegments,
    /// More `PT_LOAD` segments than [`MAX_LOAD_SEGMENTS`].
    TooManySegments,
    /// The hypervisor heap had no room for the segment list.
    OutOfMemory {
        /// Segments the list needed to hold.
        segments: usize,
    },
    /// A segment's file data lies beyond the end of the image.
    Truncated {
        /// Segment index.
        segment: u16,
        /// Bytes the segment needs from the start of the image (saturated).
        needs: u64,
        /// Image size.
        have: u64,
    },
    /// `p_filesz > p_memsz`.
    FileszExceedsMemsz {
        /// Segment index.
        segment: u16,
        /// `p_filesz`.
        filesz: u64,
        /// `p_memsz`.
        memsz: u64,
    },
    /// `p_vaddr + p_memsz` or `p_paddr + p_memsz` wraps around.
    AddressOverflow {
        /// Segment index.
        segment: u16,
    },
    /// Two `PT_LOAD` segments overlap in (virtual or physical) memory.
    Overlap {
        /// First segment index.
        a: u16,
        /// Second segment index.
        b: u16,
    },
    /// The entry point is not inside an executable `PT_LOAD` segment.
    BadEntry {
        /// `e_entry`.
        entry: u64,
    },
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooShort { have } => write!(
                f,
                "truncated: the image has {have:#x} bytes, less than an ELF header"
            ),
            Self::BadMagic => f.write_str("not an ELF file (bad magic)"),
            Self::NotElf64 => f.write_str("not a 64-bit ELF file"),
            Self::NotLittleEndian => f.write_str("not a little-endian ELF file"),
            Self::BadVersion(v) => write!(f, "unsupported ELF version {v}"),
            Self::WrongMachine(m) => write!(f, "ELF machine {m} is not x86_64 ({EM_X86_64})"),
            Self::BadType(t) => write!(f, "ELF type {t} is not an executable (EXEC or DYN)"),
            Self::BadPhentsize(s) => {
                write!(f, "ELF program header size {s} is less than {PHDR_SIZE}")
            }
            Self::PhdrsOutOfBounds { needs, have } => write!(
                f,
                "truncated: the program headers need bytes up to {needs:#x} but the image has {have:#x}"
            ),
            Self::ShdrsOutOfBounds { needs, have } => write!(
                f,
                "truncated: the section headers need bytes up to {needs:#x} but the image has {have:#x}"
            ),
            Self::NoLoadSegments => f.write_str("ELF image has no loadable segment"),
            Self::TooManySegments => {
                write!(
                    f,
                    "ELF image has more than {MAX_LOAD_SEGMENTS} loadable segments"
                )
            }
            Self::OutOfMemory { segments } => write!(
                f,
                "no hypervisor heap left for the list of {segments} loadable segments"
            ),
            Self::Truncated {
                segment,
                needs,
                have,
            } => write!(
                f,
                "truncated: segment {segment} needs bytes up to {needs:#x} but the image has {have:#x}"
            ),
            Self::FileszExceedsMemsz {
                segment,
                filesz,
                memsz,
            } => write!(
                f,
                "segment {segment} has more file bytes ({filesz:#x}) than memory bytes ({memsz:#x})"
            ),
            Self::AddressOverflow { segment } => {
                write!(
                    f,
                    "segment {segment} wraps around the end of the address space"
                )
            }
            Self::Overlap { a, b } => write!(f, "segments {a} and {b} overlap in memory"),
            Self::BadEntry { entry } => write!(
                f,
                "entry point {entry:#x} is not inside an executable loadable segment"
            ),
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// One non-empty `PT_LOAD` segment of a checked image: everything a loader
/// needs, already validated (inside the file, no overflow, no overlap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadSegment {
    /// Program-header index, as `readelf -l` counts.
    pub index: u16,
    /// `p_flags` (`PF_X` = 1, `PF_W` = 2, `PF_R` = 4).
    pub flags: u32,
    /// File offset of the segment's bytes.
    pub offset: u64,
    /// Bytes present in the file.
    pub filesz: u64,
    /// Bytes in memory (the rest of `filesz..memsz` is zero).
    pub memsz: u64,
    /// Virtual address.
    pub vaddr: u64,
    /// One past the last virtual byte.
    pub vend: u64,
    /// Physical address.
    pub paddr: u64,
    /// One past the last physical byte.
    pub pend: u64,
}

type Load = LoadSegment;

/// Reads and checks program header `index` (its bytes are known to be in
/// the image); returns it if it is a non-empty `PT_LOAD`.
fn load_segment(ph: &[u8], index: u16, image_len: u64) -> Result<Option<Load>, ElfError> {
    // The caller bounds-checked the table; a short slice here would be a
    // bug, reported as truncation rather than a panic.
    let trunc = ElfError::PhdrsOutOfBounds {
        needs: u64::MAX,
        have: image_len,
    };
    let p_type = u32_at(ph, 0).ok_or(trunc)?;
    if p_type != PT_LOAD {
        return Ok(None);
    }
    let flags = u32_at(ph, 4).ok_or(trunc)?;
    let offset = u64_at(ph, 8).ok_or(trunc)?;
    let vaddr = u64_at(ph, 16).ok_or(trunc)?;
    let paddr = u64_at(ph, 24).ok_or(trunc)?;
    let filesz = u64_at(ph, 32).ok_or(trunc)?;
    let memsz = u64_at(ph, 40).ok_or(trunc)?;

    let needs = offset.saturating_add(filesz);
    if filesz != 0 && (offset.checked_add(filesz).is_none() || needs > image_len) {
        return Err(ElfError::Truncated {
            segment: index,
            needs,
            have: image_len,
        });
    }
    if filesz > memsz {
        return Err(ElfError::FileszExceedsMemsz {
            segment: index,
            filesz,
            memsz,
        });
    }
    let overflow = ElfError::AddressOverflow { segment: index };
    let vend = vaddr.checked_add(memsz).ok_or(overflow)?;
    let pend = paddr.checked_add(memsz).ok_or(overflow)?;
    if memsz == 0 {
        // Occupies no memory: nothing to load, nothing to overlap.
        return Ok(None);
    }
    Ok(Some(Load {
        index,
        flags,
        offset,
        filesz,
        memsz,
        vaddr,
        vend,
        paddr,
        pend,
    }))
}

/// Validates an ELF64 x86_64 executable image; see the module
/// documentation. Nothing is loaded or modified.
pub fn check(image: &[u8]) -> Result<ElfSummary, ElfError> {
    let have = image.len() as u64;
    let ehdr = image.get(..EHDR_SIZE).ok_or(ElfError::TooShort { have })?;
    let short = ElfError::TooShort { have };
    if ehdr.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err(ElfError::BadMagic);
    }
    // e_ident: EI_CLASS 4, EI_DATA 5, EI_VERSION 6.
    if ehdr.get(4) != Some(&2) {
        return Err(ElfError::NotElf64);
    }
    if ehdr.get(5) != Some(&1) {
        return Err(ElfError::NotLittleEndian);
    }
    let ident_version = ehdr.get(6).copied().ok_or(short)?;
    if ident_version != 1 {
        return Err(ElfError::BadVersion(ident_version.into()));
    }
    let e_type = u16_at(ehdr, 16).ok_or(short)?;
    let kind = match e_type {
        ET_EXEC => ElfKind::Exec,
        ET_DYN => ElfKind::Dyn,
        t => return Err(ElfError::BadType(t)),
    };
    let machine = u16_at(ehdr, 18).ok_or(short)?;
    if machine != EM_X86_64 {
        return Err(ElfError::WrongMachine(machine));
    }
    let version = u32_at(ehdr, 20).ok_or(short)?;
    if version != 1 {
        return Err(ElfError::BadVersion(version));
    }
    let entry = u64_at(ehdr, 24).ok_or(short)?;
    let phoff = u64_at(ehdr, 32).ok_or(short)?;
    let phentsize = u16_at(ehdr, 54).ok_or(short)?;
    let phnum = u16_at(ehdr, 56).ok_or(short)?;
    if phentsize < PHDR_SIZE {
        return Err(ElfError::BadPhentsize(phentsize));
    }

    // The whole table must be inside the image.
    let table_len = u64::from(phentsize) * u64::from(phnum);
    let table_end = phoff.saturating_add(table_len);
    if phoff.checked_add(table_len).is_none() || table_end > have {
        return Err(ElfError::PhdrsOutOfBounds {
            needs: table_end,
            have,
        });
    }

    // e_shoff 40, e_shentsize 58, e_shnum 60: a table, if any, must fit too.
    let shoff = u64_at(ehdr, 40).ok_or(short)?;
    let shentsize = u16_at(ehdr, 58).ok_or(short)?;
    let shnum = u16_at(ehdr, 60).ok_or(short)?;
    if shoff != 0 && shnum != 0 {
        let sh_len = u64::from(shentsize) * u64::from(shnum);
        let sh_end = shoff.saturating_add(sh_len);
        if sh_end > have {
            return Err(ElfError::ShdrsOutOfBounds {
                needs: sh_end,
                have,
            });
        }
    }

    let mut loads: Vec<Load> = Vec::new();
    for index in 0..phnum {
        // In bounds: the whole table was checked above, and image lengths
        // fit usize.
        let start = phoff + u64::from(index) * u64::from(phentsize);
        let ph = usize::try_from(start)
            .ok()
            .and_then(|s| image.get(s..s.checked_add(usize::from(phentsize))?))
            .ok_or(ElfError::PhdrsOutOfBounds {
                needs: table_end,
                have,
            })?;
        if let Some(load) = load_segment(ph, index, have)? {
            if loads.len() >= MAX_LOAD_SEGMENTS {
                return Err(ElfError::TooManySegments);
            }
            // Fallible: the image (and so the count) is the caller's.
            loads.try_reserve(1).map_err(|_| ElfError::OutOfMemory {
                segments: loads.len() + 1,
            })?;
            loads.push(load);
        }
    }
    if loads.is_empty() {
        return Err(ElfError::NoLoadSegments);
    }
    for (i, a) in loads.iter().enumerate() {
        for b in loads.iter().skip(i + 1) {
            let virt = a.vaddr < b.vend && b.vaddr < a.vend;
            // Physical overlap matters too: Linux and many kernels are loaded
            // by p_paddr.
            let phys = a.paddr < b.pend && b.paddr < a.pend;
            if virt || phys {
                return Err(ElfError::Overlap {
                    a: a.index,
                    b: b.index,
                });
            }
        }
    }
    // Virtual for pvabi guests (identity-linked, so both agree); physical
    // for a Linux `vmlinux`, whose `e_entry` is `phys_startup_64`
    // (`vmlinux.lds.S`: `ENTRY(phys_startup_64)`) while its segments are
    // linked at 0xffffffff81000000.
    let executable = |l: &&Load| {
        l.flags & PF_X != 0
            && ((l.vaddr <= entry && entry < l.vend) || (l.paddr <= entry && entry < l.pend))
    };
    if !loads.iter().any(|l| executable(&l)) {
        return Err(ElfError::BadEntry { entry });
    }
    // `loads` is non-empty, so these folds see at least one segment.
    Ok(ElfSummary {
        kind,
        entry,
        load_segments: loads.len(),
        vaddr_start: loads.iter().map(|l| l.vaddr).min().unwrap_or(0),
        vaddr_end: loads.iter().map(|l| l.vend).max().unwrap_or(0),
        paddr_start: loads.iter().map(|l| l.paddr).min().unwrap_or(0),
        paddr_end: loads.iter().map(|l| l.pend).max().unwrap_or(0),
        segments: loads,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::string::ToString;
    use std::vec::Vec;

    /// A program header for the builder.
    #[derive(Clone, Copy)]
    struct Ph {
        ty: u32,
        flags: u32,
        offset: u64,
        vaddr: u64,
        paddr: u64,
        filesz: u64,
        memsz: u64,
    }

    fn load(flags: u32, offset: u64, vaddr: u64, filesz: u64, memsz: u64) -> Ph {
        Ph {
            ty: PT_LOAD,
            flags,
            offset,
            vaddr,
            paddr: vaddr,
            filesz,
            memsz,
        }
    }

    /// Builds an image: header, program headers at 64, then zeros up to
    /// `size`.
    fn image(e_type: u16, entry: u64, phs: &[Ph], size: usize) -> Vec<u8> {
        let mut b = std::vec![0u8; size.max(64 + 56 * phs.len())];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[6] = 1;
        b[16..18].copy_from_slice(&e_type.to_le_bytes());
        b[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        b[20..24].copy_from_slice(&1u32.to_le_bytes());
        b[24..32].copy_from_slice(&entry.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[52..54].copy_from_slice(&64u16.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&(phs.len() as u16).to_le_bytes());
        for (i, p) in phs.iter().enumerate() {
            let o = 64 + 56 * i;
            b[o..o + 4].copy_from_slice(&p.ty.to_le_bytes());
            b[o + 4..o + 8].copy_from_slice(&p.flags.to_le_bytes());
            b[o + 8..o + 16].copy_from_slice(&p.offset.to_le_bytes());
            b[o + 16..o + 24].copy_from_slice(&p.vaddr.to_le_bytes());
            b[o + 24..o + 32].copy_from_slice(&p.paddr.to_le_bytes());
            b[o + 32..o + 40].copy_from_slice(&p.filesz.to_le_bytes());
            b[o + 40..o + 48].copy_from_slice(&p.memsz.to_le_bytes());
            b[o + 48..o + 56].copy_from_slice(&0x1000u64.to_le_bytes());
        }
        b
    }

    const RX: u32 = PF_X | 4;
    const RW: u32 = 4 | 2;

    /// A typical two-segment kernel: text at 1 MiB, data+bss after it.
    fn kernel() -> Vec<u8> {
        image(
            ET_EXEC,
            0x10_0100,
            &[
                load(RX, 0x1000, 0x10_0000, 0x3000, 0x3000),
                Ph {
                    ty: 4,
                    flags: 4,
                    offset: 0x200,
                    vaddr: 0,
                    paddr: 0,
                    filesz: 0x20,
                    memsz: 0x20,
                },
                load(RW, 0x4000, 0x10_4000, 0x1000, 0x5000),
            ],
            0x5000,
        )
    }

    #[test]
    fn valid_kernel() {
        let s = check(&kernel()).unwrap();
        assert_eq!(
            (
                s.kind,
                s.entry,
                s.load_segments,
                s.vaddr_start,
                s.vaddr_end,
                s.paddr_start,
                s.paddr_end
            ),
            (
                ElfKind::Exec,
                0x10_0100,
                2,
                0x10_0000,
                0x10_9000,
                0x10_0000,
                0x10_9000
            )
        );
        assert_eq!(s.segments.len(), 2);
        assert_eq!(
            (
                s.segments[1].index,
                s.segments[1].vaddr,
                s.segments[1].memsz
            ),
            (2, 0x10_4000, 0x5000)
        );
        assert_eq!(s.memory_span(), 0x9000);
    }

    #[test]
    fn valid_pie() {
        let img = image(ET_DYN, 0x40, &[load(RX, 0, 0, 0x1000, 0x1000)], 0x1000);
        assert_eq!(check(&img).unwrap().kind, ElfKind::Dyn);
    }

    #[test]
    fn header_checks() {
        let good = kernel();
        assert_eq!(check(&good[..63]), Err(ElfError::TooShort { have: 63 }));
        assert_eq!(check(&[]), Err(ElfError::TooShort { have: 0 }));
        assert!(
            ElfError::TooShort { have: 3 }
                .to_string()
                .starts_with("truncated")
        );
        let cases: [(usize, &[u8], ElfError); 8] = [
            (0, b"\x7fELG", ElfError::BadMagic),
            (4, &[1], ElfError::NotElf64),
            (5, &[2], ElfError::NotLittleEndian),
            (6, &[0], ElfError::BadVersion(0)),
            (16, &[1, 0], ElfError::BadType(1)),
            (18, &[3, 0], ElfError::WrongMachine(3)),
            (20, &[2, 0, 0, 0], ElfError::BadVersion(2)),
            (54, &[55, 0], ElfError::BadPhentsize(55)),
        ];
        for (at, bytes, want) in cases {
            let mut img = good.clone();
            img[at..at + bytes.len()].copy_from_slice(bytes);
            assert_eq!(check(&img), Err(want), "patch at {at}");
        }
    }

    #[test]
    fn larger_phentsize_is_honoured() {
        // Re-lay the table with a 64-byte stride.
        let mut img = kernel();
        let old: Vec<u8> = img[64..64 + 3 * 56].to_vec();
        img.resize(0x5000, 0);
        for i in 0..3 {
            let dst = 0x400 + 64 * i;
            img[dst..dst + 56].copy_from_slice(&old[56 * i..56 * i + 56]);
        }
        img[32..40].copy_from_slice(&0x400u64.to_le_bytes());
        img[54..56].copy_from_slice(&64u16.to_le_bytes());
        assert_eq!(check(&img).unwrap().load_segments, 2);
    }

    #[test]
    fn phdrs_out_of_bounds() {
        let mut img = kernel();
        img[32..40].copy_from_slice(&0x4ff0u64.to_le_bytes());
        assert_eq!(
            check(&img),
            Err(ElfError::PhdrsOutOfBounds {
                needs: 0x4ff0 + 3 * 56,
                have: 0x5000
            })
        );
        img[32..40].copy_from_slice(&(u64::MAX - 8).to_le_bytes());
        assert!(matches!(
            check(&img),
            Err(ElfError::PhdrsOutOfBounds { .. })
        ));
        let msg = ElfError::PhdrsOutOfBounds {
            needs: 0x10,
            have: 8,
        }
        .to_string();
        assert!(msg.starts_with("truncated"), "{msg}");
    }

    #[test]
    fn truncated_module() {
        let img = kernel();
        let short = &img[..0x4800];
        let e = check(short).unwrap_err();
        assert_eq!(
            e,
            ElfError::Truncated {
                segment: 2,
                needs: 0x5000,
                have: 0x4800
            }
        );
        assert_eq!(
            e.to_string(),
            "truncated: segment 2 needs bytes up to 0x5000 but the image has 0x4800"
        );
        // Offset overflow is truncation too.
        let img = image(ET_EXEC, 0, &[load(RX, u64::MAX, 0, 2, 2)], 0x100);
        assert!(matches!(
            check(&img),
            Err(ElfError::Truncated {
                needs: u64::MAX,
                ..
            })
        ));
    }

    #[test]
    fn filesz_exceeds_memsz() {
        let img = image(
            ET_EXEC,
            0x1000,
            &[load(RX, 0, 0x1000, 0x200, 0x100)],
            0x1000,
        );
        assert_eq!(
            check(&img),
            Err(ElfError::FileszExceedsMemsz {
                segment: 0,
                filesz: 0x200,
                memsz: 0x100
            })
        );
    }

    #[test]
    fn address_overflow() {
        let img = image(ET_EXEC, 0, &[load(RX, 0, u64::MAX - 0xff, 0, 0x200)], 0x100);
        assert_eq!(check(&img), Err(ElfError::AddressOverflow { segment: 0 }));
        let mut ph = load(RX, 0, 0x1000, 0, 0x200);
        ph.paddr = u64::MAX;
        let img = image(ET_EXEC, 0x1000, &[ph], 0x100);
        assert_eq!(check(&img), Err(ElfError::AddressOverflow { segment: 0 }));
    }

    #[test]
    fn overlapping_segments() {
        let img = image(
            ET_EXEC,
            0x1000,
            &[
                load(RX, 0, 0x1000, 0x100, 0x2000),
                load(RW, 0, 0x2fff, 0x100, 0x100),
            ],
            0x1000,
        );
        assert_eq!(check(&img), Err(ElfError::Overlap { a: 0, b: 1 }));
        assert_eq!(
            ElfError::Overlap { a: 0, b: 1 }.to_string(),
            "segments 0 and 1 overlap in memory"
        );
        // Touching is fine.
        let img = image(
            ET_EXEC,
            0x1000,
            &[
                load(RX, 0, 0x1000, 0x100, 0x2000),
                load(RW, 0, 0x3000, 0x100, 0x100),
            ],
            0x1000,
        );
        assert!(check(&img).is_ok());
        // Physical overlap with distinct virtual addresses.
        let mut b = load(RW, 0, 0xffff_8000_0000_0000, 0x100, 0x100);
        b.paddr = 0x1800;
        let img = image(
            ET_EXEC,
            0x1000,
            &[load(RX, 0, 0x1000, 0x100, 0x1000), b],
            0x1000,
        );
        assert_eq!(check(&img), Err(ElfError::Overlap { a: 0, b: 1 }));
    }

    #[test]
    fn entry_must_be_executable() {
        let img = image(
            ET_EXEC,
            0x5000,
            &[
                load(RX, 0, 0x1000, 0x100, 0x1000),
                load(RW, 0, 0x5000, 0x100, 0x1000),
            ],
            0x1000,
        );
        assert_eq!(check(&img), Err(ElfError::BadEntry { entry: 0x5000 }));
        // One past the end of the text segment.
        let img = image(
            ET_EXEC,
            0x2000,
            &[load(RX, 0, 0x1000, 0x100, 0x1000)],
            0x1000,
        );
        assert_eq!(check(&img), Err(ElfError::BadEntry { entry: 0x2000 }));
    }

    #[test]
    fn no_load_segments() {
        let img = image(ET_EXEC, 0, &[], 0x100);
        assert_eq!(check(&img), Err(ElfError::NoLoadSegments));
        // Empty PT_LOADs do not count.
        let img = image(ET_EXEC, 0, &[load(RX, 0, 0x1000, 0, 0)], 0x100);
        assert_eq!(check(&img), Err(ElfError::NoLoadSegments));
    }

    #[test]
    fn too_many_segments() {
        let phs: Vec<Ph> = (0..=MAX_LOAD_SEGMENTS as u64)
            .map(|i| load(RX, 0, 0x1000 * (i + 1), 0x10, 0x10))
            .collect();
        let img = image(ET_EXEC, 0x1000, &phs, 0x100);
        assert_eq!(check(&img), Err(ElfError::TooManySegments));
        let img = image(ET_EXEC, 0x1000, &phs[..MAX_LOAD_SEGMENTS], 0x100);
        assert_eq!(check(&img).unwrap().load_segments, MAX_LOAD_SEGMENTS);
    }

    #[test]
    fn garbage_never_panics() {
        let good = kernel();
        for len in [0usize, 1, 4, 63, 64, 65, 120, 232, 0x4000] {
            let _ = check(&good[..len]);
        }
        // Up to 3 bytes of the headers changed, where the interesting
        // fields are (proptest, shrunk when one panics).
        crate::testing::check(3000, 7, |r| {
            let mut img = good.clone();
            for _ in 0..1 + r.below(3) {
                let i = r.below(240) as usize;
                img[i] = r.below(256) as u8;
            }
            let _ = check(&img);
        });
    }

    #[test]
    fn cut_after_segments_is_caught_by_section_headers() {
        let mut img = kernel();
        // Claim a section header table beyond the end of the file.
        let end = img.len() as u64;
        img[40..48].copy_from_slice(&(end + 64).to_le_bytes());
        img[58..60].copy_from_slice(&64u16.to_le_bytes());
        img[60..62].copy_from_slice(&3u16.to_le_bytes());
        let e = check(&img).unwrap_err();
        assert!(matches!(e, ElfError::ShdrsOutOfBounds { .. }));
        assert!(std::format!("{e}").starts_with("truncated:"));
    }
}

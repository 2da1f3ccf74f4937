//! Multiboot2 boot information (GRUB on BIOS and UEFI).
//!
//! Layout per the Multiboot2 specification, section 3.6: an 8-byte aligned
//! block `{ total_size: u32, reserved: u32 }` followed by tags
//! `{ type: u32, size: u32, payload }`, each starting 8-byte aligned, ending
//! with a tag of type 0. `size` counts the tag header but not the padding.
//! Everything is read through [`PhysRead`] and bounded by `total_size`.
#![forbid(unsafe_code)]

use super::info::{BootInfo, BootInfoError, BootProtocol, Framebuffer, MAX_MODULE_CMDLINE, Module};
use super::{PhysRead, push_e820_region, read_cstr, read_u32};

/// The value a Multiboot2 loader leaves in EAX (spec 3.3).
pub const BOOTLOADER_MAGIC: u32 = 0x36d7_6289;

/// Largest boot information block we accept. GRUB's is a few KiB even with a
/// long OVMF memory map; anything near this cap is garbage.
pub const MAX_TOTAL_SIZE: u32 = 1 << 20;

const TAG_END: u32 = 0;
const TAG_CMDLINE: u32 = 1;
const TAG_LOADER_NAME: u32 = 2;
const TAG_MODULE: u32 = 3;
const TAG_MEMORY_MAP: u32 = 6;
const TAG_FRAMEBUFFER: u32 = 8;
const TAG_ACPI_OLD: u32 = 14;
const TAG_ACPI_NEW: u32 = 15;

/// Tag header: type and size.
const TAG_HEADER: u64 = 8;
/// Size of one memory map entry in the version-0 format; `entry_size` may be
/// larger (future fields) and is then used as the stride.
const MMAP_ENTRY_MIN: u32 = 24;
/// ACPI 1.0 RSDP is 20 bytes, the 2.0+ XSDP 36 (ACPI 6.5 5.2.5.3).
const RSDP_V1_LEN: u64 = 20;
const RSDP_V2_LEN: u64 = 36;

/// Parses the Multiboot2 information block at physical `info_addr`.
pub fn parse(mem: &impl PhysRead, info_addr: u64) -> Result<BootInfo, BootInfoError> {
    let mut info = BootInfo::new(BootProtocol::Multiboot2);
    parse_into(mem, info_addr, &mut info)?;
    Ok(info)
}

/// [`parse`] into `info`. On an error `info` keeps what was read before
/// it (GRUB puts the command-line tag before the modules), so the caller
/// can still honour `exit=` when it reports the error.
pub fn parse_into(
    mem: &impl PhysRead,
    info_addr: u64,
    info: &mut BootInfo,
) -> Result<(), BootInfoError> {
    if info_addr == 0 || !info_addr.is_multiple_of(8) {
        return Err(BootInfoError::BadPointer(info_addr));
    }
    let total = read_u32(mem, info_addr).ok_or(BootInfoError::Truncated {
        what: "multiboot2 information header",
        offset: 0,
    })?;
    if !(16..=MAX_TOTAL_SIZE).contains(&total) {
        return Err(BootInfoError::BadSize {
            what: "multiboot2 total_size",
            value: total.into(),
        });
    }
    let total = u64::from(total);
    let info_end = info_addr.checked_add(total).ok_or(BootInfoError::BadSize {
        what: "multiboot2 total_size",
        value: total,
    })?;

    info.reset(BootProtocol::Multiboot2);
    let mut rsdp_old = None;
    let mut rsdp_new = None;
    let mut have_mmap = false;
    let mut have_end = false;

    // Offsets are relative to `info_addr` and never exceed `total` (<= 1 MiB),
    // so `info_addr + off` cannot overflow: `info_end` did not.
    let mut off = TAG_HEADER;
    while off.checked_add(TAG_HEADER).is_some_and(|e| e <= total) {
        let tag = info_addr + off;
        let what = "multiboot2 tag header";
        let ty = read_u32(mem, tag).ok_or(BootInfoError::Truncated { what, offset: off })?;
        let size = read_u32(mem, tag + 4).ok_or(BootInfoError::Truncated { what, offset: off })?;
        let size = u64::from(size);
        if size < TAG_HEADER {
            return Err(BootInfoError::BadSize {
                what: "multiboot2 tag size",
                value: size,
            });
        }
        // Both terms are at most 2^32, so the sum cannot overflow.
        let tag_end = off + size;
        if tag_end > total {
            return Err(BootInfoError::Truncated {
                what: "multiboot2 tag",
                offset: off,
            });
        }
        let t = Tag {
            mem,
            addr: tag,
            size,
            off,
        };
        match ty {
            TAG_END => {
                have_end = true;
                break;
            }
            TAG_CMDLINE => {
                info.cmdline = read_cstr(mem, tag + TAG_HEADER, size - TAG_HEADER, "command line")?;
            }
            TAG_LOADER_NAME => {
                info.loader_name =
                    read_cstr(mem, tag + TAG_HEADER, size - TAG_HEADER, "boot loader name")?;
            }
            TAG_MODULE => parse_module(&t, info)?,
            TAG_MEMORY_MAP => {
                parse_mmap(&t, info)?;
                have_mmap = true;
            }
            TAG_FRAMEBUFFER => {
                t.need(30, "multiboot2 framebuffer tag")?;
                info.framebuffer = Some(Framebuffer {
                    addr: t.u64_at(8)?,
                    pitch: t.u32_at(16)?,
                    width: t.u32_at(20)?,
                    height: t.u32_at(24)?,
                    bpp: t.u8_at(28)?,
                });
            }
            // The loader copies the RSDP into the tag; the block stays
            // reserved (it is in `loader_ranges`), so pointing into it is safe
            // for as long as the RSDP is needed.
            TAG_ACPI_OLD => {
                t.need(TAG_HEADER + RSDP_V1_LEN, "multiboot2 ACPI 1.0 RSDP tag")?;
                rsdp_old = Some(tag + TAG_HEADER);
            }
            TAG_ACPI_NEW => {
                t.need(TAG_HEADER + RSDP_V2_LEN, "multiboot2 ACPI 2.0 RSDP tag")?;
                rsdp_new = Some(tag + TAG_HEADER);
            }
            // The specification lets loaders add tags; skipping them is the
            // documented behaviour (spec 3.6.1).
            _ => {}
        }
        // Next tag starts at the next 8-byte boundary; cannot overflow as
        // tag_end <= total <= 1 MiB.
        off = tag_end.next_multiple_of(8);
    }
    if !have_end {
        return Err(BootInfoError::Truncated {
            what: "multiboot2 information (no end tag)",
            offset: off,
        });
    }
    if !have_mmap {
        return Err(BootInfoError::NoMemoryMap);
    }
    // The XSDP carries the 64-bit XSDT address; prefer it when both exist.
    info.rsdp = rsdp_new.or(rsdp_old);
    info.loader_ranges
        .try_push((info_addr, info_end))
        .map_err(|_| BootInfoError::TooMany {
            what: "loader ranges",
            limit: info.loader_ranges.capacity(),
        })?;
    Ok(())
}

/// One tag being parsed, with bounds-checked field readers.
struct Tag<'m, M: PhysRead> {
    mem: &'m M,
    /// Physical address of the tag header.
    addr: u64,
    /// The tag's `size` field (header included), already checked to lie
    /// inside the information block.
    size: u64,
    /// Offset of the tag inside the information block, for errors.
    off: u64,
}

impl<M: PhysRead> Tag<'_, M> {
    /// Fails unless the tag is at least `len` bytes long.
    fn need(&self, len: u64, what: &'static str) -> Result<(), BootInfoError> {
        if self.size < len {
            return Err(BootInfoError::BadSize {
                what,
                value: self.size,
            });
        }
        Ok(())
    }

    fn field_err(&self) -> BootInfoError {
        BootInfoError::Truncated {
            what: "multiboot2 tag field",
            offset: self.off,
        }
    }

    /// Reads `buf.len()` bytes at `at` inside the tag.
    fn read(&self, at: u64, buf: &mut [u8]) -> Result<(), BootInfoError> {
        let end = at.checked_add(buf.len() as u64).ok_or(self.field_err())?;
        if end > self.size || !self.mem.read(self.addr + at, buf) {
            return Err(self.field_err());
        }
        Ok(())
    }

    fn u8_at(&self, at: u64) -> Result<u8, BootInfoError> {
        let mut b = [0u8; 1];
        self.read(at, &mut b)?;
        Ok(b[0])
    }

    fn u32_at(&self, at: u64) -> Result<u32, BootInfoError> {
        let mut b = [0u8; 4];
        self.read(at, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn u64_at(&self, at: u64) -> Result<u64, BootInfoError> {
        let mut b = [0u8; 8];
        self.read(at, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
}

/// Tag 3: `{ mod_start: u32, mod_end: u32, string }` (spec 3.6.6).
fn parse_module<M: PhysRead>(t: &Tag<'_, M>, info: &mut BootInfo) -> Result<(), BootInfoError> {
    // Header, two addresses, and at least the string's NUL.
    t.need(17, "multiboot2 module tag")?;
    let start = t.u32_at(8)?;
    let end = t.u32_at(12)?;
    if end < start {
        return Err(BootInfoError::BadSize {
            what: "multiboot2 module (end before start)",
            value: end.into(),
        });
    }
    let cmdline =
        read_cstr::<MAX_MODULE_CMDLINE>(t.mem, t.addr + 16, t.size - 16, "module command line")?;
    info.modules
        .try_push(Module {
            start: start.into(),
            end: end.into(),
            cmdline,
        })
        .map_err(|_| BootInfoError::TooMany {
            what: "boot modules",
            limit: info.modules.capacity(),
        })
}

/// Tag 6: `{ entry_size: u32, entry_version: u32, entries... }` (spec 3.6.8).
fn parse_mmap<M: PhysRead>(t: &Tag<'_, M>, info: &mut BootInfo) -> Result<(), BootInfoError> {
    t.need(16, "multiboot2 memory map tag")?;
    let entry_size = t.u32_at(8)?;
    if entry_size < MMAP_ENTRY_MIN {
        return Err(BootInfoError::BadSize {
            what: "multiboot2 memory map entry_size",
            value: entry_size.into(),
        });
    }
    // entry_version is 0 today; later versions promise to stay compatible
    // with the 24-byte prefix, so it is not checked.
    let stride = u64::from(entry_size);
    let mut at = 16u64;
    // A trailing fragment shorter than one entry is ignored, as GRUB does.
    while at + stride <= t.size {
        let base = t.u64_at(at)?;
        let len = t.u64_at(at + 8)?;
        let ty = t.u32_at(at + 16)?;
        push_e820_region(
            &mut info.memory,
            base,
            len,
            ty,
            "multiboot2 memory map entry",
        )?;
        at += stride;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::FakeMem;
    use super::super::info::{MAX_MEMORY_REGIONS, MAX_MODULES, MemoryRegion, RegionKind};
    use super::*;
    use std::string::ToString;
    use std::vec::Vec;

    const BASE: u64 = 0x10_0000;

    /// Builds a Multiboot2 information block tag by tag.
    struct Mbi {
        bytes: Vec<u8>,
    }

    impl Mbi {
        fn new() -> Self {
            Self {
                bytes: std::vec![0; 8],
            }
        }

        /// Appends a tag with the given payload, padded to 8 bytes.
        fn tag(mut self, ty: u32, payload: &[u8]) -> Self {
            self.raw_tag(ty, (payload.len() + 8) as u32, payload);
            self
        }

        /// Appends a tag with an explicit size field (for breaking things).
        fn raw_tag(&mut self, ty: u32, size: u32, payload: &[u8]) {
            self.bytes.extend_from_slice(&ty.to_le_bytes());
            self.bytes.extend_from_slice(&size.to_le_bytes());
            self.bytes.extend_from_slice(payload);
            while !self.bytes.len().is_multiple_of(8) {
                self.bytes.push(0);
            }
        }

        fn end(self) -> Self {
            self.tag(0, &[])
        }

        /// Fills in total_size and places the block at BASE.
        fn mem(mut self) -> FakeMem {
            let total = self.bytes.len() as u32;
            self.bytes[..4].copy_from_slice(&total.to_le_bytes());
            FakeMem {
                base: BASE,
                bytes: self.bytes,
            }
        }
    }

    fn cstr(s: &str) -> Vec<u8> {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        v
    }

    fn module(start: u32, end: u32, s: &str) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&start.to_le_bytes());
        v.extend_from_slice(&end.to_le_bytes());
        v.extend_from_slice(&cstr(s));
        v
    }

    fn mmap(entry_size: u32, entries: &[(u64, u64, u32)]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&entry_size.to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes());
        for &(base, len, ty) in entries {
            let start = v.len();
            v.extend_from_slice(&base.to_le_bytes());
            v.extend_from_slice(&len.to_le_bytes());
            v.extend_from_slice(&ty.to_le_bytes());
            v.resize(start + entry_size as usize, 0xaa);
        }
        v
    }

    fn basic_mmap() -> Vec<u8> {
        mmap(24, &[(0, 0x9f000, 1), (0x10_0000, 0x3ff0_0000, 1)])
    }

    #[test]
    fn full_example() {
        let mut fb = Vec::new();
        fb.extend_from_slice(&0xfd00_0000u64.to_le_bytes());
        fb.extend_from_slice(&4096u32.to_le_bytes());
        fb.extend_from_slice(&1024u32.to_le_bytes());
        fb.extend_from_slice(&768u32.to_le_bytes());
        fb.extend_from_slice(&[32, 1, 0, 0]);
        let mem = Mbi::new()
            .tag(TAG_CMDLINE, &cstr("loglevel=debug exit=qemu"))
            .tag(TAG_LOADER_NAME, &cstr("GRUB 2.12"))
            .tag(99, &[1, 2, 3]) // unknown: skipped
            .tag(
                TAG_MODULE,
                &module(0x20_0000, 0x20_8000, "/boot/dom0.elf console=hvc0"),
            )
            .tag(TAG_MODULE, &module(0x30_0000, 0x30_0000, ""))
            .tag(
                TAG_MEMORY_MAP,
                &mmap(
                    24,
                    &[
                        (0, 0x9fc00, 1),
                        (0x9fc00, 0x400, 2),
                        (0xe0000, 0, 2),
                        (0x7fe0_0000, 0x2_0000, 3),
                        (0x7ff0_0000, 0x1000, 4),
                        (0x8000_0000, 0x1000, 5),
                        (0x9000_0000, 0x1000, 12),
                    ],
                ),
            )
            .tag(TAG_FRAMEBUFFER, &fb)
            .tag(TAG_ACPI_OLD, &[0u8; 20])
            .end()
            .mem();
        let total = mem.bytes.len() as u64;
        let info = parse(&mem, BASE).unwrap();
        assert_eq!(info.protocol, BootProtocol::Multiboot2);
        assert_eq!(info.cmdline.as_str(), "loglevel=debug exit=qemu");
        assert_eq!(info.loader_name.as_str(), "GRUB 2.12");
        assert_eq!(info.modules.len(), 2);
        assert_eq!(info.modules[0].start, 0x20_0000);
        assert_eq!(info.modules[0].end, 0x20_8000);
        assert_eq!(info.modules[0].name(), Some("dom0.elf"));
        assert_eq!(info.modules[0].args(), "console=hvc0");
        assert_eq!(info.modules[1].name(), None);
        let kinds: Vec<_> = info
            .memory
            .iter()
            .map(|r| (r.start, r.end, r.kind))
            .collect();
        assert_eq!(
            kinds,
            std::vec![
                (0, 0x9fc00, RegionKind::Usable),
                (0x9fc00, 0xa0000, RegionKind::Reserved),
                (0x7fe0_0000, 0x7fe2_0000, RegionKind::AcpiReclaimable),
                (0x7ff0_0000, 0x7ff0_1000, RegionKind::AcpiNvs),
                (0x8000_0000, 0x8000_1000, RegionKind::BadMemory),
                (0x9000_0000, 0x9000_1000, RegionKind::Reserved),
            ]
        );
        assert_eq!(
            info.framebuffer,
            Some(Framebuffer {
                addr: 0xfd00_0000,
                pitch: 4096,
                width: 1024,
                height: 768,
                bpp: 32
            })
        );
        assert!(info.rsdp.is_some());
        assert_eq!(info.loader_ranges.as_slice(), &[(BASE, BASE + total)]);
    }

    #[test]
    fn rsdp_points_into_the_tag_and_prefers_acpi2() {
        // Tags: mmap first so the offsets below are easy to compute.
        let m = Mbi::new().tag(TAG_MEMORY_MAP, &basic_mmap());
        let old_off = m.bytes.len() as u64;
        let m = m.tag(TAG_ACPI_OLD, &[1u8; 20]);
        let new_off = m.bytes.len() as u64;
        let mem = m.tag(TAG_ACPI_NEW, &[2u8; 36]).end().mem();
        assert_eq!(parse(&mem, BASE).unwrap().rsdp, Some(BASE + new_off + 8));

        // Order does not matter.
        let m = Mbi::new().tag(TAG_ACPI_NEW, &[2u8; 36]);
        let m = m.tag(TAG_ACPI_OLD, &[1u8; 20]);
        let mem = m.tag(TAG_MEMORY_MAP, &basic_mmap()).end().mem();
        assert_eq!(parse(&mem, BASE).unwrap().rsdp, Some(BASE + 8 + 8));

        // Only the old one.
        let mem = Mbi::new()
            .tag(TAG_MEMORY_MAP, &basic_mmap())
            .tag(TAG_ACPI_OLD, &[1u8; 20])
            .end()
            .mem();
        assert_eq!(parse(&mem, BASE).unwrap().rsdp, Some(BASE + old_off + 8));

        // None.
        let mem = Mbi::new().tag(TAG_MEMORY_MAP, &basic_mmap()).end().mem();
        assert_eq!(parse(&mem, BASE).unwrap().rsdp, None);
    }

    #[test]
    fn short_rsdp_tag() {
        let mem = Mbi::new()
            .tag(TAG_MEMORY_MAP, &basic_mmap())
            .tag(TAG_ACPI_NEW, &[0u8; 20])
            .end()
            .mem();
        assert!(matches!(
            parse(&mem, BASE),
            Err(BootInfoError::BadSize { .. })
        ));
    }

    #[test]
    fn bad_pointer() {
        let mem = Mbi::new().tag(TAG_MEMORY_MAP, &basic_mmap()).end().mem();
        assert_eq!(parse(&mem, 0).unwrap_err(), BootInfoError::BadPointer(0));
        assert_eq!(
            parse(&mem, BASE + 4).unwrap_err(),
            BootInfoError::BadPointer(BASE + 4)
        );
        // Aligned but unreadable.
        assert!(matches!(
            parse(&mem, 0x8000),
            Err(BootInfoError::Truncated { .. })
        ));
    }

    #[test]
    fn total_size_limits() {
        let mut mem = Mbi::new().tag(TAG_MEMORY_MAP, &basic_mmap()).end().mem();
        for bad in [0u32, 8, 15, MAX_TOTAL_SIZE + 1, u32::MAX] {
            mem.bytes[..4].copy_from_slice(&bad.to_le_bytes());
            assert_eq!(
                parse(&mem, BASE).unwrap_err(),
                BootInfoError::BadSize {
                    what: "multiboot2 total_size",
                    value: bad.into()
                }
            );
        }
    }

    #[test]
    fn total_size_larger_than_readable_memory() {
        let mut mem = Mbi::new().tag(TAG_MEMORY_MAP, &basic_mmap()).mem();
        // Claims more than exists and has no end tag: reading the next tag
        // header fails cleanly.
        mem.bytes[..4].copy_from_slice(&4096u32.to_le_bytes());
        assert!(matches!(
            parse(&mem, BASE),
            Err(BootInfoError::Truncated { .. })
        ));
    }

    #[test]
    fn info_block_at_top_of_address_space() {
        // total_size 16 is plausible, but the block would wrap past 2^64.
        let mem = FakeMem {
            base: u64::MAX - 7,
            bytes: std::vec![16, 0, 0, 0, 0, 0, 0, 0],
        };
        let e = parse(&mem, u64::MAX - 7).unwrap_err();
        assert!(matches!(e, BootInfoError::BadSize { .. }), "{e:?}");
    }

    #[test]
    fn tag_overruns_total_size() {
        let mut m = Mbi::new().tag(TAG_MEMORY_MAP, &basic_mmap());
        m.raw_tag(TAG_CMDLINE, 64, &cstr("abc"));
        let mem = m.end().mem();
        let e = parse(&mem, BASE).unwrap_err();
        assert!(
            matches!(
                e,
                BootInfoError::Truncated {
                    what: "multiboot2 tag",
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn tag_size_too_small() {
        let mut m = Mbi::new().tag(TAG_MEMORY_MAP, &basic_mmap());
        m.raw_tag(77, 4, &[0; 8]);
        let mem = m.end().mem();
        assert_eq!(
            parse(&mem, BASE).unwrap_err(),
            BootInfoError::BadSize {
                what: "multiboot2 tag size",
                value: 4
            }
        );
    }

    #[test]
    fn missing_end_tag() {
        let mem = Mbi::new().tag(TAG_MEMORY_MAP, &basic_mmap()).mem();
        let e = parse(&mem, BASE).unwrap_err();
        assert!(matches!(e, BootInfoError::Truncated { .. }), "{e:?}");
        assert!(e.to_string().contains("no end tag"));
        // total_size cuts the end tag in half.
        let mut mem = Mbi::new().tag(TAG_MEMORY_MAP, &basic_mmap()).end().mem();
        let total = mem.bytes.len() as u32 - 4;
        mem.bytes[..4].copy_from_slice(&total.to_le_bytes());
        assert!(matches!(
            parse(&mem, BASE),
            Err(BootInfoError::Truncated { .. })
        ));
    }

    #[test]
    fn tags_after_end_are_ignored() {
        let mem = Mbi::new()
            .tag(TAG_MEMORY_MAP, &basic_mmap())
            .end()
            .tag(TAG_CMDLINE, &[b'x'; 8]) // unterminated, but never read
            .mem();
        assert!(parse(&mem, BASE).is_ok());
    }

    #[test]
    fn no_memory_map() {
        let mem = Mbi::new().tag(TAG_CMDLINE, &cstr("x")).end().mem();
        assert_eq!(parse(&mem, BASE).unwrap_err(), BootInfoError::NoMemoryMap);
    }

    #[test]
    fn mmap_stride_honoured() {
        let mem = Mbi::new()
            .tag(
                TAG_MEMORY_MAP,
                &mmap(40, &[(0x1000, 0x1000, 1), (0x5000, 0x2000, 3)]),
            )
            .end()
            .mem();
        let info = parse(&mem, BASE).unwrap();
        assert_eq!(
            info.memory.as_slice(),
            &[
                MemoryRegion {
                    start: 0x1000,
                    end: 0x2000,
                    kind: RegionKind::Usable
                },
                MemoryRegion {
                    start: 0x5000,
                    end: 0x7000,
                    kind: RegionKind::AcpiReclaimable
                },
            ]
        );
    }

    #[test]
    fn mmap_bad_entry_size() {
        let mem = Mbi::new().tag(TAG_MEMORY_MAP, &mmap(20, &[])).end().mem();
        assert!(matches!(
            parse(&mem, BASE),
            Err(BootInfoError::BadSize { .. })
        ));
        let mem = Mbi::new().tag(TAG_MEMORY_MAP, &[24, 0, 0, 0]).end().mem();
        assert!(matches!(
            parse(&mem, BASE),
            Err(BootInfoError::BadSize { .. })
        ));
    }

    #[test]
    fn mmap_entry_overflow() {
        let mem = Mbi::new()
            .tag(TAG_MEMORY_MAP, &mmap(24, &[(u64::MAX - 10, 100, 1)]))
            .end()
            .mem();
        assert!(matches!(
            parse(&mem, BASE),
            Err(BootInfoError::BadSize { .. })
        ));
        // Ending exactly at 2^64 is clipped, not rejected.
        let mem = Mbi::new()
            .tag(TAG_MEMORY_MAP, &mmap(24, &[(u64::MAX - 0xfff, 0x1000, 2)]))
            .end()
            .mem();
        let info = parse(&mem, BASE).unwrap();
        assert_eq!(info.memory[0].end, u64::MAX);
    }

    #[test]
    fn mmap_too_many_entries() {
        let entries: Vec<_> = (0..=MAX_MEMORY_REGIONS as u64)
            .map(|i| (i * 0x1000, 0x1000, 1))
            .collect();
        let mem = Mbi::new()
            .tag(TAG_MEMORY_MAP, &mmap(24, &entries))
            .end()
            .mem();
        assert_eq!(
            parse(&mem, BASE).unwrap_err(),
            BootInfoError::TooMany {
                what: "memory map entries",
                limit: MAX_MEMORY_REGIONS
            }
        );
    }

    #[test]
    fn unterminated_string() {
        let mem = Mbi::new()
            .tag(TAG_MEMORY_MAP, &basic_mmap())
            .tag(TAG_CMDLINE, b"exit=qemu")
            .end()
            .mem();
        // Padding bytes after the tag are zero, but they lie outside the tag.
        assert_eq!(
            parse(&mem, BASE).unwrap_err(),
            BootInfoError::BadString {
                what: "command line"
            }
        );
    }

    #[test]
    fn invalid_utf8_and_too_long_strings() {
        let mem = Mbi::new()
            .tag(TAG_MEMORY_MAP, &basic_mmap())
            .tag(TAG_LOADER_NAME, &[0xff, 0xfe, 0])
            .end()
            .mem();
        assert_eq!(
            parse(&mem, BASE).unwrap_err(),
            BootInfoError::BadString {
                what: "boot loader name"
            }
        );
        let long = "a".repeat(600);
        let mem = Mbi::new()
            .tag(TAG_MEMORY_MAP, &basic_mmap())
            .tag(TAG_CMDLINE, &cstr(&long))
            .end()
            .mem();
        assert_eq!(
            parse(&mem, BASE).unwrap_err(),
            BootInfoError::TooLong {
                what: "command line",
                limit: 512
            }
        );
        // Exactly at capacity is fine.
        let max = "b".repeat(512);
        let mem = Mbi::new()
            .tag(TAG_MEMORY_MAP, &basic_mmap())
            .tag(TAG_CMDLINE, &cstr(&max))
            .end()
            .mem();
        assert_eq!(parse(&mem, BASE).unwrap().cmdline.as_str(), max);
    }

    #[test]
    fn module_command_lines_up_to_the_limit() {
        use super::super::info::MAX_MODULE_CMDLINE;
        use crate::domain::linux_args::{self, LINUX_CMDLINE_MAX};
        // A Linux module with Linux's whole 2,047-byte command line
        // arrives whole, and its `kind=linux` words still parse.
        let kernel = std::format!(
            "console=hvc0 x={}",
            "p".repeat(LINUX_CMDLINE_MAX - "console=hvc0 x=".len())
        );
        let line = std::format!("linux kind=linux initrd=initramfs vcpus=2 {kernel}");
        let mem = Mbi::new()
            .tag(TAG_MEMORY_MAP, &basic_mmap())
            .tag(TAG_MODULE, &module(0x20_0000, 0x30_0000, &line))
            .end()
            .mem();
        let info = parse(&mem, BASE).unwrap();
        let m = &info.modules[0];
        assert_eq!(
            (m.cmdline.as_str(), m.name()),
            (line.as_str(), Some("linux"))
        );
        let a = linux_args::parse(m.args()).unwrap().unwrap();
        assert_eq!(
            (a.cmdline, a.initrd, a.vcpus),
            (kernel, Some("initramfs"), 2)
        );
        // Exactly at capacity is fine; one byte more is refused, naming
        // the string and the limit.
        let max = "m".repeat(MAX_MODULE_CMDLINE);
        let mem = Mbi::new()
            .tag(TAG_MEMORY_MAP, &basic_mmap())
            .tag(TAG_MODULE, &module(0x20_0000, 0x30_0000, &max))
            .end()
            .mem();
        assert_eq!(parse(&mem, BASE).unwrap().modules[0].cmdline.as_str(), max);
        let over = "m".repeat(MAX_MODULE_CMDLINE + 1);
        let mem = Mbi::new()
            .tag(TAG_MEMORY_MAP, &basic_mmap())
            .tag(TAG_MODULE, &module(0x20_0000, 0x30_0000, &over))
            .end()
            .mem();
        let e = parse(&mem, BASE).unwrap_err();
        assert_eq!(
            e,
            BootInfoError::TooLong {
                what: "module command line",
                limit: MAX_MODULE_CMDLINE
            }
        );
        assert_eq!(
            e.to_string(),
            "module command line: longer than the 4096 bytes kept"
        );
    }

    #[test]
    fn module_end_before_start() {
        let mem = Mbi::new()
            .tag(TAG_MEMORY_MAP, &basic_mmap())
            .tag(TAG_MODULE, &module(0x20_0000, 0x10_0000, "m"))
            .end()
            .mem();
        assert!(matches!(
            parse(&mem, BASE),
            Err(BootInfoError::BadSize { .. })
        ));
    }

    #[test]
    fn module_tag_too_short() {
        let mem = Mbi::new()
            .tag(TAG_MEMORY_MAP, &basic_mmap())
            .tag(TAG_MODULE, &[0u8; 8])
            .end()
            .mem();
        assert!(matches!(
            parse(&mem, BASE),
            Err(BootInfoError::BadSize { .. })
        ));
    }

    #[test]
    fn too_many_modules() {
        let mut m = Mbi::new().tag(TAG_MEMORY_MAP, &basic_mmap());
        for i in 0..=MAX_MODULES as u32 {
            m = m.tag(TAG_MODULE, &module(i * 0x1000, i * 0x1000 + 0x100, "m"));
        }
        let mem = m.end().mem();
        assert_eq!(
            parse(&mem, BASE).unwrap_err(),
            BootInfoError::TooMany {
                what: "boot modules",
                limit: MAX_MODULES
            }
        );
    }

    #[test]
    fn error_keeps_the_command_line_read_before_it() {
        let mut m = Mbi::new()
            .tag(TAG_CMDLINE, b"exit=qemu\0")
            .tag(TAG_MEMORY_MAP, &basic_mmap());
        for i in 0..=MAX_MODULES as u32 {
            m = m.tag(TAG_MODULE, &module(i * 0x1000, i * 0x1000 + 0x100, "m"));
        }
        let mem = m.end().mem();
        let mut info = BootInfo::new(BootProtocol::Pvh);
        assert!(matches!(
            parse_into(&mem, BASE, &mut info),
            Err(BootInfoError::TooMany { .. })
        ));
        assert_eq!(info.cmdline.as_str(), "exit=qemu");
        assert_eq!(info.protocol, BootProtocol::Multiboot2);
    }

    #[test]
    fn short_framebuffer_tag() {
        let mem = Mbi::new()
            .tag(TAG_MEMORY_MAP, &basic_mmap())
            .tag(TAG_FRAMEBUFFER, &[0u8; 12])
            .end()
            .mem();
        assert!(matches!(
            parse(&mem, BASE),
            Err(BootInfoError::BadSize { .. })
        ));
    }

    /// A valid block with up to 4 bytes anywhere in it changed (proptest,
    /// shrunk to the fewest and smallest changes when one panics).
    #[test]
    fn garbage_never_panics() {
        let good = Mbi::new()
            .tag(TAG_CMDLINE, &cstr("a b c"))
            .tag(TAG_MODULE, &module(0x1000, 0x2000, "x"))
            .tag(TAG_MEMORY_MAP, &basic_mmap())
            .tag(TAG_ACPI_NEW, &[0; 36])
            .end()
            .mem();
        crate::testing::check(2000, 9, |r| {
            let mut mem = FakeMem {
                base: BASE,
                bytes: good.bytes.clone(),
            };
            for _ in 0..1 + r.below(4) {
                let i = r.below(mem.bytes.len() as u64) as usize;
                mem.bytes[i] = r.below(256) as u8;
            }
            let _ = parse(&mem, BASE);
        });
    }
}

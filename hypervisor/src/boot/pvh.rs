//! Xen PVH direct boot: the `hvm_start_info` block that QEMU's `-kernel`
//! loader (and Xen, and Firecracker) pass in EBX.
//!
//! Layout per Xen `public/arch-x86/hvm/start_info.h`. All fields are
//! little-endian; the block is read byte-wise so its alignment does not
//! matter. Version 0 ends after `rsdp_paddr` (40 bytes); version 1 adds the
//! memory map (56 bytes). Version 0 gives no memory map, which we need, so it
//! is rejected.
#![forbid(unsafe_code)]

use super::info::{BootInfo, BootInfoError, BootProtocol, MAX_CMDLINE, MAX_MODULE_CMDLINE, Module};
use super::{PhysRead, push_e820_region, read_cstr};

/// `hvm_start_info.magic`: "xEn3" with the top bit of the last byte set.
pub const START_MAGIC: u32 = 0x336e_c578;

/// Size of the version-0 block.
const START_INFO_V0_SIZE: usize = 40;
/// Size of the version-1 block (with the memory map fields).
const START_INFO_V1_SIZE: usize = 56;
/// `hvm_modlist_entry`: paddr, size, cmdline_paddr, reserved.
const MODLIST_ENTRY_SIZE: u64 = 32;
/// `hvm_memmap_table_entry`: addr, size, type, reserved.
const MEMMAP_ENTRY_SIZE: u64 = 24;

/// Little-endian field readers over a byte array already copied in. Offsets
/// are constants below the array length, so `get` never fails in practice;
/// it still returns 0 rather than panicking if a constant were wrong.
fn le_u32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// Reads `buf.len()` bytes at `paddr`, naming `what` if they are unreadable.
fn read_block(
    mem: &impl PhysRead,
    paddr: u64,
    buf: &mut [u8],
    what: &'static str,
) -> Result<(), BootInfoError> {
    if mem.read(paddr, buf) {
        Ok(())
    } else {
        Err(BootInfoError::Truncated { what, offset: 0 })
    }
}

/// `[start, start + count * entry)`, or `BadSize` if it wraps.
fn table_range(
    start: u64,
    count: u32,
    entry: u64,
    what: &'static str,
) -> Result<(u64, u64), BootInfoError> {
    u64::from(count)
        .checked_mul(entry)
        .and_then(|len| start.checked_add(len))
        .map(|end| (start, end))
        .ok_or(BootInfoError::BadSize { what, value: start })
}

/// Parses the `hvm_start_info` block at physical `start_info`.
pub fn parse(mem: &impl PhysRead, start_info: u64) -> Result<BootInfo, BootInfoError> {
    let mut info = BootInfo::new(BootProtocol::Pvh);
    parse_into(mem, start_info, &mut info)?;
    Ok(info)
}

/// [`parse`] into `info`. On an error `info` keeps what was read before
/// it — the command line comes first — so the caller can still honour
/// `exit=` when it reports the error.
pub fn parse_into(
    mem: &impl PhysRead,
    start_info: u64,
    info: &mut BootInfo,
) -> Result<(), BootInfoError> {
    if start_info == 0 {
        return Err(BootInfoError::BadPointer(start_info));
    }
    let mut hdr = [0u8; START_INFO_V1_SIZE];
    let (v0, rest) = hdr.split_at_mut(START_INFO_V0_SIZE);
    read_block(mem, start_info, v0, "PVH start_info")?;
    let magic = le_u32(v0, 0);
    if magic != START_MAGIC {
        return Err(BootInfoError::BadMagic {
            what: "PVH start_info magic",
            value: magic.into(),
        });
    }
    let version = le_u32(v0, 4);
    if version == 0 {
        return Err(BootInfoError::NoMemoryMap);
    }
    // Later versions only append fields (start_info.h's compatibility rule),
    // so the version-1 prefix is all we read.
    let rest_addr = start_info
        .checked_add(START_INFO_V0_SIZE as u64)
        .ok_or(BootInfoError::BadPointer(start_info))?;
    read_block(mem, rest_addr, rest, "PVH start_info")?;

    let nr_modules = le_u32(&hdr, 12);
    let modlist_paddr = le_u64(&hdr, 16);
    let cmdline_paddr = le_u64(&hdr, 24);
    let rsdp_paddr = le_u64(&hdr, 32);
    let memmap_paddr = le_u64(&hdr, 40);
    let memmap_entries = le_u32(&hdr, 48);

    info.reset(BootProtocol::Pvh);
    let ranges_full = |_| BootInfoError::TooMany {
        what: "loader ranges",
        limit: super::info::MAX_BOOT_RANGES,
    };
    let (s, e) = table_range(start_info, 1, START_INFO_V1_SIZE as u64, "PVH start_info")?;
    info.loader_ranges.try_push((s, e)).map_err(ranges_full)?;

    if cmdline_paddr != 0 {
        // No length is given: the NUL must come within the capacity.
        info.cmdline =
            read_cstr::<MAX_CMDLINE>(mem, cmdline_paddr, MAX_CMDLINE as u64 + 1, "command line")?;
    }
    info.rsdp = (rsdp_paddr != 0).then_some(rsdp_paddr);

    // Memory map, checked before modules so that a missing map is reported
    // as such rather than as some module problem.
    if memmap_paddr == 0 || memmap_entries == 0 {
        return Err(BootInfoError::NoMemoryMap);
    }
    if memmap_entries as usize > info.memory.capacity() {
        return Err(BootInfoError::TooMany {
            what: "memory map entries",
            limit: info.memory.capacity(),
        });
    }
    let (mm_start, mm_end) = table_range(
        memmap_paddr,
        memmap_entries,
        MEMMAP_ENTRY_SIZE,
        "PVH memory map",
    )?;
    let mut at = mm_start;
    while at < mm_end {
        let mut e = [0u8; MEMMAP_ENTRY_SIZE as usize];
        read_block(mem, at, &mut e, "PVH memory map")?;
        push_e820_region(
            &mut info.memory,
            le_u64(&e, 0),
            le_u64(&e, 8),
            le_u32(&e, 16),
            "PVH memory map entry",
        )?;
        // Cannot overflow: at < mm_end, and mm_end did not.
        at += MEMMAP_ENTRY_SIZE;
    }
    info.loader_ranges
        .try_push((mm_start, mm_end))
        .map_err(ranges_full)?;

    if nr_modules > 0 {
        if nr_modules as usize > info.modules.capacity() {
            return Err(BootInfoError::TooMany {
                what: "boot modules",
                limit: info.modules.capacity(),
            });
        }
        let (ml_start, ml_end) = table_range(
            modlist_paddr,
            nr_modules,
            MODLIST_ENTRY_SIZE,
            "PVH module list",
        )?;
        if modlist_paddr == 0 {
            return Err(BootInfoError::BadPointer(0));
        }
        let mut at = ml_start;
        while at < ml_end {
            let mut e = [0u8; MODLIST_ENTRY_SIZE as usize];
            read_block(mem, at, &mut e, "PVH module list")?;
            info.modules
                .try_push(parse_module(mem, &e)?)
                .map_err(|_| BootInfoError::TooMany {
                    what: "boot modules",
                    limit: super::info::MAX_MODULES,
                })?;
            at += MODLIST_ENTRY_SIZE;
        }
        info.loader_ranges
            .try_push((ml_start, ml_end))
            .map_err(ranges_full)?;
    }
    Ok(())
}

/// One `hvm_modlist_entry`.
fn parse_module(mem: &impl PhysRead, e: &[u8]) -> Result<Module, BootInfoError> {
    let start = le_u64(e, 0);
    let size = le_u64(e, 8);
    let cmdline_paddr = le_u64(e, 16);
    let end = start.checked_add(size).ok_or(BootInfoError::BadSize {
        what: "PVH module size",
        value: size,
    })?;
    let cmdline = if cmdline_paddr == 0 {
        // QEMU passes none; the caller then names the module by position.
        Default::default()
    } else {
        read_cstr::<MAX_MODULE_CMDLINE>(
            mem,
            cmdline_paddr,
            MAX_MODULE_CMDLINE as u64 + 1,
            "module command line",
        )?
    };
    Ok(Module {
        start,
        end,
        cmdline,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::FakeMem;
    use super::super::info::{MAX_MEMORY_REGIONS, MAX_MODULES, MemoryRegion, RegionKind};
    use super::*;
    use std::vec::Vec;

    const BASE: u64 = 0x1000;
    /// Where things sit inside the fake memory (offsets from BASE). The
    /// start_info block is deliberately misaligned.
    const SI: u64 = 0x3;
    const CMD: u64 = 0x100;
    const MODLIST: u64 = 0x400;
    const MEMMAP: u64 = 0x800;
    const MODCMD: u64 = 0xc00;

    struct Si {
        magic: u32,
        version: u32,
        nr_modules: u32,
        modlist: u64,
        cmdline: u64,
        rsdp: u64,
        memmap: u64,
        memmap_entries: u32,
    }

    impl Si {
        fn good() -> Self {
            Self {
                magic: START_MAGIC,
                version: 1,
                nr_modules: 0,
                modlist: 0,
                cmdline: 0,
                rsdp: 0,
                memmap: BASE + MEMMAP,
                memmap_entries: 2,
            }
        }
    }

    fn put(mem: &mut FakeMem, off: u64, bytes: &[u8]) {
        let off = off as usize;
        mem.bytes[off..off + bytes.len()].copy_from_slice(bytes);
    }

    fn build(si: &Si, memmap: &[(u64, u64, u32)], modules: &[(u64, u64, u64)]) -> FakeMem {
        let mut mem = FakeMem {
            base: BASE,
            bytes: std::vec![0; 0x4000],
        };
        let mut b = Vec::new();
        b.extend_from_slice(&si.magic.to_le_bytes());
        b.extend_from_slice(&si.version.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&si.nr_modules.to_le_bytes());
        b.extend_from_slice(&si.modlist.to_le_bytes());
        b.extend_from_slice(&si.cmdline.to_le_bytes());
        b.extend_from_slice(&si.rsdp.to_le_bytes());
        b.extend_from_slice(&si.memmap.to_le_bytes());
        b.extend_from_slice(&si.memmap_entries.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(b.len(), 56);
        put(&mut mem, SI, &b);
        let mut m = Vec::new();
        for &(addr, size, ty) in memmap {
            m.extend_from_slice(&addr.to_le_bytes());
            m.extend_from_slice(&size.to_le_bytes());
            m.extend_from_slice(&ty.to_le_bytes());
            m.extend_from_slice(&0u32.to_le_bytes());
        }
        put(&mut mem, MEMMAP, &m);
        let mut l = Vec::new();
        for &(paddr, size, cmd) in modules {
            l.extend_from_slice(&paddr.to_le_bytes());
            l.extend_from_slice(&size.to_le_bytes());
            l.extend_from_slice(&cmd.to_le_bytes());
            l.extend_from_slice(&0u64.to_le_bytes());
        }
        put(&mut mem, MODLIST, &l);
        mem
    }

    const MAP: [(u64, u64, u32); 2] = [(0, 0x9fc00, 1), (0x10_0000, 0x7ff0_0000, 1)];

    #[test]
    fn qemu_style() {
        let mut si = Si::good();
        si.cmdline = BASE + CMD;
        si.rsdp = 0xf_5a40;
        si.nr_modules = 2;
        si.modlist = BASE + MODLIST;
        let mut mem = build(
            &si,
            &MAP,
            &[(0x20_0000, 0x1234, 0), (0x30_0000, 0x100, BASE + MODCMD)],
        );
        put(&mut mem, CMD, b"exit=qemu shutdown\0");
        put(&mut mem, MODCMD, b"/guests/linux quiet\0");
        let info = parse(&mem, BASE + SI).unwrap();
        assert_eq!(info.protocol, BootProtocol::Pvh);
        assert_eq!(info.cmdline.as_str(), "exit=qemu shutdown");
        assert_eq!(info.rsdp, Some(0xf_5a40));
        assert_eq!(
            info.memory.as_slice(),
            &[
                MemoryRegion {
                    start: 0,
                    end: 0x9fc00,
                    kind: RegionKind::Usable
                },
                MemoryRegion {
                    start: 0x10_0000,
                    end: 0x8000_0000,
                    kind: RegionKind::Usable
                },
            ]
        );
        assert_eq!(info.modules.len(), 2);
        assert_eq!(
            (info.modules[0].start, info.modules[0].end),
            (0x20_0000, 0x20_1234)
        );
        assert_eq!(info.modules[0].name(), None);
        assert_eq!(info.modules[1].name(), Some("linux"));
        assert_eq!(info.modules[1].args(), "quiet");
        assert_eq!(
            info.loader_ranges.as_slice(),
            &[
                (BASE + SI, BASE + SI + 56),
                (BASE + MEMMAP, BASE + MEMMAP + 48),
                (BASE + MODLIST, BASE + MODLIST + 64),
            ]
        );
    }

    #[test]
    fn minimal() {
        let mem = build(&Si::good(), &MAP, &[]);
        let info = parse(&mem, BASE + SI).unwrap();
        assert!(info.cmdline.is_empty());
        assert_eq!(info.rsdp, None);
        assert!(info.modules.is_empty());
        assert_eq!(info.loader_ranges.len(), 2);
    }

    #[test]
    fn e820_types() {
        let mut si = Si::good();
        si.memmap_entries = 6;
        let map = [
            (0, 0x1000, 1),
            (0x1000, 0x1000, 2),
            (0x2000, 0x1000, 3),
            (0x3000, 0x1000, 4),
            (0x4000, 0x1000, 5),
            (0x5000, 0x1000, 0xdead),
        ];
        let mem = build(&si, &map, &[]);
        let kinds: Vec<_> = parse(&mem, BASE + SI)
            .unwrap()
            .memory
            .iter()
            .map(|r| r.kind)
            .collect();
        assert_eq!(
            kinds,
            [
                RegionKind::Usable,
                RegionKind::Reserved,
                RegionKind::AcpiReclaimable,
                RegionKind::AcpiNvs,
                RegionKind::BadMemory,
                RegionKind::Reserved
            ]
        );
    }

    #[test]
    fn null_pointer() {
        let mem = build(&Si::good(), &MAP, &[]);
        assert_eq!(parse(&mem, 0).unwrap_err(), BootInfoError::BadPointer(0));
    }

    #[test]
    fn unreadable_start_info() {
        let mem = build(&Si::good(), &MAP, &[]);
        assert!(matches!(
            parse(&mem, 0x10_0000),
            Err(BootInfoError::Truncated { .. })
        ));
        // The version-1 tail runs off the end of memory.
        let mut mem = mem;
        let at = mem.bytes.len() as u64 - 40;
        put(&mut mem, at, &START_MAGIC.to_le_bytes());
        put(&mut mem, at + 4, &1u32.to_le_bytes());
        assert!(matches!(
            parse(&mem, BASE + at),
            Err(BootInfoError::Truncated { .. })
        ));
    }

    #[test]
    fn bad_magic() {
        let mut si = Si::good();
        si.magic = 0x336e_c577;
        let mem = build(&si, &MAP, &[]);
        assert_eq!(
            parse(&mem, BASE + SI).unwrap_err(),
            BootInfoError::BadMagic {
                what: "PVH start_info magic",
                value: 0x336e_c577
            }
        );
    }

    #[test]
    fn version_0_has_no_memory_map() {
        let mut si = Si::good();
        si.version = 0;
        let mem = build(&si, &MAP, &[]);
        assert_eq!(
            parse(&mem, BASE + SI).unwrap_err(),
            BootInfoError::NoMemoryMap
        );
    }

    #[test]
    fn later_versions_accepted() {
        let mut si = Si::good();
        si.version = 2;
        let mem = build(&si, &MAP, &[]);
        assert!(parse(&mem, BASE + SI).is_ok());
    }

    #[test]
    fn empty_or_null_memory_map() {
        let mut si = Si::good();
        si.memmap_entries = 0;
        assert_eq!(
            parse(&build(&si, &MAP, &[]), BASE + SI).unwrap_err(),
            BootInfoError::NoMemoryMap
        );
        let mut si = Si::good();
        si.memmap = 0;
        assert_eq!(
            parse(&build(&si, &MAP, &[]), BASE + SI).unwrap_err(),
            BootInfoError::NoMemoryMap
        );
    }

    #[test]
    fn too_many_regions() {
        let mut si = Si::good();
        si.memmap_entries = MAX_MEMORY_REGIONS as u32 + 1;
        assert_eq!(
            parse(&build(&si, &MAP, &[]), BASE + SI).unwrap_err(),
            BootInfoError::TooMany {
                what: "memory map entries",
                limit: MAX_MEMORY_REGIONS
            }
        );
        si.memmap_entries = u32::MAX;
        assert!(matches!(
            parse(&build(&si, &MAP, &[]), BASE + SI),
            Err(BootInfoError::TooMany { .. })
        ));
    }

    #[test]
    fn memory_map_runs_off_memory() {
        let mut si = Si::good();
        si.memmap = BASE + 0x4000 - 24;
        si.memmap_entries = 2;
        assert!(matches!(
            parse(&build(&si, &MAP, &[]), BASE + SI),
            Err(BootInfoError::Truncated { .. })
        ));
        // Table address wraps.
        si.memmap = u64::MAX - 8;
        assert!(matches!(
            parse(&build(&si, &MAP, &[]), BASE + SI),
            Err(BootInfoError::BadSize { .. })
        ));
    }

    #[test]
    fn memory_map_entry_overflow() {
        let map = [(0, 0x1000, 1), (u64::MAX - 4, 0x1000, 1)];
        assert!(matches!(
            parse(&build(&Si::good(), &map, &[]), BASE + SI),
            Err(BootInfoError::BadSize { .. })
        ));
    }

    #[test]
    fn too_many_modules() {
        let mut si = Si::good();
        si.nr_modules = MAX_MODULES as u32 + 1;
        si.modlist = BASE + MODLIST;
        assert_eq!(
            parse(&build(&si, &MAP, &[]), BASE + SI).unwrap_err(),
            BootInfoError::TooMany {
                what: "boot modules",
                limit: MAX_MODULES
            }
        );
    }

    #[test]
    fn error_keeps_the_command_line_read_before_it() {
        let mut si = Si::good();
        si.cmdline = BASE + CMD;
        si.nr_modules = MAX_MODULES as u32 + 1;
        si.modlist = BASE + MODLIST;
        let mut mem = build(&si, &MAP, &[]);
        put(&mut mem, CMD, b"exit=qemu shutdown\0");
        let mut info = BootInfo::new(BootProtocol::Multiboot2);
        assert!(matches!(
            parse_into(&mem, BASE + SI, &mut info),
            Err(BootInfoError::TooMany { .. })
        ));
        assert_eq!(info.cmdline.as_str(), "exit=qemu shutdown");
        assert_eq!(info.protocol, BootProtocol::Pvh);
    }

    #[test]
    fn module_overflow() {
        let mut si = Si::good();
        si.nr_modules = 1;
        si.modlist = BASE + MODLIST;
        let mem = build(&si, &MAP, &[(u64::MAX - 0xfff, 0x1000, 0)]);
        assert_eq!(
            parse(&mem, BASE + SI).unwrap_err(),
            BootInfoError::BadSize {
                what: "PVH module size",
                value: 0x1000
            }
        );
    }

    #[test]
    fn null_module_list() {
        let mut si = Si::good();
        si.nr_modules = 1;
        si.modlist = 0;
        assert_eq!(
            parse(&build(&si, &MAP, &[]), BASE + SI).unwrap_err(),
            BootInfoError::BadPointer(0)
        );
    }

    #[test]
    fn unterminated_cmdline() {
        let mut si = Si::good();
        si.cmdline = BASE + CMD;
        let mut mem = build(&si, &MAP, &[]);
        put(&mut mem, CMD, &[b'a'; 600]);
        assert_eq!(
            parse(&mem, BASE + SI).unwrap_err(),
            BootInfoError::TooLong {
                what: "command line",
                limit: MAX_CMDLINE
            }
        );
        // Runs off the end of memory before any NUL.
        si.cmdline = BASE + 0x4000 - 3;
        let mut mem = build(&si, &MAP, &[]);
        put(&mut mem, 0x4000 - 3, b"abc");
        assert!(matches!(
            parse(&mem, BASE + SI),
            Err(BootInfoError::Truncated { .. })
        ));
    }

    #[test]
    fn module_cmdline_up_to_the_limit() {
        use crate::domain::linux_args::{self, LINUX_CMDLINE_MAX};
        let mut si = Si::good();
        si.nr_modules = 1;
        si.modlist = BASE + MODLIST;
        // A Linux module with Linux's whole 2,047-byte command line.
        let kernel = std::format!(
            "console=hvc0 x={}",
            "p".repeat(LINUX_CMDLINE_MAX - "console=hvc0 x=".len())
        );
        let line = std::format!("linux kind=linux initrd=initramfs {kernel}\0");
        let mut mem = build(&si, &MAP, &[(0x20_0000, 0x10, BASE + MODCMD)]);
        put(&mut mem, MODCMD, line.as_bytes());
        let info = parse(&mem, BASE + SI).unwrap();
        let a = linux_args::parse(info.modules[0].args()).unwrap().unwrap();
        assert_eq!((a.cmdline, a.initrd), (kernel, Some("initramfs")));
        // The whole capacity, then one byte more (named, with the limit).
        let mut max = std::vec![b'm'; MAX_MODULE_CMDLINE];
        max.push(0);
        put(&mut mem, MODCMD, &max);
        let info = parse(&mem, BASE + SI).unwrap();
        assert_eq!(info.modules[0].cmdline.len(), MAX_MODULE_CMDLINE);
        let mut over = std::vec![b'm'; MAX_MODULE_CMDLINE + 1];
        over.push(0);
        put(&mut mem, MODCMD, &over);
        assert_eq!(
            parse(&mem, BASE + SI).unwrap_err(),
            BootInfoError::TooLong {
                what: "module command line",
                limit: MAX_MODULE_CMDLINE
            }
        );
    }

    #[test]
    fn bad_module_cmdline() {
        let mut si = Si::good();
        si.nr_modules = 1;
        si.modlist = BASE + MODLIST;
        let mut mem = build(&si, &MAP, &[(0x20_0000, 0x10, BASE + MODCMD)]);
        put(&mut mem, MODCMD, &[0xc3, 0x28, 0]);
        assert_eq!(
            parse(&mem, BASE + SI).unwrap_err(),
            BootInfoError::BadString {
                what: "module command line"
            }
        );
    }
}

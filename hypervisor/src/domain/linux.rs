//! The "linux" image kind: an uncompressed `vmlinux` entered through
//! Linux's 64-bit boot protocol (`Documentation/x86/boot.rst`, "64-bit BOOT
//! PROTOCOL"), as Firecracker and rust-vmm's `linux-loader` do.
//!
//! # Guest-physical layout
//!
//! The top of memory is the builder's ([`builder`] module docs: stack,
//! page tables, GDT, start-info page). Below it this loader adds:
//!
//! ```text
//! initrd_start    the initramfs, page aligned, directly below
//! cmdline page    the command line, NUL-terminated (at most 2,047 bytes)
//! zero page       struct boot_params, RSI at entry
//! reserved_start  (the builder's area)
//! ```
//!
//! The kernel's `PT_LOAD`s go at their `p_paddr` (a `vmlinux` is linked at
//! 0xffffffff81000000 and loaded at 16 MiB: `p_vaddr != p_paddr` is
//! expected here, unlike for pvabi guests) and must end below all of that.
//!
//! # What the kernel is told
//!
//! - e820: RAM `0..start_info`, **reserved** for the start-info page (the
//!   hypervisor keeps writing its `TimeInfo`; Linux must not reuse it).
//!   The stack, the initial page tables and the GDT are RAM: Linux loads
//!   its own GDT and CR3 in `startup_64` before it allocates anything.
//! - the command line by `cmd_line_ptr`/`ext_cmd_line_ptr`; the initramfs
//!   by `ramdisk_image/size` and their `ext_` halves.
//! - entry state (boot.rst): long mode, the builder's identity map of all
//!   memory, CS = 0x08 (64-bit code) and DS/ES/SS = 0x10 (flat data) from
//!   the builder's GDT, interrupts off, RSI = the zero page, RIP = e_entry
//!   (a physical address: `ENTRY(phys_startup_64)` in `vmlinux.lds.S`).
//!   RDI is 0: the kernel finds the start info through CPUID leaf
//!   0x4000_0002 (`hypercall/cpuid.rs`).
#![forbid(unsafe_code)]

use zerocopy::IntoBytes;

use super::GuestMemory;
use super::bootparams::{BootParams, E820_RAM, E820_RESERVED, LINUX_CMDLINE_MAX};
use super::builder::{self, BuildError, Built};

const PAGE: u64 = 4096;

/// What a Linux domain is made from.
#[derive(Debug, Clone, Copy)]
pub struct LinuxImage<'a> {
    /// The uncompressed `vmlinux` ELF64.
    pub kernel: &'a [u8],
    /// The initramfs (cpio), empty for none.
    pub initrd: &'a [u8],
    /// The kernel command line (no NUL; at most 2,047 bytes).
    pub cmdline: &'a str,
}

/// Where the Linux loader put its pages, all guest-physical.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinuxLayout {
    /// The zero page (RSI at entry).
    pub zero_page: u64,
    /// The NUL-terminated command line.
    pub cmdline: u64,
    /// The initramfs (its size is the image's; 0 when there is none).
    pub initrd: u64,
}

/// Builds a Linux domain in `mem`. Every check runs before the first
/// write, so on error guest memory is as it was.
pub fn build(
    mem: &mut impl GuestMemory,
    img: &LinuxImage<'_>,
    domain_id: u32,
    hypercall_insn: u32,
) -> Result<(Built, LinuxLayout), BuildError> {
    let (summary, layout) = builder::check_image(mem, img.kernel, hypercall_insn)?;
    let cmd = img.cmdline.as_bytes();
    if cmd.len() >= LINUX_CMDLINE_MAX || cmd.contains(&0) {
        return Err(BuildError::LinuxCmdline {
            len: cmd.len(),
            max: LINUX_CMDLINE_MAX - 1,
        });
    }
    // Two pages below the builder's: `reserved_start` is at least the
    // stack's 64 KiB plus four pages, so it cannot underflow... unless the
    // memory is tiny, which the checks below report.
    let zero_page = layout.reserved_start.saturating_sub(PAGE);
    let cmdline = zero_page.saturating_sub(PAGE);
    builder::check_segments(&summary.segments, &layout, cmdline, false)?;
    let kernel_end = summary
        .segments
        .iter()
        .map(|s| s.paddr.saturating_add(s.memsz))
        .max()
        .unwrap_or(0)
        .next_multiple_of(PAGE);
    let len = img.initrd.len() as u64;
    let room = cmdline.saturating_sub(kernel_end);
    let initrd = if len == 0 {
        0
    } else {
        // Highest page-aligned start that leaves the initramfs below the
        // command line: where GRUB and Firecracker put it too.
        cmdline
            .checked_sub(len)
            .map(|a| a & !(PAGE - 1))
            .filter(|&a| a >= kernel_end)
            .ok_or(BuildError::InitrdTooLarge { len, room })?
    };

    let info = builder::start_info(&layout, domain_id, hypercall_insn);
    let mut bp = BootParams::new();
    bp.set_cmdline(cmdline, cmd.len() as u32);
    if len > 0 {
        bp.set_ramdisk(initrd, len);
    }
    // Two entries always fit the 128-entry table.
    let _ = bp.push_e820(0, layout.start_info, E820_RAM);
    let _ = bp.push_e820(layout.start_info, PAGE, E820_RESERVED);

    builder::load_segments(mem, img.kernel, &summary.segments)?;
    builder::write_reserved(mem, &layout, &info)?;
    mem.fill(cmdline, 2 * PAGE, 0)?;
    mem.write(cmdline, cmd)?;
    mem.write(zero_page, bp.as_bytes())?;
    if len > 0 {
        mem.write(initrd, img.initrd)?;
    }
    let mut boot = builder::boot_state(summary.entry, &layout);
    boot.rdi = 0;
    boot.rsi = zero_page;
    Ok((
        Built { boot, layout },
        LinuxLayout {
            zero_page,
            cmdline,
            initrd,
        },
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::domain::builder::tests::{RW, RX, Seg, TestMem, image, walk};
    use crate::elf;
    use std::string::String;
    use std::vec::Vec;

    const MIB: u64 = 1 << 20;
    const HIGH: u64 = 0xffff_ffff_8000_0000;

    /// A vmlinux-shaped image: text linked high, loaded at 2 MiB, plus a
    /// per-CPU-like segment with vaddr 0; the entry is physical.
    fn vmlinux() -> Vec<u8> {
        image(
            elf::ET_EXEC,
            2 * MIB,
            &[
                Seg {
                    flags: RX,
                    vaddr: HIGH + 2 * MIB,
                    paddr: 2 * MIB,
                    data: &[0xf4; 16],
                    memsz: 0x2000,
                },
                Seg {
                    flags: RW,
                    vaddr: 0,
                    paddr: 2 * MIB + 0x2000,
                    data: &[7; 8],
                    memsz: 0x1000,
                },
            ],
        )
    }

    fn u32_at(m: &TestMem, a: u64) -> u32 {
        u32::from_le_bytes(m.read(a, 4).try_into().unwrap())
    }

    #[test]
    fn zero_page_describes_everything() {
        let mut mem = TestMem::new(16 * MIB, 0xaa);
        let initrd: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let cmdline: String = "c".repeat(LINUX_CMDLINE_MAX - 1);
        let img = LinuxImage {
            kernel: &vmlinux(),
            initrd: &initrd,
            cmdline: &cmdline,
        };
        let (built, l) = build(&mut mem, &img, 7, pvabi::HYPERCALL_VMMCALL).unwrap();
        let b = built.boot;
        assert_eq!(b.rip, 2 * MIB);
        assert_eq!(b.rsi, l.zero_page);
        assert_eq!(b.rdi, 0);
        assert_eq!(b.cs, 0x08);
        assert_eq!(b.ds, 0x10);
        assert_eq!(b.rflags & (1 << 9), 0, "interrupts off");
        // Loaded by p_paddr; the per-CPU segment's vaddr 0 is no obstacle.
        assert_eq!(mem.read(2 * MIB, 2), [0xf4, 0xf4]);
        assert_eq!(mem.read(2 * MIB + 0x2000, 1), [7]);
        let zp = l.zero_page;
        assert_eq!(mem.read(zp + 0x1fe, 2), [0x55, 0xaa]);
        assert_eq!(mem.read(zp + 0x202, 4), b"HdrS");
        assert_eq!(mem.read(zp + 0x210, 2), [0xff, 1]);
        // The whole 2,047-byte line, then its NUL.
        assert_eq!(u64::from(u32_at(&mem, zp + 0x228)), l.cmdline);
        assert_eq!(u32_at(&mem, zp + 0xc8), 0);
        assert_eq!(mem.read(l.cmdline, 2047), cmdline.as_bytes());
        assert_eq!(mem.read(l.cmdline + 2047, 1), [0]);
        // The initramfs, page aligned, below the command line, intact.
        assert_eq!(u64::from(u32_at(&mem, zp + 0x218)), l.initrd);
        assert_eq!(u32_at(&mem, zp + 0x21c), 10_000);
        assert_eq!(l.initrd % 4096, 0);
        assert!(l.initrd + 10_000 <= l.cmdline);
        assert_eq!(mem.read(l.initrd, 10_000), initrd);
        // e820: RAM up to the start-info page, which is reserved.
        let si = built.layout.start_info;
        assert_eq!(mem.read(zp + 0x1e8, 1), [2]);
        assert_eq!(mem.u64_at(zp + 0x2d0), 0);
        assert_eq!(mem.u64_at(zp + 0x2d8), si);
        assert_eq!(u32_at(&mem, zp + 0x2e0), 1);
        assert_eq!(mem.u64_at(zp + 0x2e4), si);
        assert_eq!(mem.u64_at(zp + 0x2ec), 4096);
        assert_eq!(u32_at(&mem, zp + 0x2f4), 2);
        assert_eq!(si + 4096, 16 * MIB);
        // The start info is there; its own command line stays empty.
        let page = mem.read(si, core::mem::size_of::<pvabi::StartInfo>() as u64);
        let info = pvabi::StartInfo::from_page(&page).unwrap();
        assert_eq!(info.magic, pvabi::START_INFO_MAGIC);
        assert_eq!(info.domain_id, 7);
        assert_eq!(info.cmdline_len, 0);
        // The entry runs identity-mapped on the builder's tables.
        assert_eq!(walk(&mem, b.cr3, 2 * MIB), Some(2 * MIB));
        assert_eq!(walk(&mem, b.cr3, zp), Some(zp));
    }

    #[test]
    fn no_initrd_means_zero_ramdisk_fields() {
        let mut mem = TestMem::new(8 * MIB, 0xaa);
        let img = LinuxImage {
            kernel: &vmlinux(),
            initrd: &[],
            cmdline: "console=hvc0",
        };
        let (_, l) = build(&mut mem, &img, 1, pvabi::HYPERCALL_VMCALL).unwrap();
        assert_eq!(l.initrd, 0);
        assert_eq!(u32_at(&mem, l.zero_page + 0x218), 0);
        assert_eq!(u32_at(&mem, l.zero_page + 0x21c), 0);
        assert_eq!(mem.read(l.cmdline, 13), b"console=hvc0\0");
    }

    #[test]
    fn refusals_write_nothing() {
        let k = vmlinux();
        let long = "x".repeat(LINUX_CMDLINE_MAX);
        let cases: [(&str, &[u8], BuildError); 3] = [
            (
                &long,
                &[],
                BuildError::LinuxCmdline {
                    len: LINUX_CMDLINE_MAX,
                    max: LINUX_CMDLINE_MAX - 1,
                },
            ),
            ("a\0b", &[], BuildError::LinuxCmdline { len: 3, max: 2047 }),
            (
                "",
                &[1; 6 * MIB as usize],
                BuildError::InitrdTooLarge {
                    len: 6 * MIB,
                    room: 0,
                },
            ),
        ];
        for (cmdline, initrd, want) in cases {
            let mut mem = TestMem::new(8 * MIB, 0xaa);
            let img = LinuxImage {
                kernel: &k,
                initrd,
                cmdline,
            };
            let got = build(&mut mem, &img, 1, pvabi::HYPERCALL_VMCALL).unwrap_err();
            match (got, want) {
                (BuildError::InitrdTooLarge { len, .. }, BuildError::InitrdTooLarge { .. }) => {
                    assert_eq!(len, 6 * MIB);
                }
                (g, w) => assert_eq!(g, w),
            }
            assert!(!std::format!("{got}").is_empty());
            assert_eq!(mem.read(2 * MIB, 1), [0xaa], "nothing written");
        }
    }

    #[test]
    fn kernel_over_the_loader_pages_is_refused() {
        // 8 MiB memory, kernel segment reaching into the last 64 KiB.
        let k = image(
            elf::ET_EXEC,
            2 * MIB,
            &[Seg {
                flags: RX,
                vaddr: HIGH + 2 * MIB,
                paddr: 2 * MIB,
                data: &[0xf4],
                memsz: 6 * MIB - 0x1000,
            }],
        );
        let mut mem = TestMem::new(8 * MIB, 0);
        let img = LinuxImage {
            kernel: &k,
            initrd: &[],
            cmdline: "",
        };
        assert!(matches!(
            build(&mut mem, &img, 1, pvabi::HYPERCALL_VMCALL),
            Err(BuildError::SegmentOverlapsReserved { .. })
        ));
    }
}

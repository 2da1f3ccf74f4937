//! Entered the way Linux is (issue 13): linked at a high virtual address
//! (`guests/linux.ld`), loaded by `p_paddr`, started at its physical
//! `e_entry` through the 64-bit boot protocol with RSI = a `boot_params`
//! zero page and nothing in RDI. It maps its high half, finds the start
//! info through CPUID leaf 0x4000_0002, and checks what a Linux kernel
//! relies on:
//!
//! - the zero page's header: boot flag 0xAA55, "HdrS", version >= 2.12,
//!   loader type 0xff, LOADED_HIGH;
//! - e820: RAM covers its own image and everything below the start-info
//!   page; the start-info page is reserved and in no RAM entry;
//! - the command line is NUL-terminated and exactly `cmdline_len=N` bytes
//!   long (so nothing was cut);
//! - the initramfs is `initrd_len=N` bytes with FNV-1a 64 `initrd_fnv=H`
//!   (hex), both given on the command line;
//! - CPUID 0x4000_0000 reaches 0x4000_0002, whose EAX:EBX is the start
//!   info's own `start_info_gpa` and ECX its size.
//!
//! Prints `linuxproto: ok` and exits 0, or `linuxproto: FAIL <why>` and
//! exits 1.
#![no_std]
#![no_main]

use core::arch::{asm, naked_asm};
use core::sync::atomic::{AtomicU64, Ordering};

/// Where the kernel is linked above its physical address (`linux.ld`).
const KOFF: u64 = 0xffff_ffff_8000_0000;

/// The PDPT that maps KOFF.. onto physical 0.. (PML4 slot 511, PDPT slot
/// 510: the builder's first PD, 1 GiB of 2 MiB pages).
#[repr(C, align(4096))]
struct Table([u64; 512]);
static mut HIGH_PDPT: Table = Table([0; 512]);

/// The zero page's address, from RSI.
static ZERO_PAGE: AtomicU64 = AtomicU64::new(0);

unsafe extern "C" {
    static _start_phys: u8;
    static _end: u8;
}

/// The ELF entry, reached at its physical address on the builder's
/// identity map: only RIP-relative and register code until the jump.
#[unsafe(no_mangle)]
#[unsafe(naked)]
extern "sysv64" fn _start() -> ! {
    naked_asm!(
        "mov rax, cr3",
        "and rax, -4096",
        // PML4[0] -> PDPT 0; its entry 0 is the PD of 0..1 GiB.
        "mov rcx, [rax]",
        "and rcx, -4096",
        "mov rdx, [rcx]",
        // RIP-relative: the physical address of HIGH_PDPT.
        "lea r8, [rip + {pdpt}]",
        "mov [r8 + 510*8], rdx",
        "or r8, 3",
        "mov [rax + 511*8], r8",
        "mov rax, cr3",
        "mov cr3, rax",
        "mov rdi, rsi",
        "movabs rax, offset {main}",
        "jmp rax",
        pdpt = sym HIGH_PDPT,
        main = sym linux_main,
    )
}

fn cpuid(leaf: u32) -> [u32; 4] {
    let (a, b, c, d): (u32, u32, u32, u32);
    // SAFETY: CPUID only writes the four registers named; RBX is saved
    // around it because LLVM reserves it.
    unsafe {
        asm!(
            "mov {tmp:r}, rbx",
            "cpuid",
            "xchg {tmp:r}, rbx",
            tmp = out(reg) b,
            inout("eax") leaf => a,
            inout("ecx") 0u32 => c,
            out("edx") d,
            options(nomem, nostack, preserves_flags),
        );
    }
    [a, b, c, d]
}

extern "sysv64" fn linux_main(zero_page: u64) -> ! {
    ZERO_PAGE.store(zero_page, Ordering::Relaxed);
    let max = cpuid(0x4000_0000)[0];
    let [lo, hi, _, _] = cpuid(0x4000_0002);
    let gpa = u64::from(lo) | (u64::from(hi) << 32);
    if max < 0x4000_0002 || gpa == 0 || !gpa.is_multiple_of(4096) {
        // No start info, so no console: a fault ends the domain instead.
        // SAFETY: UD2 only raises #UD.
        unsafe { asm!("ud2", options(nomem, nostack, noreturn)) }
    }
    // SAFETY: CPUID 0x4000_0002 gives the start-info page's address; it is
    // identity-mapped by the builder's tables.
    unsafe { pvabi::guest::start(gpa as *const pvabi::StartInfo, main) }
}

fn zp() -> &'static [u8] {
    // SAFETY: RSI at entry: the 4 KiB zero page, identity-mapped, which
    // nothing writes while the guest runs.
    unsafe { core::slice::from_raw_parts(ZERO_PAGE.load(Ordering::Relaxed) as *const u8, 4096) }
}

fn u16_at(b: &[u8], o: usize) -> u64 {
    b.get(o..o + 2)
        .map_or(0, |s| u64::from(u16::from_le_bytes([s[0], s[1]])))
}
fn u32_at(b: &[u8], o: usize) -> u64 {
    b.get(o..o + 4).map_or(0, |s| {
        u64::from(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    })
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u32_at(b, o) | (u32_at(b, o + 4) << 32)
}

/// The value of `key=` on the command line.
fn arg<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split_ascii_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn check(start: &pvabi::StartInfo) -> Result<(), &'static str> {
    let z = zp();
    if u16_at(z, 0x1fe) != 0xaa55 || z.get(0x202..0x206) != Some(b"HdrS") {
        return Err("boot flag or HdrS");
    }
    if u16_at(z, 0x206) < 0x020c || z[0x210] != 0xff || z[0x211] & 1 == 0 {
        return Err("version, loader type or LOADED_HIGH");
    }
    // CPUID 0x4000_0002 agrees with the start info it found.
    let [lo, hi, size, d] = cpuid(0x4000_0002);
    let gpa = u64::from(lo) | (u64::from(hi) << 32);
    if gpa != start.start_info_gpa || size as usize != pvabi::START_INFO_SIZE || d != 0 {
        return Err("CPUID 0x40000002");
    }
    // e820.
    let n = usize::from(z[0x1e8]);
    if n == 0 || n > 128 {
        return Err("e820_entries");
    }
    let si = start.start_info_gpa;
    let mut ram_below_si = 0u64;
    let mut si_reserved = false;
    // Link-time symbols: only their addresses are taken.
    let (img_lo, img_hi) = (
        core::ptr::addr_of!(_start_phys) as u64,
        core::ptr::addr_of!(_end) as u64 - KOFF,
    );
    let mut image_in_ram = false;
    for i in 0..n {
        let e = 0x2d0 + 20 * i;
        let (a, len, kind) = (u64_at(z, e), u64_at(z, e + 8), u32_at(z, e + 16));
        let end = a.saturating_add(len);
        if kind == 1 {
            if a < si + 4096 && si < end {
                return Err("the start-info page is in a RAM entry");
            }
            if a == 0 {
                ram_below_si = end;
            }
            if a <= img_lo && img_hi <= end {
                image_in_ram = true;
            }
        } else if a <= si && si + 4096 <= end {
            si_reserved = true;
        }
    }
    if ram_below_si != si || !si_reserved || !image_in_ram {
        return Err("e820 map");
    }
    // Command line: NUL-terminated, as long as it says.
    let ptr = u32_at(z, 0x228) | (u32_at(z, 0xc8) << 32);
    // SAFETY: cmd_line_ptr: at most 2,048 bytes of guest memory,
    // identity-mapped.
    let raw = unsafe { core::slice::from_raw_parts(ptr as *const u8, 2048) };
    let len = raw.iter().position(|&b| b == 0).ok_or("no NUL")?;
    let cmdline = core::str::from_utf8(&raw[..len]).map_err(|_| "cmdline not UTF-8")?;
    pvabi::println!("linuxproto: cmdline {} bytes", len);
    let want: usize = arg(cmdline, "cmdline_len")
        .and_then(|v| v.parse().ok())
        .ok_or("no cmdline_len=")?;
    if want != len {
        return Err("command line length");
    }
    // Initramfs.
    let rd = u32_at(z, 0x218) | (u32_at(z, 0xc0) << 32);
    let rd_len = u32_at(z, 0x21c) | (u32_at(z, 0xc4) << 32);
    let want_len: u64 = arg(cmdline, "initrd_len")
        .and_then(|v| v.parse().ok())
        .ok_or("no initrd_len=")?;
    let want_fnv = arg(cmdline, "initrd_fnv")
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .ok_or("no initrd_fnv=")?;
    if rd_len != want_len || !rd.is_multiple_of(4096) || rd == 0 {
        return Err("initrd address or size");
    }
    // SAFETY: the initramfs the zero page describes, in guest RAM.
    let bytes = unsafe { core::slice::from_raw_parts(rd as *const u8, rd_len as usize) };
    if fnv1a(bytes) != want_fnv {
        return Err("initrd checksum");
    }
    pvabi::println!(
        "linuxproto: zero page {:#x}, {} e820 entries, initrd {} bytes at {:#x}, start info {:#x}",
        ZERO_PAGE.load(Ordering::Relaxed),
        n,
        rd_len,
        rd,
        si
    );
    Ok(())
}

fn main(start: &pvabi::StartInfo) -> i32 {
    match check(start) {
        Ok(()) => {
            pvabi::println!("linuxproto: ok");
            0
        }
        Err(why) => {
            pvabi::println!("linuxproto: FAIL {}", why);
            1
        }
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    pvabi::guest::panic(info)
}

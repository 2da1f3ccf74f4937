//! The boot loader's structures: Multiboot2 information, PVH `start_info`,
//! the hypervisor's command line, and the ELF images of boot modules.
//!
//! The parsers must return `Ok` or `Err` for any bytes, never panic, never
//! read outside what the loader handed over, and what they return must hold
//! together (checked below for what `BootInfo` promises).

use crate::hv::{
    CmdlineOptions, GuestMemory, OutOfBounds, PhysRead, build, check_range, elf, multiboot2, pvh,
};

/// Where the fuzzer's bytes sit in the fake physical memory. Multiboot2's
/// block is 8-byte aligned at 1 MiB, as GRUB places it.
pub const MB2_BASE: u64 = 0x10_0000;
/// PVH's memory starts at 4 KiB; `start_info` is at its first byte.
pub const PVH_BASE: u64 = 0x1000;

/// Physical memory made of the fuzzer's bytes at `base`; everything else
/// is unreadable (as a hole in the boot identity map would be).
pub struct Mem<'a> {
    base: u64,
    bytes: &'a [u8],
}

impl PhysRead for Mem<'_> {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> bool {
        let Some(off) = paddr.checked_sub(self.base) else {
            return false;
        };
        let Ok(off) = usize::try_from(off) else {
            return false;
        };
        let Some(src) = off
            .checked_add(buf.len())
            .and_then(|end| self.bytes.get(off..end))
        else {
            return false;
        };
        buf.copy_from_slice(src);
        true
    }
}

fn check_info(info: &hypervisor::boot::BootInfo) {
    for r in &info.memory {
        assert!(r.start <= r.end, "region {r:?} ends before it starts");
    }
    for m in &info.modules {
        assert!(m.start <= m.end, "module {m:?} ends before it starts");
    }
}

/// A Multiboot2 information block at [`MB2_BASE`].
pub fn multiboot2(data: &[u8]) {
    let mem = Mem {
        base: MB2_BASE,
        bytes: data,
    };
    if let Ok(info) = multiboot2::parse(&mem, MB2_BASE) {
        check_info(&info);
    }
}

/// A PVH `start_info` (and whatever it points to) at [`PVH_BASE`].
pub fn pvh(data: &[u8]) {
    let mem = Mem {
        base: PVH_BASE,
        bytes: data,
    };
    if let Ok(info) = pvh::parse(&mem, PVH_BASE) {
        check_info(&info);
    }
}

/// The hypervisor's command line (from the loader, any bytes).
pub fn cmdline(data: &[u8]) {
    if let Ok(s) = core::str::from_utf8(data) {
        let _ = CmdlineOptions::parse(s);
    }
}

/// Guest memory that only checks bounds and remembers whether anything
/// was written (the builder promises no write before its last check).
struct TrackMem {
    size: u64,
    written: bool,
}

impl GuestMemory for TrackMem {
    fn size(&self) -> u64 {
        self.size
    }
    fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), OutOfBounds> {
        check_range(gpa, bytes.len() as u64, self.size)?;
        self.written = true;
        Ok(())
    }
    fn fill(&mut self, gpa: u64, len: u64, _byte: u8) -> Result<(), OutOfBounds> {
        check_range(gpa, len, self.size)?;
        self.written = true;
        Ok(())
    }
}

/// Guest memory for the builder: 16 MiB, enough for the seed kernel at
/// 1 MiB and for the builder's reserved pages at the top.
pub const GUEST_BYTES: u64 = 16 << 20;

/// A boot module's ELF image: the checks, then the domain builder over
/// fake guest memory. An image the checks accept must either build or be
/// refused before the builder's first write.
pub fn elf(data: &[u8]) {
    if elf::check(data).is_err() {
        return;
    }
    let mut mem = TrackMem {
        size: GUEST_BYTES,
        written: false,
    };
    if let Err(e) = build(&mut mem, data, "console=hvc0", 1, pvabi::HYPERCALL_VMMCALL) {
        assert!(
            !mem.written,
            "the builder wrote guest memory, then failed: {e:?}"
        );
    }
}

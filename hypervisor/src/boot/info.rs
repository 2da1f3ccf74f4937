//! The one boot description every entry path (Multiboot2 through GRUB, the
//! Xen PVH note for `qemu -kernel`) is translated into.
//!
//! Everything here is owned data with fixed capacity: the loader's own
//! structures may sit in memory the frame allocator later hands out, so the
//! parsers copy what they need before the allocator exists. A [`BootInfo`]
//! is about 70 KiB (sixteen module command lines of
//! [`MAX_MODULE_CMDLINE`] bytes): the boot path keeps its one in a static
//! (`start.rs`), not on the boot stack.

use arrayvec::{ArrayString, ArrayVec};

/// Most memory-map entries we keep (OVMF maps are long; GRUB merges them).
pub const MAX_MEMORY_REGIONS: usize = 256;
/// Most boot modules (dom0, guest images, configuration).
pub const MAX_MODULES: usize = 16;
/// Longest kernel command line kept.
pub const MAX_CMDLINE: usize = 512;
/// Longest module command line kept: a Linux domain's module carries
/// its kernel command line (up to Linux's 2,047 bytes,
/// `pvabi::DOMCTL_LINUX_CMDLINE_MAX`) after its file name and its own
/// words (`kind=linux initrd=... memory=... vcpus=...`).
pub const MAX_MODULE_CMDLINE: usize = 4096;
const _: () = assert!(MAX_MODULE_CMDLINE >= pvabi::DOMCTL_LINUX_CMDLINE_MAX as usize + 1024);
/// Most loader-owned ranges that must survive until boot info is consumed.
pub const MAX_BOOT_RANGES: usize = 8;

/// Which door the hypervisor came in through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootProtocol {
    /// Multiboot2 (GRUB on BIOS or UEFI).
    Multiboot2,
    /// Xen PVH direct boot (`qemu-system-x86_64 -kernel`).
    Pvh,
}

impl BootProtocol {
    /// Short name for logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Multiboot2 => "multiboot2",
            Self::Pvh => "pvh",
        }
    }
}

/// What a range of physical memory is, most usable first. When ranges from
/// the loader overlap, the *larger* kind (the more restrictive) wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RegionKind {
    /// Free RAM the hypervisor may allocate.
    Usable,
    /// ACPI tables; RAM, but kept until the tables are parsed.
    AcpiReclaimable,
    /// ACPI non-volatile storage; never touched.
    AcpiNvs,
    /// RAM the firmware reports as defective.
    BadMemory,
    /// Firmware, MMIO, or anything we do not understand.
    Reserved,
}

impl RegionKind {
    /// Whether this kind is RAM (counted in the machine's memory total).
    pub fn is_ram(self) -> bool {
        matches!(self, Self::Usable | Self::AcpiReclaimable | Self::AcpiNvs)
    }

    /// The kind for an e820 type code, as used by both Multiboot2 memory map
    /// tags and PVH memory maps (ACPI 6.5 table 15.1). Unknown codes
    /// (including type 2, reserved) are treated as reserved: we must not
    /// hand out memory we do not understand.
    pub fn from_e820(ty: u32) -> Self {
        match ty {
            1 => Self::Usable,
            3 => Self::AcpiReclaimable,
            4 => Self::AcpiNvs,
            5 => Self::BadMemory,
            _ => Self::Reserved,
        }
    }
}

/// One physical range `[start, end)` in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryRegion {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// What the range is.
    pub kind: RegionKind,
}

impl MemoryRegion {
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Whether the region is empty.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// A boot module: dom0, a guest image, a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// First byte, physical.
    pub start: u64,
    /// One past the last byte, physical.
    pub end: u64,
    /// The module's command line as the loader gave it (GRUB puts the file
    /// name first; QEMU's PVH loader gives none).
    pub cmdline: ArrayString<MAX_MODULE_CMDLINE>,
}

impl Module {
    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Whether the module is empty.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// The module's name: the last path component of the first word of its
    /// command line, or `None` when it has no command line.
    pub fn name(&self) -> Option<&str> {
        let first = self.cmdline.split_ascii_whitespace().next()?;
        first.rsplit('/').next().filter(|n| !n.is_empty())
    }

    /// The module's arguments: its command line after the first word.
    pub fn args(&self) -> &str {
        let s = self.cmdline.trim_start();
        match s.find(|c: char| c.is_ascii_whitespace()) {
            Some(i) => s[i..].trim(),
            None => "",
        }
    }
}

/// A linear framebuffer the loader set up, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framebuffer {
    /// Physical address.
    pub addr: u64,
    /// Bytes per line.
    pub pitch: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bits per pixel.
    pub bpp: u8,
}

/// Everything the hypervisor learns from its loader.
#[derive(Debug, Clone)]
pub struct BootInfo {
    /// Which entry path was taken.
    pub protocol: BootProtocol,
    /// The loader's name, if it said (GRUB does).
    pub loader_name: ArrayString<64>,
    /// The hypervisor's command line.
    pub cmdline: ArrayString<MAX_CMDLINE>,
    /// The physical memory map as the loader reported it (not yet normalised).
    pub memory: ArrayVec<MemoryRegion, MAX_MEMORY_REGIONS>,
    /// Boot modules in loader order.
    pub modules: ArrayVec<Module, MAX_MODULES>,
    /// Physical address of the ACPI RSDP, if the loader knew it.
    pub rsdp: Option<u64>,
    /// Framebuffer, if any.
    pub framebuffer: Option<Framebuffer>,
    /// Loader-owned physical ranges (the boot information block itself,
    /// module lists) that must not be allocated while `BootInfo` is built.
    pub loader_ranges: ArrayVec<(u64, u64), MAX_BOOT_RANGES>,
}

impl BootInfo {
    /// An empty description for the given protocol (`const`: the boot
    /// path's lives in a static).
    pub const fn new(protocol: BootProtocol) -> Self {
        Self {
            protocol,
            loader_name: ArrayString::new_const(),
            cmdline: ArrayString::new_const(),
            memory: ArrayVec::new_const(),
            modules: ArrayVec::new_const(),
            rsdp: None,
            framebuffer: None,
            loader_ranges: ArrayVec::new_const(),
        }
    }

    /// Empties `self` in place for the given protocol: what
    /// `*self = BootInfo::new(protocol)` means, without building a second
    /// 70 KiB value on the boot stack to copy from.
    pub fn reset(&mut self, protocol: BootProtocol) {
        // Every field named: a new one fails to compile until reset here.
        let Self {
            protocol: p,
            loader_name,
            cmdline,
            memory,
            modules,
            rsdp,
            framebuffer,
            loader_ranges,
        } = self;
        *p = protocol;
        loader_name.clear();
        cmdline.clear();
        memory.clear();
        modules.clear();
        *rsdp = None;
        *framebuffer = None;
        loader_ranges.clear();
    }
}

/// Why boot information was rejected. Every variant names what was wrong so
/// the one error line on the console is enough to fix the problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootInfoError {
    /// The pointer the loader passed is null or misaligned.
    BadPointer(u64),
    /// A size field is impossible (too small, too large, or overflows).
    BadSize { what: &'static str, value: u64 },
    /// A structure runs past the end of its container.
    Truncated { what: &'static str, offset: u64 },
    /// A magic number or version does not match.
    BadMagic { what: &'static str, value: u64 },
    /// More entries than we can keep.
    TooMany { what: &'static str, limit: usize },
    /// A string is not NUL-terminated UTF-8 within its container.
    BadString { what: &'static str },
    /// A string is longer than the `limit` bytes we keep (NUL excluded).
    TooLong { what: &'static str, limit: usize },
    /// No memory map was supplied.
    NoMemoryMap,
}

impl core::fmt::Display for BootInfoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::BadPointer(p) => {
                write!(f, "boot information pointer {p:#x} is null or misaligned")
            }
            Self::BadSize { what, value } => write!(f, "{what}: impossible size {value}"),
            Self::Truncated { what, offset } => {
                write!(f, "{what} runs past its end at offset {offset:#x}")
            }
            Self::BadMagic { what, value } => write!(f, "{what}: bad magic or version {value:#x}"),
            Self::TooMany { what, limit } => write!(f, "more than {limit} {what}"),
            Self::BadString { what } => {
                write!(f, "{what}: not a terminated UTF-8 string")
            }
            Self::TooLong { what, limit } => {
                write!(f, "{what}: longer than the {limit} bytes kept")
            }
            Self::NoMemoryMap => write!(f, "the boot loader supplied no memory map"),
        }
    }
}

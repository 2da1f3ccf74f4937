//! Boot modules: checked and reported at boot, and kept for `start.rs` to
//! start as domains and for the control domain to read and build domains
//! from. Nothing here creates a domain (that is a layer above).

use alloc::string::String;
use alloc::vec::Vec;
use arrayvec::ArrayString;

use super::physmem;
use crate::boot::BootInfo;

macro_rules! fatal {
    ($($arg:tt)*) => { super::exit::fatal(format_args!($($arg)*)) };
}

/// Checks every module lies in memory, validates ELF ones, and reports each
/// with its size and CRC-32. A module outside memory is fatal, and named;
/// an ELF image that fails the checks is reported and skipped (it never
/// counts as ELF in [`modules`]).
pub fn check(boot: &BootInfo) {
    for (i, m) in boot.modules.iter().enumerate() {
        let mut fallback = arrayvec::ArrayString::<16>::new();
        let _ = core::fmt::write(&mut fallback, format_args!("module{i}"));
        let name = m.name().unwrap_or(&fallback);
        let len = m.len();
        if !physmem::is_mapped(m.start, len) {
            fatal!(
                "module {i} ({name}) at {:#x}-{:#x} lies outside memory",
                m.start,
                m.end
            );
        }
        // SAFETY: the module range is mapped (checked) and reserved from the
        // frame allocator, so nothing writes it while we read.
        let bytes = unsafe { physmem::slice(m.start, len as usize) };
        let kind = if bytes.starts_with(b"\x7fELF") {
            match crate::elf::check(bytes) {
                Ok(elf) => {
                    let mut s = arrayvec::ArrayString::<48>::new();
                    let _ = core::fmt::write(&mut s, format_args!("ELF64 entry {:#x}", elf.entry));
                    s
                }
                // One bad image must not keep the others from starting:
                // skipped like a module whose segment does not fit (that
                // one fails when its domain is built, `start.rs`).
                Err(e) => {
                    log::error!(
                        "module {i} ({name}) is not a usable ELF image: {e}; skipped, no domain is started from it"
                    );
                    arrayvec::ArrayString::from("unusable ELF, skipped").unwrap_or_default()
                }
            }
        } else {
            arrayvec::ArrayString::from("data").unwrap_or_default()
        };
        crate::println!(
            "module {i}: {name} args=\"{}\" at {:#x}-{:#x} size={len} crc32={:#010x} {kind}",
            m.args(),
            m.start,
            m.end,
            crc32fast::hash(bytes)
        );
    }
}

fn module_name(i: usize, m: &crate::boot::Module) -> ArrayString<32> {
    let mut s = arrayvec::ArrayString::new();
    match m.name() {
        Some(n) => {
            for c in n.chars() {
                if s.try_push(c).is_err() {
                    break;
                }
            }
        }
        None => {
            let _ = core::fmt::write(&mut s, format_args!("module{i}"));
        }
    }
    s
}

/// A boot module kept for the control domain (`HC_DOMCTL_MODULE_*`).
pub struct ModuleRef {
    /// First byte, physical (identity-mapped, reserved for good).
    start: u64,
    /// Size in bytes.
    pub len: u64,
    /// File name without directories, or `module<i>`.
    pub name: ArrayString<64>,
    /// Arguments after the name, whole (up to the boot information's
    /// `MAX_MODULE_CMDLINE`: a Linux module's carry its kernel command
    /// line).
    pub args: String,
    /// Starts with the ELF magic and passed the ELF checks (`crate::elf::check`).
    pub elf: bool,
}

impl ModuleRef {
    /// The module's bytes.
    pub fn bytes(&self) -> &'static [u8] {
        // SAFETY: `check` verified the range is mapped; the frame allocator
        // never hands out module frames, and nothing writes them.
        unsafe { physmem::slice(self.start, self.len as usize) }
    }
}

static MODULES: spin::Once<Vec<ModuleRef>> = spin::Once::new();

/// The boot modules, in the loader's order (empty before boot registers
/// them).
pub fn modules() -> &'static [ModuleRef] {
    MODULES.get().map_or(&[], Vec::as_slice)
}

/// Keeps the boot modules for [`modules`] (once; later calls change
/// nothing).
pub fn register(boot: &BootInfo) {
    MODULES.call_once(|| {
        boot.modules
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let mut name = ArrayString::new();
                for c in module_name(i, m).chars() {
                    let _ = name.try_push(c);
                }
                let r = ModuleRef {
                    start: m.start,
                    len: m.len(),
                    name,
                    args: String::from(m.args()),
                    elf: false,
                };
                let bytes = r.bytes();
                let elf = bytes.starts_with(b"\x7fELF") && crate::elf::check(bytes).is_ok();
                ModuleRef { elf, ..r }
            })
            .collect()
    });
}

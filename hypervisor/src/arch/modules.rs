//! Boot modules: checked and reported at boot, then every ELF module is
//! started as a domain.

use super::{physmem, sched};
use crate::boot::BootInfo;
use crate::util::crc32;

macro_rules! fatal {
    ($($arg:tt)*) => { super::exit::fatal(format_args!($($arg)*)) };
}

/// Checks every module lies in memory, validates ELF ones, and reports each
/// with its size and CRC-32. A bad module is fatal, and named.
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
                Err(e) => fatal!("module {i} ({name}) is not a usable ELF image: {e}"),
            }
        } else {
            arrayvec::ArrayString::from("data").unwrap_or_default()
        };
        crate::println!(
            "module {i}: {name} args=\"{}\" at {:#x}-{:#x} size={len} crc32={:#010x} {kind}",
            m.args(),
            m.start,
            m.end,
            crc32(bytes)
        );
    }
}

fn module_name(i: usize, m: &crate::boot::Module) -> arrayvec::ArrayString<32> {
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

/// Every ELF boot module becomes a domain; its arguments are the guest's
/// command line. A module that cannot be started is reported and skipped:
/// the others still run.
pub fn start_domains(boot: &BootInfo) {
    for (i, m) in boot.modules.iter().enumerate() {
        // SAFETY: checked to be mapped and reserved in `check_modules`.
        let bytes = unsafe { physmem::slice(m.start, m.len() as usize) };
        if !bytes.starts_with(b"\x7fELF") {
            continue;
        }
        let name = module_name(i, m);
        let Some(backend) = sched::backend() else {
            log::error!("domain {name}: not started: no usable hardware virtualization");
            continue;
        };
        if let Err(e) = sched::create(backend, &name, bytes, m.args()) {
            log::error!("domain {name}: not started: {e}");
        }
    }
}

//! A domain's PCI functions: `pci` in its `[[domain]]` table (issue 14,
//! driver domains). dom0 moves each from itself to the domain with
//! `HC_DOMCTL_PCI_ASSIGN` right after building it, before it first runs
//! (`server::create_all`); docs/pci.md, *Driver domains*.
//!
//! ```toml
//! pci = ["0000:00:06.0"]   # SSSS:BB:DD.F, hexadecimal; at most 8
//! ```
//!
//! Checked here: the form, the ranges (device 0..=1f, function 0..=7), a
//! function named twice, in one domain or by two. What needs the machine
//! (is there such a function, does the hypervisor keep it, does another
//! domain or dom0's own driver hold it) is the hypervisor's answer, which
//! dom0 reports by the same name (`server/create.rs`).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::error::Sink;
use super::parse::{Value, found, string};
use toml::de::DeValue;

/// Most functions one domain may be given.
pub const PCI_MAX: usize = 8;

/// The SBDF word (`pvabi::sbdf`) of `SSSS:BB:DD.F`, or why it is not one.
pub fn parse_bdf(s: &str) -> Result<u32, String> {
    let form = || {
        format!(
            "{s:?} is not a PCI function: expected SSSS:BB:DD.F in hexadecimal, as \"0000:00:06.0\""
        )
    };
    let (seg, rest) = s.split_once(':').ok_or_else(form)?;
    let (bus, rest) = rest.split_once(':').ok_or_else(form)?;
    let (dev, func) = rest.split_once('.').ok_or_else(form)?;
    let hex = |t: &str, len: usize| {
        if t.len() == len && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            u32::from_str_radix(t, 16).map_err(|_| form())
        } else {
            Err(form())
        }
    };
    let (seg, bus, dev, func) = (hex(seg, 4)?, hex(bus, 2)?, hex(dev, 2)?, hex(func, 1)?);
    if dev > 0x1f {
        return Err(format!("{s:?}: device {dev:#04x} is over 0x1f"));
    }
    if func > 7 {
        return Err(format!("{s:?}: function {func} is over 7"));
    }
    Ok(pvabi::sbdf(seg as u16, bus as u8, dev as u8, func as u8))
}

/// `SSSS:BB:DD.F` of an SBDF word.
pub fn show_bdf(sbdf: u32) -> String {
    format!(
        "{:04x}:{:02x}:{:02x}.{:x}",
        sbdf >> 16,
        (sbdf >> 8) & 0xff,
        (sbdf >> 3) & 31,
        sbdf & 7
    )
}

/// The `pci` array of domain `label`: the SBDF words in the order given,
/// with where each was written (for the file-wide check of repeats).
pub(super) fn read(sink: &mut Sink<'_>, label: &str, v: &Value<'_>) -> Option<Vec<(u32, usize)>> {
    let DeValue::Array(items) = v.get_ref() else {
        let msg = format!(
            "expected an array of \"SSSS:BB:DD.F\" strings, found {}",
            found(v.get_ref())
        );
        sink.push(v.span().start, Some(label), Some("pci"), msg);
        return None;
    };
    let before = sink.errors.len();
    if items.len() > PCI_MAX {
        let msg = format!("{} functions, at most {PCI_MAX}", items.len());
        sink.push(v.span().start, Some(label), Some("pci"), msg);
    }
    let mut out: Vec<(u32, usize)> = Vec::new();
    for item in items.iter() {
        let Some((s, at)) = string(sink, label, "pci", item) else {
            continue;
        };
        match parse_bdf(&s) {
            Ok(w) if out.iter().any(|&(o, _)| o == w) => {
                sink.push(at, Some(label), Some("pci"), format!("{s} is named twice"));
            }
            Ok(w) => out.push((w, at)),
            Err(why) => sink.push(at, Some(label), Some("pci"), why),
        }
    }
    (sink.errors.len() == before).then_some(out)
}

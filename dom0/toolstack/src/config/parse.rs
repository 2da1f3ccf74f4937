//! Walks TOML's spanned document tree (every key and value keeps its byte
//! range) so each error can point at its line, column, domain and field.
//! Serde's derive would lose the domain name and the position of checks
//! that span fields (cap against vcpus, repeated names).

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::error::{ConfigErrors, Sink, position};
use super::{
    BootConfig, CMDLINE_MAX, DEFAULT_WEIGHT, DomainConfig, Images, LINUX_CMDLINE_MAX, Limits,
    MAX_WEIGHT, valid_name,
};

/// Every key a `[[domain]]` table may have.
pub const FIELDS: &[&str] = &[
    "name",
    "image",
    "kernel",
    "initrd",
    "memory",
    "vcpus",
    "weight",
    "cap",
    "cmdline",
    "autostart",
    "heap_budget",
    "on_poweroff",
    "on_reboot",
    "on_crash",
    "uuid",
    "target",
    "pci",
];

/// Parses and checks configuration `text`, read from `file` (used only in
/// messages). Returns every domain, or every error: never a part.
pub fn parse(
    file: &str,
    text: &str,
    limits: &Limits,
    images: Images<'_>,
) -> Result<BootConfig, ConfigErrors> {
    let mut sink = Sink {
        file,
        text,
        errors: Vec::new(),
    };
    let root = match DeTable::parse(text) {
        Ok(root) => root,
        Err(e) => {
            let at = e.span().map_or(0, |s| s.start);
            sink.push(at, None, None, e.message().trim().to_string());
            return Err(ConfigErrors(sink.errors));
        }
    };
    let mut domains = Vec::new();
    let mut network = None;
    let mut store = None;
    for (key, value) in root.get_ref().iter() {
        if key.get_ref() == "network" {
            network = super::network::network(&mut sink, value);
            continue;
        }
        if key.get_ref() == "store" {
            store = super::store::store(&mut sink, value);
            continue;
        }
        if key.get_ref() != "domain" {
            let msg = format!(
                "unknown top-level key \"{}\" (expected [[domain]] tables)",
                key.get_ref()
            );
            sink.push(key.span().start, None, None, msg);
            continue;
        }
        let DeValue::Array(array) = value.get_ref() else {
            let msg = "must be an array of tables: write [[domain]], not [domain]".to_string();
            sink.push(key.span().start, None, Some("domain"), msg);
            continue;
        };
        for (i, item) in array.iter().enumerate() {
            let label = format!("domain #{}", i + 1);
            let DeValue::Table(table) = item.get_ref() else {
                let msg = format!("expected a table, found {}", found(item.get_ref()));
                sink.push(item.span().start, Some(&label), None, msg);
                continue;
            };
            if let Some(d) = domain(&mut sink, label, item.span(), table, limits, images) {
                domains.push((d, item.span().start));
            }
        }
    }
    // Names are unique across the file.
    for (i, (d, at)) in domains.iter().enumerate() {
        if let Some((_, first)) = domains[..i].iter().find(|(o, _)| o.name == d.name) {
            let (line, _) = position(text, *first);
            let msg = format!(
                "name \"{}\" is already used by the domain at line {line}",
                d.name
            );
            sink.push(
                *at,
                Some(&format!("domain \"{}\"", d.name)),
                Some("name"),
                msg,
            );
        }
    }
    // So are UUIDs.
    for (i, (d, at)) in domains.iter().enumerate() {
        let Some(u) = d.uuid else { continue };
        if let Some((o, first)) = domains[..i].iter().find(|(o, _)| o.uuid == Some(u)) {
            let (line, _) = position(text, *first);
            let msg = format!(
                "uuid {u} is already used by domain \"{}\" at line {line}",
                o.name
            );
            sink.push(
                *at,
                Some(&format!("domain \"{}\"", d.name)),
                Some("uuid"),
                msg,
            );
        }
    }
    // A function goes to one domain.
    for (i, (d, _)) in domains.iter().enumerate() {
        for &(w, at) in &d.pci {
            if let Some((o, _)) = domains[..i]
                .iter()
                .find(|(o, _)| o.pci.iter().any(|&(ow, _)| ow == w))
            {
                let msg = format!(
                    "{} is already given to domain \"{}\" at line {}",
                    super::pci::show_bdf(w),
                    o.name,
                    o.line
                );
                sink.push(
                    at,
                    Some(&format!("domain \"{}\"", d.name)),
                    Some("pci"),
                    msg,
                );
            }
        }
    }
    if !sink.errors.is_empty() {
        sink.errors.sort_by_key(|e| (e.line, e.column));
        return Err(ConfigErrors(sink.errors));
    }
    Ok(BootConfig {
        domains: domains.into_iter().map(|(d, _)| d).collect(),
        network,
        store,
    })
}

pub(super) type Value<'i> = Spanned<DeValue<'i>>;

/// Checks one `[[domain]]` table; `None` if anything in it is wrong (the
/// errors are in `sink`).
fn domain(
    sink: &mut Sink<'_>,
    mut label: String,
    span: Range<usize>,
    table: &DeTable<'_>,
    limits: &Limits,
    images: Images<'_>,
) -> Option<DomainConfig> {
    let before = sink.errors.len();
    let get = |k: &str| table.get(k);
    // The name first, so every other message can say which domain.
    let name = get("name").and_then(|v| string(sink, &label, "name", v));
    if let Some((name, at)) = &name {
        match valid_name(name) {
            Ok(()) => label = format!("domain \"{name}\""),
            Err(why) => sink.push(*at, Some(&label), Some("name"), format!("{name:?} {why}")),
        }
    }
    for (key, _) in table.iter() {
        let k = key.get_ref().as_ref();
        if !FIELDS.contains(&k) {
            let mut msg = format!("unknown field (known: {})", FIELDS.join(", "));
            if let Some(near) = FIELDS.iter().find(|f| edit_distance(f, k) <= 2) {
                msg = format!("unknown field, did you mean \"{near}\"?");
            }
            sink.push(key.span().start, Some(&label), Some(k), msg);
        }
    }
    let header = span.start;
    let required = |sink: &mut Sink<'_>, field: &str| {
        let msg = "missing (it is required)".to_string();
        sink.push(header, Some(&label), Some(field), msg);
    };
    if get("name").is_none() {
        required(sink, "name");
    }
    // A pvabi guest names its `image`; a Linux domain its `kernel` (a
    // vmlinux boot module) and optionally an `initrd` (any boot module:
    // dom0 finds it by name when it creates the domain).
    let linux = get("kernel").is_some();
    let image_field = if linux { "kernel" } else { "image" };
    if linux && get("image").is_some() {
        let msg = "a domain has either an image or a kernel, not both".to_string();
        sink.push(header, Some(&label), Some("kernel"), msg);
    }
    let initrd = match get("initrd") {
        None => Some(None),
        Some(v) if !linux => {
            let msg = "only a Linux domain (with `kernel`) takes an initrd".to_string();
            sink.push(v.span().start, Some(&label), Some("initrd"), msg);
            None
        }
        Some(v) => string(sink, &label, "initrd", v).and_then(|(s, at)| {
            if s.is_empty() {
                sink.push(
                    at,
                    Some(&label),
                    Some("initrd"),
                    "must not be empty".to_string(),
                );
                None
            } else {
                Some(Some(s))
            }
        }),
    };
    let image = match get(image_field) {
        None => {
            required(sink, "image");
            None
        }
        Some(v) => string(sink, &label, image_field, v).and_then(|(image, at)| {
            let known = match images {
                Images::Any => !image.is_empty(),
                Images::Only(list) => list.contains(&image.as_str()),
            };
            if !known {
                let msg = match images {
                    Images::Only(list) if !list.is_empty() => {
                        format!(
                            "{image:?} is not a boot module (modules: {})",
                            list.join(", ")
                        )
                    }
                    Images::Only(_) => format!("{image:?} is not a boot module (there are none)"),
                    Images::Any => "must not be empty".to_string(),
                };
                sink.push(at, Some(&label), Some(image_field), msg);
            }
            known.then_some(image)
        }),
    };
    let memory = match get("memory") {
        None => {
            required(sink, "memory");
            None
        }
        Some(v) => integer(
            sink,
            &label,
            "memory",
            v,
            "an integer number of MiB",
            limits.min_memory_mib,
            limits.max_memory_mib,
        )
        .and_then(|m| {
            let align = limits.memory_align_mib.max(1);
            if m.is_multiple_of(align) {
                return Some(m);
            }
            let msg = format!("{m} is not a multiple of {align} MiB");
            sink.push(v.span().start, Some(&label), Some("memory"), msg);
            None
        }),
    };
    let vcpus = get("vcpus").map_or(Some(1), |v| {
        integer(
            sink,
            &label,
            "vcpus",
            v,
            "an integer number of vCPUs",
            1,
            limits.max_vcpus.into(),
        )
    });
    let weight = get("weight").map_or(Some(DEFAULT_WEIGHT.into()), |v| {
        integer(
            sink,
            &label,
            "weight",
            v,
            "an integer weight",
            1,
            MAX_WEIGHT.into(),
        )
    });
    // The cap's range depends on the vCPU count; if that is bad, check
    // against the largest so the cap's own type errors still show.
    let cap_max = 100 * vcpus.unwrap_or(limits.max_vcpus.into());
    let cap = get("cap").map_or(Some(0), |v| {
        integer(
            sink,
            &label,
            "cap",
            v,
            "an integer percentage of one CPU",
            0,
            cap_max,
        )
    });
    let cmdline = get("cmdline").map_or(Some(String::new()), |v| {
        let (s, at) = string(sink, &label, "cmdline", v)?;
        let max = if linux {
            LINUX_CMDLINE_MAX
        } else {
            CMDLINE_MAX
        };
        let why = if s.len() > max {
            format!("is {} bytes long, at most {max} fit", s.len())
        } else if s.contains('\0') {
            "must not contain NUL characters".to_string()
        } else {
            return Some(s);
        };
        sink.push(at, Some(&label), Some("cmdline"), why);
        None
    });
    let autostart = get("autostart").map_or(Some(true), |v| match v.get_ref() {
        DeValue::Boolean(b) => Some(*b),
        other => {
            let msg = format!("expected true or false, found {}", found(other));
            sink.push(v.span().start, Some(&label), Some("autostart"), msg);
            None
        }
    });
    let heap_budget = get("heap_budget").map_or(Some(0), |v| {
        integer(
            sink,
            &label,
            "heap_budget",
            v,
            "an integer number of KiB",
            pvabi::DOMCTL_BUDGET_MIN >> 10,
            pvabi::DOMCTL_BUDGET_MAX >> 10,
        )
    });
    let uuid = get("uuid").map_or(Some(None), |v| {
        let (s, at) = string(sink, &label, "uuid", v)?;
        match crate::uuid::Uuid::parse(&s) {
            Some(u) => Some(Some(u)),
            None => {
                let msg = format!(
                    "{s:?} is not a UUID: expected 8-4-4-4-12 hex digits, as \"123e4567-e89b-42d3-a456-426614174000\""
                );
                sink.push(at, Some(&label), Some("uuid"), msg);
                None
            }
        }
    });
    let target = get("target").map_or(Some(None), |v| {
        super::target::target(sink, &label, v, memory).map(Some)
    });
    let pci = get("pci").map_or(Some(Vec::new()), |v| super::pci::read(sink, &label, v));
    let on_end = super::policy::read(sink, &label, |k| table.get(k));
    if sink.errors.len() != before {
        return None;
    }
    Some(DomainConfig {
        name: name?.0,
        image: image?,
        memory_mib: memory?,
        vcpus: u32::try_from(vcpus?).ok()?,
        weight: u32::try_from(weight?).ok()?,
        cap: u32::try_from(cap?).ok()?,
        cmdline: cmdline?,
        autostart: autostart?,
        heap_budget_kib: heap_budget?,
        on_end: on_end?,
        linux,
        initrd: initrd?,
        uuid: uuid?,
        target_bytes: target?,
        pci: pci?,
        line: position(sink.text, header).0,
    })
}

/// A string value and where it starts.
pub(super) fn string(
    sink: &mut Sink<'_>,
    label: &str,
    field: &str,
    v: &Value<'_>,
) -> Option<(String, usize)> {
    match v.get_ref() {
        DeValue::String(s) => Some((s.to_string(), v.span().start)),
        other => {
            let msg = format!("expected a string, found {}", found(other));
            sink.push(v.span().start, Some(label), Some(field), msg);
            None
        }
    }
}

/// A non-negative integer value in `min ..= max`.
pub(super) fn integer(
    sink: &mut Sink<'_>,
    label: &str,
    field: &str,
    v: &Value<'_>,
    what: &str,
    min: u64,
    max: u64,
) -> Option<u64> {
    let msg = match v.get_ref() {
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) if (min..=max).contains(&n.unsigned_abs()) && n >= 0 => {
                return Some(n.unsigned_abs());
            }
            Ok(n) => format!("{n} is out of range {min} ..= {max}"),
            Err(_) => format!("{} is out of range {min} ..= {max}", i.as_str()),
        },
        other => format!("expected {what}, found {}", found(other)),
    };
    sink.push(v.span().start, Some(label), Some(field), msg);
    None
}

/// How a value is shown in "found ..." messages.
pub(super) fn found(v: &DeValue<'_>) -> String {
    match v {
        DeValue::String(s) => format!("{:?}", s.as_ref()),
        DeValue::Integer(i) => format!("the integer {}", i.as_str()),
        DeValue::Float(x) => format!("the float {}", x.as_str()),
        DeValue::Boolean(b) => format!("the boolean {b}"),
        DeValue::Datetime(_) => "a date-time".to_string(),
        DeValue::Array(_) => "an array".to_string(),
        DeValue::Table(_) => "a table".to_string(),
    }
}

/// Levenshtein distance, for "did you mean" on short keys.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

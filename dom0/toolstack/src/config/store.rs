//! dom0's `[store]` table: the image store on one of its disks (issue 14;
//! docs/store.md).
//!
//! ```toml
//! [store]
//! disk = "kestrel-store0"   # the disk: its model/serial (virtio-blk
//!                           # serial=, NVMe model) or its PCI address
//!                           # "0000:00:03.0"
//! format = true             # make a store on it if it holds none; never
//!                           # formats a disk that holds a store, even a
//!                           # damaged one; default false
//! import = ["web.elf"]      # boot modules copied into the store as
//!                           # images at boot when no image has that name
//! log_kib = 128             # dom0's log and the domains' console
//! console_kib = 32          # histories kept in the store (logs.rs)
//! console_domains = 32
//! ```
//!
//! Only dom0's boot configuration may have it.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use toml::de::{DeTable, DeValue};

use super::error::Sink;
use super::parse::{Value, found, string};

/// Most modules `import` may name.
pub const MAX_IMPORTS: usize = 16;

const FIELDS: &[&str] = &[
    "disk",
    "format",
    "import",
    "log_kib",
    "console_kib",
    "console_domains",
];
const LABEL: &str = "store";

/// The checked `[store]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// The disk's model/serial or PCI address.
    pub disk: String,
    /// Format the disk when it holds no store.
    pub format: bool,
    /// Boot modules to import as images.
    pub import: Vec<String>,
    /// The sizes of the log rings kept in the store ([`super::logs`]).
    pub logs: super::logs::LogSizes,
}

/// Checks the `[store]` table `v`; errors go to `sink`.
pub(super) fn store(sink: &mut Sink<'_>, v: &Value<'_>) -> Option<StoreConfig> {
    let DeValue::Table(t) = v.get_ref() else {
        let msg = format!("expected a table [store], found {}", found(v.get_ref()));
        sink.push(v.span().start, Some(LABEL), None, msg);
        return None;
    };
    table(sink, v.span().start, t)
}

fn table(sink: &mut Sink<'_>, at: usize, t: &DeTable<'_>) -> Option<StoreConfig> {
    let before = sink.errors.len();
    let (mut disk, mut format_it, mut import) = (None, false, Vec::new());
    let mut logs = super::logs::LogSizes::default();
    for (k, v) in t.iter() {
        match k.get_ref().as_ref() {
            "disk" => {
                let Some((s, at)) = string(sink, LABEL, "disk", v) else {
                    continue;
                };
                if s.is_empty() {
                    let msg = "must name a disk (its model/serial or PCI address)".to_string();
                    sink.push(at, Some(LABEL), Some("disk"), msg);
                }
                disk = Some(s);
            }
            "format" => match v.get_ref() {
                DeValue::Boolean(b) => format_it = *b,
                other => {
                    let msg = format!("expected true or false, found {}", found(other));
                    sink.push(v.span().start, Some(LABEL), Some("format"), msg);
                }
            },
            "import" => {
                let DeValue::Array(a) = v.get_ref() else {
                    let msg = format!(
                        "expected an array of boot module names, found {}",
                        found(v.get_ref())
                    );
                    sink.push(v.span().start, Some(LABEL), Some("import"), msg);
                    continue;
                };
                for item in a.iter() {
                    if let Some((s, _)) = string(sink, LABEL, "import", item) {
                        import.push(s);
                    }
                }
                if a.len() > MAX_IMPORTS {
                    let msg = format!("at most {MAX_IMPORTS} modules, found {}", a.len());
                    sink.push(v.span().start, Some(LABEL), Some("import"), msg);
                }
            }
            k if super::logs::KEYS.contains(&k) => super::logs::read(sink, k, v, &mut logs),
            other => {
                let msg = format!("unknown field {other:?} (known: {})", FIELDS.join(", "));
                sink.push(k.span().start, Some(LABEL), None, msg);
            }
        }
    }
    if disk.is_none() && sink.errors.len() == before {
        let msg = "missing: the disk's model/serial or PCI address".to_string();
        sink.push(at, Some(LABEL), Some("disk"), msg);
    }
    if sink.errors.len() != before {
        return None;
    }
    Some(StoreConfig {
        disk: disk?,
        format: format_it,
        import,
        logs,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::config::{Images, Limits, parse};
    use alloc::string::ToString;

    fn cfg(text: &str) -> Result<super::StoreConfig, alloc::string::String> {
        match parse("t.toml", text, &Limits::default(), Images::Any) {
            Ok(c) => Ok(c.store.unwrap()),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn a_store_table_is_read() {
        let c =
            cfg("[store]\ndisk = \"kestrel-store0\"\nformat = true\nimport = [\"a.bin\", \"b\"]\n")
                .unwrap();
        assert_eq!(c.disk, "kestrel-store0");
        assert!(c.format);
        assert_eq!(c.import, ["a.bin", "b"]);
        let c = cfg("[store]\ndisk = \"0000:00:03.0\"\n").unwrap();
        assert!(!c.format && c.import.is_empty());
    }

    #[test]
    fn bad_store_tables_name_the_field() {
        let e = cfg("[store]\nformat = true\n").unwrap_err();
        assert!(
            e.contains("t.toml:1:1: store: field \"disk\": missing"),
            "{e}"
        );
        let e = cfg("[store]\ndisk = \"x\"\nformat = \"yes\"\n").unwrap_err();
        assert!(
            e.contains("\"format\": expected true or false, found \"yes\""),
            "{e}"
        );
        let e = cfg("[store]\ndisk = \"x\"\nimport = \"a\"\n").unwrap_err();
        assert!(e.contains("\"import\": expected an array"), "{e}");
        let e = cfg("[store]\ndisk = \"x\"\nfromat = true\n").unwrap_err();
        assert!(e.contains("unknown field \"fromat\""), "{e}");
    }
}

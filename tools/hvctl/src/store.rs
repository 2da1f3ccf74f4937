//! `hvctl volume create|list|delete`: volumes in dom0's image store on its
//! disk (docs/store.md). The store's images are listed and deleted by
//! `hvctl image` (main.rs, upload.rs) with the others.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Subcommand;
use kestrel_toolstack::proto::{ObjectKind, Op, Reply, VolumeInfo};

use crate::client::Client;
use crate::error::Error;
use crate::output;

/// `hvctl volume ...`.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum VolumeCmd {
    /// Create a volume (reads as zeros) of SIZE bytes (suffix K, M or G
    /// for KiB, MiB, GiB).
    Create {
        #[arg(value_name = "NAME")]
        name: String,
        #[arg(value_name = "SIZE", value_parser = size)]
        size: u64,
    },
    /// List the volumes in dom0's store.
    List,
    /// Delete a volume and its data.
    Delete {
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Create volume NAME from a local raw or qcow2 file (qcow2 is read
    /// here; runs of zeros are not sent).
    Import {
        #[arg(value_name = "NAME")]
        name: String,
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The file's format (default: qcow2 when it starts like one).
        #[arg(long, value_enum)]
        format: Option<crate::xfer::Format>,
    },
    /// Write volume NAME to a local file, raw (sparse) or qcow2.
    Export {
        #[arg(value_name = "NAME")]
        name: String,
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The file's format (default: qcow2 when FILE ends in .qcow2).
        #[arg(long, value_enum)]
        format: Option<crate::xfer::Format>,
    },
}

/// `4096`, `64K`, `1M`, `2G` (binary units).
pub fn size(s: &str) -> Result<u64, String> {
    let (digits, shift) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 10),
        Some((i, 'M' | 'm')) => (&s[..i], 20),
        Some((i, 'G' | 'g')) => (&s[..i], 30),
        _ => (s, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size (bytes, or a number with K, M or G)"))?;
    n.checked_mul(1 << shift)
        .filter(|&b| b > 0)
        .ok_or_else(|| format!("{s:?}: size must be above 0 and below 16 EiB"))
}

fn volumes(list: &[VolumeInfo]) -> String {
    if list.is_empty() {
        return "no volumes in the store\n".into();
    }
    let w = list.iter().map(|v| v.name.len()).max().unwrap_or(4).max(4);
    let mut out = format!("{:<w$}  {:>10}\n", "NAME", "SIZE");
    for v in list {
        let _ = writeln!(out, "{:<w$}  {:>10}", v.name, output::bytes(v.size_bytes));
    }
    out
}

/// Runs `hvctl volume ...`.
pub fn volume(client: &mut Client, cmd: VolumeCmd, json: bool) -> Result<String, Error> {
    let progress = crate::upload::progress_wanted(json);
    let (reply, line) = match cmd {
        VolumeCmd::Import { name, file, format } => {
            crate::xfer::import(client, ObjectKind::Volume, &name, &file, format, progress)?
        }
        VolumeCmd::Export { name, file, format } => {
            crate::xfer::export(client, ObjectKind::Volume, &name, &file, format, progress)?
        }
        cmd => return simple(client, cmd, json),
    };
    Ok(if json { output::json(&reply) } else { line })
}

fn simple(client: &mut Client, cmd: VolumeCmd, json: bool) -> Result<String, Error> {
    let (op, done) = match cmd {
        VolumeCmd::List => (Op::VolumeList, String::new()),
        VolumeCmd::Create { name, size } => {
            let done = format!("created volume {name} ({})\n", output::bytes(size));
            (
                Op::VolumeCreate {
                    name,
                    size_bytes: size,
                },
                done,
            )
        }
        VolumeCmd::Delete { name } => {
            let done = format!("deleted volume {name}\n");
            (Op::VolumeDelete { name }, done)
        }
        VolumeCmd::Import { .. } | VolumeCmd::Export { .. } => {
            return Err(Error::Usage("not a simple volume command".into()));
        }
    };
    show(client.call(op)?, json, done)
}

fn show(reply: Reply, json: bool, done: String) -> Result<String, Error> {
    if json {
        return Ok(output::json(&reply));
    }
    Ok(match reply {
        Reply::Volumes { .. } if !done.is_empty() => done,
        Reply::Volumes { volumes: list } => volumes(&list),
        Reply::Done => done,
        other => return Err(Error::Protocol(format!("unexpected reply {other:?}"))),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(size("4096"), Ok(4096));
        assert_eq!(size("64K"), Ok(64 << 10));
        assert_eq!(size("1m"), Ok(1 << 20));
        assert_eq!(size("2G"), Ok(2 << 30));
        assert!(size("0").is_err());
        assert!(size("1T").unwrap_err().contains("not a size"));
        assert!(size("99999999999G").unwrap_err().contains("below 16 EiB"));
    }

    #[test]
    fn tables() {
        let v = VolumeInfo {
            name: "data".into(),
            size_bytes: 1 << 20,
        };
        assert_eq!(volumes(&[v]), "NAME        SIZE\ndata       1 MiB\n");
        assert_eq!(volumes(&[]), "no volumes in the store\n");
    }
}

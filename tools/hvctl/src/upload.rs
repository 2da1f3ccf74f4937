//! Sending images to dom0 (`hvctl image upload`, and `hvctl create` for
//! a configuration that names local files), `hvctl image list|delete`.
//!
//! How a local file becomes a dom0 image name (docs/toolstack.md): by its
//! content. hvctl hashes the file (SHA-256) and asks dom0 for its images
//! first; one with the same hash (a boot module, an earlier upload, an
//! image in dom0's store) is used as it is, so the same file is never
//! sent twice. Otherwise it is sent as `<file name>-<first 12 hex digits of its SHA-256>` (the file
//! name cut to 40 characters of `[A-Za-z0-9._-]`), unless `--name` says
//! otherwise.
//!
//! In a configuration, an `image`, `kernel` or `initrd` value that
//! contains a `/` is a local path (relative to the configuration file's
//! directory); an image name never contains one.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use base64::Engine as _;
use kestrel_toolstack::proto::{ImageInfo, ImageSource, Op, Reply, UPLOAD_CHUNK_MAX};
use kestrel_toolstack::server::upload::{hex, sha256};

use crate::client::Client;
use crate::error::Error;

/// Whether to draw a progress bar (on stderr): only when stdout is a
/// terminal and the output is not JSON.
pub fn progress_wanted(json: bool) -> bool {
    !json && std::io::stdout().is_terminal()
}

/// Every image dom0 has.
pub fn list(client: &mut Client) -> Result<Vec<ImageInfo>, Error> {
    match client.call(Op::ImageList)? {
        Reply::Images { images } => Ok(images),
        other => Err(Error::Protocol(format!("unexpected reply {other:?}"))),
    }
}

/// The name an upload of `path` with hash `sha` gets by default.
pub fn default_name(path: &Path, sha: &[u8; 32]) -> String {
    let stem: String = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    let stem = stem.trim_start_matches('.');
    let short = &hex(sha)[..12];
    if stem.is_empty() {
        format!("image-{short}")
    } else {
        format!("{stem}-{short}")
    }
}

/// What [`send`] did.
pub struct Sent {
    pub image: ImageInfo,
    /// `false`: dom0 had it already (same SHA-256), nothing was sent.
    pub sent: bool,
}

/// Makes sure dom0 has the file at `path`: as an image with the same
/// content if it has one, else uploaded as `name` (or the default name).
pub fn send(
    client: &mut Client,
    path: &Path,
    name: Option<&str>,
    progress: bool,
) -> Result<Sent, Error> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::Usage(format!("cannot read {}: {e}", path.display())))?;
    if bytes.is_empty() {
        return Err(Error::Usage(format!(
            "{} is empty: nothing to upload",
            path.display()
        )));
    }
    let sha = sha256(&bytes);
    let want = hex(&sha);
    let images = list(client)?;
    // dom0 builds domains from any of them: a boot module, an upload, or
    // an image in its store (where uploads go when it has one).
    if let Some(have) = images.iter().find(|i| {
        matches!(
            i.source,
            ImageSource::Module | ImageSource::Upload | ImageSource::Store
        ) && i.sha256 == want
            && name.is_none_or(|n| n == i.name)
    }) {
        return Ok(Sent {
            image: have.clone(),
            sent: false,
        });
    }
    let name = name.map_or_else(|| default_name(path, &sha), str::to_string);
    client.call(Op::UploadBegin {
        name: name.clone(),
        size: bytes.len() as u64,
        sha256: want,
    })?;
    let mut bar = Bar::new(progress, &name, bytes.len());
    // Chunks in flight (`pipeline.rs`), not one round trip each.
    let ops = bytes
        .chunks(UPLOAD_CHUNK_MAX)
        .scan(0usize, |offset, piece| {
            let op = Op::UploadChunk {
                name: name.clone(),
                offset: *offset as u64,
                data: base64::engine::general_purpose::STANDARD.encode(piece),
            };
            *offset += piece.len();
            Some(Ok((op, piece.len())))
        });
    let r = crate::pipeline::run(client, ops, |n| bar.show(n));
    bar.clear();
    r?;
    match client.call(Op::UploadEnd { name })? {
        Reply::Image { image } => Ok(Sent { image, sent: true }),
        other => Err(Error::Protocol(format!("unexpected reply {other:?}"))),
    }
}

/// A progress line on stderr: `up1 [#####     ] 48% 1.2 MiB/s`.
pub(crate) struct Bar {
    on: bool,
    name: String,
    total: usize,
    start: Instant,
}

impl Bar {
    pub(crate) fn new(on: bool, name: &str, total: usize) -> Self {
        Self {
            on,
            name: name.into(),
            total,
            start: Instant::now(),
        }
    }

    pub(crate) fn show(&mut self, done: usize) {
        if !self.on {
            return;
        }
        let pct = done.saturating_mul(100) / self.total.max(1);
        let filled = pct / 5;
        let secs = self.start.elapsed().as_secs_f64().max(1e-3);
        let rate = done as f64 / secs / f64::from(1 << 20);
        let mut err = std::io::stderr();
        let _ = write!(
            err,
            "\r{} [{}{}] {pct:3}% {rate:.1} MiB/s",
            self.name,
            "#".repeat(filled),
            " ".repeat(20 - filled)
        );
        let _ = err.flush();
    }

    pub(crate) fn clear(&mut self) {
        if self.on {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
            self.on = false;
        }
    }
}

/// Where a configuration value names a local file: the path (relative to
/// `dir`, the configuration's directory), else `None` (an image name).
pub fn local_path(value: &str, dir: &Path) -> Option<PathBuf> {
    if !value.contains('/') {
        return None;
    }
    let p = Path::new(value);
    Some(if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    })
}

/// The configuration `text` with every `image`, `kernel` and `initrd`
/// value that is a local path (see [`local_path`]) replaced by what
/// `resolve` makes of it; each line keeps its place, so dom0's messages
/// name the lines of the file.
pub fn rewrite(
    text: &str,
    dir: &Path,
    mut resolve: impl FnMut(&Path) -> Result<String, Error>,
) -> Result<String, Error> {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        out.push_str(&rewrite_line(line, dir, &mut resolve)?);
    }
    Ok(out)
}

fn rewrite_line(
    line: &str,
    dir: &Path,
    resolve: &mut impl FnMut(&Path) -> Result<String, Error>,
) -> Result<String, Error> {
    let trimmed = line.trim_start();
    let Some(key) = ["image", "kernel", "initrd"]
        .into_iter()
        .find(|k| trimmed.starts_with(k))
    else {
        return Ok(line.into());
    };
    let rest = trimmed[key.len()..].trim_start();
    let Some(value) = rest.strip_prefix('=').map(str::trim_start) else {
        return Ok(line.into());
    };
    let Some(quote) = value.chars().next().filter(|c| *c == '"' || *c == '\'') else {
        return Ok(line.into());
    };
    let Some(len) = value[1..].find(quote) else {
        return Ok(line.into());
    };
    let path_text = &value[1..1 + len];
    // A basic string with escapes is left to dom0 (it names no file here).
    if quote == '"' && path_text.contains('\\') {
        return Ok(line.into());
    }
    let Some(path) = local_path(path_text, dir) else {
        return Ok(line.into());
    };
    let name = resolve(&path)?;
    let at = line.len() - value.len();
    Ok(format!("{}\"{name}\"{}", &line[..at], &value[len + 2..]))
}

/// `hvctl create`: uploads what the configuration names by path, then
/// returns the text to send. Says on stderr what it sent.
pub fn prepare_create(
    client: &mut Client,
    config: &Path,
    text: &str,
    progress: bool,
) -> Result<String, Error> {
    let dir = config.parent().unwrap_or(Path::new("."));
    rewrite(text, dir, |path| {
        if !path.is_file() {
            return Err(Error::Config(format!(
                "{}: {} is not a file here (a value with a '/' is a local path, relative to the \
                 configuration's directory)",
                config.display(),
                path.display()
            )));
        }
        let s = send(client, path, None, progress)?;
        if s.sent && progress {
            eprintln!(
                "uploaded {} as {} ({} bytes)",
                path.display(),
                s.image.name,
                s.image.size
            );
        }
        Ok(s.image.name)
    })
}

/// `hvctl image list` as a table.
pub fn table(images: &[ImageInfo]) -> String {
    let mut out = format!(
        "{:<40} {:>12} {:<7} {:<4} {}\n",
        "NAME", "BYTES", "SOURCE", "ELF", "SHA256"
    );
    for i in images {
        let source = serde_json::to_value(i.source)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        out.push_str(&format!(
            "{:<40} {:>12} {:<7} {:<4} {}\n",
            i.name,
            i.size,
            source,
            if i.elf { "yes" } else { "no" },
            i.sha256
        ));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_are_rewritten_in_place_and_names_left_alone() {
        let text = "[[domain]]\nname = \"a\"\nimage = \"./g/hello\"\n  kernel='/k/vmlinux' # x\n\
                    initrd = \"initrd.cpio\"\nimage = \"we\\\\ird/x\"\n";
        let mut asked = Vec::new();
        let out = rewrite(text, Path::new("/cfg"), |p| {
            asked.push(p.to_path_buf());
            Ok(format!("n{}", asked.len()))
        })
        .unwrap();
        assert_eq!(
            out,
            "[[domain]]\nname = \"a\"\nimage = \"n1\"\n  kernel=\"n2\" # x\n\
             initrd = \"initrd.cpio\"\nimage = \"we\\\\ird/x\"\n"
        );
        assert_eq!(
            asked,
            [PathBuf::from("/cfg/./g/hello"), PathBuf::from("/k/vmlinux")]
        );
    }

    #[test]
    fn default_names_are_the_file_name_and_a_short_hash() {
        let sha = sha256(b"x");
        let n = default_name(Path::new("/a/b/my guest.elf"), &sha);
        assert_eq!(n, format!("my_guest.elf-{}", &hex(&sha)[..12]));
        assert!(kestrel_toolstack::server::upload::check_name(&n).is_ok());
        let n = default_name(Path::new("/a/.hidden"), &sha);
        assert!(kestrel_toolstack::server::upload::check_name(&n).is_ok());
    }
}

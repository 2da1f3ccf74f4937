//! `hvctl volume import|export` and `hvctl image import`: a store object's
//! bytes to and from a local raw or qcow2 file (docs/store.md), over the
//! `import_*` / `export_*` requests (docs/toolstack.md).
//!
//! qcow2 is read and written **here**, on the operator's machine, with
//! the store's own `kestrel_store::qcow2` module (it builds on the host),
//! and dom0 only ever sees the disk's guest-visible bytes. Why here and not
//! in dom0: the reader takes the whole file in memory (`Qcow2::parse`
//! works on a byte slice), which the operator's machine has and dom0's
//! heap does not; a hostile or broken qcow2 file is parsed outside the
//! privileged control domain; and what crosses the network is the same
//! for both formats (zero runs named, not sent, so a sparse qcow2 costs
//! no more than its data). A qcow2 file that cannot be read is refused
//! before anything is sent, with the reader's message naming the problem.
//!
//! Nothing half-made is left: dom0 commits an import only once every byte
//! and the SHA-256 match (and drops it if hvctl goes away); an export is
//! written to `FILE.part` (and, for qcow2, its raw bytes first to
//! `FILE.raw.part`), renamed to FILE only once dom0's SHA-256 of what it
//! read matches what arrived, and removed on any failure.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use clap::ValueEnum;
use kestrel_store::StoreError;
use kestrel_store::qcow2::{self, Qcow2};
use kestrel_toolstack::proto::{ObjectKind, Op, Reply, UPLOAD_CHUNK_MAX, XFER_ZEROS_MAX};
use kestrel_toolstack::server::upload::{Hasher, hex};

use crate::client::Client;
use crate::error::Error;
use crate::output;
use crate::upload::Bar;

/// A local file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The disk's bytes as they are.
    Raw,
    /// QEMU's copy-on-write format (version 2 or 3 read, 3 written).
    Qcow2,
}

impl Format {
    fn word(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Qcow2 => "qcow2",
        }
    }
}

/// Reads `buf.len()` guest-visible bytes at an offset.
type ReadAt<'a> = dyn FnMut(u64, &mut [u8]) -> Result<(), Error> + 'a;

fn io(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::Usage(format!("{}: cannot {what}: {e}", path.display()))
}

/// `hvctl image|volume import NAME FILE [--format]`: what dom0 answered
/// (`image` or `volumes`) and a line for people.
pub fn import(
    client: &mut Client,
    kind: ObjectKind,
    name: &str,
    path: &Path,
    format: Option<Format>,
    progress: bool,
) -> Result<(Reply, String), Error> {
    let file = File::open(path).map_err(|e| io(path, "open it", e))?;
    let len = file
        .metadata()
        .map_err(|e| io(path, "read its size", e))?
        .len();
    let mut magic = [0u8; 4];
    let is_qcow2 = len >= 4 && file.read_exact_at(&mut magic, 0).is_ok() && qcow2::is_qcow2(&magic);
    let format = format.unwrap_or(if is_qcow2 { Format::Qcow2 } else { Format::Raw });
    let sent = match format {
        Format::Raw => {
            let mut read = |at: u64, buf: &mut [u8]| {
                file.read_exact_at(buf, at)
                    .map_err(|e| io(path, "read it", e))
            };
            send(client, kind, name, len, &mut read, progress)?
        }
        Format::Qcow2 => {
            if !is_qcow2 {
                return Err(Error::Usage(format!(
                    "{}: not a qcow2 file (it does not start with the magic QFI\\xfb); \
                     --format raw sends it as it is",
                    path.display()
                )));
            }
            let bytes = std::fs::read(path).map_err(|e| io(path, "read it", e))?;
            let q = Qcow2::parse(&bytes).map_err(|e| {
                Error::Usage(format!(
                    "{}: not imported, nothing sent: {e}",
                    path.display()
                ))
            })?;
            let mut read = |at: u64, buf: &mut [u8]| {
                q.read_at(at, buf)
                    .map_err(|e| Error::Usage(format!("{}: not imported: {e}", path.display())))
            };
            send(client, kind, name, q.size(), &mut read, progress)?
        }
    };
    let line = format!(
        "imported {} ({}, {}) as {} {name}: {} sent, {} of zeros not sent\n",
        path.display(),
        format.word(),
        output::bytes(sent.size),
        kind.as_str(),
        output::bytes(sent.data),
        output::bytes(sent.size - sent.data),
    );
    Ok((sent.reply, line))
}

struct Sent {
    reply: Reply,
    size: u64,
    /// Bytes sent as data (the rest went as zero runs).
    data: u64,
}

/// Hashes the `size` bytes `read` gives, announces them, sends them in
/// order (zero pieces as runs), and ends the import; aborts it on any
/// failure (dom0 drops it by itself when it refuses a piece or the
/// connection goes).
fn send(
    client: &mut Client,
    kind: ObjectKind,
    name: &str,
    size: u64,
    read: &mut ReadAt<'_>,
    progress: bool,
) -> Result<Sent, Error> {
    if size == 0 {
        return Err(Error::Usage(format!(
            "an empty {}: nothing to import",
            kind.as_str()
        )));
    }
    let mut buf = vec![0u8; UPLOAD_CHUNK_MAX];
    let mut h = Hasher::default();
    let mut at = 0u64;
    while at < size {
        let n = (size - at).min(buf.len() as u64) as usize;
        read(at, &mut buf[..n])?;
        h.update(&buf[..n]);
        at += n as u64;
    }
    client.call(Op::ImportBegin {
        kind,
        name: name.into(),
        size,
        sha256: hex(&h.finish()),
    })?;
    let mut bar = Bar::new(progress, name, usize::try_from(size).unwrap_or(usize::MAX));
    let r = pieces(client, name, size, read, &mut buf, &mut bar);
    bar.clear();
    let data = match r {
        Ok(data) => data,
        Err(e) => {
            // Already dropped when dom0 refused a piece; else drop it now.
            let _ = client.call(Op::ImportAbort { name: name.into() });
            return Err(e);
        }
    };
    let reply = client.call(Op::ImportEnd { name: name.into() })?;
    Ok(Sent { reply, size, data })
}

/// Sends the `size` bytes `read` gives as pieces, several in flight
/// (`pipeline.rs`): non-zero 32 KiB pieces as `import_chunk`, runs of
/// all-zero pieces as one `import_zeros` (up to `XFER_ZEROS_MAX`). The
/// bytes sent as data.
fn pieces(
    client: &mut Client,
    name: &str,
    size: u64,
    read: &mut ReadAt<'_>,
    buf: &mut [u8],
    bar: &mut Bar,
) -> Result<u64, Error> {
    let mut data = 0u64;
    let mut at = 0u64;
    let mut zeros = 0u64;
    let mut next: Option<(Op, usize)> = None;
    let zeros_op = |end: u64, length: u64| {
        let op = Op::ImportZeros {
            name: name.into(),
            offset: end - length,
            length,
        };
        (op, usize::try_from(length).unwrap_or(usize::MAX))
    };
    let ops = std::iter::from_fn(|| {
        loop {
            if let Some(op) = next.take() {
                return Some(Ok(op));
            }
            if at >= size {
                let z = std::mem::take(&mut zeros);
                return (z > 0).then(|| Ok(zeros_op(at, z)));
            }
            let n = (size - at).min(buf.len() as u64) as usize;
            let piece = &mut buf[..n];
            if let Err(e) = read(at, piece) {
                at = size;
                zeros = 0;
                return Some(Err(e));
            }
            let start = at;
            at += n as u64;
            if piece.iter().all(|&b| b == 0) {
                let full = zeros + n as u64 > XFER_ZEROS_MAX;
                let z = if full { std::mem::take(&mut zeros) } else { 0 };
                zeros += n as u64;
                if z > 0 {
                    return Some(Ok(zeros_op(start, z)));
                }
                continue;
            }
            data += n as u64;
            let chunk = Op::ImportChunk {
                name: name.into(),
                offset: start,
                data: base64::engine::general_purpose::STANDARD.encode(&*piece),
            };
            let z = std::mem::take(&mut zeros);
            if z > 0 {
                next = Some((chunk, n));
                return Some(Ok(zeros_op(start, z)));
            }
            return Some(Ok((chunk, n)));
        }
    });
    crate::pipeline::run(client, ops, |n| bar.show(n))?;
    Ok(data)
}

/// `hvctl volume export NAME FILE [--format]` (default: qcow2 when FILE
/// ends in `.qcow2`, else raw): dom0's `export` reply and a line.
pub fn export(
    client: &mut Client,
    kind: ObjectKind,
    name: &str,
    path: &Path,
    format: Option<Format>,
    progress: bool,
) -> Result<(Reply, String), Error> {
    let format = format.unwrap_or(
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("qcow2"))
        {
            Format::Qcow2
        } else {
            Format::Raw
        },
    );
    let part = with_suffix(path, ".part");
    let raw = match format {
        Format::Raw => part.clone(),
        Format::Qcow2 => with_suffix(path, ".raw.part"),
    };
    let begun = client.call(Op::ExportBegin {
        kind,
        name: name.into(),
    })?;
    let Reply::Export { size, ref sha256 } = begun else {
        return Err(Error::Protocol(format!("unexpected reply {begun:?}")));
    };
    let r = receive(client, name, size, sha256.as_deref(), &raw, progress).and_then(|data| {
        if format == Format::Qcow2 {
            write_qcow2(&raw, &part, size)?;
        }
        std::fs::rename(&part, path).map_err(|e| io(path, "rename the .part file to it", e))?;
        Ok(data)
    });
    // Whatever happened, no part file stays behind.
    let _ = std::fs::remove_file(&raw);
    let _ = std::fs::remove_file(&part);
    let data = r?;
    let mut line = format!(
        "exported {} {name} to {} ({}, {}): {} received, {} of zeros not sent\n",
        kind.as_str(),
        path.display(),
        format.word(),
        output::bytes(size),
        output::bytes(data),
        output::bytes(size - data),
    );
    if format == Format::Qcow2 && !size.is_multiple_of(QCOW2_SECTOR) {
        let padded = size.next_multiple_of(QCOW2_SECTOR);
        line.push_str(&format!(
            "note: its {size} bytes are padded with zeros to {padded} in the qcow2 file \
             (QEMU reads qcow2 in whole 512-byte sectors)\n"
        ));
    }
    Ok((begun, line))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Receives the export into `raw` (sparse: zero runs are skipped, the
/// file's length set first) and checks dom0's SHA-256, and an image's
/// recorded one, against the bytes that came. Returns the bytes received
/// as data. Aborts the export on a local failure.
fn receive(
    client: &mut Client,
    name: &str,
    size: u64,
    recorded: Option<&str>,
    raw: &Path,
    progress: bool,
) -> Result<u64, Error> {
    let r = receive_into(client, name, size, recorded, raw, progress);
    // dom0 may still be in the middle of it (a local failure, a bad piece):
    // end it, unless the connection is what failed.
    if let Err(e) = &r
        && !matches!(e, Error::Connection(_) | Error::Timeout(_))
    {
        let _ = client.call(Op::ExportAbort { name: name.into() });
    }
    r
}

fn receive_into(
    client: &mut Client,
    name: &str,
    size: u64,
    recorded: Option<&str>,
    raw: &Path,
    progress: bool,
) -> Result<u64, Error> {
    let file = File::create(raw).map_err(|e| io(raw, "create it", e))?;
    file.set_len(size).map_err(|e| io(raw, "set its size", e))?;
    let mut bar = Bar::new(progress, name, usize::try_from(size).unwrap_or(usize::MAX));
    let mut h = Hasher::default();
    let zero = vec![0u8; UPLOAD_CHUNK_MAX];
    let (mut at, mut data) = (0u64, 0u64);
    let last = loop {
        let reply = client.call(Op::ExportNext { name: name.into() });
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                bar.clear();
                return Err(e);
            }
        };
        let Reply::Chunk {
            offset,
            zeros,
            data: text,
            sha256,
        } = reply
        else {
            return Err(Error::Protocol(format!("unexpected reply {reply:?}")));
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&text)
            .map_err(|e| Error::Protocol(format!("export piece is not base64: {e}")))?;
        let end = offset
            .checked_add(zeros)
            .and_then(|e| e.checked_add(bytes.len() as u64));
        if offset != at || end.is_none_or(|e| e > size) {
            return Err(Error::Protocol(format!(
                "export piece at {offset} (+{zeros} zeros, {} bytes) does not follow byte {at} \
                 of {size}",
                bytes.len()
            )));
        }
        let mut left = zeros;
        while left > 0 {
            let n = left.min(zero.len() as u64) as usize;
            h.update(&zero[..n]);
            left -= n as u64;
        }
        at += zeros;
        file.write_all_at(&bytes, at)
            .map_err(|e| io(raw, "write it", e))?;
        h.update(&bytes);
        at += bytes.len() as u64;
        data += bytes.len() as u64;
        bar.show(usize::try_from(at).unwrap_or(usize::MAX));
        if let Some(sha) = sha256 {
            break sha;
        }
    };
    bar.clear();
    let got = hex(&h.finish());
    if at != size || got != last {
        return Err(Error::Protocol(format!(
            "export of {name:?}: {at} of {size} bytes came, SHA-256 {got}; dom0 read {last}: \
             nothing written"
        )));
    }
    if let Some(want) = recorded.filter(|w| *w != got) {
        return Err(Error::Protocol(format!(
            "export of image {name:?}: its bytes hash to {got}, the store recorded {want} \
             (damaged on dom0's disk?): nothing written"
        )));
    }
    file.sync_all().map_err(|e| io(raw, "flush it", e))?;
    Ok(data)
}

/// QEMU reads a qcow2's virtual size in whole 512-byte sectors, rounded
/// down (its qcow2 driver: `total_sectors = size / 512`), so a file of
/// 100,000 bytes would lose its last 160 there: a qcow2 export is padded
/// with zeros to a whole sector. (The raw export keeps the exact size.)
pub const QCOW2_SECTOR: u64 = 512;

/// Writes the raw bytes in `raw` as a qcow2 file `out` (version 3,
/// all-zero clusters left unallocated) of `size` bytes rounded up to
/// [`QCOW2_SECTOR`].
fn write_qcow2(raw: &Path, out: &Path, size: u64) -> Result<(), Error> {
    let size = size.next_multiple_of(QCOW2_SECTOR);
    let src = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(raw)
        .map_err(|e| io(raw, "open it", e))?;
    src.set_len(size).map_err(|e| io(raw, "pad it", e))?;
    let dst = File::create(out).map_err(|e| io(out, "create it", e))?;
    let mut w = BufWriter::new(dst);
    let disk = |e: std::io::Error| StoreError::Disk(e.to_string());
    qcow2::export(
        size,
        |at, buf| src.read_exact_at(buf, at).map_err(disk),
        &mut |bytes| w.write_all(bytes).map_err(disk),
    )
    .map_err(|e| Error::Usage(format!("{}: cannot write qcow2: {e}", out.display())))?;
    let f = w
        .into_inner()
        .map_err(|e| io(out, "write it", e.into_error()))?;
    f.sync_all().map_err(|e| io(out, "flush it", e))
}

//! A `newc` cpio archive writer (what Linux unpacks as an initramfs,
//! `Documentation/driver-api/early-userspace/buffer-format.rst`), so the
//! initramfs needs neither the `cpio` tool nor root for its device node.
//! Every timestamp, owner and inode number is fixed: the same inputs give
//! the same bytes.

/// One archive entry.
pub enum Entry<'a> {
    /// A directory (mode 0755).
    Dir(&'a str),
    /// A regular file with its permission bits.
    File(&'a str, u32, &'a [u8]),
    /// A symbolic link to `target`.
    Symlink(&'a str, &'a str),
    /// A character device node (mode 0600) with major and minor numbers.
    CharDev(&'a str, u32, u32),
}

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

/// Writes `entries` and the trailer as one newc archive.
pub fn newc(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let ino = i as u32 + 1;
        match e {
            Entry::Dir(name) => header(&mut out, ino, S_IFDIR | 0o755, 2, (0, 0), name, b""),
            Entry::File(name, perm, data) => {
                header(&mut out, ino, S_IFREG | perm, 1, (0, 0), name, data)
            }
            Entry::Symlink(name, target) => header(
                &mut out,
                ino,
                S_IFLNK | 0o777,
                1,
                (0, 0),
                name,
                target.as_bytes(),
            ),
            Entry::CharDev(name, major, minor) => header(
                &mut out,
                ino,
                S_IFCHR | 0o600,
                1,
                (*major, *minor),
                name,
                b"",
            ),
        }
    }
    header(&mut out, 0, 0, 1, (0, 0), "TRAILER!!!", b"");
    out
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn header(
    out: &mut Vec<u8>,
    ino: u32,
    mode: u32,
    nlink: u32,
    rdev: (u32, u32),
    name: &str,
    data: &[u8],
) {
    let fields = [
        ino,
        mode,
        0, // uid
        0, // gid
        nlink,
        0, // mtime
        data.len() as u32,
        0, // dev major
        0, // dev minor
        rdev.0,
        rdev.1,
        name.len() as u32 + 1,
        0, // check
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_layout() {
        let a = newc(&[Entry::File("init", 0o755, b"#!/bin/sh\n")]);
        // Header 110 bytes + "init\0" = 115, padded to 116; data 10 -> 12.
        assert_eq!(&a[..6], b"070701");
        assert_eq!(&a[6..14], b"00000001");
        assert_eq!(&a[14..22], b"000081ed");
        assert_eq!(&a[110..115], b"init\0");
        assert_eq!(&a[116..126], b"#!/bin/sh\n");
        let trailer = &a[128..];
        assert_eq!(&trailer[..6], b"070701");
        assert_eq!(&trailer[110..121], b"TRAILER!!!\0");
        assert_eq!(a.len() % 4, 0);
        let dev = newc(&[Entry::CharDev("dev/console", 5, 1)]);
        assert_eq!(&dev[78..86], b"00000005");
        assert_eq!(&dev[86..94], b"00000001");
    }
}

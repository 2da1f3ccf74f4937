//! `hvctl --serial DEVICE`: dom0's management line as a serial device
//! (issue 15: a server whose only channel is serial-over-LAN, e.g. a BMC's
//! SOL redirected to `/dev/ttyS1`, or a pty QEMU gives for its COM2).
//!
//! The device is set to raw mode, 115200 baud, 8 data bits, no parity,
//! 1 stop bit, no flow control (dom0 drives COM2 at 115200 8N1), and then
//! held by the same relay as a unix socket line (`relay.rs`): it is the
//! only reader of the device, so several hvctl processes share it, each a
//! session (`@<session> ...`) of dom0's multiplexed management line. Two
//! readers of one tty would steal each other's bytes. The relay listens in
//! a private directory, not next to the device (`/dev` is not writable).

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// Where the relay for the device `dev` listens: in `$XDG_RUNTIME_DIR`
/// (else the temporary directory) `/kestrel-hvctl-<uid>/`, named after
/// the device's path (`/dev/ttyS1` gives `dev_ttyS1.mux`).
pub fn mux_path(dev: &Path) -> PathBuf {
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(std::env::temp_dir, PathBuf::from);
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let name: String = dev
        .to_string_lossy()
        .trim_start_matches('/')
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    base.join(format!("kestrel-hvctl-{uid}"))
        .join(format!("{name}.mux"))
}

/// Makes the directory of the relay's socket `mux` (mode 0700) and checks
/// it is this user's alone: in a shared temporary directory another user
/// could have made it first and would then see (or stand in for) dom0's
/// management line.
pub fn private_dir(mux: &Path) -> Result<(), Error> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let Some(dir) = mux.parent() else {
        return Ok(());
    };
    let _ = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir);
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| Error::Connection(format!("{}: {e}", dir.display())))?;
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let refuse = || {
        Error::Connection(format!(
            "{}: not a directory of this user's alone (mode 0700): remove it, or set \
             XDG_RUNTIME_DIR to a private directory",
            dir.display()
        ))
    };
    if !meta.is_dir() || meta.uid() != uid {
        return Err(refuse());
    }
    // Ours but open to others (made by an older hvctl, or by hand): close it.
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|_| refuse())?;
    }
    Ok(())
}

/// Opens the serial device `dev` for reading and writing, raw, 115200 8N1.
pub fn open(dev: &Path) -> Result<File, Error> {
    let fail = |what: &str, e: std::io::Error| {
        Error::Connection(format!(
            "cannot use {} as dom0's management line: {what}: {e}",
            dev.display()
        ))
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        // Not our controlling terminal: a hangup must not signal hvctl.
        .custom_flags(libc::O_NOCTTY)
        .open(dev)
        .map_err(|e| fail("open", e))?;
    let fd = file.as_raw_fd();
    // SAFETY: an all-zero termios is a valid value to be filled in by
    // tcgetattr below.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd is open for the life of `file`; `t` is a valid termios.
    if unsafe { libc::tcgetattr(fd, &raw mut t) } != 0 {
        return Err(fail(
            "not a terminal (tcgetattr)",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: `t` is a valid termios from tcgetattr.
    unsafe { libc::cfmakeraw(&raw mut t) };
    // cfmakeraw gives 8 data bits and no parity (termios(3)); one stop
    // bit, no hardware flow control, ignore modem lines, receiver on.
    t.c_cflag &= !(libc::CSTOPB | libc::CRTSCTS);
    t.c_cflag |= libc::CLOCAL | libc::CREAD;
    // Blocking reads of at least one byte, no inter-byte timer.
    t.c_cc[libc::VMIN] = 1;
    t.c_cc[libc::VTIME] = 0;
    // SAFETY: `t` is a valid termios; B115200 is a valid speed.
    if unsafe { libc::cfsetspeed(&raw mut t, libc::B115200) } != 0 {
        return Err(fail("115200 baud", std::io::Error::last_os_error()));
    }
    // SAFETY: fd is open; `t` is a valid termios.
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw const t) } != 0 {
        return Err(fail(
            "raw 115200 8N1 (tcsetattr)",
            std::io::Error::last_os_error(),
        ));
    }
    // Bytes that arrived before this session (another program's, or
    // dom0's replies to a client that died) are not ours.
    // SAFETY: fd is open.
    unsafe { libc::tcflush(fd, libc::TCIFLUSH) };
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mux_path_is_private_and_names_the_device() {
        let p = mux_path(Path::new("/dev/pts/5"));
        assert!(p.ends_with("dev_pts_5.mux"), "{}", p.display());
        assert!(
            p.parent()
                .and_then(Path::file_name)
                .is_some_and(|d| d.to_string_lossy().starts_with("kestrel-hvctl-")),
            "{}",
            p.display()
        );
    }

    #[test]
    fn the_relay_directory_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let base = std::env::temp_dir().join(format!("hvctl-priv-{}", std::process::id()));
        let mux = base.join("d").join("x.mux");
        assert!(private_dir(&mux).is_ok());
        let d = base.join("d");
        let mode = |p: &Path| {
            std::fs::metadata(p)
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or(0)
        };
        assert_eq!(mode(&d), 0o700);
        // Ours but open to others: closed again.
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(private_dir(&mux).is_ok());
        assert_eq!(mode(&d), 0o700);
        // Not a directory: refused by name.
        let f = base.join("file");
        std::fs::write(&f, b"").unwrap_or_else(|e| panic!("{e}"));
        let e = private_dir(&f.join("x.mux"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        let _ = std::fs::remove_dir_all(&base);
        assert!(e.contains("this user's alone"), "{e}");
    }

    #[test]
    fn a_file_that_is_not_a_terminal_is_refused_by_name() {
        let f = std::env::temp_dir().join(format!("hvctl-serial-test-{}", std::process::id()));
        std::fs::write(&f, b"").unwrap_or_else(|e| panic!("{e}"));
        let e = open(&f).err().map(|e| e.to_string()).unwrap_or_default();
        let _ = std::fs::remove_file(&f);
        assert!(
            e.contains(&f.display().to_string()) && e.contains("not a terminal"),
            "{e}"
        );
    }

    #[test]
    fn a_pty_is_set_raw_115200_8n1() {
        // SAFETY: posix_openpt with valid flags; the fd is checked.
        let master = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY) };
        assert!(master >= 0, "posix_openpt");
        // SAFETY: master is an open pty master.
        assert_eq!(unsafe { libc::grantpt(master) }, 0);
        // SAFETY: as above.
        assert_eq!(unsafe { libc::unlockpt(master) }, 0);
        let mut name = [0 as libc::c_char; 128];
        // SAFETY: name is a writable buffer of the length given.
        let r = unsafe { libc::ptsname_r(master, name.as_mut_ptr(), name.len()) };
        assert_eq!(r, 0);
        // SAFETY: ptsname_r wrote a NUL-terminated string into name.
        let slave = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        let f = open(Path::new(&slave)).unwrap_or_else(|e| panic!("{e}"));
        // SAFETY: zeroed termios filled by tcgetattr.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: f is open; t is valid.
        assert_eq!(unsafe { libc::tcgetattr(f.as_raw_fd(), &raw mut t) }, 0);
        // SAFETY: t is a valid termios.
        let (ispeed, ospeed) = unsafe { (libc::cfgetispeed(&t), libc::cfgetospeed(&t)) };
        assert_eq!((ispeed, ospeed), (libc::B115200, libc::B115200));
        assert_eq!(t.c_cflag & libc::CSIZE, libc::CS8);
        assert_eq!(t.c_cflag & (libc::PARENB | libc::CSTOPB), 0);
        assert_eq!(t.c_lflag & (libc::ICANON | libc::ECHO | libc::ISIG), 0);
        drop(f);
        // SAFETY: master is open and ours.
        unsafe { libc::close(master) };
    }
}

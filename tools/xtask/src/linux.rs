//! `cargo xtask linux`: the Kestrel guest kernel and its initramfs, built
//! from installed Debian packages only (no network).
//!
//! 1. Unpacks `/usr/src/linux-source-6.1.tar.xz` (package `linux-source-6.1`).
//! 2. Applies `guest-kernel-patches/series` in order with
//!    `patch -p1 --fuzz=0`: a rejected hunk fails the build, naming the patch.
//! 3. `make tinyconfig`, merges `guest-kernel-patches/kestrel.config`,
//!    `make olddefconfig`, and fails when a requested symbol did not stick.
//! 4. `make -j$(nproc) vmlinux` under `nice`.
//!
//! The `vmlinux` is cached outside the clone, in
//! `$KESTREL_CACHE_DIR` (default `$XDG_CACHE_HOME/kestrel` or
//! `~/.cache/kestrel`) `/linux/<key>/vmlinux`, keyed by the source package's
//! version, the series and every patch's bytes, the config fragment and
//! [`RECIPE`]; a hit costs nothing. The initramfs (`busybox-static` plus
//! `guest-kernel-patches/initramfs/init`, a newc cpio) is rebuilt every
//! time: it takes milliseconds and its inputs are small.
//!
//! `KESTREL_VMLINUX=/path/to/vmlinux` skips all of this and uses that
//! kernel: for developing the patches in a build tree of one's own
//! (`make vmlinux` there is incremental; a changed patch is a cold build
//! here). Never set in CI: it tests whatever that file is.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::bail;
use crate::cpio::{self, Entry};
use crate::error::{Context, Result};
use crate::paths;

/// Bump when the steps below change what they produce.
const RECIPE: &str = "kestrel-linux-recipe-1";
/// The Debian package with the kernel source, and its tarball.
pub const SOURCE_PACKAGE: &str = "linux-source-6.1";
const SOURCE_TARBALL: &str = "/usr/src/linux-source-6.1.tar.xz";
/// The directory the tarball unpacks into.
const SOURCE_DIR: &str = "linux-source-6.1";
/// `busybox-static`'s binary.
const BUSYBOX: &str = "/bin/busybox";

/// What `cargo xtask linux` produces.
#[derive(Debug, Clone)]
pub struct LinuxImages {
    /// The uncompressed kernel, loaded by `p_paddr` through the 64-bit boot
    /// protocol.
    pub vmlinux: PathBuf,
    /// The initramfs (newc cpio, uncompressed).
    pub initramfs: PathBuf,
}

/// `guest-kernel-patches/` in this repository.
pub fn patches_dir() -> PathBuf {
    paths::repo_root().join("guest-kernel-patches")
}

/// Where built kernels are cached (outside the clone, shared by clones).
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("KESTREL_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("kestrel")
}

/// The kernel (from the cache, or built now) and a fresh initramfs.
pub fn build() -> Result<LinuxImages> {
    let vmlinux = vmlinux()?;
    let initramfs = initramfs()?;
    Ok(LinuxImages { vmlinux, initramfs })
}

/// The patches named by `series`, in order (blank lines and `#` comments
/// skipped).
pub fn series() -> Result<Vec<PathBuf>> {
    let dir = patches_dir();
    let text = fs::read_to_string(dir.join("series"))
        .context(|| format!("reading {}", dir.join("series").display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| dir.join(l))
        .collect())
}

fn source_version() -> Result<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", SOURCE_PACKAGE])
        .output()
        .context(|| "running dpkg-query".to_string())?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || v.is_empty() || !Path::new(SOURCE_TARBALL).is_file() {
        bail!(
            "{SOURCE_TARBALL} is missing: install the kernel source with \
             `apt-get install -y {SOURCE_PACKAGE} busybox-static flex bison bc libelf-dev`"
        );
    }
    Ok(v)
}

/// SHA-256 (through coreutils' `sha256sum`) of the key material.
fn cache_key(version: &str, patches: &[PathBuf]) -> Result<String> {
    let mut material = Vec::new();
    for part in [RECIPE, version] {
        material.extend_from_slice(part.as_bytes());
        material.push(0);
    }
    let dir = patches_dir();
    for p in std::iter::once(dir.join("series"))
        .chain(patches.iter().cloned())
        .chain(std::iter::once(dir.join("kestrel.config")))
    {
        let bytes = fs::read(&p).context(|| format!("reading {}", p.display()))?;
        material.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        material.extend_from_slice(&bytes);
    }
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context(|| "running sha256sum".to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin
            .write_all(&material)
            .context(|| "feeding sha256sum".to_string())?;
    }
    let out = child
        .wait_with_output()
        .context(|| "running sha256sum".to_string())?;
    let hex = String::from_utf8_lossy(&out.stdout);
    match hex.split_whitespace().next() {
        Some(h) if out.status.success() && h.len() == 64 => Ok(h[..16].to_string()),
        _ => bail!("sha256sum gave no digest"),
    }
}

/// The cached `vmlinux`, built first if this key has none.
pub fn vmlinux() -> Result<PathBuf> {
    if let Some(v) = std::env::var_os("KESTREL_VMLINUX").filter(|v| !v.is_empty()) {
        let v = PathBuf::from(v);
        if !v.is_file() {
            bail!("KESTREL_VMLINUX={}: no such file", v.display());
        }
        println!(
            "kestrel: Linux from KESTREL_VMLINUX, not built from the series: {}",
            v.display()
        );
        return Ok(v);
    }
    let version = source_version()?;
    let patches = series()?;
    let key = cache_key(&version, &patches)?;
    let dir = cache_dir().join("linux").join(&key);
    let out = dir.join("vmlinux");
    // One build per key at a time, across processes and threads (`cargo
    // xtask test` starts one in the background while the boot tests may ask
    // for it from two threads): the others wait here, then find it cached.
    // A cached kernel needs no lock (nor a writable cache directory).
    let _lock = if out.is_file() {
        None
    } else {
        Some(build_lock(&key)?)
    };
    if out.is_file() {
        println!(
            "kestrel: Linux {version} with the Kestrel series, cached: {}",
            out.display()
        );
        return Ok(out);
    }
    println!(
        "kestrel: building Linux from {SOURCE_PACKAGE} {version} with {} patch(es) (cache key {key}); \
         a cold build takes a few minutes",
        patches.len()
    );
    let started = Instant::now();
    let work = cache_dir().join("linux").join(format!("{key}.build"));
    if work.exists() {
        fs::remove_dir_all(&work).context(|| format!("removing {}", work.display()))?;
    }
    fs::create_dir_all(&work).context(|| format!("creating {}", work.display()))?;
    run(
        Command::new("nice")
            .args(["-n", "10", "tar", "-xf", SOURCE_TARBALL, "-C"])
            .arg(&work),
        "unpacking the kernel source",
    )?;
    let src = work.join(SOURCE_DIR);
    for p in &patches {
        apply(&src, p, &version)?;
    }
    configure(&src)?;
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    run(
        Command::new("nice")
            .args(["-n", "10", "make", "-s", "ARCH=x86_64"])
            .arg(format!("-j{jobs}"))
            .arg("vmlinux")
            .current_dir(&src),
        "building vmlinux (make vmlinux)",
    )?;
    fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join("vmlinux.tmp");
    fs::copy(src.join("vmlinux"), &tmp).context(|| "copying vmlinux into the cache".to_string())?;
    fs::copy(src.join(".config"), dir.join("config"))
        .context(|| "copying .config into the cache".to_string())?;
    fs::rename(&tmp, &out).context(|| format!("renaming into {}", out.display()))?;
    fs::remove_dir_all(&work).context(|| format!("removing {}", work.display()))?;
    println!(
        "kestrel: built {} in {:.0} s (wall)",
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(out)
}

/// Holds the build of `key` (an `flock` on `<cache>/linux/<key>.lock`,
/// let go when the file is dropped), waiting for a build in flight.
fn build_lock(key: &str) -> Result<fs::File> {
    let linux_dir = cache_dir().join("linux");
    fs::create_dir_all(&linux_dir).context(|| format!("creating {}", linux_dir.display()))?;
    let lock_path = linux_dir.join(format!("{key}.lock"));
    let lock =
        fs::File::create(&lock_path).context(|| format!("creating {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        println!(
            "kestrel: waiting for the Linux build that holds {} (another process or thread builds this key)",
            lock_path.display()
        );
        lock.lock()
            .context(|| format!("locking {}", lock_path.display()))?;
    }
    Ok(lock)
}

/// Applies one patch exactly: no fuzz, no reversed guess, no prompts.
fn apply(src: &Path, patch: &Path, version: &str) -> Result<()> {
    let out = Command::new("patch")
        .args([
            "-p1",
            "--fuzz=0",
            "--forward",
            "--batch",
            "--no-backup-if-mismatch",
            "-i",
        ])
        .arg(patch)
        .current_dir(src)
        .output()
        .context(|| format!("running patch for {}", patch.display()))?;
    if !out.status.success() {
        bail!(
            "patch {} does not apply to {SOURCE_PACKAGE} {version} (a rejected hunk; \
             refresh it, see guest-kernel-patches/README.md):\n{}{}",
            patch.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// One line of the fragment: `CONFIG_X=v` or `# CONFIG_X is not set`.
#[derive(Debug, PartialEq, Eq)]
pub enum Want {
    /// The symbol must be set to this value.
    Set(String, String),
    /// The symbol must be off.
    Unset(String),
}

/// Parses a config fragment; other lines (comments) are skipped.
pub fn parse_fragment(text: &str) -> Vec<Want> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if let Some(rest) = l.strip_prefix("# CONFIG_") {
                let sym = rest.strip_suffix(" is not set")?;
                Some(Want::Unset(format!("CONFIG_{sym}")))
            } else if l.starts_with("CONFIG_") {
                let (k, v) = l.split_once('=')?;
                Some(Want::Set(k.to_string(), v.to_string()))
            } else {
                None
            }
        })
        .collect()
}

/// The requested symbols that a final `.config` does not have as asked.
pub fn unmet(wants: &[Want], config: &str) -> Vec<String> {
    let has = |line: &str| config.lines().any(|l| l.trim() == line);
    let set_prefix = |sym: &str| {
        let p = format!("{sym}=");
        config.lines().any(|l| l.starts_with(&p))
    };
    wants
        .iter()
        .filter_map(|w| match w {
            Want::Set(k, v) if !has(&format!("{k}={v}")) => Some(format!("{k}={v}")),
            Want::Unset(k) if set_prefix(k) => Some(format!("{k} off")),
            _ => None,
        })
        .collect()
}

fn configure(src: &Path) -> Result<()> {
    let fragment = patches_dir().join("kestrel.config");
    run(
        Command::new("make")
            .args(["-s", "ARCH=x86_64", "tinyconfig"])
            .current_dir(src),
        "make tinyconfig",
    )?;
    // merge_config.sh reports every symbol it overrides: show that only
    // when it fails.
    let merged = Command::new("./scripts/kconfig/merge_config.sh")
        .args(["-m", ".config"])
        .arg(&fragment)
        .current_dir(src)
        .output()
        .context(|| "merging guest-kernel-patches/kestrel.config: cannot start".to_string())?;
    if !merged.status.success() {
        bail!(
            "merging guest-kernel-patches/kestrel.config failed ({}):\n{}{}",
            merged.status,
            String::from_utf8_lossy(&merged.stdout),
            String::from_utf8_lossy(&merged.stderr)
        );
    }
    run(
        Command::new("make")
            .args(["-s", "ARCH=x86_64", "olddefconfig"])
            .current_dir(src),
        "make olddefconfig",
    )?;
    let wants = parse_fragment(
        &fs::read_to_string(&fragment).context(|| format!("reading {}", fragment.display()))?,
    );
    let config =
        fs::read_to_string(src.join(".config")).context(|| "reading .config".to_string())?;
    let missing = unmet(&wants, &config);
    if !missing.is_empty() {
        bail!(
            "requested kernel config did not stick (a dependency is missing or a patch \
             did not add the symbol): {}",
            missing.join(", ")
        );
    }
    Ok(())
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd.status().context(|| format!("{what}: cannot start"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// The test initramfs: busybox, `/init`, and the directories and
/// `/dev/console` node the kernel needs before `/init` runs.
pub fn initramfs() -> Result<PathBuf> {
    let busybox = fs::read(BUSYBOX).context(|| {
        format!("reading {BUSYBOX} (install it with `apt-get install -y busybox-static`)")
    })?;
    let init_path = patches_dir().join("initramfs").join("init");
    let init = fs::read(&init_path).context(|| format!("reading {}", init_path.display()))?;
    let archive = cpio::newc(&[
        Entry::Dir("bin"),
        Entry::Dir("dev"),
        Entry::Dir("proc"),
        Entry::Dir("sys"),
        Entry::Dir("tmp"),
        Entry::CharDev("dev/console", 5, 1),
        Entry::File("bin/busybox", 0o755, &busybox),
        Entry::Symlink("bin/sh", "busybox"),
        Entry::File("init", 0o755, &init),
    ]);
    let dir = paths::target_dir().join("linux");
    fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
    let out = dir.join("initramfs.cpio");
    // Written aside and renamed: two threads (or processes) building it at
    // once must never let a reader see a half-written archive.
    let tmp = dir.join(format!(
        "initramfs.cpio.{}.{:?}.tmp",
        std::process::id(),
        std::thread::current().id()
    ));
    fs::write(&tmp, archive).context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, &out).context(|| format!("renaming into {}", out.display()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_symbols_are_checked() {
        let wants =
            parse_fragment("# comment\nCONFIG_A=y\nCONFIG_N=16\n# CONFIG_B is not set\nnoise\n");
        assert_eq!(
            wants,
            [
                Want::Set("CONFIG_A".into(), "y".into()),
                Want::Set("CONFIG_N".into(), "16".into()),
                Want::Unset("CONFIG_B".into()),
            ]
        );
        assert!(unmet(&wants, "CONFIG_A=y\nCONFIG_N=16\n# CONFIG_B is not set\n").is_empty());
        assert_eq!(
            unmet(&wants, "CONFIG_N=8\nCONFIG_B=y\n"),
            ["CONFIG_A=y", "CONFIG_N=16", "CONFIG_B off"]
        );
    }
}

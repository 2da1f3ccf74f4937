//! The Linux side of the disk bench (tools/xtask/src/diskbench.rs):
//! Debian's kernel from the cache, `diskload`, and the initramfs that
//! loads the drivers and runs it.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use xtask::bail;
use xtask::cpio::{self, Entry};
use xtask::error::{Context, Result};
use xtask::paths;

use crate::diskbench::{DISKS, MIB, OPS};

/// Modules for the Linux side, dependencies first (`modinfo -F depends`
/// on Debian's 6.1 package): virtio over PCI and virtio-blk, then NVMe,
/// whose core needs T10 PI and its CRCs.
const MODULES: &[&str] = &[
    "drivers/virtio/virtio_ring",
    "drivers/virtio/virtio",
    "drivers/virtio/virtio_pci_modern_dev",
    "drivers/virtio/virtio_pci_legacy_dev",
    "drivers/virtio/virtio_pci",
    "drivers/block/virtio_blk",
    "crypto/crct10dif_common",
    "crypto/crct10dif_generic",
    "lib/crc-t10dif",
    "lib/crc64",
    "crypto/crc64_rocksoft_generic",
    "lib/crc64-rocksoft",
    "block/t10-pi",
    "drivers/nvme/host/nvme-core",
    "drivers/nvme/host/nvme",
];

/// Debian's kernel, unpacked in the cache: `(vmlinuz, modules dir,
/// version)`; or what to run to get it.
pub fn linux() -> Result<(PathBuf, PathBuf, String)> {
    let cache = xtask::linux::cache_dir().join("diskbench");
    let found = fs::read_dir(&cache).ok().and_then(|d| {
        d.filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with("linux-image-6.1.0-") && !n.ends_with(".deb"))
            .max()
    });
    let Some(pkg) = found else {
        bail!(
            "the Linux baseline needs Debian's kernel package unpacked in {c} (no install): run\n  \
             mkdir -p {c} && cd {c} && P=$(apt-cache depends linux-image-amd64 | grep -o 'linux-image-6[^ ]*-amd64' | head -1) && \
             apt-get download $P && dpkg-deb -x $P_*.deb $P",
            c = cache.display()
        );
    };
    let version = pkg.trim_start_matches("linux-image-").to_string();
    let root = cache.join(&pkg);
    let vmlinuz = root.join("boot").join(format!("vmlinuz-{version}"));
    let mods = root.join("lib/modules").join(&version).join("kernel");
    if !vmlinuz.is_file() || !mods.is_dir() {
        bail!(
            "{}: no boot/vmlinuz-{version} or lib/modules/{version}: unpack the .deb again with dpkg-deb -x",
            root.display()
        );
    }
    Ok((vmlinuz, mods, pkg))
}

/// `diskload`, static, built with the toolchain's rustc.
fn diskload(dir: &Path) -> Result<PathBuf> {
    let src = paths::repo_root().join("tools/xtask/diskload/diskload.rs");
    let out = dir.join("diskload");
    let status = Command::new("rustc")
        .args([
            "--edition",
            "2021",
            "-O",
            "-C",
            "target-feature=+crt-static",
        ])
        .arg("--target")
        .arg("x86_64-unknown-linux-gnu")
        .arg(&src)
        .arg("-o")
        .arg(&out)
        .status()
        .context(|| "starting rustc for diskload".into())?;
    if !status.success() {
        bail!("building {} failed ({status})", src.display());
    }
    Ok(out)
}

/// The initramfs: busybox, the modules, `diskload` and `/init`.
pub fn initramfs(dir: &Path, mods: &Path) -> Result<PathBuf> {
    let busybox = fs::read("/bin/busybox").context(|| {
        "reading /bin/busybox (install it with `apt-get install -y busybox-static`)".into()
    })?;
    let load = fs::read(diskload(dir)?).context(|| "reading diskload".into())?;
    let mut init = String::from(
        "#!/bin/busybox sh\n/bin/busybox --install -s /bin\nmount -t proc proc /proc\n\
         mount -t sysfs sys /sys\nmount -t devtmpfs dev /dev\n",
    );
    let mut files = Vec::new();
    for m in MODULES {
        let p = mods.join(format!("{m}.ko"));
        let data = fs::read(&p).context(|| format!("reading module {}", p.display()))?;
        let name = m.rsplit('/').next().unwrap_or(m);
        let _ = writeln!(
            init,
            "insmod /lib/{name}.ko || echo \"diskbench: insmod {name} failed\""
        );
        files.push((format!("lib/{name}.ko"), data));
    }
    for (_, dev, _) in DISKS {
        // The devices appear as the drivers probe (asynchronously).
        let _ = writeln!(
            init,
            "n=0; while [ ! -b {dev} ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done\n\
             /bin/diskload {dev} {MIB} {OPS} || echo \"diskbench: {dev} FAILED\""
        );
    }
    init.push_str("echo diskbench: done\npoweroff -f\n");
    let mut entries = vec![
        Entry::Dir("bin"),
        Entry::Dir("dev"),
        Entry::Dir("proc"),
        Entry::Dir("sys"),
        Entry::Dir("lib"),
        Entry::CharDev("dev/console", 5, 1),
        Entry::File("bin/busybox", 0o755, &busybox),
        Entry::File("bin/diskload", 0o755, &load),
        Entry::File("init", 0o755, init.as_bytes()),
    ];
    for (n, d) in &files {
        entries.push(Entry::File(n, 0o644, d));
    }
    let out = dir.join("initramfs.cpio");
    fs::write(&out, cpio::newc(&entries)).context(|| format!("writing {}", out.display()))?;
    Ok(out)
}

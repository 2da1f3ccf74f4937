//! dom0's disk throughput against Linux on the same devices (issue 14):
//! `cargo xtask bench --only disk`.
//!
//! Two machines, with the same QEMU flags (`crate::isoboot::ICOUNT7_ARGS`:
//! TCG, `-icount shift=7,align=off,sleep=off`, one CPU, 128 MiB, q35,
//! `intel-iommu`) and the same two disks (a virtio-blk, `iommu_platform=on`,
//! and an NVMe, each a [`DISK_MIB`] MiB QEMU `null-co` drive with
//! `read-zeroes=on`):
//!
//! - Kestrel: the GRUB ISO with dom0 alone and `diskbench=<MiB>+<ops>` on
//!   its command line (dom0/src/dev/diskbench.rs): dom0's own drivers, on
//!   their interrupts, behind the IOMMU, through the block interface the
//!   store uses; what is measured is the driver and what each request
//!   costs under it (exits, the device model), not a guest's hypercall
//!   path (no domain but dom0 runs).
//! - Linux: Debian's `linux-image-6.1.0-*-amd64` booted by QEMU `-kernel`
//!   with a busybox-static initramfs that `insmod`s virtio_pci, virtio_blk
//!   and nvme (and what they need) from the package (its modules are not
//!   compressed) and runs `diskload` (tools/xtask/diskload/diskload.rs) on
//!   `/dev/vda` and `/dev/nvme0n1`: the same workloads with O_DIRECT,
//!   queue depth 1, timed with CLOCK_MONOTONIC.
//!
//! Why `null-co` and not raw files: under `sleep=off` a CPU that halts
//! waiting for the disk has its clock moved to the next timer deadline as
//! soon as QEMU's main loop finds it idle, so whether a request costs
//! nothing or a whole timer period depends on whether the host finished
//! it first: with raw files (QEMU's thread pool) two identical Linux runs
//! differed 57-fold on random reads (1.05 s and 57.8 s for 256 reads).
//! `null-co` completes every request at once in QEMU's main loop, so the
//! same runs agree within about 15% (measured: 0.90 and 1.02 s). It
//! stores nothing: reads return zeros, writes are dropped, so what is
//! measured is the guest's side (driver, interrupts, exits, the device
//! model), not a host disk. The race is still there, smaller: whether the
//! main loop ran the completion before the guest halted depends on the
//! host's load (dom0's 256 random virtio-blk reads took 1.35 s of system
//! time with 256 sleeps on a loaded host, 0.31 s with 20 on a quieter
//! one). So these are not exact counts: [`run`] runs both sides twice and
//! the table shows both ratios.
//!
//! Workloads: sequential writes then reads of [`MIB`] requests of 1 MiB,
//! random 4 KiB writes then reads, [`OPS`] of each, at the same offsets on
//! both sides. Times are system time under `-icount`: instructions x 128 ns
//! while the CPU runs, and a jump to the next timer while it halts
//! (`sleep=off`, `crate::isoboot`). The kernel package is never installed
//! and never downloaded by the xtask: [`linux`] says what to run when it is
//! missing. Not part of ./test.sh.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use xtask::bail;
use xtask::cpio::{self, Entry};
use xtask::error::{Context, Result};
use xtask::qemu::{Accel, Boot, Vm};
use xtask::{paths, runner, serial, tools};

use crate::isoboot::{self, Backend, Machine, module};

/// The section of docs/benchmarks.md.
pub const HEADING: &str = "## Disk throughput";
/// Sequential requests of 1 MiB per workload.
pub const MIB: u64 = 16;
/// Random 4 KiB requests per workload.
pub const OPS: u64 = 256;
/// Size of each disk.
const DISK_MIB: u64 = 64;
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
/// The disks: dom0's PCI address, Linux's device, the label.
const DISKS: &[(&str, &str, &str)] = &[
    ("0000:00:03.0", "/dev/vda", "virtio-blk"),
    ("0000:00:05.0", "/dev/nvme0n1", "nvme"),
];
const WORKLOADS: &[&str] = &["seq-write", "seq-read", "rand-write", "rand-read"];

/// One workload's figures: requests, bytes, system-time ns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Figure {
    pub ops: u64,
    pub bytes: u64,
    pub ns: u64,
}

impl Figure {
    fn mib_s(&self) -> f64 {
        self.bytes as f64 / (1 << 20) as f64 / (self.ns.max(1) as f64 / 1e9)
    }
    fn iops(&self) -> f64 {
        self.ops as f64 / (self.ns.max(1) as f64 / 1e9)
    }
}

/// `(disk label, workload)` -> figure.
pub type Figures = BTreeMap<(String, String), Figure>;

/// Both sides, and how they were run.
#[derive(Debug)]
pub struct Results {
    pub kestrel: Figures,
    pub linux: Figures,
    /// The same two runs again: `(dom0, Linux)`.
    pub again: (Figures, Figures),
    pub kestrel_cmd: String,
    pub linux_cmd: String,
    pub kernel: String,
}

/// `diskbench <disk> <kind> <workload> ops=N bytes=B ns=T ...` (dom0's
/// lines carry a `dom0: ` prefix): `(disk, workload, figure)`.
fn parse(line: &str) -> Option<(String, String, Figure)> {
    let rest = line.split_once("diskbench ")?.1;
    let mut w = rest.split_whitespace();
    let (disk, _kind, workload) = (w.next()?, w.next()?, w.next()?);
    let mut field = |k: &str| -> Option<u64> { w.next()?.strip_prefix(k)?.parse().ok() };
    let f = Figure {
        ops: field("ops=")?,
        bytes: field("bytes=")?,
        ns: field("ns=")?,
    };
    let label = DISKS.iter().find(|d| d.0 == disk || d.1 == disk)?.2;
    Some((label.into(), workload.into(), f))
}

fn figures(lines: &[String], who: &str, log: &Path) -> Result<Figures> {
    let all: Figures = lines
        .iter()
        .filter_map(|l| parse(l))
        .map(|(d, w, f)| ((d, w), f))
        .collect();
    for (_, _, d) in DISKS {
        for w in WORKLOADS {
            if !all.contains_key(&(d.to_string(), w.to_string())) {
                bail!(
                    "{who}: no `{w}` figure for {d} in {}:\n{}",
                    log.display(),
                    lines.join("\n")
                );
            }
        }
    }
    Ok(all)
}

/// The two disks' QEMU arguments: `null-co` drives (module doc).
fn devices() -> Vec<String> {
    let mut a: Vec<String> = vec!["-device".into(), "intel-iommu".into()];
    for (name, dev) in [
        (
            "blk",
            "virtio-blk-pci,drive=blk,addr=0x3,disable-legacy=on,iommu_platform=on,serial=kestrel-blk0",
        ),
        ("nvme", "nvme,drive=nvme,serial=kestrel0,addr=0x5"),
    ] {
        a.extend([
            "-drive".into(),
            format!("if=none,id={name},driver=null-co,size={DISK_MIB}M,read-zeroes=on"),
            "-device".into(),
            dev.into(),
        ]);
    }
    a
}

/// Debian's kernel, unpacked in the cache: `(vmlinuz, modules dir,
/// version)`; or what to run to get it.
fn linux() -> Result<(PathBuf, PathBuf, String)> {
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
fn initramfs(dir: &Path, mods: &Path) -> Result<PathBuf> {
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

fn kestrel(kernel: &Path, dir: &Path) -> Result<(Figures, String)> {
    let m = Machine {
        cpus: 1,
        extra: devices(),
        ..Machine::default()
    };
    let modules = vec![module("dom0", "dom0", &format!("diskbench={MIB}+{OPS}"))?];
    let b = isoboot::boot_on(Backend::Svm, &m, kernel, "dom0", modules, dir)?;
    let log = dir.join("serial.log");
    if let Some(l) = b.lines.iter().find(|l| l.contains("completions polled")) {
        bail!("dom0 polled a disk, the bench measures the interrupt path: {l}");
    }
    Ok((figures(&b.lines, "Kestrel dom0", &log)?, b.command))
}

fn native(dir: &Path) -> Result<(Figures, String, String)> {
    let (vmlinuz, mods, pkg) = linux()?;
    fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    let initrd = initramfs(dir, &mods)?;
    let log = dir.join("serial.log");
    let _ = fs::remove_file(&log);
    let mut vm = Vm::new(
        Accel::Tcg,
        1,
        "128M",
        Boot::Pvh {
            kernel: vmlinuz,
            cmdline: "console=ttyS0 panic=-1".into(),
            initrd: Some(initrd),
        },
        format!("file:{}", log.display()),
    );
    vm.extra = isoboot::ICOUNT7_ARGS.iter().map(Into::into).collect();
    vm.extra.extend(devices().into_iter().map(Into::into));
    let qemu_log = dir.join("qemu.log");
    let f = fs::File::create(&qemu_log).context(|| format!("creating {}", qemu_log.display()))?;
    let mut cmd = Command::new(tools::QEMU.program);
    cmd.args(vm.args())
        .stdout(f.try_clone().context(|| "qemu log".into())?)
        .stderr(f);
    runner::run_with_timeout(&mut cmd, Duration::from_secs(300))?;
    let lines = serial::lines(&fs::read(&log).unwrap_or_default());
    if let Some(l) = lines
        .iter()
        .find(|l| l.contains("diskbench: ") && l.contains("fail"))
    {
        bail!("Linux: {l} (serial log {})", log.display());
    }
    let root = paths::repo_root().display().to_string();
    let home = std::env::var("HOME").unwrap_or_default();
    let mut shown = vm.display().replace(&root, ".");
    if !home.is_empty() {
        shown = shown.replace(&home, "~");
    }
    Ok((figures(&lines, "Linux", &log)?, shown, pkg))
}

/// Both sides (module doc).
pub fn run(kernel: &Path, out_dir: &Path) -> Result<Results> {
    // The Linux side first: if its kernel is missing, say so before the
    // longer Kestrel run.
    let (linux, linux_cmd, kernel_pkg) = native(&out_dir.join("disk-linux"))?;
    let (kestrel, kestrel_cmd) = self::kestrel(kernel, &out_dir.join("disk-kestrel"))?;
    // Again: the figures are not exact counts (module doc), so the table
    // shows how far a second run moves the ratio.
    let (linux2, _, _) = native(&out_dir.join("disk-linux-again"))?;
    let (kestrel2, _) = self::kestrel(kernel, &out_dir.join("disk-kestrel-again"))?;
    let r = Results {
        kestrel,
        linux,
        again: (kestrel2, linux2),
        kestrel_cmd,
        linux_cmd,
        kernel: kernel_pkg,
    };
    print!("{}", table(&r));
    Ok(r)
}

fn table(r: &Results) -> String {
    let mut s = String::from(
        "| disk | workload | dom0 MiB/s | dom0 IOPS | Linux MiB/s | Linux IOPS | dom0 / Linux | same, 2nd run |\n\
         |---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for (_, _, d) in DISKS {
        for w in WORKLOADS {
            let k = (d.to_string(), w.to_string());
            let (Some(a), Some(b)) = (r.kestrel.get(&k), r.linux.get(&k)) else {
                continue;
            };
            let again = match (r.again.0.get(&k), r.again.1.get(&k)) {
                (Some(a2), Some(b2)) => format!("{:.2}", b2.ns as f64 / a2.ns.max(1) as f64),
                _ => "-".into(),
            };
            let _ = writeln!(
                s,
                "| {d} | {w} | {:.1} | {:.0} | {:.1} | {:.0} | {:.2} | {again} |",
                a.mib_s(),
                a.iops(),
                b.mib_s(),
                b.iops(),
                b.ns as f64 / a.ns.max(1) as f64
            );
        }
    }
    s
}

/// The section for docs/benchmarks.md.
pub fn section(r: &Results) -> String {
    let mut s = format!("{HEADING}\n\n");
    let _ = write!(
        s,
        "Written by `cargo xtask bench --only disk` (tools/xtask/src/diskbench.rs). Each \
         workload runs one request at a time: {MIB} sequential 1 MiB writes, then reads, \
         from offset 0; {OPS} random 4 KiB writes, then reads, at the same 4 KiB-aligned \
         offsets (xorshift64) in those {MIB} MiB. **dom0**: dom0 alone with \
         `diskbench={MIB}+{OPS}` (dom0/src/dev/diskbench.rs), its own drivers on their MSI-X \
         interrupts behind `intel-iommu`, through its block interface (a 256 KiB bounce \
         buffer per virtio-blk request and per NVMe command). **Linux**: Debian's \
         `{kernel}` booted by QEMU `-kernel` with a busybox-static initramfs that insmods \
         the package's virtio_pci, virtio_blk and nvme and runs `diskload` \
         (tools/xtask/diskload/diskload.rs: the same requests with O_DIRECT, timed with \
         CLOCK_MONOTONIC; busybox's `dd` here prints no elapsed time, and one `dd` per 4 KiB \
         request would time fork and exec). Same QEMU flags and devices on both: TCG \
         `-icount shift=7,align=off,sleep=off`, one CPU, 128 MiB, q35, `intel-iommu`, a \
         virtio-blk (`iommu_platform=on`) and an NVMe, each on a 64 MiB QEMU `null-co` drive \
         (`read-zeroes=on`: reads return zeros, writes are dropped; the figures are the \
         guest side's: driver, interrupts, exits, device model). Times are system time under \
         `-icount`: 128 ns per instruction while the CPU runs, and, when it halts waiting for \
         the disk and QEMU's main loop finds it idle before the request is done, a jump to \
         the next timer deadline (`sleep=off`). With raw files (completed by QEMU's thread \
         pool) that race made two identical Linux runs differ 57-fold on random reads; with \
         `null-co` they agree within about 15%, but the race remains: on a loaded host \
         more waits miss and sleep to the next timer (dom0's 256 random virtio-blk reads \
         took 1.35 s with 256 sleeps in one run, 0.31 s with 20 in another). These are \
         not exact counts: each side runs twice and the last column is the second run's \
         ratio. Linux's waits mostly end at its next 4 ms tick \
         (HZ=250). The ratio is Linux's time over dom0's for the same work (above 1: dom0 \
         faster; the aim is at least 0.8).\n\n",
        kernel = r.kernel
    );
    s.push_str(&table(r));
    let _ = write!(
        s,
        "\nCommands: `cargo xtask bench --only disk`, which runs\n\n- dom0: `{}`\n- Linux: `{}`\n",
        r.kestrel_cmd, r.linux_cmd
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_sides() {
        let dom0 = "dom0: diskbench 0000:00:05.0 nvme rand-read ops=256 bytes=1048576 ns=12345 \
                    interrupts=256";
        let Some((d, w, f)) = parse(dom0) else {
            panic!("{dom0}: not parsed")
        };
        assert_eq!((d.as_str(), w.as_str()), ("nvme", "rand-read"));
        assert_eq!(
            f,
            Figure {
                ops: 256,
                bytes: 1 << 20,
                ns: 12345
            }
        );
        let linux = "diskbench /dev/vda linux seq-write ops=16 bytes=16777216 ns=1";
        let Some((d, w, _)) = parse(linux) else {
            panic!("{linux}: not parsed")
        };
        assert_eq!((d.as_str(), w.as_str()), ("virtio-blk", "seq-write"));
        assert!(parse("diskbench /dev/sda linux seq-write ops=1 bytes=1 ns=1").is_none());
        assert!(parse("dom0: diskbench: done").is_none());
    }

    #[test]
    fn rates() {
        let f = Figure {
            ops: 16,
            bytes: 16 << 20,
            ns: 2_000_000_000,
        };
        assert!((f.mib_s() - 8.0).abs() < 1e-9);
        assert!((f.iops() - 8.0).abs() < 1e-9);
    }
}

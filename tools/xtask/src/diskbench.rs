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
//!   queue depth 1.
//!
//! Why `null-co` and not raw files: under `sleep=off` a CPU that halts
//! waiting for the disk has its clock moved to the next timer deadline as
//! soon as QEMU's main loop finds it idle, so whether a request costs
//! nothing or a whole timer period depends on whether the host finished it
//! first: with raw files (QEMU's thread pool) two identical Linux runs
//! differed 57-fold on random reads. `null-co` completes every request at
//! once in QEMU's main loop and stores nothing (reads return zeros, writes
//! are dropped), so what is measured is the guest's side (driver,
//! interrupts, exits, the device model), not a host disk.
//!
//! The race is still there, smaller, so system time is not the figure:
//! the `insncount` plugin counts the instructions between the markers both
//! sides put around each workload (`crate::diskmarks`), which does not
//! count idle time. [`run`] runs both sides twice and the table says how
//! far each count moved ([`spread`]). MiB/s and IOPS are derived from the
//! counts at `-icount`'s 128 ns per instruction. The kernel package is
//! never installed and never downloaded by the xtask: `crate::disklinux::linux` says what
//! to run when it is missing. Not part of ./test.sh.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use xtask::bail;
use xtask::error::{Context, Result};
use xtask::qemu::{Accel, Boot, Vm};
use xtask::{paths, runner, serial, tools};

use crate::disklinux::{initramfs, linux};
use crate::diskmarks::{self, Span};
use crate::insncount::Plugin;
use crate::isoboot::{self, Backend, Machine, module};

/// The section of docs/benchmarks.md.
pub const HEADING: &str = "## Disk throughput";
/// Sequential requests of 1 MiB per workload.
pub const MIB: u64 = 16;
/// Random 4 KiB requests per workload.
pub const OPS: u64 = 256;
/// Size of each disk.
const DISK_MIB: u64 = 64;
/// The disks: dom0's PCI address, Linux's device, the label.
pub const DISKS: &[(&str, &str, &str)] = &[
    ("0000:00:03.0", "/dev/vda", "virtio-blk"),
    ("0000:00:05.0", "/dev/nvme0n1", "nvme"),
];
const WORKLOADS: &[&str] = &["seq-write", "seq-read", "rand-write", "rand-read"];

/// `-icount shift=7`: nanoseconds of virtual time per instruction.
const NS_PER_INSN: f64 = 128.0;

/// One workload's figures: requests, bytes, system-time ns (as the side
/// printed it; not repeatable), and the instructions of its span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Figure {
    pub ops: u64,
    pub bytes: u64,
    pub ns: u64,
    /// dom0 only: completion interrupts during the workload (`interrupts=`).
    pub wakes: Option<u64>,
    pub insns: Span,
}

impl Figure {
    /// Instructions per request.
    fn per_op(&self) -> f64 {
        self.insns.total() as f64 / self.ops.max(1) as f64
    }
    /// Seconds at `-icount shift=7` if the span never halted.
    fn secs(&self) -> f64 {
        self.insns.total().max(1) as f64 * NS_PER_INSN / 1e9
    }
    fn mib_s(&self) -> f64 {
        self.bytes as f64 / (1 << 20) as f64 / self.secs()
    }
    fn iops(&self) -> f64 {
        self.ops as f64 / self.secs()
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
        wakes: field("interrupts="),
        insns: Span::default(),
    };
    let label = DISKS.iter().find(|d| d.0 == disk || d.1 == disk)?.2;
    Some((label.into(), workload.into(), f))
}

/// The figures among `lines`, each with its span from the plugin's
/// `marks` file (`crate::diskmarks`).
fn figures(lines: &[String], marks: &Path, who: &str, log: &Path) -> Result<Figures> {
    let spans = diskmarks::spans(&diskmarks::read(marks)?, lines)
        .context(|| format!("{who}: serial log {}", log.display()))?;
    let all: Figures = spans
        .iter()
        .filter_map(|(l, span)| {
            let (d, w, f) = parse(l)?;
            Some(((d, w), Figure { insns: *span, ..f }))
        })
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

/// The plugin's `-plugin` argument with marks to `dir`: `(arg, marks)`.
fn counting(plugin: &Plugin, dir: &Path) -> Result<(String, PathBuf)> {
    fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    let marks = dir.join("marks.txt");
    let _ = fs::remove_file(&marks);
    let arg = format!(
        "{},marks={}",
        plugin.arg(&dir.join("insncount.txt")),
        marks.display()
    );
    Ok((arg, marks))
}

fn kestrel(kernel: &Path, dir: &Path, plugin: &Plugin) -> Result<(Figures, String)> {
    let (arg, marks) = counting(plugin, dir)?;
    let m = Machine {
        cpus: 1,
        extra: devices(),
        plugin: Some(arg),
        ..Machine::default()
    };
    let modules = vec![module("dom0", "dom0", &format!("diskbench={MIB}+{OPS}"))?];
    let b = isoboot::boot_on(Backend::Svm, &m, kernel, "dom0", modules, dir)?;
    let log = dir.join("serial.log");
    if let Some(l) = b.lines.iter().find(|l| l.contains("completions polled")) {
        bail!("dom0 polled a disk, the bench measures the interrupt path: {l}");
    }
    Ok((figures(&b.lines, &marks, "Kestrel dom0", &log)?, b.command))
}

fn native(dir: &Path, plugin: &Plugin) -> Result<(Figures, String, String)> {
    let (vmlinuz, mods, pkg) = linux()?;
    let (arg, marks) = counting(plugin, dir)?;
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
    vm.extra.extend(["-plugin".into(), arg.into()]);
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
    Ok((figures(&lines, &marks, "Linux", &log)?, shown, pkg))
}

/// Both sides (module doc).
pub fn run(kernel: &Path, out_dir: &Path) -> Result<Results> {
    let plugin =
        crate::insncount::prepare(kernel, &[paths::guest(paths::Profile::Release, "dom0")])?;
    // The Linux side first: if its kernel is missing, say so before the
    // longer Kestrel run.
    let (linux, linux_cmd, kernel_pkg) = native(&out_dir.join("disk-linux"), &plugin)?;
    let (kestrel, kestrel_cmd) = self::kestrel(kernel, &out_dir.join("disk-kestrel"), &plugin)?;
    // Again: the table shows how far a second run moves each count.
    let (linux2, _, _) = native(&out_dir.join("disk-linux-again"), &plugin)?;
    let (kestrel2, _) = self::kestrel(kernel, &out_dir.join("disk-kestrel-again"), &plugin)?;
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

/// How far the second run's count is from the first's, relative.
fn moved(a: &Figure, b: Option<&Figure>) -> Option<f64> {
    let b = b?;
    let (x, y) = (a.insns.total() as f64, b.insns.total() as f64);
    Some((y - x).abs() / x.max(1.0))
}

/// The largest relative move between the two runs over every figure of
/// both sides: the tolerance the doc states.
pub fn spread(r: &Results) -> f64 {
    let mut m: f64 = 0.0;
    for (k, a) in &r.kestrel {
        m = m.max(moved(a, r.again.0.get(k)).unwrap_or(f64::INFINITY));
    }
    for (k, a) in &r.linux {
        m = m.max(moved(a, r.again.1.get(k)).unwrap_or(f64::INFINITY));
    }
    m
}

fn table(r: &Results) -> String {
    let mut s = String::from(
        "| disk | workload | dom0 insns / request (hypervisor) | Linux insns / request | \
         Linux / dom0 | 2nd run: Linux / dom0 | 2nd run moved dom0, Linux | \
         dom0 interrupts, 1st, 2nd run | \
         dom0 MiB/s, IOPS | Linux MiB/s, IOPS | dom0 / Linux, system time |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let pct = |m: Option<f64>| m.map_or("-".into(), |m| format!("{:.1}%", m * 100.0));
    let wakes = |f: Option<&Figure>| {
        f.and_then(|f| f.wakes)
            .map_or("-".into(), |w| w.to_string())
    };
    for (_, _, d) in DISKS {
        for w in WORKLOADS {
            let k = (d.to_string(), w.to_string());
            let (Some(a), Some(b)) = (r.kestrel.get(&k), r.linux.get(&k)) else {
                continue;
            };
            let (a2, b2) = (r.again.0.get(&k), r.again.1.get(&k));
            let again = match (a2, b2) {
                (Some(a2), Some(b2)) => format!("{:.2}", b2.per_op() / a2.per_op().max(1.0)),
                _ => "-".into(),
            };
            let _ = writeln!(
                s,
                "| {d} | {w} | {:.0} ({:.0}) | {:.0} | **{:.2}** | {again} | {}, {} | {}, {} | \
                 {:.1}, {:.0} | {:.1}, {:.0} | {:.2} |",
                a.per_op(),
                a.insns.hv as f64 / a.ops.max(1) as f64,
                b.per_op(),
                b.per_op() / a.per_op().max(1.0),
                pct(moved(a, a2)),
                pct(moved(b, b2)),
                wakes(Some(a)),
                wakes(a2),
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
         buffer per virtio-blk request; NVMe commands DMA in place). **Linux**: Debian's \
         `{kernel}` booted by QEMU `-kernel` with a busybox-static initramfs that insmods \
         the package's virtio_pci, virtio_blk and nvme and runs `diskload` \
         (tools/xtask/diskload/diskload.rs: the same requests with O_DIRECT). Same QEMU \
         flags and devices on both: TCG `-icount shift=7,align=off,sleep=off`, one CPU, \
         128 MiB, q35, `intel-iommu`, a virtio-blk (`iommu_platform=on`) and an NVMe, each \
         on a 64 MiB QEMU `null-co` drive (`read-zeroes=on`: reads return zeros, writes are \
         dropped; what is measured is the guest side: driver, interrupts, exits, device \
         model).\n\n\
         **The figure is instructions per request**, counted by QEMU's `insncount` plugin \
         (tools/insncount, `marks=`): each side executes a marker instruction (a NOP with a \
         magic displacement, dom0/src/dev/mark.rs, `diskload`'s `mark`) right before and \
         right after each workload's loop, and the plugin takes the CPU's instruction \
         counts at each marker. The difference is everything the machine ran for that \
         workload: on Kestrel dom0's driver and the hypervisor under it (its share in \
         brackets: exits, MSI delivery, event ports), on Linux `diskload`, the syscalls, \
         the block layer, the driver and its interrupts. Why not time: with `sleep=off` a \
         CPU that halts waiting for the disk has its clock moved to the next timer deadline \
         whenever QEMU's main loop finds it idle before the request is done, a race with \
         the host's scheduling (two identical runs differed 57-fold on raw files, and up to \
         4x with `null-co`: dom0's 256 random virtio-blk reads took 1.35 s of system time \
         in one run, 0.31 s in another). Instructions do not count that idle time, only \
         what each side executes per request. Polling on both sides would also remove the \
         halts, but the spin count would still depend on when the main loop completes a \
         request, and Linux would measure a different driver path (poll queues); QEMU \
         record/replay repeats one recording exactly but two recordings race the same \
         way. What remains variable in the count: whether a request was already complete \
         when the driver looked (one sleep and wake-up more or less) and how many timer \
         ticks fell in the span; the \"2nd run moved\" column is how far each count moved \
         in a second identical run (at most {spread:.1}% here, against up to 4x for system \
         time). The race shows in dom0's interrupt count (waits its port ended, \
         `Completions`): a request found done costs no sleep, one not yet done costs a \
         hypercall, a halt and a wake-up in the hypervisor, a few thousand instructions; \
         where a second run's count moved most, its interrupts moved with it (e.g. in an \
         earlier run NVMe random reads: 11 interrupts and 9,626 instructions per request \
         in one run, 256 and about 12,400 in another, 29%). So a figure is good to that tolerance, and a ratio's second-run column shows how far it can move. \
         Instructions are not cycles: each iteration of a `rep movs` counts one, so \
         dom0's virtio-blk copy through its bounce buffer (131,072 `movsq` per 1 MiB \
         request) is most of its virtio-blk sequential figure, where Linux's O_DIRECT has \
         no copy. dom0's NVMe driver DMAs straight into and out of the caller's buffer \
         when its start is dword-aligned, as the bench's are (dom0/src/dev/nvme/xfer.rs; \
         unaligned buffers still bounce): that took its sequential figures from about \
         173,500 instructions per request (ratio 0.78 write, 0.85 read, just under the \
         aim) to about 21,700 (6.3, 6.8), and 1 MiB now takes 2 commands (MDTS 512 KiB) \
         instead of 4. The ratio is Linux's \
         instructions per request over dom0's (above 1: dom0 does less work per request; \
         the aim is at least 0.8). MiB/s and IOPS are derived: the span's instructions at \
         the `-icount` rate (128 ns each), i.e. as if no wait were idle. The last column \
         is the old figure, the ratio of the system time each side printed (including the \
         idle warps; not repeatable), for comparison.\n\n",
        kernel = r.kernel,
        spread = spread(r) * 100.0
    );
    s.push_str(&table(r));
    let _ = write!(
        s,
        "\nCommands: `cargo xtask bench --only disk`, which runs each side twice (the \
         plugin's output under target/…/bench/disk-*/):\n\n- dom0: `{}`\n- Linux: `{}`\n",
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
                ns: 12345,
                wakes: Some(256),
                insns: Span::default(),
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
        // 2 s at 128 ns per instruction.
        let f = Figure {
            ops: 16,
            bytes: 16 << 20,
            ns: 1,
            wakes: None,
            insns: Span {
                hv: 5_625_000,
                guest: 10_000_000,
            },
        };
        assert!((f.mib_s() - 8.0).abs() < 1e-9);
        assert!((f.iops() - 8.0).abs() < 1e-9);
        assert!((f.per_op() - 15_625_000.0 / 16.0).abs() < 1e-9);
    }
}

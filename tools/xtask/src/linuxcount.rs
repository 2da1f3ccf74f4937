//! The Linux boot counted by the `insncount` plugin (tools/insncount)
//! instead of `-icount` (issue 13): the one way found to give the native
//! 2-CPU boot a figure. Under `-icount` QEMU 7.2 never brings the second
//! CPU up natively (docs/benchmarks.md); without it, it does.
//!
//! Both sides, the Kestrel domain (GRUB ISO, `crate::linuxbench`) and the
//! same `vmlinux` and initramfs booted by QEMU itself
//! (`crate::linuxnative`), run under QEMU TCG with the same machine
//! (`-smp N,sockets=N,cores=1,threads=1`: SeaBIOS's MP table lists one
//! processor per socket, and the native kernel, without ACPI, reads only
//! that), QEMU's own clock and its default multi-threaded TCG, and the
//! plugin with two snapshots: every vCPU's instructions the first time
//! any vCPU enters [`FROM`] and [`TO`] (addresses from the `vmlinux`
//! symbol table; the kernel runs at the same virtual addresses on both
//! sides). The figure is the sum over vCPUs of the instructions between
//! the two: the kernel's boot from `start_kernel` to the call that prints
//! `Run /init as init process`, on Kestrel with the hypervisor's
//! instructions for the domain in that span (exits, hypercalls, the
//! console; the plugin's `in=` count, reported apart), natively with
//! nothing under it. Firmware, GRUB, the hypervisor's own boot and the
//! domain's build come before `FROM` and are not in it (the machine-start
//! count to `TO` is reported beside it).
//!
//! A halted CPU runs no instructions, so idle time is not counted (under
//! `-icount` it is, as clock time). What this cannot take out: busy waits
//! on the clock (`udelay`, a CPU spinning until another answers) run as
//! many instructions as the wall-clock time they wait allows, and
//! multi-threaded TCG interleaves the vCPUs as the host schedules them;
//! so the counts vary from run to run and with the host's load. Each
//! configuration runs [`RUNS`] times, interleaved (Kestrel and native one
//! after the other) so a change of host load falls on both; the table
//! gives the median and the range.

use std::fmt::Write as _;
use std::path::Path;

use xtask::bail;
use xtask::error::Result;
use xtask::linux::LinuxImages;

use crate::insncount::{self, Plugin, Snap};
use crate::isoboot::{Backend, Machine};

/// Where the count starts: the kernel's first C function common to both
/// entries (PVH natively, the 64-bit boot protocol on Kestrel).
pub const FROM: &str = "start_kernel";
/// Where it ends: `init/main.c`'s `run_init_process`, whose first act is
/// printing `Run /init as init process`.
pub const TO: &str = "run_init_process";

/// Boots per configuration.
pub const RUNS: usize = 3;

/// Kestrel domain or QEMU `-kernel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Kestrel,
    Native,
}

/// One counted boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    pub side: Side,
    pub cpus: u32,
    /// All vCPUs' instructions from [`FROM`] to [`TO`].
    pub span: u64,
    /// Of `span`, those in the hypervisor's code (0 natively).
    pub hv: u64,
    /// All vCPUs' instructions from the machine's start to [`TO`]
    /// (firmware, GRUB, the hypervisor's boot included).
    pub to_init: u64,
    /// The Kestrel domain's exits, its whole life (`domain-end:`).
    pub exits: Option<u64>,
    pub command: String,
}

/// `[from, to]` over all vCPUs: (all instructions, those in the
/// hypervisor's code). Fails unless both snapshots were taken, `from`
/// first, and no count went down.
fn span(snaps: &[Snap], from: u64, to: u64) -> Result<(u64, u64)> {
    let find = |a: u64| snaps.iter().position(|s| s.addr == a);
    let (Some(f), Some(t)) = (find(from), find(to)) else {
        bail!("the plugin took no snapshot at {from:#x} or {to:#x} (never ran?)");
    };
    if f > t {
        bail!("{to:#x} ran before {from:#x}");
    }
    let (mut all, mut hv) = (0, 0);
    for (a, b) in snaps[f].cpus.iter().zip(&snaps[t].cpus) {
        let (Some(h), Some(o)) = (b.hv.checked_sub(a.hv), b.other.checked_sub(a.other)) else {
            bail!("a count went down between the snapshots: {a:?} then {b:?}");
        };
        all += h + o;
        hv += h;
    }
    Ok((all, hv))
}

fn total(s: &Snap) -> u64 {
    s.cpus.iter().map(|c| c.hv + c.other).sum()
}

/// The QEMU arguments both sides add: the socket layout and the plugin.
fn extra(cpus: u32, plugin: String) -> Vec<String> {
    vec![
        "-smp".into(),
        format!("sockets={cpus},cores=1,threads=1"),
        "-plugin".into(),
        plugin,
    ]
}

/// The addresses of [`FROM`] and [`TO`] in `vmlinux`.
pub fn addresses(vmlinux: &Path) -> Result<(u64, u64)> {
    let syms = crate::evprof::symbols(vmlinux)?;
    let find = |name: &str| -> Result<u64> {
        let mut hits = syms.iter().filter(|(_, n)| n == name);
        match (hits.next(), hits.next()) {
            (Some(&(a, _)), None) => Ok(a),
            (None, _) => bail!(
                "{} has no function `{name}` (inlined? the count needs its entry)",
                vmlinux.display()
            ),
            (Some(_), Some(_)) => bail!("{} has two functions `{name}`", vmlinux.display()),
        }
    };
    Ok((find(FROM)?, find(TO)?))
}

fn count(
    images: &LinuxImages,
    kernel: &Path,
    plugin: &Plugin,
    (from, to): (u64, u64),
    dir: &Path,
    side: Side,
    cpus: u32,
) -> Result<Counted> {
    let counts = dir.join("insncount.txt");
    let snaps_file = dir.join("snaps.txt");
    // A stale file must not pass for this run's (the plugin writes it at
    // QEMU's exit).
    let _ = std::fs::remove_file(&snaps_file);
    let arg = plugin.arg_with_snaps(&counts, &snaps_file, &[from, to]);
    let (exits, command) = match side {
        Side::Kestrel => {
            let m = Machine {
                cpus,
                plugin: None,
                extra: extra(cpus, arg),
                free_running: true,
            };
            let r = crate::linuxbench::one_on(images, kernel, dir, Backend::Svm, &m, "")?;
            (Some(r.exits), r.command)
        }
        Side::Native => {
            let r = crate::linuxbench::native_with(
                images,
                dir,
                cpus,
                crate::linuxnative::COUNTED_CMDLINE,
                extra(cpus, arg),
            )?;
            (None, r.command)
        }
    };
    let snaps = insncount::read_snaps(&snaps_file)?;
    let (span, hv) = span(&snaps, from, to)?;
    let Some(t) = snaps.iter().find(|s| s.addr == to) else {
        bail!("no snapshot at {to:#x}");
    };
    Ok(Counted {
        side,
        cpus,
        span,
        hv,
        to_init: total(t),
        exits,
        command,
    })
}

/// Tries per boot: a boot that fails (a wall-clock wait lost under host
/// load) is run again, and said so.
pub const TRIES: usize = 3;

/// Every counted boot, and the tries that failed.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub rows: Vec<Counted>,
    /// One line per failed try, the reason's first line.
    pub failed: Vec<String>,
}

/// [`RUNS`] boots of each side for 1 and 2 vCPUs, interleaved.
pub fn run(images: &LinuxImages, kernel: &Path, out_dir: &Path) -> Result<Counts> {
    let addrs = addresses(&images.vmlinux)?;
    let plugin = insncount::prepare(kernel, std::slice::from_ref(&images.vmlinux))?;
    let root = xtask::paths::repo_root().display().to_string();
    let mut c = Counts::default();
    for run in 1..=RUNS {
        for cpus in [1, 2] {
            for side in [Side::Kestrel, Side::Native] {
                let tag = match side {
                    Side::Kestrel => "kestrel",
                    Side::Native => "native",
                };
                let mut tries = 0;
                let r = loop {
                    tries += 1;
                    let dir = out_dir.join(format!("linux-count-{tag}-{cpus}-{run}-{tries}"));
                    match count(images, kernel, &plugin, addrs, &dir, side, cpus) {
                        Ok(r) => break r,
                        Err(e) if tries < TRIES => {
                            let why = e.to_string();
                            let first = why.lines().next().unwrap_or("").replace(&root, ".");
                            // The panic line, when there is one, says more.
                            let panic = why
                                .lines()
                                .find(|l| l.contains("Kernel panic"))
                                .map(|l| format!(" ({})", l.trim()))
                                .unwrap_or_default();
                            println!(
                                "linux count: {tag} {cpus} vCPU(s) run {run} try {tries} failed: {first}{panic}"
                            );
                            c.failed
                                .push(format!("{tag}, {cpus} vCPU(s), run {run}: {first}{panic}"));
                        }
                        Err(e) => return Err(e),
                    }
                };
                println!(
                    "linux count: {tag} {cpus} vCPU(s) run {run}: {} instructions {FROM} -> {TO} ({} in the hypervisor)",
                    r.span, r.hv
                );
                c.rows.push(r);
            }
        }
    }
    Ok(c)
}

/// Median (the middle one of an odd count, the lower middle otherwise),
/// min and max.
fn stats(mut v: Vec<u64>) -> Option<(u64, u64, u64)> {
    v.sort_unstable();
    let (&min, &max) = (v.first()?, v.last()?);
    Some((v[(v.len() - 1) / 2], min, max))
}

fn pick(rows: &[Counted], side: Side, cpus: u32, f: fn(&Counted) -> u64) -> Vec<u64> {
    rows.iter()
        .filter(|r| r.side == side && r.cpus == cpus)
        .map(f)
        .collect()
}

fn cell(s: Option<(u64, u64, u64)>) -> String {
    s.map_or_else(|| "-".to_string(), |(m, lo, hi)| format!("{m} ({lo}-{hi})"))
}

/// Kestrel / native for `cpus`: the medians' ratio and the widest range
/// the runs allow (smallest Kestrel over largest native, and back).
pub fn ratio(rows: &[Counted], cpus: u32) -> Option<(f64, f64, f64)> {
    let (km, klo, khi) = stats(pick(rows, Side::Kestrel, cpus, |r| r.span))?;
    let (nm, nlo, nhi) = stats(pick(rows, Side::Native, cpus, |r| r.span))?;
    if nlo == 0 {
        return None;
    }
    let d = |a: u64, b: u64| a as f64 / b as f64;
    Some((d(km, nm), d(klo, nhi), d(khi, nlo)))
}

/// The ratio as a table cell.
pub fn ratio_cell(rows: &[Counted], cpus: u32) -> String {
    ratio(rows, cpus).map_or_else(
        || "-".to_string(),
        |(m, lo, hi)| format!("{m:.3} ({lo:.3}-{hi:.3})"),
    )
}

/// The counted boots' section: method, the medians and ranges, every run,
/// the failed tries and the commands.
pub fn table(counts: &Counts) -> String {
    let rows = &counts.rows[..];
    let mut s = String::new();
    let _ = write!(
        s,
        "\nCounted without `-icount` (tools/xtask/src/linuxcount.rs), the method that gives \
         the native 2-CPU boot a figure: both sides under QEMU TCG with QEMU's own clock \
         and its default multi-threaded TCG (no `-icount`), the same `-smp N,sockets=N,\
         cores=1,threads=1` (SeaBIOS's MP table lists one processor per socket; the kernel \
         has no ACPI and reads only that), natively the command line above plus \
         `no_timer_check panic=-1` (the kernel's check that the PIT's interrupt reaches the \
         IO-APIC is a wall-clock wait that panicked a native 2-CPU boot at a host load of \
         11; a Kestrel domain never runs it), and the `insncount` plugin (tools/insncount) \
         with two snapshots: every vCPU's instruction count the first time any vCPU enters \
         `{FROM}` and `{TO}` (addresses from the `vmlinux` symbol table, the same virtual \
         addresses on both sides; `{TO}` is the function that prints `Run /init as init \
         process`). The figure is the difference summed over vCPUs: the kernel's boot to \
         `/init`, on Kestrel with the hypervisor's instructions for the domain in that span \
         (exits, hypercalls, the console), natively with nothing under it. Firmware, GRUB, \
         the hypervisor's boot and the domain's build come before `{FROM}` and are not in \
         it (*machine start → `{TO}`* has them: SeaBIOS and the PVH loader natively; \
         SeaBIOS, GRUB, the hypervisor's boot and the domain build on Kestrel). A halted CPU \
         runs no instructions, so idle time is not counted, where `-icount` counts it as \
         clock time. Not deterministic: busy waits on the clock (`udelay`, a CPU spinning \
         until another answers) run as many instructions as their wall-clock wait allows, \
         and multi-threaded TCG interleaves the vCPUs as the host schedules them, so each \
         configuration ran {RUNS} times, Kestrel and native in turn; median (min-max). The \
         ratio: the medians' (in brackets smallest Kestrel / largest native and largest / \
         smallest). It is not the hypervisor's cost alone: natively the kernel does work a \
         Kestrel domain is spared (it calibrates the TSC, the local APIC timer and the delay \
         loop by busy-waiting on the PIT and on jiffies, probes the BIOS ROM area and scans \
         for the MP table; with 2 CPUs it also waits for the second, spinning on a lock and in \
         `udelay`), and a Kestrel domain does its own (event upcalls, the hvc console, with 2 \
         vCPUs `smp_call_function` waiting for the other vCPU to answer); the waits among \
         them run as long as the wall clock lets them. So a ratio below 1 says the native \
         boot waits more than Kestrel costs, not that a domain boots faster; a profile of the \
         kernel's functions on both sides (the plugin's `prof=` over the kernel's text, \
         `lo=0xffffffff81000000,hi=<__init_end>`) shows which.\n\n"
    );
    s.push_str("| vCPUs | Kestrel domain, `start_kernel` → `Run /init` | of which the hypervisor | QEMU `-kernel`, same span | Kestrel / native | machine start → `Run /init`, Kestrel | same, native |\n");
    s.push_str("|---:|---:|---:|---:|---:|---:|---:|\n");
    for cpus in [1, 2] {
        let _ = writeln!(
            s,
            "| {cpus} | {} | {} | {} | {} | {} | {} |",
            cell(stats(pick(rows, Side::Kestrel, cpus, |r| r.span))),
            cell(stats(pick(rows, Side::Kestrel, cpus, |r| r.hv))),
            cell(stats(pick(rows, Side::Native, cpus, |r| r.span))),
            ratio_cell(rows, cpus),
            cell(stats(pick(rows, Side::Kestrel, cpus, |r| r.to_init))),
            cell(stats(pick(rows, Side::Native, cpus, |r| r.to_init))),
        );
    }
    s.push_str(
        "\nEvery counted run, in the order run (instructions; exits: the domain's whole life):\n\n",
    );
    s.push_str("| side | vCPUs | `start_kernel` → `Run /init` | of which the hypervisor | machine start → `Run /init` | exits |\n");
    s.push_str("|---|---:|---:|---:|---:|---:|\n");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            match r.side {
                Side::Kestrel => "Kestrel",
                Side::Native => "native",
            },
            r.cpus,
            r.span,
            r.hv,
            r.to_init,
            r.exits.map_or_else(|| "-".to_string(), |e| e.to_string())
        );
    }
    if !counts.failed.is_empty() {
        s.push_str("\nTries that failed and were run again:\n\n");
        for f in &counts.failed {
            let _ = writeln!(s, "- {f}");
        }
    }
    for side in [Side::Kestrel, Side::Native] {
        for cpus in [1, 2] {
            if let Some(r) = rows.iter().find(|r| r.side == side && r.cpus == cpus) {
                let _ = write!(
                    s,
                    "\nCommand ({}, {cpus} vCPU(s), one run): `{}`\n",
                    match side {
                        Side::Kestrel => "Kestrel",
                        Side::Native => "native",
                    },
                    r.command
                );
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insncount::Cpu;

    fn snap(addr: u64, cpus: &[(u64, u64)]) -> Snap {
        Snap {
            addr,
            cpus: cpus.iter().map(|&(hv, other)| Cpu { hv, other }).collect(),
        }
    }

    #[test]
    fn the_span_sums_every_vcpu_between_the_snapshots() {
        let snaps = [
            snap(0x10, &[(100, 1000), (50, 7)]),
            snap(0x20, &[(130, 5000), (90, 907)]),
        ];
        // CPU 0: 30 + 4000, CPU 1: 40 + 900; 70 of them the hypervisor's.
        assert_eq!(span(&snaps, 0x10, 0x20).ok(), Some((4970, 70)));
        assert!(span(&snaps, 0x20, 0x10).is_err(), "wrong order");
        assert!(span(&snaps, 0x10, 0x30).is_err(), "never taken");
        let down = [snap(0x10, &[(100, 1000)]), snap(0x20, &[(99, 2000)])];
        assert!(span(&down, 0x10, 0x20).is_err());
        assert_eq!(total(&snaps[1]), 130 + 5000 + 90 + 907);
    }

    #[test]
    fn medians_ranges_and_the_ratio() {
        let row = |side, cpus, span| Counted {
            side,
            cpus,
            span,
            hv: span / 10,
            to_init: span * 2,
            exits: None,
            command: format!("{side:?}"),
        };
        let rows = vec![
            row(Side::Kestrel, 2, 300),
            row(Side::Native, 2, 200),
            row(Side::Kestrel, 2, 330),
            row(Side::Native, 2, 250),
            row(Side::Kestrel, 2, 240),
            row(Side::Native, 2, 220),
        ];
        assert_eq!(stats(vec![3, 1, 2]), Some((2, 1, 3)));
        assert_eq!(stats(vec![4, 1, 3, 2]), Some((2, 1, 4)));
        assert_eq!(stats(vec![]), None);
        // Medians 300 / 220; range 240 / 250 to 330 / 200.
        let (m, lo, hi) = ratio(&rows, 2).unwrap_or_default();
        assert!((m - 300.0 / 220.0).abs() < 1e-9, "{m}");
        assert!(
            (lo - 0.96).abs() < 1e-9 && (hi - 1.65).abs() < 1e-9,
            "{lo} {hi}"
        );
        assert_eq!(ratio(&rows, 1), None);
        let t = table(&Counts {
            rows: rows.clone(),
            failed: vec!["native, 2 vCPU(s), run 1: panicked".into()],
        });
        assert!(
            t.contains("| 2 | 300 (240-330) | 30 (24-33) | 220 (200-250) | 1.364 (0.960-1.650) | 600 (480-660) | 440 (400-500) |"),
            "{t}"
        );
        assert!(t.contains("| 1 | - | - | - | - | - | - |"), "{t}");
        assert!(t.contains("| native | 2 | 250 | 25 | 500 | - |"), "{t}");
        assert!(
            t.contains("Command (Kestrel, 2 vCPU(s), one run): `Kestrel`"),
            "{t}"
        );
    }
}

//! Event-channel round trip and ring throughput, counted in instructions
//! on each backend under Bochs with one CPU and `clock: sync=none`, where a
//! TSC tick is one instruction (see `crate::hcbench`): `ryzen` for AMD-V
//! with nested paging, `corei7_haswell_4770` for VT-x with EPT. Two guests
//! need two boot modules with arguments, so a GRUB ISO; QEMU TCG with
//! `-icount` never got through SeaBIOS and GRUB here (no serial output
//! past GRUB's screen in 2 minutes, with `sleep=off` or `on`), so QEMU
//! cannot give these figures; PVH boot carries only one module. One CPU,
//! two guests:
//!
//! - `evping bench` / `evpong bench` (guests/src/bin/evping.rs): N round
//!   trips, each a send, a block until the answer, a poll.
//! - `ringprod` / `ringcons`: M MiB through a ring of 32 data pages.
//!
//! Each side counts its own instructions between hypercalls
//! (`pvabi::guest::meter`); the driver's TSC span minus both guests' own
//! ticks is what the hypervisor ran. Every figure is the difference between
//! a run of size 2X and one of size X, divided by X: the constant set-up
//! and tear-down cancel, so each is a per-item marginal cost. The 2X run
//! is made twice and must give identical figures.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use xtask::bail;
use xtask::bochs::{self, Pc};
use xtask::error::{Context, Result};
use xtask::iso::{IsoSpec, Module};
use xtask::paths;
use xtask::runner;
use xtask::serial::{self, DomainEnd};

use crate::hcbench::BOCHS_MODEL;

/// Round trips in the smaller event-channel run (the larger has twice).
pub const EVTCHN_ROUNDS: u64 = 1000;
/// MiB in the smaller ring run (the larger has twice).
pub const RING_MIB: u64 = 4;

/// Which machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Bochs `ryzen` (AMD-V with nested paging), one CPU.
    Svm,
    /// Bochs `corei7_haswell_4770` (VT-x with EPT), one CPU.
    Vmx,
}

impl Backend {
    /// The Bochs CPU model.
    pub fn bochs_model(self) -> &'static str {
        match self {
            Self::Svm => "ryzen",
            Self::Vmx => BOCHS_MODEL,
        }
    }

    /// "AMD-V (SVM)" or "VT-x (VMX)".
    pub fn name(self) -> &'static str {
        match self {
            Self::Svm => "AMD-V (SVM)",
            Self::Vmx => "VT-x (VMX)",
        }
    }
}

/// What one run counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Items: round trips or ring requests.
    pub items: u64,
    /// The driver's TSC span (every instruction of the machine).
    pub tsc: u64,
    /// Both guests' own ticks between hypercalls.
    pub guest: u64,
    /// Hypercalls of both guests.
    pub calls: u64,
    /// VM exits of both domains (whole life).
    pub exits: u64,
    /// Notifications the driver (ping, producer) sent.
    pub notes_a: u64,
    /// Notifications the other side (pong, consumer) sent.
    pub notes_b: u64,
}

/// Per-item figures: the difference of two runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PerItem {
    /// Machine instructions per item.
    pub tsc: f64,
    /// Hypervisor instructions per item.
    pub hv: f64,
    /// Exits per item.
    pub exits: f64,
    /// Hypercalls per item.
    pub calls: f64,
    /// Items per notification by the driver side (0 when none).
    pub per_note_a: f64,
    /// Items per notification by the other side.
    pub per_note_b: f64,
}

impl PerItem {
    /// From a run of `small` items and one of `large`.
    pub fn between(small: &Counts, large: &Counts) -> Self {
        let n = large.items.saturating_sub(small.items).max(1) as f64;
        let d = |a: u64, b: u64| a as f64 - b as f64;
        let per = |a: u64, b: u64| {
            let notes = d(a, b);
            if notes > 0.0 { n / notes } else { 0.0 }
        };
        Self {
            tsc: d(large.tsc, small.tsc) / n,
            hv: (d(large.tsc, small.tsc) - d(large.guest, small.guest)) / n,
            exits: d(large.exits, small.exits) / n,
            calls: d(large.calls, small.calls) / n,
            per_note_a: per(large.notes_a, small.notes_a),
            per_note_b: per(large.notes_b, small.notes_b),
        }
    }
}

/// `key=value` from the line of `lines` containing `tag`.
fn field(lines: &[String], tag: &str, key: &str) -> Result<u64> {
    let Some(line) = lines.iter().find(|l| l.contains(tag)) else {
        bail!("no `{tag}` line in the serial log")
    };
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(serial::parse_number)
        .ok_or_else(|| xtask::error::Error::new(format!("`{key}=` missing in `{line}`")))
}

fn exits(lines: &[String]) -> Result<u64> {
    let ends = DomainEnd::all(lines)?;
    if ends.len() != 2 || ends.iter().any(|d| d.result != "exited" || d.code != 0) {
        bail!("the two guests did not both exit 0: {ends:?}");
    }
    Ok(ends.iter().map(|d| d.exits).sum())
}

fn evtchn_counts(lines: &[String]) -> Result<Counts> {
    let (p, q) = ("evping: bench ", "evpong: bench ");
    let rounds = field(lines, p, "rounds")?;
    Ok(Counts {
        items: rounds,
        tsc: field(lines, p, "tsc")?,
        guest: field(lines, p, "guest_tsc")? + field(lines, q, "guest_tsc")?,
        calls: field(lines, p, "calls")? + field(lines, q, "calls")?,
        exits: exits(lines)?,
        notes_a: rounds,
        notes_b: rounds,
    })
}

fn ring_counts(lines: &[String]) -> Result<Counts> {
    let (p, c) = ("ringprod: bench ", "ringcons: bench ");
    Ok(Counts {
        items: field(lines, p, "requests")?,
        tsc: field(lines, p, "tsc")?,
        guest: field(lines, p, "guest_tsc")? + field(lines, c, "guest_tsc")?,
        calls: field(lines, p, "calls")? + field(lines, c, "calls")?,
        exits: exits(lines)?,
        notes_a: field(lines, p, "notifications")?,
        notes_b: field(lines, c, "notifications")?,
    })
}

/// One backend's two benchmarks.
#[derive(Debug)]
pub struct Row {
    /// Which backend.
    pub backend: Backend,
    /// Event channels: small run, large run, large again.
    pub evtchn: [Counts; 3],
    /// Ring: the same.
    pub ring: [Counts; 3],
    /// One run's command (the large ring run).
    pub command: String,
}

impl Row {
    /// Whether the repeated run gave identical counts.
    pub fn deterministic(&self) -> bool {
        self.evtchn[1] == self.evtchn[2] && self.ring[1] == self.ring[2]
    }
}

/// Boots `modules` on `b` with one CPU; the serial lines and the command.
fn boot(
    b: Backend,
    kernel: &Path,
    modules: Vec<Module>,
    dir: &Path,
) -> Result<(Vec<String>, String)> {
    std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    let exit = "exit=bochs";
    let iso = dir.join("bench.iso");
    xtask::iso::build(&IsoSpec {
        kernel: kernel.to_path_buf(),
        cmdline: format!("{exit} shutdown loglevel=info"),
        modules,
        timeout_s: 0,
        output: iso.clone(),
    })?;
    let root = paths::repo_root().display().to_string();
    let pc = Pc::new(b.bochs_model(), 1, 128);
    let mut r = bochs::prepare(&pc, &iso, dir)?;
    let command = r.display.replace(&root, ".");
    runner::run_with_timeout(&mut r.command, Duration::from_secs(300))?;
    Ok((
        serial::lines(&std::fs::read(&r.serial).unwrap_or_default()),
        command,
    ))
}

fn module(guest: &str, name: &str, args: &str) -> Result<Module> {
    Module::named(paths::guest(paths::Profile::Release, guest), name, args)
}

/// Runs both benchmarks on `b`.
pub fn run(b: Backend, kernel: &Path, out_dir: &Path) -> Result<Row> {
    let tag = match b {
        Backend::Svm => "svm",
        Backend::Vmx => "vmx",
    };
    let mut evtchn = [Counts::default(); 3];
    let mut ring = [Counts::default(); 3];
    let mut command = String::new();
    for (i, scale) in [1, 2, 2].into_iter().enumerate() {
        let rounds = EVTCHN_ROUNDS * scale;
        let dir = out_dir.join(format!("evtchn-{tag}-{i}"));
        let mods = vec![
            module(
                "evpong",
                "evpong.elf",
                &format!("peer=2 rounds={rounds} bench"),
            )?,
            module(
                "evping",
                "evping.elf",
                &format!("peer=1 rounds={rounds} bench"),
            )?,
        ];
        let (lines, _) = boot(b, kernel, mods, &dir)?;
        evtchn[i] = evtchn_counts(&lines).context(|| format!("{}", dir.display()))?;
        let mib = RING_MIB * scale;
        let dir = out_dir.join(format!("ring-{tag}-{i}"));
        let mods = vec![
            module("ringprod", "ringprod.elf", &format!("peer=2 mib={mib}"))?,
            module("ringcons", "ringcons.elf", "peer=1")?,
        ];
        let (lines, cmd) = boot(b, kernel, mods, &dir)?;
        ring[i] = ring_counts(&lines).context(|| format!("{}", dir.display()))?;
        command = cmd;
        println!(
            "  {} run {}: {rounds} round trips, {mib} MiB through the ring",
            b.name(),
            i + 1
        );
    }
    Ok(Row {
        backend: b,
        evtchn,
        ring,
        command,
    })
}

fn f2(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

/// The markdown section.
pub fn section(rows: &[Row]) -> String {
    let mut ev = String::new();
    let mut ring = String::new();
    for r in rows {
        let e = PerItem::between(&r.evtchn[0], &r.evtchn[1]);
        let g = PerItem::between(&r.ring[0], &r.ring[1]);
        // Ignoring write! results: writing to a String cannot fail.
        let _ = writeln!(
            ev,
            "| {} | {} / {} | {} | **{}** | **{}** | {} |",
            r.backend.name(),
            r.evtchn[0].items,
            r.evtchn[1].items,
            f2(e.tsc),
            f2(e.hv),
            f2(e.exits),
            f2(e.calls),
        );
        let _ = writeln!(
            ring,
            "| {} | {} / {} | **{}** | {} | {} | **{}** | {} | {} |",
            r.backend.name(),
            r.ring[0].items,
            r.ring[1].items,
            f2(g.per_note_a),
            f2(g.per_note_b),
            f2(g.tsc),
            f2(g.hv),
            f2(g.exits),
            f2(g.calls),
        );
    }
    let svm = rows.iter().find(|r| r.backend == Backend::Svm);
    let vmx = rows.iter().find(|r| r.backend == Backend::Vmx);
    format!(
        "\
## Event-channel round trip and ring throughput

Two guests on **one** CPU, GRUB ISO, on both backends under Bochs 2.7 with `clock:
sync=none`, where a TSC tick is one instruction (see above): `cpu: model=ryzen` for AMD-V
with nested paging, `corei7_haswell_4770` for VT-x with EPT. (QEMU TCG with `-icount`,
used for the figures above, boots only PVH with one module here: through SeaBIOS and GRUB,
which two guests with arguments need, it never got past GRUB's screen in 2 minutes.)
Each guest counts its own instructions between hypercalls (`pvabi::guest::meter`: the TSC read just before
each hypercall instruction and just after it returns); the driver's TSC span minus both
guests' own ticks is what the hypervisor executed (about five instructions of the meter
per hypercall fall on the hypervisor's side). Every figure is the difference between a
run of size 2X and one of size X, divided by X, so set-up, tear-down and boot cancel;
the 2X run was made twice and gave identical counts. Exits are from the two domains'
`domain-end:` lines (timer ticks included).

**Event channels**: `evping bench` sends on its port, blocks until `evpong bench`
(which blocks until pinged, polls, and sends back) answers, and polls the answer.

| backend | round trips (runs) | machine instructions per round trip | **hypervisor instructions per round trip** | **exits per round trip** | hypercalls per round trip |
|---|---:|---:|---:|---:|---:|
{ev}
**Ring**: `ringprod` moves data through a ring of 128 slots with 32 data pages (4 KiB per
request, filled with a pattern and checksummed); `ringcons` verifies each checksum and
answers. Each side publishes a whole batch at once and notifies only when the other
side asked (event suppression), and sleeps only when it has nothing to do.

| backend | requests (runs) | **requests per notification** (producer) | requests per notification (consumer) | machine instructions per request | **hypervisor instructions per request** | exits per request | hypercalls per request |
|---|---:|---:|---:|---:|---:|---:|---:|
{ring}
Machine instructions per request are dominated by the guests' own work (filling and
checksumming 4 KiB: 512 words on each side); the hypervisor's share is the notifications,
blocks and domain switches, spread over the batch. With one CPU the producer fills every
free data page (32 at most), publishes them and sleeps; the consumer drains them and
answers. A side notifies only if the other asked (its event index was passed), so when the
100 Hz tick preempts a side in the middle of a batch, the other publishes without a
notification and a notification covers more than 32 requests; where the ticks fall is
fixed by the instruction count, so the figures are exact but differ between the backends.

Commands (AMD-V, the larger ring run; the event-channel runs differ only in modules;
the bochsrc is the hypercall round trip's with `model=ryzen`):

```sh
{svm_cmd}
```

VT-x (`model=corei7_haswell_4770`):

```sh
{vmx_cmd}
```

Serial logs: `build/bench/evtchn-*` and `build/bench/ring-*`.
",
        svm_cmd = svm.map_or("", |r| r.command.as_str()),
        vmx_cmd = vmx.map_or("", |r| r.command.as_str()),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    #[test]
    fn parses_and_differences() {
        let lines: Vec<String> = [
            "[dom2 ringprod.elf] ringprod: bench requests=2048 notifications=64 tsc=9000000 guest_tsc=7000000 calls=200",
            "[dom1 ringcons.elf] ringcons: bench requests=2048 notifications=64 guest_tsc=1000000 calls=150",
            "domain-end: id=2 name=ringcons.elf result=exited code=0 exits=300 freed_table_frames=4",
            "domain-end: id=1 name=ringprod.elf result=exited code=0 exits=250 freed_table_frames=3",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let large = ring_counts(&lines).unwrap();
        assert_eq!(
            (large.items, large.guest, large.calls, large.exits),
            (2048, 8_000_000, 350, 550)
        );
        let small = Counts {
            items: 1024,
            tsc: 4_600_000,
            guest: 4_000_000,
            calls: 200,
            exits: 300,
            notes_a: 32,
            notes_b: 32,
        };
        let p = PerItem::between(&small, &large);
        assert_eq!(p.per_note_a, 32.0);
        assert_eq!(p.hv, (4_400_000.0 - 4_000_000.0) / 1024.0);
        assert!(ring_counts(&lines[..2]).is_err(), "no domain-end lines");
    }
}

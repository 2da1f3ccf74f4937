//! Ring throughput, counted in instructions with one CPU on each backend,
//! from a GRUB ISO (two guests need two boot modules with arguments; PVH
//! boot carries one): QEMU TCG `-icount shift=7` for AMD-V, Bochs
//! `corei7_haswell_4770` for VT-x (`crate::isoboot`). `ringprod` /
//! `ringcons` move M MiB through a ring of 32 data pages. (The
//! event-channel round trip is `crate::evbench`.)
//!
//! Each side counts its own instructions between hypercalls
//! (`pvabi::guest::meter`); the driver's TSC span minus both guests' own
//! ticks is what the hypervisor ran. Every figure is the difference between
//! a run of size 2X and one of size X, divided by X: the constant set-up
//! and tear-down cancel, so each is a per-item marginal cost. The 2X run
//! is made twice and must give identical figures.

use std::fmt::Write as _;
use std::path::Path;

use xtask::bail;
use xtask::error::{Context, Result};
use xtask::serial::{self, DomainEnd};

pub use crate::isoboot::Backend;
use crate::isoboot::{self, module};

/// MiB in the smaller ring run (the larger has twice).
pub const RING_MIB: u64 = 4;

/// What one run counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Items: ring requests.
    pub items: u64,
    /// The driver's TSC span in instructions (every instruction of the
    /// machine).
    pub tsc: u64,
    /// Both guests' own instructions between hypercalls.
    pub guest: u64,
    /// Hypercalls of both guests.
    pub calls: u64,
    /// VM exits of both domains (whole life).
    pub exits: u64,
    /// Notifications the producer sent.
    pub notes_a: u64,
    /// Notifications the consumer sent.
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

fn ring_counts(b: Backend, lines: &[String]) -> Result<Counts> {
    let (p, c) = ("ringprod: bench ", "ringcons: bench ");
    Ok(Counts {
        items: field(lines, p, "requests")?,
        tsc: b.insns(field(lines, p, "tsc")?)?,
        guest: b.insns(field(lines, p, "guest_tsc")? + field(lines, c, "guest_tsc")?)?,
        calls: field(lines, p, "calls")? + field(lines, c, "calls")?,
        exits: exits(lines)?,
        notes_a: field(lines, p, "notifications")?,
        notes_b: field(lines, c, "notifications")?,
    })
}

/// One backend's ring figures.
#[derive(Debug)]
pub struct Row {
    /// Which backend.
    pub backend: Backend,
    /// Small run, large run, large again.
    pub ring: [Counts; 3],
    /// One run's command (the large ring run).
    pub command: String,
}

impl Row {
    /// Whether the repeated run gave identical counts.
    pub fn deterministic(&self) -> bool {
        self.ring[1] == self.ring[2]
    }
}

/// Runs the ring benchmark on `b`.
pub fn run(b: Backend, kernel: &Path, out_dir: &Path) -> Result<Row> {
    let tag = b.tag();
    let mut ring = [Counts::default(); 3];
    let mut command = String::new();
    for (i, scale) in [1, 2, 2].into_iter().enumerate() {
        let mib = RING_MIB * scale;
        let dir = out_dir.join(format!("ring-{tag}-{i}"));
        let mods = vec![
            module("ringprod", "ringprod.elf", &format!("peer=2 mib={mib}"))?,
            module("ringcons", "ringcons.elf", "peer=1")?,
        ];
        let booted = isoboot::boot(b, kernel, "", mods, &dir)?;
        ring[i] = ring_counts(b, &booted.lines).context(|| format!("{}", dir.display()))?;
        command = booted.command;
        println!("  {} run {}: {mib} MiB through the ring", b.name(), i + 1);
    }
    Ok(Row {
        backend: b,
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
    let mut ring = String::new();
    for r in rows {
        let g = PerItem::between(&r.ring[0], &r.ring[1]);
        // Ignoring write! results: writing to a String cannot fail.
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
## Ring throughput

Two guests on **one** CPU, booted from a GRUB ISO as for the event channels above
(the same machines and `-icount shift={shift}`: figures are TSC counts / {ticks}).
Timers fire per virtual nanosecond, so at shift {shift} the 100 Hz tick comes every
78,125 instructions (Bochs: every 100,000, at `ips=10000000`). At shifts 0 to 3 the
machine stalls in GRUB (nothing on the serial line past GRUB's screen); the shift was
checked on the hypercall round trip: `hcbench` from an ISO at shift {shift} gives (TSC
delta / {ticks}) exactly the figure of the PVH boot at shift 0 above. Each guest counts
its own instructions between hypercalls (`pvabi::guest::meter`); the TSC span minus
both guests' own is what the hypervisor executed. Every figure is the difference
between a run of size 2X and one of size X, divided by X; the 2X run was made twice and
gave identical counts. Exits are from the two domains' `domain-end:` lines.

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

Commands (AMD-V, the larger ring run; the ISO is built like `cargo xtask image --bare --cmdline \"exit=qemu shutdown loglevel=info\"
--module \"target/x86_64-unknown-none/release/ringprod=peer=2 mib=8\" --module
target/x86_64-unknown-none/release/ringcons=peer=1`, the modules named `*.elf`):

```sh
{svm_cmd}
```

VT-x (the same ISO with `exit=bochs`; the bochsrc is the hypercall round trip's):

```sh
{vmx_cmd}
```

Serial logs: `build/bench/ring-*`.
",
        shift = isoboot::ICOUNT_SHIFT,
        ticks = Backend::Svm.ticks_per_insn(),
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
        let large = ring_counts(Backend::Vmx, &lines).unwrap();
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
        assert!(
            ring_counts(Backend::Vmx, &lines[..2]).is_err(),
            "no domain-end lines"
        );
        let svm = ring_counts(Backend::Svm, &lines);
        assert!(svm.is_err(), "tsc=9000000 is not a multiple of 128");
    }
}

//! Event-channel round trip, `evping bench` / `evpong bench`
//! (guests/src/bin/evping.rs), on each backend, on one CPU and across two,
//! with `HC_EVTCHN_SEND_WAIT` (pvabi 1.4, one call per side and round
//! trip) and with the 1.1 path (`three_calls`: send, block, poll).
//!
//! What is counted, per round trip (the difference of a run of 2X round
//! trips and one of X, divided by X; the 2X run is made twice and must
//! give identical figures):
//!
//! - exits (both domains' `domain-end:` lines) and hypercalls (the guests'
//!   meters): exact on every machine.
//! - one CPU: the TSC span is every instruction the machine ran (QEMU
//!   `-icount`, Bochs `clock: sync=none`); minus both guests' own
//!   instructions between hypercalls (`pvabi::guest::meter`) it is the
//!   hypervisor's.
//! - QEMU, any CPU count: the `insncount` plugin counts each CPU's
//!   instructions inside the hypervisor's code (`crate::insncount`), so
//!   two CPUs get an instruction count too. On one CPU the two methods
//!   are compared in the table.
//! - Bochs, two CPUs: repeatable, but its CPUs run side by side and its
//!   TSC advances with their rounds, so the TSC span is the round trip's
//!   latency in per-CPU instructions, not a count; Bochs gives the guest
//!   no per-CPU instruction counter to report instead.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use xtask::bail;
use xtask::error::{Context, Result};
use xtask::serial::{self, DomainEnd};

use crate::insncount::{self, Plugin};
use crate::isoboot::{self, Backend, Machine, module};
use xtask::iso::Module;

/// Round trips in the smaller run (the larger has twice).
pub const ROUNDS: u64 = 1000;

/// One configuration of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// CPUs of the machine.
    pub cpus: u32,
    /// The 1.1 path (send; block; poll) instead of `HC_EVTCHN_SEND_WAIT`.
    pub three_calls: bool,
}

/// Every configuration, in table order.
pub const CONFIGS: [Config; 4] = [
    Config {
        cpus: 1,
        three_calls: false,
    },
    Config {
        cpus: 1,
        three_calls: true,
    },
    Config {
        cpus: 2,
        three_calls: false,
    },
    Config {
        cpus: 2,
        three_calls: true,
    },
];

impl Config {
    fn path(self) -> &'static str {
        if self.three_calls {
            "three calls (1.1)"
        } else {
            "`HC_EVTCHN_SEND_WAIT`"
        }
    }
    /// The two guests for `rounds` round trips (evpong answers, evping
    /// measures), on this configuration's path.
    pub fn modules(self, rounds: u64) -> Result<Vec<Module>> {
        let extra = if self.three_calls { " three_calls" } else { "" };
        Ok(vec![
            module(
                "evpong",
                "evpong.elf",
                &format!("peer=2 rounds={rounds} bench{extra}"),
            )?,
            module(
                "evping",
                "evping.elf",
                &format!("peer=1 rounds={rounds} bench{extra}"),
            )?,
        ])
    }
    fn tag(self) -> String {
        format!(
            "{}cpu-{}",
            self.cpus,
            if self.three_calls { "three" } else { "sw" }
        )
    }
}

/// What one run counted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Counts {
    /// Round trips.
    pub rounds: u64,
    /// evping's TSC span over its loop, in ticks.
    pub tsc: u64,
    /// Both guests' own ticks between hypercalls.
    pub guest: u64,
    /// Hypercalls of both guests.
    pub calls: u64,
    /// VM exits of both domains (whole life).
    pub exits: u64,
    /// The plugin's counts per CPU (QEMU only; whole run).
    pub cpus: Vec<insncount::Cpu>,
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

fn counts(lines: &[String]) -> Result<Counts> {
    let (p, q) = ("evping: bench ", "evpong: bench ");
    let ends = DomainEnd::all(lines)?;
    if ends.len() != 2 || ends.iter().any(|d| d.result != "exited" || d.code != 0) {
        bail!("the two guests did not both exit 0: {ends:?}");
    }
    Ok(Counts {
        rounds: field(lines, p, "rounds")?,
        tsc: field(lines, p, "tsc")?,
        guest: field(lines, p, "guest_tsc")? + field(lines, q, "guest_tsc")?,
        calls: field(lines, p, "calls")? + field(lines, q, "calls")?,
        exits: ends.iter().map(|d| d.exits).sum(),
        cpus: Vec::new(),
    })
}

/// One backend and configuration: the small run, the large run, the
/// large again.
#[derive(Debug)]
pub struct Row {
    /// Which machine.
    pub backend: Backend,
    /// Which configuration.
    pub config: Config,
    /// The three runs.
    pub runs: [Counts; 3],
    /// The large run's command.
    pub command: String,
}

/// Per round trip.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PerTrip {
    /// Exits.
    pub exits: f64,
    /// Hypercalls.
    pub calls: f64,
    /// TSC ticks over the backend's ticks per instruction.
    pub tsc: f64,
    /// The same minus the guests' own.
    pub hv_tsc: f64,
    /// Hypervisor instructions per CPU (plugin; empty without it).
    pub hv_cpus: Vec<f64>,
    /// Other instructions (guests) over all CPUs (plugin; an upper
    /// bound, see [`Row::deterministic`]).
    pub other: f64,
}

impl Row {
    /// Whether the repeated run must give identical counts: everywhere but
    /// on QEMU with two CPUs, whose TCG runs the CPUs in turns that depend
    /// on when its I/O thread fires timers (measured: identical runs differ
    /// by a few exits and about 2 % of the instructions, firmware and
    /// GRUB included), so its figures are given for both large runs.
    pub fn exact(&self) -> bool {
        self.config.cpus == 1 || self.backend == Backend::Vmx
    }

    /// Whether the repeated run gave identical counts (where it must).
    /// The plugin's count outside the hypervisor is left out: it counts
    /// whole translation blocks, which QEMU may cut differently from run
    /// to run in the firmware (seen: 0.05 % apart on one CPU).
    pub fn deterministic(&self) -> bool {
        let key = |c: &Counts| {
            let hv: Vec<u64> = c.cpus.iter().map(|x| x.hv).collect();
            (c.rounds, c.tsc, c.guest, c.calls, c.exits, hv)
        };
        !self.exact() || key(&self.runs[1]) == key(&self.runs[2])
    }

    /// The large run minus the small, per round trip.
    pub fn per_trip(&self) -> PerTrip {
        self.per_trip_with(1)
    }

    /// The same with the repeated large run.
    pub fn per_trip_again(&self) -> PerTrip {
        self.per_trip_with(2)
    }

    fn per_trip_with(&self, large: usize) -> PerTrip {
        let (s, l) = (&self.runs[0], &self.runs[large]);
        let n = l.rounds.saturating_sub(s.rounds).max(1) as f64;
        let d = |a: u64, b: u64| (a as f64 - b as f64) / n;
        let t = self.backend.ticks_per_insn() as f64;
        let hv_cpus: Vec<f64> = l
            .cpus
            .iter()
            .zip(&s.cpus)
            .map(|(a, b)| d(a.hv, b.hv))
            .collect();
        let other = l
            .cpus
            .iter()
            .zip(&s.cpus)
            .map(|(a, b)| d(a.other, b.other))
            .sum();
        PerTrip {
            exits: d(l.exits, s.exits),
            calls: d(l.calls, s.calls),
            tsc: d(l.tsc, s.tsc) / t,
            hv_tsc: (d(l.tsc, s.tsc) - d(l.guest, s.guest)) / t,
            hv_cpus,
            other,
        }
    }
}

/// Runs `configs` on `b`; `plugin` counts per CPU under QEMU.
pub fn run(
    b: Backend,
    configs: &[Config],
    plugin: Option<&Plugin>,
    kernel: &Path,
    out_dir: &Path,
) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for &config in configs {
        let mut runs: [Counts; 3] = Default::default();
        let mut command = String::new();
        for (i, scale) in [1, 2, 2].into_iter().enumerate() {
            let rounds = ROUNDS * scale;
            let dir = out_dir.join(format!("evtchn-{}-{}-{i}", b.tag(), config.tag()));
            let mods = config.modules(rounds)?;
            let counts_file: PathBuf = dir.join("insncount.txt");
            let _ = std::fs::remove_file(&counts_file);
            let m = Machine {
                cpus: config.cpus,
                plugin: match (b, plugin) {
                    (Backend::Svm, Some(p)) => Some(p.arg(&counts_file)),
                    _ => None,
                },
                ..Machine::default()
            };
            let booted = isoboot::boot_on(b, &m, kernel, "", mods, &dir)?;
            let mut c = counts(&booted.lines).context(|| format!("{}", dir.display()))?;
            if m.plugin.is_some() {
                c.cpus = insncount::read(&counts_file)?;
            }
            if config.cpus == 1 && c.tsc % b.ticks_per_insn() != 0 {
                bail!(
                    "{}: TSC span {} is not a whole number of instructions",
                    dir.display(),
                    c.tsc
                );
            }
            println!(
                "  {} {} CPU(s) {} run {}: {rounds} round trips, {} exits",
                b.name(),
                config.cpus,
                config.path(),
                i + 1,
                c.exits
            );
            runs[i] = c;
            command = booted.command;
        }
        rows.push(Row {
            backend: b,
            config,
            runs,
            command,
        });
    }
    Ok(rows)
}

fn f2(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

/// The table's lines.
pub fn table(rows: &[Row]) -> String {
    let mut t = String::new();
    for r in rows {
        let p = r.per_trip();
        let q = r.per_trip_again();
        // Both large runs where they may differ: "a ~ b".
        let both = |a: f64, b: f64| {
            if r.exact() || format!("{a:.2}") == format!("{b:.2}") {
                f2(a)
            } else {
                format!("{} ~ {}", f2(a), f2(b))
            }
        };
        let (hv, split) = if p.hv_cpus.is_empty() {
            if r.config.cpus == 1 {
                (format!("**{}**", f2(p.hv_tsc)), "—".to_string())
            } else {
                ("—".to_string(), "—".to_string())
            }
        } else {
            let sum: f64 = p.hv_cpus.iter().sum();
            let sum2: f64 = q.hv_cpus.iter().sum();
            let each: Vec<String> = p
                .hv_cpus
                .iter()
                .zip(&q.hv_cpus)
                .map(|(a, b)| both(*a, *b))
                .collect();
            (format!("**{}**", both(sum, sum2)), each.join(" / "))
        };
        let tsc = if r.config.cpus == 1 {
            f2(p.tsc)
        } else {
            format!("({} ticks)", both(p.tsc, q.tsc))
        };
        let hv_tsc = if r.config.cpus == 1 {
            f2(p.hv_tsc)
        } else {
            "—".into()
        };
        // Ignoring write! results: writing to a String cannot fail.
        let _ = writeln!(
            t,
            "| {} | {} | {} | **{}** | {} | {hv} | {split} | {tsc} | {hv_tsc} |",
            r.backend.name(),
            r.config.cpus,
            r.config.path(),
            both(p.exits, q.exits),
            both(p.calls, q.calls),
        );
    }
    t
}

/// The markdown section.
pub fn section(rows: &[Row]) -> String {
    let cmd = |b: Backend| {
        rows.iter()
            .rev()
            .find(|r| r.backend == b && r.config.cpus == 2 && !r.config.three_calls)
            .map_or("", |r| r.command.as_str())
            .to_string()
    };
    format!(
        "\
## Event-channel round trip

Two guests, `evping bench` and `evpong bench` (guests/src/bin/evping.rs), booted from a
GRUB ISO (two modules with arguments; PVH boot carries one): AMD-V under QEMU TCG `-cpu
{qemu_cpu}` with `-icount shift={shift},align=off,sleep=off`, VT-x under Bochs 2.7
`corei7_haswell_4770` with `clock: sync=none`. With `HC_EVTCHN_SEND_WAIT` (pvabi 1.4)
each side makes one call per round trip: send on its port and sleep until the other
side's answer makes it pending (on one CPU the hypervisor switches directly to the woken
side). With `three_calls` both use the 1.1 path instead (send; block; poll). Every
figure is the difference between a run of {large} round trips and one of {small},
divided by {small}, so set-up, tear-down and boot cancel; the larger run was made twice
and gave identical counts (checked by `cargo xtask bench`), except on QEMU with two
CPUs: there TCG runs the CPUs in turns that depend on when its I/O thread fires the
timers, and identical runs differ (by a few exits, and about 2 % of the instructions,
the firmware's and GRUB's included). Those rows give both large runs' figures, `a ~ b`:
ranges, not exact counts.

- *Exits* are from the two domains' `domain-end:` lines (timer ticks included),
  *hypercalls* from the guests' meters: exact on every machine.
- **Hypervisor instructions, AMD-V**: the `insncount` QEMU plugin
  (tools/insncount, built and loaded by `cargo xtask bench`) counts, per CPU, the
  instructions executed inside the hypervisor's code (its executable range; guests
  are linked at 2 MiB, outside it: checked), idle loop and interrupt handlers
  included. It counts an instruction when it starts, so the `VMMCALL` that exits
  counts 1 there (0 for `-icount`). Per-CPU counts are what makes the two-CPU
  figure an instruction count: under `-icount` the TSC is one clock shared by all
  CPUs (it advances with whichever CPU runs, and jumps when all halt), so a TSC
  span across two CPUs is neither CPU's path. On one CPU the plugin's count is
  exact and repeatable; on two it is exact for each run, and runs differ (above).
- **Hypervisor instructions, one CPU, from the TSC** (both backends): at shift
  {shift} every instruction advances QEMU's TSC by {ticks} (figures are TSC / {ticks},
  checked to be whole); Bochs' TSC is its instruction count. The span minus both
  guests' own instructions between hypercalls (`pvabi::guest::meter`: the TSC read
  just before each hypercall instruction and just after it returns) is what the
  hypervisor executed (about five instructions of the meter per hypercall fall on
  the hypervisor's side). On AMD-V this and the plugin's figure check each other.
- **VT-x, two CPUs**: Bochs (single-threaded, `clock: sync=none`) repeats two-CPU
  runs exactly, but it runs its CPUs side by side (in turns of up to `quantum`
  instructions each) and its TSC advances with the rounds, not with each CPU's
  instructions: the span per round trip (in brackets) is below the one-CPU
  machine total, a latency in per-CPU instructions, not a sum over CPUs. Bochs
  gives the guest no per-CPU instruction count; one could come from the
  hypervisor counting each CPU's halted TSC (with `quantum=1` a CPU that is not
  halted runs one instruction per tick), not done here.

| backend | CPUs | path | **exits per round trip** | hypercalls per round trip | **hypervisor instructions per round trip** | of which CPU 0 / CPU 1 (plugin) | machine instructions per round trip (TSC) | hypervisor, TSC − guests |
|---|---:|---|---:|---:|---:|---:|---:|---:|
{table}
Across two CPUs each side runs on its own CPU: the woken vCPU is placed on the idle
CPU and sent a reschedule IPI (no direct switch), and each CPU halts in its idle loop
while the other side works.

Commands (the larger two-CPU run; the others differ in `-smp`, `rounds=` and
`three_calls`; the ISO is built like `cargo xtask image --bare --cmdline \"exit=qemu shutdown
loglevel=info\" --module \"target/x86_64-unknown-none/release/evpong=peer=2 rounds=2000
bench\" --module \"target/x86_64-unknown-none/release/evping=peer=1 rounds=2000 bench\"`,
the modules named `*.elf`). AMD-V:

```sh
{svm_cmd}
```

VT-x (the same ISO with `exit=bochs`; the bochsrc is the hypercall round trip's with
`count=2`):

```sh
{vmx_cmd}
```

Serial logs and plugin counts: `build/bench/evtchn-*`.
",
        qemu_cpu = xtask::qemu::TCG_CPU,
        shift = isoboot::ICOUNT_SHIFT,
        ticks = Backend::Svm.ticks_per_insn(),
        small = ROUNDS,
        large = 2 * ROUNDS,
        table = table(rows),
        svm_cmd = cmd(Backend::Svm),
        vmx_cmd = cmd(Backend::Vmx),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    #[test]
    fn parses_and_differences() {
        let lines: Vec<String> = [
            "[dom2 evping.elf] evping: bench rounds=2000 tsc=12800 guest_tsc=1280 calls=4000",
            "[dom1 evpong.elf] evpong: bench rounds=2000 guest_tsc=2560 calls=4002",
            "domain-end: id=1 name=evpong.elf result=exited code=0 exits=4010 freed_table_frames=3",
            "domain-end: id=2 name=evping.elf result=exited code=0 exits=4012 freed_table_frames=3",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let large = counts(&lines).unwrap();
        assert_eq!(
            (large.rounds, large.guest, large.calls, large.exits),
            (2000, 3840, 8002, 8022)
        );
        let mut small = large.clone();
        small.rounds = 1000;
        small.tsc = 6400;
        small.guest = 1920;
        small.exits = 4022;
        let mut l = large;
        l.cpus = vec![insncount::Cpu { hv: 5000, other: 9 }];
        small.cpus = vec![insncount::Cpu { hv: 3000, other: 4 }];
        let r = Row {
            backend: Backend::Svm,
            config: CONFIGS[0],
            runs: [small, l.clone(), l],
            command: String::new(),
        };
        let p = r.per_trip();
        assert_eq!(p.exits, 4.0);
        assert_eq!(p.tsc, 6400.0 / 1000.0 / 128.0);
        assert_eq!(p.hv_cpus, vec![2.0]);
        assert_eq!(p.other, 0.005);
        assert!(r.deterministic());
        assert!(counts(&lines[..2]).is_err(), "no domain-end lines");
    }
}

//! Domain creation and what an idle domain costs the hypervisor, from the
//! `mkbench` control domain (guests/src/bin/mkbench.rs) with `mkchild`
//! images, on each backend from a GRUB ISO with the hypervisor's `dom0`
//! option (`crate::isoboot`: instructions from TSC deltas).
//!
//! - Creation: the TSC just before `HC_DOMCTL_CREATE` (mkbench), at the
//!   child's first instruction and at the start of its `main` (mkchild, by
//!   the runtime's entry-TSC stub). Everything the one CPU ran in between
//!   is counted: the hypervisor's create, mkbench's unpause and yield, the
//!   switch, the child's runtime start-up, and the timer ticks that fall
//!   in the span.
//! - Idle domains: `HC_DOMCTL_HOST_INFO`'s free bytes and heap bytes
//!   before and after creating N paused domains of the least memory.

use std::fmt::Write as _;
use std::path::Path;

use xtask::bail;
use xtask::error::{Context, Result};
use xtask::serial::{self, DomainEnd};

use crate::isoboot::{self, Backend, module};

/// Creations per boot.
pub const CREATIONS: u64 = 5;
/// Idle domains created at once.
pub const IDLE: u64 = 16;
/// Boots per backend; their figures must be identical.
const RUNS: usize = 2;

/// One creation, in instructions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Creation {
    /// From before the create call to the child's first instruction.
    pub to_entry: u64,
    /// From before the create call to the start of the child's `main`.
    pub to_main: u64,
}

/// The idle-domain measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Idle {
    /// Domains created.
    pub domains: u64,
    /// Memory asked for each.
    pub memory_bytes: u64,
    /// Pages each holds (`DomainInfo::current_pages`).
    pub pages: u64,
    /// Free bytes before and after.
    pub free: (u64, u64),
    /// Heap bytes in use before and after.
    pub heap: (u64, u64),
    /// Nested-table frames of one such domain, from the hypervisor's log.
    pub table_frames: u64,
}

impl Idle {
    /// Bytes of frames the hypervisor keeps per domain beyond its memory.
    pub fn frame_bytes(&self) -> f64 {
        let n = self.domains.max(1) as f64;
        (self.free.0 as f64 - self.free.1 as f64) / n - (self.pages * 4096) as f64
    }

    /// Heap bytes per domain.
    pub fn heap_bytes(&self) -> f64 {
        (self.heap.1 as f64 - self.heap.0 as f64) / self.domains.max(1) as f64
    }
}

/// One boot's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Every creation, in order.
    pub creations: Vec<Creation>,
    /// The idle domains.
    pub idle: Idle,
}

fn field(line: &str, key: &str) -> Result<u64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(serial::parse_number)
        .ok_or_else(|| xtask::error::Error::new(format!("`{key}=` missing in `{line}`")))
}

impl Sample {
    /// From the serial lines of a boot on `b`.
    pub fn parse(b: Backend, lines: &[String]) -> Result<Self> {
        if let Some(l) = lines.iter().find(|l| l.contains("FAILED")) {
            bail!("{l}");
        }
        if !lines.iter().any(|l| l.contains("mkbench: done")) {
            bail!("no `mkbench: done` line");
        }
        let mut creations = Vec::new();
        for l in lines.iter().filter(|l| l.contains("mkbench: run=")) {
            let id = field(l, "id")?;
            let t0 = field(l, "create_tsc")?;
            let Some(child) = serial::console(lines, id, "mkchild").into_iter().next() else {
                bail!("domain {id} printed nothing")
            };
            let entry = field(child, "entry_tsc")?;
            let main = field(child, "main_tsc")?;
            if entry < t0 || main < entry {
                bail!("TSC readings out of order: {t0} {entry} {main}");
            }
            creations.push(Creation {
                to_entry: b.insns(entry - t0)?,
                to_main: b.insns(main - t0)?,
            });
        }
        let Some(l) = lines.iter().find(|l| l.contains("mkbench: idle domains=")) else {
            bail!("no `mkbench: idle` line")
        };
        // `domain N (mkchild): ... 3 nested-table frames, paused`
        let table_frames = lines
            .iter()
            .find(|l| l.contains("(mkchild):") && l.contains("nested-table frames"))
            .and_then(|l| {
                let words: Vec<&str> = l.split_whitespace().collect();
                let at = words.iter().position(|w| *w == "nested-table")?;
                words.get(at.checked_sub(1)?)?.parse().ok()
            })
            .unwrap_or(0);
        Ok(Self {
            creations,
            idle: Idle {
                domains: field(l, "domains")?,
                memory_bytes: field(l, "memory_bytes")?,
                pages: field(l, "pages")?,
                free: (field(l, "free_before")?, field(l, "free_after")?),
                heap: (field(l, "heap_before")?, field(l, "heap_after")?),
                table_frames,
            },
        })
    }
}

/// One backend's figures.
#[derive(Debug)]
pub struct Row {
    /// Which backend.
    pub backend: Backend,
    /// Every boot's figures.
    pub runs: Vec<Sample>,
    /// One boot's command.
    pub command: String,
}

impl Row {
    /// Whether every boot gave the same figures.
    pub fn deterministic(&self) -> bool {
        self.runs.windows(2).all(|w| w[0] == w[1])
    }
}

/// Boots mkbench [`RUNS`] times on `b`.
pub fn run(b: Backend, kernel: &Path, out_dir: &Path) -> Result<Row> {
    let mut runs = Vec::new();
    let mut command = String::new();
    for run in 0..RUNS {
        let dir = out_dir.join(format!("mkbench-{}-{run}", b.tag()));
        let mods = vec![
            module(
                "mkbench",
                "mkbench.elf",
                &format!("runs={CREATIONS} idle={IDLE}"),
            )?,
            module("mkchild", "mkchild.elf", "")?,
        ];
        let booted = isoboot::boot(b, kernel, "dom0", mods, &dir)?;
        let s = Sample::parse(b, &booted.lines).context(|| format!("{}", dir.display()))?;
        if DomainEnd::all(&booted.lines)?.is_empty() {
            bail!("{}: no domain ended", dir.display());
        }
        println!(
            "  {} run {}: create to entry {:?}, idle domain {:.0} + {:.0} bytes",
            b.name(),
            run + 1,
            s.creations.iter().map(|c| c.to_entry).collect::<Vec<_>>(),
            s.idle.frame_bytes(),
            s.idle.heap_bytes()
        );
        runs.push(s);
        command = booted.command;
    }
    Ok(Row {
        backend: b,
        runs,
        command,
    })
}

/// `a / b / c` and, when they differ, the minimum and median.
fn spread(v: &[u64]) -> String {
    let all: Vec<String> = v.iter().map(u64::to_string).collect();
    let mut sorted = v.to_vec();
    sorted.sort_unstable();
    if sorted.first() == sorted.last() {
        return format!("{} (all equal)", all.join(" / "));
    }
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0);
    let min = sorted.first().copied().unwrap_or(0);
    format!("{} (min {min}, median {median})", all.join(" / "))
}

fn f1(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// The markdown section.
pub fn section(rows: &[Row]) -> String {
    let mut create = String::new();
    let mut idle = String::new();
    for r in rows {
        let Some(s) = r.runs.first() else { continue };
        let entry: Vec<u64> = s.creations.iter().map(|c| c.to_entry).collect();
        let main: Vec<u64> = s.creations.iter().map(|c| c.to_main).collect();
        let start: Vec<u64> = s.creations.iter().map(|c| c.to_main - c.to_entry).collect();
        // Ignoring write! results: writing to a String cannot fail.
        let _ = writeln!(
            create,
            "| {} | {} | {} | {} | {} |",
            r.backend.name(),
            r.backend.machine(),
            spread(&entry),
            spread(&main),
            spread(&start),
        );
        let i = &s.idle;
        let frames = i.frame_bytes();
        let tables = (i.table_frames * 4096) as f64;
        let _ = writeln!(
            idle,
            "| {} | {} × {} MiB ({} pages) | **{}** | {} | {} | {} | {} |",
            r.backend.name(),
            i.domains,
            i.memory_bytes >> 20,
            i.pages,
            f1(frames + i.heap_bytes()),
            f1(frames),
            f1(tables),
            f1(frames - tables),
            f1(i.heap_bytes()),
        );
    }
    let cmd = rows.first().map_or("", |r| r.command.as_str());
    format!(
        "\
## Domain creation

The `mkbench` control domain (`guests/src/bin/mkbench.rs`, module 0 with the hypervisor's
`dom0` option, one CPU, GRUB ISO; instructions from TSC deltas as for the event channels
below) creates a `mkchild` domain ({mib} MiB, 1 vCPU) {creations} times, one after the
other: it reads the TSC (`lfence; rdtsc`), calls `HC_DOMCTL_CREATE`, `HC_DOMCTL_UNPAUSE`,
yields, and waits until the child is gone. `mkchild` is built with
`pvabi::entry_point!(main, entry_tsc)`, whose entry stub reads the TSC as the guest's very
first instruction (`pvabi::guest::entry_tsc()`); its `main` reads it again first thing.
Counted: everything the one CPU executed in between, the hypervisor's create (memory
zeroed, image loaded, nested tables and the vCPU built) and unpause, mkbench's own few
instructions around the calls and its yield, the domain switch, the child's runtime up to
`main`, and the timer ticks that fall in the span.

| backend | machine | **create → first instruction** (creations 1 / … / {creations}) | **create → `main`** | first instruction → `main` |
|---|---|---:|---:|---:|
{create}
Both boots per backend gave identical figures (checked by `cargo xtask bench`).

## Memory per idle domain

`mkbench` then creates {idle_n} domains of the least memory ({mib} MiB, 1 vCPU) and leaves
them paused (never run); `HC_DOMCTL_HOST_INFO` before and after gives the free frames
(`free_bytes`) and the hypervisor heap in use (`heap_used_bytes`, pvabi 1.3). Per domain:
*frames* = free bytes lost / {idle_n} − the domain's own pages; *nested tables* is the
count the hypervisor logs for the domain; *other frames* are the rest (one page here:
the vCPU's VMCB on AMD-V, its VMCS on VT-x); *heap* = heap bytes gained / {idle_n} (the
domain's and its vCPU's bookkeeping, as the allocator counts bytes in use).

| backend | domains | **bytes per idle domain** (frames + heap) | frames | of which nested tables | other frames | heap |
|---|---|---:|---:|---:|---:|---:|
{idle}
Command (AMD-V; VT-x is the same ISO with `exit=bochs` under Bochs, as for the rings):

```sh
{cmd}
```

Serial logs: `build/bench/mkbench-*`.

",
        mib = crate::mkbench::IDLE_MIB,
        creations = CREATIONS,
        idle_n = IDLE,
    )
}

/// The children's memory in MiB (`DOMCTL_MEMORY_MIN`).
pub const IDLE_MIB: u64 = 4;

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    fn lines() -> Vec<String> {
        [
            "[cpu0 INFO ] domain 2 (mkchild): 4 MiB, 1 vCPUs, weight 256, cap 0, entry 0x200844, 3 nested-table frames, paused",
            "[dom2 mkchild] mkchild: entry_tsc=15853277440 main_tsc=15853283840",
            "[dom1 mkbench] mkbench: run=1 id=2 create_tsc=15775932928",
            "[dom1 mkbench] mkbench: idle domains=16 memory_bytes=4194304 pages=1024 free_before=123564032 free_after=56193024 heap_before=20240 heap_after=178160",
            "[dom1 mkbench] mkbench: done",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    #[test]
    fn parses_a_boot() {
        let s = Sample::parse(Backend::Svm, &lines()).unwrap();
        assert_eq!(
            s.creations,
            vec![Creation {
                to_entry: 604_254,
                to_main: 604_304
            }]
        );
        assert_eq!(s.idle.table_frames, 3);
        assert_eq!(s.idle.frame_bytes(), 16384.0);
        assert_eq!(s.idle.heap_bytes(), 9870.0);
        // Bochs ticks are instructions: the same lines, unscaled.
        let v = Sample::parse(Backend::Vmx, &lines()).unwrap();
        assert_eq!(v.creations[0].to_entry, 604_254 * 128);
    }

    #[test]
    fn refuses_incomplete_logs() {
        let mut l = lines();
        l.pop();
        assert!(Sample::parse(Backend::Svm, &l).is_err(), "no done line");
        let mut l = lines();
        l[1] = "[dom2 mkchild] mkchild: FAILED: no entry TSC".into();
        assert!(Sample::parse(Backend::Svm, &l).is_err());
        let mut l = lines();
        l.remove(1);
        assert!(Sample::parse(Backend::Svm, &l).is_err(), "child silent");
    }

    #[test]
    fn spreads() {
        assert_eq!(spread(&[5, 5, 5]), "5 / 5 / 5 (all equal)");
        assert_eq!(spread(&[9, 5, 7]), "9 / 5 / 7 (min 5, median 7)");
    }
}

//! The longest single exit under flooding guests (issue 12, bounded
//! exits), on both backends, in instructions.
//!
//! One boot per backend (`crate::isoboot`: QEMU TCG `-icount shift=7`, or
//! Bochs at one tick per instruction; one CPU) with the modules of the boot
//! test `bounded`: four `flood` guests (console writes, multicalls of
//! console writes, multicalls of 512-page memory ops, multicalls of grant
//! ops), each for 1 s of its own clock, and the `victim` sleeping 50 ms
//! twenty times. The hypervisor measures each exit with the TSC, from the
//! VM exit to the decision to enter again (handling, the console drain,
//! the host interrupt taken meanwhile), and reports each domain's longest
//! in its `domain-end:` line (`max_exit_ticks=`); ticks are instructions
//! here. The victim's own worst wake-up lateness is reported beside it.

use std::path::Path;

use xtask::bail;
use xtask::error::Result;

use crate::isoboot::{self, Backend};

/// The flood kinds, as domain names `flood-<kind>`.
pub const KINDS: [&str; 4] = ["console", "multicall", "mem", "grant"];

/// One backend's figures.
#[derive(Debug, Clone)]
pub struct Row {
    pub backend: Backend,
    /// Longest exit of each flood domain, in instructions ([`KINDS`] order).
    pub max_exit: Vec<u64>,
    /// The victim's longest exit.
    pub victim_exit: u64,
    /// The victim's worst wake-up lateness, microseconds of its clock.
    pub victim_late_us: u64,
    /// The slice the hypervisor reported, microseconds.
    pub slice_us: u64,
    /// The most busy LSR reads (UART not ready) in one console operation
    /// after domains started, and the most bytes one handed to the UART
    /// (the `serial:` line).
    pub uart_wait_polls: u64,
    pub uart_burst: u64,
    pub command: String,
}

fn number(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

/// Boots the flood set on `b` and reads the figures.
pub fn run(b: Backend, kernel: &Path, out_dir: &Path) -> Result<Row> {
    let mut modules = Vec::new();
    for k in KINDS {
        modules.push(isoboot::module(
            "flood",
            &format!("flood-{k}"),
            &format!("kind={k} start_ms=130 ms=1000"),
        )?);
    }
    modules.push(isoboot::module(
        "victim",
        "victim",
        "delay_ms=0 ms=50 n=20",
    )?);
    let dir = out_dir.join(format!("bounded-{}", b.tag()));
    let booted = isoboot::boot(b, kernel, "", modules, &dir)?;
    let lines = &booted.lines;
    let exit_of = |name: &str| -> Result<u64> {
        let line = lines
            .iter()
            .find(|l| l.contains("domain-end:") && l.contains(&format!(" name={name} ")))
            .ok_or_else(|| {
                xtask::error::Error::new(format!("{}: no domain-end line for {name}", b.name()))
            })?;
        if !line.contains("result=exited code=0") {
            bail!("{}: {name} did not exit cleanly: {line}", b.name());
        }
        let ticks = number(line, "max_exit_ticks").ok_or_else(|| {
            xtask::error::Error::new(format!("{}: no max_exit_ticks in `{line}`", b.name()))
        })?;
        b.insns(ticks)
    };
    let max_exit = KINDS
        .iter()
        .map(|k| exit_of(&format!("flood-{k}")))
        .collect::<Result<Vec<_>>>()?;
    let victim_exit = exit_of("victim")?;
    let victim_late_us = lines
        .iter()
        .find_map(|l| number(l.split_once("victim: ")?.1, "worst_late_us"))
        .ok_or_else(|| {
            xtask::error::Error::new(format!("{}: the victim did not report", b.name()))
        })?;
    let slice_us = lines
        .iter()
        .find_map(|l| number(l, "slice_us"))
        .ok_or_else(|| xtask::error::Error::new(format!("{}: no slice_us= line", b.name())))?;
    let serial = lines
        .iter()
        .find(|l| l.starts_with("serial: "))
        .ok_or_else(|| xtask::error::Error::new(format!("{}: no `serial:` line", b.name())))?;
    let field = |k: &str| {
        number(serial, k)
            .ok_or_else(|| xtask::error::Error::new(format!("{}: no {k}= in `{serial}`", b.name())))
    };
    let (uart_wait_polls, uart_burst) = (field("max_wait_polls")?, field("max_burst_bytes")?);
    let row = Row {
        backend: b,
        uart_wait_polls,
        uart_burst,
        max_exit,
        victim_exit,
        victim_late_us,
        slice_us,
        command: booted.command,
    };
    println!(
        "  {}: longest exit per flood {:?} instructions; victim late at worst {} us (slice {} us); UART: {} busy polls, {} bytes at most in one operation",
        b.name(),
        row.max_exit,
        row.victim_late_us,
        row.slice_us,
        row.uart_wait_polls,
        row.uart_burst
    );
    Ok(row)
}

/// The `## Bounded exits` section of docs/benchmarks.md.
pub fn section(rows: &[Row]) -> String {
    let mut s = String::from("## Bounded exits\n\n");
    s.push_str(
        "The longest single exit (from the VM exit to the decision to enter \
         again: the handling, the console drain, a host interrupt taken \
         meanwhile) each flooding guest caused, in instructions, from the \
         `max_exit_ticks=` of its `domain-end:` line (ticks are instructions \
         on these machines: `tools/xtask/src/isoboot.rs`). One CPU shared by \
         four `flood` guests (each for 1 s of its clock) and the `victim`, \
         which sleeps 50 ms twenty times and reports its worst wake-up \
         lateness by its own clock; the boot test `bounded` requires that \
         within two slices. Taken by `cargo xtask bench --only bounded` \
         (`tools/xtask/src/boundbench.rs`). The two UART rows come from the \
         hypervisor's `serial:` line (printed when it ends): of every \
         console operation after domains started (a line written, a push \
         from the transmit buffer), the most LSR reads that found the \
         transmitter busy and the most bytes handed to the UART; a push \
         never waits and fills at most the 16-byte FIFO \
         (`hypervisor/src/txbuf.rs`).\n\n",
    );
    s.push_str("| flood (per exit) |");
    for r in rows {
        s.push_str(&format!(" {} |", r.backend.name()));
    }
    s.push_str("\n|---|");
    for _ in rows {
        s.push_str("---:|");
    }
    s.push('\n');
    let what = [
        "`console`: 4 KiB console writes",
        "`multicall`: 64 × 4 KiB console writes",
        "`mem`: 64 × 512-page memory ops",
        "`grant`: 64 grant accesses, 64 revokes",
    ];
    for (i, w) in what.iter().enumerate() {
        s.push_str(&format!("| {w} |"));
        for r in rows {
            s.push_str(&format!(" {} |", r.max_exit.get(i).copied().unwrap_or(0)));
        }
        s.push('\n');
    }
    s.push_str("| the victim's own longest exit |");
    for r in rows {
        s.push_str(&format!(" {} |", r.victim_exit));
    }
    s.push_str("\n| victim's worst wake-up lateness (µs of its clock) |");
    for r in rows {
        s.push_str(&format!(" {} |", r.victim_late_us));
    }
    s.push_str("\n| most busy UART polls (THRE clear) in one console operation |");
    for r in rows {
        s.push_str(&format!(" {} |", r.uart_wait_polls));
    }
    s.push_str("\n| most bytes handed to the UART in one console operation |");
    for r in rows {
        s.push_str(&format!(" {} |", r.uart_burst));
    }
    s.push_str("\n| scheduler slice (µs) |");
    for r in rows {
        s.push_str(&format!(" {} |", r.slice_us));
    }
    s.push_str("\n\nMachines: ");
    let machines: Vec<String> = rows.iter().map(|r| r.backend.machine()).collect();
    s.push_str(&machines.join("; "));
    s.push_str(". Commands:\n\n");
    for r in rows {
        s.push_str(&format!("    {}\n", r.command));
    }
    s
}

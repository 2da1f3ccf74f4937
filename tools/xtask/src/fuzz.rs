//! `cargo xtask fuzz [SECONDS] [-- TARGET...]`: builds the libFuzzer
//! targets in `fuzz/` and runs each for a bounded time.
//!
//! No cargo-fuzz and no nightly: cargo-fuzz's `-s none` build is plain
//! Cargo with the coverage instrumentation it asks LLVM for, and those
//! codegen flags (`-C passes=sancov-module`, `-C llvm-args=...`) are stable.
//! So this builds with the pinned toolchain, from the crates.io
//! `libfuzzer-sys` (which compiles libFuzzer with the system C++ compiler),
//! for the explicit host target so the flags reach the targets but not
//! build scripts. Everything lands in `target/fuzz/` (one directory to cache):
//! the binaries, the growing corpus per target (`target/fuzz/corpus/NAME`,
//! kept between runs), and crash inputs (`target/fuzz/artifacts/NAME/`).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use xtask::bail;
use xtask::error::{Context, Error, Result};
use xtask::paths;

use crate::{Args, cargo};

/// The targets, in the order they run (the `[[bin]]`s of fuzz/Cargo.toml).
pub const TARGETS: [&str; 9] = [
    "multiboot2",
    "pvh",
    "elf",
    "cmdline",
    "hypercall",
    "evtchn",
    "grant",
    "ring",
    "store",
];

/// Seconds per target when none is given.
const DEFAULT_SECONDS: u64 = 60;

/// What cargo-fuzz passes to rustc for `-s none` (its `project.rs`):
/// libFuzzer's coverage feedback (8-bit counters, PC table, comparison
/// operands), `cfg(fuzzing)`, and the checks a debug build has.
const RUSTFLAGS: &[&str] = &[
    "-Cpasses=sancov-module",
    "-Cllvm-args=-sanitizer-coverage-level=4",
    "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
    "-Cllvm-args=-sanitizer-coverage-pc-table",
    "-Cllvm-args=-sanitizer-coverage-trace-compares",
    "--cfg",
    "fuzzing",
    "-Cdebug-assertions",
    "-Coverflow-checks",
];

fn fuzz_dir() -> PathBuf {
    paths::repo_root().join("fuzz")
}

fn out_dir() -> PathBuf {
    paths::target_dir().join("fuzz")
}

fn host_triple() -> Result<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(rustc)
        .arg("-vV")
        .output()
        .context(|| "running rustc -vV".into())?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .ok_or_else(|| Error::new("rustc -vV printed no host triple"))
}

fn cargo_in_fuzz(args: &[&str], rustflags: Option<&str>) -> Result<()> {
    let mut cmd = cargo::command(args);
    cmd.current_dir(fuzz_dir())
        .env("CARGO_TARGET_DIR", out_dir());
    match rustflags {
        Some(f) => cmd.env("RUSTFLAGS", f),
        // The seed tests are an ordinary host build.
        None => cmd.env_remove("RUSTFLAGS"),
    };
    let status = cmd
        .status()
        .context(|| format!("starting cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("`cargo {}` in fuzz/ failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Runs every target (or those named) for `seconds` each, one per core at
/// a time; fails if any crashed, naming each input that did and how to
/// replay it.
pub fn fuzz(seconds: u64, only: &[String]) -> Result<()> {
    for t in only {
        if !TARGETS.contains(&t.as_str()) {
            bail!("no fuzz target `{t}` (there are: {})", TARGETS.join(", "));
        }
    }
    // The seeds are current and every seed runs clean (uninstrumented).
    cargo_in_fuzz(&["test", "--quiet"], None)?;
    let triple = host_triple()?;
    cargo_in_fuzz(
        &["build", "--release", "--bins", "--target", &triple],
        Some(&RUSTFLAGS.join(" ")),
    )?;
    let bins = out_dir().join(&triple).join("release");
    let selected: Vec<&str> = TARGETS
        .iter()
        .copied()
        .filter(|t| only.is_empty() || only.iter().any(|o| o == t))
        .collect();
    // Each target runs on one thread: as many at once as there are cores.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let failed = crate::spread::on_workers(selected.clone(), cores, |t| {
        run_target(&bins, t, seconds)
            .map_err(|e| eprintln!("xtask: {e}"))
            .is_ok()
    });
    if !failed.is_empty() {
        bail!("fuzz target(s) failed: {}", failed.join(", "));
    }
    println!(
        "fuzz: {} target(s), {seconds} s each, no crash",
        selected.len()
    );
    Ok(())
}

fn run_target(bins: &Path, name: &str, seconds: u64) -> Result<()> {
    let corpus = out_dir().join("corpus").join(name);
    let artifacts = out_dir().join("artifacts").join(name);
    let seeds = fuzz_dir().join("seeds").join(name);
    let regressions = fuzz_dir().join("regressions").join(name);
    for d in [&corpus, &artifacts] {
        std::fs::create_dir_all(d).context(|| format!("creating {}", d.display()))?;
    }
    let bin = bins.join(name);
    println!("\n==> fuzz {name}: {seconds} s");
    let t = Instant::now();
    // -max_total_time bounds the run; -timeout kills one input that runs
    // over 10 s (a hang is a finding); the first corpus directory is where
    // new inputs are written, the seeds and past crashes are read only.
    // libFuzzer's chatter goes to a log; its summary is printed.
    let log = artifacts.join("last-run.log");
    let log_file = std::fs::File::create(&log).context(|| format!("creating {}", log.display()))?;
    let mut cmd = Command::new(&bin);
    cmd.arg(format!("-max_total_time={seconds}"))
        .arg(format!("-max_total_time={seconds}"))
        .arg("-timeout=10")
        .arg("-rss_limit_mb=2048")
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg(&corpus)
        .arg(&seeds);
    if regressions.is_dir() {
        cmd.arg(&regressions);
    }
    let status = cmd
        .stdout(
            log_file
                .try_clone()
                .context(|| "duplicating the log".into())?,
        )
        .stderr(log_file)
        .status()
        .context(|| format!("starting {}", bin.display()))?;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let runs = text
        .lines()
        .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .map_or("?", str::trim);
    let corpus_line = text
        .lines()
        .rev()
        .find(|l| l.contains(" cov: "))
        .unwrap_or("");
    println!(
        "    {name}: {runs} runs in {:.1} s, {status}; cov:{}",
        t.elapsed().as_secs_f64(),
        corpus_line.split_once(" cov:").map_or("", |(_, c)| c)
    );
    if !status.success() {
        // What libFuzzer said about the crash: the panic and the input.
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        for l in tail.iter().rev() {
            eprintln!("    | {l}");
        }
        bail!(
            "fuzz target {name} found a crash: the input is in {} (replay: {} <file>; full log {}); \
             once fixed, keep the input in fuzz/regressions/{name}/",
            artifacts.display(),
            bin.display(),
            log.display()
        );
    }
    Ok(())
}

/// `cargo xtask fuzz [SECONDS] [-- TARGET...]`.
pub fn run(mut a: Args) -> Result<ExitCode> {
    let only = std::mem::take(&mut a.passthrough);
    let seconds = match a.positional()? {
        Some(s) => s.parse::<u64>().ok().filter(|s| *s > 0).ok_or_else(|| {
            Error::new(format!(
                "seconds per target: `{s}` is not a positive number"
            ))
        })?,
        None => DEFAULT_SECONDS,
    };
    a.finish()?;
    fuzz(seconds, &only)?;
    Ok(ExitCode::SUCCESS)
}

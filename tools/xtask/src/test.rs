//! `cargo xtask test`: every check CI runs, in order, with a summary.

use std::process::ExitCode;
use std::time::Instant;

use xtask::error::Result;
use xtask::paths;

use crate::{Args, cargo};

const KERNEL: &str = "kernel (release)";
const BOOT_TESTS: &str = "boot tests (QEMU, Bochs)";
/// Seconds per fuzz target in the test command's bounded pass.
const FUZZ_SECONDS: &str = "5";

struct Step {
    name: &'static str,
    args: Vec<String>,
    env: &'static [(&'static str, &'static str)],
}

fn step(name: &'static str, args: &[&str]) -> Step {
    Step {
        name,
        args: args.iter().map(|s| s.to_string()).collect(),
        env: &[],
    }
}

pub fn run(mut a: Args) -> Result<ExitCode> {
    let no_lint = a.flag("--no-lint");
    let no_boot = a.flag("--no-boot");
    let no_fuzz = a.flag("--no-fuzz");
    let filter = std::mem::take(&mut a.passthrough);
    a.finish()?;

    // Boot tests run several emulators at once; more than one per core
    // only makes each slower (TCG with -smp 4 already uses 4 threads).
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 4);
    let mut steps = Vec::new();
    if !no_lint {
        steps.push(step("rustfmt", &["fmt", "--all", "--", "--check"]));
        // fuzz/ is its own workspace: `--all` does not reach it.
        steps.push(step(
            "rustfmt (fuzz)",
            &["fmt", "--manifest-path", "fuzz/Cargo.toml", "--", "--check"],
        ));
        steps.push(step(
            "clippy (host)",
            &[
                "clippy",
                "--workspace",
                "--exclude",
                paths::GUESTS_PACKAGE,
                "--exclude",
                paths::DOM0_PACKAGE,
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ));
        steps.push(step(
            "clippy (x86_64-unknown-none)",
            &[
                "clippy",
                "-p",
                paths::KERNEL_PACKAGE,
                "-p",
                "pvabi",
                "-p",
                "kestrel-toolstack",
                "-p",
                paths::GUESTS_PACKAGE,
                "-p",
                paths::DOM0_PACKAGE,
                "--target",
                paths::KERNEL_TARGET,
                "--",
                "-D",
                "warnings",
            ],
        ));
    }
    if !no_lint {
        // The ABI crate's documentation is the contract guests are written
        // against: it must build without a warning (broken links included).
        steps.push(step(
            "docs (pvabi)",
            &[
                "rustdoc",
                "-p",
                "pvabi",
                "--features",
                "guest",
                "--",
                "-D",
                "warnings",
            ],
        ));
    }
    steps.push(step(
        "unit tests (host)",
        &[
            "test",
            "--workspace",
            "--exclude",
            "boot-tests",
            "--exclude",
            paths::GUESTS_PACKAGE,
            "--exclude",
            paths::DOM0_PACKAGE,
        ],
    ));
    // The block / notify / deschedule / wake protocol over every
    // interleaving of its real critical sections (the unit tests above ran
    // those with at most 3 preemptions): hypervisor/src/sched/live/tests.rs.
    let mut interleavings = step(
        "interleavings (exhaustive)",
        &[
            "test",
            "-p",
            paths::KERNEL_PACKAGE,
            "--lib",
            "sched::live::tests",
        ],
    );
    interleavings.env = &[("KESTREL_PREEMPTIONS", "all")];
    steps.push(interleavings);
    if !no_fuzz {
        // A short bounded pass over every fuzz target (seeds, past crashes
        // and what the corpus in target/fuzz/ already holds); run them long
        // with `cargo xtask fuzz SECONDS` (docs/testing.md).
        steps.push(step(
            "fuzz (5 s per target)",
            &["xtask", "fuzz", FUZZ_SECONDS],
        ));
    }
    if !no_boot {
        steps.push(step(KERNEL, &paths::build_args(false)));
        // The hvctl boot test drives the real host binary.
        steps.push(step("hvctl (release)", &paths::HVCTL_BUILD_ARGS));
        let mut boot = step(BOOT_TESTS, &["test", "-p", "boot-tests", "--release", "--"]);
        boot.args.push(format!("--test-threads={threads}"));
        boot.args.extend(filter);
        steps.push(boot);
    }

    let start = Instant::now();
    let mut results: Vec<(&str, Verdict, f64)> = Vec::new();
    let mut kernel_built = true;
    for s in &steps {
        if s.name == BOOT_TESTS && !kernel_built {
            results.push((s.name, Verdict::Skipped, 0.0));
            continue;
        }
        let env: Vec<String> = s.env.iter().map(|(k, v)| format!("{k}={v} ")).collect();
        println!(
            "\n==> {}: {}cargo {}",
            s.name,
            env.concat(),
            s.args.join(" ")
        );
        let t = Instant::now();
        let args: Vec<&str> = s.args.iter().map(String::as_str).collect();
        let verdict = match cargo::run_env(&args, s.env) {
            Ok(()) => Verdict::Ok,
            Err(e) => {
                eprintln!("xtask: {e}");
                Verdict::Failed
            }
        };
        if s.name == KERNEL && verdict != Verdict::Ok {
            kernel_built = false;
        }
        results.push((s.name, verdict, t.elapsed().as_secs_f64()));
    }

    println!("\n==> summary");
    for (name, verdict, secs) in &results {
        let verdict = match verdict {
            Verdict::Ok => "ok",
            Verdict::Failed => "FAILED",
            Verdict::Skipped => "SKIPPED",
        };
        println!("  {verdict:<8} {name:<32} {secs:6.1} s");
    }
    let failed = results.iter().filter(|r| r.1 != Verdict::Ok).count();
    println!("  total {:.1} s", start.elapsed().as_secs_f64());
    if failed == 0 {
        println!("all checks passed");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{failed} check(s) failed or skipped");
        Ok(ExitCode::FAILURE)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Ok,
    Failed,
    /// Not run because a step it needs failed.
    Skipped,
}

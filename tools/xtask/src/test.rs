//! `cargo xtask test`: every check CI runs, in order, with a summary.

use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
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
    /// What to do when it fails, printed under the failure and in the
    /// summary.
    fix: Option<&'static str>,
    /// Run this instead of `cargo <args>` (`args` is then only printed).
    custom: Option<fn() -> Result<()>>,
}

fn step(name: &'static str, args: &[&str]) -> Step {
    Step {
        name,
        args: args.iter().map(|s| s.to_string()).collect(),
        env: &[],
        fix: None,
        custom: None,
    }
}

/// The host unit tests (everything but the bare-metal crates and the boot
/// tests); the interleaving search reuses their build.
const UNIT_TESTS: [&str; 8] = [
    "test",
    "--workspace",
    "--exclude",
    "boot-tests",
    "--exclude",
    paths::GUESTS_PACKAGE,
    "--exclude",
    paths::DOM0_PACKAGE,
];

/// The test filter of the exhaustive interleaving search.
const INTERLEAVINGS: &str = "sched::live::tests";

/// The exhaustive interleaving search, its tests spread over one process
/// per core: each test is one thread's worth of work and the tests of one
/// process take turns (they share the hypervisor's global tables), so one
/// `cargo test` would leave the other cores idle.
fn interleavings() -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    crate::spread::run(
        &UNIT_TESTS,
        paths::KERNEL_PACKAGE,
        INTERLEAVINGS,
        &[("KESTREL_PREEMPTIONS", "all")],
        cores,
    )
}

/// What a formatting failure needs: rustfmt's `--check` only shows a diff.
const FMT_FIX: &str = "run cargo fmt --all";
/// The same for the fuzz workspace, which `--all` does not reach.
const FMT_FUZZ_FIX: &str = "run cargo fmt --manifest-path fuzz/Cargo.toml";

/// `cargo xtask test --help` (and `./test.sh --help`).
pub const HELP: &str = "\
usage: ./test.sh [--no-lint] [--no-fuzz] [--no-boot] [-- FILTER...]
       cargo xtask test [the same options]

Runs every check CI runs, in order, then prints a summary whose last line
names each check that failed (with how to fix it, where known) and each
that was skipped:
  rustfmt, rustfmt (fuzz)     formatting (fix: cargo fmt --all)
  clippy (host, bare metal)   lints, warnings are errors
  docs (pvabi)                the ABI crate's documentation, no warning
  unit tests (host)           cargo test on the host, incl. the run loop
  interleavings               the block/notify/wake protocol, every interleaving
  fuzz                        5 s of each libFuzzer target
  kernel, hvctl (release)     what the boot tests boot and drive
  boot tests                  real images under QEMU (AMD-V) and Bochs (VT-x)
With no FILTER and without --no-boot, the Linux guest kernel (a cold build
takes minutes) is built in the background from the start, under nice, into
its cache; its log is target/linux-prebuild.log.

options:
  --no-lint    leave out rustfmt, clippy and the pvabi docs
  --no-fuzz    leave out the fuzz pass (its first build takes minutes)
  --no-boot    leave out the release kernel and the boot tests
  -- FILTER    run only the boot tests whose name contains FILTER (several
               filters are OR'd), e.g. `./test.sh --no-lint --no-fuzz -- iso`
  -h, --help   this text

environment:
  KESTREL_TEST_TIMEOUT_SCALE=N   multiply every boot test's deadline by N
                                 (busy or slow machines)
Exit status: 0 when every check that ran passed, 1 otherwise.
";

pub fn run(mut a: Args) -> Result<ExitCode> {
    if a.flag("--help") || a.flag("-h") {
        print!("{HELP}");
        return Ok(ExitCode::SUCCESS);
    }
    let no_lint = a.flag("--no-lint");
    let no_boot = a.flag("--no-boot");
    let no_fuzz = a.flag("--no-fuzz");
    let filter = std::mem::take(&mut a.passthrough);
    a.finish()?;
    let whole_boot_suite = !no_boot && filter.is_empty();

    // Boot tests run several emulators at once; more than one per core
    // only makes each slower (TCG with -smp 4 already uses 4 threads), so
    // the boot tests keep them at one per core (`boot_tests::slots`). One
    // test thread more than that: while a test waits for a run another
    // test is making (tests that read one run come one after the other),
    // the extra thread keeps the core it leaves busy.
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 4)
        + 1;
    let mut steps = Vec::new();
    if !no_lint {
        let mut fmt = step("rustfmt", &["fmt", "--all", "--", "--check"]);
        fmt.fix = Some(FMT_FIX);
        steps.push(fmt);
        // fuzz/ is its own workspace: `--all` does not reach it.
        let mut fmt = step(
            "rustfmt (fuzz)",
            &["fmt", "--manifest-path", "fuzz/Cargo.toml", "--", "--check"],
        );
        fmt.fix = Some(FMT_FUZZ_FIX);
        steps.push(fmt);
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
    steps.push(step("unit tests (host)", &UNIT_TESTS));
    // The block / notify / deschedule / wake protocol over every
    // interleaving of its real critical sections (the unit tests above ran
    // those with at most 3 preemptions): hypervisor/src/sched/live/tests.rs.
    // Printed as the cargo command it equals; run one test per process.
    let mut search = step(
        "interleavings (exhaustive)",
        &["test", "-p", paths::KERNEL_PACKAGE, "--lib", INTERLEAVINGS],
    );
    search.env = &[("KESTREL_PREEMPTIONS", "all")];
    search.custom = Some(interleavings);
    steps.push(search);
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

    // The Linux guest kernel: only the boot tests need it, and a cold build
    // takes most of ten minutes on 2 cores. Started now, under `nice` (as
    // every kernel build is), it takes what the steps before the boot tests
    // leave of the CPUs (the one-thread interleaving search and fuzz runs,
    // the links at the end of each build); the boot tests then find it in
    // the cache or wait on its lock (`linux::vmlinux`). With a filter only
    // some boot tests run, maybe none with Linux: they build it on demand.
    let prebuild = whole_boot_suite.then(prebuild_linux);
    let mut not_run: Vec<&str> = Vec::new();
    if no_lint {
        not_run.push("lints and docs (--no-lint)");
    }
    if no_fuzz {
        not_run.push("fuzz (--no-fuzz)");
    }
    if no_boot {
        not_run.push("kernel and boot tests (--no-boot)");
    }
    let start = Instant::now();
    let mut results: Vec<Outcome> = Vec::new();
    let mut kernel_built = true;
    for s in &steps {
        if s.name == BOOT_TESTS && !kernel_built {
            results.push(Outcome {
                name: s.name,
                verdict: Verdict::Skipped("the kernel did not build"),
                secs: 0.0,
            });
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
        let ran = match s.custom {
            Some(f) => f(),
            None => cargo::run_env(&args, s.env),
        };
        let verdict = match ran {
            Ok(()) => Verdict::Ok,
            Err(e) => {
                eprintln!("xtask: {e}");
                if let Some(fix) = s.fix {
                    eprintln!("xtask: {}: to fix it, {fix}", s.name);
                }
                Verdict::Failed(s.fix)
            }
        };
        if s.name == KERNEL && verdict != Verdict::Ok {
            kernel_built = false;
        }
        results.push(Outcome {
            name: s.name,
            verdict,
            secs: t.elapsed().as_secs_f64(),
        });
    }

    if let Some(p) = prebuild {
        results.push(p.finish());
    }

    println!("\n==> summary");
    for r in &results {
        let verdict = match r.verdict {
            Verdict::Ok => "ok",
            Verdict::Failed(_) => "FAILED",
            Verdict::Skipped(_) => "SKIPPED",
        };
        println!("  {verdict:<8} {:<32} {:6.1} s", r.name, r.secs);
    }
    println!("  total {:.1} s", start.elapsed().as_secs_f64());
    let (line, ok) = last_line(&results, &not_run);
    println!("{line}");
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The background Linux build (`cargo xtask linux` in a child process),
/// waited for by a thread that notes when it ended (so the summary shows
/// the build's own time, not the whole run's).
struct Prebuild {
    waiter: Option<std::thread::JoinHandle<(std::io::Result<ExitStatus>, f64)>>,
    log: std::path::PathBuf,
}

const PREBUILD: &str = "Linux kernel (background)";

fn prebuild_linux() -> Prebuild {
    let log = paths::target_dir().join("linux-prebuild.log");
    let started = Instant::now();
    let spawn = || -> std::io::Result<Child> {
        std::fs::create_dir_all(paths::target_dir())?;
        let out = std::fs::File::create(&log)?;
        let err = out.try_clone()?;
        Command::new(std::env::current_exe()?)
            .arg("linux")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
    };
    let waiter = match spawn() {
        Ok(mut c) => {
            println!("\n==> {PREBUILD}: cargo xtask linux, log {}", log.display());
            Some(std::thread::spawn(move || {
                let st = c.wait();
                (st, started.elapsed().as_secs_f64())
            }))
        }
        Err(e) => {
            // Not fatal: the boot tests build it themselves.
            eprintln!(
                "xtask: cannot start the background Linux build ({e}); the boot tests build it"
            );
            None
        }
    };
    Prebuild { waiter, log }
}

impl Prebuild {
    /// Waits for it (the boot tests normally did already) and reports it
    /// like a step. A failure here is reported, not hidden: the boot tests
    /// that need Linux then built it again and said why it failed.
    fn finish(self) -> Outcome {
        let ended = self.waiter.map(|w| {
            w.join()
                .unwrap_or_else(|_| (Err(std::io::Error::other("its waiter panicked")), 0.0))
        });
        let secs = ended.as_ref().map_or(0.0, |(_, s)| *s);
        let verdict = match ended.map(|(st, _)| st) {
            Some(Ok(st)) if st.success() => Verdict::Ok,
            Some(Ok(st)) => {
                eprintln!(
                    "xtask: the background Linux build failed ({st}); its log: {}",
                    self.log.display()
                );
                Verdict::Failed(Some(PREBUILD_FIX))
            }
            Some(Err(e)) => {
                eprintln!("xtask: waiting for the background Linux build: {e}");
                Verdict::Failed(Some(PREBUILD_FIX))
            }
            None => Verdict::Skipped("it could not be started"),
        };
        Outcome {
            name: PREBUILD,
            verdict,
            secs,
        }
    }
}

const PREBUILD_FIX: &str = "read target/linux-prebuild.log, or run cargo xtask linux";

/// One step's result.
struct Outcome {
    name: &'static str,
    verdict: Verdict,
    secs: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Ok,
    /// Failed; how to fix it, where that is known.
    Failed(Option<&'static str>),
    /// Not run because a step it needs failed (why).
    Skipped(&'static str),
}

/// The summary's last line, naming every failed and skipped step (and
/// what the options left out), and whether the run passed: the one line a
/// person or a CI log's tail shows.
fn last_line(results: &[Outcome], not_run: &[&str]) -> (String, bool) {
    let failed: Vec<String> = results
        .iter()
        .filter_map(|r| match r.verdict {
            Verdict::Failed(Some(fix)) => Some(format!("{} ({fix})", r.name)),
            Verdict::Failed(None) => Some(r.name.to_string()),
            _ => None,
        })
        .collect();
    let skipped: Vec<String> = results
        .iter()
        .filter_map(|r| match r.verdict {
            Verdict::Skipped(why) => Some(format!("{} ({why})", r.name)),
            _ => None,
        })
        .collect();
    let mut parts = Vec::new();
    if !failed.is_empty() {
        parts.push(format!("FAILED: {}", failed.join(", ")));
    }
    if !skipped.is_empty() {
        parts.push(format!("SKIPPED: {}", skipped.join(", ")));
    }
    let ok = parts.is_empty();
    if ok {
        parts.push(format!("all {} checks passed", results.len()));
    }
    if !not_run.is_empty() {
        parts.push(format!("not run: {}", not_run.join(", ")));
    }
    (parts.join("; "), ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(name: &'static str, verdict: Verdict) -> Outcome {
        Outcome {
            name,
            verdict,
            secs: 1.0,
        }
    }

    #[test]
    fn last_line_names_what_failed_and_what_was_skipped() {
        let rs = [
            r("rustfmt", Verdict::Failed(Some(FMT_FIX))),
            r("clippy (host)", Verdict::Ok),
            r(KERNEL, Verdict::Failed(None)),
            r(BOOT_TESTS, Verdict::Skipped("the kernel did not build")),
        ];
        let (line, ok) = last_line(&rs, &["fuzz (--no-fuzz)"]);
        assert!(!ok);
        assert_eq!(
            line,
            "FAILED: rustfmt (run cargo fmt --all), kernel (release); \
             SKIPPED: boot tests (QEMU, Bochs) (the kernel did not build); \
             not run: fuzz (--no-fuzz)"
        );
        let (line, ok) = last_line(&rs[1..2], &[]);
        assert!(ok);
        assert_eq!(line, "all 1 checks passed");
        let (line, ok) = last_line(&rs[1..2], &["fuzz (--no-fuzz)"]);
        assert!(ok);
        assert_eq!(line, "all 1 checks passed; not run: fuzz (--no-fuzz)");
    }
}

//! One test binary's tests spread over several processes at once: for
//! tests that each keep one CPU busy and cannot share a process (the
//! exhaustive interleaving search: every test drives the hypervisor's
//! global tables, so inside one process they take turns).
//!
//! The tests go by module: each module's tests run in one process, in
//! libtest's order, as they do in one `cargo test`. One process per test
//! would balance no better: the four modules' searches (uncapped, in
//! seconds of one core) are about 31, 30, 45 and 53, and the largest
//! single tests 52, 45, 31 and 27.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Instant;

use xtask::bail;
use xtask::error::{Error, Result};

use crate::cargo;

/// Finds the library test binary of package `lib` among those
/// `cargo <build> --no-run` makes (give the arguments of a build that ran
/// before, so nothing is rebuilt: `cargo test -p X` alone unifies features
/// differently from `cargo test --workspace` and compiles X again), lists
/// its tests whose name contains `filter`, and runs each module's tests in
/// one process (`--exact`, one thread) with `env`, `workers` processes at
/// a time, the first listed first. Prints each module's verdict and time
/// as it ends, and the whole output of each that failed; fails naming them.
pub fn run(
    build: &[&str],
    lib: &str,
    filter: &str,
    env: &[(&str, &str)],
    workers: usize,
) -> Result<()> {
    let exe = test_binary(build, lib)?;
    let names = list(&exe, filter)?;
    if names.is_empty() {
        bail!("{} lists no test matching `{filter}`", exe.display());
    }
    let groups = by_module(&names);
    let workers = workers.clamp(1, groups.len());
    println!(
        "spread: {} test(s) in {} module(s) of {} over {workers} process(es)",
        names.len(),
        groups.len(),
        exe.display()
    );
    let failed = on_workers(groups, workers, |(module, tests)| {
        run_group(&exe, module, tests, env)
            .map_err(|e| eprintln!("{e}"))
            .is_ok()
    });
    if !failed.is_empty() {
        let names: Vec<String> = failed.into_iter().map(|(m, _)| m).collect();
        bail!("failed: {}", names.join(", "));
    }
    Ok(())
}

/// Runs `work` on each of `items`, `workers` threads taking the next item
/// as they come free (in order), and returns the items `work` said failed
/// (it reports them itself, as they end). For jobs that each keep one
/// core busy: test processes, fuzz targets.
pub fn on_workers<T: Send>(
    items: Vec<T>,
    workers: usize,
    work: impl Fn(&T) -> bool + Sync,
) -> Vec<T> {
    let workers = workers.clamp(1, items.len().max(1));
    let queue = Mutex::new(items.into_iter().rev().collect::<Vec<_>>());
    let failed = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                while let Some(item) = queue.lock().map_or(None, |mut q| q.pop()) {
                    if !work(&item)
                        && let Ok(mut f) = failed.lock()
                    {
                        f.push(item);
                    }
                }
            });
        }
    });
    failed.into_inner().unwrap_or_default()
}

/// The tests grouped by the module that holds them (the name without its
/// last `::` part), each group in list order, the groups in the order of
/// their first test.
fn by_module(names: &[String]) -> Vec<(String, Vec<String>)> {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for n in names {
        let module = n.rsplit_once("::").map_or("", |(m, _)| m).to_string();
        match groups.iter_mut().find(|(m, _)| *m == module) {
            Some((_, tests)) => tests.push(n.clone()),
            None => groups.push((module, vec![n.clone()])),
        }
    }
    groups
}

/// One module's tests in one process, one after the other; its output is
/// printed only if one failed.
fn run_group(exe: &PathBuf, module: &str, tests: &[String], env: &[(&str, &str)]) -> Result<()> {
    let t = Instant::now();
    let out = Command::new(exe)
        .args(tests)
        .args(["--exact", "--test-threads=1", "--nocapture"])
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::new(format!("starting {}: {e}", exe.display())))?;
    let secs = t.elapsed().as_secs_f64();
    if out.status.success() {
        println!(
            "spread: ok     {module} ({} test(s), {secs:.1} s)",
            tests.len()
        );
        return Ok(());
    }
    bail!(
        "spread: FAILED {module} ({secs:.1} s, {}); its output:\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The path of the test executable of library `lib` that
/// `cargo <build> --no-run` builds (from Cargo's JSON messages;
/// diagnostics still go to the terminal).
fn test_binary(build: &[&str], lib: &str) -> Result<PathBuf> {
    let mut args = build.to_vec();
    args.extend(["--no-run", "--message-format=json-render-diagnostics"]);
    let out = cargo::command(&args)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| Error::new(format!("starting cargo {}: {e}", args.join(" "))))?;
    if !out.status.success() {
        bail!("`cargo {}` failed ({})", args.join(" "), out.status);
    }
    let exes: Vec<PathBuf> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| lib_test_executable(l, lib))
        .collect();
    match exes.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!(
            "`cargo {}` built {} test executables of library `{lib}`, not one",
            args.join(" "),
            exes.len()
        ),
    }
}

/// The `"executable"` of one of Cargo's `compiler-artifact` JSON lines when
/// it is the test binary of library `lib` (a library's artifact has none).
fn lib_test_executable(line: &str, lib: &str) -> Option<PathBuf> {
    if !line.contains(r#""reason":"compiler-artifact""#) {
        return None;
    }
    // The target object holds no nested object: it ends at the first `}`.
    let target = line.split(r#""target":{"#).nth(1)?.split('}').next()?;
    let wanted = format!(r#""name":"{lib}""#);
    if !target.contains(r#""kind":["lib"]"#) || !target.contains(&wanted) {
        return None;
    }
    let rest = line.split(r#""executable":""#).nth(1)?;
    let end = rest.find('"')?;
    let path = &rest[..end];
    // Cargo escapes `\` and `"` only; a repository path with either is not
    // worth supporting here.
    (!path.contains('\\')).then(|| PathBuf::from(path))
}

/// The tests of `exe` whose name contains `filter` (libtest's terse list).
fn list(exe: &PathBuf, filter: &str) -> Result<Vec<String>> {
    let out = Command::new(exe)
        .args([filter, "--list", "--format=terse"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::new(format!("starting {}: {e}", exe.display())))?;
    if !out.status.success() {
        bail!("{} --list failed ({})", exe.display(), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(str::to_owned)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tests_go_by_module_in_list_order() {
        let names: Vec<String> = [
            "s::tests::a",
            "s::tests::b",
            "s::tests::h::x",
            "s::tests::h::y",
            "s::tests::r::z",
        ]
        .iter()
        .map(|n| n.to_string())
        .collect();
        let g = by_module(&names);
        let shape: Vec<(&str, usize)> = g.iter().map(|(m, t)| (m.as_str(), t.len())).collect();
        assert_eq!(
            shape,
            [("s::tests", 2), ("s::tests::h", 2), ("s::tests::r", 1)]
        );
        assert_eq!(g[1].1, ["s::tests::h::x", "s::tests::h::y"]);
    }

    #[test]
    fn the_executable_is_the_named_librarys_test_binary() {
        let art = r#"{"reason":"compiler-artifact","package_id":"x","target":{"kind":["lib"],"crate_types":["lib"],"name":"hypervisor","test":true},"profile":{"test":true},"executable":"/w/target/debug/deps/hypervisor-0123","fresh":true}"#;
        assert_eq!(
            lib_test_executable(art, "hypervisor"),
            Some(PathBuf::from("/w/target/debug/deps/hypervisor-0123"))
        );
        assert_eq!(lib_test_executable(art, "pvabi"), None);
        // The same package's binary or integration test is not it.
        let bin = art.replace(r#""kind":["lib"]"#, r#""kind":["bin"]"#);
        assert_eq!(lib_test_executable(&bin, "hypervisor"), None);
        // A library built as a dependency has no executable.
        let dep = r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"hypervisor"},"executable":null,"fresh":true}"#;
        assert_eq!(lib_test_executable(dep, "hypervisor"), None);
        let done = r#"{"reason":"build-finished","success":true}"#;
        assert_eq!(lib_test_executable(done, "hypervisor"), None);
    }
}

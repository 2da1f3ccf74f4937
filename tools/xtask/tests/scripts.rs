//! `./qemu-run.sh` and `./test.sh` as a new user meets them: `--help`
//! works and documents the options, and each says in its own words what it
//! builds before cargo prints anything, and builds the host tools in one
//! cargo run. Cargo is replaced by a stub on `PATH` that records its
//! arguments and fails, so nothing is built and the scripts stop there.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Runs `script args` with a stub `cargo`; returns (status, stdout+stderr
/// in order of writing, as both go to one pipe).
fn run(script: &str, args: &[&str]) -> (Option<i32>, String) {
    // One directory per call: tests run in parallel.
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let stub_dir =
        std::env::temp_dir().join(format!("kestrel-stub-cargo-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&stub_dir).unwrap_or_else(|e| panic!("{e}"));
    let stub = stub_dir.join("cargo");
    std::fs::write(&stub, "#!/bin/sh\necho \"STUB-CARGO $*\"\nexit 7\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let chmod = Command::new("chmod").arg("+x").arg(&stub).status();
    assert!(
        chmod.is_ok_and(|s| s.success()),
        "chmod +x {}",
        stub.display()
    );
    let path = format!(
        "{}:{}",
        stub_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("exec ./{script} \"$@\" 2>&1"))
        .arg(script)
        .args(args)
        .current_dir(root())
        .env("PATH", path)
        .env("KESTREL_SETUP", "skip")
        // A target directory without a built xtask: the first-run notice.
        .env("CARGO_TARGET_DIR", stub_dir.join("target"))
        .output()
        .unwrap_or_else(|e| panic!("running {script}: {e}"));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn test_sh_help_documents_its_options() {
    let (status, out) = run("test.sh", &["--help"]);
    assert_eq!(status, Some(0), "{out}");
    for opt in [
        "--no-lint",
        "--no-fuzz",
        "--no-boot",
        "-- iso",
        "KESTREL_TEST_TIMEOUT_SCALE",
    ] {
        assert!(out.contains(opt), "test.sh --help lacks {opt}:\n{out}");
    }
    assert!(!out.contains("STUB-CARGO"), "--help ran cargo:\n{out}");
}

#[test]
fn qemu_run_sh_help_documents_its_options() {
    let (status, out) = run("qemu-run.sh", &["--help"]);
    assert_eq!(status, Some(0), "{out}");
    assert!(out.contains("--uefi") && out.contains("--bare"), "{out}");
}

fn says_what_it_builds_first(script: &str) {
    let (status, out) = run(script, &[]);
    assert_eq!(
        status,
        Some(7),
        "{script} must stop when cargo fails:\n{out}"
    );
    let cargo_at = out
        .find("STUB-CARGO")
        .unwrap_or_else(|| panic!("{script} never ran cargo:\n{out}"));
    let said = &out[..cargo_at];
    for words in ["first build", "building the host tools", "hvctl"] {
        assert!(
            said.contains(words),
            "{script} does not say `{words}` before cargo's output:\n{out}"
        );
    }
    let calls: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("STUB-CARGO"))
        .collect();
    assert_eq!(
        calls,
        ["STUB-CARGO build --release --package xtask --package hvctl"],
        "{script}: one build of both host tools"
    );
}

#[test]
fn test_sh_says_what_it_builds_before_cargo() {
    says_what_it_builds_first("test.sh");
}

#[test]
fn qemu_run_sh_says_what_it_builds_before_cargo() {
    says_what_it_builds_first("qemu-run.sh");
}

//! `cargo xtask bench`: deterministic boot figures under QEMU TCG with
//! `-icount`, where the virtual TSC advances one tick per instruction, so
//! `boot_tsc` counts the instructions from hypervisor entry to ready.

use std::fmt::Write as _;
use std::fs::File;
use std::process::Command;
use std::time::Duration;

use xtask::bail;
use xtask::error::{Context, Result};
use xtask::qemu::{self, Accel, Boot, Vm};
use xtask::runner;
use xtask::serial::{self, Stats};
use xtask::{elfinfo, paths, tools};

/// Makes the run a pure function of the image: one instruction per virtual
/// nanosecond, no host-time coupling, fixed RTC and RNG seed, one vCPU
/// (the virtual clock is shared by all vCPUs).
const ICOUNT_ARGS: &[&str] = &[
    "-icount",
    "shift=0,align=off,sleep=off",
    "-rtc",
    "base=2020-01-01T00:00:00,clock=vm",
    "-seed",
    "1",
];
const MEMORY: &[&str] = &["128M", "2G"];
const LOGLEVELS: &[&str] = &["off", "info"];
const RUNS: usize = 2;

struct Row {
    memory: &'static str,
    loglevel: &'static str,
    runs: Vec<Stats>,
}

pub fn run() -> Result<()> {
    tools::QEMU.require()?;
    let kernel = crate::build_kernel(paths::Profile::Release)?;
    let out_dir = paths::build_dir().join("bench");
    std::fs::create_dir_all(&out_dir).context(|| format!("creating {}", out_dir.display()))?;

    let mut rows = Vec::new();
    let mut example_cmd = String::new();
    for &memory in MEMORY {
        for &loglevel in LOGLEVELS {
            let mut runs = Vec::new();
            for run in 0..RUNS {
                let log = out_dir.join(format!("serial-{memory}-{loglevel}-{run}.log"));
                let boot = Boot::Pvh {
                    kernel: kernel.clone(),
                    cmdline: format!("exit=qemu shutdown loglevel={loglevel}"),
                    initrd: None,
                };
                let mut vm = Vm::new(
                    Accel::Tcg,
                    1,
                    memory,
                    boot,
                    format!("file:{}", log.display()),
                );
                vm.extra = ICOUNT_ARGS.iter().map(Into::into).collect();
                if example_cmd.is_empty() {
                    example_cmd = vm
                        .display()
                        .replace(&paths::repo_root().display().to_string(), ".");
                }
                let qemu_log = File::create(out_dir.join("qemu.log"))
                    .context(|| "creating qemu.log".into())?;
                let mut cmd = Command::new(tools::QEMU.program);
                cmd.args(vm.args())
                    .stdout(qemu_log.try_clone().context(|| "qemu.log".into())?)
                    .stderr(qemu_log);
                let (ended, took) = runner::run_with_timeout(&mut cmd, Duration::from_secs(180))?;
                let raw = std::fs::read(&log).unwrap_or_default();
                let lines = serial::lines(&raw);
                if ended.code() != Some(qemu::STATUS_SUCCESS) {
                    bail!(
                        "benchmark boot ({memory}, loglevel={loglevel}) ended with {ended}, not 33; serial log {}:\n{}",
                        log.display(),
                        lines.join("\n")
                    );
                }
                let stats =
                    Stats::find(&lines).context(|| format!("serial log {}", log.display()))?;
                println!(
                    "  {memory:>5} loglevel={loglevel:<4} run {}: boot_tsc={} hv_bytes={} ({:.1} s host time)",
                    run + 1,
                    stats.boot_tsc,
                    stats.hv_bytes,
                    took.as_secs_f64()
                );
                runs.push(stats);
            }
            rows.push(Row {
                memory,
                loglevel,
                runs,
            });
        }
    }

    let elf = std::fs::read(&kernel).context(|| format!("reading {}", kernel.display()))?;
    let loads = elfinfo::loads(&elf)?;
    let memsz: u64 = loads.iter().map(|l| l.memsz).sum();
    let filesz: u64 = loads.iter().map(|l| l.filesz).sum();
    let qemu_version = Command::new(tools::QEMU.program)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into());

    let md = report(
        &rows,
        elf.len() as u64,
        memsz,
        filesz,
        &example_cmd,
        &qemu_version,
    );
    let doc = paths::repo_root().join("docs/benchmarks.md");
    std::fs::write(&doc, &md).context(|| format!("writing {}", doc.display()))?;
    println!("\n{md}");
    println!("written to {}", doc.display());
    let deterministic = rows
        .iter()
        .all(|r| r.runs.windows(2).all(|w| w[0].boot_tsc == w[1].boot_tsc));
    if !deterministic {
        bail!("boot_tsc differed between identical runs: the measurement is not deterministic");
    }
    Ok(())
}

fn kib(b: u64) -> String {
    format!("{:.1} KiB", b as f64 / 1024.0)
}

fn report(
    rows: &[Row],
    file: u64,
    memsz: u64,
    filesz: u64,
    cmd: &str,
    qemu_version: &str,
) -> String {
    let mut table = String::new();
    for r in rows {
        let Some(first) = r.runs.first() else {
            continue;
        };
        let runs: Vec<String> = r.runs.iter().map(|x| x.boot_tsc.to_string()).collect();
        // Ignoring write! results: writing to a String cannot fail.
        let _ = writeln!(
            table,
            "| {} | {} | {} | {} ({}) | {} | {} |",
            r.memory,
            r.loglevel,
            runs.join(" / "),
            first.hv_bytes,
            kib(first.hv_bytes),
            first.free_bytes,
            first.ram_bytes
        );
    }
    format!(
        "\
# Benchmarks

Written by `cargo xtask bench`; rerun it after changes that touch boot.

The figures are deterministic: under QEMU's `-icount shift=0` the virtual clock, and with
it the TSC, advances by one per instruction executed. `boot_tsc` (the TSC delta from
hypervisor entry to ready) is therefore the number of instructions the one vCPU ran.
Busy waits on timers count as well (a 10 ms calibration wait is 10 million instructions),
so this is a path length, not a time; real cycle counts need real hardware. PVH direct
boot: no firmware or boot loader runs between entry and ready.

## Boot

| RAM | loglevel | instructions to ready (runs 1 / 2) | hv_bytes (kept by hypervisor) | free_bytes | ram_bytes |
|---|---|---:|---:|---:|---:|
{table}
`loglevel=off` is the hypervisor's own work; `info` adds the boot log on the 16550 UART
(every character is an `out` plus status polls).

## Image

| what | bytes |
|---|---:|
| ELF file (`target/x86_64-unknown-none/release/kestrel`, with debug line info) | {file} ({}) |
| PT_LOAD memory size (what is loaded, .bss included) | {memsz} ({}) |
| PT_LOAD file size | {filesz} ({}) |

## How these were measured

{qemu_version}; each configuration booted {RUNS} times. One run:

```sh
{cmd}
```

with `-m` and `loglevel=` varied; the serial log's `stats:` line gives the figures.
",
        kib(file),
        kib(memsz),
        kib(filesz),
    )
}

//! `cargo xtask bench`: deterministic figures. Boot under QEMU TCG with
//! `-icount`, where the virtual TSC advances one tick per instruction, so
//! `boot_tsc` counts the instructions from hypervisor entry to ready; and
//! the hypercall round trip on each backend (`crate::hcbench`); domain
//! creation and the memory of an idle domain (`crate::mkbench`); the
//! event-channel round trip on one CPU and two (`crate::evbench`); and
//! ring throughput (`crate::ringbench`).

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
pub const ICOUNT_ARGS: &[&str] = &[
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

/// The event-channel matrix on both backends.
fn evtchn(kernel: &std::path::Path, out_dir: &std::path::Path) -> Result<Vec<crate::evbench::Row>> {
    let guests: Vec<_> = ["evping", "evpong"]
        .iter()
        .map(|g| paths::guest(paths::Profile::Release, g))
        .collect();
    let plugin = crate::insncount::prepare(kernel, &guests)?;
    let mut rows = Vec::new();
    for b in [crate::isoboot::Backend::Svm, crate::isoboot::Backend::Vmx] {
        rows.extend(crate::evbench::run(
            b,
            &crate::evbench::CONFIGS,
            Some(&plugin),
            kernel,
            out_dir,
        )?);
    }
    if let Some(r) = rows.iter().find(|r| !r.deterministic()) {
        bail!(
            "{} {:?}: event-channel counts differed between identical runs: {:?}",
            r.backend.name(),
            r.config,
            r.runs
        );
    }
    Ok(rows)
}

/// `only`: `evtchn` or `hypercall` runs just that and prints it.
pub fn run(only: Option<&str>) -> Result<()> {
    tools::QEMU.require()?;
    let kernel = crate::build_kernel(paths::Profile::Release)?;
    let out_dir = paths::build_dir().join("bench");
    std::fs::create_dir_all(&out_dir).context(|| format!("creating {}", out_dir.display()))?;
    match only {
        None => {}
        Some("evtchn") => {
            let rows = evtchn(&kernel, &out_dir)?;
            let section = crate::evbench::section(&rows);
            println!("\n{section}");
            let doc = paths::repo_root().join("docs/benchmarks.md");
            let old = std::fs::read_to_string(&doc).unwrap_or_default();
            match replace_section(&old, "## Event-channel round trip", &section) {
                Some(new) => {
                    std::fs::write(&doc, new).context(|| format!("writing {}", doc.display()))?;
                    println!("its section in {} rewritten", doc.display());
                }
                None => println!("no event-channel section in {}: not written", doc.display()),
            }
            return Ok(());
        }
        Some("hypercall") => {
            let hcbench = paths::guest(paths::Profile::Release, "hcbench");
            let hc = vec![
                crate::hcbench::svm(&kernel, &hcbench, &out_dir)?,
                crate::hcbench::vmx(&kernel, &hcbench, &out_dir)?,
            ];
            print!("{}", hypercall_table(&hc));
            return Ok(());
        }
        Some("evprof") => return crate::evprof::run(&kernel, &out_dir),
        Some("bounded") => {
            let section = bounded(&kernel, &out_dir)?;
            println!("\n{section}");
            write_bounded(&section)?;
            return Ok(());
        }
        Some("spec") => {
            let rows = crate::specbench::run(&kernel, &out_dir)?;
            let section = crate::specbench::section(&rows);
            println!("\n{section}");
            let doc = paths::repo_root().join("docs/benchmarks.md");
            let old = std::fs::read_to_string(&doc).unwrap_or_default();
            let new = replace_section(&old, crate::specbench::HEADING, &section)
                .unwrap_or_else(|| insert_before_image(&old, &section));
            std::fs::write(&doc, new).context(|| format!("writing {}", doc.display()))?;
            println!("its section in {} written", doc.display());
            if !crate::specbench::deterministic(&rows) {
                bail!("spec-ctrl hcbench figures differed between identical runs");
            }
            return Ok(());
        }
        Some("idle") => {
            let rows = crate::idlebench::run(&kernel, &out_dir)?;
            let section = crate::idlebench::section(&rows);
            println!("\n{section}");
            let doc = paths::repo_root().join("docs/benchmarks.md");
            let old = std::fs::read_to_string(&doc).unwrap_or_default();
            let new = replace_section(&old, crate::idlebench::HEADING, &section)
                .unwrap_or_else(|| insert_before_image(&old, &section));
            std::fs::write(&doc, new).context(|| format!("writing {}", doc.display()))?;
            println!("its section in {} written", doc.display());
            return Ok(());
        }
        Some("linux") => {
            let rows = crate::linuxbench::run(&kernel, &out_dir)?;
            let section = crate::linuxbench::section(&rows);
            println!("\n{section}");
            let doc = paths::repo_root().join("docs/benchmarks.md");
            let old = std::fs::read_to_string(&doc).unwrap_or_default();
            let new = replace_section(&old, crate::linuxbench::HEADING, &section)
                .unwrap_or_else(|| insert_before_image(&old, &section));
            std::fs::write(&doc, new).context(|| format!("writing {}", doc.display()))?;
            println!("its section in {} written", doc.display());
            return Ok(());
        }
        Some("linux-count") => {
            let images = xtask::linux::build()?;
            let counts = crate::linuxcount::run(&images, &kernel, &out_dir)?;
            println!("\n{}", crate::linuxcount::table(&counts));
            for cpus in [1, 2] {
                println!(
                    "Kestrel / native, {cpus} vCPU(s): {}",
                    crate::linuxcount::ratio_cell(&counts.rows, cpus)
                );
            }
            return Ok(());
        }
        Some("disk") => {
            let r = crate::diskbench::run(&kernel, &out_dir)?;
            let section = crate::diskbench::section(&r);
            println!("\n{section}");
            let doc = paths::repo_root().join("docs/benchmarks.md");
            let old = std::fs::read_to_string(&doc).unwrap_or_default();
            let new = replace_section(&old, crate::diskbench::HEADING, &section)
                .unwrap_or_else(|| insert_before_image(&old, &section));
            std::fs::write(&doc, new).context(|| format!("writing {}", doc.display()))?;
            println!("its section in {} written", doc.display());
            return Ok(());
        }
        Some("uploadprof") => return crate::upprof::run(&kernel, &out_dir),
        Some("upload") => {
            let (runs, insns) = crate::upbench::run(&kernel, &out_dir)?;
            let section = crate::upbench::section(&runs, &insns);
            println!("\n{section}");
            let doc = paths::repo_root().join("docs/benchmarks.md");
            let old = std::fs::read_to_string(&doc).unwrap_or_default();
            let new = replace_section(&old, crate::upbench::HEADING, &section)
                .unwrap_or_else(|| insert_before_image(&old, &section));
            std::fs::write(&doc, new).context(|| format!("writing {}", doc.display()))?;
            println!("its section in {} written", doc.display());
            return Ok(());
        }
        Some(other) => bail!(
            "--only {other}: expected `evtchn`, `hypercall`, `evprof`, `spec`, `bounded`, `idle`, `linux`, `linux-count`, `disk`, `upload` or `uploadprof`"
        ),
    }

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

    println!("hypercall round trip (hcbench guest):");
    let hcbench = paths::guest(paths::Profile::Release, "hcbench");
    let hc = vec![
        crate::hcbench::svm(&kernel, &hcbench, &out_dir)?,
        crate::hcbench::vmx(&kernel, &hcbench, &out_dir)?,
    ];

    println!("domain creation and idle domains (mkbench/mkchild):");
    let mk = vec![
        crate::mkbench::run(crate::isoboot::Backend::Svm, &kernel, &out_dir)?,
        crate::mkbench::run(crate::isoboot::Backend::Vmx, &kernel, &out_dir)?,
    ];

    println!("event-channel round trip (evping/evpong):");
    let ev = evtchn(&kernel, &out_dir)?;

    println!("ring throughput (ringprod/ringcons):");
    let rings = vec![
        crate::ringbench::run(crate::ringbench::Backend::Svm, &kernel, &out_dir)?,
        crate::ringbench::run(crate::ringbench::Backend::Vmx, &kernel, &out_dir)?,
    ];

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

    let bochs_version = Command::new(tools::BOCHS.program)
        .arg("--help")
        .output()
        .ok()
        .and_then(|o| {
            let all = [o.stdout, o.stderr].concat();
            String::from_utf8_lossy(&all)
                .lines()
                .find(|l| l.contains("Bochs x86 Emulator"))
                .map(|l| l.trim().to_string())
        })
        .unwrap_or_else(|| "Bochs".into());
    let md = report(
        &rows,
        &hc,
        &mk,
        &ev,
        &rings,
        &bochs_version,
        elf.len() as u64,
        memsz,
        filesz,
        &example_cmd,
        &qemu_version,
    );
    let spec = crate::specbench::run(&kernel, &out_dir)?;
    let md = insert_before_image(&md, &crate::specbench::section(&spec));
    let doc = paths::repo_root().join("docs/benchmarks.md");
    std::fs::write(&doc, &md).context(|| format!("writing {}", doc.display()))?;
    println!("\n{md}");
    println!("written to {}", doc.display());
    println!("longest exit under floods (flood/victim):");
    write_bounded(&bounded(&kernel, &out_dir)?)?;
    let deterministic = rows
        .iter()
        .all(|r| r.runs.windows(2).all(|w| w[0].boot_tsc == w[1].boot_tsc));
    if !deterministic {
        bail!("boot_tsc differed between identical runs: the measurement is not deterministic");
    }
    if let Some(r) = rings.iter().find(|r| !r.deterministic()) {
        bail!(
            "{}: ring counts differed between identical runs: {r:?}",
            r.backend.name()
        );
    }
    if let Some(r) = mk.iter().find(|r| !r.deterministic()) {
        bail!(
            "{}: mkbench figures differed between identical runs: {:?}",
            r.backend.name(),
            r.runs
        );
    }
    if let Some(r) = hc.iter().find(|r| !r.deterministic()) {
        bail!(
            "{}: hcbench figures differed between identical runs: {:?}",
            r.backend,
            r.runs
        );
    }
    Ok(())
}

/// `doc` with `section` inserted before its `## Image` heading (at the end
/// without one).
fn insert_before_image(doc: &str, section: &str) -> String {
    match doc.find("\n## Image") {
        Some(i) => format!("{}\n{}\n{}", &doc[..i], section.trim_end(), &doc[i..]),
        None => format!("{}\n\n{}\n", doc.trim_end(), section.trim_end()),
    }
}

/// The bounded-exits figures on both backends, as their section.
fn bounded(kernel: &std::path::Path, out_dir: &std::path::Path) -> Result<String> {
    let rows = vec![
        crate::boundbench::run(crate::isoboot::Backend::Svm, kernel, out_dir)?,
        crate::boundbench::run(crate::isoboot::Backend::Vmx, kernel, out_dir)?,
    ];
    Ok(crate::boundbench::section(&rows))
}

/// Puts the bounded-exits section into docs/benchmarks.md: in place of
/// the old one, or at the end.
fn write_bounded(section: &str) -> Result<()> {
    let doc = paths::repo_root().join("docs/benchmarks.md");
    let old = std::fs::read_to_string(&doc).unwrap_or_default();
    let new = replace_section(&old, "## Bounded exits", section)
        .unwrap_or_else(|| format!("{}\n{section}", old.trim_end()));
    std::fs::write(&doc, new).context(|| format!("writing {}", doc.display()))?;
    println!("its section in {} written", doc.display());
    Ok(())
}

/// `doc` with the section whose heading line starts with `heading` (up to
/// the next `## ` heading) replaced by `section`; `None` without one.
fn replace_section(doc: &str, heading: &str, section: &str) -> Option<String> {
    let start = doc.find(&format!("\n{heading}"))? + 1;
    let end = doc[start + 1..]
        .find("\n## ")
        .map_or(doc.len(), |i| start + 1 + i + 1);
    let gap = if end < doc.len() { "\n\n" } else { "\n" };
    Some(format!(
        "{}{}{gap}{}",
        &doc[..start],
        section.trim_end(),
        &doc[end..]
    ))
}

fn kib(b: u64) -> String {
    format!("{:.1} KiB", b as f64 / 1024.0)
}

fn hypercall_table(hc: &[crate::hcbench::Row]) -> String {
    let mut t = String::new();
    for r in hc {
        let Some(s) = r.runs.first() else { continue };
        let ticks = s.ticks_per_round_trip();
        // Ignoring write! results: writing to a String cannot fail.
        let _ = writeln!(
            t,
            "| {} | {} | {} / {} | {} / {} | {} | **{}** | {} |",
            r.backend,
            r.machine,
            s.hypercall.min_batch,
            s.baseline.min_batch,
            s.hypercall.tsc_delta,
            s.baseline.tsc_delta,
            fmt_ticks(ticks),
            fmt_ticks(ticks - r.insn_ticks as f64),
            fmt_ticks(s.ticks_all_in()),
        );
    }
    t
}

/// Whole numbers without decimals, others with two.
fn fmt_ticks(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

#[allow(clippy::too_many_arguments)]
fn report(
    rows: &[Row],
    hc: &[crate::hcbench::Row],
    mk: &[crate::mkbench::Row],
    ev: &[crate::evbench::Row],
    rings: &[crate::ringbench::Row],
    bochs_version: &str,
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

Written by `cargo xtask bench`; rerun it after changes that touch boot or the exit path.

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

## Hypercall round trip

The `hcbench` guest (`guests/src/bin/hcbench.rs`) makes {calls} hypercalls with an unknown
number (the hypervisor answers `ENOSYS` at once: the shortest path, no scheduling) in
batches of {batch}, reading the TSC (`lfence; rdtsc`) around each batch; then the same
loop with the hypercall instruction replaced by `mov rax, -38` (what the hypervisor does
to RAX). Both loops are one `asm!` block each, identical but for that instruction, so
their difference is the round trip. The smallest batch has no timer interrupt in it;
the totals include the 100 Hz tick (and what the scheduler does on it) spread over all
calls. Every figure is in TSC ticks, and on both machines a tick is one instruction:

- **AMD-V**: QEMU TCG with `-icount shift=0,align=off,sleep=off` advances the TSC once
  per instruction the machine executes; the intercepted `VMMCALL` and the `#VMEXIT`
  count 0, `VMRUN` 1.
- **VT-x**: Bochs with one CPU and `clock: sync=none` (emulated time follows the
  instruction count alone) returns its tick counter from `RDTSC`: one per
  instruction, the exiting `VMCALL` and `VMRESUME` included. The `ips` setting only
  scales timers (here the 100 Hz tick is every 100,000 instructions), not the TSC.

Both were checked by single-stepping one round trip: QEMU's gdb stub (`-s -S`, `stepi`
from the guest's `vmmcall` until the guest's next instruction) and Bochs' debugger
(`trace on`, `s`, whose `t=` counter is the TSC) executed exactly the counted
instructions. {runs} identical runs per backend gave identical figures (checked by
`cargo xtask bench`), so they are exact, not averages.

| backend | machine | smallest batch: hypercall / baseline loop | all {calls} calls: hypercall / baseline loop | ticks per round trip (hypercall instruction to the guest's next) | **hypervisor instructions per round trip** | all-in per call (with timer ticks) |
|---|---|---:|---:|---:|---:|---:|
{hc_table}
*Ticks per round trip* = (hypercall batch - baseline batch) / {batch} + 1 (the baseline's
`mov` stands where the hypercall instruction is). *Hypervisor instructions* leave out the
guest's own hypercall instruction where the emulator counts it (Bochs' `VMCALL`: 1;
QEMU's intercepted `VMMCALL`: 0), and include `VMRUN`/`VMRESUME`: everything the
hypervisor executes from the exit to the guest's next instruction.
These are path lengths, not times: real exit and entry costs need real hardware.

{mk_section}{ev_section}
{ring_section}
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

Hypercall round trip, AMD-V (PVH boot, `hcbench` as the one module):

```sh
{svm_cmd}
```

VT-x ({bochs_version}; GRUB ISO with `hcbench.elf` as the one module, built like
`cargo xtask image --bare --cmdline \"exit=bochs shutdown loglevel=info\" --module
target/x86_64-unknown-none/release/hcbench` (but named `hcbench.elf`); the debugger
commands are `c` and `quit`):

```sh
{vmx_cmd}
```

Each backend ran {runs} times; `hcbench:` lines in the serial logs (`build/bench/`) give
the figures.
",
        kib(file),
        kib(memsz),
        kib(filesz),
        calls = hc
            .first()
            .and_then(|r| r.runs.first())
            .map_or(0, |s| s.hypercall.calls),
        batch = hc
            .first()
            .and_then(|r| r.runs.first())
            .map_or(0, |s| s.hypercall.batch),
        runs = hc.first().map_or(0, |r| r.runs.len()),
        hc_table = hypercall_table(hc),
        mk_section = crate::mkbench::section(mk),
        ev_section = crate::evbench::section(ev),
        ring_section = crate::ringbench::section(rings),
        svm_cmd = hc.first().map_or("", |r| r.command.as_str()),
        vmx_cmd = hc.get(1).map_or("", |r| r.command.as_str()),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_one_section() {
        let doc = "# B\n\n## A\nold a\n\n## Event-channel round trip\nold\n\n## C\nc\n";
        let new = super::replace_section(
            doc,
            "## Event-channel round trip",
            "## Event-channel round trip\nnew\n",
        );
        assert_eq!(
            new.as_deref(),
            Some("# B\n\n## A\nold a\n\n## Event-channel round trip\nnew\n\n## C\nc\n")
        );
        let last = "# B\n## Event-channel round trip\nold\n";
        assert_eq!(
            super::replace_section(
                last,
                "## Event-channel round trip",
                "## Event-channel round trip\nx"
            )
            .as_deref(),
            Some("# B\n## Event-channel round trip\nx\n")
        );
        assert!(super::replace_section("# B\n", "## E", "x").is_none());
    }
}

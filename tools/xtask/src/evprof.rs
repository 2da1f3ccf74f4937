//! `cargo xtask bench --only evprof`: where the hypervisor's instructions
//! go on the two hot paths, for cutting them (docs/benchmarks.md, "Event
//! path: what was cut, change by change").
//!
//! - The event-channel round trip, AMD-V, one CPU, `HC_EVTCHN_SEND_WAIT`:
//!   the `insncount` plugin's profile (`prof=`, instructions per address of
//!   the hypervisor) of a 2000-round run minus a 1000-round run, per round
//!   trip, summed per function (the kernel's symbol table, `nm`): boot and
//!   tear-down cancel.
//! - The plain hypercall (`hcbench`, PVH, `-icount shift=0`): its ticks per
//!   round trip, and the whole run's profile divided by its 10000 calls
//!   (`hcbench` has no argument for a shorter run to subtract), so boot's
//!   functions show up too: they do not run per call, read past them.
//!
//! Prints only; writes no document. Figures match `--only evtchn` and
//! `--only hypercall` (same images, machines and arithmetic).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use xtask::bail;
use xtask::error::{Context, Result};
use xtask::qemu::{self, Accel, Boot, Vm};
use xtask::{paths, runner, serial, tools};

use crate::evbench::{self, Config};
use crate::insncount::{self, Plugin};
use crate::isoboot::{self, Backend, Machine};

/// Functions listed per profile.
const TOP: usize = 45;

/// The kernel's function symbols, sorted by address.
pub(crate) fn symbols(kernel: &Path) -> Result<Vec<(u64, String)>> {
    let out = Command::new("nm")
        .args(["-n", "-C", "--defined-only"])
        .arg(kernel)
        .output()
        .context(|| "running nm (binutils)".into())?;
    if !out.status.success() {
        bail!("nm {} failed", kernel.display());
    }
    let mut syms = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut it = line.splitn(3, ' ');
        let (Some(a), Some(t), Some(name)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        if !matches!(t, "t" | "T") {
            continue;
        }
        if let Ok(a) = u64::from_str_radix(a, 16) {
            syms.push((a, name.to_string()));
        }
    }
    Ok(syms)
}

/// `<address> <count>` lines (the plugin's `prof=` file).
pub(crate) fn profile(file: &Path) -> Result<Vec<(u64, u64)>> {
    let text = std::fs::read_to_string(file).context(|| format!("reading {}", file.display()))?;
    let mut v = Vec::new();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        match (
            it.next().and_then(serial::parse_number),
            it.next().and_then(serial::parse_number),
        ) {
            (Some(a), Some(n)) => v.push((a, n)),
            _ => bail!("{}: unexpected line `{line}`", file.display()),
        }
    }
    Ok(v)
}

/// Counts per function.
pub(crate) fn per_function(syms: &[(u64, String)], prof: &[(u64, u64)]) -> BTreeMap<String, i64> {
    let mut m = BTreeMap::new();
    for &(a, n) in prof {
        let i = syms.partition_point(|s| s.0 <= a);
        let name = if i == 0 {
            format!("?{a:#x}")
        } else {
            syms[i - 1].1.clone()
        };
        *m.entry(name).or_insert(0i64) += n as i64;
    }
    m
}

pub(crate) fn print_top(title: &str, m: &BTreeMap<String, i64>, per: f64) {
    let mut v: Vec<_> = m.iter().filter(|(_, n)| **n != 0).collect();
    v.sort_by_key(|(_, n)| std::cmp::Reverse(n.abs()));
    let total: i64 = m.values().sum();
    println!("\n{title}: {:.2} per unit", total as f64 / per);
    for (name, n) in v.into_iter().take(TOP) {
        let mut s = name.clone();
        s.truncate(110);
        println!("  {:>9.2}  {s}", *n as f64 / per);
    }
}

fn evtchn(kernel: &Path, plugin: &Plugin, syms: &[(u64, String)], dir: &Path) -> Result<()> {
    let three = std::env::var_os("EVPROF_THREE").is_some();
    let config = Config {
        cpus: 1,
        three_calls: three,
    };
    let mut profs = Vec::new();
    let mut hv = Vec::new();
    for rounds in [evbench::ROUNDS, 2 * evbench::ROUNDS] {
        let d = dir.join(format!("evtchn-{rounds}"));
        let mods = config.modules(rounds)?;
        let counts = d.join("insncount.txt");
        let prof = d.join("prof.txt");
        let m = Machine {
            cpus: 1,
            plugin: Some(format!("{},prof={}", plugin.arg(&counts), prof.display())),
            ..Machine::default()
        };
        let booted = isoboot::boot_on(Backend::Svm, &m, kernel, "", mods, &d)?;
        let exits: u64 = serial::DomainEnd::all(&booted.lines)?
            .iter()
            .map(|e| e.exits)
            .sum();
        let c = insncount::read(&counts)?;
        println!(
            "  {rounds} round trips: {exits} exits, hypervisor {}",
            c[0].hv
        );
        hv.push(c[0].hv);
        profs.push(per_function(syms, &profile(&prof)?));
    }
    let n = evbench::ROUNDS as f64;
    println!(
        "event round trip (AMD-V, 1 CPU, {}): {:.2} hypervisor instructions",
        if three { "three calls" } else { "send_wait" },
        (hv[1] as f64 - hv[0] as f64) / n
    );
    let mut diff = profs[1].clone();
    for (k, v) in &profs[0] {
        *diff.entry(k.clone()).or_insert(0) -= v;
    }
    print_top("event round trip, per function", &diff, n);
    Ok(())
}

fn hypercall(kernel: &Path, plugin: &Plugin, syms: &[(u64, String)], dir: &Path) -> Result<()> {
    let hcbench = paths::guest(paths::Profile::Release, "hcbench");
    std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    let log = dir.join("serial-hcbench.log");
    let prof = dir.join("prof-hcbench.txt");
    let counts = dir.join("insncount-hcbench.txt");
    let mut vm = Vm::new(
        Accel::Tcg,
        1,
        "128M",
        Boot::Pvh {
            kernel: kernel.to_path_buf(),
            cmdline: "exit=qemu shutdown loglevel=info".into(),
            initrd: Some(hcbench),
        },
        format!("file:{}", log.display()),
    );
    vm.extra = crate::bench::ICOUNT_ARGS.iter().map(Into::into).collect();
    vm.extra.push("-plugin".into());
    vm.extra
        .push(format!("{},prof={}", plugin.arg(&counts), prof.display()).into());
    let qemu_log = dir.join("qemu-hcbench.log");
    let f = File::create(&qemu_log).context(|| format!("creating {}", qemu_log.display()))?;
    let mut cmd = Command::new(tools::QEMU.program);
    cmd.args(vm.args())
        .stdout(f.try_clone().context(|| "qemu log".into())?)
        .stderr(f);
    let (ended, _) = runner::run_with_timeout(&mut cmd, Duration::from_secs(180))?;
    let lines = serial::lines(&std::fs::read(&log).unwrap_or_default());
    if ended.code() != Some(qemu::STATUS_SUCCESS) {
        bail!("hcbench ended with {ended}; serial log {}", log.display());
    }
    let s = crate::hcbench::Sample::parse(&lines)?;
    println!(
        "\nplain hypercall (AMD-V, hcbench): {:.2} ticks per round trip",
        s.ticks_per_round_trip()
    );
    print_top(
        "hcbench run, per function (whole run / calls: boot included)",
        &per_function(syms, &profile(&prof)?),
        s.hypercall.calls as f64,
    );
    Ok(())
}

/// Runs both profiles and prints them.
pub fn run(kernel: &Path, out_dir: &Path) -> Result<()> {
    let guests: Vec<_> = ["evping", "evpong", "hcbench"]
        .iter()
        .map(|g| paths::guest(paths::Profile::Release, g))
        .collect();
    let plugin = insncount::prepare(kernel, &guests)?;
    let syms = symbols(kernel)?;
    let dir = out_dir.join("evprof");
    hypercall(kernel, &plugin, &syms, &dir)?;
    evtchn(kernel, &plugin, &syms, &dir)
}

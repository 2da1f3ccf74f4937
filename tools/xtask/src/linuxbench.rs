//! The Linux domain benchmark (issue 13): how far a Linux domain gets in
//! how many instructions, and what it costs in exits idle and busy.
//!
//! Each run boots a GRUB ISO of the hypervisor with the Linux guest as boot
//! modules (`kind=linux initrd=initramfs`, as `tests/tests/boot/linux.rs`
//! does) under QEMU TCG `-icount shift=7,align=off,sleep=off`
//! (`crate::isoboot`): every instruction the CPU runs, the hypervisor's
//! included, advances the virtual clock by 2^7 = 128 ns, and the TSC with
//! it. A smaller shift is no option: GRUB prints nothing past its screen
//! in minutes at shifts 0 to 3 (`crate::isoboot`; the same stall ended the
//! first try of this benchmark after 12 min at shift 0).
//!
//! Figures:
//! - **Kestrel / native**: the same `vmlinux` and initramfs booted by QEMU
//!   itself (`crate::linuxnative`), same `-icount`, 1 and 2 CPUs: the
//!   ratio of the two **to `/init`** figures.
//! - **to `/init`**: the kernel's own clock (printk time) at `Run /init as
//!   init process`, in instructions (ns / 128). That clock is the TSC with
//!   the frequency Kestrel's time info gives, started by the kernel at
//!   `tsc_early_init`: what runs before (the hypervisor building the
//!   domain, the kernel's first steps) is not in it.
//! - **exits**: the domain's whole life (`domain-end: ... exits=N`):
//!   boot, `/init`'s checks, power-off.
//! - **idle / busy exits per second**: the same boot with `/init`'s
//!   `sleep` check (`sleep 1`: the vCPU idles, NO_HZ) or `busy` check (a
//!   shell loop that reads `/proc/uptime` for 1 s), minus the boot
//!   without it, over the check's own span (`sleep1_cs`, `busy1_cs`).
//!   On AMD-V (the QEMU boots above) and on VT-x: the same three boots,
//!   1 vCPU, under Bochs with `clock: sync=none` (`crate::isoboot`: one
//!   instruction is 100 ns of the guest's clock), which repeats to the
//!   instruction, so each runs once.
//!
//! These counts are virtual (instructions), never wall-clock, but unlike
//! the small guests' figures they do not repeat to the instruction: two
//! identical boots first differ by tens of microseconds of the kernel's
//! clock around `devtmpfs: initialized` and end 0.1-0.5 % apart in
//! instructions to `/init` and in exits (seen: 4,023,029 / 4,037,227 us,
//! 2,140 / 2,160 exits). QEMU's `-icount` without record/replay does not
//! promise more once a guest this size idles and takes timer interrupts;
//! the cause inside QEMU is not found. So the plain boot runs twice, both
//! are reported, and they must agree within [`TOLERANCE_PCT`]. The
//! kernel's `initramfs_async=0` keeps the initramfs unpacking out of that
//! race (with it on, the two boots differed by 1.4 ms at that step).

use std::fmt::Write as _;
use std::path::Path;

use xtask::bail;
use xtask::error::Result;
use xtask::iso::Module;

use crate::isoboot::{self, Backend, Machine};

/// The section of docs/benchmarks.md.
pub const HEADING: &str = "## Linux domain";

/// How far apart (percent) two identical boots may end.
pub const TOLERANCE_PCT: f64 = 1.0;

fn close(a: u64, b: u64) -> bool {
    let (a, b) = (a as f64, b as f64);
    (a - b).abs() <= a.max(b) * TOLERANCE_PCT / 100.0
}

/// One boot's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// QEMU (AMD-V) or Bochs (VT-x).
    pub backend: Backend,
    pub vcpus: u32,
    pub checks: &'static str,
    /// printk time of `Run /init`, in microseconds.
    pub init_us: u64,
    pub exits: u64,
    /// The check's span in centiseconds of the guest's uptime, if any.
    pub span_cs: Option<u64>,
    pub command: String,
}

impl Row {
    /// Instructions to `Run /init` (128 ns each on AMD-V, 100 on VT-x).
    pub fn init_insns(&self) -> u64 {
        self.init_us * 1000 / self.backend.ns_per_insn()
    }
}

/// `[    0.698031] Run /init as init process` gives 698031, with or
/// without the hypervisor's `[dom1 linux] ` in front (the native run's
/// 8250 console has none).
fn printk_us(line: &str) -> Option<u64> {
    let (head, _) = line.split_once("] Run /init as init process")?;
    let time = head.rsplit_once('[')?.1;
    let (s, us) = time.trim().split_once('.')?;
    Some(s.parse::<u64>().ok()? * 1_000_000 + us.parse::<u64>().ok()?)
}

fn field(line: &str, key: &str) -> Option<u64> {
    let rest = line.split(key).nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn one(
    images: &xtask::linux::LinuxImages,
    kernel: &Path,
    dir: &Path,
    backend: Backend,
    vcpus: u32,
    checks: &'static str,
) -> Result<Row> {
    let m = Machine {
        cpus: vcpus,
        ..Machine::default()
    };
    one_on(images, kernel, dir, backend, &m, checks)
}

/// [`one`] on `m` (its CPUs are the domain's vCPUs): the boot's checks
/// (`Run /init`, every vCPU up, a clean power-off) and figures.
pub(crate) fn one_on(
    images: &xtask::linux::LinuxImages,
    kernel: &Path,
    dir: &Path,
    backend: Backend,
    m: &Machine,
    checks: &'static str,
) -> Result<Row> {
    let vcpus = m.cpus.max(1);
    let args = format!(
        "kind=linux initrd=initramfs vcpus={vcpus} console=hvc0 initramfs_async=0{}",
        if checks.is_empty() {
            String::new()
        } else {
            format!(" kestrel.checks={checks}")
        }
    );
    let modules = vec![
        Module::named(&images.vmlinux, "linux", &args)?,
        Module::named(&images.initramfs, "initramfs", "")?,
    ];
    let b = isoboot::boot_on(backend, m, kernel, "", modules, dir)?;
    let fail = |what: &str| -> Result<Row> {
        bail!(
            "{}: {what}; serial log:\n{}",
            dir.display(),
            b.lines.join("\n")
        )
    };
    let Some(init_us) = b.lines.iter().find_map(|l| printk_us(l)) else {
        return fail("no `Run /init` line (quiet hides it? it is printed at KERN_INFO)");
    };
    let up = format!("smp: Brought up 1 node, {vcpus} CPU");
    if !b.lines.iter().any(|l| l.contains(&up)) {
        return fail(&format!(
            "the kernel did not bring up {vcpus} vCPU(s) (no `{up}` line)"
        ));
    }
    let Some(end) = b
        .lines
        .iter()
        .find(|l| l.starts_with("domain-end: ") && l.contains(" name=linux "))
    else {
        return fail("the Linux domain never ended");
    };
    if !end.contains(" result=exited code=0 ") {
        return fail(&format!("the Linux domain did not power off: {end}"));
    }
    let Some(exits) = field(end, " exits=") else {
        return fail(&format!("no exits= in {end}"));
    };
    let span_cs = match checks {
        "sleep" => b.lines.iter().find_map(|l| field(l, "sleep1_cs=")),
        "busy" => b.lines.iter().find_map(|l| field(l, "busy1_cs=")),
        _ => None,
    };
    if !checks.is_empty() && span_cs.is_none() {
        return fail(&format!("/init's {checks} check printed no span"));
    }
    Ok(Row {
        backend,
        vcpus,
        checks,
        init_us,
        exits,
        span_cs,
        command: b.command,
    })
}

/// A native boot's figure (`crate::linuxnative`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeRow {
    pub cpus: u32,
    /// printk time of `Run /init`, in microseconds.
    pub init_us: u64,
    pub command: String,
}

impl NativeRow {
    /// Instructions to `Run /init` (128 ns each, as in the Kestrel run).
    pub fn init_insns(&self) -> u64 {
        self.init_us * 1000 / Backend::Svm.ns_per_insn()
    }
}

/// Everything `run` measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The Kestrel domain's boots on AMD-V (QEMU).
    pub rows: Vec<Row>,
    /// The same on VT-x (Bochs): plain, `sleep`, `busy`, 1 vCPU.
    pub vtx: Vec<Row>,
    /// The same kernel booted by QEMU itself, 1 and 2 CPUs.
    pub native: Vec<NativeRow>,
    /// Why a configuration gave no row (one line each).
    pub missing: Vec<String>,
    /// Creation → `/init`, 1 and 2 vCPUs (`crate::linuxcreate`).
    pub created: Vec<crate::linuxcreate::CreatedRow>,
    /// Both sides counted by the plugin without `-icount`
    /// (`crate::linuxcount`), 1 and 2 vCPUs.
    pub counted: crate::linuxcount::Counts,
}

/// Wall-clock limit of one native boot (the figure is virtual).
const NATIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

fn native(images: &xtask::linux::LinuxImages, dir: &Path, cpus: u32) -> Result<NativeRow> {
    let icount = crate::isoboot::ICOUNT7_ARGS
        .iter()
        .map(|a| a.to_string())
        .collect();
    native_with(images, dir, cpus, crate::linuxnative::CMDLINE, icount)
}

/// [`native`] with `extra` QEMU arguments in place of the `-icount` ones;
/// the same checks (`Run /init`, every CPU up, `/init`'s end).
pub(crate) fn native_with(
    images: &xtask::linux::LinuxImages,
    dir: &Path,
    cpus: u32,
    cmdline: &str,
    extra: Vec<String>,
) -> Result<NativeRow> {
    let b = crate::linuxnative::boot(images, cpus, dir, NATIVE_TIMEOUT, cmdline, extra)?;
    let Some(init_us) = b.lines.iter().find_map(|l| printk_us(l)) else {
        bail!(
            "{}: native boot printed no `Run /init` line; serial log:\n{}",
            dir.display(),
            b.lines.join("\n")
        );
    };
    // The kernel takes the CPUs the firmware's MP table lists: with
    // `-smp 2` it has been seen to bring up one only (cause not found),
    // which would pass a 1-CPU figure off as a 2-CPU one.
    let up = format!("smp: Brought up 1 node, {cpus} CPU");
    if !b.lines.iter().any(|l| l.contains(&up)) {
        bail!(
            "native boot did not bring up {cpus} CPU(s) (no `{up}` line) in {}",
            dir.display()
        );
    }
    if !b
        .lines
        .iter()
        .any(|l| l.contains("kestrel-linux: reboot -f (kestrel.end=reboot)"))
    {
        bail!(
            "{}: native boot never reached /init's end; serial log:\n{}",
            dir.display(),
            b.lines.join("\n")
        );
    }
    Ok(NativeRow {
        cpus,
        init_us,
        command: b.command,
    })
}

/// An error's first line, paths relative to the repository.
fn first_line(e: &xtask::error::Error) -> String {
    let root = xtask::paths::repo_root().display().to_string();
    e.to_string()
        .lines()
        .next()
        .unwrap_or("")
        .replace(&root, ".")
}

/// Every configuration; the plain 1-vCPU boot twice (the two must agree),
/// then 2 vCPUs, then the native boots.
pub fn run(kernel: &Path, out_dir: &Path) -> Result<Report> {
    let images = xtask::linux::build()?;
    let d = |n: &str| out_dir.join(format!("linux-{n}"));
    let svm = Backend::Svm;
    let plain = one(&images, kernel, &d("1"), svm, 1, "")?;
    let again = one(&images, kernel, &d("1-again"), svm, 1, "")?;
    if !close(plain.init_us, again.init_us) || !close(plain.exits, again.exits) {
        bail!(
            "two identical Linux boots differ by more than {TOLERANCE_PCT} %: {plain:?} / {again:?}"
        );
    }
    let mut rows = vec![
        plain,
        again,
        one(&images, kernel, &d("1-sleep"), svm, 1, "sleep")?,
        one(&images, kernel, &d("1-busy"), svm, 1, "busy")?,
    ];
    let mut missing = Vec::new();
    match one(&images, kernel, &d("2"), svm, 2, "") {
        Ok(r) => rows.push(r),
        Err(e) => {
            missing.push(format!("Kestrel, 2 vCPUs: {}", first_line(&e)));
        }
    }
    let mut vtx = Vec::new();
    for (tag, checks) in [
        ("vtx-1", ""),
        ("vtx-1-sleep", "sleep"),
        ("vtx-1-busy", "busy"),
    ] {
        match one(&images, kernel, &d(tag), Backend::Vmx, 1, checks) {
            Ok(r) => vtx.push(r),
            Err(e) => missing.push(format!("VT-x, {tag}: {}", first_line(&e))),
        }
    }
    let mut created = Vec::new();
    for vcpus in [1, 2] {
        match crate::linuxcreate::one(&images, kernel, &d(&format!("{vcpus}-stamp")), vcpus) {
            Ok(r) => created.push(r),
            Err(e) => missing.push(format!(
                "creation to /init, {vcpus} vCPU(s): {}",
                first_line(&e)
            )),
        }
    }
    // Natively under `-icount` 1 CPU only: with 2 the second never comes
    // up (`NATIVE_NOTE`); `crate::linuxcount` counts that boot instead.
    let mut natives = Vec::new();
    match native(&images, &d("native-1"), 1) {
        Ok(r) => natives.push(r),
        Err(e) => missing.push(format!("native, 1 CPU: {}", first_line(&e))),
    }
    let counted = match crate::linuxcount::run(&images, kernel, out_dir) {
        Ok(c) => c,
        Err(e) => {
            missing.push(format!("counted without -icount: {}", first_line(&e)));
            crate::linuxcount::Counts::default()
        }
    };
    Ok(Report {
        rows,
        vtx,
        native: natives,
        missing,
        created,
        counted,
    })
}

/// Exits per second of a check's span beyond the plain boot's.
fn rate(row: &Row, plain: &Row) -> Option<f64> {
    let cs = row.span_cs.filter(|&c| c > 0)?;
    Some(row.exits.saturating_sub(plain.exits) as f64 / (cs as f64 / 100.0))
}

/// The section for docs/benchmarks.md.
pub fn section(report: &Report) -> String {
    let rows = &report.rows[..];
    let mut s = format!("{HEADING}\n\n");
    let intro = String::from(
        "Written by `cargo xtask bench --only linux` (tools/xtask/src/linuxbench.rs). The \
         patched Linux 6.1 (`guest-kernel-patches/`) and its busybox initramfs as boot modules \
         (`kind=linux`, `console=hvc0`: the boot log goes out through the console hypercall and is in the counts), GRUB ISO under QEMU TCG \
         `-icount shift=7,align=off,sleep=off` (one instruction = 128 ns of virtual time), \
         one host CPU per vCPU. *To `/init`*: the kernel's clock at `Run /init`, from its \
         `tsc_early_init`, in instructions (the hypervisor's included). *Exits*: the domain's \
         whole life (boot, `/init`'s checks, power-off). Idle and busy rates: the boot with \
         `/init`'s `sleep 1` or a 1 s busy loop, minus the plain boot, over the check's span \
         (guest uptime), so they carry the plain boot's spread (its two runs below). The \
         counts are virtual but do not repeat to the instruction (module comment of \
         linuxbench.rs): two identical boots may end up to 1 % apart. {SMP2_NOTE}\n\n\
         The idle rate is not the pure idle cost NO_HZ aims at: it also holds the check's own work (`sleep` forked and run, `/proc/uptime` read twice, a line printed) and the plain boot's spread (18 exits between its two runs, so about +-20 exits/s); an exit counter read by the guest before and after would isolate it.\n\n",
    );
    s.push_str(&intro.replace("{SMP2_NOTE}", SMP2_NOTE));
    rows_table(&mut s, rows);
    if let Some(r) = rows.first() {
        let _ = write!(s, "\nCommand (one run): `{}`\n", r.command);
    }
    if !report.vtx.is_empty() {
        s.push_str(VTX_NOTE);
        rows_table(&mut s, &report.vtx);
        if let Some(r) = report.vtx.first() {
            let _ = write!(s, "\nCommand (VT-x, one run): `{}`\n", r.command);
        }
    }
    native_table(&mut s, report);
    s.push_str(&crate::linuxcreate::table(&report.created, |v| {
        rows.iter()
            .find(|r| r.vcpus == v && r.checks.is_empty())
            .map(|r| r.init_us)
    }));
    s
}

/// One backend's boots: to `/init`, exits, and the checks' exits per
/// second beyond that backend's first plain 1-vCPU boot.
fn rows_table(s: &mut String, rows: &[Row]) {
    s.push_str("| vCPUs | `/init` checks | to `/init` (instructions) | exits | span | exits/s beyond the plain boot |\n");
    s.push_str("|---:|---|---:|---:|---:|---:|\n");
    let plain = rows.iter().find(|r| r.vcpus == 1 && r.checks.is_empty());
    for r in rows {
        let span = r
            .span_cs
            .map_or_else(|| "-".to_string(), |c| format!("{:.2} s", c as f64 / 100.0));
        let per_s = plain
            .and_then(|p| rate(r, p))
            .map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {span} | {per_s} |",
            r.vcpus,
            if r.checks.is_empty() {
                "none (power off)"
            } else {
                r.checks
            },
            r.init_insns(),
            r.exits,
        );
    }
}

/// The side-by-side table: the Kestrel domain's plain boot against the
/// same kernel booted by QEMU itself.
fn native_table(s: &mut String, report: &Report) {
    s.push_str(NATIVE_NOTE);
    s.push_str("| vCPUs | `-icount`: Kestrel domain, to `/init` (instructions) | `-icount`: QEMU `-kernel`, to `/init` (instructions) | `-icount`: Kestrel / native | counted: Kestrel / native, median (range) |\n");
    s.push_str("|---:|---:|---:|---:|---:|\n");
    for cpus in [1, 2] {
        let k = report
            .rows
            .iter()
            .find(|r| r.vcpus == cpus && r.checks.is_empty());
        let n = report.native.iter().find(|r| r.cpus == cpus);
        let cell = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
        let ratio = match (k, n) {
            (Some(k), Some(n)) if n.init_insns() > 0 => {
                format!("{:.3}", k.init_insns() as f64 / n.init_insns() as f64)
            }
            _ => "-".to_string(),
        };
        let _ = writeln!(
            s,
            "| {cpus} | {} | {} | {ratio} | {} |",
            cell(k.map(Row::init_insns)),
            cell(n.map(NativeRow::init_insns)),
            crate::linuxcount::ratio_cell(&report.counted.rows, cpus),
        );
    }
    for m in &report.missing {
        let _ = writeln!(s, "\nNo figure: {m}");
    }
    for n in &report.native {
        let _ = write!(
            s,
            "\nNative command (`-icount`, {} CPU(s)): `{}`\n",
            n.cpus, n.command
        );
    }
    s.push_str(&crate::linuxcount::table(&report.counted));
}

/// What was wrong with the 2-vCPU Kestrel boot under `-icount` (see `run`).
const SMP2_NOTE: &str = "Two vCPUs (`vcpus=2`, `-smp 2`) under \
     `-icount shift=7,align=off,sleep=off` used to stall for good (`Run /init` at 4.46 s, \
     then an RCU report of a timer that never fired on CPU 0; an older kernel: both vCPUs \
     spinning on CPU 1's runqueue lock). Cause, found from the stalled machine's memory \
     (QEMU monitor `info registers -a` and `pmemsave`, guest page tables walked by hand, \
     stacks against `nm vmlinux`): the timer upcall had been delivered while the guest's \
     RFLAGS.IF was 0, inside `__schedule` with the runqueue lock held, or inside the timer \
     upcall itself during a timekeeping update, and spun on the lock or seqcount its own \
     interrupted context held. Kestrel never injected with IF = 0 (checked at every \
     VMRUN); QEMU's TCG does it: `helper_vmrun` delivers an EVENTINJ external interrupt \
     and also leaves `exception_index` set to its vector, so the next time the vCPU's \
     loop stops with no exception of its own (a round-robin turn's icount budget running \
     out, frequent under `-icount` with 2 CPUs) QEMU delivers that vector again, IF or \
     not. Fix (hypervisor/src/virt/svm.rs, `set_upcall`): the upcall goes as a virtual \
     interrupt (V_IRQ with its vector), which QEMU delivers through its interrupt path; \
     test `linux_smp2_icount_amdv_qemu` (tests/tests/boot/linux_smp_icount.rs) boots this \
     configuration.";

/// The VT-x boots (see `run`).
const VTX_NOTE: &str = "\nVT-x: the same plain, `sleep` and `busy` boots, 1 vCPU, under \
     Bochs 2.7 `corei7_haswell_4770` (VT-x with EPT) with `clock: sync=none` and `ips` 10 \
     million: the guest's clock advances 100 ns per instruction and nothing else, so a \
     boot repeats to the instruction and each runs once. Same GRUB ISO and modules as \
     above, 128 MiB, one CPU.\n\n";

/// The native side's method (`crate::linuxnative`).
const NATIVE_NOTE: &str = "\nThe ratio issue 13 asks for: the same `vmlinux` and initramfs \
     booted by QEMU itself (`-kernel` through the kernel's PVH note, q35, SeaBIOS, no \
     Kestrel), `-m 64M` (the domain's memory), command line `console=ttyS0 8250.nr_uarts=1 \
     initramfs_async=0 kestrel.end=reboot` (the 8250 console instead of hvc0; `/init` ends \
     in a reset, which `-no-reboot` turns into QEMU exiting), measured two ways. \
     *`-icount`*: same `-icount shift=7,align=off,sleep=off` and `-smp` = vCPUs as the \
     Kestrel rows above; both figures are the kernel's own clock at `Run /init` from its \
     `tsc_early_init` (128 ns per instruction): the Kestrel figure holds the hypervisor's \
     work for the domain after that point (exits, hypercalls, the console), not the \
     domain's creation before it, nor the firmware natively. Natively with 2 CPUs this way \
     gives nothing: under `-icount` (shifts 0, 3, 7, 10 and auto, `sleep=on` or off, \
     SeaBIOS or qboot) QEMU 7.2 never brings the second CPU up (the AP spins in \
     `cpu_init` on its `cpu_callout_mask` bit, which the boot CPU had set; cause inside \
     QEMU not found), while without `-icount` it boots, given `-smp 2,sockets=2,cores=1,\
     threads=1` (QEMU 7.2 makes `-smp 2` one socket of two cores, SeaBIOS writes one MP \
     table entry per socket, and the kernel, built without ACPI, reads only that table). \
     *Counted*: so both sides, 1 and 2 vCPUs, are also counted by the `insncount` plugin \
     without `-icount` (the method and every run below the table); the 2-vCPU ratio is \
     that one, and the 1-vCPU pair shows how the two methods compare.\n\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_init_line_and_fields() {
        assert_eq!(
            printk_us("[dom1 linux] [    0.698031] Run /init as init process"),
            Some(698_031)
        );
        assert_eq!(printk_us("[dom1 linux] [    0.698031] Freeing"), None);
        // The native run's 8250 console: no hypervisor prefix.
        assert_eq!(
            printk_us("[    1.250000] Run /init as init process"),
            Some(1_250_000)
        );
        assert_eq!(
            field(
                "domain-end: id=1 name=linux result=exited code=0 exits=1202 freed",
                " exits="
            ),
            Some(1202)
        );
        assert_eq!(
            field("[dom1 linux] kestrel-check: sleep1_cs=103", "sleep1_cs="),
            Some(103)
        );
    }

    #[test]
    fn vtx_rows_count_100_ns_instructions_and_their_own_plain_boot() {
        let row = |backend, checks, init_us, exits, span_cs| Row {
            backend,
            vcpus: 1,
            checks,
            init_us,
            exits,
            span_cs,
            command: format!("{backend:?}"),
        };
        let report = Report {
            rows: vec![row(Backend::Svm, "", 1_280, 1000, None)],
            vtx: vec![
                row(Backend::Vmx, "", 1_000, 3000, None),
                row(Backend::Vmx, "busy", 1_000, 3500, Some(100)),
            ],
            native: vec![],
            missing: vec![],
            created: vec![],
            counted: Default::default(),
        };
        let s = section(&report);
        // AMD-V: 1,280 us / 128 ns; VT-x: 1,000 us / 100 ns, and the
        // busy boot's 500 exits beyond VT-x's plain boot over 1 s.
        assert!(
            s.contains("| 1 | none (power off) | 10000 | 1000 | - | - |"),
            "{s}"
        );
        assert!(
            s.contains("| 1 | none (power off) | 10000 | 3000 | - | - |"),
            "{s}"
        );
        assert!(
            s.contains("| 1 | busy | 10000 | 3500 | 1.00 s | 500.0 |"),
            "{s}"
        );
        assert!(s.contains("Command (VT-x, one run): `Vmx`"), "{s}");
    }

    #[test]
    fn the_ratio_is_kestrel_over_native() {
        let row = |vcpus, init_us| Row {
            backend: Backend::Svm,
            vcpus,
            checks: "",
            init_us,
            exits: 1,
            span_cs: None,
            command: "k".into(),
        };
        let report = Report {
            rows: vec![row(1, 1_280)],
            vtx: vec![],
            native: vec![
                NativeRow {
                    cpus: 1,
                    init_us: 640,
                    command: "n1".into(),
                },
                NativeRow {
                    cpus: 2,
                    init_us: 1_280,
                    command: "n2".into(),
                },
            ],
            missing: vec!["Kestrel, 2 vCPUs: stalled".into()],
            created: vec![],
            counted: Default::default(),
        };
        let mut s = String::new();
        native_table(&mut s, &report);
        // 1,280 us = 10,000 instructions; 640 us = 5,000.
        assert!(s.contains("| 1 | 10000 | 5000 | 2.000 | - |"), "{s}");
        assert!(s.contains("| 2 | - | 10000 | - | - |"), "{s}");
        assert!(s.contains("No figure: Kestrel, 2 vCPUs: stalled"), "{s}");
    }
}

//! What the speculative-execution mitigations cost on the hypercall round
//! trip (`cargo xtask bench --only spec`): the `hcbench` guest with the
//! defaults and with `spec-ctrl=off`, on AMD-V (QEMU TCG `-icount`) and
//! VT-x (Bochs `tigerlake`, the one Bochs model that reports the Intel
//! controls and IA32_ARCH_CAPABILITIES). Instruction counts, as for the
//! hypercall table; what the barriers cost in cycles needs real hardware.

use std::fmt::Write as _;
use std::path::Path;

use xtask::error::Result;

use crate::hcbench::{self, Row};

/// The section's heading in docs/benchmarks.md.
pub const HEADING: &str = "## Speculation mitigations";

/// Bochs model with IBRS/IBPB, MD_CLEAR, L1D_FLUSH and ARCH_CAPABILITIES
/// (0x1f: RDCL_NO IBRS_ALL RSBA SKIP_L1DFL_VMENTRY SSB_NO).
const BOCHS_MODEL: &str = "tigerlake";

/// One configuration's figures.
pub struct SpecRow {
    /// `default` or the option.
    pub options: &'static str,
    /// The mitigation lines the hypervisor logged (`on`/`off` and why).
    pub plan: Vec<String>,
    /// The hcbench figures.
    pub row: Row,
}

/// The mitigation lines of the first run's serial log.
fn plan_lines(log: &Path) -> Vec<String> {
    let raw = std::fs::read(log).unwrap_or_default();
    xtask::serial::lines(&raw)
        .into_iter()
        .filter_map(|l| {
            let i = l.find("spec-ctrl: ")?;
            let rest = &l[i + "spec-ctrl: ".len()..];
            ["IBPB", "RSB filling", "VERW before", "L1D flush"]
                .iter()
                .any(|p| rest.starts_with(p))
                .then(|| rest.to_string())
        })
        .collect()
}

/// Runs the four configurations.
pub fn run(kernel: &Path, out_dir: &Path) -> Result<Vec<SpecRow>> {
    let hcbench = crate::paths::guest(crate::paths::Profile::Release, "hcbench");
    let mut rows = Vec::new();
    for (options, tag) in [("", "spec-on"), ("spec-ctrl=off", "spec-off")] {
        let row = hcbench::svm_with(kernel, &hcbench, out_dir, options, &format!("svm-{tag}"))?;
        let plan = plan_lines(&out_dir.join(format!("serial-hcbench-svm-{tag}-0.log")));
        rows.push(SpecRow {
            options: if options.is_empty() {
                "default"
            } else {
                "spec-ctrl=off"
            },
            plan,
            row,
        });
    }
    for (options, tag) in [("", "spec-on"), ("spec-ctrl=off", "spec-off")] {
        let t = format!("{BOCHS_MODEL}-{tag}");
        let row = hcbench::vmx_with(kernel, &hcbench, out_dir, options, &t, BOCHS_MODEL)?;
        let plan = plan_lines(&out_dir.join(format!("bochs-hcbench-{t}-0/serial.log")));
        rows.push(SpecRow {
            options: if options.is_empty() {
                "default"
            } else {
                "spec-ctrl=off"
            },
            plan,
            row,
        });
    }
    Ok(rows)
}

/// The section for docs/benchmarks.md.
pub fn section(rows: &[SpecRow]) -> String {
    let mut t = String::new();
    // Ignoring write! results: writing to a String cannot fail.
    let _ = writeln!(t, "{HEADING}\n");
    let _ = writeln!(
        t,
        "Written by `cargo xtask bench --only spec` (and the full run): the hypercall round \
         trip of the `hcbench` guest (see *Hypercall round trip*; same counting) with the \
         mitigations the CPU calls for (`default`) and with `spec-ctrl=off`. QEMU 7.2's TCG \
         drops every speculation CPUID flag (`-cpu ...,+spec-ctrl` warns \"TCG doesn't support \
         requested feature\"), so on AMD-V only the RSB filling runs; Bochs' `tigerlake` \
         reports IBRS/IBPB, MD_CLEAR, L1D_FLUSH and ARCH_CAPABILITIES 0x1f (RDCL_NO, no \
         MDS_NO), so VT-x there runs the RSB filling and VERW before each entry (the L1D \
         flush is off: RDCL_NO). hcbench is one domain: no domain switch, so no IBPB in \
         these figures (an IBPB is one `WRMSR` and a compare per switch to another \
         domain). Instruction counts only: on hardware VERW, IBPB and the L1D flush cost \
         cycles (hundreds to thousands) that no emulator here counts.\n"
    );
    let _ = writeln!(
        t,
        "| backend | machine | `spec-ctrl` | what ran | hypervisor instructions per round trip | difference |"
    );
    let _ = writeln!(t, "|---|---|---|---|---:|---:|");
    for pair in rows.chunks(2) {
        let base = pair
            .iter()
            .find(|r| r.options != "default")
            .and_then(|r| r.row.runs.first())
            .map(|s| s.ticks_per_round_trip());
        for r in pair {
            let Some(s) = r.row.runs.first() else {
                continue;
            };
            let ticks = s.ticks_per_round_trip() - r.row.insn_ticks as f64;
            let on: Vec<&str> = r
                .plan
                .iter()
                .filter(|l| l.contains(": on ("))
                .filter_map(|l| l.split(':').next())
                .collect();
            let diff = base.map_or(String::new(), |b| fmt(s.ticks_per_round_trip() - b));
            let _ = writeln!(
                t,
                "| {} | {} | {} | {} | **{}** | {} |",
                r.row.backend,
                r.row.machine,
                r.options,
                if on.is_empty() {
                    "nothing".to_string()
                } else {
                    on.join(", ")
                },
                fmt(ticks),
                diff
            );
        }
    }
    let _ = writeln!(
        t,
        "\nThe RSB filling is 16 rounds of two `CALL`s, an `ADD`, a `DEC` and a `JNZ`, an \
         `LFENCE` and the flag test: about 84 instructions per exit; VERW adds itself and a flag \
         test; the `CLI` VT-x now runs before every entry (so that no handler refills the \
         buffers after the VERW) is in both figures, as are the flag tests of the barriers \
         that are off. Each configuration ran {} times with identical \
         figures. Commands: as for the hypercall round trip, with `spec-ctrl=off` appended \
         to the command line, and for VT-x `cpu: model={BOCHS_MODEL}`; serial logs \
         `build/bench/serial-hcbench-svm-spec-*.log` and \
         `build/bench/bochs-hcbench-{BOCHS_MODEL}-spec-*/`.",
        rows.first().map_or(0, |r| r.row.runs.len())
    );
    t
}

/// Whole numbers without decimals, others with two.
fn fmt(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

/// Whether every configuration's runs agreed.
pub fn deterministic(rows: &[SpecRow]) -> bool {
    rows.iter().all(|r| r.row.deterministic())
}

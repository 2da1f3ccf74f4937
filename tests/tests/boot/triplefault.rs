//! A triple fault of the hypervisor leaves QEMU's register dump in the
//! test report (issue 13). Before, every run had `-no-reboot`, under
//! which QEMU 7.2 logs only "Triple fault" and exits 0: which instruction
//! faulted, and on which tables, was lost.
//!
//! | test | machine | asserts |
//! |---|---|---|
//! | `triple_fault_dump` | QEMU TCG (AMD-V), PVH, 2 CPUs, `selftest=triple-fault` (an empty IDT, then `ud2`) | the run ends `Reset` (stopped after the dump, not a reboot loop, not a time-out); the machine paused at the fault and the report holds each CPU's registers and page-table view read through QEMU's monitor; the report's summary for the CPU gives `RIP=` the address of the `ud2` the hypervisor logged before faulting, and `IDT=0000000000000000`; the dump itself (`CR2=`, `CR3=`, `GDT=`, `RSP=`) is in the report |

use boot_tests::domains::ReportOnPanic;
use boot_tests::qemu::{PVH_TIMEOUT_S, pvh_vm, run};
use xtask::runner::Ended;

const TEST: &str = "triple_fault_dump";

#[test]
fn triple_fault_dump() {
    let vm = pvh_vm(2, "128M", "exit=qemu selftest=triple-fault", None);
    let o = run(TEST, vm, PVH_TIMEOUT_S);
    let _report = ReportOnPanic(&o);
    assert_eq!(o.ended, Ended::Reset, "{TEST}: how the run ended");
    let said = o
        .lines
        .iter()
        .find_map(|l| l.split("self-test triple-fault: ud2 at rip=0x").nth(1))
        .unwrap_or_else(|| panic!("{TEST}: the hypervisor did not log the ud2's address"));
    let hex = said.split_whitespace().next().unwrap_or_default();
    let rip = u64::from_str_radix(hex, 16)
        .unwrap_or_else(|e| panic!("{TEST}: rip {hex:?} in the log: {e}"));
    let want = format!("RIP={rip:016x} ");
    let fault = o
        .triple_fault
        .as_ref()
        .unwrap_or_else(|| panic!("{TEST}: no triple fault in QEMU's log"));
    let summary = fault
        .summary
        .iter()
        .find(|l| l.contains(&want))
        .unwrap_or_else(|| panic!("{TEST}: no CPU summary with {want}in {:?}", fault.summary));
    // The CPU with the empty IDT is the one named as faulting, and the
    // report's last lines (what CI keeps) say so.
    let headline = fault.headline();
    assert!(
        headline.contains(&format!(" at RIP {rip:016x} (it has no IDT; CR2 ")),
        "{TEST}: the headline {headline:?} for {summary}"
    );
    let report = o.report();
    let tail: Vec<&str> = report.lines().rev().take(fault.summary.len() + 2).collect();
    assert!(
        tail.contains(&summary.as_str())
            && tail
                .iter()
                .any(|l| l.contains("the hypervisor triple-faulted (QEMU reset), CPU ")),
        "{TEST}: the report does not end with the fault's summary:\n{}",
        tail.join("\n")
    );
    assert!(
        summary.contains(" IDT=0000000000000000"),
        "{TEST}: the faulting CPU's IDT base: {summary}"
    );
    for field in ["RSP=", "CR2=", "CR3=", "GDT="] {
        assert!(summary.contains(field), "{TEST}: {field} in {summary}");
    }
    // The machine paused at the fault and the harness read it through
    // QEMU's monitor (`xtask::faultmon`): the registers, then what each
    // CPU's page tables map, walked in memory.
    assert!(
        o.emulator_log.contains(&format!(
            "Triple fault\n\n(state at the Triple fault, read through QEMU's monitor)\n{}",
            xtask::reset::FAULT_HEADER
        )),
        "{TEST}: the dump itself is not in the report"
    );
    assert!(
        o.emulator_log.contains("Mappings of CPU 0's page tables"),
        "{TEST}: no page-table view in the report"
    );
}

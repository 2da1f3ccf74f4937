//! QEMU's record of a triple fault (issue 13): with `-d cpu_reset -D LOG`
//! and the machine allowed to reset ([`crate::qemu::Vm::reset_dump`]),
//! QEMU 7.2 logs `Triple fault` when a CPU shuts down, then, as it resets
//! the machine, `CPU Reset (CPU n)` and that CPU's registers *before* the
//! reset (RIP, RSP, CR2, CR3, GDT and IDT bases, ...), one CPU after the
//! other. The same header also starts the dumps of the power-on reset and
//! of every INIT of an AP, so only headers after `Triple fault` count.
//!
//! The runner ([`crate::runner`]) stops QEMU once every CPU's dump after
//! the fault is in the log (a reset machine would boot again and loop);
//! [`TripleFault::find`] then gives the dumps and a one-line summary per
//! CPU for the test report. A machine with a monitor socket pauses at the
//! fault instead of resetting: the runner reads the CPUs there
//! ([`crate::faultmon`]) and writes them under [`FAULT_HEADER`], which
//! counts as a dump here.

use std::path::Path;

/// What QEMU logs when a CPU's exception cannot be delivered.
pub const TRIPLE_FAULT: &str = "Triple fault";
/// The header of each CPU's dump (`CPU Reset (CPU 0)`).
pub const RESET_HEADER: &str = "CPU Reset (CPU ";
/// The header of each CPU's registers read through the monitor at a
/// paused fault ([`crate::faultmon`]), in the same format.
pub const FAULT_HEADER: &str = "CPU at the fault (CPU ";

/// `text` with each [`FAULT_HEADER`] read as a [`RESET_HEADER`] (both
/// start one CPU's registers).
fn dumps_of(text: &str) -> String {
    text.replace(FAULT_HEADER, RESET_HEADER)
}

/// A reset log to watch: its path and the machine's CPU count (a reset
/// dumps every CPU).
#[derive(Debug, Clone, Copy)]
pub struct ResetLog<'a> {
    /// The `-D` file.
    pub path: &'a Path,
    /// `-smp`.
    pub cpus: u32,
}

impl ResetLog<'_> {
    /// Whether the log holds a triple fault with every CPU's dump after
    /// it (the last one may still be being written: QEMU is stopped with
    /// SIGTERM, which lets it flush the log).
    pub fn dumped(&self) -> bool {
        let Ok(raw) = std::fs::read(self.path) else {
            return false;
        };
        Self::complete(&String::from_utf8_lossy(&raw), self.cpus)
    }

    /// [`Self::dumped`] on the log's text.
    pub fn complete(text: &str, cpus: u32) -> bool {
        text.find(TRIPLE_FAULT).is_some_and(|at| {
            let after = dumps_of(text.get(at..).unwrap_or_default());
            after.matches(RESET_HEADER).count() >= cpus.max(1) as usize
        })
    }

    /// Whether QEMU logged a triple fault (its dumps may not be there).
    pub fn faulted(&self) -> bool {
        std::fs::read(self.path)
            .is_ok_and(|raw| String::from_utf8_lossy(&raw).contains(TRIPLE_FAULT))
    }
}

/// The dumps that followed a triple fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TripleFault {
    /// One line per CPU: `cpu N: RIP=... RSP=... CR2=... CR3=... GDT=...
    /// IDT=... TR=...` (what is there of it; `TR=` is the TSS base).
    pub summary: Vec<String>,
    /// The log from the `Triple fault` line on, at most `limit` bytes.
    pub dump: String,
}

/// The registers a summary names, as QEMU prints them (`RIP=`; in a
/// 32-bit dump `EIP=`).
const FIELDS: [&str; 7] = ["RIP=", "EIP=", "RSP=", "CR2=", "CR3=", "GDT=", "IDT="];

impl TripleFault {
    /// The first triple fault in `text` (a reset log), with its dumps cut
    /// to about `limit` bytes; `None` when there is none.
    pub fn find(text: &str, limit: usize) -> Option<Self> {
        let at = text.find(TRIPLE_FAULT)?;
        let after = text.get(at..).unwrap_or_default();
        let mut summary = Vec::new();
        for dump in dumps_of(after).split(RESET_HEADER).skip(1) {
            let (cpu, regs) = dump.split_once(')').unwrap_or(("?", dump));
            let mut line = format!("cpu {cpu}:");
            for f in FIELDS {
                if let Some(v) = value(regs, f) {
                    line.push_str(&format!(" {f}{v}"));
                }
            }
            // `TR =0018 00000000001912b0 00000067 ...`: the TSS base, which
            // tells the host's TSS from a guest's still loaded (between
            // VMLOAD of the guest and VMLOAD of the host).
            if let Some(base) = regs
                .find("TR =")
                .and_then(|at| regs.get(at + 4..)?.split_whitespace().nth(1))
            {
                line.push_str(&format!(" TR={base}"));
            }
            summary.push(line);
        }
        let mut end = after.len().min(limit);
        while !after.is_char_boundary(end) {
            end -= 1;
        }
        Some(Self {
            summary,
            dump: after.get(..end).unwrap_or_default().to_string(),
        })
    }

    /// The CPU that faulted, as far as the registers tell (QEMU 7.2 logs
    /// `Triple fault` without the CPU): the index into [`Self::summary`]
    /// of the first CPU whose `CR2=` lies in its own IDT (a #PF while
    /// reading a gate: the IDT was not mapped, the machine-wide triple
    /// fault of issue 13), else of the first with no IDT (`IDT=0`), and
    /// why; `None` when no CPU looks like it.
    pub fn faulting_cpu(&self) -> Option<(usize, &'static str)> {
        let num =
            |line: &str, f: &str| value(line, f).and_then(|v| u64::from_str_radix(&v, 16).ok());
        let in_idt = |l: &&String| {
            matches!((num(l, "CR2="), num(l, "IDT=")),
                (Some(cr2), Some(idt)) if idt != 0 && cr2.wrapping_sub(idt) < 0x1000)
        };
        if let Some(i) = self.summary.iter().position(|l| in_idt(&l)) {
            return Some((i, "CR2 is in its IDT: a gate could not be read"));
        }
        self.summary
            .iter()
            .position(|l| num(l, "IDT=") == Some(0))
            .map(|i| (i, "it has no IDT"))
    }

    /// Whether this is the fault QEMU 7.2's TCG produces now and then in
    /// the AMD-V runs (docs/testing.md, gotchas: "the machine-wide triple
    /// fault"): a CPU whose `CR2` lies in its own IDT (it could not read a
    /// gate of an IDT that is there) with a guest's task register still
    /// loaded (`TR=` base 0: the host's is set by the `vmload` a few
    /// instructions after `vmrun`). No hypervisor path runs with a
    /// guest's TR but the few instructions after `vmrun`, and the host's
    /// page tables do not change there.
    pub fn lost_translation_after_vmexit(&self) -> bool {
        let Some((i, _)) = self.faulting_cpu() else {
            return false;
        };
        let Some(line) = self.summary.get(i) else {
            return false;
        };
        let num = |f: &str| value(line, f).and_then(|v| u64::from_str_radix(&v, 16).ok());
        matches!((num("CR2="), num("IDT="), num("TR=")),
            (Some(cr2), Some(idt), Some(0)) if idt != 0 && cr2.wrapping_sub(idt) < 0x1000)
    }

    /// One line for a panic message: `CPU n at RIP=... (why), CR2=...`
    /// for [`Self::faulting_cpu`], or where each CPU was when it is not
    /// known.
    pub fn headline(&self) -> String {
        let short = |l: &str| {
            let (cpu, regs) = l.split_once(':').unwrap_or(("cpu ?", l));
            let rip = value(regs, "RIP=")
                .or_else(|| value(regs, "EIP="))
                .unwrap_or_default();
            let cr2 = value(regs, "CR2=").unwrap_or_default();
            (cpu.replace("cpu", "CPU"), rip, cr2)
        };
        match self.faulting_cpu() {
            Some((i, why)) => {
                let (cpu, rip, cr2) = short(self.summary.get(i).map_or("", String::as_str));
                format!("{cpu} at RIP {rip} ({why}; CR2 {cr2})")
            }
            None => {
                let each: Vec<String> = self
                    .summary
                    .iter()
                    .map(|l| {
                        let (cpu, rip, _) = short(l);
                        format!("{cpu} at RIP {rip}")
                    })
                    .collect();
                format!("which CPU is not known; {}", each.join(", "))
            }
        }
    }
}

/// Whether a hypervisor log line reports a guest killed by QEMU 7.2 TCG's
/// lost translation in guest mode, the same fault as
/// [`TripleFault::lost_translation_after_vmexit`] on the other side of
/// the world switch (docs/testing.md): `... vCPU n triple fault:
/// exitintinfo=0x...` where the event being delivered was a page fault
/// (valid, type exception, vector 14) and the exit before it a VMMCALL
/// (`prev_exit=0x81`): the guest's first memory access after its
/// hypercall returned (the `pop` after `vmmcall`, on its own stack) found
/// no translation. A guest that really faults there would need the
/// hypervisor to have broken its registers or tables, which one run
/// more shows (a second such kill fails the test).
pub fn guest_lost_translation(line: &str) -> bool {
    let field = |f: &str| {
        let at = line.find(f)? + f.len();
        let v = line.get(at..)?.split_whitespace().next()?;
        u64::from_str_radix(v.trim_start_matches("0x"), 16).ok()
    };
    line.contains("triple fault: exitintinfo=")
        && matches!(field("exitintinfo="), Some(e) if e & 0x8000_07ff == 0x8000_030e)
        && field("prev_exit=") == Some(0x81)
}

/// The value after `field` in a dump: the next word, or for `GDT=`/`IDT=`
/// (`GDT=     base limit`) the base.
fn value(regs: &str, field: &str) -> Option<String> {
    let at = regs.find(field)? + field.len();
    regs.get(at..)?
        .split_whitespace()
        .next()
        .map(str::to_string)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    /// QEMU 7.2's `-d cpu_reset` output around a triple fault (64-bit
    /// dump, cut down), after the power-on dumps.
    const LOG: &str = "CPU Reset (CPU 0)\nEAX=00000000 EBX=00000000\nEIP=00000000 EFL=00000000\n\
CPU Reset (CPU 1)\nEAX=00000000\n\
Triple fault\n\
CPU Reset (CPU 0)\n\
RAX=0000000000000001 RBX=0000000000000002 RCX=0 RDX=0\n\
RSI=0 RDI=0 RBP=0 RSP=ffff800000f0ff80\n\
RIP=ffffffff8012a3b4 RFL=00000046 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=0\n\
GDT=     ffffffff80200000 0000002f\n\
IDT=     0000000000000000 00000000\n\
CR0=80050033 CR2=0000000000000000 CR3=0000000000101000 CR4=000006a0\n\
CPU Reset (CPU 1)\n\
RIP=ffffffff80100010 RSP=ffff800000e0ff00\n\
GDT=     ffffffff80200000 0000002f\n\
IDT=     ffffffff80300000 00000fff\n\
CR0=80050033 CR2=0000000000000000 CR3=0000000000101000 CR4=000006a0\n";

    #[test]
    fn only_dumps_after_the_fault_count() {
        assert!(ResetLog::complete(LOG, 2));
        assert!(!ResetLog::complete(LOG, 3));
        let before = LOG.split(TRIPLE_FAULT).next().unwrap();
        // Four power-on and INIT dumps, no fault: nothing to stop for.
        assert!(!ResetLog::complete(&before.repeat(2), 1));
        assert!(!ResetLog::complete("", 1));
        // One CPU counts as at least one dump.
        assert!(!ResetLog::complete("Triple fault\n", 0));
    }

    #[test]
    fn summary_names_each_cpu_s_registers() {
        let t = TripleFault::find(LOG, 100_000).unwrap();
        assert_eq!(
            t.summary,
            [
                "cpu 0: RIP=ffffffff8012a3b4 RSP=ffff800000f0ff80 CR2=0000000000000000 \
                 CR3=0000000000101000 GDT=ffffffff80200000 IDT=0000000000000000",
                "cpu 1: RIP=ffffffff80100010 RSP=ffff800000e0ff00 CR2=0000000000000000 \
                 CR3=0000000000101000 GDT=ffffffff80200000 IDT=ffffffff80300000",
            ]
        );
        assert!(t.dump.starts_with("Triple fault\nCPU Reset (CPU 0)\n"));
        assert!(TripleFault::find(LOG, 12).unwrap().dump == "Triple fault");
        assert!(TripleFault::find("CPU Reset (CPU 0)\n", 100).is_none());
    }

    #[test]
    fn the_faulting_cpu_is_the_one_that_could_not_read_its_idt() {
        // LOG: CPU 0 has no IDT.
        let t = TripleFault::find(LOG, 100_000).unwrap();
        assert_eq!(t.faulting_cpu(), Some((0, "it has no IDT")));
        assert_eq!(
            t.headline(),
            "CPU 0 at RIP ffffffff8012a3b4 (it has no IDT; CR2 0000000000000000)"
        );
        // CPU 1's CR2 is its #DF gate (IDT + 8 * 16), CPU 0 runs a guest.
        let log = format!(
            "{TRIPLE_FAULT}\n{FAULT_HEADER}0)\nRIP=0000000000401000 RSP=1\n\
             GDT=     0000000000002000 0000002f\nIDT=     0000000000003000 00000fff\n\
             CR0=80050033 CR2=0000000000005000 CR3=0000000000101000\n\
             {FAULT_HEADER}1)\nRIP=ffffffff80105b3a RSP=2\n\
             GDT=     ffffffff80200000 0000002f\nIDT=     ffffffff80300000 00000fff\n\
             CR0=80050033 CR2=ffffffff80300080 CR3=0000000000101000\n"
        );
        let t = TripleFault::find(&log, 100_000).unwrap();
        assert_eq!(
            t.faulting_cpu(),
            Some((1, "CR2 is in its IDT: a gate could not be read"))
        );
        assert!(
            t.headline()
                .starts_with("CPU 1 at RIP ffffffff80105b3a (CR2 is in its IDT"),
            "{}",
            t.headline()
        );
        // No TR in the dump: not the emulator's fault after vmrun.
        assert!(!t.lost_translation_after_vmexit());
        // With a guest's TR (base 0) still loaded it is; with the host's
        // TSS, or a CR2 outside the IDT, it is not.
        let tr = |base: &str| {
            log.replace(
                "CR2=ffffffff80300080 CR3=0000000000101000\n",
                &format!(
                    "CR2=ffffffff80300080 CR3=0000000000101000\nTR =0000 {base} 0000ffff 00008b00\n"
                ),
            )
        };
        assert!(
            TripleFault::find(&tr("0000000000000000"), 100_000)
                .unwrap()
                .lost_translation_after_vmexit()
        );
        assert!(
            !TripleFault::find(&tr("00000000001912b0"), 100_000)
                .unwrap()
                .lost_translation_after_vmexit()
        );
        assert!(
            !TripleFault::find(
                &tr("0000000000000000").replace("CR2=ffffffff80300080", "CR2=ffffffff80400080"),
                100_000
            )
            .unwrap()
            .lost_translation_after_vmexit()
        );
        // Nothing tells: every CPU's RIP.
        let t = TripleFault::find(&log.replace("CR2=ffffffff80300080", "CR2=0"), 100_000).unwrap();
        assert_eq!(t.faulting_cpu(), None);
        assert_eq!(
            t.headline(),
            "which CPU is not known; CPU 0 at RIP 0000000000401000, CPU 1 at RIP ffffffff80105b3a"
        );
    }

    #[test]
    fn a_guest_page_fault_right_after_vmmcall_is_the_emulator_s() {
        let seen = "[cpu0 WARN ] domain 3 (evhostile) vCPU 0 triple fault: exitintinfo=0x1080000b0e injected=0x0 prev_exit=0x81 rsp=0x7fad40 rflags=0x46";
        assert!(guest_lost_translation(seen));
        // Another event (a #UD of the `triple` guest), another exit
        // before it, or not a triple fault at all: no.
        assert!(!guest_lost_translation(
            &seen.replace("0x1080000b0e", "0x80000306")
        ));
        assert!(!guest_lost_translation(
            &seen.replace("prev_exit=0x81", "prev_exit=0x400")
        ));
        assert!(!guest_lost_translation(
            "domain 3 killed: nested page fault at 0x7fad40"
        ));
        // Not valid: nothing was being delivered.
        assert!(!guest_lost_translation(
            &seen.replace("0x1080000b0e", "0x0")
        ));
    }

    #[test]
    fn state_read_at_a_paused_fault_counts_as_the_dump() {
        let log = format!(
            "{TRIPLE_FAULT}\n{FAULT_HEADER}0)\nRIP=0000000000105b3a RSP=1\n\
             TR =0018 00000000001912b0 00000067 00008900 DPL=0 TSS64-avl\n"
        );
        assert!(ResetLog::complete(&log, 1));
        assert!(!ResetLog::complete(&log, 2));
        let t = TripleFault::find(&log, 1000).unwrap();
        assert_eq!(
            t.summary,
            ["cpu 0: RIP=0000000000105b3a RSP=1 TR=00000000001912b0"]
        );
        assert!(t.dump.contains(FAULT_HEADER), "{}", t.dump);
    }
}

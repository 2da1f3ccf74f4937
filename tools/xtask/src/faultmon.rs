//! The machine's state at a triple fault, read through QEMU's monitor
//! (issue 13).
//!
//! `-d cpu_reset` dumps the registers only as QEMU resets the CPUs, and
//! by then memory is already the firmware's again: the reset log of the
//! one machine-wide triple fault seen so far (CPU 0 right after `vmrun`,
//! `CR2` = the host's #DF gate) could not say whether the hypervisor's
//! page tables were intact. So a dumped run is started paused-on-fault
//! (`-action reboot=shutdown,shutdown=pause`, the hypervisor never resets
//! the machine nor powers it off by ACPI: it leaves through
//! `isa-debug-exit`) with a monitor socket beside the reset log; when the
//! log says `Triple fault`, [`capture`] asks the monitor for every CPU's
//! registers (`info registers -a`) and for what each CPU's page tables map
//! (`info mem`: the monitor walks CR3 in memory, not through the CPU's
//! TLB or nested-paging state), appends both to the log, and quits QEMU.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::reset::{FAULT_HEADER, TRIPLE_FAULT};

/// Unix socket paths longer than this do not fit `sockaddr_un` (108
/// bytes with the terminating NUL, Linux `unix(7)`).
const MAX_SOCKET_PATH: usize = 100;

/// The monitor socket for a reset log: `monitor.sock` beside it, or
/// `None` when that path is too long for a Unix socket (the run then
/// keeps the reset-and-dump behaviour).
pub fn socket_for(log: &Path) -> Option<PathBuf> {
    let p = log.with_file_name("monitor.sock");
    (p.as_os_str().len() <= MAX_SOCKET_PATH).then_some(p)
}

/// The monitor's prompt: every answer ends with it.
const PROMPT: &[u8] = b"(qemu) ";

/// One monitor conversation.
struct Monitor(UnixStream);

impl Monitor {
    fn open(path: &Path) -> std::io::Result<Self> {
        let s = UnixStream::connect(path)?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        let mut m = Self(s);
        m.answer()?; // the greeting
        Ok(m)
    }

    /// Reads up to the next prompt; returns what came before it.
    fn answer(&mut self) -> std::io::Result<String> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        while !buf.ends_with(PROMPT) {
            let n = self.0.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        }
        let text = String::from_utf8_lossy(buf.strip_suffix(PROMPT).unwrap_or(&buf));
        // The monitor echoes the command line first (with terminal
        // escapes): keep what follows it.
        Ok(text
            .split_once('\n')
            .map_or(String::new(), |(_, rest)| rest.replace('\r', "")))
    }

    fn ask(&mut self, command: &str) -> std::io::Result<String> {
        self.0.write_all(command.as_bytes())?;
        self.0.write_all(b"\n")?;
        self.answer()
    }
}

/// `info registers -a` as the reset log's dumps: each `CPU#n` block under
/// a [`FAULT_HEADER`] line. Returns the text and the CPU numbers.
pub fn as_dumps(registers: &str) -> (String, Vec<u32>) {
    let mut out = String::new();
    let mut cpus = Vec::new();
    for line in registers.lines() {
        if let Some(n) = line.trim().strip_prefix("CPU#")
            && let Ok(n) = n.trim().parse::<u32>()
        {
            out.push_str(&format!("{FAULT_HEADER}{n})\n"));
            cpus.push(n);
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    (out, cpus)
}

/// The page-aligned, non-zero RAX of CPU `cpu` in `info registers -a`
/// output (a physical page worth reading: a VMCB right after VMRUN).
pub fn rax_page(registers: &str, cpu: u32) -> Option<u64> {
    let block = registers
        .split("CPU#")
        .skip(1)
        .find(|b| b.split_whitespace().next() == Some(&cpu.to_string()))?;
    let at = block.find("RAX=")? + 4;
    let rax = u64::from_str_radix(block.get(at..at + 16)?, 16).ok()?;
    (rax != 0 && rax.is_multiple_of(4096)).then_some(rax)
}

/// After `Triple fault` in `log`: stops the machine, appends every CPU's
/// registers and page-table view to `log`, then quits QEMU. Errors are
/// written into the log too (the caller stops QEMU either way).
pub fn capture(socket: &Path, log: &Path) {
    let text = match read_state(socket) {
        Ok(t) => t,
        Err(e) => format!(
            "\n(the monitor at {} did not answer: {e})\n",
            socket.display()
        ),
    };
    if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(log) {
        let _ = f.write_all(text.as_bytes());
    }
}

fn read_state(socket: &Path) -> std::io::Result<String> {
    let mut m = Monitor::open(socket)?;
    m.ask("stop")?;
    let registers = m.ask("info registers -a")?;
    let (dumps, cpus) = as_dumps(&registers);
    let dumps = dumps.trim_start_matches(['\n', '\r']);
    let mut text = format!("\n(state at the {TRIPLE_FAULT}, read through QEMU's monitor)\n{dumps}");
    for n in cpus {
        m.ask(&format!("cpu {n}"))?;
        text.push_str(&format!(
            "Mappings of CPU {n}'s page tables (monitor `info mem`, a walk of its CR3 in memory):\n{}",
            m.ask("info mem")?
        ));
        // Right after VMRUN (where the machine-wide triple fault of the
        // upcall stress tests happens, issue 13) RAX is the guest's VMCB:
        // its control area says which #VMEXIT came last (exit code at
        // +0x70, EXITINTINFO at +0x88, EVENTINJ at +0xa8).
        if let Some(page) = rax_page(&registers, n) {
            text.push_str(&format!(
                "The page CPU {n}'s RAX points to, first 0x100 bytes (after VMRUN: the guest's VMCB control area):\n{}",
                m.ask(&format!("xp /32gx {page:#x}"))?
            ));
        }
    }
    let _ = m.ask("quit");
    Ok(text)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    #[test]
    fn registers_become_one_dump_per_cpu() {
        let info = "CPU#0\nRAX=0000000000000001 RBX=0\nRIP=0000000000105b3a RFL=00000246\n\
CPU#1\nRIP=0000000000115783 RFL=00000246\n";
        let (dumps, cpus) = as_dumps(info);
        assert_eq!(cpus, [0, 1]);
        assert_eq!(
            dumps,
            format!(
                "{FAULT_HEADER}0)\nRAX=0000000000000001 RBX=0\nRIP=0000000000105b3a RFL=00000246\n\
{FAULT_HEADER}1)\nRIP=0000000000115783 RFL=00000246\n"
            )
        );
    }

    #[test]
    fn rax_names_a_page_only_when_it_is_one() {
        let info = "CPU#0\nRAX=0000000000075000 RBX=0\nCPU#1\nRAX=00000000fee00030 RBX=0\n\
CPU#2\nRAX=0000000000000000\n";
        assert_eq!(rax_page(info, 0), Some(0x75000));
        assert_eq!(rax_page(info, 1), None, "not page-aligned");
        assert_eq!(rax_page(info, 2), None, "zero");
        assert_eq!(rax_page(info, 3), None, "no such CPU");
    }

    #[test]
    fn a_socket_path_too_long_is_not_used() {
        assert_eq!(
            socket_for(Path::new("/t/runs/x/qemu-reset.log")),
            Some(PathBuf::from("/t/runs/x/monitor.sock"))
        );
        let long = format!("/{}/qemu-reset.log", "d".repeat(120));
        assert_eq!(socket_for(Path::new(&long)), None);
    }
}

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
    let (dumps, cpus) = as_dumps(&m.ask("info registers -a")?);
    let dumps = dumps.trim_start_matches(['\n', '\r']);
    let mut text = format!("\n(state at the {TRIPLE_FAULT}, read through QEMU's monitor)\n{dumps}");
    for n in cpus {
        m.ask(&format!("cpu {n}"))?;
        text.push_str(&format!(
            "Mappings of CPU {n}'s page tables (monitor `info mem`, a walk of its CR3 in memory):\n{}",
            m.ask("info mem")?
        ));
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
    fn a_socket_path_too_long_is_not_used() {
        assert_eq!(
            socket_for(Path::new("/t/runs/x/qemu-reset.log")),
            Some(PathBuf::from("/t/runs/x/monitor.sock"))
        );
        let long = format!("/{}/qemu-reset.log", "d".repeat(120));
        assert_eq!(socket_for(Path::new(&long)), None);
    }
}

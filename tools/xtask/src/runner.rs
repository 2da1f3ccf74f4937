//! Running an emulator with a hard deadline: whatever happens inside the
//! guest, the process is killed when the time is up or when the guard is
//! dropped (a panicking test included), so nothing can hang or linger.
//!
//! A run can also end on a serial line: [`run_until_line`] watches the
//! serial log and kills the emulator once a complete line containing the
//! awaited text appears (for machines that never shut down by themselves,
//! such as one running a guest that spins forever).

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Context, Result};
use crate::reset::ResetLog;

/// A child process that is killed (and reaped) when dropped.
#[derive(Debug)]
pub struct KillOnDrop(Child);

impl KillOnDrop {
    /// Spawns `cmd` with standard input closed.
    pub fn spawn(cmd: &mut Command) -> Result<Self> {
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .context(|| format!("starting {}", cmd.get_program().to_string_lossy()))?;
        Ok(Self(child))
    }

    /// Waits until the child ends or `deadline` passes (then kills it).
    pub fn wait_until(&mut self, deadline: Instant) -> Result<Ended> {
        self.wait_for(deadline, None)
    }

    /// Like [`Self::wait_until`], but also kills the child as soon as
    /// `stop` is seen (checked about every 20 ms): returns
    /// [`Ended::Stopped`] then.
    pub fn wait_for(&mut self, deadline: Instant, stop: Option<&StopLine<'_>>) -> Result<Ended> {
        self.wait_watching(deadline, stop, None)
    }

    /// Like [`Self::wait_for`], and with `reset`, stops the child once
    /// its reset log holds a triple fault's register dumps: returns
    /// [`Ended::Reset`] then. It is stopped with SIGTERM (QEMU then
    /// flushes the log and exits), killed if still alive after 10 s.
    pub fn wait_watching(
        &mut self,
        deadline: Instant,
        stop: Option<&StopLine<'_>>,
        reset: Option<&ResetLog<'_>>,
    ) -> Result<Ended> {
        loop {
            if let Some(status) = self
                .0
                .try_wait()
                .context(|| "waiting for the emulator".to_string())?
            {
                return Ok(Ended::Exited(status));
            }
            if stop.is_some_and(StopLine::seen) {
                self.kill();
                return Ok(Ended::Stopped);
            }
            if let Some(r) = reset {
                if r.dumped() {
                    self.terminate(Duration::from_secs(10));
                    return Ok(Ended::Reset);
                }
                // A machine that pauses at a triple fault (it has a
                // monitor: `faultmon`) is read, then stopped.
                if let Some(socket) = crate::faultmon::socket_for(r.path)
                    && socket.exists()
                    && r.faulted()
                {
                    crate::faultmon::capture(&socket, r.path);
                    self.terminate(Duration::from_secs(10));
                    return Ok(Ended::Reset);
                }
            }
            let now = Instant::now();
            if now >= deadline {
                self.kill();
                return Ok(Ended::TimedOut);
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(20)));
        }
    }

    /// SIGTERM (through kill(1): no libc here), then SIGKILL after
    /// `grace`.
    pub fn terminate(&mut self, grace: Duration) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let end = Instant::now() + grace;
        while Instant::now() < end {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A serial line to wait for: a complete line (ended by `\n`) of `log`
/// containing every one of `needles`.
#[derive(Debug, Clone, Copy)]
pub struct StopLine<'a> {
    /// The serial log file the emulator writes.
    pub log: &'a Path,
    /// Texts that must all be on the same line; one that starts with
    /// `\n` must be (without it) on some complete line of its own, for a
    /// run whose last lines come in either order (two domains' consoles).
    pub needles: &'a [&'a str],
}

impl StopLine<'_> {
    /// Whether the log holds such a line now.
    pub fn seen(&self) -> bool {
        let Ok(raw) = std::fs::read(self.log) else {
            return false;
        };
        Self::matches(&raw, self.needles)
    }

    /// Whether a complete line of `raw` contains every needle.
    pub fn matches(raw: &[u8], needles: &[&str]) -> bool {
        // Only text before the last newline: a line still being written is
        // not judged.
        let Some(end) = raw.iter().rposition(|&b| b == b'\n') else {
            return false;
        };
        let text = String::from_utf8_lossy(&raw[..end]);
        let (own, anywhere): (Vec<&str>, Vec<&str>) =
            needles.iter().partition(|n| !n.starts_with('\n'));
        text.split('\n').any(|l| own.iter().all(|n| l.contains(n)))
            && anywhere
                .iter()
                .all(|n| text.split('\n').any(|l| l.contains(&n[1..])))
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The process exited (or was killed by someone else).
    Exited(ExitStatus),
    /// We killed it at the deadline.
    TimedOut,
    /// We killed it because the awaited serial line appeared
    /// ([`run_until_line`]): the expected end of a machine that never
    /// stops by itself.
    Stopped,
    /// The machine triple-faulted and we stopped it once QEMU had logged
    /// the CPUs' registers, at the reset or read through the monitor at
    /// the paused fault ([`run_watching`], [`crate::faultmon`]).
    Reset,
}

impl Ended {
    /// The exit code, if it exited normally.
    pub fn code(self) -> Option<i32> {
        match self {
            Self::Exited(s) => s.code(),
            Self::TimedOut | Self::Stopped | Self::Reset => None,
        }
    }
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exited(s) => match s.code() {
                Some(c) => write!(f, "exit status {c}"),
                None => write!(f, "{s}"),
            },
            Self::TimedOut => f.write_str("timed out (killed)"),
            Self::Stopped => f.write_str("stopped by the harness at the awaited serial line"),
            Self::Reset => f.write_str(
                "the machine triple-faulted; stopped by the harness after QEMU's register dump",
            ),
        }
    }
}

/// Runs `cmd` to completion or for at most `timeout`; returns how it ended
/// and how long it ran.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<(Ended, Duration)> {
    let start = Instant::now();
    let mut child = KillOnDrop::spawn(cmd)?;
    let ended = child.wait_until(start + timeout)?;
    Ok((ended, start.elapsed()))
}

/// Runs `cmd` until a complete line of the serial log `stop.log` contains
/// every one of `stop.needles` (then kills it: [`Ended::Stopped`]), until
/// it exits by itself, or for at most `timeout`.
pub fn run_until_line(
    cmd: &mut Command,
    timeout: Duration,
    stop: &StopLine<'_>,
) -> Result<(Ended, Duration)> {
    let start = Instant::now();
    let mut child = KillOnDrop::spawn(cmd)?;
    let ended = child.wait_for(start + timeout, Some(stop))?;
    Ok((ended, start.elapsed()))
}

/// Runs `cmd` like [`run_until_line`] (with `stop`) or
/// [`run_with_timeout`] (without), and with `reset`, until its reset log
/// holds a triple fault's dumps ([`Ended::Reset`]).
pub fn run_watching(
    cmd: &mut Command,
    timeout: Duration,
    stop: Option<&StopLine<'_>>,
    reset: Option<&ResetLog<'_>>,
) -> Result<(Ended, Duration)> {
    let start = Instant::now();
    let mut child = KillOnDrop::spawn(cmd)?;
    let ended = child.wait_watching(start + timeout, stop, reset)?;
    Ok((ended, start.elapsed()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    #[test]
    fn exit_codes_come_through() {
        let (e, _) = run_with_timeout(
            Command::new("sh").args(["-c", "exit 33"]),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(e.code(), Some(33));
        assert_eq!(e.to_string(), "exit status 33");
    }

    #[test]
    fn a_hang_is_killed_at_the_deadline() {
        let (e, took) =
            run_with_timeout(Command::new("sleep").arg("30"), Duration::from_millis(200)).unwrap();
        assert_eq!(e, Ended::TimedOut);
        assert!(took < Duration::from_secs(5), "{took:?}");
    }

    #[test]
    fn stop_lines_need_every_needle_on_one_complete_line() {
        let log = b"a domain-end: id=3 name=x\ndomain-end: id=4 name=hammer.elf res";
        assert!(StopLine::matches(log, &["domain-end:", "name=x"]));
        // The hammer line is not finished yet.
        assert!(!StopLine::matches(log, &["domain-end:", "name=hammer.elf"]));
        assert!(!StopLine::matches(b"no newline at all", &["no"]));
        assert!(!StopLine::matches(log, &["id=3", "hammer"]));
        // `\n`: on a complete line of its own, in either order.
        let two = b"[dom0] canary intact\n[drv] 11 checks, 0 failed; exitin";
        assert!(!StopLine::matches(
            two,
            &["canary intact", "\n11 checks, 0 failed; exiting"]
        ));
        let two = b"[dom0] canary intact\n[drv] 11 checks, 0 failed; exiting\n";
        assert!(StopLine::matches(
            two,
            &["canary intact", "\n11 checks, 0 failed; exiting"]
        ));
        let two = b"[drv] 11 checks, 0 failed; exiting\n[dom0] canary intact\n";
        assert!(StopLine::matches(
            two,
            &["canary intact", "\n11 checks, 0 failed; exiting"]
        ));
        assert!(!StopLine::matches(
            two,
            &["canary intact", "\nnever printed"]
        ));
    }

    #[test]
    fn a_run_stops_at_its_line() {
        let dir = std::env::temp_dir().join(format!("xtask-runner-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("serial.log");
        let _ = std::fs::remove_file(&log);
        let script = format!(
            "echo booting > {0}; echo 'domain-end: name=b' >> {0}; exec sleep 30",
            log.display()
        );
        let stop = StopLine {
            log: &log,
            needles: &["domain-end:", "name=b"],
        };
        let (e, took) = run_until_line(
            Command::new("sh").args(["-c", &script]),
            Duration::from_secs(20),
            &stop,
        )
        .unwrap();
        assert_eq!(e, Ended::Stopped);
        assert_eq!(e.code(), None);
        assert!(took < Duration::from_secs(10), "{took:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_run_stops_after_a_triple_fault_s_dump() {
        let dir = std::env::temp_dir().join(format!("xtask-reset-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("reset.log");
        let _ = std::fs::remove_file(&log);
        // Power-on dumps only, for a while: not a reason to stop. Then a
        // fault and one CPU's dump; the child would go on for 30 s.
        let script = format!(
            "echo 'CPU Reset (CPU 0)' > {0}; sleep 0.3; \
             printf 'Triple fault\nCPU Reset (CPU 0)\nRIP=1\n' >> {0}; exec sleep 30",
            log.display()
        );
        let reset = ResetLog {
            path: &log,
            cpus: 1,
        };
        let (e, took) = run_watching(
            Command::new("sh").args(["-c", &script]),
            Duration::from_secs(20),
            None,
            Some(&reset),
        )
        .unwrap();
        assert_eq!(e, Ended::Reset);
        assert!(took < Duration::from_secs(10), "{took:?}");
        assert!(
            took >= Duration::from_millis(300),
            "stopped before the fault: {took:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn dropping_the_guard_kills() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let guard = KillOnDrop::spawn(&mut cmd).unwrap();
        let pid = guard.0.id();
        drop(guard);
        // Reaped, so the pid no longer names our child: /proc entry gone or another process.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(!stat.contains("(sleep)") || stat.contains(" Z "), "{stat}");
    }
}

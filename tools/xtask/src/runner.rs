//! Running an emulator with a hard deadline: whatever happens inside the
//! guest, the process is killed when the time is up or when the guard is
//! dropped (a panicking test included), so nothing can hang or linger.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Context, Result};

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
        loop {
            if let Some(status) = self
                .0
                .try_wait()
                .context(|| "waiting for the emulator".to_string())?
            {
                return Ok(Ended::Exited(status));
            }
            let now = Instant::now();
            if now >= deadline {
                let _ = self.0.kill();
                let _ = self.0.wait();
                return Ok(Ended::TimedOut);
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(10)));
        }
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
}

impl Ended {
    /// The exit code, if it exited normally.
    pub fn code(self) -> Option<i32> {
        match self {
            Self::Exited(s) => s.code(),
            Self::TimedOut => None,
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

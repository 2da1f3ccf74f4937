//! Command-line arguments.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use kestrel_toolstack::proto::DomainRef;

use crate::error::Error;
use crate::target::Sources;
pub use crate::target::Target;

/// Manage the domains of a Kestrel host through dom0's management service.
///
/// <dom> is a domain name, a numeric id or a UUID. Exit status: 0 success, 1 dom0
/// refused, 2 usage or configuration error, 3 connection error or no reply
/// in time, 4 protocol error, 5 shutdown/reboot forced (the guest did not
/// end in time and dom0 destroyed it).
#[derive(Debug, Parser)]
#[command(name = "hvctl", version)]
pub struct Cli {
    /// dom0's management serial line as a unix socket (QEMU chardev socket).
    #[arg(long, value_name = "PATH", global = true)]
    pub socket: Option<PathBuf>,
    /// dom0's management serial line as a TCP socket.
    #[arg(long, value_name = "HOST:PORT", global = true)]
    pub tcp: Option<String>,
    /// dom0's network management service at HOST (port 4444 unless
    /// given), over the authenticated channel: needs --key-file.
    #[arg(long, value_name = "HOST[:PORT]", global = true)]
    pub host: Option<String>,
    /// dom0's management line as a serial device (serial-over-LAN, e.g.
    /// /dev/ttyS1): raw, 115200 8N1.
    #[arg(long, value_name = "DEVICE", global = true)]
    pub serial: Option<PathBuf>,
    /// The key for --host (64 hex digits; `hvctl keygen` makes one):
    /// dom0's configuration must name the same key.
    #[arg(long, value_name = "FILE", global = true)]
    pub key_file: Option<PathBuf>,
    /// Seconds to wait for each reply from dom0 (default 20); for
    /// shutdown and reboot, the guest's grace time before dom0 destroys
    /// it (default 30).
    #[arg(long, value_name = "SECONDS", global = true, value_parser = seconds)]
    pub timeout: Option<f64>,
    /// Print dom0's replies as JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// List every domain.
    List,
    /// Check a configuration file here, then have dom0 create its domains.
    Create {
        #[arg(value_name = "CONFIG.TOML")]
        config: PathBuf,
    },
    /// Destroy a domain.
    Destroy {
        #[arg(value_name = "DOM", value_parser = dom)]
        domain: DomainRef,
    },
    /// Pause a domain.
    Pause {
        #[arg(value_name = "DOM", value_parser = dom)]
        domain: DomainRef,
    },
    /// Unpause a domain.
    Unpause {
        #[arg(value_name = "DOM", value_parser = dom)]
        domain: DomainRef,
    },
    /// Show one domain.
    Info {
        #[arg(value_name = "DOM", value_parser = dom)]
        domain: DomainRef,
    },
    /// Attach to a domain's console (Ctrl-] detaches).
    Console {
        #[arg(value_name = "DOM", value_parser = dom)]
        domain: DomainRef,
        /// Print the console lines dom0 kept (also of an ended domain)
        /// instead of attaching.
        #[arg(long)]
        history: bool,
    },
    /// Print dom0's log: what it did (kept in its memory).
    Log,
    /// The machine: CPUs, memory, domains, versions.
    Host,
    /// Follow every domain's life cycle: one JSON line per change
    /// (created, started, paused, unpaused, shutdown_requested, ended with
    /// reason and exit code), until interrupted.
    Events {
        /// Stop after N events; 0: never.
        #[arg(long, value_name = "N", default_value_t = 0)]
        count: u64,
    },
    /// Per-domain CPU and memory: once, or every --every seconds.
    Top {
        /// Seconds between samples (CPU % is measured over it).
        #[arg(long = "every", value_name = "SECONDS", default_value = "1", value_parser = millis)]
        every_ms: u64,
        /// Screens to print; 0: until interrupted.
        #[arg(long, value_name = "N", default_value_t = 1)]
        count: u64,
    },
    /// Ask a domain to power off; dom0 destroys it if it has not ended
    /// after --timeout seconds (30). Waits and says how it ended.
    Shutdown {
        #[arg(value_name = "DOM", value_parser = dom)]
        domain: DomainRef,
        /// Destroy it now, without asking.
        #[arg(long)]
        force: bool,
        /// Return once the request is made.
        #[arg(long)]
        no_wait: bool,
    },
    /// Ask a domain to reboot (as shutdown; its on_reboot policy, restart
    /// by default, builds it again).
    Reboot {
        #[arg(value_name = "DOM", value_parser = dom)]
        domain: DomainRef,
        /// Destroy it now, without asking (then on_reboot applies).
        #[arg(long)]
        force: bool,
        /// Return once the request is made.
        #[arg(long)]
        no_wait: bool,
    },
    /// Show or change a live domain's credit-scheduler weight and cap.
    Sched {
        #[arg(value_name = "DOM", value_parser = dom)]
        domain: DomainRef,
        /// CPU time is shared in proportion to weight (1 ..= 65535).
        #[arg(long, value_name = "W", value_parser = clap::value_parser!(u32).range(1..=65535))]
        weight: Option<u32>,
        /// Percent of one CPU at most (0: no cap; up to 100 per vCPU).
        #[arg(long, value_name = "C")]
        cap: Option<u32>,
    },
    /// Images dom0 builds domains from: list, upload, delete.
    Image {
        #[command(subcommand)]
        cmd: ImageCmd,
    },
    /// Volumes in dom0's store: fixed-size, writable disks for guests.
    #[command(subcommand)]
    Volume(crate::store::VolumeCmd),
    /// Set a live domain's memory target (as xl mem-set): a cooperating
    /// guest gives memory back or takes it again until it holds the target.
    #[command(name = "mem-set")]
    MemSet {
        #[arg(value_name = "DOM", value_parser = dom)]
        domain: DomainRef,
        /// The target: MiB, or with a unit (16M, 4096p for pages, 1G).
        #[arg(value_name = "SIZE", value_parser = crate::memset::parse_size)]
        size: u64,
    },
    /// Drop an ended domain from the list.
    Forget {
        #[arg(value_name = "DOM", value_parser = dom)]
        domain: DomainRef,
    },
    /// Serve many hvctl clients on the one management line at --socket
    /// PATH, listening at PATH.mux (hvctl starts one by itself when needed).
    Relay,
    /// Print a shell completion script (install: see `hvctl man`, FILES).
    Completions {
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print hvctl's manual page (roff): `hvctl man | man -l -`.
    Man,
    /// Make a key for the network management service: 64 hex digits to
    /// FILE (created readable by you only; never overwritten) or stdout.
    /// Name the same file in dom0's configuration and in --key-file.
    Keygen {
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum ImageCmd {
    /// Every image: boot modules and uploaded ones, with size and SHA-256.
    List,
    /// Send a local file to dom0 (nothing is sent when dom0 has an image
    /// with the same SHA-256 already).
    Upload {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The image's name (default: the file name and 12 hex digits of
        /// its SHA-256).
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
    /// Import a local raw or qcow2 file into dom0's store as image NAME
    /// (qcow2 is read here; runs of zeros are not sent).
    Import {
        #[arg(value_name = "NAME")]
        name: String,
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The file's format (default: qcow2 when it starts like one).
        #[arg(long, value_enum)]
        format: Option<crate::xfer::Format>,
    },
    /// Write the store's image NAME to a local file, raw or qcow2.
    Export {
        #[arg(value_name = "NAME")]
        name: String,
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The file's format (default: qcow2 when FILE ends in .qcow2).
        #[arg(long, value_enum)]
        format: Option<crate::xfer::Format>,
    },
    /// Remove an uploaded image (refused while a live domain uses it).
    Delete {
        #[arg(value_name = "NAME")]
        name: String,
    },
}

fn millis(s: &str) -> Result<u64, String> {
    seconds(s).map(|t| (t * 1000.0) as u64)
}

fn seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(t) if t > 0.0 && t <= 86_400.0 => Ok(t),
        _ => Err(format!("{s:?} is not a number of seconds from 0 to 86400")),
    }
}

fn dom(s: &str) -> Result<DomainRef, String> {
    if s.is_empty() {
        return Err("a domain name or id must not be empty".into());
    }
    Ok(DomainRef::parse(s))
}

impl Cli {
    /// Where dom0 is (see [`crate::target`]).
    pub fn target(&self) -> Result<Target, Error> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        crate::target::resolve(&Sources {
            socket: self.socket.clone(),
            tcp: self.tcp.clone(),
            host: self.host.clone(),
            serial: self.serial.clone(),
            key_file: self.key_file.clone(),
            env: &env,
            config: crate::target::config_file(&env),
            demo: crate::target::demo_socket(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, String> {
        Cli::try_parse_from(std::iter::once("hvctl").chain(args.iter().copied()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn commands_and_domains() {
        let c = parse(&["--socket", "/tmp/s", "list"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.command, Command::List);
        assert_eq!(c.target().ok(), Some(Target::Unix("/tmp/s".into())));
        assert!(!c.json);
        let c = parse(&["pause", "web", "--tcp", "localhost:4444", "--json"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.command,
            Command::Pause {
                domain: DomainRef::Name("web".into())
            }
        );
        assert_eq!(c.target().ok(), Some(Target::Tcp("localhost:4444".into())));
        assert!(c.json);
        let c = parse(&["--socket=s", "info", "7"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.command,
            Command::Info {
                domain: DomainRef::Id(7)
            }
        );
        let c = parse(&["--socket=s", "create", "g.toml"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.command,
            Command::Create {
                config: "g.toml".into()
            }
        );
        let c = parse(&["console", "--history", "web"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.command,
            Command::Console {
                domain: DomainRef::Name("web".into()),
                history: true
            }
        );
        let c = parse(&["sched", "web", "--weight", "512", "--cap", "50"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.command,
            Command::Sched {
                domain: DomainRef::Name("web".into()),
                weight: Some(512),
                cap: Some(50)
            }
        );
        assert!(parse(&["sched", "web", "--weight", "0"]).is_err());
        let c = parse(&["shutdown", "web", "--timeout", "5", "--force"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.timeout, Some(5.0));
        assert!(matches!(
            c.command,
            Command::Shutdown {
                force: true,
                no_wait: false,
                ..
            }
        ));
        for cmd in [
            "destroy", "unpause", "console", "forget", "shutdown", "reboot",
        ] {
            assert!(parse(&["--socket=s", cmd, "db"]).is_ok(), "{cmd}");
        }
    }

    #[test]
    fn usage_errors() {
        assert!(parse(&[]).is_err());
        assert!(parse(&["frobnicate"]).is_err());
        assert!(parse(&["pause"]).is_err_and(|e| e.contains("<DOM>")));
        assert!(parse(&["info", ""]).is_err());
        assert!(parse(&["list", "extra"]).is_err());
        let both =
            parse(&["--socket", "a", "--tcp", "b:1", "list"]).unwrap_or_else(|e| panic!("{e}"));
        assert!(both.target().is_err());
        let t = parse(&[
            "--timeout",
            "2.5",
            "--host",
            "srv",
            "--key-file",
            "k",
            "list",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.timeout, Some(2.5));
        assert_eq!(
            t.target().ok(),
            Some(Target::Secure {
                addr: "srv:4444".into(),
                key_file: "k".into()
            })
        );
        assert!(parse(&["--timeout", "0", "list"]).is_err());
        assert!(parse(&["--timeout", "x", "list"]).is_err());
    }
}

//! Command-line arguments.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use kestrel_toolstack::proto::DomainRef;

use crate::error::Error;

/// Manage the domains of a Kestrel host through dom0's management service.
///
/// <dom> is a domain name or a numeric id. Exit status: 0 success, 1 dom0
/// refused, 2 usage or configuration error, 3 connection error, 4 protocol
/// error.
#[derive(Debug, Parser)]
#[command(name = "hvctl", version)]
pub struct Cli {
    /// dom0's management serial line as a unix socket (QEMU chardev socket).
    #[arg(long, value_name = "PATH", global = true)]
    pub socket: Option<PathBuf>,
    /// dom0's management serial line as a TCP socket.
    #[arg(long, value_name = "HOST:PORT", global = true)]
    pub tcp: Option<String>,
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
    },
    /// Print a shell completion script (install: see `hvctl man`, FILES).
    Completions {
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print hvctl's manual page (roff): `hvctl man | man -l -`.
    Man,
}

fn dom(s: &str) -> Result<DomainRef, String> {
    if s.is_empty() {
        return Err("a domain name or id must not be empty".into());
    }
    Ok(DomainRef::parse(s))
}

/// Where dom0's management service is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Unix(PathBuf),
    Tcp(String),
}

impl Cli {
    pub fn target(&self) -> Result<Target, Error> {
        match (&self.socket, &self.tcp) {
            (Some(p), None) => Ok(Target::Unix(p.clone())),
            (None, Some(t)) => Ok(Target::Tcp(t.clone())),
            (Some(_), Some(_)) => Err(Error::Usage("give --socket or --tcp, not both".into())),
            (None, None) => Err(Error::Usage(
                "no management connection: give --socket PATH or --tcp HOST:PORT".into(),
            )),
        }
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
        for cmd in ["destroy", "unpause", "console"] {
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
        let none = parse(&["list"]).unwrap_or_else(|e| panic!("{e}"));
        let e = none
            .target()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("--socket PATH or --tcp HOST:PORT"), "{e}");
    }
}

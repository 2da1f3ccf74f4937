//! `hvctl`: the host-side management CLI. Talks the line-delimited JSON
//! protocol of `kestrel_toolstack::proto` to dom0's management service over
//! a unix or TCP socket (a QEMU chardev in development; see
//! docs/toolstack.md).

mod cli;
mod client;
mod console;
mod docs;
mod error;
mod events;
mod lifecycle;
mod memset;
mod output;
mod pipeline;
mod relay;
mod secure;
mod serial;
mod store;
mod target;
mod top;
mod upload;
mod xfer;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use kestrel_toolstack::config::{self, Images, Limits};
use kestrel_toolstack::proto::{DomainRef, Op, Reply};

use cli::{Cli, Command, ImageCmd, Target};
use client::Client;
use error::Error;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Completions and the manual need no connection.
    if let Some(code) = docs::run(&cli.command) {
        return code;
    }
    let json = cli.json;
    match run(cli) {
        Ok(out) => {
            let mut stdout = std::io::stdout();
            let _ = stdout
                .write_all(out.as_bytes())
                .and_then(|()| stdout.flush());
            ExitCode::SUCCESS
        }
        Err(e) => {
            if let (true, Error::Refused(p)) = (json, &e) {
                let body = serde_json::json!({ "error": p });
                println!("{body}");
            }
            eprintln!("hvctl: {e}");
            e.exit_code()
        }
    }
}

/// Runs one command; returns what to print.
fn run(cli: Cli) -> Result<String, Error> {
    if let Command::Keygen { file } = &cli.command {
        return secure::keygen(file.as_deref());
    }
    let target = cli.target()?;
    if let Command::Relay = cli.command {
        let line = match &target {
            Target::Unix(p) => relay::Line::Socket(p),
            Target::Serial(p) => relay::Line::Serial(p),
            Target::Tcp(_) | Target::Secure { .. } => {
                return Err(Error::Usage(
                    "hvctl relay serves a unix socket or serial line: give --socket PATH or --serial DEVICE".into(),
                ));
            }
        };
        return relay::serve(line).map(|()| String::new());
    }
    // Check a configuration before connecting: a bad file never reaches dom0.
    let create = match &cli.command {
        Command::Create { config } => {
            let text = std::fs::read_to_string(config)
                .map_err(|e| Error::Config(format!("cannot read {}: {e}", config.display())))?;
            let file = config.display().to_string();
            let cfg = config::parse(&file, &text, &Limits::default(), Images::Any)
                .map_err(|e| Error::Config(format!("{} has errors:\n{e}", file)))?;
            if cfg.domains.is_empty() {
                return Err(Error::Config(format!(
                    "{file}: no [[domain]] in it: nothing to create"
                )));
            }
            Some(Op::Create { file, config: text })
        }
        _ => None,
    };
    let reply_timeout = match cli.command {
        // There --timeout is the guest's grace time; replies get the default.
        Command::Shutdown { .. } | Command::Reboot { .. } => 20.0,
        _ => cli.timeout.unwrap_or(20.0),
    };
    let mut client = Client::connect(&target, Duration::from_secs_f64(reply_timeout))?;
    let reboot = matches!(cli.command, Command::Reboot { .. });
    let progress = upload::progress_wanted(cli.json);
    let (mut op, verb) = match cli.command {
        Command::List => (Op::List, ""),
        Command::Create { config: path } => match create {
            // Local files it names by path are sent first (upload.rs).
            Some(Op::Create { file, config }) => {
                let config = upload::prepare_create(&mut client, &path, &config, progress)?;
                (Op::Create { file, config }, "created")
            }
            _ => return Err(Error::Usage("nothing to create".into())),
        },
        Command::Image { cmd } => return image(&mut client, cmd, cli.json, progress),
        Command::Destroy { domain } => (
            Op::Destroy {
                domain: domain.clone(),
            },
            "destroyed",
        ),
        Command::Pause { domain } => (Op::Pause { domain }, "paused"),
        Command::Unpause { domain } => (Op::Unpause { domain }, "unpaused"),
        Command::Info { domain } => (Op::Info { domain }, ""),
        Command::Forget { domain } => (
            Op::Forget {
                domain: domain.clone(),
            },
            "forgot",
        ),
        Command::Console {
            domain,
            history: false,
        } => return console::run(client, domain).map(|()| String::new()),
        Command::Console {
            domain,
            history: true,
        } => (Op::ConsoleHistory { domain }, ""),
        Command::Log => (Op::Log, ""),
        Command::Volume(c) => return store::volume(&mut client, c, cli.json),
        Command::Events { count } => return events::run(client, count),
        Command::Host => (Op::Host, ""),
        Command::Top { every_ms, count } => {
            return top::run(
                &mut client,
                Duration::from_millis(every_ms),
                count,
                cli.json,
            );
        }
        Command::Shutdown {
            domain,
            force,
            no_wait,
        }
        | Command::Reboot {
            domain,
            force,
            no_wait,
        } => {
            let s = lifecycle::Shutdown {
                domain,
                reboot,
                grace: Duration::from_secs_f64(cli.timeout.unwrap_or(lifecycle::DEFAULT_GRACE_S)),
                force,
                wait: !no_wait,
            };
            return lifecycle::shutdown(&mut client, s);
        }
        Command::Sched {
            domain,
            weight,
            cap,
        } => return lifecycle::sched(&mut client, domain, weight, cap, cli.json),
        Command::MemSet { domain, size } => {
            return memset::run(&mut client, domain, size, cli.json);
        }
        Command::Relay => return Err(Error::Usage("relay: handled above".into())),
        Command::Keygen { .. } => return Err(Error::Usage("keygen: handled above".into())),
        Command::Completions { .. } | Command::Man => {
            return Err(Error::Usage(
                "completions and man are answered before connecting".into(),
            ));
        }
    };
    let destroyed = match &mut op {
        // Named as pause names it: `destroyed domain 4 (web)`. Asked first
        // (an unknown domain is refused here), then destroyed by id.
        Op::Destroy { domain } => match client.call(Op::Info {
            domain: domain.clone(),
        })? {
            Reply::Domain { domain: d } => {
                *domain = DomainRef::Id(d.id);
                format!("{} ({})", d.id, d.name)
            }
            other => return Err(Error::Protocol(format!("unexpected reply {other:?}"))),
        },
        Op::Forget { domain } => domain.to_string(),
        _ => String::new(),
    };
    let reply = client.call(op)?;
    if cli.json {
        return Ok(output::json(&reply));
    }
    Ok(match reply {
        Reply::Domains { domains } if verb == "created" => domains
            .iter()
            .map(|d| {
                format!(
                    "created domain {} ({}): {}\n",
                    d.id,
                    d.name,
                    d.state.as_str()
                )
            })
            .collect(),
        Reply::Domains { domains } => output::table(&domains),
        Reply::Domain { domain } if verb.is_empty() => output::details(&domain),
        Reply::Domain { domain } => format!(
            "{verb} domain {} ({}): {}\n",
            domain.id,
            domain.name,
            domain.state.as_str()
        ),
        Reply::Done => format!("{verb} domain {destroyed}\n"),
        Reply::Lines { lines, dropped } => output::lines(&lines, dropped),
        Reply::Host(h) => output::host(&h),
        other => return Err(Error::Protocol(format!("unexpected reply {other:?}"))),
    })
}

/// `hvctl image ...`.
fn image(client: &mut Client, cmd: ImageCmd, json: bool, progress: bool) -> Result<String, Error> {
    match cmd {
        ImageCmd::List => {
            let images = upload::list(client)?;
            Ok(if json {
                output::json(&Reply::Images { images })
            } else {
                upload::table(&images)
            })
        }
        ImageCmd::Upload { file, name } => {
            let s = upload::send(client, &file, name.as_deref(), progress)?;
            Ok(if json {
                output::json(&Reply::Image { image: s.image })
            } else if s.sent {
                format!(
                    "uploaded {} as {} ({} bytes, sha256 {})\n",
                    file.display(),
                    s.image.name,
                    s.image.size,
                    s.image.sha256
                )
            } else {
                format!(
                    "dom0 has {} already as {} (sha256 {}): nothing sent\n",
                    file.display(),
                    s.image.name,
                    s.image.sha256
                )
            })
        }
        ImageCmd::Import { name, file, format } => {
            let kind = kestrel_toolstack::proto::ObjectKind::Image;
            let (reply, line) = xfer::import(client, kind, &name, &file, format, progress)?;
            Ok(if json { output::json(&reply) } else { line })
        }
        ImageCmd::Export { name, file, format } => {
            let kind = kestrel_toolstack::proto::ObjectKind::Image;
            let (reply, line) = xfer::export(client, kind, &name, &file, format, progress)?;
            Ok(if json { output::json(&reply) } else { line })
        }
        ImageCmd::Delete { name } => {
            let reply = client.call(Op::ImageDelete { name: name.clone() })?;
            Ok(if json {
                output::json(&reply)
            } else {
                format!("deleted image {name}\n")
            })
        }
    }
}

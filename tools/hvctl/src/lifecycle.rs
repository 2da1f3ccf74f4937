//! `hvctl shutdown`, `hvctl reboot` and `hvctl sched`.
//!
//! shutdown/reboot ask dom0 to request the end of a domain (the guest sees
//! `VIRQ_SHUTDOWN`) with a grace time; dom0 destroys a guest still alive
//! when it passes. hvctl then waits (unless `--no-wait`) until dom0 lists
//! the domain as ended and says how: by itself (exit status 0), or
//! `forced` (exit status 5); after a reboot it names the domain that
//! replaced it when its `on_reboot` policy restarted it.

use std::thread::sleep;
use std::time::{Duration, Instant};

use kestrel_toolstack::proto::{DomainInfo, DomainRef, DomainState, ErrorCode, Op, Reply};

use crate::client::Client;
use crate::error::Error;
use crate::output;

/// The grace time when `--timeout` is not given (dom0's default too).
pub const DEFAULT_GRACE_S: f64 = 30.0;
/// How often hvctl asks whether the domain has ended.
const POLL: Duration = Duration::from_millis(100);
/// Beyond the grace time: dom0 takes up to 5 s to destroy, and up to 2 s
/// to learn how a domain ended.
const MARGIN: Duration = Duration::from_secs(10);

/// What `shutdown`/`reboot` was asked to do.
pub struct Shutdown {
    pub domain: DomainRef,
    pub reboot: bool,
    pub grace: Duration,
    pub force: bool,
    pub wait: bool,
}

fn domain(reply: Reply) -> Result<DomainInfo, Error> {
    match reply {
        Reply::Domain { domain } => Ok(domain),
        other => Err(Error::Protocol(format!("unexpected reply {other:?}"))),
    }
}

fn who(d: &DomainInfo) -> String {
    format!("domain {} ({})", d.id, d.name)
}

/// Runs `shutdown`/`reboot`; returns what to print (or `Error::Forced`).
pub fn shutdown(client: &mut Client, s: Shutdown) -> Result<String, Error> {
    // Asked by name first (an unknown domain is refused here), then acted
    // on by id, so a restarted domain of the same name is never confused
    // with this one.
    let d = domain(client.call(Op::Info {
        domain: s.domain.clone(),
    })?)?;
    if d.state == DomainState::Ended {
        return Err(Error::Refused(kestrel_toolstack::proto::ProtoError::new(
            ErrorCode::BadState,
            format!("{} has already ended", who(&d)),
        )));
    }
    let what = if s.reboot { "reboot" } else { "shutdown" };
    client.call(Op::Shutdown {
        domain: DomainRef::Id(d.id),
        reboot: s.reboot,
        timeout_ms: Some(s.grace.as_millis().try_into().unwrap_or(u64::MAX)),
        force: s.force,
    })?;
    if !s.wait && !s.force {
        return Ok(format!(
            "{what} of {} requested; dom0 destroys it if it has not ended in {}\n",
            who(&d),
            output::duration(s.grace.as_nanos().try_into().unwrap_or(u64::MAX))
        ));
    }
    let end = wait_ended(client, d.id, s.grace + MARGIN)?;
    let mut out = match (end.reason.as_deref(), end.exit_code) {
        (Some("forced"), _) if s.force => format!("destroyed {} (forced)\n", who(&d)),
        (Some("forced"), _) => {
            return Err(Error::Forced(format!(
                "{} did not end within {} of the {what} request: dom0 destroyed it (forced)",
                who(&d),
                output::duration(s.grace.as_nanos().try_into().unwrap_or(u64::MAX))
            )));
        }
        (Some(r), Some(c)) => format!("{} ended: {r} with code {c}\n", who(&d)),
        (Some(r), None) => format!("{} ended: {r}\n", who(&d)),
        (None, _) => format!("{} ended\n", who(&d)),
    };
    if s.reboot {
        // Its on_reboot policy may have built it again (a new id).
        match client.call(Op::Info {
            domain: DomainRef::Name(d.name.clone()),
        }) {
            Ok(Reply::Domain { domain: n }) if n.id != d.id && n.state != DomainState::Ended => {
                out.push_str(&format!("restarted as {}\n", who(&n)));
            }
            _ => out.push_str(&format!(
                "{} was not restarted (its on_reboot policy)\n",
                d.name
            )),
        }
    }
    Ok(out)
}

/// Asks for domain `id` until dom0 lists it ended (or `limit` passes).
fn wait_ended(client: &mut Client, id: u32, limit: Duration) -> Result<DomainInfo, Error> {
    let start = Instant::now();
    loop {
        match client.call(Op::Info {
            domain: DomainRef::Id(id),
        }) {
            Ok(r) => {
                let d = domain(r)?;
                if d.state == DomainState::Ended {
                    return Ok(d);
                }
            }
            // Gone from the hypervisor, its end not yet learnt by dom0.
            Err(Error::Refused(e)) if e.code == ErrorCode::NoSuchDomain => {}
            Err(e) => return Err(e),
        }
        if start.elapsed() > limit {
            return Err(Error::Timeout(format!(
                "domain {id} has not ended {} s after the request, and dom0 has not reported \
                 destroying it",
                limit.as_secs()
            )));
        }
        sleep(POLL);
    }
}

/// `sched`: shows or changes weight and cap.
pub fn sched(
    client: &mut Client,
    d: DomainRef,
    weight: Option<u32>,
    cap: Option<u32>,
    json: bool,
) -> Result<String, Error> {
    let reply = if weight.is_none() && cap.is_none() {
        client.call(Op::Info { domain: d })?
    } else {
        client.call(Op::SetSched {
            domain: d,
            weight,
            cap,
        })?
    };
    if json {
        return Ok(output::json(&reply));
    }
    let d = domain(reply)?;
    let cap = match d.cap {
        0 => "none".to_string(),
        c => format!("{c}%"),
    };
    Ok(format!("{}: weight {}, cap {cap}\n", who(&d), d.weight))
}

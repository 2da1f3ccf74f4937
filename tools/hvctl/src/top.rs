//! `hvctl top`: per-domain CPU (percent of one CPU over the interval, from
//! two `list` samples) and memory; one screen, or `--count N` (0: until
//! interrupted) screens `--every` seconds apart.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, Instant};

use kestrel_toolstack::proto::{DomainInfo, DomainState, Op, Reply};

use crate::client::Client;
use crate::error::Error;
use crate::output::{bytes, cpu_time};

fn sample(client: &mut Client) -> Result<(Vec<DomainInfo>, Instant), Error> {
    match client.call(Op::List)? {
        Reply::Domains { domains } => Ok((domains, Instant::now())),
        other => Err(Error::Protocol(format!("unexpected reply {other:?}"))),
    }
}

/// CPU % of one CPU between two samples of the same domain.
pub fn percent(before_ns: u64, after_ns: u64, wall: Duration) -> f64 {
    let wall = wall.as_nanos() as f64;
    if wall <= 0.0 {
        return 0.0;
    }
    after_ns.saturating_sub(before_ns) as f64 * 100.0 / wall
}

/// One screen: live domains, busiest first.
pub fn screen(before: &HashMap<u32, u64>, now: &[DomainInfo], wall: Duration) -> String {
    let mut rows: Vec<(f64, &DomainInfo)> = now
        .iter()
        .filter(|d| d.state != DomainState::Ended)
        .map(|d| {
            let was = before.get(&d.id).copied().unwrap_or(d.cpu_time_ns);
            (percent(was, d.cpu_time_ns, wall), d)
        })
        .collect();
    rows.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.id.cmp(&b.1.id)));
    let total: u64 = now
        .iter()
        .filter(|d| d.state != DomainState::Ended)
        .map(|d| d.memory_bytes)
        .sum();
    let mut out = format!(
        "{} domains, {} assigned, over {:.1} s\n{:>3}  {:<16}  {:<8}  {:>6}  {:>9}  {:>5}  {:>10}\n",
        rows.len(),
        bytes(total),
        wall.as_secs_f64(),
        "ID",
        "NAME",
        "STATE",
        "CPU%",
        "MEMORY",
        "VCPUS",
        "CPU TIME"
    );
    for (p, d) in rows {
        let _ = writeln!(
            out,
            "{:>3}  {:<16}  {:<8}  {:>6.1}  {:>9}  {:>5}  {:>10}",
            d.id,
            d.name,
            d.state.as_str(),
            p,
            crate::memset::memory_cell(d),
            d.vcpus,
            cpu_time(d.cpu_time_ns)
        );
    }
    out
}

pub fn run(client: &mut Client, every: Duration, count: u64, json: bool) -> Result<String, Error> {
    let (mut last, mut at) = sample(client)?;
    let mut shown = 0u64;
    let mut stdout = std::io::stdout();
    loop {
        std::thread::sleep(every);
        let (now, t) = sample(client)?;
        let before: HashMap<u32, u64> = last.iter().map(|d| (d.id, d.cpu_time_ns)).collect();
        let wall = t.duration_since(at);
        let text = if json {
            let rows: Vec<_> = now
                .iter()
                .filter(|d| d.state != DomainState::Ended)
                .map(|d| {
                    let was = before.get(&d.id).copied().unwrap_or(d.cpu_time_ns);
                    serde_json::json!({
                        "id": d.id, "name": d.name, "state": d.state,
                        "cpu_percent": percent(was, d.cpu_time_ns, wall),
                        "memory_bytes": d.memory_bytes, "vcpus": d.vcpus,
                        "current_bytes": d.current_bytes, "target_bytes": d.target_bytes,
                        "cpu_time_ns": d.cpu_time_ns,
                    })
                })
                .collect();
            format!(
                "{}\n",
                serde_json::json!({ "interval_ns": wall.as_nanos() as u64, "domains": rows })
            )
        } else if count == 1 {
            screen(&before, &now, wall)
        } else {
            // Clear the terminal between screens.
            format!("\x1b[H\x1b[2J{}", screen(&before, &now, wall))
        };
        let _ = stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush());
        shown += 1;
        if count != 0 && shown >= count {
            return Ok(String::new());
        }
        (last, at) = (now, t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_percent_over_the_interval() {
        let s = Duration::from_secs(1);
        assert_eq!(percent(0, 500_000_000, s), 50.0);
        assert_eq!(percent(0, 2_000_000_000, s), 200.0, "two busy vCPUs");
        assert_eq!(percent(9, 3, s), 0.0);
        assert_eq!(percent(0, 1, Duration::ZERO), 0.0);
    }
}

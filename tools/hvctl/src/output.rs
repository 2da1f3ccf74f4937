//! What hvctl prints: tables and key-value lists for people, the reply
//! object for `--json`.

use std::fmt::Write as _;

use kestrel_toolstack::proto::{DomainInfo, HostReport, Reply};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// `64 MiB`, `2 GiB`, `1.5 GiB`, `512 KiB`, `100 B`.
pub fn bytes(b: u64) -> String {
    let (unit, name) = match b {
        b if b >= GIB => (GIB, "GiB"),
        b if b >= MIB => (MIB, "MiB"),
        b if b >= KIB => (KIB, "KiB"),
        _ => return format!("{b} B"),
    };
    if b.is_multiple_of(unit) {
        format!("{} {name}", b / unit)
    } else {
        format!("{:.1} {name}", b as f64 / unit as f64)
    }
}

/// CPU time in seconds with one decimal.
pub fn cpu_time(ns: u64) -> String {
    format!("{:.1} s", ns as f64 / 1e9)
}

fn cap(c: u32) -> String {
    if c == 0 { "-".into() } else { format!("{c}%") }
}

/// The `list` table: a header, then one row per domain; numbers
/// right-aligned; a last column of UUIDs when dom0 reports them.
pub fn table(domains: &[DomainInfo]) -> String {
    let uuids = domains.iter().any(|d| d.uuid.is_some());
    let header = [
        "ID", "NAME", "STATE", "MEMORY", "VCPUS", "WEIGHT", "CAP", "CPU TIME", "UUID",
    ];
    let right = [true, false, false, true, true, true, true, true, false];
    let rows: Vec<[String; 9]> = domains
        .iter()
        .map(|d| {
            [
                d.id.to_string(),
                d.name.clone(),
                state(d),
                crate::memset::memory_cell(d),
                d.vcpus.to_string(),
                d.weight.to_string(),
                cap(d.cap),
                cpu_time(d.cpu_time_ns),
                d.uuid.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let columns = if uuids { 9 } else { 8 };
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header = header.map(String::from);
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate().take(columns) {
            let w = widths[i];
            let sep = if i == 0 { "" } else { "  " };
            if right[i] {
                let _ = write!(line, "{sep}{cell:>w$}");
            } else {
                let _ = write!(line, "{sep}{cell:<w$}");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The state, and how an ended domain ended: `ended (exited 3)`.
fn state(d: &DomainInfo) -> String {
    match (&d.reason, d.exit_code) {
        (Some(r), Some(c)) if r == "exited" || r == "crashed" => {
            format!("{} ({r} {c})", d.state.as_str())
        }
        (Some(r), _) if r == "killed" && d.kill_reason.is_some() => format!(
            "{} (killed: {})",
            d.state.as_str(),
            d.kill_reason.as_deref().unwrap_or_default()
        ),
        (Some(r), _) => format!("{} ({r})", d.state.as_str()),
        _ => d.state.as_str().into(),
    }
}

/// Seconds as `1h 02m`, `3m 07s` or `12.5 s`.
pub fn duration(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    match s {
        s if s >= 3600 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{:.1} s", ns as f64 / 1e9),
    }
}

/// `info`: one field per line.
pub fn details(d: &DomainInfo) -> String {
    let cap = match d.cap {
        0 => "none".to_string(),
        c => format!("{c}% of one CPU"),
    };
    let mut out = format!(
        "id:        {}\nname:      {}\nstate:     {}\nmemory:    {} ({} bytes)\nvcpus:     {}\nweight:    {}\ncap:       {cap}\ncpu time:  {:.3} s\nexits:     {}\nheap:      {} of {} bytes budget\n",
        d.id,
        d.name,
        d.state.as_str(),
        bytes(d.memory_bytes),
        d.memory_bytes,
        d.vcpus,
        d.weight,
        d.cpu_time_ns as f64 / 1e9,
        d.exits,
        d.heap_used_bytes,
        d.heap_budget_bytes,
    );
    out.push_str(&crate::memset::details(d));
    if let Some(u) = &d.uuid {
        let _ = writeln!(out, "uuid:      {u}");
    }
    if let Some(u) = d.uptime_ns {
        let _ = writeln!(out, "uptime:    {}", duration(u));
    }
    if let Some(r) = &d.reason {
        match &d.kill_reason {
            Some(why) => {
                let _ = writeln!(out, "ended:     {r} by the hypervisor: {why}");
            }
            None => {
                let _ = writeln!(out, "ended:     {r}");
            }
        }
    }
    if let Some(c) = d.exit_code {
        let _ = writeln!(out, "exit code: {c}");
    }
    out
}

/// `host`: one field per line.
pub fn host(h: &HostReport) -> String {
    let mut out = format!(
        "cpus:        {}\nmemory:      {} total, {} free\ndomains:     {} ({} ended listed)\ndom0:        {}\npvabi:       {} (dom0), {} (hypervisor)\nuptime:      {}\n",
        h.cpus,
        bytes(h.memory_total_bytes),
        bytes(h.memory_free_bytes),
        h.domains,
        h.ended_domains,
        h.dom0,
        h.pvabi,
        h.hypervisor_pvabi,
        duration(h.uptime_ns)
    );
    for (i, d) in h.pci.iter().enumerate() {
        let label = if i == 0 { "pci:" } else { "" };
        let _ = writeln!(out, "{label:<12} {d}");
    }
    for (i, d) in h.disks.iter().enumerate() {
        let label = if i == 0 { "disks:" } else { "" };
        let _ = writeln!(out, "{label:<12} {d}");
    }
    out
}

/// Kept lines, after a note of how many older ones were dropped.
pub fn lines(lines: &[String], dropped: u64) -> String {
    let mut out = String::new();
    if dropped > 0 {
        let _ = writeln!(out, "({dropped} older lines dropped)");
    }
    for l in lines {
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// `--json`: the reply object on one line.
pub fn json(reply: &Reply) -> String {
    let mut s = serde_json::to_string(reply).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use kestrel_toolstack::proto::DomainState;

    use super::*;

    fn dom(id: u32, name: &str, state: DomainState, mem: u64, cap: u32, ns: u64) -> DomainInfo {
        DomainInfo {
            id,
            name: name.into(),
            uuid: None,
            state,
            memory_bytes: mem,
            vcpus: 2,
            weight: 256,
            cap,
            cpu_time_ns: ns,
            heap_budget_bytes: 128 << 10,
            heap_used_bytes: 12345,
            exits: 9,
            current_bytes: None,
            target_bytes: None,
            uptime_ns: None,
            exit_code: None,
            reason: None,
            kill_reason: None,
        }
    }

    #[test]
    fn sizes_and_times() {
        assert_eq!(bytes(64 * MIB), "64 MiB");
        assert_eq!(bytes(2 * GIB), "2 GiB");
        assert_eq!(bytes(3 * GIB / 2), "1.5 GiB");
        assert_eq!(bytes(512 * KIB), "512 KiB");
        assert_eq!(bytes(100), "100 B");
        assert_eq!(cpu_time(1_500_000_000), "1.5 s");
        assert_eq!(cpu_time(0), "0.0 s");
    }

    #[test]
    fn list_table() {
        let t = table(&[
            dom(1, "hello", DomainState::Running, 16 * MIB, 0, 300_000_000),
            dom(
                12,
                "web-frontend",
                DomainState::Paused,
                2 * GIB,
                150,
                61_240_000_000,
            ),
        ]);
        assert_eq!(
            t,
            "\
ID  NAME          STATE    MEMORY  VCPUS  WEIGHT   CAP  CPU TIME
 1  hello         running  16 MiB      2     256     -     0.3 s
12  web-frontend  paused    2 GiB      2     256  150%    61.2 s
"
        );
        assert_eq!(
            table(&[]),
            "ID  NAME  STATE  MEMORY  VCPUS  WEIGHT  CAP  CPU TIME\n"
        );
    }

    /// Issue 15: a crash (the guest said so) and a kill (the hypervisor,
    /// with its reason) read differently in `list` and `info`.
    #[test]
    fn crash_and_kill_differ() {
        let mut crashed = dom(4, "c", DomainState::Ended, MIB, 0, 0);
        crashed.reason = Some("crashed".into());
        crashed.exit_code = Some(9);
        assert_eq!(state(&crashed), "ended (crashed 9)");
        let mut killed = dom(5, "k", DomainState::Ended, MIB, 0, 0);
        killed.reason = Some("killed".into());
        killed.exit_code = Some(-1);
        killed.kill_reason = Some("triple fault at RIP 0x2000".into());
        assert_eq!(state(&killed), "ended (killed: triple fault at RIP 0x2000)");
        assert!(
            details(&killed)
                .contains("ended:     killed by the hypervisor: triple fault at RIP 0x2000\n")
        );
        killed.uuid = Some("123e4567-e89b-42d3-a456-426614174000".into());
        let t = table(&[killed]);
        assert!(t.lines().next().unwrap_or("").ends_with("  UUID"), "{t}");
        assert!(t.contains("123e4567-e89b-42d3-a456-426614174000"), "{t}");
    }

    #[test]
    fn info_details() {
        let d = details(&dom(
            3,
            "web",
            DomainState::Blocked,
            64 * MIB,
            0,
            1_500_000_000,
        ));
        assert_eq!(
            d,
            "id:        3\nname:      web\nstate:     blocked\nmemory:    64 MiB (67108864 bytes)\nvcpus:     2\nweight:    256\ncap:       none\ncpu time:  1.500 s\nexits:     9\nheap:      12345 of 131072 bytes budget\n"
        );
        let d = details(&dom(3, "web", DomainState::Running, MIB, 50, 0));
        assert!(d.contains("cap:       50% of one CPU\n"));
    }

    #[test]
    fn json_is_the_reply() {
        let r = Reply::Domain {
            domain: dom(3, "web", DomainState::Running, MIB, 0, 7),
        };
        assert_eq!(
            json(&r),
            "{\"kind\":\"domain\",\"domain\":{\"id\":3,\"name\":\"web\",\"state\":\"running\",\"memory_bytes\":1048576,\"vcpus\":2,\"weight\":256,\"cap\":0,\"cpu_time_ns\":7,\"heap_budget_bytes\":131072,\"heap_used_bytes\":12345,\"exits\":9}}\n"
        );
        assert_eq!(json(&Reply::Done), "{\"kind\":\"done\"}\n");
    }
}

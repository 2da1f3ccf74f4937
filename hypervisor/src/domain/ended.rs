//! Reports of domains that have ended and been freed, so the control
//! domain can still tell how each one ended (`HC_DOMCTL_INFO` with
//! `DOMCTL_INFO_ENDED`): by the time dom0 notices a domain is gone, its
//! memory (and its `DomainInfo`) usually is too — a domain that exits is
//! freed as soon as its vCPU leaves the CPU.
//!
//! A fixed ring of [`DOMCTL_ENDED_KEPT`] reports, the oldest overwritten.
//! Its lock is a leaf: nothing else is locked while it is held, so the
//! last drop of a domain may record from any context.
#![deny(unsafe_code)]

use arrayvec::ArrayString;
use pvabi::{
    DOMAIN_ENDED, DOMAIN_FLAG_CRASHED, DOMAIN_FLAG_DESTROYED, DOMAIN_FLAG_EXITED,
    DOMAIN_FLAG_KILLED, DOMCTL_ENDED_KEPT, DOMCTL_REASON_MAX, DomainInfo,
};

/// Why the hypervisor killed a domain, as `DOMCTL_INFO_REASON` gives it.
pub(crate) type Reason = ArrayString<{ DOMCTL_REASON_MAX as usize }>;

/// `reason` cut (at a character boundary) to fit a [`Reason`].
pub(crate) fn reason_text(reason: Option<&str>) -> Reason {
    let mut out = Reason::new();
    for c in reason.unwrap_or("").chars() {
        if out.try_push(c).is_err() {
            break;
        }
    }
    out
}

use crate::sync::Mutex;

struct Ring {
    slots: [Option<(DomainInfo, Reason)>; DOMCTL_ENDED_KEPT],
    next: usize,
}

static ENDED: Mutex<Ring> = Mutex::new(Ring {
    slots: [None; DOMCTL_ENDED_KEPT],
    next: 0,
});

/// The `flags` bit for how a domain ended (`Domain::finish`'s `how`).
pub(crate) fn how_flag(how: &str) -> u32 {
    match how {
        "exited" => DOMAIN_FLAG_EXITED,
        "destroyed" => DOMAIN_FLAG_DESTROYED,
        "rebooted" => pvabi::DOMAIN_FLAG_REBOOTED,
        "crashed" => DOMAIN_FLAG_CRASHED,
        _ => DOMAIN_FLAG_KILLED,
    }
}

/// Keeps `info` (state set to `DOMAIN_ENDED` here) and why the
/// hypervisor killed it (empty if it did not).
pub(crate) fn record(mut info: DomainInfo, reason: Reason) {
    info.state = DOMAIN_ENDED;
    let mut r = ENDED.lock();
    let i = r.next % DOMCTL_ENDED_KEPT;
    if let Some(slot) = r.slots.get_mut(i) {
        *slot = Some((info, reason));
    }
    r.next = (i + 1) % DOMCTL_ENDED_KEPT;
}

/// The newest report for domain `id`, with its kill reason.
fn newest(id: u32) -> Option<(DomainInfo, Reason)> {
    let r = ENDED.lock();
    (1..=DOMCTL_ENDED_KEPT)
        .map(|back| (r.next + DOMCTL_ENDED_KEPT - back) % DOMCTL_ENDED_KEPT)
        .filter_map(|i| r.slots.get(i).copied().flatten())
        .find(|(d, _)| d.id == id)
}

/// The newest report for domain `id`.
pub(crate) fn get(id: u32) -> Option<DomainInfo> {
    newest(id).map(|(d, _)| d)
}

/// Why the hypervisor killed domain `id` (empty if it did not); `None`
/// when no report is kept.
pub(crate) fn reason(id: u32) -> Option<Reason> {
    newest(id).map(|(_, r)| r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: u32, code: i32) -> DomainInfo {
        DomainInfo {
            id,
            exit_code: code,
            flags: how_flag("exited"),
            ..Default::default()
        }
    }

    #[test]
    fn kill_reasons_are_kept_and_cut_to_fit() {
        record(info(0x6000_0001, -1), reason_text(Some("triple fault")));
        assert_eq!(reason(0x6000_0001).as_deref(), Some("triple fault"));
        record(info(0x6000_0002, 0), reason_text(None));
        assert_eq!(reason(0x6000_0002).as_deref(), Some(""));
        assert_eq!(reason(0x6000_0003), None, "no report");
        let long = "\u{e9}".repeat(200);
        let cut = reason_text(Some(&long));
        assert!(cut.len() <= DOMCTL_REASON_MAX as usize && cut.chars().all(|c| c == '\u{e9}'));
        assert_eq!(how_flag("crashed"), DOMAIN_FLAG_CRASHED);
    }

    #[test]
    fn newest_report_wins_and_the_oldest_go() {
        // Ids far from any other test's (the ring is global).
        record(info(0x7000_0001, 3), Reason::new());
        record(info(0x7000_0001, 4), Reason::new());
        let got = get(0x7000_0001);
        assert_eq!(got.map(|d| (d.state, d.exit_code)), Some((DOMAIN_ENDED, 4)));
        for n in 0..DOMCTL_ENDED_KEPT as u32 {
            record(info(0x7100_0000 + n, 0), Reason::new());
        }
        assert_eq!(get(0x7000_0001), None, "pushed out");
        assert!(get(0x7100_0000 + DOMCTL_ENDED_KEPT as u32 - 1).is_some());
        assert_eq!(how_flag("killed"), DOMAIN_FLAG_KILLED);
        assert_eq!(how_flag("destroyed"), DOMAIN_FLAG_DESTROYED);
        assert_eq!(how_flag("rebooted"), pvabi::DOMAIN_FLAG_REBOOTED);
    }
}

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

use pvabi::{
    DOMAIN_ENDED, DOMAIN_FLAG_DESTROYED, DOMAIN_FLAG_EXITED, DOMAIN_FLAG_KILLED, DOMCTL_ENDED_KEPT,
    DomainInfo,
};

use crate::sync::Mutex;

struct Ring {
    slots: [Option<DomainInfo>; DOMCTL_ENDED_KEPT],
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
        _ => DOMAIN_FLAG_KILLED,
    }
}

/// Keeps `info` (state set to `DOMAIN_ENDED` here).
pub(crate) fn record(mut info: DomainInfo) {
    info.state = DOMAIN_ENDED;
    let mut r = ENDED.lock();
    let i = r.next % DOMCTL_ENDED_KEPT;
    if let Some(slot) = r.slots.get_mut(i) {
        *slot = Some(info);
    }
    r.next = (i + 1) % DOMCTL_ENDED_KEPT;
}

/// The newest report for domain `id`.
pub(crate) fn get(id: u32) -> Option<DomainInfo> {
    let r = ENDED.lock();
    (1..=DOMCTL_ENDED_KEPT)
        .map(|back| (r.next + DOMCTL_ENDED_KEPT - back) % DOMCTL_ENDED_KEPT)
        .filter_map(|i| r.slots.get(i).copied().flatten())
        .find(|d| d.id == id)
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
    fn newest_report_wins_and_the_oldest_go() {
        // Ids far from any other test's (the ring is global).
        record(info(0x7000_0001, 3));
        record(info(0x7000_0001, 4));
        let got = get(0x7000_0001);
        assert_eq!(got.map(|d| (d.state, d.exit_code)), Some((DOMAIN_ENDED, 4)));
        for n in 0..DOMCTL_ENDED_KEPT as u32 {
            record(info(0x7100_0000 + n, 0));
        }
        assert_eq!(get(0x7000_0001), None, "pushed out");
        assert!(get(0x7100_0000 + DOMCTL_ENDED_KEPT as u32 - 1).is_some());
        assert_eq!(how_flag("killed"), DOMAIN_FLAG_KILLED);
        assert_eq!(how_flag("destroyed"), DOMAIN_FLAG_DESTROYED);
        assert_eq!(how_flag("rebooted"), pvabi::DOMAIN_FLAG_REBOOTED);
    }
}

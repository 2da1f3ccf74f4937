//! What dom0 does when a domain ends, per domain, as in xl.cfg(5):
//! `on_poweroff`, `on_reboot` and `on_crash`, each `destroy`, `restart` or
//! `preserve`.
//!
//! The hypervisor frees a domain as soon as it ends, so unlike Xen there
//! is no dead domain to keep in memory: `preserve` keeps dom0's record of
//! it (state `ended`, exit code, reason, its console history) listed
//! until `hvctl forget`, never pushed out by newer ended domains, for a
//! post-mortem; `destroy` records it too, but as one of the last
//! `history=N` ended domains (what dom0 did before policies existed).
//! `restart` builds it again from the same configuration: a new domain
//! id, the same name, started at once; at most [`RESTART_LIMIT`] restarts
//! in [`RESTART_WINDOW_NS`], after which it stays down and is preserved
//! (a guest that crashes at start would otherwise loop forever).
//!
//! Defaults are xl's: `on_poweroff = "destroy"`, `on_reboot = "restart"`,
//! `on_crash = "destroy"`.

use alloc::format;
use alloc::string::ToString;

use toml::de::DeValue;

use super::error::Sink;
use super::parse::Value;

/// Most restarts of one domain within [`RESTART_WINDOW_NS`].
pub const RESTART_LIMIT: usize = 3;
/// The window of [`RESTART_LIMIT`]: 60 s.
pub const RESTART_WINDOW_NS: u64 = 60_000_000_000;

/// What to do with a domain that ended one way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnEnd {
    /// Record it with the other ended domains (the default but for reboot).
    Destroy,
    /// Build it again from its configuration (new id, same name).
    Restart,
    /// Keep its record until `hvctl forget`.
    Preserve,
}

impl OnEnd {
    /// The configuration's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Destroy => "destroy",
            Self::Restart => "restart",
            Self::Preserve => "preserve",
        }
    }

    fn from_word(w: &str) -> Option<Self> {
        [Self::Destroy, Self::Restart, Self::Preserve]
            .into_iter()
            .find(|p| p.as_str() == w)
    }
}

/// A domain's three policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policies {
    /// It powered off (ended itself, `SHUTDOWN_POWEROFF`).
    pub on_poweroff: OnEnd,
    /// It asked to be rebooted (`SHUTDOWN_REBOOT`), or did not end in
    /// time after `hvctl reboot` and was forced.
    pub on_reboot: OnEnd,
    /// It crashed (`SHUTDOWN_CRASH`) or the hypervisor killed it.
    pub on_crash: OnEnd,
}

impl Default for Policies {
    fn default() -> Self {
        Self {
            on_poweroff: OnEnd::Destroy,
            on_reboot: OnEnd::Restart,
            on_crash: OnEnd::Destroy,
        }
    }
}

/// Reads the three keys (each optional); `None` if one is bad (the error,
/// naming file, line, column, domain and field, is in `sink`).
pub(super) fn read<'a>(
    sink: &mut Sink<'_>,
    label: &str,
    get: impl Fn(&str) -> Option<&'a Value<'a>>,
) -> Option<Policies> {
    let d = Policies::default();
    let mut one = |key: &str, default: OnEnd| -> Option<OnEnd> {
        let Some(v) = get(key) else {
            return Some(default);
        };
        let msg = match v.get_ref() {
            DeValue::String(s) => match OnEnd::from_word(s) {
                Some(p) => return Some(p),
                None => format!(
                    "{:?} is not a policy (expected \"destroy\", \"restart\" or \"preserve\")",
                    s.as_ref()
                ),
            },
            _ => "expected \"destroy\", \"restart\" or \"preserve\"".to_string(),
        };
        sink.push(v.span().start, Some(label), Some(key), msg);
        None
    };
    let on_poweroff = one("on_poweroff", d.on_poweroff);
    let on_reboot = one("on_reboot", d.on_reboot);
    let on_crash = one("on_crash", d.on_crash);
    Some(Policies {
        on_poweroff: on_poweroff?,
        on_reboot: on_reboot?,
        on_crash: on_crash?,
    })
}

//! Identifiers shared by the domain modules.
#![forbid(unsafe_code)]

use core::fmt;

/// A domain's id (dom0 is the control domain): the one key the runtime
/// finds a domain by (`domain::table`). Ids are chosen by the hypervisor,
/// never reused, and reach guests through the start info and hypercalls
/// as the bare number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomainId(pub u32);

impl fmt::Display for DomainId {
    /// The bare number, as guests and the operator's tools see it (log
    /// lines such as `domain-end: id=2` are read by tests and `hvctl`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

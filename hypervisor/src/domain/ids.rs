//! Identifiers shared by the domain modules.
#![forbid(unsafe_code)]

use core::fmt;

/// A domain's id (dom0 is the control domain). Domain ids are chosen by the
/// hypervisor and reach guests through the start info and hypercalls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomainId(pub u32);

impl fmt::Display for DomainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dom{}", self.0)
    }
}

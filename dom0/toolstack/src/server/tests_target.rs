//! `target` in a domain's configuration (config/target.rs): `create_all`
//! sets it before the domain first runs.
#![allow(clippy::unwrap_used)]

use super::tests::Fake;
use super::tests_fixture::forward_to_fake;
use super::*;
use crate::config::{Images, Limits, parse};

fn cfg(text: &str) -> crate::config::BootConfig {
    parse("guests.toml", text, &Limits::default(), Images::Any).unwrap()
}

#[test]
fn create_all_sets_the_configured_target_before_start() {
    let mut hv = Fake::new(128);
    let c = cfg(
        "[[domain]]\nname = \"b\"\nimage = \"hello\"\nmemory = 32\ntarget = \"16M\"\n\
                 [[domain]]\nname = \"c\"\nimage = \"hello\"\nmemory = 8\n",
    );
    let ids = create_all(&mut hv, "guests.toml", &c).unwrap();
    // Only the domain with a target gets one set: 4096 pages = 16 MiB.
    assert_eq!(hv.targets, alloc::vec![(ids[0], 4096)]);
    assert_eq!(hv.info(ids[0]).unwrap().target_bytes, Some(16 << 20));
    assert_eq!(hv.info(ids[1]).unwrap().target_bytes, Some(8 << 20));
    assert_eq!(hv.info(ids[0]).unwrap().state, pvabi::DOMAIN_RUNNING);
}

/// A hypervisor that refuses the target: the domain is not left behind.
struct Refuses(Fake);

impl Hypervisor for Refuses {
    forward_to_fake!(0);
    fn set_mem_target(&mut self, _: u32, _: u64) -> Result<u64, Error> {
        Err(Error::Invalid)
    }
}

#[test]
fn a_refused_target_destroys_what_was_built() {
    let mut hv = Refuses(Fake::new(128));
    let c = cfg("[[domain]]\nname = \"a\"\nimage = \"hello\"\nmemory = 8\n\
                 [[domain]]\nname = \"b\"\nimage = \"hello\"\nmemory = 32\ntarget = 16\n");
    let f = create_all(&mut hv, "guests.toml", &c).unwrap_err();
    assert_eq!(f.domain, "b");
    // Both domains built from the file (ids 2 and 3) are gone again.
    assert_eq!(hv.0.destroyed, alloc::vec![2, 3]);
    assert_eq!(f.destroyed, 2);
}

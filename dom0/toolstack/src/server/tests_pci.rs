//! `pci` in a domain's configuration (config/pci.rs): `create_all` moves
//! each function before the domain first runs, and a refusal names the
//! function and why, with nothing from the file left behind.
#![allow(clippy::unwrap_used)]

use super::tests::Fake;
use super::*;
use crate::config::{Images, Limits, parse};

fn cfg(text: &str) -> crate::config::BootConfig {
    parse("guests.toml", text, &Limits::default(), Images::Any).unwrap()
}

#[test]
fn create_all_assigns_before_start() {
    let mut hv = Fake::new(128);
    let c = cfg(
        "[[domain]]\nname = \"drv\"\nimage = \"hello\"\nmemory = 8\npci = [\"0000:00:06.0\"]\n\
         [[domain]]\nname = \"c\"\nimage = \"hello\"\nmemory = 8\n",
    );
    let ids = create_all(&mut hv, "guests.toml", &c).unwrap();
    // The fake refuses a running domain: this one was paused then.
    assert_eq!(hv.assigned, alloc::vec![(ids[0], pvabi::sbdf(0, 0, 6, 0))]);
    assert_eq!(hv.info(ids[0]).unwrap().state, pvabi::DOMAIN_RUNNING);
}

#[test]
fn a_refused_function_is_named_and_nothing_is_left() {
    for (bdf, why) in [
        ("0000:00:09.0", "no such PCI function on this machine"),
        ("0000:00:1f.0", "the hypervisor keeps it (a bridge"),
    ] {
        let mut hv = Fake::new(128);
        let c = cfg(&alloc::format!(
            "[[domain]]\nname = \"a\"\nimage = \"hello\"\nmemory = 8\n\
             [[domain]]\nname = \"drv\"\nimage = \"hello\"\nmemory = 8\npci = [\"0000:00:06.0\", \"{bdf}\"]\n"
        ));
        let f = create_all(&mut hv, "guests.toml", &c).unwrap_err();
        let msg = alloc::format!("{f}");
        assert!(
            msg.starts_with(&alloc::format!(
                "guests.toml:5: domain \"drv\": field \"pci\": {bdf}: {why}"
            )),
            "{msg}"
        );
        assert!(
            msg.contains("nothing from guests.toml was created"),
            "{msg}"
        );
        // Both domains built (ids 2 and 3) are gone again.
        assert_eq!(hv.destroyed, alloc::vec![2, 3], "{bdf}");
        assert_eq!(f.to_proto().code, crate::proto::ErrorCode::Internal);
    }
}

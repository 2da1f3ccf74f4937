//! `bench=<name>` on dom0's command line (`cargo xtask bench --only
//! idle`): dom0 prints what it has cost so far, `dom0: stats: exits=N
//! now_ns=T`, when it is ready and when a domain ends; once domain `<name>`
//! has ended it destroys the others and ends itself, so the hypervisor's
//! `shutdown` option ends the run. Between `ready` and that domain's end
//! the machine runs no input from outside, so under QEMU `-icount` the
//! figures are the same on every run.

use alloc::format;

use kestrel_toolstack::server::Hypervisor;
use pvabi::guest::{domctl, time};

use crate::hv::Hv;
use crate::say;

/// Prints dom0's exits so far and the system time.
pub fn stats(me: u32) {
    let exits = domctl::info(me).map_or(0, |i| i.exits);
    say(&format!("stats: exits={exits} now_ns={}", time::now_ns()));
}

/// After domain `ended` ended: whether the run is over (then every other
/// domain has been destroyed).
pub fn ended(hv: &mut Hv, me: u32, wanted: &str, ended: &str) -> bool {
    stats(me);
    if ended != wanted {
        return false;
    }
    for id in hv.list().unwrap_or_default() {
        if id != me {
            let _ = hv.destroy(id);
        }
    }
    say(&format!("bench: {wanted} ended: dom0 ends"));
    true
}

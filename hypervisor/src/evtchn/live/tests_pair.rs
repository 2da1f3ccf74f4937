//! What the tests of a connected pair share (`tests_hand.rs`,
//! `tests_peer.rs`): two live (paused) domains joined by one interdomain
//! channel, and the look-ups those tests make.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::boxed::Box;
use std::sync::Arc;

use pvabi::{HC_SHUTDOWN, SHUTDOWN_POWEROFF};

use crate::domain::lifecycle::VcpuEntry;
use crate::evtchn::ops::EvtchnOp;
use crate::hypercall::services::Svc;
use crate::testing::rt::{Machine, domain, vcpu};
use crate::virt::VmExit;
use crate::virt::fake::{self, Guest};

pub(super) fn svc(v: &Arc<VcpuEntry>) -> Svc<'_> {
    Svc {
        me: v,
        blocked: None,
        handoff: None,
    }
}

pub(super) fn shutdown(g: &mut Guest<'_>) -> VmExit {
    g.hypercall(HC_SHUTDOWN, &[SHUTDOWN_POWEROFF, 0])
}

/// Two paused domains, V and S, and a connected pair (V's port `pv`,
/// S's port `ps`), given to `body` by value; then both end, and every
/// domain must be dropped (no reference kept one), with its frames back.
pub(super) fn with_pair(body: impl FnOnce(&Machine, Arc<VcpuEntry>, Arc<VcpuEntry>, u32, u32)) {
    let m = Machine::start(1);
    let off = |_: &_| -> fake::Program { Box::new(shutdown) };
    let vid = m.create("v", 1, true, off);
    let sid = m.create("s", 1, true, off);
    let (v, s) = (vcpu(vid, 0).unwrap(), vcpu(sid, 0).unwrap());
    let (pv, ps) = connect(&v, &s);
    body(&m, v, s, pv, ps);
    for id in [vid, sid] {
        if let Some(d) = domain(id) {
            d.finish("destroyed", 0, None);
            crate::sched::live::unpause(&d);
        }
    }
    m.wait_all_gone();
    let out = m.stop();
    assert!(!out.contains("[WARN]") && !out.contains("[ERROR]"), "{out}");
}

/// A port of `a`'s domain allocated for `b`'s, and `b`'s port bound to
/// it (a loopback pair when both are one domain): `(a's, b's)`.
pub(super) fn connect(a: &Arc<VcpuEntry>, b: &Arc<VcpuEntry>) -> (u32, u32) {
    let pa = svc(a)
        .evtchn_op(EvtchnOp::AllocUnbound {
            remote: b.domain.id,
        })
        .unwrap() as u32;
    let pb = svc(b)
        .evtchn_op(EvtchnOp::BindInterdomain {
            remote: a.domain.id,
            port: pa,
        })
        .unwrap() as u32;
    (pa, pb)
}

pub(super) fn pending(v: &VcpuEntry, port: u32) -> bool {
    v.domain.events.lock().status(port).unwrap().pending
}

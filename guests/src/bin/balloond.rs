//! A cooperating balloon driver: waits on `VIRQ_MEM_TARGET` and, each time
//! dom0 sets a new target (`hvctl mem-set`), releases pages from or
//! populates pages into its free region until it holds the target
//! (`pvabi::guest::memtarget::balloon_toward_target`), printing what it
//! did: `balloond: target=<pages> before=<pages> current=<pages>
//! released=<n> populated=<n> ballooned=<n>` (and `short=<why>` when it
//! stopped before the target), then `balloond: at target <pages>` when it
//! got there. At start it prints `balloond: started, domain <id>, holds
//! <pages> of <max> pages, target <pages>`. It runs until destroyed (or
//! asked to shut down: it honours dom0's requests). The memset boot tests
//! drive it; a guest that ignores the target is `ticker`. A target set
//! before it started (`target` in its configuration) it balloons to at
//! once.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use pvabi::guest::{evtchn, lifecycle, memory, memtarget, sched};

pvabi::entry_point!(main);

fn main(si: &pvabi::StartInfo) -> i32 {
    if let Err(e) = memtarget::watch() {
        pvabi::println!("balloond: cannot bind VIRQ_MEM_TARGET: {e:?}");
        return 3;
    }
    let _ = lifecycle::watch();
    let (info, target) = match (memory::info(), memtarget::target()) {
        (Ok(i), Ok(t)) => (i, t),
        (Err(e), _) | (_, Err(e)) => {
            pvabi::println!("balloond: cannot read its memory or target: {e:?}");
            return 3;
        }
    };
    pvabi::println!(
        "balloond: started, domain {}, holds {} of {} pages, target {target}",
        si.domain_id,
        info.current_pages,
        info.max_pages
    );
    // A target set before it ran (`target` in its configuration) raised
    // the virq before it was bound: act on it now rather than wait.
    let mut at_once = target != info.current_pages;
    loop {
        if !at_once {
            // The target is set before the virq is raised, and block
            // returns at once when an event is pending, so no change is
            // missed between the balloon step and the block.
            let _ = sched::block(None);
            while let Ok(Some(_)) = evtchn::poll() {}
            if let Some(r) = lifecycle::requested() {
                pvabi::println!("balloond: {} requested", r.as_str());
                lifecycle::honour(r, 0);
            }
        }
        at_once = false;
        match memtarget::balloon_toward_target() {
            Ok(r) => {
                pvabi::println!("balloond: {r}");
                if r.reached() {
                    pvabi::println!("balloond: at target {}", r.target_pages);
                }
            }
            Err(e) => pvabi::println!("balloond: cannot balloon: {e:?}"),
        }
    }
}

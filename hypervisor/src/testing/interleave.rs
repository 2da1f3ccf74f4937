//! An exhaustive interleaving explorer for a few real threads (a small
//! stateless model checker in the manner of CHESS / loom's DPOR-free mode).
//!
//! The threads run the runtime's real code. Only one runs at a time: at
//! each switch point (every lock of a `sync::Mutex`, every `sync::point`,
//! a lock found taken, a thread's end) it hands the baton to the
//! controller, which picks who runs next. One *execution* follows one
//! sequence of picks; [`explore`] runs executions depth-first until every
//! sequence of picks (optionally with at most `max_preemptions` switches
//! away from a thread that could have gone on) was run once, and calls the
//! test's check after each. Because the code between two switch points
//! runs alone, every interleaving of the critical sections is covered; the
//! atomics inside one section are not reordered (the hardware's weak
//! orderings are not modelled: all the atomics checked here are AcqRel or
//! SeqCst, or read under the lock that orders them).
//!
//! A thread that waits for a lock held by a thread that is not running is
//! *blocked* until some lock is let go; if every live thread is blocked,
//! the execution deadlocked, which fails the test.

use core::fmt;
use core::panic::Location;
use std::boxed::Box;
use std::format;
use std::string::String;
use std::sync::{Arc, Condvar, Mutex};
use std::vec::Vec;

use crate::sync::{Hook, set_hook};

struct State {
    running: Option<usize>,
    alive: Vec<bool>,
    blocked: Vec<bool>,
    /// The picks to replay first.
    prefix: Vec<usize>,
    /// Every pick of this execution: (picked, the candidates, the thread
    /// that was running and could go on, if any).
    trace: Vec<(usize, Vec<usize>, Option<usize>)>,
    /// Where each pick of this execution was made (kept unformatted: a
    /// message is made of them only when a replay parts ways).
    sites: Vec<Site>,
    /// The same for the execution whose picks are replayed.
    before: Vec<Site>,
    preemptions: usize,
    max_preemptions: usize,
    deadlock: bool,
    /// Why the execution cannot go on (a replay that parted ways): every
    /// thread stops with it instead of waiting for a turn that never comes.
    failed: Option<String>,
}

/// Where a pick was made: the search's start, a thread at a switch point
/// (the source line of its `lock` or `point`, `sync::site`), or a thread's
/// end.
#[derive(Clone, Copy)]
enum Site {
    Start,
    At(usize, Option<&'static Location<'static>>),
    Ended(usize),
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Start => f.write_str("start"),
            Self::At(t, Some(l)) => write!(f, "{t}@{}:{}", l.file(), l.line()),
            Self::At(t, None) => write!(f, "{t}@?"),
            Self::Ended(t) => write!(f, "{t} ended"),
        }
    }
}

/// `sites` as one line, ` | ` between them.
fn joined(sites: &[Site]) -> String {
    sites
        .iter()
        .map(|s| format!("{s}"))
        .collect::<Vec<_>>()
        .join(" | ")
}

struct Controller {
    st: Mutex<State>,
    cv: Condvar,
}

/// One thread's hook: the controller and the thread's number.
struct ThreadHook {
    c: Arc<Controller>,
    me: usize,
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Controller {
    /// Picks the next thread (the baton goes to it). `cont`: the thread
    /// that may go on without a preemption.
    fn pick(st: &mut State, cont: Option<usize>, at: Site) {
        if st.failed.is_some() {
            st.running = None;
            return;
        }
        let enabled: Vec<usize> = (0..st.alive.len())
            .filter(|&t| st.alive[t] && !st.blocked[t])
            .collect();
        if enabled.is_empty() {
            st.deadlock = st.alive.iter().any(|&a| a);
            st.running = None;
            return;
        }
        // Within the preemption budget, any enabled thread; past it, only
        // the one that may go on.
        // The thread that may go on comes first: it is the first pick tried
        // at a new point, the others are the alternatives tried later.
        let cands: Vec<usize> = match cont {
            Some(c) if enabled.contains(&c) => {
                if st.preemptions >= st.max_preemptions {
                    std::vec![c]
                } else {
                    core::iter::once(c)
                        .chain(enabled.into_iter().filter(|&t| t != c))
                        .collect()
                }
            }
            _ => enabled,
        };
        let i = st.trace.len();
        let chosen = match st.prefix.get(i) {
            Some(&p) if cands.contains(&p) => p,
            Some(&p) => {
                // The same picks led elsewhere: the threads' code does not
                // depend on the picks alone (state kept from an earlier
                // execution, a lazy first-use path). Name where the two runs
                // parted so the cause can be found.
                let from = i.saturating_sub(8);
                let then = joined(st.before.get(from..=i).unwrap_or_default());
                let now = joined(st.sites.get(from..).unwrap_or_default());
                st.failed = Some(format!(
                    "replay diverged at pick {i}: {p} not among {cands:?}; \
                     this execution's switch points from pick {from}: {now} | {at}; \
                     the replayed execution's: {then}"
                ));
                st.running = None;
                return;
            }
            // First time here: the first candidate.
            None => cands[0],
        };
        if cont.is_some_and(|c| cands.contains(&c) && c != chosen) {
            st.preemptions += 1;
        }
        st.trace.push((chosen, cands, cont));
        st.sites.push(at);
        st.running = Some(chosen);
    }

    fn wait_turn(&self, me: usize) {
        let mut st = lock(&self.st);
        while st.running != Some(me) && !st.deadlock && st.failed.is_none() {
            st = self
                .cv
                .wait(st)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        if let Some(why) = st.failed.clone() {
            drop(st);
            panic!("{why}");
        }
        if st.deadlock {
            drop(st);
            panic!("deadlock: every live thread waits for a lock");
        }
    }

    fn switch(&self, me: usize, blocked: bool) {
        {
            let mut st = lock(&self.st);
            st.blocked[me] = blocked;
            Self::pick(
                &mut st,
                (!blocked).then_some(me),
                Site::At(me, crate::sync::site()),
            );
            self.cv.notify_all();
        }
        self.wait_turn(me);
    }
}

impl Hook for ThreadHook {
    fn point(&self) {
        self.c.switch(self.me, false);
    }
    fn blocked(&self) {
        self.c.switch(self.me, true);
    }
    fn released(&self) {
        let mut st = lock(&self.c.st);
        st.blocked.iter_mut().for_each(|b| *b = false);
    }
}

/// A thread body of an execution.
pub type Body = Box<dyn FnOnce() + Send>;

/// What [`explore`] did.
#[derive(Debug)]
pub struct Explored {
    /// Executions run (distinct interleavings).
    pub executions: usize,
    /// The most switch points one execution passed.
    pub longest: usize,
    /// Every interleaving (within the bound) was run: the search ended,
    /// not the limit.
    pub complete: bool,
}

/// Runs every interleaving of the threads `setup` returns (at most
/// `max_preemptions` preemptions each; `usize::MAX`: all), calling `check`
/// after each execution, and stops with a panic at the first failure
/// (naming the picks that led to it), or after `limit` executions.
pub fn explore(
    max_preemptions: usize,
    limit: usize,
    mut setup: impl FnMut() -> Vec<Body>,
    mut check: impl FnMut(&[usize]),
) -> Explored {
    let mut prefix: Vec<usize> = Vec::new();
    let mut before: Vec<Site> = Vec::new();
    let mut executions = 0;
    let mut longest = 0;
    loop {
        let bodies = setup();
        let n = bodies.len();
        let c = Arc::new(Controller {
            st: Mutex::new(State {
                running: None,
                alive: std::vec![true; n],
                blocked: std::vec![false; n],
                prefix: prefix.clone(),
                trace: Vec::new(),
                sites: Vec::new(),
                before: core::mem::take(&mut before),
                preemptions: 0,
                max_preemptions,
                deadlock: false,
                failed: None,
            }),
            cv: Condvar::new(),
        });
        let handles: Vec<_> = bodies
            .into_iter()
            .enumerate()
            .map(|(me, body)| {
                let c = c.clone();
                std::thread::spawn(move || {
                    set_hook(Some(Arc::new(ThreadHook { c: c.clone(), me })));
                    c.wait_turn(me);
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
                    set_hook(None);
                    {
                        let mut st = lock(&c.st);
                        st.alive[me] = false;
                        Controller::pick(&mut st, None, Site::Ended(me));
                        c.cv.notify_all();
                    }
                    if let Err(e) = r {
                        std::panic::resume_unwind(e);
                    }
                })
            })
            .collect();
        {
            let mut st = lock(&c.st);
            Controller::pick(&mut st, None, Site::Start);
            c.cv.notify_all();
        }
        let mut failed = None;
        for h in handles {
            if let Err(e) = h.join() {
                failed.get_or_insert(e);
            }
        }
        let (trace, sites) = {
            let mut st = lock(&c.st);
            (
                core::mem::take(&mut st.trace),
                core::mem::take(&mut st.sites),
            )
        };
        before = sites;
        let picks: Vec<usize> = trace.iter().map(|t| t.0).collect();
        if let Some(e) = failed {
            std::eprintln!("interleaving test failed after the picks {picks:?}");
            std::panic::resume_unwind(e);
        }
        check(&picks);
        executions += 1;
        longest = longest.max(trace.len());
        // Depth first: the deepest pick with an untried candidate.
        let next = (0..trace.len()).rev().find_map(|i| {
            let (chosen, cands, _) = &trace[i];
            let pos = cands.iter().position(|c| c == chosen)?;
            let alt = *cands.get(pos + 1)?;
            let mut p: Vec<usize> = trace[..i].iter().map(|t| t.0).collect();
            p.push(alt);
            Some(p)
        });
        match next {
            Some(p) if executions < limit => prefix = p,
            Some(_) => {
                return Explored {
                    executions,
                    longest,
                    complete: false,
                };
            }
            None => break,
        }
    }
    Explored {
        executions,
        longest,
        complete: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Threads whose switch points depend on something other than the
    /// picks (here: a flag the first execution sets) make a replay part
    /// ways; the search must stop with that, naming where, and not wait
    /// for ever for a thread that never gets its turn.
    #[test]
    #[should_panic(expected = "replay diverged at pick 2")]
    fn a_replay_that_parts_ways_fails_the_search_instead_of_hanging() {
        static FIRST: AtomicBool = AtomicBool::new(true);
        explore(
            usize::MAX,
            100,
            || {
                let a: Body = Box::new(|| {
                    if FIRST.swap(false, Ordering::Relaxed) {
                        crate::sync::point();
                        crate::sync::point();
                    }
                    crate::sync::point();
                });
                let b: Body = Box::new(crate::sync::point);
                std::vec![a, b]
            },
            |_| {},
        );
    }
}

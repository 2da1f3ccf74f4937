//! Host tests of the stage table (`stage.rs`) over the host platform's
//! frames, and of a control domain that dies with stages held (the real
//! run loop, CPUs as threads).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::vec;
use std::vec::Vec;

use super::*;
use crate::domain::OutOfBounds;
use crate::platform::host;
use crate::testing::rt::{Machine, domain};
use crate::virt::fake::{Guest, step, steps};

const DOM0: DomainId = DomainId(0);
const OTHER: DomainId = DomainId(4);

/// A caller's memory: `mem` at guest-physical 0.
struct Mem(Vec<u8>);

impl GuestRead for Mem {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), OutOfBounds> {
        let oob = OutOfBounds {
            gpa,
            len: buf.len() as u64,
            size: self.0.len() as u64,
        };
        let at = usize::try_from(gpa).map_err(|_| oob)?;
        let src = self
            .0
            .get(at..at.checked_add(buf.len()).ok_or(oob)?)
            .ok_or(oob)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

fn mem() -> Mem {
    Mem((0..0x3_0000u32).map(|i| (i * 7 + i / 4096) as u8).collect())
}

fn staged(s: &Stage) -> Vec<u8> {
    let mut out = vec![0u8; s.size as usize];
    P::read_phys(s.base, &mut out);
    out
}

#[test]
fn a_stage_written_in_pieces_holds_the_bytes_and_frees_its_frames() {
    let _one = host::exclusive();
    let free = P::free_frame_count();
    let m = mem();
    let mut t = Stages::new();
    let size = 2 * 4096 + 100;
    let h = t.begin(DOM0, size).unwrap();
    assert_ne!(h, 0);
    assert_eq!(P::free_frame_count(), free - 3, "three frames taken");
    assert_eq!(t.write(DOM0, h, 0, &m, 0x1000, 5000), Ok(5000));
    assert_eq!(
        t.write(DOM0, h, 5000, &m, 0x1000 + 5000, size - 5000),
        Ok(size)
    );
    let s = t.take(DOM0, h).unwrap();
    assert_eq!(staged(&s), m.0[0x1000..0x1000 + size as usize]);
    t.used(&s);
    drop(s);
    assert_eq!(t.usage(DOM0), (0, 0));
    assert_eq!(P::free_frame_count(), free, "every frame back");
}

#[test]
fn bad_handles_are_refused() {
    let _one = host::exclusive();
    let m = mem();
    let mut t = Stages::new();
    let h = t.begin(DOM0, 100).unwrap();
    let slot = h & 0xff;
    for bad in [0, u64::MAX, slot, h ^ (1 << 8), h + 1, (h & !0xff) | 0xff] {
        assert_eq!(
            t.write(DOM0, bad, 0, &m, 0, 1),
            Err(Error::NoEntry),
            "{bad:#x}"
        );
        assert_eq!(t.abort(DOM0, bad).err(), Some(Error::NoEntry), "{bad:#x}");
        assert_eq!(t.take(DOM0, bad).err(), Some(Error::NoEntry), "{bad:#x}");
    }
    // Another domain's stage is not the caller's.
    assert_eq!(t.write(OTHER, h, 0, &m, 0, 1), Err(Error::NoEntry));
    assert_eq!(t.abort(OTHER, h).err(), Some(Error::NoEntry));
    // Aborted: the handle is stale, and stays so when its slot is reused.
    drop(t.abort(DOM0, h).unwrap());
    assert_eq!(t.write(DOM0, h, 0, &m, 0, 1), Err(Error::NoEntry));
    let h2 = t.begin(DOM0, 100).unwrap();
    assert_eq!(h2 & 0xff, slot, "the slot is reused");
    assert_ne!(h2, h, "with a new handle");
    assert_eq!(t.write(DOM0, h, 0, &m, 0, 1), Err(Error::NoEntry));
    assert_eq!(t.write(DOM0, h2, 0, &m, 0, 1), Ok(1));
    drop(t.release(DOM0));
}

#[test]
fn writes_past_the_end_or_leaving_a_gap_are_refused() {
    let _one = host::exclusive();
    let m = mem();
    let mut t = Stages::new();
    let h = t.begin(DOM0, 8192).unwrap();
    let cases = [
        ("past the end", 8000, 193),
        ("wholly past the end", 8192, 1),
        ("a gap before it", 1, 10),
        ("offset wraps", u64::MAX, 2),
        ("nothing", 0, 0),
    ];
    for (what, off, len) in cases {
        assert_eq!(
            t.write(DOM0, h, off, &m, 0, len),
            Err(Error::Invalid),
            "{what}"
        );
    }
    // The source not in the caller's memory: nothing counts as filled.
    assert_eq!(t.write(DOM0, h, 0, &m, 0x2_f000, 8192), Err(Error::Fault));
    assert_eq!(
        t.write(DOM0, h, 0, &m, u64::MAX - 10, 20),
        Err(Error::Fault)
    );
    assert_eq!(
        t.write(DOM0, h, 4096, &m, 0, 1),
        Err(Error::Invalid),
        "still empty"
    );
    assert_eq!(t.write(DOM0, h, 0, &m, 0, 8192), Ok(8192));
    drop(t.release(DOM0));
}

#[test]
fn overlapping_writes_rewrite_and_an_unfilled_stage_builds_nothing() {
    let _one = host::exclusive();
    let m = mem();
    let mut t = Stages::new();
    let h = t.begin(DOM0, 300).unwrap();
    assert_eq!(t.write(DOM0, h, 0, &m, 0, 200), Ok(200));
    assert_eq!(
        t.take(DOM0, h).err(),
        Some(Error::Invalid),
        "100 bytes unwritten"
    );
    // A retry of bytes already written, reaching past them.
    assert_eq!(t.write(DOM0, h, 100, &m, 5000, 150), Ok(250));
    // Rewriting inside the filled bytes leaves the count.
    assert_eq!(t.write(DOM0, h, 10, &m, 9000, 20), Ok(250));
    assert_eq!(t.take(DOM0, h).err(), Some(Error::Invalid));
    assert_eq!(t.write(DOM0, h, 250, &m, 7000, 50), Ok(300));
    let s = t.take(DOM0, h).unwrap();
    let mut want = m.0[0..100].to_vec();
    want.extend_from_slice(&m.0[5000..5150]);
    want.extend_from_slice(&m.0[7000..7050]);
    want[10..30].copy_from_slice(&m.0[9000..9020]);
    assert_eq!(staged(&s), want);
    drop(t.put_back(s));
    drop(t.release(DOM0));
}

#[test]
fn a_stage_being_built_from_is_busy_and_comes_back_on_failure() {
    let _one = host::exclusive();
    let free = P::free_frame_count();
    let m = mem();
    let mut t = Stages::new();
    let h = t.begin(DOM0, 10).unwrap();
    t.write(DOM0, h, 0, &m, 0, 10).unwrap();
    let s = t.take(DOM0, h).unwrap();
    assert_eq!(t.write(DOM0, h, 0, &m, 0, 1), Err(Error::Busy));
    assert_eq!(t.abort(DOM0, h).err(), Some(Error::Busy));
    assert_eq!(t.take(DOM0, h).err(), Some(Error::Busy));
    assert_eq!(t.usage(DOM0), (1, 10), "a busy stage still counts");
    assert!(t.put_back(s).is_none(), "back in its slot");
    assert_eq!(t.write(DOM0, h, 0, &m, 0, 1), Ok(10));
    drop(t.abort(DOM0, h).unwrap());
    assert_eq!(P::free_frame_count(), free);
}

#[test]
fn a_domains_end_frees_its_stages_even_one_being_built_from() {
    let _one = host::exclusive();
    let free = P::free_frame_count();
    let m = mem();
    let mut t = Stages::new();
    let a = t.begin(DOM0, 5000).unwrap();
    let b = t.begin(DOM0, 10).unwrap();
    let other = t.begin(OTHER, 10).unwrap();
    t.write(DOM0, b, 0, &m, 0, 10).unwrap();
    let building = t.take(DOM0, b).unwrap();
    drop(t.release(DOM0));
    assert_eq!(t.usage(DOM0), (0, 0));
    assert_eq!(t.write(DOM0, a, 0, &m, 0, 1), Err(Error::NoEntry));
    // Its slot may be taken by a new stage before the create returns.
    let newer = [t.begin(OTHER, 10).unwrap(), t.begin(OTHER, 10).unwrap()];
    assert!(
        newer.iter().any(|n| n & 0xff == b & 0xff),
        "the busy slot was freed"
    );
    let back = t.put_back(building).expect("not put back: its owner ended");
    drop(back);
    assert_eq!(
        t.usage(OTHER),
        (3, 30),
        "the other domain's stages untouched"
    );
    assert_eq!(t.write(OTHER, other, 0, &m, 0, 1), Ok(1));
    drop(t.release(OTHER));
    assert_eq!(P::free_frame_count(), free, "every frame back");
}

#[test]
fn sizes_and_counts_are_bounded() {
    let _one = host::exclusive();
    let free = P::free_frame_count();
    let mut t = Stages::new();
    assert_eq!(t.begin(DOM0, 0), Err(Error::Invalid));
    assert_eq!(t.begin(DOM0, DOMCTL_IMAGE_MAX + 1), Err(Error::Invalid));
    // More than the free frames (the host machine has 64 MiB).
    assert_eq!(t.begin(DOM0, 128 << 20), Err(Error::NoMem));
    assert_eq!(t.usage(DOM0), (0, 0), "a refused begin holds no slot");
    let hs: Vec<u64> = (0..DOMCTL_STAGE_MAX_HANDLES)
        .map(|_| t.begin(DOM0, 1).unwrap())
        .collect();
    assert_eq!(t.begin(DOM0, 1), Err(Error::Busy), "one stage too many");
    // Another domain's share is its own.
    let o = t.begin(OTHER, 1).unwrap();
    for h in hs {
        drop(t.abort(DOM0, h).unwrap());
    }
    drop(t.abort(OTHER, o).unwrap());
    assert_eq!(P::free_frame_count(), free);
}

const STAGE_BYTES: u64 = 3 * 4096 + 5;
const SRC: u64 = 0x20_0000;

/// A control domain that stages an image, writes all of it, and then
/// blocks until it is destroyed: its stage's frames must come back with
/// its memory (`Domain::finish` → `release_domain`). Also checks the
/// refusals on the real path: a create from the stage on the host (no
/// plain physical memory: `ENOSYS`) leaves it for an abort.
#[test]
fn a_control_domain_destroyed_mid_stage_gets_every_frame_back() {
    let m = Machine::start(2);
    let handle = Arc::new(AtomicI64::new(-1));
    let (h1, h2, h3, h4) = (
        handle.clone(),
        handle.clone(),
        handle.clone(),
        handle.clone(),
    );
    let id = m.create_as("stager", 1, false, true, move |_| {
        let (h1, h2, h3, h4) = (h1.clone(), h2.clone(), h3.clone(), h4.clone());
        steps(vec![
            step(move |g: &mut Guest<'_>| {
                g.write(SRC, &[0x5a; STAGE_BYTES as usize]).unwrap();
                Some(g.hypercall(pvabi::HC_DOMCTL_STAGE_BEGIN, &[STAGE_BYTES]))
            }),
            step(move |g: &mut Guest<'_>| {
                assert!(g.status() > 0, "begin: {}", g.status());
                h1.store(g.status(), Ordering::Release);
                let h = g.rax();
                Some(g.hypercall(pvabi::HC_DOMCTL_STAGE_WRITE, &[h, 0, SRC, STAGE_BYTES]))
            }),
            step(move |g: &mut Guest<'_>| {
                assert_eq!(g.status(), STAGE_BYTES as i64, "write");
                // A second stage, half written, never used.
                Some(g.hypercall(pvabi::HC_DOMCTL_STAGE_BEGIN, &[1 << 20]))
            }),
            step(move |g: &mut Guest<'_>| {
                assert!(g.status() > 0, "second begin: {}", g.status());
                let h = g.rax();
                Some(g.hypercall(pvabi::HC_DOMCTL_STAGE_WRITE, &[h, 0, SRC, 100]))
            }),
            step(move |g: &mut Guest<'_>| {
                assert_eq!(g.status(), 100, "second write");
                let h = h2.load(Ordering::Acquire) as u64;
                // Past the end of the first stage.
                Some(g.hypercall(pvabi::HC_DOMCTL_STAGE_WRITE, &[h, STAGE_BYTES, SRC, 1]))
            }),
            step(move |g: &mut Guest<'_>| {
                assert_eq!(g.status(), pvabi::EINVAL, "a write past the end");
                let h = h3.load(Ordering::Acquire) as u64;
                Some(g.hypercall(pvabi::HC_DOMCTL_STAGE_WRITE, &[h, 0, SRC, 65537]))
            }),
            step(move |g: &mut Guest<'_>| {
                assert_eq!(g.status(), pvabi::E2BIG, "a write over 64 KiB");
                h4.store(0, Ordering::Release);
                Some(g.hypercall(pvabi::HC_SCHED_BLOCK, &[0]))
            }),
        ])
    });
    m.wait("the stages", || handle.load(Ordering::Acquire) == 0);
    assert_eq!(
        STAGES.lock().usage(DomainId(id)),
        (2, STAGE_BYTES + (1 << 20))
    );
    domain(id).unwrap().finish("destroyed", -1, None);
    m.wait_all_gone();
    assert_eq!(STAGES.lock().usage(DomainId(id)), (0, 0), "stages left");
    m.stop();
}

//! `diskbench=<MiB>+<ops>` on dom0's command line (`cargo xtask bench
//! --only disk`, tools/xtask/src/diskbench.rs): dom0 times four workloads
//! on each of its disks through the driver's block interface (the same
//! path the store uses: [`BlockDevice::read`] / [`BlockDevice::write`],
//! one request in flight, data through the driver's bounce buffer), and
//! then ends, so the hypervisor's `shutdown` option ends the run:
//!
//! - `seq-write`, `seq-read`: `<MiB>` requests of 1 MiB from block 0 on;
//! - `rand-write`, `rand-read`: `<ops>` requests of 4 KiB at 4 KiB-aligned
//!   offsets inside those first `<MiB>` MiB, drawn by [`Offsets`] (the
//!   Linux side of the benchmark draws the same ones).
//!
//! Each prints `diskbench <bdf> <kind> <workload> ops=N bytes=B ns=T
//! interrupts=I`, T in system time (under QEMU `-icount`, instructions
//! while the CPU runs plus the warps while it halts, `sleep=off`: not
//! repeatable), I the completion interrupts the disk took during it
//! (`Completions::drain` included). Each workload's loop is between two
//! markers ([`super::mark`]), between which the xtask's `insncount`
//! plugin counts the instructions run: the repeatable figure. Writes are not flushed (nor are Linux's
//! O_DIRECT writes). What it measures is dom0's driver and what under it
//! each request costs (exits, the device model); no hypercall per request
//! is made apart from the ones that sleep on the disk's port.

use alloc::boxed::Box;
use alloc::format;
use alloc::vec;

use pvabi::guest::time;

use super::block::BlockDevice;
use crate::say;

/// The sequential request.
pub const SEQ_BYTES: usize = 1 << 20;
/// The random request.
pub const RAND_BYTES: usize = 4096;

/// The offsets the random workloads use (xorshift64, Marsaglia 2003, seed
/// [`Offsets::SEED`]), in units of [`RAND_BYTES`] below `slots`.
pub struct Offsets {
    x: u64,
    slots: u64,
}

impl Offsets {
    pub const SEED: u64 = 0x9e37_79b9_7f4a_7c15;

    pub fn new(slots: u64) -> Self {
        Self {
            x: Self::SEED,
            slots: slots.max(1),
        }
    }
}

impl Iterator for Offsets {
    type Item = u64;
    fn next(&mut self) -> Option<u64> {
        self.x ^= self.x << 13;
        self.x ^= self.x >> 7;
        self.x ^= self.x << 17;
        Some(self.x % self.slots)
    }
}

/// Parses `<MiB>+<ops>` (both above 0).
pub fn parse(arg: &str) -> Option<(u64, u64)> {
    let (m, n) = arg.split_once('+')?;
    let (m, n): (u64, u64) = (m.parse().ok()?, n.parse().ok()?);
    (m > 0 && n > 0).then_some((m, n))
}

/// Runs the four workloads on every disk (module doc).
pub fn run_all(disks: &mut [Box<dyn BlockDevice>], mib: u64, ops: u64) {
    for d in disks.iter_mut() {
        if let Err(e) = run(d.as_mut(), mib, ops) {
            say(&format!("diskbench {} FAILED: {e}", d.bdf()));
        }
    }
    say("diskbench: done");
}

fn run(d: &mut dyn BlockDevice, mib: u64, ops: u64) -> Result<(), super::DevError> {
    let bs = d.block_size() as u64;
    let bytes = mib.saturating_mul(SEQ_BYTES as u64);
    if bs == 0 || !(RAND_BYTES as u64).is_multiple_of(bs) || bytes > d.bytes() {
        return Err(d.error(format!(
            "{mib} MiB with {bs}-byte blocks does not fit the disk's {} bytes",
            d.bytes()
        )));
    }
    let mut buf = vec![0u8; SEQ_BYTES];
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    let per_seq = SEQ_BYTES as u64 / bs;
    let per_rand = RAND_BYTES as u64 / bs;
    let slots = bytes / RAND_BYTES as u64;
    for (name, write, random) in [
        ("seq-write", true, false),
        ("seq-read", false, false),
        ("rand-write", true, true),
        ("rand-read", false, true),
    ] {
        let n = if random { ops } else { mib };
        let len = if random { RAND_BYTES } else { SEQ_BYTES };
        let mut at = Offsets::new(slots);
        let irq0 = d.completions().interrupts();
        super::mark::mark();
        let start = time::now_ns();
        for i in 0..n {
            let lba = if random {
                at.next().unwrap_or(0) * per_rand
            } else {
                i * per_seq
            };
            if write {
                d.write(lba, &buf[..len])?;
            } else {
                d.read(lba, &mut buf[..len])?;
            }
        }
        let ns = time::now_ns().saturating_sub(start);
        super::mark::mark();
        // Counts an MSI that came while nobody waited (completion.rs).
        d.completions_mut().drain();
        say(&format!(
            "diskbench {} {} {name} ops={n} bytes={} ns={ns} interrupts={}",
            d.bdf(),
            d.kind(),
            n * len as u64,
            d.completions().interrupts() - irq0
        ));
    }
    Ok(())
}

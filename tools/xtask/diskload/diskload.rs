//! The Linux side of `cargo xtask bench --only disk` (tools/xtask/src/diskbench.rs):
//! the same four workloads dom0's `diskbench=` runs (dom0/src/dev/diskbench.rs),
//! on a block device opened with O_DIRECT (no page cache, as dom0 has none),
//! one request in flight (queue depth 1, as dom0's drivers), timed with
//! CLOCK_MONOTONIC (under QEMU `-icount` a count of instructions).
//!
//! `diskload <device> <MiB> <ops>` prints, per workload,
//! `diskbench <device> linux <workload> ops=N bytes=B ns=T`.
//!
//! Each workload's loop is between two markers ([`mark`]): the xtask's
//! `insncount` plugin (`marks=`) counts the instructions the machine ran
//! between them (this program, Linux's block layer and drivers, interrupts),
//! the deterministic figure of the bench; dom0 places the same markers.
//!
//! Built by the xtask with `rustc -O -C target-feature=+crt-static` (a static
//! binary for the busybox initramfs). busybox's `dd` was the first choice, but
//! Debian's busybox-static 1.35 prints no elapsed time and its `date` has no
//! `%N`, and a random workload of one `dd` process per 4 KiB request would time
//! `fork` and `exec`, not the disk.

use std::alloc::{Layout, alloc_zeroed};
use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::time::Instant;

/// `O_DIRECT` on x86_64 Linux (asm-generic/fcntl.h: 00040000).
const O_DIRECT: i32 = 0o40000;
const SEQ_BYTES: usize = 1 << 20;
const RAND_BYTES: usize = 4096;
/// dom0's `Offsets::SEED`: the same offsets in the same order.
const SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// The `insncount` plugin's marker (tools/insncount/src/lib.rs `MARKER`):
/// `nopl 0x4b4d524b(%rax)`, a NOP (Intel SDM Vol. 2B, `0F 1F /0`).
#[inline(always)]
fn mark() {
    // SAFETY: a NOP: no memory access (NOP's operand is not read), no
    // register or flag changes.
    unsafe {
        std::arch::asm!(
            ".byte 0x0f, 0x1f, 0x80, 0x4b, 0x52, 0x4d, 0x4b",
            options(nomem, nostack, preserves_flags)
        )
    };
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 4 {
        eprintln!("usage: diskload <device> <MiB> <ops>");
        std::process::exit(2);
    }
    let dev = &a[1];
    let mib: u64 = a[2].parse().expect("MiB: a number");
    let ops: u64 = a[3].parse().expect("ops: a number");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(O_DIRECT)
        .open(dev)
        .unwrap_or_else(|e| panic!("{dev}: {e}"));
    // O_DIRECT wants the buffer aligned to the logical block size.
    let layout = Layout::from_size_align(SEQ_BYTES, 4096).expect("layout");
    // SAFETY: a non-zero size; the memory is never freed (the process ends).
    let buf = unsafe { std::slice::from_raw_parts_mut(alloc_zeroed(layout), SEQ_BYTES) };
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    let slots = mib * (SEQ_BYTES / RAND_BYTES) as u64;
    for (name, write, random) in [
        ("seq-write", true, false),
        ("seq-read", false, false),
        ("rand-write", true, true),
        ("rand-read", false, true),
    ] {
        let n = if random { ops } else { mib };
        let len = if random { RAND_BYTES } else { SEQ_BYTES };
        let mut x = SEED;
        mark();
        let start = Instant::now();
        for i in 0..n {
            let off = if random {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % slots) * RAND_BYTES as u64
            } else {
                i * SEQ_BYTES as u64
            };
            let done = if write {
                f.write_at(&buf[..len], off)
            } else {
                f.read_at(&mut buf[..len], off)
            };
            match done {
                Ok(k) if k == len => {}
                other => panic!("{dev}: {name} at {off}: {other:?}"),
            }
        }
        let ns = start.elapsed().as_nanos();
        mark();
        println!(
            "diskbench {dev} linux {name} ops={n} bytes={} ns={ns}",
            n * len as u64
        );
    }
}

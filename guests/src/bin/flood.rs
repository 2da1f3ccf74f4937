//! A hostile guest that makes each of its exits as long as the ABI lets it
//! (issue 12, defect 5): after sleeping `start_ms=` milliseconds (default
//! 0: so that a victim is already asleep when the flood starts), for `ms=`
//! milliseconds of its own clock (default 1500), then reports and exits 0.
//! `kind=`:
//!
//! - `console`: `HC_CONSOLE_WRITE` of 4 KiB (64 lines of 64 bytes) in a loop.
//! - `multicall`: `HC_MULTICALL` of 64 such 4 KiB writes (256 KiB per call).
//! - `mem`: `HC_MULTICALL` of 64 memory ops of 512 pages each, releasing and
//!   re-populating one 2 MiB block of the free region (32,768 pages a call).
//! - `grant`: `HC_MULTICALL` of 64 grant accesses of one page, then one of
//!   the 64 revokes (grants are cheap: the control flood of the set).
//!
//! The hypervisor must run the long ones in bounded pieces (continuations)
//! and queue console output, so the `victim` guest beside it still wakes up
//! on time. Output: `flood: kind=K calls=N ok`, or `flood: kind=K FAILED
//! ...` (and exit 1) when a call returns an error.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use pvabi::guest::{hypercall6, memory, time};
use pvabi::{
    HC_CONSOLE_WRITE, HC_GRANT_ACCESS, HC_GRANT_REVOKE, HC_MEM_POPULATE, HC_MEM_RELEASE,
    HC_MULTICALL, MEM_OP_MAX_PAGES, MULTICALL_MAX, MulticallEntry, PAGE_SIZE, StartInfo,
};

pvabi::entry_point!(main);

const N: usize = MULTICALL_MAX as usize;
const MS: u64 = 1_000_000;

/// 64 lines of 64 bytes: `flood: 0123...` ending in a newline.
const fn text() -> [u8; 4096] {
    let mut t = [b'.'; 4096];
    let head = b"flood: ";
    let mut line = 0;
    while line < 64 {
        let mut i = 0;
        while i < head.len() {
            t[line * 64 + i] = head[i];
            i += 1;
        }
        let mut j = head.len();
        while j < 63 {
            t[line * 64 + j] = b'0' + ((line + j) % 10) as u8;
            j += 1;
        }
        t[line * 64 + 63] = b'\n';
        line += 1;
    }
    t
}

static TEXT: [u8; 4096] = text();

fn arg<'a>(si: &'a StartInfo, key: &str) -> Option<&'a str> {
    core::str::from_utf8(si.cmdline())
        .unwrap_or("")
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// One multicall of `batch`: `Err(what)` when it or an entry failed.
fn multicall(batch: &mut [MulticallEntry; N], want: i64) -> Result<(), &'static str> {
    let r = hypercall6(
        HC_MULTICALL,
        [batch.as_mut_ptr() as u64, N as u64, 0, 0, 0, 0],
    );
    if r != N as u64 {
        return Err("multicall");
    }
    if want >= 0 && batch.iter().any(|e| e.result as i64 != want) {
        return Err("an entry");
    }
    Ok(())
}

fn main(si: &StartInfo) -> i32 {
    let kind = arg(si, "kind").unwrap_or("console");
    let ms: u64 = arg(si, "ms").and_then(|v| v.parse().ok()).unwrap_or(1500);
    let start_ms: u64 = arg(si, "start_ms")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if time::sleep_ns(start_ms * MS).is_err() {
        pvabi::println!("flood: kind={kind} FAILED the first sleep");
        return 1;
    }
    let text = TEXT.as_ptr() as u64;
    let page = text & !(PAGE_SIZE - 1);
    // A 2 MiB-aligned block of the free region for the memory flood.
    let block = memory::free_region().and_then(|r| {
        let start = r.start.next_multiple_of(MEM_OP_MAX_PAGES * PAGE_SIZE);
        (start + MEM_OP_MAX_PAGES * PAGE_SIZE <= r.end).then_some(start)
    });
    let end = time::now_ns() + ms * MS;
    let mut calls = 0u64;
    let mut batch = [MulticallEntry::new(0, [0; 6]); N];
    while time::now_ns() < end {
        let r = match kind {
            "console" => {
                let n = hypercall6(HC_CONSOLE_WRITE, [text, 4096, 0, 0, 0, 0]);
                if n == 4096 {
                    Ok(())
                } else {
                    Err("console write")
                }
            }
            "multicall" => {
                for e in batch.iter_mut() {
                    *e = MulticallEntry::new(HC_CONSOLE_WRITE, [text, 4096, 0, 0, 0, 0]);
                }
                multicall(&mut batch, 4096)
            }
            "mem" => {
                let Some(b) = block else {
                    pvabi::println!("flood: kind=mem FAILED no 2 MiB free block");
                    return 1;
                };
                for (i, e) in batch.iter_mut().enumerate() {
                    let op = if i % 2 == 0 {
                        HC_MEM_RELEASE
                    } else {
                        HC_MEM_POPULATE
                    };
                    *e = MulticallEntry::new(op, [b, MEM_OP_MAX_PAGES, 0, 0, 0, 0]);
                }
                multicall(&mut batch, MEM_OP_MAX_PAGES as i64)
            }
            "grant" => {
                let grantee = u64::from(si.domain_id) + 1;
                for e in batch.iter_mut() {
                    *e = MulticallEntry::new(HC_GRANT_ACCESS, [page, grantee, 0, 0, 0, 0]);
                }
                multicall(&mut batch, -1).and_then(|()| {
                    let mut refs = [0u64; N];
                    for (r, e) in refs.iter_mut().zip(batch.iter()) {
                        if (e.result as i64) < 0 {
                            return Err("grant access");
                        }
                        *r = e.result;
                    }
                    for (e, r) in batch.iter_mut().zip(refs) {
                        *e = MulticallEntry::new(HC_GRANT_REVOKE, [r, 0, 0, 0, 0, 0]);
                    }
                    multicall(&mut batch, 0)
                })
            }
            _ => Err("unknown kind"),
        };
        if let Err(what) = r {
            pvabi::println!("flood: kind={kind} FAILED {what} after {calls} calls");
            return 1;
        }
        calls += 1;
    }
    pvabi::println!("flood: kind={kind} calls={calls} ok");
    0
}

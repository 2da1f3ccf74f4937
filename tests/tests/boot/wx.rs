//! W^X of the hypervisor's own mappings, checked from outside (as Hedron's
//! `qemu-boot` test does): boot under QEMU, wait for `Kestrel ready`, then
//! ask the QEMU monitor for `info tlb` (QEMU walks the CPU's live page
//! tables from its CR3) on every CPU, and check every leaf:
//!
//! - no page is both writable and executable (`W` without `X`, QEMU's mark
//!   for NX);
//! - every page of the image is mapped, identity; its code is not
//!   writable, `.text` is executable, its writable segments are NX;
//! - nothing else is executable but the AP start-up trampoline page;
//! - page 0 is unmapped (null pointers fault).
//!
//! The hypervisor checks the same at boot (`paging::verify_wx`); this test
//! does not trust it. The `info tlb` line format is QEMU's
//! `target/i386/monitor.c` `print_pte`: `VADDR: PADDR XGPDACTUW` with `-`
//! for a clear bit. Upper-level entries are not shown: the hypervisor's are
//! all present, writable and executable (the leaves decide), which the
//! executable-text check would expose if it changed (text would read as
//! writable or NX).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::{Duration, Instant};

use boot_tests::artifacts::{kernel, test_dir};
use boot_tests::qemu::{PVH_TIMEOUT_S, pvh_vm};
use boot_tests::scaled;
use xtask::elfinfo;
use xtask::runner::{KillOnDrop, StopLine};

const PAGE: u64 = 0x1000;
/// ELF `p_flags`.
const PF_X: u32 = 1;
const PF_W: u32 = 2;

/// One leaf of `info tlb`.
#[derive(Debug, Clone, Copy)]
struct Leaf {
    vaddr: u64,
    paddr: u64,
    nx: bool,
    large: bool,
    writable: bool,
}

fn parse_leaf(line: &str) -> Option<Leaf> {
    let (va, rest) = line.trim().split_once(": ")?;
    let (pa, flags) = rest.split_once(' ')?;
    let flags = flags.as_bytes();
    if flags.len() != 9 || va.len() != 16 || pa.len() != 16 {
        return None;
    }
    Some(Leaf {
        vaddr: u64::from_str_radix(va, 16).ok()?,
        paddr: u64::from_str_radix(pa, 16).ok()?,
        nx: flags[0] == b'X',
        large: flags[2] == b'P',
        writable: flags[8] == b'W',
    })
}

/// Sends one monitor command and returns what it printed (up to the next
/// `(qemu) ` prompt).
fn monitor(sock: &mut UnixStream, cmd: &str, deadline: Instant) -> String {
    sock.write_all(format!("{cmd}\n").as_bytes())
        .unwrap_or_else(|e| panic!("monitor `{cmd}`: {e}"));
    prompt(sock, cmd, deadline)
}

/// Reads up to the next `(qemu) ` prompt.
fn prompt(sock: &mut UnixStream, cmd: &str, deadline: Instant) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        assert!(
            Instant::now() < deadline,
            "monitor `{cmd}`: no prompt in time"
        );
        match sock.read(&mut buf) {
            Ok(0) => panic!("monitor `{cmd}`: QEMU closed the socket"),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("monitor `{cmd}`: {e}"),
        }
        if out.ends_with(b"(qemu) ") {
            return String::from_utf8_lossy(&out).into_owned();
        }
    }
}

#[test]
fn wx_from_the_qemu_monitor() {
    let test = "wx_from_the_qemu_monitor";
    let dir = test_dir(test);
    let serial = dir.join("serial.log");
    let mon = dir.join("monitor.sock");
    let smp = 2;
    // No exit option: the hypervisor stays up, idle, with its own tables
    // live on every CPU (no guest: no module).
    let mut vm = pvh_vm(smp, "256M", "loglevel=info", None);
    vm.serial = format!("file:{}", serial.display());
    vm.extra.push("-monitor".into());
    vm.extra
        .push(format!("unix:{},server=on,wait=off", mon.display()).into());
    let qemu = vm.check_tools().unwrap_or_else(|e| panic!("{test}: {e}"));
    let mut cmd = Command::new(qemu);
    cmd.args(vm.args())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let _qemu = KillOnDrop::spawn(&mut cmd).unwrap_or_else(|e| panic!("{test}: {e}"));
    let deadline = Instant::now() + scaled(PVH_TIMEOUT_S);
    let ready = StopLine {
        log: &serial,
        needles: &["Kestrel ready:"],
    };
    while !ready.seen() {
        assert!(
            Instant::now() < deadline,
            "{test}: no `Kestrel ready` line in time; serial log {}",
            serial.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut sock = UnixStream::connect(&mon).unwrap_or_else(|e| panic!("{}: {e}", mon.display()));
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap_or_else(|e| panic!("{e}"));
    // The banner ends with the first prompt.
    prompt(&mut sock, "(banner)", deadline);

    let image = std::fs::read(kernel()).unwrap_or_else(|e| panic!("{e}"));
    let loads = elfinfo::loads(&image).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        loads.iter().any(|l| l.flags & PF_X != 0),
        "no executable segment"
    );

    for cpu in 0..smp {
        monitor(&mut sock, &format!("cpu {cpu}"), deadline);
        let dump = monitor(&mut sock, "info tlb", deadline);
        std::fs::write(dir.join(format!("tlb-cpu{cpu}.txt")), &dump)
            .unwrap_or_else(|e| panic!("{e}"));
        let leaves: Vec<Leaf> = dump.lines().filter_map(parse_leaf).collect();
        // All RAM is mapped: far more leaves than this, or the parse failed.
        assert!(
            leaves.len() > 100,
            "{test}: cpu {cpu}: only {} leaves in `info tlb`",
            leaves.len()
        );
        let wx: Vec<&Leaf> = leaves.iter().filter(|l| l.writable && !l.nx).collect();
        assert!(
            wx.is_empty(),
            "{test}: cpu {cpu}: {} writable and executable pages, first {:x?}",
            wx.len(),
            wx.first()
        );
        let size = |l: &Leaf| if l.large { 0x20_0000 } else { PAGE };
        let leaf_of = |va: u64| {
            leaves
                .iter()
                .find(|l| (l.vaddr..l.vaddr + size(l)).contains(&va))
        };
        assert!(leaf_of(0).is_none(), "{test}: cpu {cpu}: page 0 is mapped");
        let text = loads
            .iter()
            .filter(|l| l.flags & PF_X != 0)
            .max_by_key(|l| l.memsz)
            .copied();
        let mut guards = 0;
        for seg in &loads {
            let start = seg.paddr & !(PAGE - 1);
            let end = (seg.paddr + seg.memsz).next_multiple_of(PAGE);
            for va in (start..end).step_by(PAGE as usize) {
                let Some(l) = leaf_of(va) else {
                    // The boot stack's guard page lies in `.bss`.
                    assert!(
                        seg.flags & PF_W != 0,
                        "{test}: cpu {cpu}: image page {va:#x} ({seg:x?}) is not mapped"
                    );
                    guards += 1;
                    continue;
                };
                assert_eq!(
                    l.paddr + (va - l.vaddr),
                    va,
                    "{test}: cpu {cpu}: image page {va:#x} is not identity-mapped"
                );
                if seg.flags & PF_X != 0 {
                    assert!(
                        !l.writable,
                        "{test}: cpu {cpu}: code page {va:#x} is writable"
                    );
                }
                // `.text` runs: executable. (`.boot`, the 32-bit entry code,
                // is only run before paging and is mapped NX.)
                if Some(*seg) == text {
                    assert!(!l.nx, "{test}: cpu {cpu}: text page {va:#x} is NX");
                }
                if seg.flags & PF_W != 0 {
                    assert!(l.nx, "{test}: cpu {cpu}: data page {va:#x} is executable");
                }
            }
        }
        assert!(
            guards <= 1,
            "{test}: cpu {cpu}: {guards} unmapped data pages (one guard expected)"
        );
        // Outside the image's code, the only executable page is the AP
        // start-up trampoline (`arch/smp.rs`: one page below 1 MiB).
        let in_code = |l: &Leaf| {
            loads.iter().any(|s| {
                s.flags & PF_X != 0
                    && l.vaddr >= s.paddr & !(PAGE - 1)
                    && l.vaddr < s.paddr + s.memsz
            })
        };
        let stray: Vec<&Leaf> = leaves.iter().filter(|l| !l.nx && !in_code(l)).collect();
        assert!(
            stray.len() <= 1 && stray.iter().all(|l| !l.large && l.vaddr < 0x10_0000),
            "{test}: cpu {cpu}: executable pages outside the hypervisor's code: {stray:x?}"
        );
        println!(
            "{test}: cpu {cpu}: {} leaves, {} executable, none writable and executable",
            leaves.len(),
            leaves.iter().filter(|l| !l.nx).count()
        );
    }
}

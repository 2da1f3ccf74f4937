//! Seed inputs, one set per target, built like the unit tests' inputs
//! (the same Multiboot2 block, PVH `start_info`, ELF kernel, command lines
//! and op sequences), in each target's input format.
//!
//! They are committed under `fuzz/seeds/<target>/`; `cargo test` here
//! checks the files are exactly what this module builds (regenerate with
//! `KESTREL_FUZZ_BLESS=1 cargo test`), and that each runs clean. Inputs
//! that once crashed a target go, as found, into
//! `fuzz/regressions/<target>/`: the same test runs each of them, and
//! `cargo xtask fuzz` starts from them too.

use crate::input::Output;
use pvabi::zerocopy::{FromZeros, IntoBytes};

/// The seeds of `target`: (file name, bytes).
pub fn seeds(target: &str) -> Vec<(&'static str, Vec<u8>)> {
    match target {
        "multiboot2" => multiboot2(),
        "pvh" => pvh(),
        "elf" => elf(),
        "cmdline" => [
            ("demo", "dom0 loglevel=info"),
            (
                "tests",
                "loglevel=debug exit=qemu shutdown console=com1 selftest",
            ),
            ("bad", "loglevel= exit=nope =x dom0=maybe"),
        ]
        .into_iter()
        .map(|(n, s)| (n, s.as_bytes().to_vec()))
        .collect(),
        "hypercall" => hypercall(),
        "evtchn" => evtchn(),
        "grant" => grant(),
        "ring" => ring(),
        "store" => crate::store::seeds(),
        _ => Vec::new(),
    }
}

// --- Multiboot2: the unit tests' `full_example` block -----------------------

fn mb2_tag(b: &mut Vec<u8>, ty: u32, payload: &[u8]) {
    b.extend_from_slice(&ty.to_le_bytes());
    b.extend_from_slice(&(payload.len() as u32 + 8).to_le_bytes());
    b.extend_from_slice(payload);
    while !b.len().is_multiple_of(8) {
        b.push(0);
    }
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn multiboot2() -> Vec<(&'static str, Vec<u8>)> {
    let mut b = vec![0u8; 8];
    mb2_tag(&mut b, 1, &cstr("loglevel=debug exit=qemu"));
    mb2_tag(&mut b, 2, &cstr("GRUB 2.12"));
    mb2_tag(&mut b, 99, &[1, 2, 3]);
    let mut m = Output::default();
    m.u32(0x20_0000)
        .u32(0x20_8000)
        .bytes(&cstr("/boot/dom0.elf console=hvc0"));
    mb2_tag(&mut b, 3, &m.0);
    let mut mm = Output::default();
    mm.u32(24).u32(0);
    for (base, len, ty) in [
        (0u64, 0x9fc00u64, 1u32),
        (0x9fc00, 0x400, 2),
        (0x10_0000, 0x3ff0_0000, 1),
    ] {
        mm.u64(base).u64(len).u32(ty).u32(0);
    }
    mb2_tag(&mut b, 6, &mm.0);
    let mut fb = Output::default();
    fb.u64(0xfd00_0000)
        .u32(4096)
        .u32(1024)
        .u32(768)
        .bytes(&[32, 1, 0, 0]);
    mb2_tag(&mut b, 8, &fb.0);
    mb2_tag(&mut b, 14, &[0u8; 20]);
    mb2_tag(&mut b, 0, &[]);
    let total = b.len() as u32;
    b[..4].copy_from_slice(&total.to_le_bytes());
    vec![("full", b)]
}

// --- PVH: the unit tests' `qemu_style` start_info (at offset 0) ------------

fn pvh() -> Vec<(&'static str, Vec<u8>)> {
    use crate::boot::PVH_BASE as BASE;
    let (cmd, modlist, memmap, modcmd) = (0x100u64, 0x400u64, 0x800u64, 0xc00u64);
    let mut mem = vec![0u8; 0x1000];
    let mut put = |off: u64, bytes: &[u8]| {
        mem[off as usize..off as usize + bytes.len()].copy_from_slice(bytes);
    };
    let mut si = Output::default();
    si.u32(0x336e_c578).u32(1).u32(0).u32(2);
    si.u64(BASE + modlist)
        .u64(BASE + cmd)
        .u64(0xf_5a40)
        .u64(BASE + memmap);
    si.u32(2).u32(0);
    put(0, &si.0);
    put(cmd, b"exit=qemu shutdown\0");
    put(modcmd, b"/guests/linux quiet\0");
    let mut mm = Output::default();
    mm.u64(0).u64(0x9fc00).u32(1).u32(0);
    mm.u64(0x10_0000).u64(0x7ff0_0000).u32(1).u32(0);
    put(memmap, &mm.0);
    let mut ml = Output::default();
    ml.u64(0x20_0000).u64(0x1234).u64(0).u64(0);
    ml.u64(0x30_0000).u64(0x100).u64(BASE + modcmd).u64(0);
    put(modlist, &ml.0);
    vec![("qemu", mem)]
}

// --- ELF: the unit tests' two-segment kernel -------------------------------

fn elf() -> Vec<(&'static str, Vec<u8>)> {
    // (type, flags, offset, vaddr, filesz, memsz)
    let phs: [(u32, u32, u64, u64, u64, u64); 3] = [
        (1, 5, 0x1000, 0x10_0000, 0x3000, 0x3000),
        (4, 4, 0x200, 0, 0x20, 0x20),
        (1, 6, 0x4000, 0x10_4000, 0x1000, 0x5000),
    ];
    let mut b = vec![0u8; 0x5000];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4..7].copy_from_slice(&[2, 1, 1]);
    b[16..18].copy_from_slice(&2u16.to_le_bytes());
    b[18..20].copy_from_slice(&62u16.to_le_bytes());
    b[20..24].copy_from_slice(&1u32.to_le_bytes());
    b[24..32].copy_from_slice(&0x10_0100u64.to_le_bytes());
    b[32..40].copy_from_slice(&64u64.to_le_bytes());
    b[52..54].copy_from_slice(&64u16.to_le_bytes());
    b[54..56].copy_from_slice(&56u16.to_le_bytes());
    b[56..58].copy_from_slice(&(phs.len() as u16).to_le_bytes());
    for (i, (ty, flags, off, vaddr, filesz, memsz)) in phs.into_iter().enumerate() {
        let mut p = Output::default();
        p.u32(ty)
            .u32(flags)
            .u64(off)
            .u64(vaddr)
            .u64(vaddr)
            .u64(filesz)
            .u64(memsz)
            .u64(0x1000);
        b[64 + 56 * i..64 + 56 * (i + 1)].copy_from_slice(&p.0);
    }
    vec![("kernel", b)]
}

// --- Hypercalls --------------------------------------------------------------

fn exit(o: &mut Output, kind: u8, regs: [u64; 7]) {
    o.u8(kind);
    for r in regs {
        o.u64(r);
    }
}

fn hypercall() -> Vec<(&'static str, Vec<u8>)> {
    use pvabi::*;
    let mut out = Vec::new();
    // An unprivileged guest: console, memory, vCPUs, event channels.
    let mut o = Output::default();
    let calls: &[[u64; 7]] = &[
        [HC_CONSOLE_WRITE, 0x100, 5, 0, 0, 0, 0],
        [HC_MEM_INFO, 0x200, 0, 0, 0, 0, 0],
        [HC_VCPU_INFO, 1, 0x300, 0, 0, 0, 0],
        [HC_EVTCHN_ALLOC_UNBOUND, 1, 0, 0, 0, 0, 0],
        [HC_EVTCHN_BIND_INTERDOMAIN, 1, 1, 0, 0, 0, 0],
        [HC_EVTCHN_SEND, 2, 0, 0, 0, 0, 0],
        [HC_EVTCHN_POLL, 0, 0, 0, 0, 0, 0],
        [HC_EVTCHN_STATUS, 1, 0x400, 0, 0, 0, 0],
        [HC_MULTICALL, 0x1000, 2, 0, 0, 0, 0],
        [HC_MEM_RELEASE, 0x2000, 1, 0, 0, 0, 0],
        [HC_GRANT_ACCESS, 0x3000, 2, 1, 0, 0, 0],
        [HC_SCHED_POLL, 0, 0, 0, 0, 0, 0],
        [HC_SHUTDOWN, SHUTDOWN_POWEROFF, 0, 0, 0, 0, 0],
    ];
    o.u8(0).u8(calls.len() as u8);
    for c in calls {
        exit(&mut o, 0, *c);
    }
    let mut mem = vec![0u8; 0x1100];
    mem[0x100..0x105].copy_from_slice(b"hello");
    let mut e = MulticallEntry::new_zeroed();
    e.op = HC_CONSOLE_WRITE;
    e.args = [0x100, 5, 0, 0, 0, 0];
    mem[0x1000..0x1000 + e.as_bytes().len()].copy_from_slice(e.as_bytes());
    e.op = HC_YIELD;
    let at = 0x1000 + e.as_bytes().len();
    mem[at..at + e.as_bytes().len()].copy_from_slice(e.as_bytes());
    o.bytes(&mem);
    out.push(("guest", o.0));
    // The control domain: domctl and the management line.
    let mut o = Output::default();
    let calls: &[[u64; 7]] = &[
        [HC_DOMCTL_LIST, 0x100, 4, 0, 0, 0, 0],
        [HC_DOMCTL_INFO, 2, 0x200, 0, 0, 0, 0],
        [HC_DOMCTL_MODULE_READ, 1, 0, 0x300, 64, 0, 0],
        [HC_DOMCTL_HOST_INFO, 0x400, 0, 0, 0, 0, 0],
        [HC_MGMT_WRITE, 0x100, 8, 0, 0, 0, 0],
        [HC_MGMT_READ, 0x500, 16, 0, 0, 0, 0],
        [HC_DOMCTL_CONSOLE_WRITE, 3, 0x100, 4, 0, 0, 0],
        [HC_CONSOLE_READ, 0x600, 8, 0, 0, 0, 0],
    ];
    o.u8(1).u8(calls.len() as u8);
    for c in calls {
        exit(&mut o, 0, *c);
    }
    out.push(("dom0", o.0));
    // Other exits: CPUID, MSR, I/O, HLT, a nested page fault.
    let mut o = Output::default();
    o.u8(0).u8(5);
    exit(&mut o, 4, [0x4000_0000, 0, 0, 0, 0, 0, 0]);
    exit(&mut o, 5, [0, 0, 0, 0, 0, 0, 0]);
    exit(&mut o, 6, [0, 0, 1, 0x3f8, 0, 0, 0]);
    exit(&mut o, 7, [0; 7]);
    exit(&mut o, 8, [0, 0x10_0000, 1, 0, 0, 0, 0]);
    out.push(("exits", o.0));
    out
}

// --- Op sequences --------------------------------------------------------------

fn ops(list: &[(u8, u8, u32, u32)]) -> Vec<u8> {
    let mut o = Output::default();
    for &(op, dom, a, b) in list {
        o.u8(op).u8(dom).u32(a).u32(b);
    }
    o.0
}

fn evtchn() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        // dom1 offers a port to dom2, dom2 binds, both send, dom1 closes.
        (
            "interdomain",
            ops(&[
                (0, 0, 0, 1),
                (1, 1, 1, 0),
                (2, 1, 1, 0),
                (2, 0, 1, 0),
                (6, 0, 0, 0),
                (4, 1, 1, 0),
                (2, 0, 1, 0),
                (5, 1, 1, 0),
                (3, 0, 1, 0),
                (2, 1, 1, 0),
            ]),
        ),
        // VIRQs and IPIs, vCPU rebinding, the limit, a dying domain.
        (
            "local",
            ops(&[
                (7, 0, 0, 1),
                (8, 0, 0, 1),
                (9, 0, 1, 0),
                (12, 0, 0, 1),
                (6, 0, 0, 0),
                (10, 0, 0, 70),
                (0, 0, 0, 0),
                (1, 0, 3, 1),
                (2, 0, 3, 0),
                (11, 0, 4, 0),
                (13, 0, 0, 0),
            ]),
        ),
    ]
}

fn grant() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        // dom1 grants to dom2, dom2 maps, dom1 revokes (deferred), dom2
        // unmaps (the revoke completes).
        (
            "revoke",
            ops(&[
                (0, 0, 0, 0x100 | 2),
                (1, 1, 0, 4),
                (4, 0, 0, 0),
                (5, 1, 0, 64 << 16),
                (3, 0, 0, 5),
                (2, 1, 0, 0),
                (4, 0, 0, 0),
            ]),
        ),
        // Limits, and both ends dying with grants mapped.
        (
            "dying",
            ops(&[
                (6, 0, 0, 40),
                (7, 1, 0, 40),
                (0, 0, 0, 4),
                (0, 1, 0, 6),
                (1, 1, 0, 8),
                (1, 0, 0, 10),
                (9, 0, 0, 0),
                (8, 1, 0, 0),
            ]),
        ),
    ]
}

fn ring() -> Vec<(&'static str, Vec<u8>)> {
    let mut honest = vec![2u8];
    // Fill, publish, serve, answer, consume, sleep, wake; twice around.
    for op in [
        0u8, 0, 0, 0, 0, 1, 6, 2, 2, 3, 3, 4, 5, 5, 7, 2, 2, 3, 3, 4, 5, 5, 6, 7, 0, 1, 2, 3, 4, 5,
    ] {
        honest.extend_from_slice(&[op, 0, 0, 0, 0, 0, 0, 0, 0]);
    }
    let mut hostile = honest.clone();
    hostile[0] = 3;
    // The peer sets req_prod (word 0) far ahead, then the back reads.
    hostile.extend_from_slice(&[8, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0]);
    vec![("honest", honest), ("hostile", hostile)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn dir(target: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("seeds")
            .join(target)
    }

    /// Every target has seeds, they run clean, and the committed files are
    /// the ones built here.
    #[test]
    fn seeds_are_current_and_clean() {
        let bless = std::env::var_os("KESTREL_FUZZ_BLESS").is_some();
        for (name, target) in crate::TARGETS {
            let seeds = seeds(name);
            assert!(!seeds.is_empty(), "{name} has no seeds");
            for (file, bytes) in &seeds {
                target(bytes);
                let path = dir(name).join(file);
                if bless {
                    std::fs::create_dir_all(dir(name)).unwrap();
                    std::fs::write(&path, bytes).unwrap();
                }
                let on_disk = std::fs::read(&path).unwrap_or_else(|e| {
                    panic!("{}: {e} (KESTREL_FUZZ_BLESS=1 writes it)", path.display())
                });
                assert!(
                    on_disk == *bytes,
                    "{} is stale (KESTREL_FUZZ_BLESS=1 rewrites it)",
                    path.display()
                );
            }
        }
    }

    /// Every input that once crashed a target runs clean now.
    #[test]
    fn regressions_run_clean() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("regressions");
        let mut ran = 0;
        for (name, target) in crate::TARGETS {
            let Ok(files) = std::fs::read_dir(root.join(name)) else {
                continue;
            };
            for f in files {
                let path = f.unwrap().path();
                eprintln!("{name}: {}", path.display());
                target(&std::fs::read(&path).unwrap());
                ran += 1;
            }
        }
        assert!(
            ran > 0,
            "no regression inputs found under {}",
            root.display()
        );
    }
}

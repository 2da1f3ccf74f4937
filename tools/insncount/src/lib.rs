//! `libinsncount.so`, a QEMU TCG plugin (`-plugin
//! target/release/libinsncount.so,out=FILE,lo=A,hi=B`): counts the
//! instructions each vCPU executes, in two classes by the address of the
//! instruction: inside `[lo, hi)` (the hypervisor's code, which runs
//! identity-mapped at its link address; counted one by one) and everything
//! else (guests, firmware, boot loader; counted by translation block). At
//! exit it writes one line per vCPU to `FILE`: `cpu=<i> in=<n> out=<n>`.
//! With `prof=FILE2` also a profile: `<address> <count>` for each address
//! of the range that ran (symbolize with the kernel's symbol table).
//! With `marks=FILE3` also spans: each time a vCPU executes the marker
//! instruction [`MARKER`] (a NOP any guest, kernel or user program can
//! place around the work it wants counted), the plugin takes that vCPU's
//! two counts at that moment, and writes them at exit as
//! `mark=<k> cpu=<i> in=<n> out=<n>` lines in execution order; the
//! difference of two marks is what ran in between, with no boot or
//! shutdown in it and no time a halted CPU spent waiting (a count of
//! instructions, not of `-icount` time, which `sleep=off` warps).
//! With `snaps=FILE4` and one or more `snap=ADDR`: the first time any vCPU
//! executes the instruction at virtual address `ADDR` (e.g. a kernel
//! function's entry, from its symbol table), the plugin takes every vCPU's
//! two counts at that moment, and writes them at exit as
//! `snap=<addr> cpu=<i> in=<n> out=<n>` lines, snapshots in the order
//! taken: for code that cannot carry a marker (an unmodified kernel).
//! Under multi-threaded TCG the other vCPUs run on while the snapshot is
//! read, so their counts are exact to within the block they are in. With
//! both `prof=` and snapshots, the profile counts only from the first
//! `snap=` address's snapshot to the last one's.
//!
//! Why: under `-icount` the TSC is one clock for all vCPUs, so with two
//! CPUs a TSC span counts both CPUs' instructions and the time both halt;
//! this counts each CPU's own instructions. It counts an instruction when
//! it starts (a callback before it, QEMU's `insn_exec` hook), so an
//! instruction that ends in a VM exit (the intercepted `VMMCALL`) counts 1
//! here where `-icount` counts 0. Plugins do not change what the machine
//! does: the run stays as deterministic as without.
//!
//! The API (QEMU 7.2 `include/qemu/qemu-plugin.h`, plugin API version 1) is
//! declared by hand: the functions are resolved in the QEMU binary when it
//! loads the plugin, so nothing links against QEMU at build time.

use std::ffi::{CStr, c_char, c_int, c_uint, c_void};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Plugin API version this plugin is written against (QEMU 7.2's).
#[unsafe(no_mangle)]
pub static qemu_plugin_version: c_int = 1;

/// vCPUs counted; more are counted in the last slot.
const MAX_CPUS: usize = 64;

type PluginId = u64;
#[repr(C)]
struct Tb {
    _opaque: [u8; 0],
}
#[repr(C)]
struct Insn {
    _opaque: [u8; 0],
}
/// `QEMU_PLUGIN_CB_NO_REGS`.
const CB_NO_REGS: c_int = 0;

type TbTransCb = extern "C" fn(PluginId, *mut Tb);
type VcpuUdataCb = extern "C" fn(c_uint, *mut c_void);
type UdataCb = extern "C" fn(PluginId, *mut c_void);

unsafe extern "C" {
    fn qemu_plugin_register_vcpu_tb_trans_cb(id: PluginId, cb: TbTransCb);
    fn qemu_plugin_tb_n_insns(tb: *const Tb) -> usize;
    fn qemu_plugin_tb_get_insn(tb: *const Tb, idx: usize) -> *mut Insn;
    fn qemu_plugin_insn_vaddr(insn: *const Insn) -> u64;
    fn qemu_plugin_insn_data(insn: *const Insn) -> *const c_void;
    fn qemu_plugin_insn_size(insn: *const Insn) -> usize;
    fn qemu_plugin_register_vcpu_insn_exec_cb(
        insn: *mut Insn,
        cb: VcpuUdataCb,
        flags: c_int,
        udata: *mut c_void,
    );
    fn qemu_plugin_register_vcpu_tb_exec_cb(
        tb: *mut Tb,
        cb: VcpuUdataCb,
        flags: c_int,
        udata: *mut c_void,
    );
    fn qemu_plugin_register_atexit_cb(id: PluginId, cb: UdataCb, udata: *mut c_void);
}

/// With `prof=FILE`: instructions executed at each address of the range
/// (all CPUs), written at exit as `<address> <count>` lines: a profile.
static PROFILE: Mutex<Vec<u64>> = Mutex::new(Vec::new());

/// Whether the profile counts now: always, or with snapshots only from
/// the first address's snapshot to the last's (`snap=` order).
static PROFILE_ON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

extern "C" fn count_inside_at(vcpu: c_uint, offset: *mut c_void) {
    INSIDE[slot(vcpu)].fetch_add(1, Ordering::Relaxed);
    if !PROFILE_ON.load(Ordering::Relaxed) {
        return;
    }
    // Callbacks of one run come from QEMU's one TCG thread (`-icount`
    // runs the vCPUs in turn), so the lock is never contended.
    if let Ok(mut p) = PROFILE.lock()
        && let Some(c) = p.get_mut(offset as usize)
    {
        *c += 1;
    }
}

static INSIDE: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static OUTSIDE: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

static PROFILING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// With `marks=FILE`: whether to look for [`MARKER`].
static MARKING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The marker: `nopl 0x4b4d524b(%rax)` (`0f 1f 80` + disp32 "KRMK"), a
/// multi-byte NOP (Intel SDM Vol. 2B, NOP: `0F 1F /0`) that does nothing
/// in any mode or privilege level, and whose displacement no compiler
/// emits for padding (its NOPs have small or zero displacements).
pub const MARKER: [u8; 7] = [0x0f, 0x1f, 0x80, 0x4b, 0x52, 0x4d, 0x4b];

/// `(vcpu, in, out)` at each marker executed, in order.
static MARKS: Mutex<Vec<(usize, u64, u64)>> = Mutex::new(Vec::new());

/// The marker ran on `vcpu`: takes its counts (the marker itself was
/// counted by the callback registered before this one).
extern "C" fn mark(vcpu: c_uint, _: *mut c_void) {
    let c = slot(vcpu);
    let (i, o) = (
        INSIDE[c].load(Ordering::Relaxed),
        OUTSIDE[c].load(Ordering::Relaxed),
    );
    if let Ok(mut m) = MARKS.lock() {
        m.push((c, i, o));
    }
}

/// Whether `insn` is [`MARKER`].
fn is_marker(insn: *const Insn) -> bool {
    // SAFETY: `insn` was just returned by QEMU for the block being
    // translated; its data is `size` bytes valid for this call.
    unsafe {
        let n = qemu_plugin_insn_size(insn);
        let p = qemu_plugin_insn_data(insn) as *const u8;
        n == MARKER.len() && !p.is_null() && std::slice::from_raw_parts(p, n) == MARKER
    }
}

/// Snapshot addresses at most.
const MAX_SNAPS: usize = 8;
/// `snap=` addresses, copied out of [`CONFIG`] for the translation hook.
static SNAP_ADDRS: [AtomicU64; MAX_SNAPS] = [const { AtomicU64::new(0) }; MAX_SNAPS];
/// How many of [`SNAP_ADDRS`] are set.
static SNAP_N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
/// Whether each snapshot has been taken (only the first execution counts).
static SNAP_TAKEN: [std::sync::atomic::AtomicBool; MAX_SNAPS] =
    [const { std::sync::atomic::AtomicBool::new(false) }; MAX_SNAPS];
/// `(snapshot index, every slot's (in, out))`, in the order taken.
type Snapshot = (usize, Vec<(u64, u64)>);
static SNAPS: Mutex<Vec<Snapshot>> = Mutex::new(Vec::new());

/// Which snapshot address `pc` is, if any.
fn snap_index(pc: u64) -> Option<usize> {
    let n = SNAP_N.load(Ordering::Relaxed);
    (0..n).find(|&k| SNAP_ADDRS[k].load(Ordering::Relaxed) == pc)
}

/// A snapshot address ran: the first time, takes every vCPU's counts (the
/// instruction itself was counted by the callback registered before).
extern "C" fn snap(_vcpu: c_uint, k: *mut c_void) {
    let k = k as usize;
    if k >= MAX_SNAPS || SNAP_TAKEN[k].swap(true, Ordering::AcqRel) {
        return;
    }
    let counts = (0..MAX_CPUS)
        .map(|c| {
            (
                INSIDE[c].load(Ordering::Relaxed),
                OUTSIDE[c].load(Ordering::Relaxed),
            )
        })
        .collect();
    if let Ok(mut s) = SNAPS.lock() {
        s.push((k, counts));
    }
    // The profile's window (see `PROFILE_ON`).
    if k == 0 {
        PROFILE_ON.store(true, Ordering::Relaxed);
    }
    if k + 1 == SNAP_N.load(Ordering::Relaxed) && k != 0 {
        PROFILE_ON.store(false, Ordering::Relaxed);
    }
}

struct Config {
    prof: String,
    marks: String,
    snaps: String,
    snap_at: Vec<u64>,
    out: String,
    lo: u64,
    hi: u64,
}
static CONFIG: Mutex<Option<Config>> = Mutex::new(None);
/// `[lo, hi)`, copied out of [`CONFIG`] for the translation hook.
static RANGE: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

fn slot(vcpu: c_uint) -> usize {
    (vcpu as usize).min(MAX_CPUS - 1)
}

extern "C" fn count_inside(vcpu: c_uint, _: *mut c_void) {
    INSIDE[slot(vcpu)].fetch_add(1, Ordering::Relaxed);
}

/// A whole block outside the range: its instruction count is the user
/// data (cheaper than a call per instruction; a block left early by an
/// exception is counted whole, so `out` is an upper bound).
extern "C" fn count_block_outside(vcpu: c_uint, n: *mut c_void) {
    OUTSIDE[slot(vcpu)].fetch_add(n as u64, Ordering::Relaxed);
}

extern "C" fn translated(_id: PluginId, tb: *mut Tb) {
    let (lo, hi) = (
        RANGE[0].load(Ordering::Relaxed),
        RANGE[1].load(Ordering::Relaxed),
    );
    // SAFETY: `tb` is the block QEMU is translating, valid for this call.
    let n = unsafe { qemu_plugin_tb_n_insns(tb) };
    let inside = |i| {
        // SAFETY: `i` is below the block's instruction count.
        let insn = unsafe { qemu_plugin_tb_get_insn(tb, i) };
        // SAFETY: `insn` was just returned by QEMU for this block.
        (lo..hi).contains(&unsafe { qemu_plugin_insn_vaddr(insn) })
    };
    let marking = MARKING.load(Ordering::Relaxed);
    let marker_at = |i| {
        // SAFETY: `i` is below the block's instruction count.
        let insn = unsafe { qemu_plugin_tb_get_insn(tb, i) };
        // SAFETY: `insn` was just returned by QEMU for this block.
        (marking && is_marker(insn))
            || snap_index(unsafe { qemu_plugin_insn_vaddr(insn) }).is_some()
    };
    // A block with a marker or a snapshot address is counted one
    // instruction at a time, so the mark sees exactly the instructions
    // before it.
    if !(0..n).any(|i| inside(i) || marker_at(i)) {
        // SAFETY: as above; the callback is a plain function that outlives
        // QEMU's use of it and takes the count as its user data.
        unsafe {
            qemu_plugin_register_vcpu_tb_exec_cb(
                tb,
                count_block_outside,
                CB_NO_REGS,
                n as *mut c_void,
            )
        };
        return;
    }
    for i in 0..n {
        // SAFETY: `i` is below the block's instruction count.
        let insn = unsafe { qemu_plugin_tb_get_insn(tb, i) };
        // SAFETY: `insn` was just returned by QEMU for this block.
        let pc = unsafe { qemu_plugin_insn_vaddr(insn) };
        let profiling = PROFILING.load(Ordering::Relaxed);
        let (cb, data): (VcpuUdataCb, usize) = if (lo..hi).contains(&pc) {
            if profiling {
                (count_inside_at, (pc - lo) as usize)
            } else {
                (count_inside, 0)
            }
        } else {
            (count_block_outside, 1)
        };
        // SAFETY: as above; the callback is a plain function that outlives
        // QEMU's use of it.
        unsafe {
            qemu_plugin_register_vcpu_insn_exec_cb(insn, cb, CB_NO_REGS, data as *mut c_void)
        };
        if marking && is_marker(insn) {
            // SAFETY: as above; registered after the count, so it runs
            // after it (QEMU calls an instruction's callbacks in order).
            unsafe {
                qemu_plugin_register_vcpu_insn_exec_cb(
                    insn,
                    mark,
                    CB_NO_REGS,
                    core::ptr::null_mut(),
                )
            };
        }
        if let Some(k) = snap_index(pc) {
            // SAFETY: as above; after the count, as for the marker.
            unsafe {
                qemu_plugin_register_vcpu_insn_exec_cb(insn, snap, CB_NO_REGS, k as *mut c_void)
            };
        }
    }
}

extern "C" fn at_exit(_id: PluginId, _: *mut c_void) {
    let Ok(cfg) = CONFIG.lock() else { return };
    let Some(cfg) = cfg.as_ref() else { return };
    let mut s = String::new();
    for cpu in 0..MAX_CPUS {
        let (i, o) = (
            INSIDE[cpu].load(Ordering::Relaxed),
            OUTSIDE[cpu].load(Ordering::Relaxed),
        );
        if i + o != 0 {
            // Ignoring write! results: writing to a String cannot fail.
            let _ = writeln!(s, "cpu={cpu} in={i} out={o}");
        }
    }
    if let Err(e) = std::fs::write(&cfg.out, s) {
        eprintln!("insncount: writing {}: {e}", cfg.out);
    }
    if !cfg.marks.is_empty()
        && let Ok(m) = MARKS.lock()
    {
        let mut s = String::new();
        for (k, (cpu, i, o)) in m.iter().enumerate() {
            let _ = writeln!(s, "mark={k} cpu={cpu} in={i} out={o}");
        }
        if let Err(e) = std::fs::write(&cfg.marks, s) {
            eprintln!("insncount: writing {}: {e}", cfg.marks);
        }
    }
    if !cfg.snaps.is_empty()
        && let Ok(taken) = SNAPS.lock()
    {
        let mut s = String::new();
        for (k, counts) in taken.iter() {
            let addr = cfg.snap_at.get(*k).copied().unwrap_or(0);
            for (cpu, &(i, o)) in counts.iter().enumerate() {
                // The vCPUs that ran at all by the end, so every
                // snapshot lists the same ones.
                let ran =
                    INSIDE[cpu].load(Ordering::Relaxed) + OUTSIDE[cpu].load(Ordering::Relaxed);
                if ran != 0 {
                    let _ = writeln!(s, "snap={addr:#x} cpu={cpu} in={i} out={o}");
                }
            }
        }
        if let Err(e) = std::fs::write(&cfg.snaps, s) {
            eprintln!("insncount: writing {}: {e}", cfg.snaps);
        }
    }
    if cfg.prof.is_empty() {
        return;
    }
    let Ok(p) = PROFILE.lock() else { return };
    let mut s = String::new();
    for (off, &n) in p.iter().enumerate() {
        if n != 0 {
            let _ = writeln!(s, "{:#x} {n}", cfg.lo + off as u64);
        }
    }
    if let Err(e) = std::fs::write(&cfg.prof, s) {
        eprintln!("insncount: writing {}: {e}", cfg.prof);
    }
}

fn number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Reads `out=`, `lo=` and `hi=` from the plugin's arguments.
fn parse(args: &[&str]) -> Result<Config, String> {
    let mut cfg = Config {
        prof: String::new(),
        marks: String::new(),
        snaps: String::new(),
        snap_at: Vec::new(),
        out: String::new(),
        lo: 0,
        hi: 0,
    };
    for a in args {
        match a.split_once('=') {
            Some(("out", v)) => cfg.out = v.to_string(),
            Some(("prof", v)) => cfg.prof = v.to_string(),
            Some(("marks", v)) => cfg.marks = v.to_string(),
            Some(("snaps", v)) => cfg.snaps = v.to_string(),
            Some(("snap", v)) => {
                cfg.snap_at
                    .push(number(v).ok_or(format!("bad address in {a}"))?);
            }
            Some(("lo", v)) => cfg.lo = number(v).ok_or(format!("bad lo in {a}"))?,
            Some(("hi", v)) => cfg.hi = number(v).ok_or(format!("bad hi in {a}"))?,
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    if cfg.out.is_empty() || cfg.lo >= cfg.hi {
        return Err("needs out=FILE and lo=A,hi=B with A < B".into());
    }
    if cfg.snap_at.len() > MAX_SNAPS || cfg.snap_at.is_empty() != cfg.snaps.is_empty() {
        return Err(format!(
            "snap=ADDR (at most {MAX_SNAPS}) and snaps=FILE go together"
        ));
    }
    Ok(cfg)
}

/// Called by QEMU when it loads the plugin.
///
/// # Safety
///
/// QEMU passes `argc` valid NUL-terminated strings in `argv`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qemu_plugin_install(
    id: PluginId,
    _info: *const c_void,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    let mut args = Vec::new();
    for i in 0..usize::try_from(argc).unwrap_or(0) {
        // SAFETY: QEMU's contract, above: `argv[i]` for `i < argc` is a
        // valid C string that lives while the plugin is loaded.
        let s = unsafe { CStr::from_ptr(*argv.add(i)) };
        args.push(s.to_str().unwrap_or(""));
    }
    let cfg = match parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("insncount: {e}");
            return -1;
        }
    };
    if !cfg.prof.is_empty() {
        if let Ok(mut p) = PROFILE.lock() {
            *p = vec![0; (cfg.hi - cfg.lo) as usize];
        }
        PROFILING.store(true, Ordering::Relaxed);
    }
    MARKING.store(!cfg.marks.is_empty(), Ordering::Relaxed);
    for (k, &a) in cfg.snap_at.iter().enumerate() {
        SNAP_ADDRS[k].store(a, Ordering::Relaxed);
    }
    SNAP_N.store(cfg.snap_at.len(), Ordering::Release);
    PROFILE_ON.store(cfg.snap_at.is_empty(), Ordering::Relaxed);
    RANGE[0].store(cfg.lo, Ordering::Relaxed);
    RANGE[1].store(cfg.hi, Ordering::Relaxed);
    if let Ok(mut c) = CONFIG.lock() {
        *c = Some(cfg);
    }
    // SAFETY: plain functions registered for the plugin QEMU loads as `id`.
    unsafe {
        qemu_plugin_register_vcpu_tb_trans_cb(id, translated);
        qemu_plugin_register_atexit_cb(id, at_exit, core::ptr::null_mut());
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        let c = parse(&["out=/x", "lo=0x100000", "hi=2097152"]);
        assert!(matches!(
            c,
            Ok(Config {
                lo: 0x100000,
                hi: 0x200000,
                ..
            })
        ));
        assert!(parse(&["out=/x", "lo=5", "hi=5"]).is_err());
        assert!(parse(&["lo=1", "hi=5"]).is_err());
        assert!(parse(&["out=/x", "lo=1", "hi=5", "mode=x"]).is_err());
        let c = parse(&["out=/x", "lo=1", "hi=5", "marks=/m"]);
        assert_eq!(c.map(|c| c.marks).ok().as_deref(), Some("/m"));
        let c = parse(&[
            "out=/x",
            "lo=1",
            "hi=5",
            "snaps=/s",
            "snap=0xffffffff81000000",
            "snap=16",
        ]);
        assert_eq!(
            c.map(|c| (c.snaps, c.snap_at)).ok(),
            Some(("/s".to_string(), vec![0xffff_ffff_8100_0000, 16]))
        );
        assert!(
            parse(&["out=/x", "lo=1", "hi=5", "snap=16"]).is_err(),
            "no file"
        );
        assert!(
            parse(&["out=/x", "lo=1", "hi=5", "snaps=/s"]).is_err(),
            "no address"
        );
        assert!(parse(&["out=/x", "lo=1", "hi=5", "snaps=/s", "snap=zz"]).is_err());
    }
}

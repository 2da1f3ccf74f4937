//! Checks that every piece of CPU state this guest can write and read back
//! is its own (issue 12): it plants values derived from `seed=` in each
//! class, yields `yields=` times per round for `rounds=` rounds, and reads
//! every class back after each round. Several copies with different seeds
//! on one CPU (or on several) must each find exactly their own values.
//!
//! Classes (each only where CPUID offers it; the `features` line says which
//! ran): general-purpose registers (all but RAX and RSP, checked across each
//! single yield), x87 (control word and ST0), MXCSR, XMM0-15, the upper
//! halves of YMM0-15 (AVX, enabled through XSETBV), ZMM0-31 and k0-k7
//! (AVX-512), PKRU (PKU), CR2, CR8,
//! FS/GS base and the kernel GS base behind SWAPGS (FSGSBASE).
//!
//! `mode=reader` never writes XMM, YMM or x87 state: it checks after each
//! round that they still hold the architectural initial state (zeros,
//! FCW 0x37F, MXCSR 0x1F80), so another domain's values cannot show up.
//!
//! Where XSAVE is offered it also checks that XSETBV refuses what SDM Vol. 1
//! 13.3 forbids with #GP (caught by a small IDT) and that CPUID leaf 0xD
//! agrees with what XSETBV accepts.
//!
//! Prints `statecheck: features ...`, `statecheck: <class> ok` (or FAILED
//! with the first mismatch), `statecheck: <N> checks, <M> failed`; exits M.
#![no_std]
#![no_main]

use core::arch::x86_64::{__cpuid, __cpuid_count};
use core::sync::atomic::{AtomicU64, Ordering};

use kestrel_guests::{Checks, arg, num_arg};

mod gp;
mod regs;

pvabi::entry_point!(main);

static CHECKS: Checks = Checks::new("statecheck");

/// What CPUID offers (and this guest turned on).
#[derive(Default, Clone, Copy)]
struct Features {
    xsave: bool,
    avx: bool,
    avx512: bool,
    pku: bool,
    fsgsbase: bool,
    /// XCR0 bits CPUID leaf 0xD says XSETBV accepts.
    xcr0_ok: u64,
}

/// A well-mixed 64-bit value for (seed, round, index): splitmix64.
fn val(seed: u64, round: u64, i: u64) -> u64 {
    let mut z = seed
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(round.wrapping_mul(0xbf58_476d_1ce4_e5b9))
        .wrapping_add(i.wrapping_mul(0x94d0_49bb_1331_11eb))
        .wrapping_add(1);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One failure counter per class, and whether its first mismatch was told.
struct Tally {
    name: &'static str,
    bad: AtomicU64,
}

impl Tally {
    const fn new(name: &'static str) -> Self {
        Self {
            name,
            bad: AtomicU64::new(0),
        }
    }
    fn expect(&self, what: &str, round: u64, got: u64, want: u64) {
        if got != want && self.bad.fetch_add(1, Ordering::Relaxed) == 0 {
            pvabi::println!(
                "statecheck: {} {what} round {round}: got {got:#x} want {want:#x}",
                self.name
            );
        }
    }
    fn report(&self) {
        CHECKS.check(self.name, self.bad.load(Ordering::Relaxed) as i64, 0);
    }
}

static GPR: Tally = Tally::new("gpr");
static X87: Tally = Tally::new("x87");
static MXCSR: Tally = Tally::new("mxcsr");
static XMM: Tally = Tally::new("xmm");
static YMM: Tally = Tally::new("ymm");
static ZMM: Tally = Tally::new("avx512");
static PKRU: Tally = Tally::new("pkru");
static CR2: Tally = Tally::new("cr2");
static CR8: Tally = Tally::new("cr8");
static SEG: Tally = Tally::new("segbase");

fn features() -> Features {
    let l1 = __cpuid(1);
    let l7 = __cpuid_count(7, 0);
    let mut f = Features {
        xsave: l1.ecx & (1 << 26) != 0,
        fsgsbase: l7.ebx & 1 != 0,
        ..Features::default()
    };
    if f.xsave {
        let d = __cpuid_count(0xd, 0);
        f.xcr0_ok = u64::from(d.eax) | (u64::from(d.edx) << 32);
        f.avx = l1.ecx & (1 << 28) != 0 && f.xcr0_ok & 0b110 == 0b110;
        f.pku = l7.ecx & (1 << 3) != 0 && f.xcr0_ok & (1 << 9) != 0;
        f.avx512 = f.avx && l7.ebx & (1 << 16) != 0 && f.xcr0_ok & 0xe0 == 0xe0;
    }
    f
}

fn main(si: &pvabi::StartInfo) -> i32 {
    let seed = num_arg(si, "seed", 1);
    let rounds = num_arg(si, "rounds", 200);
    let yields = num_arg(si, "yields", 10).max(1);
    let reader = arg(si, "mode") == Some("reader");
    gp::install();
    regs::set_vmmcall(si.hypercall_insn == pvabi::HYPERCALL_VMMCALL);
    let f = features();
    // CR4: FSGSBASE 16, OSXSAVE 18, PKE 22 (SDM Vol. 3A 2.5).
    let mut cr4 = regs::cr4();
    if f.fsgsbase {
        cr4 |= 1 << 16;
    }
    if f.xsave {
        cr4 |= 1 << 18;
    }
    if f.pku {
        cr4 |= 1 << 22;
    }
    regs::set_cr4(cr4);
    if f.xsave {
        xsetbv_checks(&f);
    }
    pvabi::println!(
        "statecheck: features xsave={} avx={} avx512={} pku={} fsgsbase={} xcr0={:#x} mode={}",
        u8::from(f.xsave),
        u8::from(f.avx),
        u8::from(f.avx512),
        u8::from(f.pku),
        u8::from(f.fsgsbase),
        if f.xsave { regs::xgetbv(0) } else { 1 },
        if reader { "reader" } else { "planter" }
    );
    for r in 0..rounds {
        round(seed, r, yields, reader, &f);
    }
    for t in [&GPR, &X87, &MXCSR, &XMM, &CR2, &CR8] {
        t.report();
    }
    if f.avx {
        YMM.report();
    }
    if f.avx512 {
        ZMM.report();
    }
    if f.pku {
        PKRU.report();
    }
    if f.fsgsbase {
        SEG.report();
    }
    let (n, failed) = CHECKS.counts();
    pvabi::println!("statecheck: {n} checks, {failed} failed");
    failed as i32
}

/// XSETBV: what SDM Vol. 1 13.3 forbids raises #GP and changes nothing;
/// every combination CPUID offers is accepted. Leaves XCR0 at all the
/// user state CPUID offers (x87, SSE, AVX, AVX-512, PKRU).
fn xsetbv_checks(f: &Features) {
    let ok = f.xcr0_ok;
    let want = ok & (0b111 | (0b111 << 5) | (1 << 9));
    CHECKS.check("xcr0 x87 offered", (ok & 1) as i64, 1);
    CHECKS.check("xsetbv x87", gp::xsetbv(0, 1) as i64, 0);
    CHECKS.check("xsetbv without x87 #GP", gp::xsetbv(0, 0b10) as i64, 1);
    CHECKS.check("xsetbv zero #GP", gp::xsetbv(0, 0) as i64, 1);
    CHECKS.check("xsetbv ecx=1 #GP", gp::xsetbv(1, 1) as i64, 1);
    CHECKS.check("xsetbv bit 63 #GP", gp::xsetbv(0, 1 | (1 << 63)) as i64, 1);
    // A bit CPUID does not offer (bit 8 is reserved in XCR0 for
    // supervisor state, never valid there).
    CHECKS.check("xsetbv bit 8 #GP", gp::xsetbv(0, 0b11 | (1 << 8)) as i64, 1);
    if ok & 0b100 != 0 {
        CHECKS.check("xsetbv avx without sse #GP", gp::xsetbv(0, 0b101) as i64, 1);
    }
    if ok & (0b111 << 5) == (0b111 << 5) {
        CHECKS.check(
            "xsetbv avx512 partial #GP",
            gp::xsetbv(0, 0b111 | (1 << 5)) as i64,
            1,
        );
    }
    CHECKS.check("xcr0 kept after #GP", regs::xgetbv(0) as i64, 1);
    CHECKS.check("xsetbv all offered", gp::xsetbv(0, want) as i64, 0);
    CHECKS.check("xcr0 read back", regs::xgetbv(0) as i64, want as i64);
    // CPUID.(0xD,0).EBX is the area size for the XCR0 now set: at least the
    // legacy area and header, and at least AVX's end when AVX is on.
    let ebx = u64::from(__cpuid_count(0xd, 0).ebx);
    let min = if want & 0b100 != 0 { 576 + 256 } else { 576 };
    CHECKS.check("cpuid 0xd size", i64::from(ebx >= min), 1);
}

/// One round: plant every class, yield, read every class back.
fn round(seed: u64, r: u64, yields: u64, reader: bool, f: &Features) {
    let v = |i| val(seed, r, i);
    let mut vec = [[0u64; 4]; 16];
    let cw = 0x037f ^ (((v(0) % 3) + 1) << 10);
    let mxcsr = 0x1f80 | (((v(1) % 3) + 1) << 13);
    let st0 = v(2) >> 2;
    if !reader {
        for (i, lane) in vec.iter_mut().enumerate() {
            for (j, w) in lane.iter_mut().enumerate() {
                *w = v(16 + (i as u64) * 4 + j as u64);
            }
            if !f.avx {
                lane[2] = 0;
                lane[3] = 0;
            }
        }
        regs::x87_plant(cw as u16, st0);
        regs::set_mxcsr(mxcsr as u32);
        if f.avx {
            regs::ymm_plant(&vec);
        } else {
            regs::xmm_plant(&vec);
        }
    }
    // AVX-512: ZMM0-31 (upper 256 bits of 0-15, all of 16-31) and k0-k7;
    // the reader expects zeros there too.
    let mut zmm = [[0u64; 8]; 32];
    let mut kregs = [0u64; 8];
    if f.avx512 && !reader {
        for (i, z) in zmm.iter_mut().enumerate() {
            for (j, w) in z.iter_mut().enumerate() {
                *w = if i < 16 && j < 4 {
                    vec[i][j]
                } else {
                    v(200 + (i as u64) * 8 + j as u64)
                };
            }
        }
        for (i, k) in kregs.iter_mut().enumerate() {
            *k = v(500 + i as u64);
        }
        regs::zmm_plant(&zmm);
        regs::k_plant(&kregs);
    }
    let pkru = (v(3) as u32) & !0b11; // keep access to key 0's pages
    if f.pku {
        regs::wrpkru(pkru);
    }
    let cr2 = v(4);
    regs::set_cr2(cr2);
    let cr8 = 1 + v(5) % 14;
    regs::set_cr8(cr8);
    // Canonical addresses for the segment bases.
    let canon = |x: u64| x & 0x0000_7fff_ffff_f000;
    let (fs, gs, kgs) = (canon(v(6)), canon(v(7)), canon(v(8)));
    if f.fsgsbase {
        regs::set_bases(fs, gs, kgs);
    }
    for y in 0..yields {
        let (got, want) = regs::gpr_yield(val(seed, r, 100 + y));
        for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
            GPR.expect(regs::GPR_NAMES[i], r, *g, *w);
        }
    }
    // Read back.
    let (ecw, est0, emx) = if reader {
        (0x037f, None, 0x1f80)
    } else {
        (cw, Some(st0), mxcsr)
    };
    let (gcw, gst0) = regs::x87_read(est0.is_some());
    X87.expect("fcw", r, u64::from(gcw), ecw);
    if let Some(s) = est0 {
        X87.expect("st0", r, gst0, s);
    }
    MXCSR.expect("mxcsr", r, u64::from(regs::mxcsr()), emx);
    let got = if f.avx {
        regs::ymm_read()
    } else {
        regs::xmm_read()
    };
    for i in 0..16 {
        for j in 0..4 {
            let t = if j < 2 { &XMM } else { &YMM };
            t.expect(regs::VEC_NAMES[i], r, got[i][j], vec[i][j]);
        }
    }
    if f.avx512 {
        let got = regs::zmm_read();
        for i in 0..32 {
            for j in 0..8 {
                ZMM.expect("zmm", r, got[i][j], zmm[i][j]);
            }
        }
        for (i, (g, w)) in regs::k_read().iter().zip(kregs.iter()).enumerate() {
            ZMM.expect(
                ["k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7"][i],
                r,
                *g,
                *w,
            );
        }
    }
    if f.pku {
        PKRU.expect("pkru", r, u64::from(regs::rdpkru()), u64::from(pkru));
    }
    CR2.expect("cr2", r, regs::cr2(), cr2);
    CR8.expect("cr8", r, regs::cr8(), cr8);
    if f.fsgsbase {
        let (gfs, ggs, gkgs) = regs::bases();
        SEG.expect("fs", r, gfs, fs);
        SEG.expect("gs", r, ggs, gs);
        SEG.expect("kernel gs", r, gkgs, kgs);
    }
}

//! Each vCPU's own x87/MMX/SSE/AVX/AVX-512/PKRU state and XCR0 (issue 12).
//!
//! Eager switching, as KVM and Xen do today: a vCPU's state is loaded when
//! it is switched in (`VcpuBackend::enter`) and saved when it is switched
//! out (`put`), with XSAVE/XSAVEOPT and XRSTOR under the host's XCR0 (every
//! component guests may use), FXSAVE where XSAVE is absent. No #NM games:
//! the hypervisor itself never uses these registers (soft-float target),
//! so between the two the registers simply are the guest's.
//!
//! XCR0: XSETBV always exits (VT-x: unconditionally, SDM Vol. 3C 26.1.3;
//! AMD-V: the XSETBV intercept, APM Vol. 2 15.9), [`validate_xcr0`] checks
//! the value per SDM Vol. 1 13.3 against what guests are allowed
//! ([`allowed_xcr0`]) and a refused one injects #GP. The guest's XCR0 is
//! loaded for the whole slice (from its `enter` to its `put`, as Xen
//! does): so the hardware's CPUID.(0xD,0).EBX is the guest's own size, and
//! the host XCR0 is back before any other vCPU's state is touched.
//!
//! CPUID (`filter_xsave_leaves`, [`os_bits`]): XSAVE is offered where the
//! host has it; leaf 0xD shows only the allowed components (no XSAVES or
//! supervisor components: IA32_XSS is not virtualized); OSXSAVE and OSPKE
//! reflect the guest's own CR4; PKU only when PKRU is switched.
#![forbid(unsafe_code)]

/// x87 (0), SSE (1), AVX (2), AVX-512 opmask/ZMM_Hi256/Hi16_ZMM (5-7),
/// PKRU (9): the user components Kestrel switches and lets guests enable.
/// Left out: MPX (3-4, needs IA32_BNDCFGS; withdrawn by Intel), AMX (17-18,
/// needs XFD), and every supervisor component (IA32_XSS).
pub const KNOWN_XCR0: u64 = 0b111 | (0b111 << 5) | (1 << 9);
const X87: u64 = 1;
const SSE: u64 = 1 << 1;
const AVX: u64 = 1 << 2;
const AVX512: u64 = 0b111 << 5;
const PKRU: u64 = 1 << 9;

/// The XCR0 bits guests may set on this host: what CPUID.(0xD,0) EDX:EAX
/// enumerates, of [`KNOWN_XCR0`]; 0 without XSAVE (CPUID.1:ECX[26]).
pub fn allowed_xcr0(cpuid: impl Fn(u32, u32) -> [u32; 4]) -> u64 {
    if cpuid(1, 0)[2] & (1 << 26) == 0 {
        return 0;
    }
    let [a, _, _, d] = cpuid(0xd, 0);
    let mut ok = (u64::from(a) | (u64::from(d) << 32)) & KNOWN_XCR0;
    // A component is usable only with those it builds on (13.3).
    if ok & X87 == 0 || ok & SSE == 0 {
        ok &= X87 | SSE | PKRU;
    }
    if ok & AVX == 0 || ok & AVX512 != AVX512 {
        ok &= !AVX512;
    }
    ok
}

/// Why XSETBV was refused (each injects #GP, as the CPU would).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XcrError {
    /// ECX named an XCR other than XCR0 (XCR1 is read-only).
    NotXcr0,
    /// A bit that is reserved or not offered to guests.
    Unsupported,
    /// Bit 0 (x87) clear.
    NoX87,
    /// AVX without SSE.
    AvxWithoutSse,
    /// Bits 7:5 (AVX-512) neither all set nor all clear, or set without AVX.
    Avx512Partial,
}

/// Whether XSETBV may load `value` into XCR `xcr` for a guest allowed
/// `allowed` (SDM Vol. 2D XSETBV and Vol. 1 13.3).
pub fn validate_xcr0(xcr: u32, value: u64, allowed: u64) -> Result<(), XcrError> {
    if xcr != 0 {
        return Err(XcrError::NotXcr0);
    }
    if value & !allowed != 0 {
        return Err(XcrError::Unsupported);
    }
    if value & X87 == 0 {
        return Err(XcrError::NoX87);
    }
    if value & AVX != 0 && value & SSE == 0 {
        return Err(XcrError::AvxWithoutSse);
    }
    let z = value & AVX512;
    if z != 0 && (z != AVX512 || value & (SSE | AVX) != SSE | AVX) {
        return Err(XcrError::Avx512Partial);
    }
    Ok(())
}

/// The XSAVE parts of CPUID leaves 1, 7 and 0xD as a guest sees them, given
/// the host's answer `out` and the host's `cpuid` (for component sizes).
/// Leaves other than these pass through unchanged.
pub fn filter_xsave_leaves(
    leaf: u32,
    subleaf: u32,
    out: [u32; 4],
    cpuid: impl Fn(u32, u32) -> [u32; 4],
) -> [u32; 4] {
    let allowed = allowed_xcr0(&cpuid);
    let [a, b, c, d] = out;
    match leaf {
        1 => {
            // XSAVE 26 as the host; OSXSAVE 27 is set from the guest's CR4
            // (`os_bits`); AVX 28, FMA 12 and F16C 29 need the AVX state.
            let mut c = c & !(1 << 27);
            if allowed == 0 {
                c &= !(1 << 26);
            }
            if allowed & AVX == 0 {
                c &= !((1 << 28) | (1 << 12) | (1 << 29));
            }
            [a, b, c, d]
        }
        7 if subleaf == 0 => {
            // ECX: PKU 3 only with PKRU switched; OSPKE 4 from the guest's
            // CR4 (`os_bits`). EBX: AVX2 5 needs AVX; the AVX-512 family
            // (16, 17, 21, 26-28, 30, 31; ECX 1, 6, 11, 12, 14) needs its
            // state.
            // MPX (EBX 14) never: its state is not switched.
            let mut c = c & !(1 << 4);
            let mut b = b & !(1 << 14);
            if allowed & PKRU == 0 {
                c &= !(1 << 3);
            }
            if allowed & AVX == 0 {
                b &= !(1 << 5);
            }
            if allowed & AVX512 == 0 {
                b &= !((1 << 16) | (1 << 17) | (1 << 21) | (0b111 << 26) | (0b11 << 30));
                c &= !((1 << 1) | (1 << 6) | (0b11 << 11) | (1 << 14));
            }
            [a, b, c, d]
        }
        0xd => match subleaf {
            _ if allowed == 0 => [0; 4],
            0 => {
                // EAX/EDX: the allowed components; EBX: the size for the
                // XCR0 loaded now, which is the guest's (its slice); ECX:
                // the size for every allowed component.
                let mut max = 576u32;
                for i in 2..32 {
                    if allowed & (1 << i) != 0 {
                        let [size, off, _, _] = cpuid(0xd, i);
                        max = max.max(off.saturating_add(size));
                    }
                }
                [allowed as u32, b, max, (allowed >> 32) as u32]
            }
            // XSAVEOPT 0, XSAVEC 1, XGETBV with ECX=1 2 kept; XSAVES 3
            // and XFD 4 hidden (they need IA32_XSS / IA32_XFD); no
            // supervisor components (ECX/EDX).
            1 => [a & 0b111, b, 0, 0],
            i if i < 64 && allowed & (1 << i) != 0 => out,
            _ => [0; 4],
        },
        _ => out,
    }
}

/// CPUID's "OS has enabled it" bits from the guest's own CR4, as a real
/// CPU reports them: CPUID.1:ECX.OSXSAVE[27] = CR4.OSXSAVE[18],
/// CPUID.7.0:ECX.OSPKE[4] = CR4.PKE[22] (when XSAVE / PKU are offered).
pub fn os_bits(leaf: u32, subleaf: u32, out: [u32; 4], guest_cr4: u64) -> [u32; 4] {
    let [a, b, c, d] = out;
    match leaf {
        1 if c & (1 << 26) != 0 && guest_cr4 & (1 << 18) != 0 => [a, b, c | (1 << 27), d],
        7 if subleaf == 0 && c & (1 << 3) != 0 && guest_cr4 & (1 << 22) != 0 => {
            [a, b, c | (1 << 4), d]
        }
        _ => out,
    }
}

/// Set once a guest's XCR0 changed without an XSETBV exit (logged once).
#[cfg(target_os = "none")]
static XSETBV_UNTRAPPED: core::sync::atomic::AtomicBool =
    core::sync::atomic::AtomicBool::new(false);

/// A vCPU's XSAVE-managed state and XCR0 (bare metal).
#[cfg(target_os = "none")]
pub struct GuestXState {
    area: crate::arch::xsave::XArea,
    /// The guest's XCR0 (1 at reset, SDM Vol. 1 13.3).
    xcr0: u64,
}

#[cfg(target_os = "none")]
impl GuestXState {
    /// The initial state, in an area from the heap; `None` when the heap
    /// cannot supply it (the caller fails the vCPU's creation: ENOMEM).
    pub fn new() -> Option<Self> {
        Some(Self {
            area: crate::arch::xsave::XArea::new()?,
            xcr0: 1,
        })
    }

    /// Switch-in: the vCPU's registers, then its XCR0.
    pub fn load(&mut self) {
        self.area.restore();
        let host = crate::arch::xsave::host_xcr0();
        if crate::arch::xsave::xsave_enabled() && self.xcr0 != host {
            crate::arch::xsave::xsetbv(self.xcr0);
        }
    }

    /// Switch-out: the host's XCR0 back, then the registers saved.
    ///
    /// The XCR0 the guest ran with is read back first: where XSETBV did
    /// not exit (QEMU 7.2's TCG does not implement the AMD-V XSETBV
    /// intercept; real CPUs do), the guest's own XSETBV changed it, and
    /// keeping it (when [`validate_xcr0`] would have accepted it) keeps it
    /// the vCPU's own. A value it would have refused is dropped: the last
    /// accepted one comes back at the next switch-in.
    pub fn store(&mut self) {
        if crate::arch::xsave::xsave_enabled() {
            let host = crate::arch::xsave::host_xcr0();
            let live = crate::arch::xsave::xgetbv();
            if live != self.xcr0 {
                if !XSETBV_UNTRAPPED.swap(true, core::sync::atomic::Ordering::Relaxed) {
                    log::warn!(
                        "xstate: a guest changed XCR0 without an XSETBV exit (this CPU or emulator lacks the intercept); following it"
                    );
                }
                if validate_xcr0(0, live, host).is_ok() {
                    self.xcr0 = live;
                }
            }
            if live != host {
                crate::arch::xsave::xsetbv(host);
            }
        }
        self.area.save();
    }

    /// The guest's XSETBV (between `load` and `store`): loads the value if
    /// [`validate_xcr0`] accepts it, else returns why (inject #GP).
    pub fn xsetbv(&mut self, xcr: u32, value: u64) -> Result<(), XcrError> {
        let allowed = if crate::arch::xsave::xsave_enabled() {
            crate::arch::xsave::host_xcr0()
        } else {
            0
        };
        validate_xcr0(xcr, value, allowed)?;
        self.xcr0 = value;
        crate::arch::xsave::xsetbv(value);
        Ok(())
    }
}

#[cfg(test)]
mod tests;

//! Guest writes to CR0 and CR4, checked before the guest gets them.
//!
//! Both backends intercept every write to CR0 and CR4 (AMD-V: the CR write
//! intercepts; VT-x: guest/host masks of all ones, so any change exits).
//! A write the architecture refuses raises #GP(0) in the guest, as the CPU
//! would, instead of reaching the VMCB/VMCS and failing the next VM entry
//! (issue 12, defect 6). The rules (Intel SDM Vol. 3A 2.5 and the MOV CR
//! instruction page, Vol. 2B; AMD APM Vol. 2 3.1.1, 3.1.3):
//!
//! - CR0: bits 63:32 set -> #GP; NW=1 with CD=0 -> #GP; clearing PG or PE
//!   -> #GP (Kestrel guests run in 64-bit mode, where clearing PG faults,
//!   and PG=1 needs PE=1); clearing WP while CR4.CET=1 -> #GP. Reserved bits
//!   in 31:0 are ignored (kept 0), as the SDM says the CPU does.
//! - CR4: any bit that is reserved, or that the CPUID the guest sees does
//!   not offer (VMXE, SMXE: virtualization is hidden), -> #GP; clearing PAE
//!   or changing LA57 in long mode -> #GP; setting PCIDE with CR3[11:0] != 0
//!   -> #GP; CET=1 with CR0.WP=0 -> #GP.
//!
//! AMD-V without decode assists (QEMU TCG) says only which CR was written:
//! the handler then reads the instruction at RIP through the guest's page
//! tables ([`fetch`]) and decodes it ([`decode`]).
#![forbid(unsafe_code)]

use super::CrSource;

pub const CR0_PE: u64 = 1 << 0;
pub const CR0_MP: u64 = 1 << 1;
pub const CR0_EM: u64 = 1 << 2;
pub const CR0_TS: u64 = 1 << 3;
pub const CR0_ET: u64 = 1 << 4;
pub const CR0_NE: u64 = 1 << 5;
pub const CR0_WP: u64 = 1 << 16;
pub const CR0_AM: u64 = 1 << 18;
pub const CR0_NW: u64 = 1 << 29;
pub const CR0_CD: u64 = 1 << 30;
pub const CR0_PG: u64 = 1 << 31;
/// The CR0 bits that exist (SDM Vol. 3A Figure 2-7).
const CR0_DEFINED: u64 = CR0_PE
    | CR0_MP
    | CR0_EM
    | CR0_TS
    | CR0_ET
    | CR0_NE
    | CR0_WP
    | CR0_AM
    | CR0_NW
    | CR0_CD
    | CR0_PG;

pub const CR4_PAE: u64 = 1 << 5;
pub const CR4_LA57: u64 = 1 << 12;
pub const CR4_PCIDE: u64 = 1 << 17;
pub const CR4_CET: u64 = 1 << 23;

/// Why a write is refused (for the host tests; the guest sees #GP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// A reserved bit, or one the guest's CPUID does not offer.
    Reserved,
    /// A combination the architecture forbids (NW without CD, PG/PE off,
    /// PAE off in long mode, PCIDE with CR3[11:0] set, CET without WP).
    Invalid,
}

/// The value CR0 takes when the guest writes `new` (CR4 is `cr4`), or why
/// the write raises #GP.
pub fn check_cr0(new: u64, cr4: u64) -> Result<u64, Refused> {
    if new >> 32 != 0 {
        return Err(Refused::Reserved);
    }
    // Bits 31:0 that are reserved are ignored; ET is hardwired to 1.
    let v = (new & CR0_DEFINED) | CR0_ET;
    if v & CR0_NW != 0 && v & CR0_CD == 0 {
        return Err(Refused::Invalid);
    }
    if v & (CR0_PG | CR0_PE) != CR0_PG | CR0_PE {
        return Err(Refused::Invalid);
    }
    if v & CR0_WP == 0 && cr4 & CR4_CET != 0 {
        return Err(Refused::Invalid);
    }
    Ok(v)
}

/// The value CR4 takes when the guest writes `new` over `old` (CR0 is
/// `cr0`, CR3 is `cr3`), given the bits the guest may set (`allowed`,
/// from [`cr4_allowed`]), or why the write raises #GP.
pub fn check_cr4(old: u64, new: u64, cr0: u64, cr3: u64, allowed: u64) -> Result<u64, Refused> {
    if new & !allowed != 0 {
        return Err(Refused::Reserved);
    }
    if new & CR4_PAE == 0 || (new ^ old) & CR4_LA57 != 0 {
        return Err(Refused::Invalid);
    }
    if new & CR4_PCIDE != 0 && old & CR4_PCIDE == 0 && cr3 & 0xfff != 0 {
        return Err(Refused::Invalid);
    }
    if new & CR4_CET != 0 && cr0 & CR0_WP == 0 {
        return Err(Refused::Invalid);
    }
    Ok(new)
}

/// The CR4 bits a guest may set, from the CPUID it sees (`cpuid(leaf,
/// subleaf)`, the filtered view): each feature's enable bit only where the
/// feature is offered (SDM Vol. 3A 2.5; the CPUID bits per Vol. 2A, CPUID). VMXE and SMXE never (virtualization is hidden); LA57 only as
/// it is (it cannot change in long mode).
pub fn cr4_allowed(cpuid: impl Fn(u32, u32) -> [u32; 4]) -> u64 {
    let [_, _, c1, d1] = cpuid(1, 0);
    let max = cpuid(0, 0)[0];
    let [_, b7, c7, _] = if max >= 7 { cpuid(7, 0) } else { [0; 4] };
    let bit = |reg: u32, n: u32| reg & (1 << n) != 0;
    let mut a = CR4_PAE | (1 << 8); // PAE; PCE (RDPMC is refused anyway)
    let pairs: [(bool, u64); 16] = [
        (bit(d1, 1), (1 << 0) | (1 << 1)), // VME: VME, PVI
        (bit(d1, 4), 1 << 2),              // TSC: TSD
        (bit(d1, 2), 1 << 3),              // DE
        (bit(d1, 3), 1 << 4),              // PSE
        (bit(d1, 7), 1 << 6),              // MCE
        (bit(d1, 13), 1 << 7),             // PGE
        (bit(d1, 24), 1 << 9),             // FXSR: OSFXSR
        (bit(d1, 25), 1 << 10),            // SSE: OSXMMEXCPT
        (bit(c7, 2), 1 << 11),             // UMIP
        (bit(b7, 0), 1 << 16),             // FSGSBASE
        (bit(c1, 17), CR4_PCIDE),          // PCID
        (bit(c1, 26), 1 << 18),            // XSAVE: OSXSAVE
        (bit(b7, 7), 1 << 20),             // SMEP
        (bit(b7, 20), 1 << 21),            // SMAP
        (bit(c7, 3), 1 << 22),             // PKU: PKE
        (bit(c7, 7), CR4_CET),             // CET_SS: CET
    ];
    for (offered, bits) in pairs {
        if offered {
            a |= bits;
        }
    }
    a
}

/// A decoded MOV to CR0/CR4, LMSW or CLTS: the CR, the source and the
/// instruction's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    pub cr: u8,
    pub source: CrSource,
    pub len: u64,
}

/// Decodes the instruction in `bytes` if it writes a control register:
/// legacy prefixes, an optional REX, then `0F 22 /r` (MOV CRn, r64: reg =
/// CR, r/m = source, always a register), `0F 01 /6` with a register
/// operand (LMSW; the memory form is not decoded) or `0F 06` (CLTS)
/// (SDM Vol. 2B, MOV-Move to/from Control Registers, LMSW, CLTS).
/// `None` for anything else. `gpr` reads a register for LMSW's operand.
pub fn decode(bytes: &[u8], gpr: impl Fn(u8) -> u64) -> Option<Decoded> {
    let mut i = 0;
    while matches!(
        bytes.get(i)?,
        0x66 | 0x67 | 0xf2 | 0xf3 | 0x2e | 0x36 | 0x3e | 0x26 | 0x64 | 0x65
    ) {
        i += 1;
        if i > 14 {
            return None;
        }
    }
    let rex = match bytes.get(i)? {
        r @ 0x40..=0x4f => {
            i += 1;
            *r
        }
        _ => 0,
    };
    if *bytes.get(i)? != 0x0f {
        return None;
    }
    let op = *bytes.get(i + 1)?;
    let len = |n: usize| Some((i + n) as u64);
    match op {
        0x06 => Some(Decoded {
            cr: 0,
            source: CrSource::Clts,
            len: len(2)?,
        }),
        0x22 => {
            let m = *bytes.get(i + 2)?;
            let cr = ((m >> 3) & 7) | ((rex & 4) << 1);
            let reg = (m & 7) | ((rex & 1) << 3);
            Some(Decoded {
                cr,
                source: CrSource::Gpr(reg),
                len: len(3)?,
            })
        }
        0x01 => {
            let m = *bytes.get(i + 2)?;
            if (m >> 3) & 7 != 6 || m >> 6 != 3 {
                return None;
            }
            let reg = (m & 7) | ((rex & 1) << 3);
            Some(Decoded {
                cr: 0,
                source: CrSource::Lmsw(gpr(reg) as u16),
                len: len(3)?,
            })
        }
        _ => None,
    }
}

/// The new CR value a write from `source` asks for, over `old` (LMSW
/// changes PE, MP, EM, TS only and cannot clear PE; CLTS clears TS).
pub fn requested(old: u64, source: CrSource, gpr: impl Fn(u8) -> u64) -> Option<u64> {
    match source {
        CrSource::Gpr(r) => Some(gpr(r)),
        CrSource::Lmsw(v) => Some((old & !0xe) | (u64::from(v) & 0xf) | (old & CR0_PE)),
        CrSource::Clts => Some(old & !CR0_TS),
        CrSource::Decode => None,
    }
}

/// Guest-virtual to guest-physical through the guest's 4-level page
/// tables rooted at `cr3` (SDM Vol. 3A 4.5), reading entries with `read`
/// (guest-physical, 8 bytes). `None` if not present.
pub fn translate(cr3: u64, va: u64, read: impl Fn(u64) -> Option<u64>) -> Option<u64> {
    const ADDR: u64 = 0x000f_ffff_ffff_f000;
    let mut table = cr3 & ADDR;
    for level in (0..4u32).rev() {
        let shift = 12 + 9 * level;
        let e = read(table + ((va >> shift) & 0x1ff) * 8)?;
        if e & 1 == 0 {
            return None;
        }
        // PS at the PDPT (1 GiB) or PD (2 MiB) level ends the walk.
        if level != 0 && level < 3 && e & (1 << 7) != 0 {
            let mask = (1u64 << shift) - 1;
            return Some((e & ADDR & !mask) | (va & mask));
        }
        table = e & ADDR;
    }
    Some(table | (va & 0xfff))
}

/// What became of an intercepted CR write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done: the guest has the new value, RIP moved past the instruction.
    Written,
    /// Refused: #GP(0) injected, RIP unchanged (a fault).
    Fault(Refused),
    /// The instruction at RIP is no CR write (another vCPU rewrote it, or
    /// its page went away): nothing done, the guest runs it again.
    Retry,
}

/// Carries out an intercepted write to CR0/CR4 on `vcpu`: decodes it when
/// the CPU did not (`read` copies guest-physical memory, `false` if
/// outside the domain), checks it against the rules above and the CPUID
/// the guest sees (`cpuid`), then writes it or injects #GP.
pub fn emulate(
    vcpu: &mut (impl super::VcpuBackend + ?Sized),
    cr: u8,
    source: CrSource,
    len: Option<u64>,
    read: impl Fn(u64, &mut [u8]) -> bool,
    cpuid: impl Fn(u32, u32) -> [u32; 4],
) -> Outcome {
    let (source, len) = match (source, len) {
        (CrSource::Decode, _) | (_, None) => {
            let mut bytes = [0u8; 15];
            let n = fetch(vcpu.control_reg(3), vcpu.rip(), &mut bytes, &read);
            let regs = *vcpu.regs();
            let (rax, rsp) = (vcpu.rax(), vcpu.rsp());
            let gpr = |r: u8| gpr_of(&regs, rax, rsp, r);
            match decode(&bytes[..n], gpr) {
                Some(d) if d.cr == cr => (d.source, d.len),
                _ => return Outcome::Retry,
            }
        }
        (s, Some(l)) => (s, l),
    };
    let regs = *vcpu.regs();
    let (rax, rsp) = (vcpu.rax(), vcpu.rsp());
    let old = vcpu.control_reg(cr);
    let Some(new) = requested(old, source, |r| gpr_of(&regs, rax, rsp, r)) else {
        return Outcome::Retry;
    };
    let checked = match cr {
        0 => check_cr0(new, vcpu.control_reg(4)),
        4 => check_cr4(
            old,
            new,
            vcpu.control_reg(0),
            vcpu.control_reg(3),
            cr4_allowed(&cpuid),
        ),
        _ => Err(Refused::Reserved),
    };
    match checked {
        Ok(v) if vcpu.set_control_reg(cr, v) => {
            vcpu.skip(len);
            Outcome::Written
        }
        Ok(_) => {
            vcpu.inject_gp();
            Outcome::Fault(Refused::Reserved)
        }
        Err(why) => {
            vcpu.inject_gp();
            Outcome::Fault(why)
        }
    }
}

/// CR4.DE: DR4/DR5 are reserved (#UD) instead of aliases of DR6/DR7.
const CR4_DE: u64 = 1 << 3;
/// DR6 bits a MOV DR6 can change (B0-B3, BLD, BD, BS, BT, RTM) and the
/// ones that read as 1 (SDM Vol. 3A 18.2.3).
const DR6_VOLATILE: u64 = 0x0001_e80f;
const DR6_FIXED_1: u64 = 0xfffe_0ff0;
/// DR7 bits that exist (bits 12, 14, 15 read 0; bit 10 reads 1).
const DR7_VOLATILE: u64 = 0xffff_2bff;
const DR7_FIXED_1: u64 = 0x400;

/// Decodes MOV r64, DRn (`0F 21 /r`) or MOV DRn, r64 (`0F 23 /r`) after
/// legacy prefixes and an optional REX: (DR, write, GPR, length). REX.R
/// (DR8 up) is `None` (#UD on a real CPU; the caller re-executes it).
pub fn decode_dr(bytes: &[u8]) -> Option<(u8, bool, u8, u64)> {
    let mut i = 0;
    while matches!(
        bytes.get(i)?,
        0x66 | 0x67 | 0xf2 | 0xf3 | 0x2e | 0x36 | 0x3e | 0x26 | 0x64 | 0x65
    ) {
        i += 1;
        if i > 12 {
            return None;
        }
    }
    let rex = match bytes.get(i)? {
        r @ 0x40..=0x4f => {
            i += 1;
            *r
        }
        _ => 0,
    };
    let write = match (bytes.get(i)?, bytes.get(i + 1)?) {
        (0x0f, 0x21) => false,
        (0x0f, 0x23) => true,
        _ => return None,
    };
    let m = *bytes.get(i + 2)?;
    if rex & 4 != 0 {
        return None;
    }
    Some((
        (m >> 3) & 7,
        write,
        (m & 7) | ((rex & 1) << 3),
        (i + 3) as u64,
    ))
}

/// Carries out an intercepted MOV to or from DR`dr` (AMD-V): decodes it
/// when the CPU did not, maps DR4/DR5 to DR6/DR7 (or #UD with CR4.DE),
/// refuses DR6/DR7 values with bits 63:32 set (#GP), keeps DR6/DR7's fixed
/// bits, and moves the value (SDM Vol. 3A 18.2; APM Vol. 2 13.1.1).
/// DR7.GD (general detect) is not emulated.
pub fn emulate_dr(
    vcpu: &mut (impl super::VcpuBackend + ?Sized),
    dr: u8,
    write: bool,
    gpr: Option<u8>,
    len: Option<u64>,
    read: impl Fn(u64, &mut [u8]) -> bool,
) -> Outcome {
    let (gpr, len) = match (gpr, len) {
        (Some(g), Some(l)) => (g, l),
        _ => {
            let mut bytes = [0u8; 15];
            let n = fetch(vcpu.control_reg(3), vcpu.rip(), &mut bytes, &read);
            match decode_dr(&bytes[..n]) {
                Some((d, w, g, l)) if d == dr && w == write => (g, l),
                _ => return Outcome::Retry,
            }
        }
    };
    let n = match dr {
        4 | 5 if vcpu.control_reg(4) & CR4_DE != 0 => {
            vcpu.inject_ud();
            return Outcome::Fault(Refused::Reserved);
        }
        4 | 5 => dr + 2,
        n => n,
    };
    if write {
        let regs = *vcpu.regs();
        let v = gpr_of(&regs, vcpu.rax(), vcpu.rsp(), gpr);
        let v = match n {
            6 | 7 if v >> 32 != 0 => {
                vcpu.inject_gp();
                return Outcome::Fault(Refused::Reserved);
            }
            6 => (v & DR6_VOLATILE) | DR6_FIXED_1,
            7 => (v & DR7_VOLATILE) | DR7_FIXED_1,
            _ => v,
        };
        if !vcpu.set_debug_reg(n, v) {
            vcpu.inject_ud();
            return Outcome::Fault(Refused::Reserved);
        }
    } else {
        let v = vcpu.debug_reg(n);
        match gpr {
            0 => vcpu.set_rax(v),
            // MOV RSP, DRn: RSP lives in the control structure and is not
            // written by this emulation (no guest needs it): #UD.
            4 => {
                vcpu.inject_ud();
                return Outcome::Fault(Refused::Reserved);
            }
            g => set_gpr(vcpu.regs(), g, v),
        }
    }
    vcpu.skip(len);
    Outcome::Written
}

fn set_gpr(regs: &mut super::GuestRegs, r: u8, v: u64) {
    let slot = match r & 15 {
        1 => &mut regs.rcx,
        2 => &mut regs.rdx,
        3 => &mut regs.rbx,
        5 => &mut regs.rbp,
        6 => &mut regs.rsi,
        7 => &mut regs.rdi,
        8 => &mut regs.r8,
        9 => &mut regs.r9,
        10 => &mut regs.r10,
        11 => &mut regs.r11,
        12 => &mut regs.r12,
        13 => &mut regs.r13,
        14 => &mut regs.r14,
        15 => &mut regs.r15,
        _ => return,
    };
    *slot = v;
}

/// General-purpose register `r` (0 = RAX ... 15 = R15; RAX and RSP live in
/// the backend's control structure).
fn gpr_of(regs: &super::GuestRegs, rax: u64, rsp: u64, r: u8) -> u64 {
    match r & 15 {
        0 => rax,
        1 => regs.rcx,
        2 => regs.rdx,
        3 => regs.rbx,
        4 => rsp,
        5 => regs.rbp,
        6 => regs.rsi,
        7 => regs.rdi,
        8 => regs.r8,
        9 => regs.r9,
        10 => regs.r10,
        11 => regs.r11,
        12 => regs.r12,
        13 => regs.r13,
        14 => regs.r14,
        _ => regs.r15,
    }
}

/// Copies the instruction bytes at guest-virtual `rip` into `buf` (up to
/// the first byte that does not translate): how many were read.
pub fn fetch(cr3: u64, rip: u64, buf: &mut [u8], read: &impl Fn(u64, &mut [u8]) -> bool) -> usize {
    let word = |gpa: u64| {
        let mut b = [0u8; 8];
        read(gpa, &mut b).then(|| u64::from_le_bytes(b))
    };
    let mut done = 0;
    while done < buf.len() {
        let va = rip.wrapping_add(done as u64);
        let Some(gpa) = translate(cr3, va, word) else {
            break;
        };
        let in_page = (0x1000 - (va & 0xfff)) as usize;
        let end = (done + in_page).min(buf.len());
        let Some(chunk) = buf.get_mut(done..end) else {
            break;
        };
        if !read(gpa, chunk) {
            break;
        }
        done = end;
    }
    done
}

#[cfg(test)]
mod tests;

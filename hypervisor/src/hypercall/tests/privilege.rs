//! Host tests of issue 12's privilege rules: hypercalls from guest user
//! mode (CPL > 0) are refused with `EPERM` and do nothing; CR0/CR4 writes
//! are checked (and decoded when the CPU does not say the register); the
//! instructions the hypervisor refuses raise #UD/#GP.
use super::*;
use crate::virt::CrSource;
use crate::virt::cr::{CR0_ET, CR0_NE, CR0_PE, CR0_PG, CR0_WP, CR4_PAE};
use pvabi::{HC_MEM_RELEASE, HC_SHUTDOWN, SHUTDOWN_POWEROFF};

fn user() -> FakeVcpu {
    FakeVcpu {
        cpl: 3,
        ..FakeVcpu::default()
    }
}

#[test]
fn user_mode_hypercalls_get_eperm_and_do_nothing() {
    let mut svc = FakeSvc::new(0x4000);
    svc.privileged = true;
    svc.mem[0x100..0x105].copy_from_slice(b"hello");
    for (nr, a) in [
        (HC_CONSOLE_WRITE, [0x100, 5, 0, 0]),
        (HC_MEM_RELEASE, [0x2000, 1, 0, 0]),
        (HC_SHUTDOWN, [SHUTDOWN_POWEROFF, 0, 0, 0]),
        (HC_MULTICALL, [0x200, 1, 0, 0]),
        (HC_YIELD, [0; 4]),
        (9999, [0; 4]),
    ] {
        for cpl in [1, 2, 3] {
            let mut v = FakeVcpu {
                cpl,
                ..FakeVcpu::default()
            };
            let (act, out) = call6(&mut v, &mut svc, nr, a);
            assert_eq!(act, Action::Resume, "hypercall {nr} from CPL {cpl}");
            assert_eq!(v.regs.rax as i64, EPERM, "hypercall {nr} from CPL {cpl}");
            assert!(out.is_empty(), "nothing written to the console");
            assert_eq!(v.rip, 3, "RIP past the instruction");
        }
    }
    assert!(svc.present.iter().all(|&p| p), "no page released");
    // From the kernel the same calls work.
    let mut v = FakeVcpu::default();
    let (act, out) = call6(&mut v, &mut svc, HC_CONSOLE_WRITE, [0x100, 5, 0, 0]);
    assert_eq!(
        (act, out.as_slice(), v.regs.rax),
        (Action::Resume, &b"hello"[..], 5)
    );
    let (act, _) = call6(&mut v, &mut svc, HC_MEM_RELEASE, [0x2000, 1, 0, 0]);
    assert_eq!((act, v.regs.rax), (Action::Resume, 1));
    let (act, _) = call6(
        &mut user(),
        &mut svc,
        HC_SHUTDOWN,
        [SHUTDOWN_POWEROFF, 0, 0, 0],
    );
    assert_eq!(act, Action::Resume, "user mode cannot shut down");
}

const CR0: u64 = CR0_PE | CR0_ET | CR0_NE | CR0_WP | CR0_PG | 2;
const CR4: u64 = CR4_PAE | (1 << 9) | (1 << 10);

fn vcpu_with_crs() -> FakeVcpu {
    let mut v = FakeVcpu {
        rip: 0x5000,
        ..FakeVcpu::default()
    };
    v.cr[0] = CR0;
    v.cr[3] = 0x1000;
    v.cr[4] = CR4;
    v
}

fn cr_write(v: &mut FakeVcpu, svc: &mut FakeSvc, cr: u8, source: CrSource, len: Option<u64>) {
    let a = handle(
        VmExit::CrWrite { cr, source, len },
        v,
        svc,
        &FakeHost,
        1,
        &mut |_: &[u8]| true,
    );
    assert_eq!(a, Action::Resume);
}

#[test]
fn cr_writes_are_checked() {
    let mut svc = FakeSvc::new(0x8000);
    let mut v = vcpu_with_crs();
    // VMXE: hidden from the guest's CPUID, so #GP, nothing changes.
    v.regs.rbx = CR4 | (1 << 13);
    cr_write(&mut v, &mut svc, 4, CrSource::Gpr(3), Some(3));
    assert_eq!((v.gp, v.cr[4], v.rip), (1, CR4, 0x5000));
    // A bit no CPU defines.
    v.regs.rbx = CR4 | (1 << 40);
    cr_write(&mut v, &mut svc, 4, CrSource::Gpr(3), Some(3));
    assert_eq!((v.gp, v.cr[4], v.rip), (2, CR4, 0x5000));
    // PGE, offered (the fake host's CPUID has every bit set): done.
    v.regs.rbx = CR4 | (1 << 7);
    cr_write(&mut v, &mut svc, 4, CrSource::Gpr(3), Some(3));
    assert_eq!((v.gp, v.cr[4], v.rip), (2, CR4 | (1 << 7), 0x5003));
    // CR0: a high bit faults; TS set through RAX; CLTS clears it.
    v.regs.rax = CR0 | (1 << 32);
    cr_write(&mut v, &mut svc, 0, CrSource::Gpr(0), Some(3));
    assert_eq!((v.gp, v.cr[0]), (3, CR0));
    v.regs.rax = CR0 | 8;
    cr_write(&mut v, &mut svc, 0, CrSource::Gpr(0), Some(3));
    assert_eq!((v.gp, v.cr[0]), (3, CR0 | 8));
    cr_write(&mut v, &mut svc, 0, CrSource::Clts, Some(2));
    assert_eq!((v.gp, v.cr[0]), (3, CR0));
}

#[test]
fn cr_writes_are_decoded_through_the_guest_page_tables() {
    let mut svc = FakeSvc::new(0x8000);
    // PML4 0x1000 -> PDPT 0x2000 -> PD 0x3000 -> one 2 MiB page at 0.
    svc.mem[0x1000..0x1008].copy_from_slice(&0x2003u64.to_le_bytes());
    svc.mem[0x2000..0x2008].copy_from_slice(&0x3003u64.to_le_bytes());
    svc.mem[0x3000..0x3008].copy_from_slice(&0x83u64.to_le_bytes());
    // mov cr4, rbx at 0x5000; REX.B mov cr0, r9 at 0x5003.
    svc.mem[0x5000..0x5007].copy_from_slice(&[0x0f, 0x22, 0xe3, 0x41, 0x0f, 0x22, 0xc1]);
    let mut v = vcpu_with_crs();
    v.regs.rbx = CR4 | (1 << 14); // SMXE: #GP
    cr_write(&mut v, &mut svc, 4, CrSource::Decode, None);
    assert_eq!((v.gp, v.cr[4], v.rip), (1, CR4, 0x5000));
    v.regs.rbx = CR4 | (1 << 3); // DE
    cr_write(&mut v, &mut svc, 4, CrSource::Decode, None);
    assert_eq!((v.gp, v.cr[4], v.rip), (1, CR4 | (1 << 3), 0x5003));
    v.regs.r9 = CR0 & !CR0_PG; // clearing PG in 64-bit mode: #GP
    cr_write(&mut v, &mut svc, 0, CrSource::Decode, None);
    assert_eq!((v.gp, v.cr[0], v.rip), (2, CR0, 0x5003));
    v.regs.r9 = CR0 | (1 << 18); // AM
    cr_write(&mut v, &mut svc, 0, CrSource::Decode, None);
    assert_eq!((v.gp, v.cr[0], v.rip), (2, CR0 | (1 << 18), 0x5007));
    // The bytes at RIP are not a write of that CR (rewritten by another
    // vCPU): nothing happens, the guest runs the instruction again.
    v.rip = 0x5000;
    cr_write(&mut v, &mut svc, 0, CrSource::Decode, None);
    assert_eq!((v.gp, v.cr[0], v.rip), (2, CR0 | (1 << 18), 0x5000));
    // RIP outside the guest's mappings: the same.
    v.rip = 0x40_0000;
    cr_write(&mut v, &mut svc, 4, CrSource::Decode, None);
    assert_eq!((v.gp, v.rip), (2, 0x40_0000));
}

#[test]
fn refused_instructions_raise_ud_or_gp() {
    let mut svc = FakeSvc::new(0x1000);
    let mut v = FakeVcpu::default();
    for (ud, what) in [(true, "INVLPGA"), (false, "RDPMC")] {
        let a = handle(
            VmExit::Refuse { ud, what },
            &mut v,
            &mut svc,
            &FakeHost,
            1,
            &mut |_: &[u8]| true,
        );
        assert_eq!(a, Action::Resume);
    }
    assert_eq!((v.ud, v.gp, v.rip), (1, 1, 0));
}

#[test]
fn intercepted_mov_dr_is_emulated() {
    let mut svc = FakeSvc::new(0x8000);
    svc.mem[0x1000..0x1008].copy_from_slice(&0x2003u64.to_le_bytes());
    svc.mem[0x2000..0x2008].copy_from_slice(&0x3003u64.to_le_bytes());
    svc.mem[0x3000..0x3008].copy_from_slice(&0x83u64.to_le_bytes());
    // mov dr3, rbx; mov r9, dr3 (REX.B); mov dr7, rax; mov dr5, rax.
    svc.mem[0x5000..0x500d].copy_from_slice(&[
        0x0f, 0x23, 0xdb, 0x41, 0x0f, 0x21, 0xd9, 0x0f, 0x23, 0xf8, 0x0f, 0x23, 0xe8,
    ]);
    let mut v = vcpu_with_crs();
    let dr = |v: &mut FakeVcpu, svc: &mut FakeSvc, dr: u8, write: bool| {
        let a = handle(
            VmExit::DrAccess {
                dr,
                write,
                gpr: None,
                len: None,
            },
            v,
            svc,
            &FakeHost,
            1,
            &mut |_: &[u8]| true,
        );
        assert_eq!(a, Action::Resume);
    };
    v.regs.rbx = 0x10_0000;
    dr(&mut v, &mut svc, 3, true);
    assert_eq!((v.dr[3], v.rip), (0x10_0000, 0x5003));
    dr(&mut v, &mut svc, 3, false);
    assert_eq!((v.regs.r9, v.rip), (0x10_0000, 0x5007));
    // DR7 with a high bit: #GP; in range: fixed bits applied.
    v.regs.rax = 1 << 32;
    dr(&mut v, &mut svc, 7, true);
    assert_eq!((v.gp, v.rip), (1, 0x5007));
    v.regs.rax = 0xff | (1 << 12);
    dr(&mut v, &mut svc, 7, true);
    assert_eq!((v.dr[7], v.rip), (0x4ff, 0x500a));
    // DR5 is DR7 without CR4.DE, #UD with it.
    v.cr[4] |= 1 << 3;
    dr(&mut v, &mut svc, 5, true);
    assert_eq!((v.ud, v.rip), (1, 0x500a));
    v.cr[4] &= !(1 << 3);
    v.regs.rax = 0x401;
    dr(&mut v, &mut svc, 5, true);
    assert_eq!((v.dr[7], v.rip), (0x401, 0x500d));
    // The bytes at RIP do not match the exit: re-executed, nothing done.
    v.rip = 0x5000;
    dr(&mut v, &mut svc, 0, true);
    assert_eq!((v.dr[0], v.rip), (0, 0x5000));
}

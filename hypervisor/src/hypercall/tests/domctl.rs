//! Host tests of the domctl hypercalls: privilege, argument validation
//! against hostile values, and OUT structures written only where they may be.
use super::*;
use crate::domain::ids::DomainId;
use pvabi::{
    DOMCTL_READ_MAX, DomainCreate, E2BIG, ENOENT, HC_DOMCTL_CREATE, HC_DOMCTL_DESTROY,
    HC_DOMCTL_HOST_INFO, HC_DOMCTL_INFO, HC_DOMCTL_LIST, HC_DOMCTL_MODULE_INFO,
    HC_DOMCTL_MODULE_READ, HC_DOMCTL_PAUSE, HC_DOMCTL_UNPAUSE, HostInfo, ModuleInfo,
};

/// The fake system: domains 2 and 5 exist; module 1 holds `MODULE`.
const MODULE: &[u8] = b"name = \"web\"\nmemory = 16\n";

pub(super) fn fake(req: DomctlReq<'_>) -> Result<DomctlReply, Error> {
    let exists = |id: DomainId| {
        if id == DomainId(2) || id == DomainId(5) {
            Ok(())
        } else {
            Err(Error::NoEntry)
        }
    };
    Ok(match req {
        DomctlReq::Create(p) => DomctlReply::Value(u64::from(p.module) + 100),
        DomctlReq::Unpause(id)
        | DomctlReq::Pause(id)
        | DomctlReq::Destroy(id)
        | DomctlReq::ShutdownRequest { id, .. }
        | DomctlReq::SetSched { id, .. }
        | DomctlReq::MemTarget { id, .. }
        | DomctlReq::PciAssign { id, .. } => {
            exists(id)?;
            DomctlReply::Value(0)
        }
        DomctlReq::Info(id) => {
            exists(id)?;
            DomctlReply::Info(pvabi::DomainInfo {
                id: id.0,
                ..Default::default()
            })
        }
        // Domain 7 has ended and been freed.
        DomctlReq::Ended(DomainId(7)) => DomctlReply::Info(pvabi::DomainInfo {
            id: 7,
            state: pvabi::DOMAIN_ENDED,
            exit_code: 3,
            ..Default::default()
        }),
        DomctlReq::Ended(_) => return Err(Error::NoEntry),
        // Staging (`tests/stage.rs`): the handle, the filled count.
        DomctlReq::StageBegin(_) => DomctlReply::Value(0x101),
        DomctlReq::StageWrite { offset, len, .. } => DomctlReply::Value(offset + len),
        DomctlReq::StageAbort(_) => DomctlReply::Value(0),
        DomctlReq::EndReason(DomainId(7)) => DomctlReply::Reason(
            crate::domain::ended::reason_text(Some("triple fault at RIP 0x10")),
        ),
        DomctlReq::EndReason(_) => return Err(Error::NoEntry),
        DomctlReq::List(ids) => {
            for (slot, id) in ids.iter_mut().zip([2, 5]) {
                *slot = id;
            }
            DomctlReply::Value(2)
        }
        DomctlReq::ModuleInfo(1) => DomctlReply::Module(ModuleInfo {
            size: MODULE.len() as u64,
            kind: pvabi::MODULE_DATA,
            name_len: 0,
            name: [0; 64],
            args_len: 0,
            _pad: 0,
            args: [0; 256],
        }),
        DomctlReq::ModuleInfo(_) => return Err(Error::NoEntry),
        DomctlReq::ModuleRead { index, offset, buf } => {
            if index != 1 {
                return Err(Error::NoEntry);
            }
            let from = MODULE
                .get(offset.min(MODULE.len() as u64) as usize..)
                .unwrap_or(&[]);
            let n = from.len().min(buf.len());
            buf[..n].copy_from_slice(&from[..n]);
            DomctlReply::Value(n as u64)
        }
        DomctlReq::HostInfo => DomctlReply::Host(HostInfo {
            nr_cpus: 2,
            ..Default::default()
        }),
    })
}

fn call(svc: &mut FakeSvc, nr: u64, args: [u64; 6]) -> i64 {
    let mut vcpu = FakeVcpu::default();
    vcpu.regs.rax = nr;
    vcpu.regs.rdi = args[0];
    vcpu.regs.rsi = args[1];
    vcpu.regs.rdx = args[2];
    vcpu.regs.r10 = args[3];
    let action = handle(
        VmExit::Hypercall { len: 3 },
        &mut vcpu,
        svc,
        &FakeHost,
        1,
        &mut |_| true,
    );
    assert_eq!(action, Action::Resume);
    vcpu.regs.rax as i64
}

fn privileged() -> FakeSvc {
    let mut svc = FakeSvc::new(0x4000);
    svc.privileged = true;
    svc
}

fn good_create() -> DomainCreate {
    let mut c = DomainCreate::new("web-1.a_b", 1, 16 << 20, 2);
    assert!(c.set_cmdline("peer=3 mode=fast"));
    c.cap = 150;
    c
}

#[test]
fn every_domctl_is_refused_to_an_unprivileged_domain_before_anything_else() {
    for nr in HC_DOMCTL_CREATE..=HC_DOMCTL_HOST_INFO {
        let mut svc = FakeSvc::new(0x2000);
        // Hostile arguments too: EPERM comes first, whatever they are.
        assert_eq!(call(&mut svc, nr, [u64::MAX; 6]), EPERM, "call {nr}");
        assert_eq!(call(&mut svc, nr, [0; 6]), EPERM, "call {nr}");
        assert!(svc.domctl_reqs.is_empty(), "nothing reached the system");
        assert!(svc.mem.iter().all(|&b| b == 0), "nothing written");
    }
}

#[test]
fn a_valid_create_reaches_the_system_validated() {
    let mut svc = privileged();
    svc.mem[0x1000..0x1000 + pvabi::DOMAIN_CREATE_SIZE].copy_from_slice(good_create().as_bytes());
    assert_eq!(
        call(&mut svc, HC_DOMCTL_CREATE, [0x1000, 0, 0, 0, 0, 0]),
        101
    );
    let r = &svc.domctl_reqs[0];
    assert!(r.contains("\"web-1.a_b\""), "{r}");
    assert!(r.contains("memory_bytes: 16777216"), "{r}");
    assert!(r.contains("\"peer=3 mode=fast\""), "{r}");
    assert!(r.contains("heap_budget: 0"), "{r}");
}

#[test]
fn create_rejects_each_bad_field() {
    type Break = fn(&mut DomainCreate);
    let cases: &[(&str, Break)] = &[
        ("empty name", |c| c.name = [0; 32]),
        ("no NUL", |c| c.name = [b'a'; 32]),
        ("space in name", |c| c.name[2] = b' '),
        ("byte after NUL", |c| c.name[20] = b'x'),
        ("non-ASCII name", |c| c.name[0] = 0xc3),
        ("memory not 2 MiB aligned", |c| c.memory_bytes += 4096),
        ("memory too small", |c| c.memory_bytes = 2 << 20),
        ("memory too big", |c| c.memory_bytes = 2 << 30),
        ("memory huge", |c| c.memory_bytes = !((2 << 20) - 1)),
        ("no vCPU", |c| c.nr_vcpus = 0),
        ("too many vCPUs", |c| {
            c.nr_vcpus = pvabi::DOMCTL_MAX_VCPUS + 1
        }),
        ("zero weight", |c| c.weight = 0),
        ("weight too big", |c| c.weight = 65536),
        ("cap over vCPUs", |c| c.cap = 201),
        ("an unknown flag", |c| c.flags = 1 << 2),
        // Bit 1 was the unreleased in-memory image flag, removed for stages.
        ("the retired image flag", |c| c.flags = 1 << 1),
        ("linux with an inline command line", |c| {
            c.flags = pvabi::DOMCTL_CREATE_LINUX
        }),
        ("cmdline too long", |c| c.cmdline_len = 257),
        ("cmdline not UTF-8", |c| {
            c.cmdline[0] = 0xff;
            c.cmdline_len = 1
        }),
        ("heap budget too small", |c| {
            c.heap_budget = pvabi::DOMCTL_BUDGET_MIN - 1
        }),
        ("heap budget too big", |c| {
            c.heap_budget = pvabi::DOMCTL_BUDGET_MAX + 1
        }),
        ("heap budget huge", |c| c.heap_budget = u64::MAX),
    ];
    for (what, break_it) in cases {
        let mut c = good_create();
        break_it(&mut c);
        let mut svc = privileged();
        svc.mem[0x1000..0x1000 + pvabi::DOMAIN_CREATE_SIZE].copy_from_slice(c.as_bytes());
        assert_eq!(
            call(&mut svc, HC_DOMCTL_CREATE, [0x1000, 0, 0, 0, 0, 0]),
            EINVAL,
            "{what}"
        );
        assert!(svc.domctl_reqs.is_empty(), "{what}: nothing was created");
    }
}

/// A Linux create (`DOMCTL_CREATE_LINUX`, issue 13): the extension after
/// the struct and a 2,047-byte command line from the caller's memory.
fn linux_request(initrd: u32, len: u32, gpa: u64) -> pvabi::DomainCreateLinuxRequest {
    let mut create = DomainCreate::new("linux", 1, 64 << 20, 2);
    create.flags = pvabi::DOMCTL_CREATE_LINUX;
    pvabi::DomainCreateLinuxRequest {
        create,
        linux: pvabi::DomainCreateLinux {
            initrd_module: initrd,
            cmdline_len: len,
            cmdline_gpa: gpa,
            _pad: 0,
        },
    }
}

#[test]
fn a_linux_create_takes_its_extension_and_long_command_line() {
    let mut svc = privileged();
    let line = "c".repeat(2047);
    let req = linux_request(2, 2047, 0x2000);
    svc.mem[0x1000..0x1000 + core::mem::size_of_val(&req)].copy_from_slice(req.as_bytes());
    svc.mem[0x2000..0x2000 + 2047].copy_from_slice(line.as_bytes());
    assert_eq!(
        call(&mut svc, HC_DOMCTL_CREATE, [0x1000, 0, 0, 0, 0, 0]),
        101
    );
    let r = &svc.domctl_reqs[0];
    assert!(r.contains("linux: Some(Some(2))"), "{r}");
    assert!(r.contains(&line), "the whole command line");
    // No initramfs.
    let mut svc = privileged();
    let req = linux_request(pvabi::DOMCTL_NO_INITRD, 0, 0);
    svc.mem[0x1000..0x1000 + core::mem::size_of_val(&req)].copy_from_slice(req.as_bytes());
    assert_eq!(
        call(&mut svc, HC_DOMCTL_CREATE, [0x1000, 0, 0, 0, 0, 0]),
        101
    );
    assert!(svc.domctl_reqs[0].contains("linux: Some(None)"));
}

#[test]
fn a_linux_create_rejects_a_bad_extension() {
    let cases: [(&str, pvabi::DomainCreateLinuxRequest, &[u8], i64); 6] = [
        ("initrd 0", linux_request(0, 0, 0), b"", EINVAL),
        ("initrd is the kernel", linux_request(1, 0, 0), b"", EINVAL),
        (
            "command line too long",
            linux_request(2, 2048, 0x2000),
            b"",
            EINVAL,
        ),
        (
            "NUL in the command line",
            linux_request(2, 3, 0x2000),
            b"a\0b",
            EINVAL,
        ),
        ("not UTF-8", linux_request(2, 1, 0x2000), b"\xff", EINVAL),
        (
            "command line outside memory",
            linux_request(2, 16, 0x3ff8),
            b"",
            EFAULT,
        ),
    ];
    for (what, req, line, want) in cases {
        let mut svc = privileged();
        svc.mem[0x1000..0x1000 + core::mem::size_of_val(&req)].copy_from_slice(req.as_bytes());
        svc.mem[0x2000..0x2000 + line.len()].copy_from_slice(line);
        assert_eq!(
            call(&mut svc, HC_DOMCTL_CREATE, [0x1000, 0, 0, 0, 0, 0]),
            want,
            "{what}"
        );
        assert!(svc.domctl_reqs.is_empty(), "{what}: nothing was created");
    }
    // The extension itself past the end of memory.
    let mut svc = privileged();
    let req = linux_request(2, 0, 0);
    let at = 0x4000 - pvabi::DOMAIN_CREATE_SIZE;
    svc.mem[at..0x4000].copy_from_slice(&req.as_bytes()[..pvabi::DOMAIN_CREATE_SIZE]);
    assert_eq!(
        call(&mut svc, HC_DOMCTL_CREATE, [at as u64, 0, 0, 0, 0, 0]),
        EFAULT
    );
}

#[test]
fn create_struct_outside_memory_is_efault() {
    for gpa in [0x4000 - 100, 0x4000, u64::MAX - 10, u64::MAX] {
        let mut svc = privileged();
        assert_eq!(
            call(&mut svc, HC_DOMCTL_CREATE, [gpa, 0, 0, 0, 0, 0]),
            EFAULT
        );
    }
}

#[test]
fn domain_ids_must_fit_and_exist() {
    for nr in [HC_DOMCTL_UNPAUSE, HC_DOMCTL_PAUSE, HC_DOMCTL_DESTROY] {
        let mut svc = privileged();
        assert_eq!(call(&mut svc, nr, [1 << 32 | 5, 0, 0, 0, 0, 0]), EINVAL);
        assert_eq!(call(&mut svc, nr, [3, 0, 0, 0, 0, 0]), ENOENT);
        assert_eq!(call(&mut svc, nr, [5, 0, 0, 0, 0, 0]), 0);
    }
}

#[test]
fn info_is_written_only_into_own_memory() {
    let mut svc = privileged();
    assert_eq!(call(&mut svc, HC_DOMCTL_INFO, [5, 0x2000, 0, 0, 0, 0]), 0);
    assert_eq!(&svc.mem[0x2000..0x2004], &5u32.to_le_bytes());
    assert_eq!(
        call(&mut svc, HC_DOMCTL_INFO, [5, 0x3fc0, 0, 0, 0, 0]),
        EFAULT
    );
    assert_eq!(
        call(&mut svc, HC_DOMCTL_INFO, [4, 0x2000, 0, 0, 0, 0]),
        ENOENT
    );
}

#[test]
fn info_of_an_ended_domain_takes_the_ended_bit() {
    let mut svc = privileged();
    let ended = pvabi::DOMCTL_INFO_ENDED;
    assert_eq!(
        call(&mut svc, HC_DOMCTL_INFO, [7, 0x2000, 0, 0, 0, 0]),
        ENOENT
    );
    assert_eq!(
        call(&mut svc, HC_DOMCTL_INFO, [7 | ended, 0x2000, 0, 0, 0, 0]),
        0
    );
    assert_eq!(&svc.mem[0x2000..0x2008], &[7, 0, 0, 0, 3, 0, 0, 0]);
    assert_eq!(
        call(&mut svc, HC_DOMCTL_INFO, [5 | ended, 0x2000, 0, 0, 0, 0]),
        ENOENT
    );
    // Other high bits stay invalid.
    assert_eq!(
        call(
            &mut svc,
            HC_DOMCTL_INFO,
            [7 | ended | 1 << 34, 0x2000, 0, 0, 0, 0]
        ),
        EINVAL
    );
}

/// Issue 15: why the hypervisor killed an ended domain, as text.
#[test]
fn the_kill_reason_of_an_ended_domain() {
    let mut svc = privileged();
    let why = pvabi::DOMCTL_INFO_ENDED | pvabi::DOMCTL_INFO_REASON;
    let text = b"triple fault at RIP 0x10";
    assert_eq!(
        call(&mut svc, HC_DOMCTL_INFO, [7 | why, 0x3000, 0, 0, 0, 0]),
        text.len() as i64
    );
    assert_eq!(&svc.mem[0x3000..0x3000 + text.len()], text);
    assert_eq!(
        call(&mut svc, HC_DOMCTL_INFO, [5 | why, 0x3000, 0, 0, 0, 0]),
        ENOENT
    );
    // Without the ended bit the reason bit is not a domain id.
    assert_eq!(
        call(
            &mut svc,
            HC_DOMCTL_INFO,
            [7 | pvabi::DOMCTL_INFO_REASON, 0x3000, 0, 0, 0, 0]
        ),
        EINVAL
    );
}

#[test]
fn list_checks_capacity_and_buffer_first() {
    let mut svc = privileged();
    assert_eq!(
        call(&mut svc, HC_DOMCTL_LIST, [0x1000, 1025, 0, 0, 0, 0]),
        E2BIG
    );
    assert_eq!(
        call(&mut svc, HC_DOMCTL_LIST, [0x3ffc, 4, 0, 0, 0, 0]),
        EFAULT
    );
    assert!(svc.domctl_reqs.is_empty());
    // Capacity 1 of 2 domains: the count says more exist.
    assert_eq!(call(&mut svc, HC_DOMCTL_LIST, [0x1000, 1, 0, 0, 0, 0]), 2);
    assert_eq!(&svc.mem[0x1000..0x1008], &[2, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(call(&mut svc, HC_DOMCTL_LIST, [0x1000, 0, 0, 0, 0, 0]), 2);
}

#[test]
fn modules_are_described_and_read_in_bounds() {
    let mut svc = privileged();
    assert_eq!(
        call(&mut svc, HC_DOMCTL_MODULE_INFO, [1, 0x1000, 0, 0, 0, 0]),
        0
    );
    assert_eq!(svc.mem[0x1000] as usize, MODULE.len());
    assert_eq!(
        call(&mut svc, HC_DOMCTL_MODULE_INFO, [9, 0x1000, 0, 0, 0, 0]),
        ENOENT
    );
    let n = call(&mut svc, HC_DOMCTL_MODULE_READ, [1, 7, 0x2000, 100, 0, 0]);
    assert_eq!(n as usize, MODULE.len() - 7);
    assert_eq!(&svc.mem[0x2000..0x2000 + n as usize], &MODULE[7..]);
    assert_eq!(
        call(
            &mut svc,
            HC_DOMCTL_MODULE_READ,
            [1, u64::MAX, 0x2000, 8, 0, 0]
        ),
        0
    );
    assert_eq!(
        call(
            &mut svc,
            HC_DOMCTL_MODULE_READ,
            [1, 0, 0x2000, DOMCTL_READ_MAX + 1, 0, 0]
        ),
        E2BIG
    );
    assert_eq!(
        call(&mut svc, HC_DOMCTL_MODULE_READ, [1, 0, 0x3ff0, 100, 0, 0]),
        EFAULT
    );
    assert_eq!(
        call(&mut svc, HC_DOMCTL_MODULE_READ, [2, 0, 0x2000, 10, 0, 0]),
        ENOENT
    );
}

#[test]
fn host_info_goes_where_asked() {
    let mut svc = privileged();
    assert_eq!(
        call(&mut svc, HC_DOMCTL_HOST_INFO, [0x1000, 0, 0, 0, 0, 0]),
        0
    );
    assert_eq!(svc.mem[0x1010], 2, "nr_cpus");
    assert_eq!(
        call(&mut svc, HC_DOMCTL_HOST_INFO, [u64::MAX, 0, 0, 0, 0, 0]),
        EFAULT
    );
}

#[test]
fn lifecycle_domctls_are_privileged_and_checked() {
    use pvabi::{EINVAL, HC_DOMCTL_SET_SCHED, HC_DOMCTL_SHUTDOWN_REQUEST, HC_SHUTDOWN_REQUESTED};
    for nr in [HC_DOMCTL_SHUTDOWN_REQUEST, HC_DOMCTL_SET_SCHED] {
        let mut svc = FakeSvc::new(0x2000);
        assert_eq!(call(&mut svc, nr, [u64::MAX; 6]), EPERM, "call {nr}");
        assert!(svc.domctl_reqs.is_empty(), "nothing reached the system");
    }
    let mut svc = privileged();
    assert_eq!(
        call(&mut svc, HC_DOMCTL_SHUTDOWN_REQUEST, [5, 2, 0, 0, 0, 0]),
        0
    );
    assert_eq!(
        call(&mut svc, HC_DOMCTL_SHUTDOWN_REQUEST, [5, 9, 0, 0, 0, 0]),
        EINVAL
    );
    assert_eq!(
        call(&mut svc, HC_DOMCTL_SHUTDOWN_REQUEST, [6, 1, 0, 0, 0, 0]),
        ENOENT
    );
    assert_eq!(
        call(&mut svc, HC_DOMCTL_SET_SCHED, [2, 512, 30, 0, 0, 0]),
        0
    );
    assert_eq!(
        call(&mut svc, HC_DOMCTL_SET_SCHED, [2, 0, 30, 0, 0, 0]),
        EINVAL
    );
    assert_eq!(
        svc.domctl_reqs,
        [
            "ShutdownRequest { id: DomainId(5), reason: 2 }",
            "ShutdownRequest { id: DomainId(6), reason: 1 }",
            "SetSched { id: DomainId(2), weight: 512, cap: 30 }",
        ]
    );
    // Any domain may ask what was requested of it (nothing, in the fake).
    let mut svc = FakeSvc::new(0x2000);
    assert_eq!(call(&mut svc, HC_SHUTDOWN_REQUESTED, [u64::MAX; 6]), 0);
}

#[test]
fn mem_target_domctl_is_privileged_and_checked() {
    use pvabi::{EINVAL, HC_DOMCTL_MEM_TARGET, HC_MEM_TARGET, MEM_TARGET_QUERY};
    let mut svc = FakeSvc::new(0x2000);
    assert_eq!(
        call(&mut svc, HC_DOMCTL_MEM_TARGET, [2, 4096, 0, 0, 0, 0]),
        EPERM
    );
    assert!(svc.domctl_reqs.is_empty(), "nothing reached the system");
    // Any domain reads its own target: its quota until one is set.
    let max = svc.max_pages;
    assert_eq!(call(&mut svc, HC_MEM_TARGET, [u64::MAX; 6]) as u64, max);
    let mut svc = privileged();
    assert_eq!(
        call(&mut svc, HC_DOMCTL_MEM_TARGET, [2, 4096, 0, 0, 0, 0]),
        0
    );
    assert_eq!(
        call(
            &mut svc,
            HC_DOMCTL_MEM_TARGET,
            [5, MEM_TARGET_QUERY, 0, 0, 0, 0]
        ),
        0
    );
    for bad in [[2, 1023], [2, 0], [1 << 32, 4096]] {
        assert_eq!(
            call(&mut svc, HC_DOMCTL_MEM_TARGET, [bad[0], bad[1], 0, 0, 0, 0]),
            EINVAL,
            "{bad:?}"
        );
    }
    assert_eq!(
        call(&mut svc, HC_DOMCTL_MEM_TARGET, [6, 4096, 0, 0, 0, 0]),
        ENOENT
    );
    assert_eq!(
        svc.domctl_reqs,
        [
            "MemTarget { id: DomainId(2), pages: Some(4096) }",
            "MemTarget { id: DomainId(5), pages: None }",
            "MemTarget { id: DomainId(6), pages: Some(4096) }",
        ]
    );
}

#[test]
fn pci_assign_is_privileged_and_checked() {
    use pvabi::{EINVAL, HC_DOMCTL_PCI_ASSIGN};
    let mut svc = FakeSvc::new(0x2000);
    assert_eq!(call(&mut svc, HC_DOMCTL_PCI_ASSIGN, [u64::MAX; 6]), EPERM);
    assert!(svc.domctl_reqs.is_empty(), "nothing reached the system");
    let mut svc = privileged();
    let edu = u64::from(pvabi::sbdf(0, 0, 6, 0));
    assert_eq!(
        call(&mut svc, HC_DOMCTL_PCI_ASSIGN, [2, edu, 0, 0, 0, 0]),
        0
    );
    assert_eq!(
        call(&mut svc, HC_DOMCTL_PCI_ASSIGN, [6, edu, 0, 0, 0, 0]),
        ENOENT
    );
    assert_eq!(
        call(&mut svc, HC_DOMCTL_PCI_ASSIGN, [2, 1 << 32, 0, 0, 0, 0]),
        EINVAL
    );
    assert_eq!(
        call(&mut svc, HC_DOMCTL_PCI_ASSIGN, [1 << 32, edu, 0, 0, 0, 0]),
        EINVAL
    );
    assert_eq!(svc.domctl_reqs.len(), 2, "{:?}", svc.domctl_reqs);
    assert!(
        svc.domctl_reqs[0].starts_with(
            "PciAssign { id: DomainId(2), bdf: Bdf { seg: 0, bus: 0, dev: 6, func: 0 } }"
        ),
        "{:?}",
        svc.domctl_reqs
    );
}

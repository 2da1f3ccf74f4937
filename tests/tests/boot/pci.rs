//! PCI (issue 14, first slice; `docs/pci.md`): the hypervisor enumerates
//! the machine's PCI functions (ECAM from the MCFG on QEMU's q35, the
//! legacy 0xCF8/0xCFC ports on Bochs' i440FX), gives dom0 the assignable
//! ones when DMA is fenced (an IOMMU unit covers them, or
//! `iommu=off-unsafe`), maps their memory BARs into dom0 at
//! GPA = HPA, uncached, and filters config-space access.
//!
//! | test | machine | asserts |
//! |---|---|---|
//! | `pci_qemu_assigned` | q35 GRUB ISO, dom0 only, virtio-blk 00:03, virtio-net 00:04, NVMe 00:05, edu 00:06; `iommu=off-unsafe pci-hide=0000:00:1f.3` | the warning; one line per function with ids, class, BARs; bridges and the hidden SMBus kept; `pci: 8 devices, 5 assigned to dom0, 3 kept (2 bridge, 1 pci-hide)`; dom0 lists its five, reads each one's ids through the config hypercall, reads the NVMe version register and the edu identification and liveness registers through BAR0 |
//! | `pci_qemu_behind_vtd`, `pci_qemu_behind_amdvi` | the same machine with `intel-iommu` / `amd-iommu` first, no `iommu=` | no warning; every non-bridge device attached to dom0 through the unit, dom0 reads NVMe and edu registers through BAR0; the AMD IOMMU's own function 00:01.0 kept |
//! | `pci_qemu_no_iommu` | the same machine and modules, no `iommu=` | no warning; every function listed, none assigned, the reason on each line and in the summary; dom0 has no device |
//! | `pci_qemu_hostile` | q35 GRUB ISO, no dom0, edu 00:06, `pcihostile` twice | the config hypercalls on a device the guest does not own, on a missing one and with bad arguments fail with the documented errors; the guest that then maps the edu's BAR0 into its own page tables and reads it is killed for touching memory outside its own |
//! | `pci_qemu_hvctl` | q35 GRUB ISO, dom0 and `hello`, NVMe 00:05 and edu 00:06, `iommu=off-unsafe`, COM2 a socket | the real `hvctl host` lists dom0's four functions (NVMe, edu, SATA, SMBus) with their BARs, the memory ones `mapped` |
//! | `pci_bochs_vga` | Bochs (VT-x) with its PCI VGA, dom0, `iommu=off-unsafe` | the VGA's 16 MiB frame-buffer BAR is given to dom0 and mapped through the EPT (memory type UC); dom0 reads it without being killed |
//! | `pci_bochs_legacy` | Bochs i440FX (VT-x), dom0, `iommu=off-unsafe` | no MCFG: the legacy ports; the host, ISA and power-management bridges kept, the IDE and USB functions given to dom0, which reads their ids through the config hypercall (legacy ports) |

use boot_tests::Outcome;
use boot_tests::artifacts::{self, guest_module, shared_iso};
use boot_tests::bochs::{self, Pc};
use boot_tests::domains::ReportOnPanic;
use boot_tests::qemu::{BIOS_TIMEOUT_S, iso_vm, run, run_until};
use xtask::iso::Module;

/// The line dom0 prints after its PCI report (no boot configuration).
const DOM0_DONE: &str = "dom0: no boot configuration";

/// QEMU arguments for the four devices at fixed slots; their disks are
/// fresh 1 MiB files beside the test's directory (which the run empties).
fn devices(test: &str) -> Vec<String> {
    let dir = artifacts::root().join("disks").join(test);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{test}: {e}"));
    let disk = |n: &str| {
        let p = dir.join(n);
        std::fs::write(&p, vec![0u8; 1 << 20]).unwrap_or_else(|e| panic!("{test}: {e}"));
        p.display().to_string()
    };
    let (blk, nvme) = (disk("blk.img"), disk("nvme.img"));
    [
        "-drive".into(),
        format!("if=none,id=blk,format=raw,file={blk}"),
        "-device".into(),
        "virtio-blk-pci,drive=blk,addr=0x3".into(),
        "-netdev".into(),
        "user,id=net".into(),
        "-device".into(),
        "virtio-net-pci,netdev=net,addr=0x4".into(),
        "-drive".into(),
        format!("if=none,id=nvme,format=raw,file={nvme}"),
        "-device".into(),
        "nvme,drive=nvme,serial=kestrel0,addr=0x5".into(),
        "-device".into(),
        "edu,addr=0x6".into(),
    ]
    .into()
}

/// dom0 alone on q35 with the four devices and `options`, until dom0 has
/// reported its devices.
fn qemu_dom0(test: &str, options: &str) -> Outcome {
    qemu_dom0_behind(test, options, None, 8)
}

/// [`qemu_dom0`] with an IOMMU (`intel-iommu` or `amd-iommu`, placed
/// before the devices as QEMU requires) and the number of functions the
/// machine then has.
fn qemu_dom0_behind(test: &str, options: &str, iommu: Option<&str>, functions: usize) -> Outcome {
    let iso = shared_iso(
        &format!("{test}.iso"),
        &format!("exit=qemu dom0 loglevel=info {options}"),
        &[guest_module("dom0", "dom0", "")],
    );
    let mut vm = iso_vm(&iso, 1, "128M");
    if let Some(unit) = iommu {
        vm.extra.extend(["-device".into(), unit.into()]);
    }
    vm.extra.extend(devices(test).into_iter().map(Into::into));
    let o = run_until(test, vm, BIOS_TIMEOUT_S, Some(&[DOM0_DONE]));
    {
        let _r = ReportOnPanic(&o);
        assert_eq!(
            o.ended,
            xtask::runner::Ended::Stopped,
            "{test}: never reached {DOM0_DONE:?}"
        );
        assert!(
            o.fatal_lines().is_empty() && o.panic_lines().is_empty(),
            "{test}: died"
        );
        assert!(o.line("killed").is_none(), "{test}: a domain was killed");
        o.expect_line("pci: segment 0000 buses 00-ff ECAM at 0xb0000000");
        o.expect_line(&format!("pci: {functions} functions through ECAM"));
        o.expect_line("pci: 0000:00:00.0 8086:29c0 class 06.00 kept: bridge");
        o.expect_line("pci: 0000:00:1f.0 8086:2918 class 06.01 kept: bridge");
    }
    o
}

/// The hypervisor's line for a function, which must not say it is kept.
fn assigned_line<'a>(o: &'a Outcome, prefix: &str) -> &'a str {
    let l = o.expect_line(&format!("pci: {prefix}"));
    assert!(!l.contains("kept"), "{}: {l}", o.test);
    l
}

#[test]
fn pci_qemu_assigned() {
    let o = qemu_dom0(
        "pci_qemu_assigned",
        "iommu=off-unsafe pci-hide=0000:00:1f.3",
    );
    let _r = ReportOnPanic(&o);
    o.expect_line("iommu=off-unsafe: PCI devices are assigned with no DMA isolation");
    let blk = assigned_line(&o, "0000:00:03.0 1af4:1001 class 01.00 BAR0 io ");
    assert!(
        blk.contains(" BAR4 mem64 pf ") && blk.ends_with(" msix"),
        "{blk}"
    );
    assigned_line(&o, "0000:00:04.0 1af4:1000 class 02.00 BAR0 io ");
    let nvme = assigned_line(&o, "0000:00:05.0 1b36:0010 class 01.08 BAR0 mem64 ");
    assert!(nvme.ends_with(" msix pcie"), "{nvme}");
    assigned_line(&o, "0000:00:06.0 1234:11e8 class 00.ff BAR0 mem32 0x");
    o.expect_line("pci: 0000:00:1f.3 8086:2930 class 0c.05 BAR4 io 0x700+0x40 kept: pci-hide");
    o.expect_line("pci: 8 devices, 5 assigned to dom0, 3 kept (2 bridge, 1 pci-hide)");
    // dom0's side: its five devices, each one's ids read back through the
    // config hypercall, and registers read through mapped BARs.
    o.expect_line("dom0: pci: 5 devices");
    let dblk = o.expect_line("dom0: pci 0000:00:03.0 1af4:1001 virtio-blk BAR0 io ");
    assert!(
        dblk.contains(" mem64 ") && dblk.contains(" mapped"),
        "{dblk}"
    );
    o.expect_line("dom0: pci 0000:00:04.0 1af4:1000 virtio-net");
    o.expect_line("dom0: pci 0000:00:05.0 1b36:0010 nvme BAR0 mem64 ");
    o.expect_line("dom0: pci 0000:00:06.0 1234:11e8 edu BAR0 mem32 ");
    o.expect_line("dom0: pci 0000:00:1f.2 8086:2922 sata");
    for (bdf, id) in [
        ("00:03.0", "10011af4"),
        ("00:04.0", "10001af4"),
        ("00:05.0", "00101b36"),
        ("00:06.0", "11e81234"),
        ("00:1f.2", "29228086"),
    ] {
        o.expect_line(&format!(
            "dom0: pci 0000:{bdf} config: id {id} (matches), command 0x"
        ));
    }
    assert!(o.line("MISMATCH").is_none() && o.line("failed").is_none());
    // QEMU 7.2's NVMe controller reports 1.4 (hw/nvme/ctrl.c NVME_SPEC_VER).
    o.expect_line("dom0: pci 0000:00:05.0 nvme: version 1.4 through BAR0");
    // edu: identification 0x010000ed; liveness returns the inverse.
    o.expect_line("dom0: pci 0000:00:06.0 edu: id 0x010000ed, liveness 0xedcba987 through BAR0");
}

/// Behind a real IOMMU, with no `iommu=` option: every device dom0 gets is
/// fenced by the unit (attached to dom0's memory) and its BARs still work.
fn behind_iommu(test: &str, unit: &str, functions: usize) -> Outcome {
    let o = qemu_dom0_behind(test, "", Some(unit), functions);
    {
        let _r = ReportOnPanic(&o);
        assert!(
            o.line("assigned with no DMA isolation").is_none(),
            "{test}: no warning without the option"
        );
        assert!(
            o.line("kept: no IOMMU").is_none(),
            "{test}: a device not covered"
        );
        assigned_line(&o, "0000:00:03.0 1af4:1001 class 01.00 BAR0 io ");
        assigned_line(&o, "0000:00:05.0 1b36:0010 class 01.08 BAR0 mem64 ");
        assigned_line(&o, "0000:00:06.0 1234:11e8 class 00.ff BAR0 mem32 0x");
        o.expect_line("dom0: pci 0000:00:05.0 nvme: version 1.4 through BAR0");
        o.expect_line(
            "dom0: pci 0000:00:06.0 edu: id 0x010000ed, liveness 0xedcba987 through BAR0",
        );
        assert!(o.line("MISMATCH").is_none() && o.line("failed").is_none());
    }
    o
}

#[test]
fn pci_qemu_behind_vtd() {
    let o = behind_iommu("pci_qemu_behind_vtd", "intel-iommu", 8);
    let _r = ReportOnPanic(&o);
    o.expect_line("iommu: VT-d unit 0 at ");
    o.expect_line("pci: 8 devices, 6 assigned to dom0, 2 kept (2 bridge)");
}

#[test]
fn pci_qemu_behind_amdvi() {
    // The AMD IOMMU is itself a PCI function (00:01.0 here, before the
    // devices): a ninth function, which the hypervisor keeps.
    let o = behind_iommu("pci_qemu_behind_amdvi", "amd-iommu", 9);
    let _r = ReportOnPanic(&o);
    o.expect_line("iommu: AMD-Vi unit 0 at ");
    o.expect_line("pci: 0000:00:01.0 1022:0008 class 08.06 msi kept: IOMMU");
    o.expect_line("pci: 9 devices, 6 assigned to dom0, 3 kept (2 bridge, 1 IOMMU)");
    assert!(
        o.line("dom0: pci 0000:00:01.0").is_none(),
        "dom0 got the IOMMU"
    );
}

#[test]
fn pci_qemu_no_iommu() {
    let o = qemu_dom0("pci_qemu_no_iommu", "");
    let _r = ReportOnPanic(&o);
    assert!(
        o.line("assigned with no DMA isolation").is_none(),
        "no warning without the option"
    );
    let why = "kept: no IOMMU covers it and iommu=off-unsafe is not set";
    for f in [
        "0000:00:03.0 1af4:1001",
        "0000:00:04.0",
        "0000:00:05.0",
        "0000:00:06.0",
        "0000:00:1f.2",
        "0000:00:1f.3",
    ] {
        let l = o.expect_line(&format!("pci: {f}"));
        assert!(l.ends_with(why), "{l}");
    }
    o.expect_line(
        "pci: 8 devices, 0 assigned to dom0, 8 kept (2 bridge, 6 no IOMMU covers it and iommu=off-unsafe is not set)",
    );
    o.expect_line("dom0: pci: 0 devices");
    assert!(o.line("dom0: pci 0000").is_none());
}

#[test]
fn pci_qemu_hostile() {
    let test = "pci_qemu_hostile";
    let modules = vec![
        Module::named(artifacts::guest("pcihostile"), "calls", "")
            .unwrap_or_else(|e| panic!("{e}")),
        Module::named(artifacts::guest("pcihostile"), "touch", "touch-bar")
            .unwrap_or_else(|e| panic!("{e}")),
    ];
    let iso = shared_iso(
        &format!("{test}.iso"),
        "exit=qemu shutdown loglevel=info iommu=off-unsafe",
        &modules,
    );
    let mut vm = iso_vm(&iso, 1, "128M");
    vm.extra.extend(["-device".into(), "edu,addr=0x6".into()]);
    let o = run(test, vm, BIOS_TIMEOUT_S);
    let _r = ReportOnPanic(&o);
    o.assert_qemu_success("multiboot2");
    // The address the guest touches is the edu's BAR0 on this machine.
    o.expect_line("pci: 0000:00:06.0 1234:11e8 class 00.ff BAR0 mem32 0xfea00000+0x100000 msi");
    o.expect_line("pci: 5 devices, 0 assigned to dom0, 5 kept (2 bridge, 3 no dom0)");
    let calls = o.assert_domain("calls", "exited", 0);
    o.assert_no_failed_check(&calls, "pcihostile:");
    o.expect_line("pcihostile: 16 checks, 0 failed");
    o.expect_line("pcihostile: reading another's BAR");
    assert!(
        o.line("NOT KILLED").is_none(),
        "{test}: the BAR read went through"
    );
    let kill = o.expect_line("(touch) killed: ");
    assert!(kill.contains("0xfea00000"), "{kill}");
}

/// VT-x's EPT mapping of a memory BAR (uncached, memory type UC): Bochs'
/// PCI VGA (a 16 MiB frame buffer BAR) given to dom0, which reads it.
#[test]
fn pci_bochs_vga() {
    let test = "pci_bochs_vga";
    let iso = shared_iso(
        &format!("{test}.iso"),
        "exit=bochs dom0 loglevel=info iommu=off-unsafe",
        &[guest_module("dom0", "dom0", "")],
    );
    let mut pc = Pc::new("corei7_haswell_4770", 1, 128);
    pc.extra = vec![
        "pci: enabled=1, chipset=i440fx, slot1=pcivga",
        "vga: extension=vbe",
    ];
    let o = bochs::run_iso(test, &pc, &iso, Some(&[DOM0_DONE]), bochs::TIMEOUT_S);
    let _r = ReportOnPanic(&o);
    assert_eq!(
        o.ended,
        xtask::runner::Ended::Stopped,
        "{test}: never reached {DOM0_DONE:?}"
    );
    o.expect_line("virt: running guests with VT-x/EPT");
    o.expect_line("pci: 0000:00:02.0 1234:1111 class 03.00 BAR0 mem32 pf 0xc0000000+0x1000000");
    let vga = o.expect_line("dom0: pci 0000:00:02.0 1234:1111 ");
    assert!(
        vga.contains(" display BAR0 mem32 ") && vga.contains(" mapped"),
        "{vga}"
    );
    o.expect_line("dom0: pci 0000:00:02.0 display: BAR0 word 0 = 0x");
    assert!(o.line("killed").is_none() && o.line("MISMATCH").is_none());
}

#[test]
fn pci_bochs_legacy() {
    let test = "pci_bochs_legacy";
    let iso = shared_iso(
        &format!("{test}.iso"),
        "exit=bochs dom0 loglevel=info iommu=off-unsafe",
        &[guest_module("dom0", "dom0", "")],
    );
    let o = bochs::run_iso(
        test,
        &Pc::new("corei7_haswell_4770", 1, 128),
        &iso,
        Some(&[DOM0_DONE]),
        bochs::TIMEOUT_S,
    );
    let _r = ReportOnPanic(&o);
    assert_eq!(
        o.ended,
        xtask::runner::Ended::Stopped,
        "{test}: never reached {DOM0_DONE:?}"
    );
    o.expect_line("virt: running guests with VT-x/EPT");
    o.expect_line("pci: no ACPI MCFG: legacy configuration ports");
    o.expect_line("functions through legacy 0xcf8/0xcfc");
    o.expect_line("pci: 0000:00:00.0 8086:1237 class 06.00 kept: bridge");
    o.expect_line("pci: 0000:00:01.0 8086:7000 class 06.01 kept: bridge");
    let ide = assigned_line(&o, "0000:00:01.1 8086:7010 class 01.01 BAR4 io ");
    assert!(!ide.contains("mem"), "{ide}");
    // The PIIX4 power-management function (class 06.80) is a bridge too.
    o.expect_line("pci: 0000:00:01.3 8086:7113 class 06.80 kept: bridge");
    o.expect_line("pci: 5 devices, 2 assigned to dom0, 3 kept (3 bridge)");
    o.expect_line("dom0: pci 0000:00:01.2 8086:7020 usb BAR4 io ");
    o.expect_line("dom0: pci 0000:00:01.1 8086:7010 storage");
    o.expect_line("dom0: pci 0000:00:01.1 config: id 70108086 (matches), command 0x");
    assert!(o.line("MISMATCH").is_none() && o.line("killed").is_none());
}

/// `hvctl host` from the operator's side: dom0 reports its devices over
/// the management line (q35, dom0 and `hello`, `iommu=off-unsafe`, the
/// NVMe controller and edu; COM2 is a socket as in `dom0_qemu_hvctl`).
#[test]
fn pci_qemu_hvctl() {
    use boot_tests::mgmt::{hvctl_cmd, input_file, wait_for_line};
    const TEST: &str = "pci_qemu_hvctl";
    const END: &str = "[[domain]]\nname = \"end\"\nimage = \"hello\"\nmemory = 4\ncmdline = \"kestrel-test-end\"\n";
    let modules = [
        guest_module("dom0", "dom0", ""),
        guest_module("hello", "hello", ""),
    ];
    let iso = shared_iso(
        &format!("{TEST}.iso"),
        "exit=qemu dom0 loglevel=info iommu=off-unsafe",
        &modules,
    );
    let run_dir = artifacts::root().join("runs").join(TEST);
    let _ = std::fs::remove_dir_all(&run_dir);
    let sock = run_dir.join("mgmt.sock");
    let log = run_dir.join("serial.log");
    let mut vm = iso_vm(&iso, 1, "128M");
    vm.extra.extend(
        [
            "-chardev".to_string(),
            format!("socket,id=mgmt,path={},server=on,wait=off", sock.display()),
            "-serial".into(),
            "chardev:mgmt".into(),
        ]
        .into_iter()
        .chain(devices(TEST).into_iter().skip(8))
        .map(Into::into),
    );
    let qemu = std::thread::spawn(move || {
        run_until(
            TEST,
            vm,
            BIOS_TIMEOUT_S,
            Some(&["[end] hello from", "kestrel-test-end"]),
        )
    });
    let ready = wait_for_line(&log, "dom0: ready: ", boot_tests::scaled(90));
    let session = std::panic::catch_unwind(|| {
        ready.unwrap_or_else(|| panic!("{TEST}: dom0 never became ready"));
        let (code, out, err) = hvctl_cmd(&sock, &["host"]);
        assert_eq!(code, 0, "{err}");
        let pci: Vec<&str> = out.lines().skip_while(|l| !l.starts_with("pci:")).collect();
        assert_eq!(pci.len(), 4, "{out}");
        assert!(
            pci[0].starts_with("pci:         0000:00:05.0 1b36:0010 nvme BAR0 mem64 0x"),
            "{out}"
        );
        assert!(pci[0].ends_with(" mapped"), "{out}");
        assert!(
            pci[1].starts_with("             0000:00:06.0 1234:11e8 edu BAR0 mem32 0x"),
            "{out}"
        );
        assert!(pci[1].ends_with("+0x100000 mapped"), "{out}");
        assert!(
            pci[2].contains("0000:00:1f.2 8086:2922 sata")
                && pci[3].contains("0000:00:1f.3 8086:2930 smbus"),
            "{out}"
        );
    });
    let end = input_file(TEST, "end.toml", END);
    let _ = hvctl_cmd(&sock, &["create", end.to_str().unwrap_or("")]);
    let o = qemu
        .join()
        .unwrap_or_else(|_| panic!("the QEMU thread panicked"));
    let _report = ReportOnPanic(&o);
    if let Err(e) = session {
        std::panic::resume_unwind(e);
    }
    assert_eq!(o.ended, xtask::runner::Ended::Stopped, "{TEST}");
}

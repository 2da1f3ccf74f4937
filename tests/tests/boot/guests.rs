//! The guest suite (`guests/src/bin/`), on both backends: AMD-V with nested
//! paging under QEMU TCG (`-cpu max`), and VT-x with EPT under Bochs on two
//! Intel models (Haswell and Tiger Lake).
//!
//! - `guests_suite_*`: two `hello`s with different arguments, `oob`,
//!   `hammer`, `triple`, `privileged` and `cpuid` on 2 CPUs. Every domain
//!   must end the way it should (the faulty ones killed with the right
//!   reason, the others exiting 0), the hypervisor must go on and end
//!   cleanly, guests must have run on both CPUs at once, and every frame
//!   must come back.
//! - `guests_preemption_*`: `spin` (never yields, never exits), `hello` and
//!   a shorter `hammer` on 1 CPU. `hello` and `hammer` can only finish if the
//!   timer takes the CPU away from `spin`; the harness stops the machine at
//!   `hammer`'s `domain-end:` line, since `spin` never ends.

use boot_tests::Outcome;
use boot_tests::artifacts::{guest_module, shared_iso};
use boot_tests::bochs::{self, Pc};
use boot_tests::qemu::{iso_vm, run_until};
use xtask::iso::Module;
use xtask::runner::Ended;

/// Deadline of a run of the suite (normally well under a minute).
const SUITE_TIMEOUT_S: u64 = 240;
/// Deadline of a preemption run (normally ~10 s). Without preemption it
/// never ends by itself, so this is how long a failure takes.
const PREEMPTION_TIMEOUT_S: u64 = 120;
/// Intel models: the one the other Bochs test uses, and a newer one whose
/// banner also shows VT-x with EPT in Debian's Bochs 2.7 (so do
/// `corei7_skylake_x`, `corei7_icelake_u` and `broadwell_ult`).
const HASWELL: &str = "corei7_haswell_4770";
const TIGERLAKE: &str = "tigerlake";

/// Calls the suite's `hammer` makes, half yields: enough that it still
/// runs beside the other guests on both CPUs for thousands of slices.
/// Under QEMU (multi-threaded TCG, one host thread per CPU) the boot CPU
/// joins the run loop only after it has started every domain, and a loaded
/// host may hold its thread back that long: 200,000 calls once ended with
/// every short guest and `hammer` done on CPU 1 first (`max_concurrent=1`
/// in a fresh-clone run), so QEMU gets the full 1,000,000 (a few seconds
/// there). Bochs emulates both CPUs in one thread, in step, where 200,000
/// are plenty; its 1,000,000 took about 100 s of a 2-core CI machine per
/// model.
fn suite_hammer_calls(b: Backend) -> u32 {
    match b {
        Backend::Svm => 1_000_000,
        Backend::Vmx => 200_000,
    }
}

/// Calls the preemption test's `hammer` makes: enough to need many time
/// slices, few enough to finish in seconds while sharing the CPU.
const PREEMPT_HAMMER_ARGS: &str = "calls=100000 noyield";

use boot_tests::Backend;

fn suite_modules(b: Backend) -> Vec<Module> {
    let hammer = format!("calls={}", suite_hammer_calls(b));
    vec![
        guest_module("hello", "hello.elf", "greeting=first n=1"),
        guest_module("hello", "hello-2.elf", "greeting=second n=2"),
        guest_module("oob", "oob.elf", ""),
        guest_module("hammer", "hammer.elf", &hammer),
        guest_module("hammer", "hammer-2.elf", &hammer),
        guest_module("triple", "triple.elf", ""),
        guest_module("privileged", "privileged.elf", ""),
        guest_module("cpuid", "cpuid.elf", ""),
    ]
}

fn preemption_modules() -> Vec<Module> {
    vec![
        guest_module("spin", "spin.elf", ""),
        guest_module("hello", "hello.elf", "while=spinning"),
        guest_module("hammer", "hammer.elf", PREEMPT_HAMMER_ARGS),
    ]
}

fn suite_iso(b: Backend) -> std::path::PathBuf {
    shared_iso(
        &format!("suite-{}.iso", b.suffix()),
        &format!("{} shutdown loglevel=info", b.exit()),
        &suite_modules(b),
    )
}

fn preemption_iso(b: Backend) -> std::path::PathBuf {
    shared_iso(
        &format!("preemption-{}.iso", b.suffix()),
        &format!("{} shutdown loglevel=info", b.exit()),
        &preemption_modules(),
    )
}

/// What every run of the suite must show.
fn check_suite(o: &Outcome, b: Backend) {
    o.assert_booted("multiboot2");
    o.expect_line(b.running_line());
    let stats = o.stats();
    assert_eq!(stats.cpus, 2, "{}: the suite runs on 2 CPUs", o.test);

    o.assert_hello_ran("hello.elf", "greeting=first n=1");
    o.assert_hello_ran("hello-2.elf", "greeting=second n=2");
    let cpuid = o.assert_domain("cpuid.elf", "exited", 0);
    o.assert_printed(&cpuid, "signature \"KestrelHyper\"");
    o.assert_printed(&cpuid, "cpuid checks: 0 failed");
    // Two long guests: once the boot CPU has started every domain and
    // joins the run loop, one of them still waits beside the other and
    // it takes it, so two guests run at once (checked below) however the
    // short guests were placed meanwhile.
    for name in ["hammer.elf", "hammer-2.elf"] {
        let hammer = o.assert_domain(name, "exited", 0);
        let calls = suite_hammer_calls(b);
        o.assert_printed(
            &hammer,
            &format!("{calls} hypercalls, 0 wrong return values"),
        );
        assert!(
            hammer.exits >= u64::from(calls),
            "{}: {name} took {} exits for {calls} hypercalls",
            o.test,
            hammer.exits
        );
    }

    let oob = o.assert_killed("oob.elf", &["outside its memory"]);
    o.assert_printed(&oob, "writing to guest-physical");
    let triple = o.assert_killed("triple.elf", &["triple fault"]);
    o.assert_printed(&triple, "about to triple-fault");
    // QEMU's TCG reports INVD as a WBINVD intercept (it decodes both to
    // the same helper); Bochs reports INVD.
    let privileged = match b {
        Backend::Svm => o.assert_killed("privileged.elf", &["executed INVD", "executed WBINVD"]),
        Backend::Vmx => o.assert_killed("privileged.elf", &["executed INVD"]),
    };
    o.assert_printed(&privileged, "executing INVD");
    for d in o.domain_ends() {
        let errors: Vec<&str> = o
            .console_of(&d)
            .into_iter()
            .filter(|l| l.contains("ERROR"))
            .collect();
        assert!(
            errors.is_empty(),
            "{}: {} reported {errors:?}",
            o.test,
            d.name
        );
    }

    // 5 clean (two hellos, cpuid, two hammers), 3 killed; no frame leaked.
    let all = o.assert_all_ended(8, 5);
    assert!(
        all.max_concurrent >= 2,
        "{}: max_concurrent={}: guests never ran on both CPUs at once",
        o.test,
        all.max_concurrent
    );
}

/// What every preemption run must show.
fn check_preemption(o: &Outcome, b: Backend) {
    assert_eq!(
        o.ended,
        Ended::Stopped,
        "{}: the run must be ended by the harness at hammer's domain-end line",
        o.test
    );
    o.assert_booted("multiboot2");
    o.expect_line(b.running_line());
    assert_eq!(o.stats().cpus, 1, "{}: one CPU for all three", o.test);

    // spin is domain 1, so it has the CPU first; it printed and then never
    // ended.
    let spin_out = xtask::serial::console(&o.lines, 1, "spin.elf");
    assert!(
        spin_out.iter().any(|l| l.contains("spinning forever")),
        "{}: spin (domain 1) never printed; it printed {spin_out:?}",
        o.test
    );
    assert!(
        o.domain_ends().iter().all(|d| d.name != "spin.elf"),
        "{}: spin ended, yet it loops forever",
        o.test
    );
    o.assert_hello_ran("hello.elf", "while=spinning");
    let hammer = o.assert_domain("hammer.elf", "exited", 0);
    o.assert_printed(&hammer, "100000 hypercalls, 0 wrong return values");
    assert!(
        o.all_ended().is_none(),
        "{}: `domains: all ... ended` with spin still running",
        o.test
    );
}

fn qemu_suite(test: &str) {
    let mut vm = iso_vm(&suite_iso(Backend::Svm), 2, "256M");
    vm.cpu = "max".into();
    let o = run_until(test, vm, SUITE_TIMEOUT_S, None);
    o.assert_status(xtask::qemu::STATUS_SUCCESS);
    check_suite(&o, Backend::Svm);
}

fn bochs_suite(test: &str, model: &'static str) {
    let o = bochs::run_iso(
        test,
        &Pc::new(model, 2, 256),
        &suite_iso(Backend::Vmx),
        None,
        SUITE_TIMEOUT_S,
    );
    let virt = o.expect_line("virt: Intel VT-x (VMX)");
    assert!(virt.contains("+EPT"), "{test}: `{virt}` lacks EPT");
    check_suite(&o, Backend::Vmx);
}

const HAMMER_END: &[&str] = &["domain-end:", "name=hammer.elf"];

fn qemu_preemption(test: &str) {
    let mut vm = iso_vm(&preemption_iso(Backend::Svm), 1, "256M");
    vm.cpu = "max".into();
    let o = run_until(test, vm, PREEMPTION_TIMEOUT_S, Some(HAMMER_END));
    check_preemption(&o, Backend::Svm);
}

fn bochs_preemption(test: &str, model: &'static str) {
    let o = bochs::run_iso(
        test,
        &Pc::new(model, 1, 256),
        &preemption_iso(Backend::Vmx),
        Some(HAMMER_END),
        PREEMPTION_TIMEOUT_S,
    );
    check_preemption(&o, Backend::Vmx);
}

#[test]
fn guests_suite_amdv_qemu() {
    qemu_suite("guests_suite_amdv_qemu");
}

#[test]
fn guests_suite_vtx_haswell() {
    bochs_suite("guests_suite_vtx_haswell", HASWELL);
}

#[test]
fn guests_suite_vtx_tigerlake() {
    bochs_suite("guests_suite_vtx_tigerlake", TIGERLAKE);
}

#[test]
fn guests_preemption_amdv_qemu() {
    qemu_preemption("guests_preemption_amdv_qemu");
}

// On VT-x the slice is ended by the VMX-preemption timer as well as the
// host's timer interrupt: Bochs 2.7 loads the guest's RFLAGS before it
// counts itself in VMX non-root mode, so a guest entered with RFLAGS.IF=0
// (every Kestrel guest) never takes the external-interrupt exit there
// (docs/testing.md). Without the preemption timer these runs time out.

#[test]
fn guests_preemption_vtx_haswell() {
    bochs_preemption("guests_preemption_vtx_haswell", HASWELL);
}

#[test]
fn guests_preemption_vtx_tigerlake() {
    bochs_preemption("guests_preemption_vtx_tigerlake", TIGERLAKE);
}

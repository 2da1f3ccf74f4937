//! The control domain (`dom0`, module 0 under the hypervisor's `dom0`
//! option) booting domains from its boot configuration, refusing a bad
//! one, and serving `hvctl` on the second serial line.
//!
//! | test | machine | asserts |
//! |---|---|---|
//! | `dom0_{qemu,bochs}_config` | GRUB ISO, 2 CPUs, 128 MiB; `dom0`, `hello`, `ticker`, `guests.toml` with `hello-a` and `tick-b` (autostart) and `tick-c` (`autostart = false`); run until `[tick-b] ticker: tick 3` | dom0 is the only domain the hypervisor started; the hypervisor logged exactly the three creations by dom0, from the right modules; dom0 said which it started and that `tick-c` waits paused; `hello-a`'s greeting arrived through dom0 as `[hello-a] ...` (no `[domN ...]` line from any guest), with its command line; `tick-c` printed nothing; `hello-a` exited 0 |
//! | `dom0_{qemu,bochs}_bad_config` | the same modules, a configuration with four mistakes | dom0 printed each as `guests.toml:line:col: domain "...": field "...": ...` and `4 error(s): no domain created`; the hypervisor created no domain besides dom0 |
//! | `dom0_qemu_hvctl` | QEMU only (COM2 is a QEMU chardev socket), the three tickers `tick-a`, `tick-b`, `tick-c` autostarted | the real `hvctl` binary: `list` shows dom0 and the three running; `create` of a fourth; `create` of a file whose second domain does not fit refused with `no_resources` and its first domain destroyed again; `pause`/`info`/`unpause`; `console` streams `tick-b`'s lines; `destroy` of the fourth: free memory after equals free memory before it was created; the three keep ticking after it |
//! | `dom0_qemu_console` | QEMU only, `dom0`, `echo`, a configuration starting `echo-a` | console input (pvabi 1.3, `dom0_console.rs`): the real `hvctl console echo-a` types `hello kestrel` and `quit`; the guest, woken by `VIRQ_CONSOLE`, echoes the line (on COM1 as `[echo-a] echo: ...` and on hvctl's stdout) and exits 0 on `quit`; hvctl then exits 0 |

use boot_tests::artifacts::{guest_module, shared_iso};
use boot_tests::bochs::{self, Pc};
use boot_tests::domains::ReportOnPanic;
use boot_tests::qemu::{BIOS_TIMEOUT_S, iso_vm, run_until};
use boot_tests::{Backend, Outcome};
use xtask::iso::Module;

const CONFIG: &str = r#"# dom0 boot test: two autostart domains, one left paused
[[domain]]
name = "hello-a"
image = "hello"
memory = 4
cmdline = "greeting=from-config"

[[domain]]
name = "tick-b"
image = "ticker"
memory = 4
cmdline = "every_ms=50"

[[domain]]
name = "tick-c"
image = "ticker"
memory = 6
autostart = false
"#;

const BAD_CONFIG: &str = r#"[[domain]]
name = "ok"
image = "hello"
memory = 4

[[domain]]
name = "odd"
image = "hello"
memory = 5
vcpu = 2

[[domain]]
name = "missing"
image = "nginx.elf"
memory = 4
cmdline = 7
"#;

pub(crate) use boot_tests::mgmt::{config_module, hvctl_cmd, mgmt_vm, wait_for_line};

fn modules(test: &str, config: &str) -> Vec<Module> {
    vec![
        guest_module("dom0", "dom0", ""),
        guest_module("hello", "hello", ""),
        guest_module("ticker", "ticker", ""),
        config_module(test, config),
    ]
}

/// Boots `config` on backend `b` until a serial line holds `stop`.
fn boot(test: &str, b: Backend, config: &str, stop: &[&str]) -> Outcome {
    boot_with(test, b, config, stop, &[])
}

/// [`boot`] with `extra` boot modules besides dom0, `hello` and `ticker`.
fn boot_with(test: &str, b: Backend, config: &str, stop: &[&str], extra: &[Module]) -> Outcome {
    let mut modules = modules(test, config);
    modules.extend_from_slice(extra);
    let iso = shared_iso(
        &format!("{test}.iso"),
        &format!("{} dom0 loglevel=info", b.exit()),
        &modules,
    );
    let o = match b {
        Backend::Svm => {
            let mut vm = iso_vm(&iso, 2, "128M");
            vm.cpu = "max".into();
            run_until(test, vm, BIOS_TIMEOUT_S, Some(stop))
        }
        Backend::Vmx => bochs::run_iso(
            test,
            &Pc::new("corei7_haswell_4770", 2, 128),
            &iso,
            Some(stop),
            bochs::TIMEOUT_S,
        ),
    };
    {
        let _report = ReportOnPanic(&o);
        assert_eq!(
            o.ended,
            xtask::runner::Ended::Stopped,
            "{test}: never reached {stop:?}"
        );
        assert!(
            o.fatal_lines().is_empty() && o.panic_lines().is_empty(),
            "{test}: died"
        );
    }
    o
}

/// Hypervisor log lines `domain N (NAME) created by domain 1 (dom0) from module M`.
fn creations(o: &Outcome) -> Vec<(String, String)> {
    o.lines
        .iter()
        .filter_map(|l| {
            let rest = l.split("] domain ").nth(1)?;
            let (head, module) = rest.split_once(") created by domain 1 (dom0) from module ")?;
            let name = head.split_once(" (")?.1;
            Some((name.to_string(), module.trim().to_string()))
        })
        .collect()
}

fn config(b: Backend) {
    let test = format!("dom0_{}_config", b.suffix());
    let o = boot(&test, b, CONFIG, &["[tick-b] ticker: tick 3"]);
    let _report = ReportOnPanic(&o);
    o.assert_booted("multiboot2");
    let started: Vec<&String> = o
        .lines
        .iter()
        .filter(|l| l.contains("nested-table frames, started"))
        .collect();
    assert_eq!(
        started.len(),
        1,
        "{test}: only dom0 is started by the hypervisor: {started:?}"
    );
    assert!(
        started[0].contains("domain 1 (dom0)"),
        "{test}: {started:?}"
    );
    let made = creations(&o);
    let want = [
        ("hello-a", "hello"),
        ("tick-b", "ticker"),
        ("tick-c", "ticker"),
    ];
    let made: Vec<(&str, &str)> = made.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(made, want, "{test}: creations");
    o.assert_in_order(&[
        "dom0: kestrel-dom0",
        "dom0: domain 2 (hello-a) started from guests.toml",
        "dom0: domain 3 (tick-b) started from guests.toml",
        "dom0: domain 4 (tick-c) created paused from guests.toml",
        "dom0: ready: ",
    ]);
    o.expect_line(&format!(
        "[hello-a] hello from domain 2: 4 MiB, pvabi {:#x}, cmdline \"greeting=from-config\"",
        pvabi::PVABI_VERSION
    ));
    o.expect_line("[tick-b] ticker: started, domain 3");
    assert!(
        !o.lines.iter().any(|l| l.starts_with("[tick-c]")),
        "{test}: tick-c is paused and must not have run"
    );
    assert!(
        !o.lines
            .iter()
            .any(|l| l.starts_with("[dom") && !l.starts_with("[dom1 dom0]")),
        "{test}: a guest's console bypassed dom0"
    );
    let hello = o.assert_domain("hello-a", "exited", 0);
    assert_eq!(hello.id, 2, "{test}");
}

fn bad_config(b: Backend) {
    let test = format!("dom0_{}_bad_config", b.suffix());
    let o = boot(
        &test,
        b,
        BAD_CONFIG,
        &["dom0: guests.toml: ", "no domain created"],
    );
    let _report = ReportOnPanic(&o);
    let errors: Vec<&str> = o
        .lines
        .iter()
        .filter_map(|l| l.strip_prefix("dom0: guests.toml:"))
        .filter(|l| !l.starts_with(' '))
        .collect();
    let want = [
        "9:10: domain \"odd\": field \"memory\": 5 is not a multiple of 2 MiB",
        "10:1: domain \"odd\": field \"vcpu\": unknown field, did you mean \"vcpus\"?",
        "14:9: domain \"missing\": field \"image\": \"nginx.elf\" is not a boot module (modules: hello, ticker)",
        "16:11: domain \"missing\": field \"cmdline\": expected a string, found the integer 7",
    ];
    assert_eq!(
        errors, want,
        "{test}: every error, with file, line, column, domain and field"
    );
    o.expect_line("dom0: guests.toml: 4 error(s): no domain created");
    assert!(creations(&o).is_empty(), "{test}: a domain was created");
    assert!(o.domain_ends().is_empty(), "{test}: a domain ran");
}

#[test]
fn dom0_qemu_config() {
    config(Backend::Svm);
}

#[test]
fn dom0_bochs_config() {
    config(Backend::Vmx);
}

#[test]
fn dom0_qemu_bad_config() {
    bad_config(Backend::Svm);
}

#[test]
fn dom0_bochs_bad_config() {
    bad_config(Backend::Vmx);
}

#[path = "dom0_sleep.rs"]
mod sleep_session;

#[path = "dom0_hvctl.rs"]
mod hvctl_session;

#[path = "dom0_console.rs"]
mod console_session;

#[path = "dom0_many.rs"]
mod many_session;

#[path = "dom0_ended.rs"]
mod ended_session;

#[path = "dom0_lifecycle.rs"]
mod lifecycle_session;

#[path = "dom0_idle.rs"]
mod idle_session;

#[path = "dom0_crash.rs"]
mod crash_session;

#[path = "dom0_events.rs"]
mod events_session;

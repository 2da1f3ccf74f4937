//! What the tests of Linux domains that dom0 makes share
//! (`linux_dom0.rs`, `linux_reboot.rs`, `linux_shutdown.rs`,
//! `linux_shell_shutdown.rs`): a Linux domain's TOML, the check that no
//! kernel line says something broke and the hypervisor lived, a Bochs
//! (VT-x) run of dom0 and its boot configuration, and a Bochs machine
//! whose COM2 (dom0's management line) is a TCP socket for the test to
//! bridge to `hvctl`.

use std::panic::UnwindSafe;
use std::path::{Path, PathBuf};

use xtask::iso::Module;

use crate::artifacts::{guest_module, root, shared_iso};
use crate::bochs::{Pc, TIMEOUT_S, run_iso};
use crate::guest_run::GuestRun;
use crate::mgmt::{config_module, linux_modules};
use crate::session::{END_LINE, Machine, create_end};
use crate::tcp::free_port;
use crate::{Backend, Outcome};

/// What no Linux console may say.
pub const BAD: [&str; 4] = [
    "WARNING:",
    "BUG:",
    "unchecked MSR access",
    "general protection",
];

/// A 1-vCPU Linux domain's TOML: `name`, `memory` MiB, the boot modules
/// `vmlinux` and `initramfs.cpio`, `args` after `console=hvc0 ` on its
/// command line, then `extra` (whole TOML lines).
pub fn linux_domain(name: &str, memory: u32, args: &str, extra: &str) -> String {
    format!(
        "[[domain]]\nname = \"{name}\"\nkernel = \"vmlinux\"\ninitrd = \"initramfs.cpio\"\n\
         memory = {memory}\nvcpus = 1\ncmdline = \"console=hvc0 {args}\"\n{extra}"
    )
}

/// No line of the run (a Linux console's included) holds one of [`BAD`],
/// and the hypervisor neither died nor panicked.
pub fn assert_clean(o: &Outcome) {
    let bad: Vec<&String> = o
        .lines
        .iter()
        .filter(|l| BAD.iter().any(|b| l.contains(b)))
        .collect();
    assert!(bad.is_empty(), "{}: {bad:#?}", o.test);
    assert!(
        o.fatal_lines().is_empty() && o.panic_lines().is_empty(),
        "{}: the hypervisor died",
        o.test
    );
}

/// Bochs (VT-x), 2 CPUs, 256 MiB, the `dom0` option: dom0, the Linux
/// kernel and initramfs (`vmlinux`, `initramfs.cpio`), and `config` as
/// dom0's boot configuration, run until domain `name` ends.
pub fn vmx_dom0_linux(test: &str, config: &str, name: &str) -> Outcome {
    let [vmlinux, initramfs] = linux_modules();
    let name = format!(" name={name} ");
    GuestRun {
        name: test,
        options: "dom0",
        modules: vec![
            guest_module("dom0", "dom0", ""),
            vmlinux,
            initramfs,
            config_module(test, config),
        ],
        cpus: 2,
        memory_mib: 256,
        stop: Some(&["domain-end: ", &name]),
    }
    .boot(Backend::Vmx)
}

/// A Bochs Haswell (VT-x) machine, 2 CPUs and 256 MiB, booting `modules`
/// with `dom0`, its COM2 a TCP socket server on a free port.
pub struct BochsMgmt {
    /// The machine.
    pub pc: Pc,
    /// The ISO it boots.
    pub iso: PathBuf,
    /// COM2's TCP port on 127.0.0.1.
    pub port: u16,
    /// The serial log of the run (its directory emptied now).
    pub log: PathBuf,
    /// Where the test serves COM2 as a unix socket for `hvctl` (outside
    /// the run's directory: the run empties that when it starts).
    pub sock: PathBuf,
}

impl BochsMgmt {
    /// The machine for `test` booting `modules` (its ISO made now).
    pub fn new(test: &str, modules: &[Module]) -> Self {
        let iso = shared_iso(
            &format!("{test}.iso"),
            "exit=bochs shutdown dom0 loglevel=info",
            modules,
        );
        let port = free_port();
        let mut pc = Pc::new("corei7_haswell_4770", 2, 256);
        let com2: &'static str = Box::leak(
            format!("com2: enabled=1, mode=socket-server, dev=localhost:{port}").into_boxed_str(),
        );
        pc.extra.push(com2);
        let run_dir = root().join("runs").join(test);
        let _ = std::fs::remove_dir_all(&run_dir);
        Self {
            pc,
            iso,
            port,
            log: run_dir.join("serial.log"),
            sock: root().join("runs").join(format!("{test}.mgmt.sock")),
        }
    }

    /// Boots it as `test` until [`END_LINE`]; beside it `bridge` serves
    /// COM2 at [`Self::sock`], then `session(sock, log)` runs; then
    /// [`create_end`] and [`Machine::join`].
    pub fn run(
        self,
        test: &'static str,
        bridge: fn(u16, &Path),
        session: impl FnOnce(&Path, &Path) + UnwindSafe,
    ) -> Outcome {
        let Self {
            pc,
            iso,
            port,
            log,
            sock,
        } = self;
        let bochs = Machine::spawn("Bochs", move || {
            run_iso(test, &pc, &iso, Some(END_LINE), TIMEOUT_S)
        });
        let result = std::panic::catch_unwind(|| {
            bridge(port, &sock);
            session(&sock, &log);
        });
        create_end(&sock, test);
        bochs.join(result).0
    }
}

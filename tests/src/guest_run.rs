//! One boot of a set of guest modules on one backend, the shape most guest
//! tests share: a GRUB ISO with the hypervisor options and the modules,
//! booted under QEMU TCG with `-cpu max` (AMD-V with nested paging) or
//! under Bochs `corei7_haswell_4770` (VT-x with EPT), run until the
//! hypervisor ends by itself, and checked to have booted and ended well.
//! Runs are shared by the tests that read them ([`Shared`]).

use xtask::iso::Module;

use crate::bochs::{self, Pc};
use crate::domains::ReportOnPanic;
use crate::qemu::{BIOS_TIMEOUT_S, iso_vm, run_until};
use crate::shared::Once;
use crate::{Backend, Outcome, artifacts};

/// What to boot.
pub struct GuestRun<'a> {
    /// Names the ISO (`<name>-<backend>.iso`) and the run
    /// (`<name>_<backend>`).
    pub name: &'a str,
    /// Hypervisor options besides `exit=`, `shutdown` and `loglevel=info`
    /// (e.g. `dom0`).
    pub options: &'a str,
    /// The boot modules, in order.
    pub modules: Vec<Module>,
    /// CPUs.
    pub cpus: u32,
    /// RAM in MiB.
    pub memory_mib: u32,
    /// Stop the emulator at the first of these serial lines instead of
    /// waiting for the hypervisor to end (runs with guests that never end).
    pub stop: Option<&'a [&'a str]>,
}

impl GuestRun<'_> {
    /// Boots it on `b` and checks the run went well: QEMU's success status,
    /// booted through Multiboot2, and (without `stop`) the `domains: all
    /// ... ended` line. Prints how long it took.
    pub fn boot(&self, b: Backend) -> Outcome {
        let iso = artifacts::shared_iso(
            &format!("{}-{}.iso", self.name, b.suffix()),
            &format!("{} shutdown {} loglevel=info", b.exit(), self.options),
            &self.modules,
        );
        let test = format!("{}_{}", self.name, b.suffix());
        let o = match b {
            Backend::Svm => {
                let mut vm = iso_vm(&iso, self.cpus, &format!("{}M", self.memory_mib));
                vm.cpu = "max".into();
                run_until(&test, vm, BIOS_TIMEOUT_S, self.stop)
            }
            Backend::Vmx => bochs::run_iso(
                &test,
                &Pc::new("corei7_haswell_4770", self.cpus, self.memory_mib),
                &iso,
                self.stop,
                bochs::TIMEOUT_S,
            ),
        };
        {
            let _report = ReportOnPanic(&o);
            if b == Backend::Svm && self.stop.is_none() {
                o.assert_status(xtask::qemu::STATUS_SUCCESS);
            }
            o.assert_booted("multiboot2");
            // The scheduler's assertion (`rescue_lost_wakeups`): any run
            // that boots guests fails on it.
            let lost: Vec<&String> = o
                .lines
                .iter()
                .filter(|l| l.contains("lost wake-up"))
                .collect();
            assert!(lost.is_empty(), "{}: lost wake-up: {lost:?}", o.test);
            if self.stop.is_none() {
                assert!(
                    o.all_ended().is_some(),
                    "{}: no `domains: all ... ended` line",
                    o.test
                );
            }
            println!("{}: run took {:.1} s", o.test, o.took.as_secs_f64());
        }
        o
    }
}

/// One run per backend, made by the first test that asks for it and read
/// by the others. A failed run fails every reader ([`crate::shared`]).
pub struct Shared {
    svm: Once<Outcome>,
    vmx: Once<Outcome>,
}

impl Shared {
    /// No run yet.
    pub const fn new() -> Self {
        Self {
            svm: Once::new(),
            vmx: Once::new(),
        }
    }

    /// The run on `b`, made with `make` the first time.
    pub fn get(&self, b: Backend, make: impl FnOnce() -> Outcome) -> &Outcome {
        match b {
            Backend::Svm => self.svm.get("the AMD-V run", make),
            Backend::Vmx => self.vmx.get("the VT-x run", make),
        }
    }
}

impl Default for Shared {
    fn default() -> Self {
        Self::new()
    }
}

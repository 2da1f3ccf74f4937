//! QEMU command lines shared by `cargo xtask qemu`, the benchmark and the
//! boot tests, and the choice between KVM and TCG.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::{Context, Result};
use crate::tools;

/// Machine type everywhere: q35 (PCIe, AHCI CD-ROM, what OVMF is tested on).
pub const MACHINE: &str = "q35";
/// CPU model under TCG: AMD-V with nested paging, which TCG emulates (it has
/// no VT-x). A conservative model; tests add `-cpu max` where they want more.
pub const TCG_CPU: &str = "qemu64,+svm,+npt";
/// CPU model under KVM. `arch-capabilities` is dropped because some nested
/// KVM hosts refuse to set MSR 0x10a and QEMU aborts with plain `host`.
pub const KVM_CPU: &str = "host,-arch-capabilities";
/// The exit device: a byte written to port 0xf4 ends QEMU with status
/// `(byte << 1) | 1`, which can never be 0 or QEMU's own failure status 1.
pub const DEBUG_EXIT_DEVICE: &str = "isa-debug-exit,iobase=0xf4,iosize=0x04";
/// QEMU's status after the hypervisor reported success (0x10).
pub const STATUS_SUCCESS: i32 = 0x10 << 1 | 1;
/// QEMU's status after the hypervisor reported failure (0x20).
pub const STATUS_FAILURE: i32 = 0x20 << 1 | 1;

/// What a QEMU exit status means, for messages.
pub fn describe_status(code: Option<i32>) -> String {
    match code {
        Some(STATUS_SUCCESS) => "33: the hypervisor reported success".into(),
        Some(STATUS_FAILURE) => "65: the hypervisor reported a failure".into(),
        Some(0) => {
            "0: QEMU was quit (Ctrl-A X), the machine powered off, or it reset (with -no-reboot a triple fault of the hypervisor ends QEMU this way)".into()
        }
        Some(1) => "1: QEMU itself failed (bad option, missing file?)".into(),
        Some(c) => format!("{c}: unexpected"),
        None => "killed by a signal".into(),
    }
}

/// The accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualization through `/dev/kvm`.
    Kvm,
    /// QEMU's binary translator.
    Tcg,
}

impl Accel {
    /// The `-accel` argument.
    pub fn name(self) -> &'static str {
        match self {
            Self::Kvm => "kvm",
            Self::Tcg => "tcg",
        }
    }

    /// The default `-cpu` model for this accelerator.
    pub fn cpu(self) -> &'static str {
        match self {
            Self::Kvm => KVM_CPU,
            Self::Tcg => TCG_CPU,
        }
    }
}

/// How TCG runs the vCPUs (`-accel tcg,thread=`): QEMU's default on an
/// x86 host is one host thread per vCPU (multi-threaded TCG, MTTCG);
/// `single` runs every vCPU on one host thread, taking turns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcgThreads {
    /// `thread=multi`: one host thread per vCPU.
    Multi,
    /// `thread=single`: all vCPUs on one host thread, round robin.
    Single,
}

impl TcgThreads {
    /// The value of `thread=`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Multi => "multi",
            Self::Single => "single",
        }
    }

    /// `KESTREL_TCG_THREAD`'s value: `single` or `multi`, `None` when
    /// unset or empty (QEMU's default), an error naming the value
    /// otherwise (a typo must not silently test the default).
    pub fn parse(v: Option<&str>) -> std::result::Result<Option<Self>, String> {
        match v.map(str::trim) {
            None | Some("") => Ok(None),
            Some("single") => Ok(Some(Self::Single)),
            Some("multi") => Ok(Some(Self::Multi)),
            Some(other) => Err(format!(
                "KESTREL_TCG_THREAD={other:?}: expected `single` or `multi` (or unset)"
            )),
        }
    }

    /// [`Self::parse`] of the environment's `KESTREL_TCG_THREAD`; panics
    /// on a bad value (it is a test knob, read when a machine is made).
    pub fn from_env() -> Option<Self> {
        let v = std::env::var("KESTREL_TCG_THREAD").ok();
        Self::parse(v.as_deref()).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// The accelerator picked and the reason, for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccelChoice {
    /// The pick.
    pub accel: Accel,
    /// Why, in one sentence.
    pub why: String,
}

/// What the host offers, read from the system (kept apart so [`decide`] is testable).
#[derive(Debug, Clone)]
pub struct HostFacts {
    /// `Ok` when `/dev/kvm` opens read-write, else why not.
    pub kvm: std::result::Result<(), String>,
    /// The `flags` line of `/proc/cpuinfo`.
    pub cpu_flags: String,
    /// `/sys/module/kvm_intel/parameters/nested`, if present.
    pub nested_intel: Option<String>,
    /// `/sys/module/kvm_amd/parameters/nested`, if present.
    pub nested_amd: Option<String>,
    /// `KESTREL_ACCEL`, if set.
    pub forced: Option<String>,
}

impl HostFacts {
    /// Reads the facts from this machine.
    pub fn probe() -> Self {
        let kvm = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .map(drop)
            .map_err(|e| e.to_string());
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_flags = cpuinfo
            .lines()
            .find(|l| l.starts_with("flags"))
            .unwrap_or("")
            .to_string();
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .ok()
                .map(|s| s.trim().to_string())
        };
        Self {
            kvm,
            cpu_flags,
            nested_intel: read("/sys/module/kvm_intel/parameters/nested"),
            nested_amd: read("/sys/module/kvm_amd/parameters/nested"),
            forced: std::env::var("KESTREL_ACCEL")
                .ok()
                .filter(|s| !s.is_empty()),
        }
    }
}

fn enabled(param: Option<&str>) -> bool {
    matches!(param, Some("Y" | "y" | "1"))
}

/// Picks KVM only when the guest would get VT-x or AMD-V (nested
/// virtualization): a hypervisor without them cannot run domains, and on
/// hosts whose KVM hides them firmware under KVM is also known to misbehave.
pub fn decide(facts: &HostFacts) -> AccelChoice {
    match facts.forced.as_deref() {
        Some("kvm") => {
            return AccelChoice {
                accel: Accel::Kvm,
                why: "KESTREL_ACCEL=kvm".into(),
            };
        }
        Some("tcg") => {
            return AccelChoice {
                accel: Accel::Tcg,
                why: "KESTREL_ACCEL=tcg".into(),
            };
        }
        _ => {}
    }
    let tcg = |why: String| AccelChoice {
        accel: Accel::Tcg,
        why,
    };
    if let Err(e) = &facts.kvm {
        return tcg(format!("/dev/kvm is not usable ({e})"));
    }
    let flags: Vec<&str> = facts.cpu_flags.split_whitespace().collect();
    let (ext, nested, module) = if flags.contains(&"vmx") {
        ("VT-x (vmx)", facts.nested_intel.as_deref(), "kvm_intel")
    } else if flags.contains(&"svm") {
        ("AMD-V (svm)", facts.nested_amd.as_deref(), "kvm_amd")
    } else {
        return tcg(
            "the host CPU has neither vmx nor svm, so KVM cannot give the guest VT-x or AMD-V"
                .into(),
        );
    };
    if enabled(nested) {
        AccelChoice {
            accel: Accel::Kvm,
            why: format!("/dev/kvm is usable and the host offers {ext} with {module} nested=1"),
        }
    } else {
        tcg(format!(
            "the host has {ext} but {module} nested virtualization is {}",
            nested.map_or("not reported".to_string(), |v| format!("off ({v})"))
        ))
    }
}

/// How the machine boots.
#[derive(Debug, Clone)]
pub enum Boot {
    /// Direct boot through the Xen PVH note (`-kernel`); QEMU passes at most
    /// one module (`-initrd`) with no arguments.
    Pvh {
        /// The hypervisor ELF.
        kernel: PathBuf,
        /// Its command line (`-append`).
        cmdline: String,
        /// The one module, if any.
        initrd: Option<PathBuf>,
    },
    /// The GRUB ISO through SeaBIOS.
    Bios {
        /// The ISO.
        iso: PathBuf,
    },
    /// The GRUB ISO through OVMF; `vars` is a writable copy of the variable store.
    Uefi {
        /// The ISO.
        iso: PathBuf,
        /// This machine's own copy of `OVMF_VARS_4M.fd`.
        vars: PathBuf,
    },
}

/// A QEMU machine.
#[derive(Debug, Clone)]
pub struct Vm {
    /// The accelerator.
    pub accel: Accel,
    /// `-cpu`.
    pub cpu: String,
    /// Under TCG, `thread=` (`None`: QEMU's default, multi-threaded).
    /// [`Vm::new`] takes it from `KESTREL_TCG_THREAD` ([`TcgThreads`]).
    pub tcg_threads: Option<TcgThreads>,
    /// `-smp`.
    pub smp: u32,
    /// `-m`, e.g. `128M`.
    pub memory: String,
    /// How it boots.
    pub boot: Boot,
    /// `-serial` destination for COM1, e.g. `file:serial.log` or `mon:stdio`.
    pub serial: String,
    /// Appended last, so they override.
    pub extra: Vec<OsString>,
    /// `Some(log)`: keep QEMU's register dump of a triple fault there
    /// (issue 13). QEMU 7.2 dumps the CPUs (`-d cpu_reset`) only when it
    /// really resets them, and then memory is the firmware's again: so the
    /// machine pauses at the fault (`-action reboot=shutdown,shutdown=pause`)
    /// with a monitor socket beside the log, and whoever runs it reads the
    /// CPUs and their page tables there and stops QEMU
    /// ([`crate::faultmon`], [`crate::reset`]); where the socket's path is
    /// too long, the machine resets (`reboot=reset,shutdown=poweroff`) and
    /// QEMU's dump is waited for. `None`: `-no-reboot`, a reset ends QEMU
    /// with status 0.
    pub reset_dump: Option<PathBuf>,
}

/// QEMU's `-d` items for a machine whose reset is dumped: `cpu_reset`,
/// then those of `KESTREL_QEMU_DEBUG` (a diagnostic, issue 13: e.g. `int`
/// logs every exception, interrupt and its CPU state, so the lines before
/// `Triple fault` say which exception could not be delivered). Only
/// letters, digits, `_` and commas are taken: anything else is dropped, so
/// the knob cannot add QEMU options. The log grows by gigabytes with
/// `int`; point the run directory at tmpfs.
pub fn debug_items(extra: Option<&str>) -> String {
    let mut items = String::from("cpu_reset");
    for item in extra.unwrap_or_default().split(',') {
        let item = item.trim();
        if !item.is_empty()
            && item != "cpu_reset"
            && item.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            items.push(',');
            items.push_str(item);
        }
    }
    items
}

impl Vm {
    /// A headless machine with the default CPU model for `accel`.
    pub fn new(
        accel: Accel,
        smp: u32,
        memory: &str,
        boot: Boot,
        serial: impl Into<String>,
    ) -> Self {
        Self {
            accel,
            cpu: accel.cpu().into(),
            tcg_threads: TcgThreads::from_env(),
            smp,
            memory: memory.into(),
            boot,
            serial: serial.into(),
            extra: Vec::new(),
            reset_dump: None,
        }
    }

    /// The arguments after `qemu-system-x86_64`.
    pub fn args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |s: &str| a.push(s.into());
        // No default NIC, VGA or drives: nothing we do not use (OVMF also
        // skips a PXE attempt), and -no-reboot turns a triple fault into an
        // exit instead of a reboot loop (unless the reset is to be dumped,
        // see `reset_dump`).
        push("-nodefaults");
        match &self.reset_dump {
            None => push("-no-reboot"),
            Some(log) => {
                // With a monitor the machine pauses at a triple fault and
                // the harness reads it there (`faultmon`); without one
                // (a path too long for a socket) it resets and QEMU dumps
                // the registers as it does.
                let monitor = crate::faultmon::socket_for(log);
                let action = if monitor.is_some() {
                    "reboot=shutdown,shutdown=pause"
                } else {
                    "reboot=reset,shutdown=poweroff"
                };
                a.push("-action".into());
                a.push(action.into());
                if let Some(m) = monitor {
                    a.push("-monitor".into());
                    let mut v = OsString::from("unix:");
                    v.push(m);
                    v.push(",server=on,wait=off");
                    a.push(v);
                }
                a.push("-d".into());
                let extra = std::env::var("KESTREL_QEMU_DEBUG").ok();
                a.push(debug_items(extra.as_deref()).into());
                a.push("-D".into());
                a.push(log.into());
            }
        }
        let mut push = |s: &str| a.push(s.into());
        for s in ["-display", "none", "-M", MACHINE, "-accel"] {
            push(s);
        }
        match (self.accel, self.tcg_threads) {
            (Accel::Tcg, Some(t)) => push(&format!("tcg,thread={}", t.name())),
            (accel, _) => push(accel.name()),
        }
        push("-cpu");
        push(&self.cpu);
        push("-smp");
        push(&self.smp.to_string());
        push("-m");
        push(&self.memory);
        push("-device");
        push(DEBUG_EXIT_DEVICE);
        push("-serial");
        push(&self.serial);
        match &self.boot {
            Boot::Pvh {
                kernel,
                cmdline,
                initrd,
            } => {
                a.push("-kernel".into());
                a.push(kernel.into());
                a.push("-append".into());
                a.push(cmdline.into());
                if let Some(m) = initrd {
                    a.push("-initrd".into());
                    a.push(m.into());
                }
            }
            Boot::Bios { iso } => {
                a.push("-cdrom".into());
                a.push(iso.into());
            }
            Boot::Uefi { iso, vars } => {
                a.push("-drive".into());
                a.push(
                    format!(
                        "if=pflash,format=raw,unit=0,readonly=on,file={}",
                        tools::OVMF_CODE.path
                    )
                    .into(),
                );
                let mut v = OsString::from("if=pflash,format=raw,unit=1,file=");
                v.push(vars);
                a.push("-drive".into());
                a.push(v);
                a.push("-cdrom".into());
                a.push(iso.into());
            }
        }
        a.extend(self.extra.iter().cloned());
        a
    }

    /// Checks that QEMU and the firmware this machine needs are installed.
    pub fn check_tools(&self) -> Result<PathBuf> {
        let qemu = tools::QEMU.require()?;
        if let Boot::Uefi { .. } = self.boot {
            tools::OVMF_CODE.require()?;
        }
        Ok(qemu)
    }

    /// The whole command line, quoted for a shell where needed (for logs).
    pub fn display(&self) -> String {
        let mut s = String::from(tools::QEMU.program);
        for a in self.args() {
            let a = a.to_string_lossy();
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$\\".contains(c)) {
                s.push_str(&format!(" '{}'", a.replace('\'', "'\\''")));
            } else {
                s.push(' ');
                s.push_str(&a);
            }
        }
        s
    }
}

/// Makes `dest` a fresh writable copy of the OVMF variable store.
pub fn fresh_uefi_vars(dest: &Path) -> Result<()> {
    let src = tools::OVMF_VARS.require()?;
    std::fs::copy(src, dest)
        .context(|| format!("copying {} to {}", src.display(), dest.display()))?;
    // The package's file is read-only and a copy keeps its mode: make ours
    // writable by its owner (OVMF stores variables in it).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o644))
        .context(|| format!("making {} writable", dest.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(kvm: bool, flags: &str, intel: Option<&str>, amd: Option<&str>) -> HostFacts {
        HostFacts {
            kvm: if kvm {
                Ok(())
            } else {
                Err("No such file or directory".into())
            },
            cpu_flags: format!("flags\t\t: fpu {flags} sse2"),
            nested_intel: intel.map(String::from),
            nested_amd: amd.map(String::from),
            forced: None,
        }
    }

    #[test]
    fn kvm_only_with_nested_virtualization() {
        assert_eq!(
            decide(&facts(true, "vmx", Some("Y"), None)).accel,
            Accel::Kvm
        );
        assert_eq!(
            decide(&facts(true, "svm", None, Some("1"))).accel,
            Accel::Kvm
        );
        // The machines this project is tested on: KVM without VMX/SVM.
        let c = decide(&facts(true, "x2apic hypervisor", None, None));
        assert_eq!(c.accel, Accel::Tcg);
        assert!(c.why.contains("neither vmx nor svm"), "{}", c.why);
        let c = decide(&facts(true, "vmx", Some("N"), None));
        assert_eq!(c.accel, Accel::Tcg);
        assert!(c.why.contains("off (N)"), "{}", c.why);
        assert_eq!(decide(&facts(true, "svm", None, None)).accel, Accel::Tcg);
        let c = decide(&facts(false, "vmx", Some("Y"), None));
        assert_eq!(c.accel, Accel::Tcg);
        assert!(c.why.contains("/dev/kvm"), "{}", c.why);
    }

    #[test]
    fn forced_choice_wins() {
        let mut f = facts(false, "", None, None);
        f.forced = Some("kvm".into());
        assert_eq!(decide(&f).accel, Accel::Kvm);
        let mut f = facts(true, "vmx", Some("Y"), None);
        f.forced = Some("tcg".into());
        assert_eq!(decide(&f).accel, Accel::Tcg);
    }

    #[test]
    fn pvh_command_line() {
        let boot = Boot::Pvh {
            kernel: "/k".into(),
            cmdline: "exit=qemu shutdown".into(),
            initrd: Some("/m".into()),
        };
        let vm = Vm::new(Accel::Tcg, 4, "128M", boot, "file:/s.log");
        let args: Vec<String> = vm
            .args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let joined = args.join(" ");
        assert!(
            joined.contains("-M q35 -accel tcg -cpu qemu64,+svm,+npt -smp 4 -m 128M"),
            "{joined}"
        );
        assert!(joined.contains("-device isa-debug-exit,iobase=0xf4,iosize=0x04"));
        assert!(joined.contains("-no-reboot"));
        assert!(!joined.contains("-action"), "{joined}");
        assert!(
            joined.ends_with("-kernel /k -append exit=qemu shutdown -initrd /m"),
            "{joined}"
        );
        assert!(
            vm.display().contains("-append 'exit=qemu shutdown'"),
            "{}",
            vm.display()
        );
    }

    #[test]
    fn tcg_threads_choose_the_accel_argument() {
        assert_eq!(TcgThreads::parse(None), Ok(None));
        assert_eq!(TcgThreads::parse(Some(" ")), Ok(None));
        assert_eq!(
            TcgThreads::parse(Some("single")),
            Ok(Some(TcgThreads::Single))
        );
        assert_eq!(
            TcgThreads::parse(Some("multi")),
            Ok(Some(TcgThreads::Multi))
        );
        let Err(e) = TcgThreads::parse(Some("one")) else {
            panic!("a misspelt KESTREL_TCG_THREAD must be refused");
        };
        assert!(e.contains("KESTREL_TCG_THREAD=\"one\""), "{e}");
        let boot = || Boot::Bios {
            iso: "/i.iso".into(),
        };
        let joined = |vm: &Vm| {
            vm.args()
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut vm = Vm::new(Accel::Tcg, 2, "128M", boot(), "file:/s.log");
        vm.tcg_threads = Some(TcgThreads::Single);
        assert!(
            joined(&vm).contains("-accel tcg,thread=single -cpu"),
            "{}",
            joined(&vm)
        );
        vm.tcg_threads = None;
        assert!(joined(&vm).contains("-accel tcg -cpu"), "{}", joined(&vm));
        // KVM has no thread= option: the TCG choice is not passed there.
        let mut vm = Vm::new(Accel::Kvm, 2, "128M", boot(), "file:/s.log");
        vm.tcg_threads = Some(TcgThreads::Multi);
        assert!(joined(&vm).contains("-accel kvm -cpu"), "{}", joined(&vm));
    }

    #[test]
    fn debug_items_add_only_plain_words() {
        assert_eq!(debug_items(None), "cpu_reset");
        assert_eq!(debug_items(Some("")), "cpu_reset");
        assert_eq!(
            debug_items(Some("int, guest_errors,cpu_reset")),
            "cpu_reset,int,guest_errors"
        );
        assert_eq!(debug_items(Some("int -S,mmu")), "cpu_reset,mmu");
    }

    #[test]
    fn a_dumped_reset_replaces_no_reboot() {
        let boot = Boot::Bios {
            iso: "/i.iso".into(),
        };
        let mut vm = Vm::new(Accel::Tcg, 1, "128M", boot, "file:/s.log");
        vm.reset_dump = Some("/r.log".into());
        let joined: Vec<String> = vm
            .args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let joined = joined.join(" ");
        assert!(!joined.contains("-no-reboot"), "{joined}");
        assert!(
            joined.starts_with(
                "-nodefaults -action reboot=shutdown,shutdown=pause -monitor unix:/monitor.sock,server=on,wait=off -d cpu_reset -D /r.log -display none"
            ),
            "{joined}"
        );
    }

    #[test]
    fn uefi_uses_readonly_code_and_private_vars() {
        let vm = Vm::new(
            Accel::Tcg,
            1,
            "2G",
            Boot::Uefi {
                iso: "/i.iso".into(),
                vars: "/v.fd".into(),
            },
            "stdio",
        );
        let joined: Vec<String> = vm
            .args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let joined = joined.join(" ");
        assert!(joined.contains("unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd"));
        assert!(joined.contains("unit=1,file=/v.fd"));
        assert!(joined.ends_with("-cdrom /i.iso"));
    }

    #[test]
    fn statuses() {
        assert_eq!(STATUS_SUCCESS, 33);
        assert_eq!(STATUS_FAILURE, 65);
        assert!(describe_status(Some(1)).contains("QEMU itself"));
    }
}

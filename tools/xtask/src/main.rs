//! `cargo xtask`: build, image, run, test and benchmark Kestrel.

mod bench;
mod boundbench;
mod cargo;
mod demo;
mod diskbench;
mod disklinux;
mod diskmarks;
mod evbench;
mod evprof;
mod fuzz;
mod hcbench;
mod idlebench;
mod insncount;
mod isoboot;
mod linuxbench;
mod linuxcount;
mod linuxcreate;
mod linuxnative;
mod mkbench;
mod ringbench;
mod specbench;
mod spread;
mod test;
mod upbench;
mod upprof;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use xtask::error::{Error, Result};
use xtask::iso::{IsoSpec, Module};
use xtask::paths::{self, Profile};
use xtask::qemu::{self, Accel, Boot, Vm};
use xtask::{bail, server, tools};

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  build [--debug]
      Build the hypervisor (release unless --debug):
      target/x86_64-unknown-none/<profile>/kestrel
  image [--config FILE.toml | --bare] [--debug] [--cmdline \"...\"] [--module PATH[=ARGS]]...
        [--timeout SECS] [-o OUT.iso]
      Build the server image, a GRUB ISO that boots on BIOS and UEFI (default
      build/kestrel.iso, menu timeout 3 s): the hypervisor with the dom0 flag
      (command line \"dom0 loglevel=info\"), dom0, the boot configuration
      (dom0/demo.toml unless --config) and every image it names (a file of
      that name next to the configuration, else the guest of that name this
      repository builds), then any --module, in order.
      --bare: the hypervisor and the --module files alone (\"loglevel=info\").
  qemu [--dom0] [--iso | --uefi] [--debug] [--cmdline \"...\"] [--module PATH[=ARGS]]...
       [--smp N] [-m SIZE] [--kvm | --tcg] [-- QEMU ARGS...]
      Build and boot under QEMU with the serial console on this terminal
      (Ctrl-A X quits). Default: PVH direct boot (-kernel, one module at most),
      4 CPUs, 1G, KVM if it offers nested VT-x/AMD-V, else TCG with SVM+NPT.
      --dom0: the demo (GRUB ISO): dom0, the hello and ticker guests and
      dom0/demo.toml, dom0's management line on build/kestrel-mgmt.sock.
      ISO boots use build/dev.iso (never the server image's build/kestrel.iso).
  linux
      Build the Kestrel guest Linux kernel from the installed linux-source-6.1
      package with guest-kernel-patches/ applied (cached under
      ~/.cache/kestrel/linux/<key>/vmlinux) and the busybox initramfs
      (target/linux/initramfs.cpio); prints both paths.
  test [--no-lint] [--no-fuzz] [--no-boot] [-- BOOT TEST FILTER...]
      Everything CI runs: rustfmt, clippy (host and bare metal), unit tests,
      a 5 s pass of each fuzz target, the release kernel, and the boot tests
      under QEMU and Bochs.
  fuzz [SECONDS] [-- TARGET...]
      Build the libFuzzer targets in fuzz/ (stable toolchain, no cargo-fuzz)
      and run each for SECONDS (default 60): multiboot2, pvh, elf, cmdline,
      hypercall, evtchn, grant, ring. Corpus and crashes in target/fuzz/.
  bench [--only evtchn|hypercall|evprof|spec|bounded|idle|linux|linux-count|disk|upload]
      Deterministic figures: boot under QEMU TCG -icount, hypercall round trip,
      event-channel round trip (one CPU and two), domain creation, rings and
      the hypercall with and without spec-ctrl mitigations on AMD-V (QEMU
      -icount) and VT-x (Bochs); writes docs/benchmarks.md.
      --only: just that part, printed; evtchn, spec and bounded rewrite their
      own section of docs/benchmarks.md, hypercall leaves it alone. bounded:
      the longest exit under flooding guests. idle: dom0's exits per second on
      an idle host, woken by events and polling (rewrites its section).
      linux: a Linux domain's instructions to /init and its exits, idle and
      busy (builds or takes the cached kernel; rewrites its section).
      linux-count: linux's boot counted by the insncount plugin without
      -icount, Kestrel and native, 1 and 2 vCPUs, 3 runs each (printed only;
      `linux` runs it too).
      disk: dom0's disk throughput (virtio-blk, NVMe) against Debian's
      kernel under QEMU on the same disks (needs the package unpacked in the
      cache: says what to run; rewrites its section).
      upload: `hvctl --host` image upload against a raw TCP stream of the
      same 1 MiB into dom0's discard port (needs `cargo xtask build`'s hvctl;
      rewrites its section).
      evprof: AMD-V profiles (instructions per hypervisor function) of the
      event round trip and the plain hypercall, printed only
      (EVPROF_THREE=1: the three-call event path).

environment:
  KESTREL_ACCEL=kvm|tcg   override the accelerator choice of `qemu`
";

/// Default kernel command line for people (stays up after boot, idles).
const DEFAULT_CMDLINE: &str = "loglevel=info";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<String>) -> Result<ExitCode> {
    let Some((cmd, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        return Ok(ExitCode::FAILURE);
    };
    let rest = rest.to_vec();
    match cmd.as_str() {
        "build" => {
            let mut a = Args::new(rest);
            let profile = a.profile();
            a.finish()?;
            let k = build_kernel(profile)?;
            println!("{}", k.display());
            Ok(ExitCode::SUCCESS)
        }
        "image" => image(Args::new(rest)).map(|()| ExitCode::SUCCESS),
        "qemu" => run_qemu(Args::new(rest)),
        "linux" => {
            Args::new(rest).finish()?;
            let l = xtask::linux::build()?;
            println!("{}\n{}", l.vmlinux.display(), l.initramfs.display());
            Ok(ExitCode::SUCCESS)
        }
        "test" => test::run(Args::new(rest)),
        "fuzz" => fuzz::run(Args::new(rest)),
        "bench" => {
            let mut a = Args::new(rest);
            let only = a.value(&["--only"])?;
            a.finish()?;
            bench::run(only.as_deref()).map(|()| ExitCode::SUCCESS)
        }
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => bail!("unknown command `{other}`\n\n{USAGE}"),
    }
}

/// A tiny option parser: flags and `--opt VALUE` pairs, then `-- rest`.
pub struct Args {
    args: Vec<String>,
    /// What followed `--`.
    pub passthrough: Vec<String>,
}

impl Args {
    fn new(mut args: Vec<String>) -> Self {
        let passthrough = match args.iter().position(|a| a == "--") {
            Some(i) => {
                let rest = args.split_off(i);
                rest[1..].to_vec()
            }
            None => Vec::new(),
        };
        Self { args, passthrough }
    }

    /// Removes `flag` if present.
    pub fn flag(&mut self, flag: &str) -> bool {
        let before = self.args.len();
        self.args.retain(|a| a != flag);
        self.args.len() != before
    }

    /// Removes every `name VALUE` (or `name=VALUE`) and returns the values.
    pub fn values(&mut self, names: &[&str]) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.args.len() {
            let a = &self.args[i];
            if names.contains(&a.as_str()) {
                if i + 1 >= self.args.len() {
                    bail!("{a} needs a value");
                }
                out.push(self.args.remove(i + 1));
                self.args.remove(i);
            } else if let Some(v) = names
                .iter()
                .find_map(|n| a.strip_prefix(n).and_then(|r| r.strip_prefix('=')))
            {
                out.push(v.to_string());
                self.args.remove(i);
            } else {
                i += 1;
            }
        }
        Ok(out)
    }

    /// The last value of `names`, if given.
    pub fn value(&mut self, names: &[&str]) -> Result<Option<String>> {
        Ok(self.values(names)?.pop())
    }

    fn profile(&mut self) -> Profile {
        if self.flag("--debug") {
            Profile::Debug
        } else {
            Profile::Release
        }
    }

    /// Removes and returns the first argument that is not an option.
    pub fn positional(&mut self) -> Result<Option<String>> {
        match self.args.iter().position(|a| !a.starts_with('-')) {
            Some(i) => Ok(Some(self.args.remove(i))),
            None => Ok(None),
        }
    }

    /// Fails on anything not consumed.
    pub fn finish(self) -> Result<()> {
        match self.args.first() {
            Some(a) => bail!("unexpected argument `{a}` (see `cargo xtask help`)"),
            None => Ok(()),
        }
    }
}

/// Builds the hypervisor and the example guests; returns the hypervisor
/// ELF's path (the guests lie beside it).
pub fn build_kernel(profile: Profile) -> Result<PathBuf> {
    let args = paths::build_args(profile == Profile::Debug);
    println!(
        "kestrel: building the hypervisor, dom0 and the example guests ({}, {}) and hvctl \
         (host): what images and QEMU boot; cargo rebuilds only what changed",
        paths::KERNEL_TARGET,
        profile.dir()
    );
    cargo::run(&args)?;
    cargo::run(&paths::HVCTL_BUILD_ARGS)?;
    let k = paths::kernel(profile);
    if !k.is_file() {
        bail!("cargo succeeded but {} is missing", k.display());
    }
    Ok(k)
}

/// The `--module` options, checked to name existing files before anything
/// is built.
fn modules(a: &mut Args) -> Result<Vec<Module>> {
    let modules: Vec<Module> = a
        .values(&["--module"])?
        .iter()
        .map(|s| Module::parse(s))
        .collect::<Result<_>>()?;
    if let Some(m) = modules.iter().find(|m| !m.path.is_file()) {
        bail!("module file {} does not exist", m.path.display());
    }
    Ok(modules)
}

fn image(mut a: Args) -> Result<()> {
    let profile = a.profile();
    let bare = a.flag("--bare");
    let config = a.value(&["--config"])?.map(PathBuf::from);
    let cmdline = a.value(&["--cmdline"])?;
    let extra = modules(&mut a)?;
    let timeout_s = match a.value(&["--timeout"])? {
        Some(t) => t
            .parse()
            .map_err(|_| Error::new(format!("--timeout `{t}`: not a number of seconds")))?,
        None => server::TIMEOUT_S,
    };
    let output = a
        .value(&["-o", "--output"])?
        .map(PathBuf::from)
        .unwrap_or_else(paths::default_iso);
    a.finish()?;
    if bare && config.is_some() {
        bail!(
            "--bare (the hypervisor alone) and --config (dom0 and its domains) exclude each other"
        );
    }
    if let Some(c) = config.as_ref().filter(|c| !c.is_file()) {
        bail!("--config {}: no such file", c.display());
    }
    let config = config.unwrap_or_else(server::demo_config);
    if !bare {
        server::check(&config)?;
    }
    xtask::iso::check_tools()?;
    let kernel = build_kernel(profile)?;
    let spec = if bare {
        IsoSpec {
            kernel,
            cmdline: cmdline.unwrap_or_else(|| DEFAULT_CMDLINE.into()),
            modules: extra,
            timeout_s,
            output,
        }
    } else {
        let mut spec = server::spec(
            profile,
            kernel,
            &config,
            cmdline.as_deref().unwrap_or(server::CMDLINE),
            extra,
            output,
        )?;
        spec.timeout_s = timeout_s;
        spec
    };
    xtask::iso::build(&spec)?;
    let size = std::fs::metadata(&spec.output)
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "{} ({} KiB, BIOS + UEFI): {}",
        spec.output.display(),
        size / 1024,
        if bare {
            "the hypervisor alone".to_string()
        } else {
            let names: Vec<&str> = spec.modules.iter().map(|m| m.name.as_str()).collect();
            format!(
                "command line \"{}\", modules {}",
                spec.cmdline,
                names.join(", ")
            )
        }
    );
    Ok(())
}

/// The image a development run boots: its own path (never the server
/// image's) and no GRUB menu (timeout 0, hidden), so neither the menu nor
/// its countdown lands in the log or costs 3 s a boot.
fn dev_iso_spec(kernel: PathBuf, cmdline: String, modules: Vec<Module>) -> IsoSpec {
    IsoSpec {
        kernel,
        cmdline,
        modules,
        timeout_s: 0,
        output: paths::dev_iso(),
    }
}

fn run_qemu(mut a: Args) -> Result<ExitCode> {
    let profile = a.profile();
    let dom0 = a.flag("--dom0");
    // The demo has several modules: only the ISO carries them.
    let uefi = a.flag("--uefi");
    let iso = a.flag("--iso") || (dom0 && !uefi);
    let force_kvm = a.flag("--kvm");
    let force_tcg = a.flag("--tcg");
    let mut cmdline = a
        .value(&["--cmdline"])?
        .unwrap_or_else(|| DEFAULT_CMDLINE.into());
    let mut modules = modules(&mut a)?;
    if dom0 {
        cmdline = format!("dom0 {cmdline}");
    }
    let smp = a.value(&["--smp"])?;
    let memory = a.value(&["-m", "--memory"])?.unwrap_or_else(|| "1G".into());
    let extra: Vec<OsString> = a.passthrough.iter().map(OsString::from).collect();
    a.finish()?;
    if iso && uefi {
        bail!("--iso (BIOS) and --uefi exclude each other");
    }
    tools::QEMU.require()?;

    let choice = match (force_kvm, force_tcg) {
        (true, true) => bail!("--kvm and --tcg exclude each other"),
        (true, false) => qemu::AccelChoice {
            accel: Accel::Kvm,
            why: "--kvm was given".into(),
        },
        (false, true) => qemu::AccelChoice {
            accel: Accel::Tcg,
            why: "--tcg was given".into(),
        },
        (false, false) => qemu::decide(&qemu::HostFacts::probe()),
    };
    let smp: u32 = match smp {
        Some(s) => s
            .parse()
            .map_err(|_| Error::new(format!("--smp `{s}`: not a number")))?,
        None if choice.accel == Accel::Kvm => std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(4) as u32,
        None => 4,
    };

    let pvh = !(iso || uefi);
    let initrd = match modules.as_slice() {
        _ if !pvh => None,
        [] => None,
        [m] if m.args.is_empty() => Some(m.path.clone()),
        [_] => bail!("PVH direct boot cannot pass module arguments; use --iso or --uefi"),
        _ => bail!("PVH direct boot takes one module (QEMU has one -initrd); use --iso or --uefi"),
    };
    if !pvh {
        xtask::iso::check_tools()?;
    }

    let kernel = build_kernel(profile)?;
    if dom0 {
        modules.splice(0..0, demo::modules(profile)?);
    }
    let boot = if !pvh {
        let spec = dev_iso_spec(kernel, cmdline, modules);
        xtask::iso::build(&spec)?;
        if uefi {
            let vars = paths::build_dir().join("OVMF_VARS_4M.fd");
            qemu::fresh_uefi_vars(&vars)?;
            Boot::Uefi {
                iso: spec.output,
                vars,
            }
        } else {
            Boot::Bios { iso: spec.output }
        }
    } else {
        Boot::Pvh {
            kernel,
            cmdline,
            initrd,
        }
    };
    let mut vm = Vm::new(choice.accel, smp, &memory, boot, "mon:stdio");
    if dom0 {
        vm.extra = demo::qemu_args();
    }
    vm.extra.extend(extra);
    let qemu_bin = vm.check_tools()?;

    let accel = match choice.accel {
        Accel::Kvm => format!("KVM (-cpu {})", vm.cpu),
        Accel::Tcg => format!("TCG (-cpu {}: AMD-V with nested paging, emulated)", vm.cpu),
    };
    println!("kestrel: accelerator {accel}, because {}", choice.why);
    println!("kestrel: {}", vm.display());
    if dom0 {
        println!("{}", demo::banner());
    }
    println!("kestrel: Ctrl-A X quits QEMU (Ctrl-A C: QEMU monitor)");
    let status = Command::new(qemu_bin)
        .args(vm.args())
        .status()
        .map_err(|e| Error::new(format!("starting QEMU: {e}")))?;
    let code = status.code();
    if code != Some(0) {
        println!("kestrel: QEMU ended with {}", qemu::describe_status(code));
    }
    Ok(match code {
        Some(0) | Some(qemu::STATUS_SUCCESS) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn development_images_hide_the_menu_and_keep_off_the_server_image() {
        let spec = dev_iso_spec("/k".into(), "dom0".into(), Vec::new());
        assert_eq!(spec.timeout_s, 0);
        assert_ne!(spec.output, paths::default_iso());
        let cfg = xtask::iso::grub_cfg(&spec).unwrap_or_default();
        assert!(
            cfg.contains("set timeout=0\nset timeout_style=hidden\n"),
            "{cfg}"
        );
    }
}

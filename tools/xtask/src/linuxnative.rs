//! The native side of the Linux domain benchmark (issue 13): the same
//! `vmlinux` and initramfs booted by QEMU itself (`-kernel`, no Kestrel)
//! under the same `-icount shift=7,align=off,sleep=off` (or, for
//! `crate::linuxcount`, without `-icount` under the counting plugin), so
//! that the Kestrel domain's instructions to `/init` have something to be
//! divided by.
//!
//! QEMU loads an ELF `vmlinux` only through its PVH note (`CONFIG_PVH`,
//! `kestrel.config`); SeaBIOS runs first (QEMU's PVH loader is an option
//! ROM) and leaves its MP table, which is how the kernel (no ACPI) finds
//! the second CPU. The kernel prints through the 8250 at 0x3f8, which it
//! registers only when asked (`8250.nr_uarts=1`: the config's
//! `SERIAL_8250_RUNTIME_UARTS=0` keeps a Kestrel domain off I/O ports).
//! Without ACPI the kernel cannot power the machine off, so `/init` ends
//! with `reboot -f` (`kestrel.end=reboot`): the keyboard controller's
//! reset, which `-no-reboot` turns into QEMU exiting 0.

use std::fs::File;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use xtask::bail;
use xtask::error::{Context, Result};
use xtask::linux::LinuxImages;
use xtask::qemu::{Accel, Boot, Vm};
use xtask::{paths, runner, serial, tools};

#[cfg(doc)]
use crate::isoboot::ICOUNT7_ARGS;

/// The Kestrel domain's memory (the hypervisor's default for a boot
/// module), given to the native machine too: the kernel's memory setup
/// is part of both counts.
pub const MEMORY: &str = "64M";

/// The native kernel command line: the Kestrel run's
/// (`console=hvc0 initramfs_async=0`) with the 8250 console instead of
/// hvc0 and `/init` ending in a reset.
pub const CMDLINE: &str = "console=ttyS0 8250.nr_uarts=1 initramfs_async=0 kestrel.end=reboot";

/// [`CMDLINE`] for the boots counted without `-icount`
/// (`crate::linuxcount`): `no_timer_check` skips the kernel's check that
/// the PIT's interrupt reaches the IO-APIC, a wall-clock wait that under a
/// loaded host ends in `IO-APIC + timer doesn't work!` and a panic (seen
/// with 2 CPUs at a host load of 11; the Kestrel domain has no IO-APIC and
/// never runs it); `panic=-1` makes any panic a reset, so QEMU exits at
/// once instead of at the timeout (the boot still fails: no `/init`).
pub const COUNTED_CMDLINE: &str = "console=ttyS0 8250.nr_uarts=1 initramfs_async=0 \
     kestrel.end=reboot no_timer_check panic=-1";

/// What a native boot printed and how to repeat it.
pub struct Native {
    pub lines: Vec<String>,
    pub command: String,
}

/// Boots `images` natively with `cpus` CPUs, `cmdline` ([`CMDLINE`] or
/// [`COUNTED_CMDLINE`]) and `extra` QEMU arguments
/// (the clock: [`ICOUNT7_ARGS`], or the plugin's without `-icount`); fails
/// unless QEMU exited by the guest's reset within `timeout`.
pub fn boot(
    images: &LinuxImages,
    cpus: u32,
    dir: &Path,
    timeout: Duration,
    cmdline: &str,
    extra: Vec<String>,
) -> Result<Native> {
    std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    let log = dir.join("serial.log");
    let _ = std::fs::remove_file(&log);
    let mut vm = Vm::new(
        Accel::Tcg,
        cpus,
        MEMORY,
        Boot::Pvh {
            kernel: images.vmlinux.clone(),
            cmdline: cmdline.into(),
            initrd: Some(images.initramfs.clone()),
        },
        format!("file:{}", log.display()),
    );
    vm.extra = extra.into_iter().map(Into::into).collect();
    let qemu_log = dir.join("qemu.log");
    let f = File::create(&qemu_log).context(|| format!("creating {}", qemu_log.display()))?;
    let mut cmd = Command::new(tools::QEMU.program);
    cmd.args(vm.args())
        .stdout(f.try_clone().context(|| "qemu log".into())?)
        .stderr(f);
    let (ended, _) = runner::run_with_timeout(&mut cmd, timeout)?;
    let lines = serial::lines(&std::fs::read(&log).unwrap_or_default());
    if ended.code() != Some(0) {
        bail!(
            "native Linux ({cpus} CPU(s)): QEMU did not exit by the guest's reset ({ended:?}, \
             killed after {} s wall if TimedOut); serial log {}:\n{}",
            timeout.as_secs(),
            log.display(),
            lines.join("\n")
        );
    }
    let root = paths::repo_root().display().to_string();
    Ok(Native {
        lines,
        command: vm.display().replace(&root, "."),
    })
}

//! Linux domain creation → `/init` (issue 13's benchmark row), for 1 and 2
//! vCPUs: the Linux benchmark's boot (`crate::linuxbench`) with the
//! hypervisor's `console-stamp` option (`hypervisor/src/console/stamp.rs`),
//! which prefixes each console line of the domain with the system time
//! since its creation began and its exits so far. The `Run /init` line's
//! stamp is the figure: the domain build (memory, the `vmlinux` and
//! initramfs copied in, boot parameters, nested tables), the kernel's
//! first steps before its own clock starts, and its boot to `/init`, all
//! under QEMU `-icount shift=7` (128 ns per instruction), the
//! hypervisor's work included.
//!
//! The stamp is taken when the hypervisor prints the line, at most its
//! output queue's lag after the guest wrote it (never before), and the
//! stamps themselves cost a little (two numbers formatted and about 20
//! more bytes sent per console line): the stamped boot's kernel-clock
//! figure to `/init` is shown beside the plain boot's, so that cost is
//! visible.

use std::fmt::Write as _;
use std::path::Path;

use xtask::bail;
use xtask::error::Result;
use xtask::iso::Module;

use crate::isoboot::{self, Backend, Machine};

/// One stamped boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedRow {
    pub vcpus: u32,
    /// System time from the start of the domain's creation to the line
    /// `Run /init as init process`, in ns.
    pub create_to_init_ns: u64,
    /// The domain's exits when that line was printed.
    pub exits_to_init: u64,
    /// The kernel's own clock at `Run /init` (µs), as in the plain rows.
    pub init_us: u64,
    pub command: String,
}

impl CreatedRow {
    /// Instructions from creation to `/init` (128 ns each).
    pub fn insns(&self) -> u64 {
        self.create_to_init_ns / Backend::Svm.ticks_per_insn()
    }
}

/// `[dom1 linux +123456ns 78x] [    0.698031] Run /init as init process`
/// gives (123456, 78, 698031).
pub fn parse_init(line: &str) -> Option<(u64, u64, u64)> {
    let (head, _) = line.split_once("] Run /init as init process")?;
    let rest = head.strip_prefix("[dom")?;
    let (stamp, printk) = rest.split_once("] [")?;
    let mut words = stamp.split_ascii_whitespace().skip(2);
    let ns = words.next()?.strip_prefix('+')?.strip_suffix("ns")?;
    let exits = words.next()?.strip_suffix('x')?;
    let (s, us) = printk.trim().split_once('.')?;
    Some((
        ns.parse().ok()?,
        exits.parse().ok()?,
        s.parse::<u64>().ok()? * 1_000_000 + us.parse::<u64>().ok()?,
    ))
}

/// One stamped boot with `vcpus` vCPUs, kernel `kernel`, into `dir`.
pub fn one(
    images: &xtask::linux::LinuxImages,
    kernel: &Path,
    dir: &Path,
    vcpus: u32,
) -> Result<CreatedRow> {
    let args = format!("kind=linux initrd=initramfs vcpus={vcpus} console=hvc0 initramfs_async=0");
    let modules = vec![
        Module::named(&images.vmlinux, "linux", &args)?,
        Module::named(&images.initramfs, "initramfs", "")?,
    ];
    let m = Machine {
        cpus: vcpus,
        ..Machine::default()
    };
    let b = isoboot::boot_on(Backend::Svm, &m, kernel, "console-stamp", modules, dir)?;
    let Some((ns, exits, init_us)) = b.lines.iter().find_map(|l| parse_init(l)) else {
        bail!(
            "{}: no stamped `Run /init` line; serial log:\n{}",
            dir.display(),
            b.lines.join("\n")
        );
    };
    Ok(CreatedRow {
        vcpus,
        create_to_init_ns: ns,
        exits_to_init: exits,
        init_us,
        command: b.command,
    })
}

/// The creation → `/init` table; `plain_init_us(vcpus)` is the plain
/// (unstamped) boot's kernel clock at `/init`, if measured.
pub fn table(rows: &[CreatedRow], plain_init_us: impl Fn(u32) -> Option<u64>) -> String {
    let mut s = String::from(
        "\nDomain creation → `/init` (issue 13): the same boot with the hypervisor's \
         `console-stamp` option (tools/xtask/src/linuxcreate.rs, \
         hypervisor/src/console/stamp.rs), which stamps each of the domain's console lines \
         with the system time since its creation began and its exits so far; the figure is \
         the `Run /init` line's stamp: the domain build (memory, `vmlinux` and initramfs \
         copied in, boot parameters, nested tables), the kernel's steps before its own clock \
         starts and its boot to `/init`, in instructions (128 ns each). A stamp is taken when \
         the hypervisor prints the line (at most the output queue's lag after the guest wrote \
         it). The stamps cost a little themselves: the last two columns are the kernel's own \
         clock at `/init` in the stamped and the plain boot.\n\n\
         | vCPUs | creation → `/init` (instructions) | exits to `/init` | kernel clock to `/init`, stamped boot (instructions) | same, plain boot |\n\
         |---:|---:|---:|---:|---:|\n",
    );
    let ticks = Backend::Svm.ticks_per_insn();
    for r in rows {
        let plain = plain_init_us(r.vcpus)
            .map_or_else(|| "-".to_string(), |us| (us * 1000 / ticks).to_string());
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {plain} |",
            r.vcpus,
            r.insns(),
            r.exits_to_init,
            r.init_us * 1000 / ticks,
        );
    }
    if let Some(r) = rows.first() {
        let _ = write!(s, "\nCommand (1 vCPU): `{}`\n", r.command);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_stamped_init_line() {
        assert_eq!(
            parse_init("[dom1 linux +4466308123ns 2143x] [    4.466308] Run /init as init process"),
            Some((4_466_308_123, 2143, 4_466_308))
        );
        // Unstamped (the plain boot) or another line: nothing.
        assert_eq!(
            parse_init("[dom1 linux] [    0.698031] Run /init as init process"),
            None
        );
        assert_eq!(
            parse_init("[dom1 linux +5ns 1x] [    0.698031] Freeing"),
            None
        );
    }

    #[test]
    fn the_table_converts_to_instructions() {
        let rows = [CreatedRow {
            vcpus: 2,
            create_to_init_ns: 1_280_000,
            exits_to_init: 7,
            init_us: 640,
            command: "c".into(),
        }];
        let s = table(&rows, |v| (v == 2).then_some(1_280));
        // 1,280,000 ns = 10,000 instructions; 640 us = 5,000; 1,280 us = 10,000.
        assert!(s.contains("| 2 | 10000 | 7 | 5000 | 10000 |"), "{s}");
    }
}

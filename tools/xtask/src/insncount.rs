//! Instructions per CPU under QEMU, from the `insncount` plugin
//! (tools/insncount): built here for the host, loaded with `-plugin`.
//! It splits each vCPU's instructions by address: the hypervisor's code
//! (its executable `PT_LOAD` range; the image runs identity-mapped at its
//! link address) and everything else. Guests are linked at 2 MiB
//! (guests/guest.ld), so the two ranges must not meet: checked here.

use std::path::{Path, PathBuf};

use xtask::bail;
use xtask::error::{Context, Result};
use xtask::{elfinfo, paths, serial};

/// `PF_X`.
const PF_X: u32 = 1;

/// The built plugin and the hypervisor's code range.
#[derive(Debug, Clone)]
pub struct Plugin {
    /// `target/release/libinsncount.so`.
    pub so: PathBuf,
    /// The hypervisor's executable range `[lo, hi)`.
    pub lo: u64,
    /// See `lo`.
    pub hi: u64,
}

/// One vCPU's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cpu {
    /// Instructions in the hypervisor's code.
    pub hv: u64,
    /// All other instructions (guests, firmware, GRUB).
    pub other: u64,
}

pub(crate) fn exec_range(elf: &Path) -> Result<(u64, u64)> {
    let bytes = std::fs::read(elf).context(|| format!("reading {}", elf.display()))?;
    let mut lo = u64::MAX;
    let mut hi = 0;
    for l in elfinfo::loads(&bytes)? {
        if l.flags & PF_X != 0 {
            lo = lo.min(l.paddr);
            hi = hi.max(l.paddr + l.memsz);
        }
    }
    if lo >= hi {
        bail!("{}: no executable segment", elf.display());
    }
    Ok((lo, hi))
}

/// Builds the plugin and finds the hypervisor's code range in `kernel`;
/// fails if any of `guests` (ELF files) has code inside it.
pub fn prepare(kernel: &Path, guests: &[PathBuf]) -> Result<Plugin> {
    crate::cargo::run(&["build", "-p", "insncount", "--release"])?;
    let so = paths::target_dir().join("release/libinsncount.so");
    if !so.is_file() {
        bail!("cargo built insncount but {} is missing", so.display());
    }
    let (lo, hi) = exec_range(kernel)?;
    for g in guests {
        let (glo, ghi) = exec_range(g)?;
        if glo < hi && lo < ghi {
            bail!(
                "{}'s code [{glo:#x}, {ghi:#x}) meets the hypervisor's [{lo:#x}, {hi:#x}): \
                 the plugin could not tell them apart",
                g.display()
            );
        }
    }
    Ok(Plugin { so, lo, hi })
}

impl Plugin {
    /// The `-plugin` argument that writes the counts to `out`.
    pub fn arg(&self, out: &Path) -> String {
        format!(
            "{},out={},lo={:#x},hi={:#x}",
            self.so.display(),
            out.display(),
            self.lo,
            self.hi
        )
    }
}

/// Every vCPU's counts at the first execution of one address (the
/// plugin's `snap=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snap {
    /// The address (virtual, as the vCPU ran it).
    pub addr: u64,
    /// Per vCPU, in order.
    pub cpus: Vec<Cpu>,
}

impl Plugin {
    /// [`Plugin::arg`] plus snapshots at `addrs`, written to `snaps`.
    pub fn arg_with_snaps(&self, out: &Path, snaps: &Path, addrs: &[u64]) -> String {
        let mut a = format!("{},snaps={}", self.arg(out), snaps.display());
        for x in addrs {
            a.push_str(&format!(",snap={x:#x}"));
        }
        a
    }
}

/// Reads the plugin's `snap=<addr> cpu=<i> in=<n> out=<n>` lines: one
/// [`Snap`] per address, in the order taken, its vCPUs numbered from 0.
pub fn read_snaps(file: &Path) -> Result<Vec<Snap>> {
    let text = std::fs::read_to_string(file).context(|| format!("reading {}", file.display()))?;
    parse_snaps(&text).context(|| format!("{}", file.display()))
}

fn parse_snaps(text: &str) -> Result<Vec<Snap>> {
    let mut snaps: Vec<Snap> = Vec::new();
    for line in text.lines() {
        let get = |k: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(k)?.strip_prefix('='))
                .and_then(serial::parse_number)
        };
        let (Some(addr), Some(cpu), Some(hv), Some(other)) =
            (get("snap"), get("cpu"), get("in"), get("out"))
        else {
            bail!("unexpected plugin line `{line}`");
        };
        let c = Cpu { hv, other };
        match snaps.last_mut() {
            Some(s) if s.addr == addr && cpu == s.cpus.len() as u64 => s.cpus.push(c),
            _ if cpu == 0 => {
                if snaps.iter().any(|s| s.addr == addr) {
                    bail!("address {addr:#x} snapped twice");
                }
                snaps.push(Snap {
                    addr,
                    cpus: vec![c],
                });
            }
            _ => bail!("vCPU out of order in `{line}`"),
        }
    }
    if let Some(s) = snaps.iter().find(|s| s.cpus.len() != snaps[0].cpus.len()) {
        bail!(
            "snapshot at {:#x} lists {} vCPUs, the first {}",
            s.addr,
            s.cpus.len(),
            snaps[0].cpus.len()
        );
    }
    Ok(snaps)
}

/// Reads the plugin's `cpu=<i> in=<n> out=<n>` lines, one per vCPU in
/// order.
pub fn read(out: &Path) -> Result<Vec<Cpu>> {
    let text = std::fs::read_to_string(out).context(|| format!("reading {}", out.display()))?;
    parse(&text).context(|| format!("{}", out.display()))
}

fn parse(text: &str) -> Result<Vec<Cpu>> {
    let mut cpus = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let get = |k: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(k)?.strip_prefix('='))
                .and_then(serial::parse_number)
        };
        match (get("cpu"), get("in"), get("out")) {
            (Some(c), Some(hv), Some(other)) if c == i as u64 => cpus.push(Cpu { hv, other }),
            _ => bail!("unexpected plugin line `{line}`"),
        }
    }
    if cpus.is_empty() {
        bail!("no counts (did QEMU run the plugin's exit hook?)");
    }
    Ok(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        let c = parse("cpu=0 in=10 out=20\ncpu=1 in=3 out=4\n");
        assert_eq!(
            c.ok(),
            Some(vec![Cpu { hv: 10, other: 20 }, Cpu { hv: 3, other: 4 }])
        );
        assert!(parse("cpu=1 in=3 out=4\n").is_err(), "out of order");
        assert!(parse("").is_err());
    }

    #[test]
    fn parses_snapshots() {
        let s = parse_snaps(
            "snap=0xffffffff81000000 cpu=0 in=10 out=20\n\
             snap=0xffffffff81000000 cpu=1 in=1 out=0\n\
             snap=0xffffffff82000000 cpu=0 in=30 out=400\n\
             snap=0xffffffff82000000 cpu=1 in=5 out=60\n",
        );
        assert_eq!(
            s.ok(),
            Some(vec![
                Snap {
                    addr: 0xffff_ffff_8100_0000,
                    cpus: vec![Cpu { hv: 10, other: 20 }, Cpu { hv: 1, other: 0 }]
                },
                Snap {
                    addr: 0xffff_ffff_8200_0000,
                    cpus: vec![Cpu { hv: 30, other: 400 }, Cpu { hv: 5, other: 60 }]
                },
            ])
        );
        // None taken (the address never ran) is an empty list, not an error.
        assert_eq!(parse_snaps("").ok(), Some(vec![]));
        assert!(
            parse_snaps("snap=0x10 cpu=1 in=1 out=1\n").is_err(),
            "starts at 1"
        );
        assert!(
            parse_snaps("snap=0x10 cpu=0 in=1 out=1\nsnap=0x20 cpu=0 in=1 out=1\nsnap=0x20 cpu=1 in=1 out=1\n").is_err(),
            "vCPU counts differ"
        );
        assert!(
            parse_snaps("snap=0x10 cpu=0 in=1 out=1\nsnap=0x20 cpu=0 in=1 out=1\nsnap=0x10 cpu=0 in=1 out=1\n").is_err(),
            "twice"
        );
        assert!(parse_snaps("snap=0x10 cpu=0 in=1\n").is_err());
    }
}

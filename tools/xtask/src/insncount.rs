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
}

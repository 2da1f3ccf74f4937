//! Just enough ELF64 reading to report the hypervisor image's size.

use crate::bail;
use crate::error::Result;

/// One `PT_LOAD` program header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// Where the segment's bytes start in the file.
    pub offset: u64,
    /// Physical load address.
    pub paddr: u64,
    /// Bytes in the file.
    pub filesz: u64,
    /// Bytes in memory (includes .bss).
    pub memsz: u64,
    /// `PF_X | PF_W | PF_R` bits.
    pub flags: u32,
}

const PT_LOAD: u32 = 1;

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// The `PT_LOAD` segments of a little-endian ELF64 file.
pub fn loads(elf: &[u8]) -> Result<Vec<Load>> {
    if elf.get(..4) != Some(b"\x7fELF".as_slice())
        || elf.get(4) != Some(&2)
        || elf.get(5) != Some(&1)
    {
        bail!("not a little-endian ELF64 file");
    }
    let parse = || -> Option<Vec<Load>> {
        let phoff = usize::try_from(u64_at(elf, 0x20)?).ok()?;
        let phentsize = usize::from(u16_at(elf, 0x36)?);
        let phnum = usize::from(u16_at(elf, 0x38)?);
        if phentsize < 0x38 {
            return None;
        }
        let mut out = Vec::new();
        for i in 0..phnum {
            let ph = phoff.checked_add(i.checked_mul(phentsize)?)?;
            if u32_at(elf, ph)? == PT_LOAD {
                out.push(Load {
                    flags: u32_at(elf, ph + 4)?,
                    offset: u64_at(elf, ph + 8)?,
                    paddr: u64_at(elf, ph + 0x18)?,
                    filesz: u64_at(elf, ph + 0x20)?,
                    memsz: u64_at(elf, ph + 0x28)?,
                });
            }
        }
        Some(out)
    };
    match parse() {
        Some(l) => Ok(l),
        None => bail!("ELF program headers are cut short or malformed"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    fn elf_with(phdrs: &[(u32, u64, u64)]) -> Vec<u8> {
        let mut e = vec![0u8; 0x40];
        e[..6].copy_from_slice(b"\x7fELF\x02\x01");
        e[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        e[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes());
        e[0x38..0x3a].copy_from_slice(&(phdrs.len() as u16).to_le_bytes());
        for &(ty, filesz, memsz) in phdrs {
            let mut ph = vec![0u8; 0x38];
            ph[..4].copy_from_slice(&ty.to_le_bytes());
            ph[4..8].copy_from_slice(&5u32.to_le_bytes());
            ph[8..0x10].copy_from_slice(&0x1000u64.to_le_bytes());
            ph[0x18..0x20].copy_from_slice(&0x10_0000u64.to_le_bytes());
            ph[0x20..0x28].copy_from_slice(&filesz.to_le_bytes());
            ph[0x28..0x30].copy_from_slice(&memsz.to_le_bytes());
            e.extend(ph);
        }
        e
    }

    #[test]
    fn sums_only_load_segments() {
        let e = elf_with(&[(1, 10, 20), (4, 1, 1), (1, 0, 4096)]);
        let l = loads(&e).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l.iter().map(|s| s.memsz).sum::<u64>(), 4116);
        assert_eq!((l[0].paddr, l[0].offset), (0x10_0000, 0x1000));
    }

    #[test]
    fn rejects_garbage_and_truncation() {
        assert!(loads(b"MZ").is_err());
        let mut e = elf_with(&[(1, 10, 20)]);
        e.truncate(0x50);
        assert!(loads(&e).is_err());
    }

    #[test]
    fn reads_our_own_binary() {
        // The test binary itself is an ELF64 with PT_LOAD segments.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(!loads(&me).unwrap().is_empty());
    }
}

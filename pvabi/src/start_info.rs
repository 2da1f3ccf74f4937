//! The start-info page: what the hypervisor tells a domain at entry.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::{Error, PAGE_SIZE, TIME_INFO_SIZE, TimeInfo, is_compatible};

/// [`StartInfo::magic`]: the bytes `"KSTI"` read as a little-endian `u32`.
pub const START_INFO_MAGIC: u32 = u32::from_le_bytes(*b"KSTI");

/// [`StartInfo::hypercall_insn`]: hypercalls use `VMCALL` (Intel VT-x).
pub const HYPERCALL_VMCALL: u32 = 0;
/// [`StartInfo::hypercall_insn`]: hypercalls use `VMMCALL` (AMD-V).
pub const HYPERCALL_VMMCALL: u32 = 1;

/// [`StartInfo::flags`] bit: this is the privileged control domain. Only a
/// privileged domain may use [`crate::HC_CONSOLE_READ`] (and, in later
/// versions, the domain-control operations).
pub const START_FLAG_PRIVILEGED: u32 = 1 << 0;

/// Capacity of [`StartInfo::cmdline`] in bytes.
pub const CMDLINE_MAX: usize = 1024;

/// Where in the start-info page the hypervisor puts the domain's
/// [`TimeInfo`]: [`StartInfo::time_info_gpa`] is
/// `start_info_gpa + TIME_INFO_OFFSET`.
pub const TIME_INFO_OFFSET: u64 = 2048;

/// The start-info page's contents, written by the hypervisor before the
/// domain's first instruction. All fields are OUT (hypervisor to guest); the
/// guest reads them and never needs to write them back. The hypervisor does
/// not change them after entry.
///
/// Every field is a fixed-width integer, so any bit pattern is a valid value:
/// a guest must still check what it relies on (e.g. `cmdline_len` against
/// [`CMDLINE_MAX`], which [`StartInfo::cmdline`] does, or `time_info_gpa`,
/// which [`StartInfo::time_info_offset`] does).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct StartInfo {
    /// OUT: [`START_INFO_MAGIC`]; anything else means RDI does not point at
    /// a start-info page.
    pub magic: u32,
    /// OUT: the ABI version the hypervisor implements ([`crate::PVABI_VERSION`]);
    /// check it with [`is_compatible`].
    pub abi_version: u32,
    /// OUT: which instruction makes a hypercall: [`HYPERCALL_VMCALL`] or
    /// [`HYPERCALL_VMMCALL`].
    pub hypercall_insn: u32,
    /// OUT: this domain's id. Ids start at 1 and are never reused while
    /// the hypervisor runs: under the `dom0` option the control domain is
    /// domain 1 (boot module 0) and the domains it creates are 2, 3, ...;
    /// no domain is 0. Whether a domain is the control domain is
    /// [`START_FLAG_PRIVILEGED`] in `flags`, never its id.
    pub domain_id: u32,
    /// OUT: number of vCPUs the domain may run, ids `0..nr_vcpus`. Only
    /// vCPU 0 is running at entry; the guest starts the others with
    /// [`crate::HC_VCPU_UP`].
    pub nr_vcpus: u32,
    /// OUT: flags: [`START_FLAG_PRIVILEGED`]; other bits are zero.
    pub flags: u32,
    /// OUT: size of the guest-physical space in bytes: RAM is at
    /// guest-physical `0..memory_bytes`, a multiple of 4 KiB, all present at
    /// entry. A domain made by dom0 has the `memory` of its configuration
    /// (MiB); a boot module started without dom0 gets 8 MiB. Out of it come
    /// the image (at 2 MiB, where the linker script puts it), and at the
    /// top the 64 KiB initial stack, the initial page tables, a GDT page and
    /// this page; a heap declared with `guest_heap!(N)` is N bytes of
    /// `.bss`, part of the image, whether used or not.
    pub memory_bytes: u64,
    /// OUT: guest-physical address of this page (also in RDI at entry).
    pub start_info_gpa: u64,
    /// OUT: guest-physical address of the initial PML4 (also in CR3). The
    /// tables lie inside guest memory and belong to the guest.
    pub page_tables_gpa: u64,
    /// OUT: guest-physical (== guest-virtual) address one past the top of the
    /// initial stack (RSP at entry is `stack_top - 8`, as just after a
    /// `call`).
    pub stack_top: u64,
    /// OUT: number of valid bytes in [`StartInfo::cmdline`], at most
    /// [`CMDLINE_MAX`].
    pub cmdline_len: u32,
    /// Padding so that `cmdline` starts 8-byte aligned; zero.
    pub _pad0: u32,
    /// OUT: the domain's command line, `cmdline_len` bytes of UTF-8; not
    /// necessarily NUL-terminated. The bytes after `cmdline_len` are zero.
    pub cmdline: [u8; CMDLINE_MAX],
    /// OUT (since 1.0): guest-physical address of the domain's [`TimeInfo`],
    /// inside this page at `start_info_gpa + `[`TIME_INFO_OFFSET`]. The
    /// hypervisor keeps updating it for the domain's whole life, so the
    /// guest must neither overwrite nor release this page.
    pub time_info_gpa: u64,
    /// OUT (since 1.0): the domain's memory quota in 4 KiB pages: the most
    /// pages it may have present at once (the initial `memory_bytes / 4096`).
    /// See [`crate::MemInfo`].
    pub max_pages: u64,
}

/// Size of [`StartInfo`] in bytes. The bytes between it and
/// [`TIME_INFO_OFFSET`], and after the [`TimeInfo`], are zero.
pub const START_INFO_SIZE: usize = 1104;

const _: () = assert!(core::mem::size_of::<StartInfo>() == START_INFO_SIZE);
const _: () = assert!(START_INFO_SIZE as u64 <= TIME_INFO_OFFSET);
const _: () = assert!(TIME_INFO_OFFSET + TIME_INFO_SIZE as u64 <= PAGE_SIZE);
const _: () = assert!(TIME_INFO_OFFSET.is_multiple_of(8));
const _: () = assert!(core::mem::align_of::<StartInfo>() == 8);
const _: () = assert!(core::mem::offset_of!(StartInfo, magic) == 0);
const _: () = assert!(core::mem::offset_of!(StartInfo, abi_version) == 4);
const _: () = assert!(core::mem::offset_of!(StartInfo, hypercall_insn) == 8);
const _: () = assert!(core::mem::offset_of!(StartInfo, domain_id) == 12);
const _: () = assert!(core::mem::offset_of!(StartInfo, nr_vcpus) == 16);
const _: () = assert!(core::mem::offset_of!(StartInfo, flags) == 20);
const _: () = assert!(core::mem::offset_of!(StartInfo, memory_bytes) == 24);
const _: () = assert!(core::mem::offset_of!(StartInfo, start_info_gpa) == 32);
const _: () = assert!(core::mem::offset_of!(StartInfo, page_tables_gpa) == 40);
const _: () = assert!(core::mem::offset_of!(StartInfo, stack_top) == 48);
const _: () = assert!(core::mem::offset_of!(StartInfo, cmdline_len) == 56);
const _: () = assert!(core::mem::offset_of!(StartInfo, _pad0) == 60);
const _: () = assert!(core::mem::offset_of!(StartInfo, cmdline) == 64);
const _: () = assert!(core::mem::offset_of!(StartInfo, time_info_gpa) == 1088);
const _: () = assert!(core::mem::offset_of!(StartInfo, max_pages) == 1096);

impl StartInfo {
    /// An all-zero start info (not valid until the fields are filled in).
    pub const fn zeroed() -> Self {
        Self {
            magic: 0,
            abi_version: 0,
            hypercall_insn: 0,
            domain_id: 0,
            nr_vcpus: 0,
            flags: 0,
            memory_bytes: 0,
            start_info_gpa: 0,
            page_tables_gpa: 0,
            stack_top: 0,
            cmdline_len: 0,
            _pad0: 0,
            cmdline: [0; CMDLINE_MAX],
            time_info_gpa: 0,
            max_pages: 0,
        }
    }

    /// The valid part of the command line. A `cmdline_len` beyond
    /// [`CMDLINE_MAX`] (a corrupted page) is clamped, never trusted.
    pub fn cmdline(&self) -> &[u8] {
        let len = usize::try_from(self.cmdline_len)
            .unwrap_or(CMDLINE_MAX)
            .min(CMDLINE_MAX);
        self.cmdline.get(..len).unwrap_or(&[])
    }

    /// Stores `bytes` as the command line, zeroing the rest of the field.
    /// Fails with [`Error::TooBig`] (leaving `self` unchanged) when `bytes`
    /// is longer than [`CMDLINE_MAX`].
    pub fn set_cmdline(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let len = u32::try_from(bytes.len()).map_err(|_| Error::TooBig)?;
        let dst = self.cmdline.get_mut(..bytes.len()).ok_or(Error::TooBig)?;
        dst.copy_from_slice(bytes);
        for b in self.cmdline.iter_mut().skip(bytes.len()) {
            *b = 0;
        }
        self.cmdline_len = len;
        Ok(())
    }

    /// Whether [`START_FLAG_PRIVILEGED`] is set: this is the control domain.
    pub const fn is_privileged(&self) -> bool {
        self.flags & START_FLAG_PRIVILEGED != 0
    }

    /// Where the [`TimeInfo`] lies, as a byte offset from the start of this
    /// page, if `time_info_gpa` is sane: 8-byte aligned, after the
    /// `StartInfo`, and with the whole `TimeInfo` inside the page. `None`
    /// otherwise (a guest then has no clock and must not read one).
    pub fn time_info_offset(&self) -> Option<usize> {
        let off = self.time_info_gpa.checked_sub(self.start_info_gpa)?;
        let end = off.checked_add(TIME_INFO_SIZE as u64)?;
        let sane = off.is_multiple_of(8) && off >= START_INFO_SIZE as u64 && end <= PAGE_SIZE;
        if sane {
            usize::try_from(off).ok()
        } else {
            None
        }
    }

    /// The structure's bytes as they lie in the page (little-endian, no
    /// padding hidden: every byte is a field or explicit padding).
    pub fn bytes(&self) -> &[u8] {
        IntoBytes::as_bytes(self)
    }

    /// Reads a start info from the first [`START_INFO_SIZE`] bytes of
    /// `page`; `None` if `page` is shorter. Any bytes are a valid value, so
    /// the caller still checks [`StartInfo::is_valid`].
    pub fn from_page(page: &[u8]) -> Option<Self> {
        Self::read_from_prefix(page).ok().map(|(si, _)| si)
    }

    /// Whether `magic` is right and the ABI version is one this guest
    /// supports ([`is_compatible`]).
    pub fn is_valid(&self) -> bool {
        self.magic == START_INFO_MAGIC && is_compatible(self.abi_version)
    }
}

impl Default for StartInfo {
    fn default() -> Self {
        Self::zeroed()
    }
}

// A `TimeInfo` at `TIME_INFO_OFFSET` is naturally aligned in the page.
const _: () = assert!(TIME_INFO_OFFSET.is_multiple_of(core::mem::align_of::<TimeInfo>() as u64));

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::PVABI_VERSION;
    use core::mem::offset_of;
    use zerocopy::FromZeros;

    #[test]
    fn start_info_layout() {
        assert_eq!(core::mem::size_of::<StartInfo>(), START_INFO_SIZE);
        assert_eq!(core::mem::size_of::<StartInfo>(), 1104);
        assert_eq!(core::mem::align_of::<StartInfo>(), 8);
        let offsets = [
            (offset_of!(StartInfo, magic), 0),
            (offset_of!(StartInfo, abi_version), 4),
            (offset_of!(StartInfo, hypercall_insn), 8),
            (offset_of!(StartInfo, domain_id), 12),
            (offset_of!(StartInfo, nr_vcpus), 16),
            (offset_of!(StartInfo, flags), 20),
            (offset_of!(StartInfo, memory_bytes), 24),
            (offset_of!(StartInfo, start_info_gpa), 32),
            (offset_of!(StartInfo, page_tables_gpa), 40),
            (offset_of!(StartInfo, stack_top), 48),
            (offset_of!(StartInfo, cmdline_len), 56),
            (offset_of!(StartInfo, _pad0), 60),
            (offset_of!(StartInfo, cmdline), 64),
            (offset_of!(StartInfo, time_info_gpa), 1088),
            (offset_of!(StartInfo, max_pages), 1096),
        ];
        for (got, want) in offsets {
            assert_eq!(got, want);
        }
        assert_eq!(START_INFO_MAGIC.to_le_bytes(), *b"KSTI");
        assert_eq!(START_FLAG_PRIVILEGED, 1);
        assert_eq!(TIME_INFO_OFFSET, 2048);
    }

    #[test]
    fn start_info_bytes_round_trip() {
        let mut si = StartInfo::new_zeroed();
        assert_eq!(si, StartInfo::zeroed());
        assert_eq!(si, StartInfo::default());
        si.magic = START_INFO_MAGIC;
        si.abi_version = PVABI_VERSION;
        si.hypercall_insn = HYPERCALL_VMMCALL;
        si.memory_bytes = 0x1234_5678_9abc_d000;
        si.stack_top = 0xdead_b000;
        si.time_info_gpa = 0x7fff_f800;
        si.max_pages = 0x4000;
        si.set_cmdline(b"console=hvc0").ok();
        let bytes = si.as_bytes();
        assert_eq!(bytes.len(), START_INFO_SIZE);
        assert_eq!(&bytes[0..4], b"KSTI");
        assert_eq!(&bytes[4..8], &PVABI_VERSION.to_le_bytes());
        assert_eq!(&bytes[8..12], &1u32.to_le_bytes());
        assert_eq!(&bytes[24..32], &0x1234_5678_9abc_d000u64.to_le_bytes());
        assert_eq!(&bytes[48..56], &0xdead_b000u64.to_le_bytes());
        assert_eq!(&bytes[56..60], &12u32.to_le_bytes());
        assert_eq!(&bytes[64..76], b"console=hvc0");
        assert_eq!(&bytes[1088..1096], &0x7fff_f800u64.to_le_bytes());
        assert_eq!(&bytes[1096..1104], &0x4000u64.to_le_bytes());
        let back = StartInfo::read_from_bytes(bytes).ok();
        assert_eq!(back, Some(si));
        assert_eq!(si.bytes(), bytes);
        let mut page = [0u8; 4096];
        page[..START_INFO_SIZE].copy_from_slice(bytes);
        assert_eq!(StartInfo::from_page(&page), Some(si));
        assert_eq!(StartInfo::from_page(&page[..START_INFO_SIZE - 1]), None);
        assert!(si.is_valid());
        si.magic ^= 1;
        assert!(!si.is_valid());
        si.magic ^= 1;
        si.abi_version = 0x0000_0001; // 0.1, pre-release
        assert!(!si.is_valid());
    }

    #[test]
    fn cmdline_handling() {
        let mut si = StartInfo::zeroed();
        assert_eq!(si.cmdline(), b"");
        si.set_cmdline(b"abcdef").ok();
        si.set_cmdline(b"xy").ok();
        assert_eq!(si.cmdline(), b"xy");
        assert!(si.cmdline[2..].iter().all(|&b| b == 0));
        let long = [b'a'; CMDLINE_MAX + 1];
        assert_eq!(si.set_cmdline(&long), Err(Error::TooBig));
        assert_eq!(si.cmdline(), b"xy");
        assert_eq!(si.set_cmdline(&long[..CMDLINE_MAX]), Ok(()));
        assert_eq!(si.cmdline().len(), CMDLINE_MAX);
        // A corrupted length is clamped.
        si.cmdline_len = u32::MAX;
        assert_eq!(si.cmdline().len(), CMDLINE_MAX);
    }

    #[test]
    fn privileged_flag() {
        let mut si = StartInfo::zeroed();
        assert!(!si.is_privileged());
        si.flags = START_FLAG_PRIVILEGED;
        assert!(si.is_privileged());
        si.flags = !START_FLAG_PRIVILEGED;
        assert!(!si.is_privileged());
    }

    #[test]
    fn time_info_offset_is_checked() {
        let mut si = StartInfo::zeroed();
        si.start_info_gpa = 0x3ff_f000;
        si.time_info_gpa = si.start_info_gpa + TIME_INFO_OFFSET;
        assert_eq!(si.time_info_offset(), Some(2048));
        // The last place a whole TimeInfo fits.
        si.time_info_gpa = si.start_info_gpa + PAGE_SIZE - TIME_INFO_SIZE as u64;
        assert_eq!(si.time_info_offset(), Some(4096 - 40));
        let bad = [
            0,                                    // missing
            si.start_info_gpa,                    // over the StartInfo itself
            si.start_info_gpa + 1000,             // inside the StartInfo
            si.start_info_gpa + 2049,             // unaligned
            si.start_info_gpa + PAGE_SIZE - 24,   // runs off the page
            si.start_info_gpa + PAGE_SIZE,        // next page
            si.start_info_gpa - PAGE_SIZE + 2048, // previous page
            u64::MAX,
        ];
        for gpa in bad {
            si.time_info_gpa = gpa;
            assert_eq!(si.time_info_offset(), None, "{gpa:#x}");
        }
        si.start_info_gpa = u64::MAX - 100;
        si.time_info_gpa = u64::MAX;
        assert_eq!(si.time_info_offset(), None);
    }
}

//! Linux's `struct boot_params` (the "zero page") and its `setup_header`,
//! as far as the 64-bit boot protocol needs them.
//!
//! Layout from Linux 6.1 `arch/x86/include/uapi/asm/bootparam.h` and
//! `Documentation/x86/boot.rst` ("THE REAL-MODE KERNEL HEADER", "64-bit
//! BOOT PROTOCOL"): every field this loader writes is named, everything
//! else is reserved padding left zero. The offsets are the ABI, so each is
//! asserted at compile time. The structs are packed because the C ones are
//! (`setup_header` starts at the odd offset 0x1f1).
#![forbid(unsafe_code)]

use zerocopy::{Immutable, IntoBytes, KnownLayout};

/// `hdr.boot_flag`: the 0xAA55 boot-sector signature (boot.rst, 0x1fe).
pub const BOOT_FLAG: u16 = 0xaa55;
/// `hdr.header`: the magic "HdrS" (boot.rst, 0x202).
pub const HEADER_MAGIC: u32 = u32::from_le_bytes(*b"HdrS");
/// `hdr.version` this loader speaks: 2.15 (Linux 5.5+). The 64-bit entry
/// needs 2.12 (0x020c) or later for `xloadflags` and the `ext_` fields.
pub const PROTOCOL_VERSION: u16 = 0x020f;
/// `hdr.type_of_loader`: 0xff, "undefined" (boot.rst: a loader without an
/// assigned id uses 0xff).
pub const LOADER_UNDEFINED: u8 = 0xff;
/// `hdr.loadflags` bit 0: the protected-mode code is loaded at 0x100000 or
/// above (always true of a 64-bit entry).
pub const LOADED_HIGH: u8 = 1 << 0;
/// Entries the zero page's own e820 table holds (`E820_MAX_ENTRIES_ZEROPAGE`).
pub const E820_MAX: usize = 128;
/// e820 type: usable RAM.
pub const E820_RAM: u32 = 1;
/// e820 type: reserved; Linux never allocates from it.
pub const E820_RESERVED: u32 = 2;
/// Linux's x86 `COMMAND_LINE_SIZE`: the longest command line it keeps,
/// NUL included.
pub const LINUX_CMDLINE_MAX: usize = 2048;

/// One e820 entry (`struct boot_e820_entry`, packed, 20 bytes).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, IntoBytes, Immutable, KnownLayout)]
pub struct E820Entry {
    /// First byte.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// [`E820_RAM`] or [`E820_RESERVED`].
    pub kind: u32,
}

/// `struct setup_header`, from `setup_sects` (0x1f1) to
/// `kernel_info_offset` (ends at 0x26c).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, IntoBytes, Immutable, KnownLayout)]
pub struct SetupHeader {
    _before_boot_flag: [u8; 0x1fe - 0x1f1],
    /// 0x1fe: [`BOOT_FLAG`].
    pub boot_flag: u16,
    /// 0x200: the real-mode jump; unused by a 64-bit entry.
    pub jump: u16,
    /// 0x202: [`HEADER_MAGIC`].
    pub header: u32,
    /// 0x206: [`PROTOCOL_VERSION`].
    pub version: u16,
    _realmode_to_kernel_version: [u8; 0x210 - 0x208],
    /// 0x210: [`LOADER_UNDEFINED`].
    pub type_of_loader: u8,
    /// 0x211: [`LOADED_HIGH`].
    pub loadflags: u8,
    _setup_move_size_code32: [u8; 0x218 - 0x212],
    /// 0x218: low 32 bits of the initramfs' guest-physical address.
    pub ramdisk_image: u32,
    /// 0x21c: low 32 bits of its size.
    pub ramdisk_size: u32,
    _kludge_heap_ext_loader: [u8; 0x228 - 0x220],
    /// 0x228: low 32 bits of the command line's guest-physical address.
    pub cmd_line_ptr: u32,
    _initrd_max_to_xloadflags: [u8; 0x238 - 0x22c],
    /// 0x238: the longest command line, NUL excluded (filled by the kernel
    /// image's own header; the loader reports what it gave).
    pub cmdline_size: u32,
    _subarch_to_end: [u8; 0x26c - 0x23c],
}

/// `struct boot_params`: one 4 KiB page.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, IntoBytes, Immutable, KnownLayout)]
pub struct BootParams {
    _screen_to_olpc: [u8; 0x0c0],
    /// 0x0c0: high 32 bits of `hdr.ramdisk_image`.
    pub ext_ramdisk_image: u32,
    /// 0x0c4: high 32 bits of `hdr.ramdisk_size`.
    pub ext_ramdisk_size: u32,
    /// 0x0c8: high 32 bits of `hdr.cmd_line_ptr`.
    pub ext_cmd_line_ptr: u32,
    _pad4_to_scratch: [u8; 0x1e8 - 0x0cc],
    /// 0x1e8: valid entries in `e820_table`.
    pub e820_entries: u8,
    _edd_to_sentinel: [u8; 0x1f1 - 0x1e9],
    /// 0x1f1: the setup header.
    pub hdr: SetupHeader,
    _pad7_edd_mbr: [u8; 0x2d0 - 0x26c],
    /// 0x2d0: the memory map.
    pub e820_table: [E820Entry; E820_MAX],
    _pad8_to_end: [u8; 0x1000 - 0xcd0],
}

const _: () = assert!(core::mem::size_of::<E820Entry>() == 20);
const _: () = assert!(core::mem::size_of::<SetupHeader>() == 0x26c - 0x1f1);
const _: () = assert!(core::mem::size_of::<BootParams>() == 4096);
const _: () = assert!(core::mem::offset_of!(BootParams, ext_ramdisk_image) == 0x0c0);
const _: () = assert!(core::mem::offset_of!(BootParams, ext_ramdisk_size) == 0x0c4);
const _: () = assert!(core::mem::offset_of!(BootParams, ext_cmd_line_ptr) == 0x0c8);
const _: () = assert!(core::mem::offset_of!(BootParams, e820_entries) == 0x1e8);
const _: () = assert!(core::mem::offset_of!(BootParams, hdr) == 0x1f1);
const _: () = assert!(core::mem::offset_of!(BootParams, e820_table) == 0x2d0);
const HDR: usize = 0x1f1;
const _: () = assert!(HDR + core::mem::offset_of!(SetupHeader, boot_flag) == 0x1fe);
const _: () = assert!(HDR + core::mem::offset_of!(SetupHeader, header) == 0x202);
const _: () = assert!(HDR + core::mem::offset_of!(SetupHeader, version) == 0x206);
const _: () = assert!(HDR + core::mem::offset_of!(SetupHeader, type_of_loader) == 0x210);
const _: () = assert!(HDR + core::mem::offset_of!(SetupHeader, loadflags) == 0x211);
const _: () = assert!(HDR + core::mem::offset_of!(SetupHeader, ramdisk_image) == 0x218);
const _: () = assert!(HDR + core::mem::offset_of!(SetupHeader, ramdisk_size) == 0x21c);
const _: () = assert!(HDR + core::mem::offset_of!(SetupHeader, cmd_line_ptr) == 0x228);
const _: () = assert!(HDR + core::mem::offset_of!(SetupHeader, cmdline_size) == 0x238);

impl BootParams {
    /// An all-zero zero page with the header fields every 64-bit entry
    /// needs: boot flag, "HdrS", protocol version, loader type, LOADED_HIGH.
    pub fn new() -> Self {
        Self {
            _screen_to_olpc: [0; 0x0c0],
            ext_ramdisk_image: 0,
            ext_ramdisk_size: 0,
            ext_cmd_line_ptr: 0,
            _pad4_to_scratch: [0; 0x1e8 - 0x0cc],
            e820_entries: 0,
            _edd_to_sentinel: [0; 0x1f1 - 0x1e9],
            hdr: SetupHeader {
                _before_boot_flag: [0; 0x1fe - 0x1f1],
                boot_flag: BOOT_FLAG,
                jump: 0,
                header: HEADER_MAGIC,
                version: PROTOCOL_VERSION,
                _realmode_to_kernel_version: [0; 0x210 - 0x208],
                type_of_loader: LOADER_UNDEFINED,
                loadflags: LOADED_HIGH,
                _setup_move_size_code32: [0; 0x218 - 0x212],
                ramdisk_image: 0,
                ramdisk_size: 0,
                _kludge_heap_ext_loader: [0; 0x228 - 0x220],
                cmd_line_ptr: 0,
                _initrd_max_to_xloadflags: [0; 0x238 - 0x22c],
                cmdline_size: 0,
                _subarch_to_end: [0; 0x26c - 0x23c],
            },
            _pad7_edd_mbr: [0; 0x2d0 - 0x26c],
            e820_table: [E820Entry::default(); E820_MAX],
            _pad8_to_end: [0; 0x1000 - 0xcd0],
        }
    }

    /// Sets the command line's address (split over `cmd_line_ptr` and
    /// `ext_cmd_line_ptr`) and its length without the NUL.
    pub fn set_cmdline(&mut self, gpa: u64, len: u32) {
        self.hdr.cmd_line_ptr = gpa as u32;
        self.ext_cmd_line_ptr = (gpa >> 32) as u32;
        self.hdr.cmdline_size = len;
    }

    /// Sets the initramfs' address and size (low and `ext_` high halves).
    pub fn set_ramdisk(&mut self, gpa: u64, size: u64) {
        self.hdr.ramdisk_image = gpa as u32;
        self.ext_ramdisk_image = (gpa >> 32) as u32;
        self.hdr.ramdisk_size = size as u32;
        self.ext_ramdisk_size = (size >> 32) as u32;
    }

    /// Appends an e820 entry; `false` when the table is full.
    pub fn push_e820(&mut self, addr: u64, size: u64, kind: u32) -> bool {
        let n = usize::from(self.e820_entries);
        let Some(slot) = self.e820_table.get_mut(n) else {
            return false;
        };
        *slot = E820Entry { addr, size, kind };
        self.e820_entries += 1;
        true
    }
}

impl Default for BootParams {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn u16_at(b: &[u8], o: usize) -> u16 {
        u16::from_le_bytes(b[o..o + 2].try_into().unwrap())
    }
    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }

    /// The bytes land where Linux reads them (offsets from bootparam.h).
    #[test]
    fn fields_at_linux_offsets() {
        let mut bp = BootParams::new();
        bp.set_cmdline(0x1_2345_6000, 2047);
        bp.set_ramdisk(0x3_0000_1000, 0x4_0000_0002);
        assert!(bp.push_e820(0, 0x1000, E820_RAM));
        assert!(bp.push_e820(0x1000, 0x2000, E820_RESERVED));
        let b = bp.as_bytes();
        assert_eq!(b.len(), 4096);
        assert_eq!(u16_at(b, 0x1fe), 0xaa55);
        assert_eq!(&b[0x202..0x206], b"HdrS");
        assert_eq!(u16_at(b, 0x206), 0x020f);
        assert_eq!(b[0x210], 0xff);
        assert_eq!(b[0x211], 1);
        assert_eq!(u32_at(b, 0x228), 0x2345_6000);
        assert_eq!(u32_at(b, 0x0c8), 1);
        assert_eq!(u32_at(b, 0x238), 2047);
        assert_eq!(u32_at(b, 0x218), 0x0000_1000);
        assert_eq!(u32_at(b, 0x0c0), 3);
        assert_eq!(u32_at(b, 0x21c), 2);
        assert_eq!(u32_at(b, 0x0c4), 4);
        assert_eq!(b[0x1e8], 2);
        // Second entry: addr 0x1000, size 0x2000, type 2, 20 bytes each.
        let e = 0x2d0 + 20;
        assert_eq!(u32_at(b, e), 0x1000);
        assert_eq!(u32_at(b, e + 8), 0x2000);
        assert_eq!(u32_at(b, e + 16), 2);
    }

    #[test]
    fn e820_table_fills_up() {
        let mut bp = BootParams::new();
        for i in 0..E820_MAX as u64 {
            assert!(bp.push_e820(i * 4096, 4096, E820_RAM));
        }
        assert!(!bp.push_e820(0, 1, E820_RAM));
        assert_eq!(usize::from(bp.e820_entries), E820_MAX);
    }
}

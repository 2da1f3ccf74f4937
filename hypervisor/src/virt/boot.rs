//! A vCPU's initial state, as the domain builder describes it and the
//! vendor backends load it into the VMCB or VMCS. Plain data: it lives in
//! `virt/` so the backends need nothing from the layers above them
//! (`domain::builder` fills it in).

/// A segment register's initial state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Selector.
    pub selector: u16,
    /// Base (0: flat).
    pub base: u64,
    /// Limit in bytes, as the CPU's hidden part holds it (0xffff_ffff).
    pub limit: u32,
    /// The GDT descriptor the selector names.
    pub descriptor: u64,
}

impl Segment {
    /// A flat segment (base 0, limit 4 GiB) with this selector and GDT
    /// descriptor.
    pub fn flat(selector: u16, descriptor: u64) -> Self {
        Self {
            selector,
            base: 0,
            limit: 0xffff_ffff,
            descriptor,
        }
    }

    /// Access rights in the VMCS format: descriptor bits 40..47 (type, S,
    /// DPL, P) in bits 0..7, bits 52..55 (AVL, L, D/B, G) in bits 12..15,
    /// bit 16 (unusable) clear (Intel SDM Vol. 3C 25.4.1).
    pub fn vmx_access_rights(&self) -> u32 {
        let access = (self.descriptor >> 40) & 0xff;
        let flags = (self.descriptor >> 52) & 0xf;
        (access | (flags << 12)) as u32
    }

    /// Attributes in the VMCB's compressed format: descriptor bits 40..47
    /// in bits 0..7, bits 52..55 in bits 8..11 (AMD APM Vol. 2, Appendix B,
    /// VMCB state save area).
    pub fn svm_attributes(&self) -> u16 {
        let access = (self.descriptor >> 40) & 0xff;
        let flags = (self.descriptor >> 52) & 0xf;
        (access | (flags << 8)) as u16
    }
}

/// The initial vCPU state for a built guest; the backends load it into the
/// VMCS or VMCB. TR and LDTR are not described: the guest has no TSS yet,
/// so a backend sets whatever minimal state VM entry demands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootState {
    /// The ELF entry point.
    pub rip: u64,
    /// `stack_top - 8`: as just after a `call`, so `(rsp + 8) % 16 == 0`,
    /// what a System V function expects at entry. The 8 bytes at RSP are a
    /// zero "return address".
    pub rsp: u64,
    /// Guest-physical address of the start-info page (first argument).
    pub rdi: u64,
    /// Second argument: 0 for pvabi guests; for a Linux image the
    /// guest-physical address of its `boot_params` zero page (the 64-bit
    /// boot protocol, Linux `Documentation/x86/boot.rst`).
    pub rsi: u64,
    /// `domain::builder::GUEST_RFLAGS`.
    pub rflags: u64,
    /// `GUEST_CR0`.
    pub cr0: u64,
    /// Guest-physical address of the PML4.
    pub cr3: u64,
    /// `GUEST_CR4` (a backend adds what VMX requires, e.g. CR4.VMXE via
    /// the fixed-bit MSRs, behind a read shadow).
    pub cr4: u64,
    /// `GUEST_EFER`.
    pub efer: u64,
    /// GDTR base (guest-physical == guest-virtual).
    pub gdt_base: u64,
    /// GDTR limit (`3 * 8 - 1`).
    pub gdt_limit: u16,
    /// CS selector: `CODE_SELECTOR` (`== code.selector`).
    pub cs: u16,
    /// SS, DS, ES, FS and GS selector: `DATA_SELECTOR`
    /// (`== data.selector`).
    pub ds: u16,
    /// CS in full: descriptor, base, limit, access rights for either vendor.
    pub code: Segment,
    /// SS, DS, ES, FS, GS in full.
    pub data: Segment,
}

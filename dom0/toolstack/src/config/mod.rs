//! The boot configuration: which domains dom0 builds, from which boot
//! module, with how much memory and CPU.
//!
//! It is a TOML file handed to dom0 as a boot module (and the file
//! `hvctl create` sends). Each domain is one `[[domain]]` table, in the
//! order dom0 creates them:
//!
//! ```toml
//! [[domain]]
//! name = "web"          # required; a letter, then letters, digits, '-', '_', '.'; at most 31
//! image = "web.elf"     # required; the name of a boot module
//! memory = 64           # required; MiB, a multiple of 2, 4 ..= 1024 (the hypervisor's limits):
//!                       # the most it may hold (xl's maxmem)
//! target = "16M"        # its memory target from the start (xl's memory): MiB or "16M", "4096p";
//!                       # whole pages, 4 MiB ..= memory; default: all of memory (target.rs)
//! vcpus = 2             # 1 ..= Limits::max_vcpus (pvabi::DOMCTL_MAX_VCPUS, 64, by default); default 1
//! weight = 512          # scheduler weight, 1 ..= 65535; default 256
//! cap = 150             # percent of one CPU, 0 ..= 100 * vcpus; 0 (the default) = no cap
//! cmdline = "port=80"   # the domain's command line, at most 256 bytes; default ""
//! heap_budget = 256     # KiB of hypervisor heap it may use (ports, grants, vCPUs...), 16 ..= 65536;
//!                       # default: derived from memory and vcpus by the hypervisor
//! autostart = true      # created and started at boot; default true
//! on_poweroff = "destroy"  # when it ends: "destroy", "restart" or "preserve" (policy.rs);
//! on_reboot = "restart"    # defaults as xl.cfg(5)
//! on_crash = "destroy"
//! uuid = "123e4567-e89b-42d3-a456-426614174000"  # RFC 4122; unique in the file;
//!                       # default: dom0 generates a version 4 UUID, kept across restarts
//! pci = ["0000:00:06.0"]  # PCI functions moved from dom0 to it before it runs (pci.rs);
//!                       # each given to one domain of the file; default none
//! ```
//!
//! A Linux domain (docs/linux-guest.md) names its `kernel` instead of an
//! `image`, optionally its `initrd`, and may have a command line of up to
//! 2,047 bytes:
//!
//! ```toml
//! [[domain]]
//! name = "linux"
//! kernel = "vmlinux"            # a boot module: an uncompressed vmlinux
//! initrd = "initrd.cpio"        # a boot module: the initramfs; default none
//! memory = 64
//! cmdline = "console=hvc0 quiet"
//! ```
//!
//! Any other key, a value of the wrong type or out of range, a repeated
//! name or an image that is not a boot module is an error naming the file,
//! line, column, domain and field:
//!
//! ```text
//! guests.toml:12:10: domain "web": field "memory": expected an integer number of MiB, found "lots"
//! ```
//!
//! dom0's boot configuration may also have a `[network]` table: its
//! management service on the network ([`network`]).
//!
//! [`parse`] checks the whole file and reports every problem before it
//! returns a single domain, so a bad file creates nothing.

mod error;
pub mod logs;
pub mod network;
mod parse;
pub mod pci;
mod policy;
pub mod store;
pub mod target;
#[cfg(test)]
mod tests;

use alloc::string::String;
use alloc::vec::Vec;

pub use error::{ConfigError, ConfigErrors};
pub use parse::parse;
pub use policy::{OnEnd, Policies, RESTART_LIMIT, RESTART_WINDOW_NS};

/// Default scheduler weight (Xen's credit scheduler uses the same).
pub const DEFAULT_WEIGHT: u32 = 256;
/// Largest scheduler weight.
pub const MAX_WEIGHT: u32 = 65535;
/// Longest domain name, in bytes (what `HC_DOMCTL_CREATE` takes: 32
/// bytes, NUL-terminated).
pub const NAME_MAX: usize = 31;
/// Longest command line: what `HC_DOMCTL_CREATE` takes.
pub const CMDLINE_MAX: usize = pvabi::DOMCTL_CMDLINE_MAX as usize;
/// Longest command line of a Linux domain (`pvabi::DOMCTL_CREATE_LINUX`).
pub const LINUX_CMDLINE_MAX: usize = pvabi::DOMCTL_LINUX_CMDLINE_MAX as usize;
/// The control domain's own name, which no configured domain may take.
pub const DOM0_NAME: &str = "dom0";

/// Limits the configuration is checked against. The defaults are the
/// hypervisor's own (`pvabi::DOMCTL_*`), so a file that passes is one
/// `HC_DOMCTL_CREATE` accepts, short of free memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Smallest domain, in MiB.
    pub min_memory_mib: u64,
    /// Largest domain, in MiB.
    pub max_memory_mib: u64,
    /// A domain's memory is a multiple of this many MiB.
    pub memory_align_mib: u64,
    /// Most vCPUs one domain may have.
    pub max_vcpus: u32,
}

const MIB: u64 = 1 << 20;

impl Default for Limits {
    fn default() -> Self {
        Self {
            min_memory_mib: pvabi::DOMCTL_MEMORY_MIN / MIB,
            max_memory_mib: pvabi::DOMCTL_MEMORY_MAX / MIB,
            memory_align_mib: pvabi::DOMCTL_MEMORY_ALIGN / MIB,
            max_vcpus: pvabi::DOMCTL_MAX_VCPUS,
        }
    }
}

/// Which image names are acceptable.
#[derive(Debug, Clone, Copy)]
pub enum Images<'a> {
    /// Any non-empty name: a host tool checking a file before it sends it
    /// (dom0 checks the name again against its modules).
    Any,
    /// Only these boot module names.
    Only(&'a [&'a str]),
}

/// One domain, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainConfig {
    pub name: String,
    /// Boot module name of the domain's ELF image (its `kernel` for a
    /// Linux domain).
    pub image: String,
    pub memory_mib: u64,
    pub vcpus: u32,
    pub weight: u32,
    /// Percent of one CPU; 0 = no cap.
    pub cap: u32,
    pub cmdline: String,
    pub autostart: bool,
    /// Hypervisor heap budget in KiB; 0 = the hypervisor's default.
    pub heap_budget_kib: u64,
    /// What dom0 does when it ends (`on_poweroff`, `on_reboot`,
    /// `on_crash`).
    pub on_end: Policies,
    /// A Linux domain (`kernel =` instead of `image =`).
    pub linux: bool,
    /// A Linux domain's initramfs boot module.
    /// Its UUID (`uuid = "..."`); `None`: dom0 generates one when it
    /// builds the domain (and keeps it across restarts).
    pub uuid: Option<crate::uuid::Uuid>,
    pub initrd: Option<String>,
    /// Its initial memory target in bytes (`target = ...`, [`target`]);
    /// `None`: it starts asked to hold all of `memory`.
    pub target_bytes: Option<u64>,
    /// Its PCI functions (`pci = [...]`, [`pci`]): SBDF words and where
    /// each is written in the file; moved from dom0 to it before it runs.
    pub pci: Vec<(u32, usize)>,
    /// Line of the domain's `[[domain]]` header, for later messages.
    pub line: usize,
}

impl DomainConfig {
    /// Memory in bytes (saturating; [`Limits`] keep it far below).
    pub fn memory_bytes(&self) -> u64 {
        self.memory_mib.saturating_mul(1 << 20)
    }

    /// Heap budget in bytes (0: the hypervisor's default).
    pub fn heap_budget_bytes(&self) -> u64 {
        self.heap_budget_kib.saturating_mul(1 << 10)
    }
}

/// A whole configuration file, checked: the domains in file order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BootConfig {
    pub domains: Vec<DomainConfig>,
    /// dom0's `[network]` table (its boot configuration only), if any.
    pub network: Option<network::NetworkConfig>,
    /// dom0's `[store]` table (its boot configuration only), if any.
    pub store: Option<store::StoreConfig>,
}

impl BootConfig {
    /// The domains to create and start at boot, in file order.
    pub fn autostart(&self) -> impl Iterator<Item = &DomainConfig> {
        self.domains.iter().filter(|d| d.autostart)
    }
}

/// Whether `name` is a valid domain name: 1 to [`NAME_MAX`] bytes, an ASCII
/// letter then ASCII letters, digits, `-`, `_` or `.`. Starting with a
/// letter keeps names apart from numeric domain ids; [`DOM0_NAME`] is taken.
pub fn valid_name(name: &str) -> Result<(), &'static str> {
    let mut chars = name.chars();
    match chars.next() {
        None => return Err("must not be empty"),
        Some(c) if !c.is_ascii_alphabetic() => return Err("must start with an ASCII letter"),
        Some(_) => {}
    }
    if name.len() > NAME_MAX {
        return Err("is longer than 31 bytes");
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return Err("may only hold ASCII letters, digits, '-', '_' and '.'");
    }
    if name == DOM0_NAME {
        return Err("is the control domain's name");
    }
    Ok(())
}

//! Building the domains of a checked configuration: all of them or none.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use pvabi::Error;

use super::Hypervisor;
use crate::config::BootConfig;
use crate::proto::{ErrorCode, ProtoError};

/// Why a configuration's domains were not built. Nothing it built is left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateFailure {
    /// The configuration file's name.
    pub file: String,
    /// The domain that could not be built.
    pub domain: String,
    /// The memory it asks for, in MiB.
    pub asked_mib: u64,
    /// Free memory when it failed, if known.
    pub free_bytes: Option<u64>,
    /// Line of its `[[domain]]` header.
    pub line: usize,
    pub error: CreateError,
    /// Domains built before it from the same file, destroyed again.
    pub destroyed: usize,
}

/// What went wrong with one domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateError {
    /// A live domain already has the name.
    Exists,
    /// The hypervisor refused.
    Hypervisor(Error),
    /// The hypervisor refused to move PCI function `sbdf` (`pci = [...]`)
    /// from dom0 to the domain.
    Pci { sbdf: u32, error: Error },
}

impl fmt::Display for CreateFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = &self.file;
        write!(f, "{file}:{}: domain \"{}\": ", self.line, self.domain)?;
        match self.error {
            CreateError::Exists => f.write_str("a domain of that name exists already")?,
            CreateError::Hypervisor(Error::NoMem) => {
                write!(f, "not enough free memory: {} MiB asked", self.asked_mib)?;
                if let Some(free) = self.free_bytes {
                    write!(f, ", {} MiB free", free >> 20)?;
                }
            }
            CreateError::Hypervisor(e) => {
                write!(f, "the hypervisor refused it: {}", e.description())?
            }
            CreateError::Pci { sbdf, error } => write!(
                f,
                "field \"pci\": {}: {}",
                crate::config::pci::show_bdf(sbdf),
                pci_refusal(error)
            )?,
        }
        write!(f, "; nothing from {file} was created")?;
        match self.destroyed {
            0 => Ok(()),
            1 => f.write_str(" (the domain built before it was destroyed again)"),
            n => write!(f, " (the {n} domains built before it were destroyed again)"),
        }
    }
}

/// Why the hypervisor would not move a function (pvabi
/// `HC_DOMCTL_PCI_ASSIGN`'s errors), for the operator.
pub fn pci_refusal(e: Error) -> &'static str {
    match e {
        Error::NoEntry => "no such PCI function on this machine",
        Error::Perm => {
            "the hypervisor keeps it (a bridge, an IOMMU, its console, pci-hide, no IOMMU fence, or quarantined)"
        }
        Error::Exists => "another domain owns it already",
        Error::Busy => "dom0's own driver holds it (an interrupt bound)",
        Error::NoMem => "the IOMMU or the nested tables could not be built: it is quarantined",
        Error::NoSys => "this hypervisor cannot assign devices",
        _ => "refused",
    }
}

impl CreateFailure {
    /// As a protocol error.
    pub fn to_proto(&self) -> ProtoError {
        let code = match self.error {
            CreateError::Exists => ErrorCode::Exists,
            CreateError::Hypervisor(Error::NoMem) => ErrorCode::NoResources,
            CreateError::Hypervisor(_) | CreateError::Pci { .. } => ErrorCode::Internal,
        };
        ProtoError::new(code, format!("{self}"))
    }
}

/// Builds every domain of `cfg` in file order, then starts the autostart
/// ones; returns their ids. On a failure every domain built from `cfg` is
/// destroyed again before it returns.
pub fn create_all(
    hv: &mut impl Hypervisor,
    file: &str,
    cfg: &BootConfig,
) -> Result<Vec<u32>, CreateFailure> {
    let live: Vec<String> = hv
        .list()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|id| hv.info(id).ok())
        .filter(|d| d.state != pvabi::DOMAIN_DYING)
        .map(|d| d.name)
        .collect();
    if let Some(d) = cfg.domains.iter().find(|d| live.contains(&d.name)) {
        return Err(CreateFailure {
            file: String::from(file),
            domain: d.name.clone(),
            asked_mib: d.memory_mib,
            free_bytes: None,
            line: d.line,
            error: CreateError::Exists,
            destroyed: 0,
        });
    }
    let mut built: Vec<u32> = Vec::new();
    for d in &cfg.domains {
        // The initial memory target (`target`, config/target.rs) is set
        // before the domain first runs, so it starts asked for it; its PCI
        // functions (`pci`, config/pci.rs) must be moved before it runs.
        let made = hv
            .create(d)
            .and_then(|id| {
                built.push(id);
                match d.target_bytes {
                    Some(t) => hv.set_mem_target(id, t / pvabi::PAGE_SIZE).map(|_| id),
                    None => Ok(id),
                }
            })
            .map_err(CreateError::Hypervisor)
            .and_then(|id| {
                for &(sbdf, _) in &d.pci {
                    hv.assign_pci(id, sbdf)
                        .map_err(|error| CreateError::Pci { sbdf, error })?;
                }
                Ok(id)
            });
        match made {
            Ok(_) => {}
            Err(error) => {
                let free_bytes = hv.free_bytes();
                for &id in &built {
                    let _ = hv.destroy(id);
                }
                return Err(CreateFailure {
                    file: String::from(file),
                    domain: d.name.clone(),
                    asked_mib: d.memory_mib,
                    free_bytes,
                    line: d.line,
                    error,
                    destroyed: built.len(),
                });
            }
        }
    }
    for (d, &id) in cfg.domains.iter().zip(&built) {
        if d.autostart {
            let _ = hv.unpause(id);
        }
    }
    Ok(built)
}

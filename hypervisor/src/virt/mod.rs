//! Hardware virtualization behind one vendor-neutral interface.
//!
//! A backend ([`svm`] for AMD-V, [`vmx`] for Intel VT-x) runs a vCPU until
//! something needs the hypervisor and translates the vendor's exit
//! information into one [`VmExit`]. Everything above — the exit handler,
//! hypercalls, domains, the scheduler — is vendor-neutral. The backend is
//! chosen at boot from CPUID; one image serves both vendors.
//!
//! `unsafe` is allowed only in the vendor backends (they execute VMRUN,
//! VMLAUNCH and friends); the shared types in [`exit`] forbid it.

pub mod decode;
pub mod exit;

pub use exit::{Backend, GuestRegs, VmExit};

#[cfg(target_os = "none")]
pub mod svm;
#[cfg(target_os = "none")]
pub mod vcpu;
#[cfg(target_os = "none")]
pub mod vmx;
#[cfg(target_os = "none")]
mod vmx_fields;

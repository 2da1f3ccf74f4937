//! The one place that names paths inside the hypervisor and `pvabi`.
//!
//! When a hypervisor file moves (e.g. `domain/exits.rs` to `hypercall/`,
//! `domain/evtchn` to `evtchn/`, `elf.rs` to `domain/image.rs`), only these
//! lines change.

// Boot-information parsers and the ELF image checks.
pub use hypervisor::boot::cmdline::Options as CmdlineOptions;
pub use hypervisor::boot::{PhysRead, multiboot2, pvh};
pub use hypervisor::domain::GuestMemory;
pub use hypervisor::domain::builder::build;
pub use hypervisor::elf;

// The exit and hypercall handler, with the traits its fakes implement.
pub use hypervisor::domain::OutOfBounds;
pub use hypervisor::domain::check_range;
pub use hypervisor::domain::exits::{
    Action, DomctlReply, DomctlReq, EvtchnOp, GrantOp, Host, MgmtReq, Services, VcpuOps, handle,
};
pub use hypervisor::virt::{GuestRegs, VmExit};

// Event channels and grants: the per-domain tables.
pub use hypervisor::domain::evtchn::{Closed, EventTable, PortState, Route};
pub use hypervisor::domain::grant::{Access, GrantTable, MapTrack};
pub use hypervisor::domain::ids::DomainId;

// The I/O ring.
pub use pvabi::ring::{BackRing, FrontRing, RingError, RingGeometry, SharedRing};

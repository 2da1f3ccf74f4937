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
pub use hypervisor::hypercall::{
    Action, DomctlReply, DomctlReq, EvtchnOp, GrantOp, Host, MgmtReq, Services, handle,
};
pub use hypervisor::virt::{GuestRegs, VcpuBackend, VmExit};

// Event channels and grants: the per-domain tables.
pub use hypervisor::domain::ids::DomainId;
pub use hypervisor::evtchn::{Closed, EventTable, PortState, Route, WaitCheck};
pub use hypervisor::grant::{Access, GrantTable, MapTrack};

// The I/O ring.
pub use pvabi::ring::{BackRing, FrontRing, RingError, RingGeometry, SharedRing};

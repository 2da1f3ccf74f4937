//! The control domain's I/O (1.3, numbers 42 and up): the management serial
//! line (COM2), the other domains' console rings and console input, and the
//! hypervisor's serial console.
//!
//! Once the control domain has called [`HC_DOMCTL_CONSOLE_READ`] (any
//! domain id, any length, 0 included: it then serves the consoles), other
//! domains' [`crate::HC_CONSOLE_WRITE`] output no longer goes to the serial
//! console: it goes into that domain's
//! **console ring**, a buffer of [`CONSOLE_RING_BYTES`] bytes in the
//! hypervisor, which the control domain drains with
//! [`HC_DOMCTL_CONSOLE_READ`] and prints (the control domain's own output
//! is printed as before). When a ring is full the oldest bytes are dropped
//! and counted; the next read starts with the line
//! `[console: N bytes dropped]`. A ring outlives its domain until it has
//! been read empty, so the last words of a domain that ended are not lost;
//! at most [`CONSOLE_RINGS_MAX`] rings are kept, beyond which the ring of
//! the lowest domain id is dropped whole.
//!
//! Waking up (2.1, issue 15): a control domain that binds
//! [`VIRQ_MGMT_RX`] is told when the management line has received bytes
//! (the hypervisor takes the UART's receive interrupt), and one that binds
//! [`VIRQ_CONSOLE_OUT`] when another domain's console ring gets output
//! while it was empty; so it can block without a deadline while nothing
//! happens. Binding [`VIRQ_MGMT_RX`] fails with `ENOENT` where the
//! hypervisor has no interrupt for the line (no management line, no I/O
//! APIC): the control domain then polls [`HC_MGMT_READ`], blocking a few
//! milliseconds between polls.
//!
//! Every call here fails with `EPERM` in a domain without
//! [`crate::START_FLAG_PRIVILEGED`], before any argument is looked at.

/// **mgmt write** (42): sends bytes on the management serial line (COM2).
///
/// - IN: RDI = guest-physical address of the bytes, RSI = length (at most
///   [`MGMT_IO_MAX`]).
/// - OUT: RAX = bytes sent (all of them).
/// - Errors: `EPERM` (caller not privileged); `E2BIG` (RSI over
///   [`MGMT_IO_MAX`]); `EFAULT` (the bytes not in the caller's memory);
///   `ENOENT` (the machine has no management line: no COM2, or COM2 is the
///   hypervisor's console).
/// - Notes: waits for the UART to take every byte (115200 baud on real
///   hardware, about 11 KiB/s).
pub const HC_MGMT_WRITE: u64 = 42;

/// **mgmt read** (43): takes the bytes the management line has received,
/// without waiting.
///
/// - IN: RDI = guest-physical address of a buffer, RSI = its length (at
///   most [`MGMT_IO_MAX`]).
/// - OUT: RAX = bytes copied (0 when nothing arrived).
/// - Errors: as for [`HC_MGMT_WRITE`]. No byte is taken when the buffer
///   is not wholly in the caller's memory.
pub const HC_MGMT_READ: u64 = 43;

/// **domctl console read** (44): drains domain RDI's console ring.
///
/// - IN: RDI = a domain id, RSI = guest-physical address of a buffer, RDX
///   = its length (at most [`MGMT_IO_MAX`]).
/// - OUT: RAX = bytes copied, oldest first (0: the ring is empty now).
/// - Errors: `EPERM` (caller not privileged); `E2BIG` (RDX over
///   [`MGMT_IO_MAX`]); `EINVAL` (RDI does not fit in 32 bits); `EFAULT`
///   (the buffer not in the caller's memory; nothing is taken);
///   `ENOENT` (the domain has ended and its ring is empty, or it never
///   existed).
/// - Notes: the bytes are the guest's, unfiltered: the reader must not
///   pass control characters on to a terminal.
pub const HC_DOMCTL_CONSOLE_READ: u64 = 44;

/// **host console write** (45): prints bytes on the hypervisor's serial
/// console as they are, with no `[domN name]` prefix (the control domain
/// prints other domains' console lines with their names this way).
///
/// - IN: RDI = guest-physical address of the bytes, RSI = length (at most
///   [`MGMT_IO_MAX`]).
/// - OUT: RAX = bytes written.
/// - Errors: `EPERM` (caller not privileged); `E2BIG`; `EFAULT`.
/// - Notes: control characters other than `\n` and `\t` are printed as
///   `?`; one call is printed whole, not interleaved with other output.
pub const HC_HOST_CONSOLE_WRITE: u64 = 45;

/// **domctl console write** (46): queues console input for domain RDI,
/// which reads it with [`crate::HC_CONSOLE_READ`] (what `xl console` types).
///
/// - IN: RDI = a domain id, RSI = guest-physical address of the bytes, RDX
///   = length (at most [`MGMT_IO_MAX`]).
/// - OUT: RAX = bytes queued, `0..=RDX`, oldest first: fewer than RDX (0
///   included) when the domain's input queue ([`CONSOLE_INPUT_BYTES`]) has
///   less room; the rest is not taken, and the caller may offer it again
///   once the domain has read some (nothing is ever dropped silently).
/// - Errors, in the order checked: `EPERM` (caller not privileged);
///   `E2BIG` (RDX over [`MGMT_IO_MAX`]); `EFAULT` (the bytes not in the
///   caller's memory); `EINVAL` (RDI does not fit in 32 bits, or names the
///   caller itself: the control domain reads the physical console);
///   `ENOENT` (no such domain, or it is ending).
/// - Notes: when at least one byte was queued, [`crate::VIRQ_CONSOLE`] is
///   raised on every vCPU of the domain that bound it (waking a blocked
///   one), after the bytes are in the queue: a guest that binds the virq
///   before its first read and reads until it gets 0 before it blocks
///   never misses input. The queue lives and dies with its domain.
pub const HC_DOMCTL_CONSOLE_WRITE: u64 = 46;

/// Most bytes one call of this group moves.
pub const MGMT_IO_MAX: u64 = 4096;
/// Size of each domain's console ring.
pub const CONSOLE_RING_BYTES: usize = 16 * 1024;
/// Size of each domain's console input queue ([`HC_DOMCTL_CONSOLE_WRITE`]).
pub const CONSOLE_INPUT_BYTES: usize = 4096;
/// Most console rings the hypervisor keeps.
pub const CONSOLE_RINGS_MAX: usize = 256;

/// Virq (2.1, issue 15): the management line received bytes since
/// the control domain last read it empty. Raised on every privileged
/// domain that bound it, on the vCPU it bound, from the UART's receive
/// interrupt; read them with [`HC_MGMT_READ`] until it returns 0 (a
/// byte that arrives after that raises it again). Binding it fails with
/// `ENOENT` when the hypervisor has no interrupt for the line (then poll),
/// and with `EPERM` in an unprivileged domain.
pub const VIRQ_MGMT_RX: u32 = 4;

/// Virq (2.1, issue 15): another domain's console ring went from
/// empty to holding output (it is raised once per such change, not per
/// write); drain it with [`HC_DOMCTL_CONSOLE_READ`]. Raised on every
/// privileged domain that bound it. `EPERM` for an unprivileged domain.
pub const VIRQ_CONSOLE_OUT: u32 = 5;

const _: () = assert!(VIRQ_MGMT_RX < crate::NR_VIRQS && VIRQ_CONSOLE_OUT < crate::NR_VIRQS);

//! The Kestrel paravirtual ABI, version 1.4.
//!
//! Guests and the control domain link this crate; the hypervisor implements
//! it. Everything a guest can see is defined here: the version, the
//! start-info page, the register convention, the status codes, the
//! hypercalls and the structures they exchange through guest memory.
//! Changes are listed by ABI version in `CHANGELOG.md` in this crate.
//!
//! With the feature `guest`, the crate is also the runtime a bare-metal
//! guest is written with (`pvabi::guest`: entry point, safe wrappers for
//! every hypercall, console printing, clock, heap); see
//! [Writing a guest](#writing-a-guest). The feature `std` is for host-side
//! users (tools, tests).
//!
//! # Versioning
//!
//! [`PVABI_VERSION`] is `major << 16 | minor` (2.3 is `0x0002_0003`). A
//! guest must refuse to start when [`StartInfo::abi_version`] has a
//! different major version from the one it was built against, or a lower
//! minor one ([`is_compatible`]; the guest runtime's entry point checks).
//! A newer minor version only adds: hypercall numbers, flag and event bits,
//! start-info fields in the page's zero tail. 0.1 was a pre-release and is
//! not compatible with 1.0.
//!
//! # Register convention
//!
//! A hypercall is one `VMCALL` (Intel) or `VMMCALL` (AMD) instruction,
//! executed at CPL 0 in 64-bit mode. The guest never guesses which:
//! [`StartInfo::hypercall_insn`] says ([`HYPERCALL_VMCALL`] or
//! [`HYPERCALL_VMMCALL`]); the other instruction faults.
//!
//! Only the guest's kernel may make hypercalls: executed at CPL > 0 (guest
//! user mode), every hypercall, multicalls included, returns [`EPERM`] in
//! RAX and does nothing else (as Xen does for HVM guests). A guest kernel
//! that wants to offer a service to its processes calls on their behalf.
//!
//! | register | IN                  | OUT                    |
//! |----------|---------------------|------------------------|
//! | RAX      | hypercall number    | status (see below)     |
//! | RDI      | argument 1          | preserved              |
//! | RSI      | argument 2          | preserved              |
//! | RDX      | argument 3          | preserved              |
//! | R10      | argument 4          | preserved              |
//! | R8       | argument 5          | preserved              |
//! | R9       | argument 6          | preserved              |
//!
//! All other general-purpose registers are preserved as well; only RAX
//! changes (RFLAGS is not promised). The argument registers match the Linux
//! `syscall` convention (R10 instead of RCX), so a guest can reuse its
//! system-call stubs. Unused arguments are ignored. Addresses are
//! guest-physical; with the initial identity map they equal guest-virtual
//! addresses. Every argument is checked by the hypervisor: a bad one gets an
//! error status, never harms the hypervisor or another domain, and (unless
//! the op says otherwise) changes nothing.
//!
//! # Status codes
//!
//! RAX read as an `i64`: a value `>= 0` is success (and carries the
//! hypercall's result, e.g. a byte count); a negative value is an
//! [`Error`]. The numbers are Linux's errno values, negated, so a Linux guest
//! can pass them on unchanged. [`decode_status`] turns RAX into a `Result`,
//! [`encode_status`] the other way. Each hypercall lists its errors in the
//! order it checks them: the first failing check is the one reported.
//!
//! | code     | value | [`Error`]             | meaning                                   |
//! |----------|-------|-----------------------|-------------------------------------------|
//! | `EPERM`  | -1    | [`Error::Perm`]       | the domain lacks the privilege            |
//! | `ENOENT` | -2    | [`Error::NoEntry`]    | no such object (e.g. page already released) |
//! | `E2BIG`  | -7    | [`Error::TooBig`]     | a length or count is over its limit       |
//! | `ENOMEM` | -12   | [`Error::NoMem`]      | quota or host memory would be exceeded    |
//! | `EFAULT` | -14   | [`Error::Fault`]      | a guest address is outside guest memory   |
//! | `EBUSY`  | -16   | [`Error::Busy`]       | wrong state (e.g. vCPU already up)        |
//! | `EEXIST` | -17   | [`Error::Exists`]     | already there (e.g. page already present) |
//! | `EINVAL` | -22   | [`Error::Invalid`]    | an argument has a value the op rejects    |
//! | `ENOSYS` | -38   | [`Error::NoSys`]      | no hypercall has this number              |
//!
//! "Guest memory" means the pages the domain has present now: inside
//! `0..StartInfo::memory_bytes` and not released with [`HC_MEM_RELEASE`].
//!
//! # The start-info page
//!
//! A domain's vCPU 0 starts in 64-bit long mode at the ELF entry point with
//! RDI holding the guest-physical address of a 4 KiB page whose beginning is
//! a [`StartInfo`] (the first argument in the System V calling convention, so
//! the entry point can be `extern "sysv64" fn(&StartInfo) -> !`). RSP is
//! [`StartInfo::stack_top`]` - 8`, CR3 points at page tables that
//! identity-map all guest memory (guest-virtual == guest-physical), a GDT
//! with a 64-bit code segment is loaded, interrupts are off (RFLAGS = 0x2).
//!
//! | offset | what |
//! |--------|------|
//! | 0      | [`StartInfo`], [`START_INFO_SIZE`] (1104) bytes; OUT, never changed after entry |
//! | 1104   | zero |
//! | 2048 ([`TIME_INFO_OFFSET`]) | the domain's [`TimeInfo`], 40 bytes; OUT, updated by the hypervisor for the domain's life |
//! | 2088   | zero |
//!
//! The guest must neither write nor release this page (the clock lives in
//! it). The other boot structures (stack, page tables, GDT) are ordinary
//! guest memory that belongs to the guest.
//!
//! # Events
//!
//! Each vCPU has a 64-bit pending-event mask. The hypervisor sets bits
//! ([`EVENT_TIMER`], and since 1.1 [`EVENT_CHANNEL`]; the others are
//! reserved, see [`EVENTS_DEFINED`]); the vCPU takes and clears them with
//! [`HC_SCHED_POLL`] or [`HC_SCHED_BLOCK`]. Events are not interrupts:
//! guests run with interrupts off and look for events when they choose to.
//! Taking the mask clears every bit in it, so whoever takes it handles (or
//! hands on) all of its bits.
//!
//! # Op group: console
//!
//! | nr | name | IN | OUT | errors |
//! |----|------|----|-----|--------|
//! | 1  | [`HC_CONSOLE_WRITE`] | RDI = address, RSI = length `<=` [`CONSOLE_WRITE_MAX`] | bytes written (all) | `E2BIG`, `EFAULT` |
//! | 4  | [`HC_CONSOLE_READ`]  | RDI = buffer, RSI = length `<=` [`CONSOLE_READ_MAX`] | bytes read, 0 if none waiting | `EPERM`, `E2BIG`, `EFAULT` |
//!
//! Writes are copied before the call returns and are not interleaved with
//! other vCPUs' output within one call. Reading never blocks; a bad buffer
//! fails before any input is consumed. The privileged domain
//! ([`START_FLAG_PRIVILEGED`]) reads the serial console; since 1.3, with a
//! control domain, every other domain reads its own input queue, which the
//! control domain fills ([`HC_DOMCTL_CONSOLE_WRITE`]), and may bind
//! [`VIRQ_CONSOLE`] to wait for it; without one they get `EPERM`.
//!
//! # Op group: sched
//!
//! | nr | name | IN | OUT | errors |
//! |----|------|----|-----|--------|
//! | 2  | [`HC_SHUTDOWN`]   | RDI = reason ([`SHUTDOWN_POWEROFF`], [`SHUTDOWN_CRASH`], [`SHUTDOWN_REBOOT`]), RSI = code (`i64`) | does not return | `EINVAL` |
//! | 3  | [`HC_YIELD`]      | — | 0 | — |
//! | 5  | [`HC_SCHED_BLOCK`] | RDI = deadline (system time, ns; 0 = none) | pending events, cleared; 0 = deadline passed | — |
//! | 6  | [`HC_SCHED_POLL`] | — | pending events, cleared | — |
//! | 7  | [`HC_SET_TIMER`]  | RDI = deadline (system time, ns; 0 cancels) | 0 | — |
//!
//! Ordering and races: block returns at once if an event is pending; it
//! checks the mask under the lock that raises events, so an event raised
//! between the guest's last poll and the block is never lost. Poll reads
//! and clears in one atomic step. The timer is single-shot and per vCPU: a
//! deadline already reached raises [`EVENT_TIMER`] before `HC_SET_TIMER`
//! returns; setting again replaces the deadline; cancelling leaves an event
//! already raised pending. Block's own deadline raises no event, so it
//! does not disturb the timer. Shutdown stops every vCPU of the domain.
//!
//! # Op group: vcpu
//!
//! | nr | name | IN | OUT | errors |
//! |----|------|----|-----|--------|
//! | 8  | [`HC_VCPU_UP`]   | RDI = id, RSI = RIP, RDX = RSP, R10 = the new vCPU's RDI | 0 | `EINVAL`, `EBUSY`, `EFAULT` |
//! | 9  | [`HC_VCPU_INFO`] | RDI = id, RSI = address of a [`VcpuInfo`] | 0 | `EINVAL`, `EFAULT` |
//!
//! A domain has [`StartInfo::nr_vcpus`] vCPUs, ids `0..nr_vcpus`; vCPU 0
//! runs at entry. A new vCPU starts in vCPU 0's initial state (same CR3 =
//! [`StartInfo::page_tables_gpa`], GDT and segments, RFLAGS = 0x2, other
//! GPRs 0) with the given RIP, RSP and RDI; it may run before `HC_VCPU_UP`
//! returns and sees everything written before the call. There is no
//! "vCPU down" in 1.0. [`VcpuInfo`] is a snapshot.
//!
//! # Op group: time
//!
//! No hypercall: the clock is read from the [`TimeInfo`] in the start-info
//! page with no exit. **System time** is nanoseconds since the hypervisor
//! started, the same for every domain; every deadline is in it.
//!
//! ```text
//! time = system_time_ns + (((rdtsc - tsc_timestamp) << tsc_shift) * tsc_to_system_mul) >> 32
//! ```
//!
//! (a right shift by `-tsc_shift` when it is negative; 128-bit arithmetic;
//! a TSC before `tsc_timestamp` counts as 0): [`TimeInfo::ns_at`]. The
//! hypervisor computes the scale with [`scale_for`]. Torn reads: the
//! hypervisor makes `version` odd, updates, then makes it even; a reader
//! reads `version`, the fields and the TSC, then `version` again, and retries
//! if it was odd or changed (the steps are on [`TimeInfo`]). With
//! [`TIME_FLAG_TSC_STABLE`] the clock agrees across vCPUs and never goes
//! backwards.
//!
//! **Wall-clock time** (Unix time, UTC) is `wall_clock_base_ns + time`:
//! [`TimeInfo::wall_clock_base_ns`], set by the hypervisor from the CMOS
//! RTC at boot (0: unknown); [`TimeInfo::wall_clock_ns_at`],
//! `guest::time::wall_clock_ns` and [`UtcTime`] (a calendar date).
//!
//! # Op group: memory
//!
//! | nr | name | IN | OUT | errors |
//! |----|------|----|-----|--------|
//! | 10 | [`HC_MEM_INFO`]     | RDI = address of a [`MemInfo`] | 0 | `EFAULT` |
//! | 11 | [`HC_MEM_RELEASE`]  | RDI = page-aligned address, RSI = pages `1..=`[`MEM_OP_MAX_PAGES`] | pages released | `EINVAL`, `EFAULT`, `ENOENT` |
//! | 12 | [`HC_MEM_POPULATE`] | RDI = page-aligned address, RSI = pages `1..=`[`MEM_OP_MAX_PAGES`] | pages populated | `EINVAL`, `EFAULT`, `EEXIST`, `ENOMEM` |
//! | 56 | [`HC_MEM_TARGET`]   | nothing | the target in pages | none |
//!
//! The balloon: a domain's guest-physical space is fixed
//! (`0..memory_bytes`), but it may give pages back ([`HC_MEM_RELEASE`]) and
//! ask for fresh zeroed ones ([`HC_MEM_POPULATE`]) at addresses that have
//! none, up to [`MemInfo::max_pages`] present at once. Both are all or
//! nothing. A released page is unreachable by every vCPU of the domain
//! when the release returns; touching it kills the domain. The hypervisor
//! does not stop a guest from releasing memory it still needs.
//!
//! # Op group: multicall
//!
//! | nr | name | IN | OUT | errors |
//! |----|------|----|-----|--------|
//! | 13 | [`HC_MULTICALL`] | RDI = address of [`MulticallEntry`] array, RSI = count `1..=`[`MULTICALL_MAX`] | entries executed | `EINVAL`, `E2BIG`, `EFAULT` |
//!
//! One exit for many ops: the array is copied in, the entries run in order,
//! every entry's `result` gets what RAX would have, and the results are
//! written back. [`HC_SHUTDOWN`] ends the domain there; [`HC_MULTICALL`],
//! [`HC_SCHED_BLOCK`] and (1.4) [`HC_EVTCHN_SEND_WAIT`] inside a batch get
//! `EINVAL` and the batch goes on; [`HC_YIELD`] takes effect after the batch.
//!
//! # Op group: evtchn (1.1)
//!
//! | nr | name | IN | OUT | errors |
//! |----|------|----|-----|--------|
//! | 14 | [`HC_EVTCHN_ALLOC_UNBOUND`] | RDI = remote domain id | new port | `EINVAL`, `ENOMEM` |
//! | 15 | [`HC_EVTCHN_BIND_INTERDOMAIN`] | RDI = remote domain id, RSI = remote port | new local port | `EINVAL`, `ENOENT`, `EBUSY`, `EPERM`, `ENOMEM` |
//! | 16 | [`HC_EVTCHN_SEND`] | RDI = port | 0 | `EINVAL`, `ENOENT`, `EBUSY` |
//! | 17 | [`HC_EVTCHN_CLOSE`] | RDI = port | 0 | `EINVAL`, `ENOENT` |
//! | 18 | [`HC_EVTCHN_UNMASK`] | RDI = port | 0 | `EINVAL`, `ENOENT` |
//! | 19 | [`HC_EVTCHN_MASK`] | RDI = port | 0 | `EINVAL`, `ENOENT` |
//! | 20 | [`HC_EVTCHN_POLL`] | — | next pending port, cleared; 0 = none | — |
//!
//! A send makes the peer port pending and, unless it is masked or already
//! pending, raises [`EVENT_CHANNEL`] on the vCPU it notifies (waking it).
//! The receiver takes ports with poll, round-robin, until it gets 0. A
//! send while masked is notified on unmask. When a port is closed (or its
//! domain ends) the peer's port becomes unbound and pending; sends on it
//! then fail with `EBUSY`. Port and domain arguments must fit in 32 bits.
//!
//! ## evtchn (1.3): virqs, ipis, status, upcalls
//!
//! | nr | name | IN | OUT | errors |
//! |----|------|----|-----|--------|
//! | 25 | [`HC_EVTCHN_BIND_VIRQ`] | RDI = virq, RSI = vCPU | new port | `EINVAL`, `EEXIST`, `ENOMEM` |
//! | 26 | [`HC_EVTCHN_BIND_IPI`] | RDI = vCPU | new port | `EINVAL`, `ENOMEM` |
//! | 27 | [`HC_EVTCHN_STATUS`] | RDI = port, RSI = address of an [`EvtchnStatus`] | 0 | `EINVAL`, `ENOENT`, `EFAULT` |
//! | 28 | [`HC_EVTCHN_BIND_VCPU`] | RDI = port, RSI = vCPU | 0 | `EINVAL`, `ENOENT`, `EINVAL` |
//! | 29 | [`HC_EVTCHN_INIT_CONTROL`] | RDI = page-aligned address of an [`EvtchnControl`], RSI = vector `32..=255` | 0 | `EINVAL`, `EINVAL`, `EFAULT`, `EBUSY`, `EEXIST` |
//!
//! ## evtchn (1.4): the combined round trip
//!
//! | nr | name | IN | OUT | errors |
//! |----|------|----|-----|--------|
//! | 47 | [`HC_EVTCHN_SEND_WAIT`] | RDI = port to send on (0: none), RSI = port to wait for, RDX = deadline (system ns, 0: none) | the wait port (taken), or 0 | `EINVAL`, `ENOENT`, `EINVAL`, then the send's `ENOENT`, `EBUSY`, `EINVAL` |
//!
//! One exit for "notify the peer, then sleep until its answer" (seL4's
//! Call / ReplyRecv): an event-channel round trip costs two exits.
//!
//! Virqs ([`VIRQ_TIMER`], [`VIRQ_DOM_EXC`], ...) are raised by the
//! hypervisor on the vCPU they were bound on; an ipi port notifies the
//! vCPU it was bound for when any vCPU of the domain sends on it. With a
//! control area registered, pending and mask bits live in the guest's own
//! pages and a notification also sets the vCPU's selector and
//! `upcall_pending` and injects the vector (see [`EvtchnControl`] for the
//! protocol and memory ordering); masking and unmasking need no exit.
//!
//! # Op group: grant (1.2, completed in 1.3)
//!
//! | nr | name | IN | OUT | errors |
//! |----|------|----|-----|--------|
//! | 21 | [`HC_GRANT_ACCESS`] | RDI = own page, RSI = grantee id, RDX = flags | grant ref | `EINVAL`, `EFAULT`, `ENOMEM` |
//! | 22 | [`HC_GRANT_REVOKE`] | RDI = grant ref, RSI = port to raise when a deferred revoke completes (0: none) | 0, or [`GRANT_REVOKE_DEFERRED`] | `EINVAL`, `ENOENT`, `EBUSY` |
//! | 23 | [`HC_GRANT_MAP`] | RDI = granter id, RSI = grant ref, RDX = a hole in the caller's space, R10 = flags | map handle | `EINVAL`, `EFAULT`, `EEXIST`, `ENOENT`, `EPERM`, `ENOMEM` |
//! | 24 | [`HC_GRANT_UNMAP`] | RDI = map handle | 0 | `EINVAL`, `ENOENT` |
//! | 30 | [`HC_GRANT_COPY`] (1.3) | RDI = granter id, RSI = grant ref, RDX = offset in the page, R10 = own buffer, R8 = length `1..=`[`GRANT_COPY_MAX`], R9 = flags ([`GRANT_COPY_TO_GRANT`]) | bytes copied | `EINVAL`, `E2BIG`, `EFAULT`, `ENOENT`, `EPERM` |
//! | 31 | [`HC_GRANT_QUERY`] (1.3) | RDI = address of a [`GrantLimits`] | 0 | `EFAULT` |
//! | 32 | [`HC_GRANT_SET_MAX`] (1.3) | RDI = grant limit, RSI = map limit | 0 | `EINVAL`, `E2BIG` |
//!
//! A domain shares one of its pages with one other domain, read-only or
//! read-write ([`GRANT_READONLY`]); the grantee maps the page into a hole
//! of its own guest-physical space, or (1.3) copies to and from it with
//! [`HC_GRANT_COPY`] without mapping it: at most one page, never across
//! the granted page's end, copy-from only for a read-only grant, the
//! caller's buffer checked like any hypercall buffer. Revoking a mapped
//! grant is deferred: no new mappings, and the page stays shared until the
//! grantee unmaps it; the granter is then told on the port it named. While
//! mapped, the granter cannot release the page (`EBUSY`). When the granter
//! dies its pages are swapped, under every grantee's mappings, for zeroed
//! pages the grantee owns (so a back reading the ring at that moment does
//! not fault; it sees an impossible index or zeroed data, checks whether
//! the front is alive, e.g. with a one-word [`HC_GRANT_COPY`] of the config
//! page: `ENOENT` once the front is gone, and unmaps); when a grantee dies
//! its mappings go.
//!
//! Limits: a domain may have [`GRANT_DEFAULT_LIMIT`] (1024) references in
//! use and map as many grants of others at once; [`HC_GRANT_QUERY`]
//! reports both and their use, and [`HC_GRANT_SET_MAX`] raises them (never
//! lowers them) up to [`GRANT_MAX_CEILING`] (2^20).
//!
//! # I/O rings over grants (1.3)
//!
//! A device between two domains is a [`ring`]: a single-producer,
//! single-consumer request/response ring in one granted page, with data in
//! further granted pages and an event channel for notifications. The
//! **front** (the device's user) sets it up and describes it in a typed
//! config page, [`ring::RingConfig`] (not a global string store):
//!
//! 1. take `2 + n` pages of its own: the config page, the ring page and
//!    `n` data pages (at most [`ring::RING_CONFIG_MAX_DATA`]);
//! 2. grant the config page read-only to the back **first**, so it gets
//!    reference [`ring::RING_CONFIG_GREF`] (0);
//! 3. zero the ring page, [`ring::FrontRing::init`] it, grant it
//!    read-write; grant the data pages;
//! 4. allocate an event-channel port unbound for the back;
//! 5. fill in the [`ring::RingConfig`] (kind, port, ring reference and
//!    geometry, data references) and write its `magic` last.
//!
//! The **back** knows only the front's domain id (from its own
//! configuration): it reads the config page with [`HC_GRANT_COPY`] (retrying
//! while the grant or the magic is not there yet), checks every field with
//! [`ring::RingConfig::check`], binds to the port, maps the ring page into a
//! hole and the data pages into further holes, and attaches with
//! [`ring::BackRing::attach`]. Requests and responses then flow with
//! batching and event suppression (see [`ring`]); a peer's impossible index
//! is [`ring::RingError::Overrun`], after which the good side tears the
//! connection down. Teardown: the back unmaps and closes its port; the
//! front revokes its grants (immediate once the back has unmapped) and
//! closes. The test guests `ringprod`/`ringcons` in this repository do all
//! of this with a helper (`kestrel_guests::ringio`) and move 1 GiB so.
//!
//! # Op group: domctl (1.3, control domain only)
//!
//! | nr | name | IN | OUT | errors |
//! |----|------|----|-----|--------|
//! | 33 | [`HC_DOMCTL_CREATE`] | RDI = [`DomainCreate`] | new domain id (paused) | `EPERM`, `EFAULT`, `EINVAL`, `ENOENT`, `ENOMEM` |
//! | 34 | [`HC_DOMCTL_UNPAUSE`] | RDI = domain id | 0 | `EPERM`, `EINVAL`, `ENOENT` |
//! | 35 | [`HC_DOMCTL_PAUSE`] | RDI = domain id | 0 | `EPERM`, `EINVAL`, `ENOENT` |
//! | 36 | [`HC_DOMCTL_DESTROY`] | RDI = domain id | 0 | `EPERM`, `EINVAL`, `ENOENT` |
//! | 37 | [`HC_DOMCTL_INFO`] | RDI = domain id, RSI = OUT [`DomainInfo`] | 0 | `EPERM`, `EINVAL`, `ENOENT`, `EFAULT` |
//! | 38 | [`HC_DOMCTL_LIST`] | RDI = OUT `u32` array, RSI = capacity | number of domains | `EPERM`, `E2BIG`, `EFAULT` |
//! | 39 | [`HC_DOMCTL_MODULE_INFO`] | RDI = module index, RSI = OUT [`ModuleInfo`] | 0 | `EPERM`, `ENOENT`, `EFAULT` |
//! | 40 | [`HC_DOMCTL_MODULE_READ`] | RDI = module, RSI = offset, RDX = buffer, R10 = length | bytes copied | `EPERM`, `ENOENT`, `E2BIG`, `EFAULT` |
//! | 41 | [`HC_DOMCTL_HOST_INFO`] | RDI = OUT [`HostInfo`] | 0 | `EPERM`, `EFAULT` |
//!
//! With the hypervisor option `dom0`, boot module 0 is the only domain the
//! hypervisor starts, with [`START_FLAG_PRIVILEGED`]; it builds the others
//! from the remaining modules (guest images and its configuration). Every
//! domctl call from any other domain fails with `EPERM` before its
//! arguments are looked at.
//!
//! # Shared structures
//!
//! Everything the guest and the hypervisor exchange through memory is
//! `#[repr(C)]`, made of fixed-width integers and explicit padding (any
//! bytes are a valid value, so each side reads integers and checks them),
//! with `zerocopy` traits and compile-time size and offset checks:
//!
//! | type | size | written by | where |
//! |------|------|------------|-------|
//! | [`StartInfo`]      | 1104 | hypervisor, once | start-info page, offset 0 |
//! | [`TimeInfo`]       | 40   | hypervisor, continually | start-info page, offset 2048 |
//! | [`VcpuInfo`]       | 24   | hypervisor ([`HC_VCPU_INFO`]) | anywhere the guest says |
//! | [`MemInfo`]        | 24   | hypervisor ([`HC_MEM_INFO`]) | anywhere the guest says |
//! | [`MulticallEntry`] | 64   | guest (op, args), hypervisor (result) | array the guest passes to [`HC_MULTICALL`] |
//! | [`GrantLimits`]    | 24   | hypervisor ([`HC_GRANT_QUERY`], 1.3) | anywhere the guest says |
//! | [`ring::RingHeader`] | 128 | front and back, each its own half | start of a ring page |
//! | [`ring::RingConfig`] | 296 | a device's front | start of its config page ([`ring::RING_CONFIG_GREF`]) |
//!
//! All are little-endian and need no particular alignment when passed to a
//! hypercall (the hypervisor copies them).
//!
//! # Writing a guest
//!
//! A guest is a `no_std`, `no_main` Rust binary for `x86_64-unknown-none`,
//! depending on `pvabi` with the feature `guest`, linked to run
//! identity-mapped at its load address (2 MiB in this repository's
//! `guests/guest.ld`; define `_end` after `.bss` there so the runtime knows
//! where the image ends, which the balloon wrappers need). It needs no
//! `unsafe`; `#![forbid(unsafe_code)]` works.
//!
//! ```ignore
//! #![no_std]
//! #![no_main]
//! #![forbid(unsafe_code)]
//! extern crate alloc; // only with a heap
//!
//! use pvabi::guest::{sched, time, vcpu, VcpuStack};
//!
//! pvabi::entry_point!(main); // entry, version check, panic handler
//! pvabi::guest_heap!(256 * 1024); // optional: Box, Vec, String...
//!
//! static STACK1: VcpuStack<16384> = VcpuStack::new();
//!
//! extern "sysv64" fn ticker(period_ms: u64) -> ! {
//!     loop {
//!         let _ = time::sleep_ns(period_ms * 1_000_000);
//!         pvabi::println!("tick at {} ns", time::now_ns());
//!     }
//! }
//!
//! fn main(start: &pvabi::StartInfo) -> i32 {
//!     pvabi::println!("domain {} has {} vCPUs", start.domain_id, start.nr_vcpus);
//!     if let Some(stack) = STACK1.take() {
//!         if let Err(e) = vcpu::start(1, ticker, stack, 100) {
//!             pvabi::println!("no second vCPU: {e}");
//!         }
//!     }
//!     // Wait up to a second for our own timer.
//!     let deadline = time::now_ns() + 1_000_000_000;
//!     let _ = sched::set_timer(Some(deadline - 500_000_000));
//!     match sched::wait_for(pvabi::EVENT_TIMER, Some(deadline)) {
//!         Ok(ev) if ev & pvabi::EVENT_TIMER != 0 => pvabi::println!("timer fired"),
//!         Ok(_) => pvabi::println!("timed out"),
//!         Err(e) => pvabi::println!("block failed: {e}"),
//!     }
//!     let v: alloc::vec::Vec<u64> = (1..=10).collect();
//!     pvabi::println!("sum {}", v.iter().sum::<u64>());
//!     0 // exit code: powers off with 0
//! }
//! ```
//!
//! `main` returning powers the domain off with its value as the exit code;
//! a panic on any vCPU prints the message and shuts down as crashed. The
//! runtime's modules (`pvabi::guest::{console, sched, vcpu, time, memory,
//! heap}`, `pvabi::guest::multicall`) mirror the op groups above.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(unsafe_code)]

mod args;
mod domctl;
mod evtchn;
mod grant;
#[cfg(feature = "guest")]
pub mod guest;
mod hypercalls;
mod lifecycle;
mod memtarget;
mod mgmt;
mod msi;
mod pci;
pub mod ring;
mod shared;
mod stage;
mod start_info;
mod status;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod utc;

/// The `zerocopy` this crate derives with, so users name the same traits.
pub use zerocopy;

pub use args::BadArg;
pub use domctl::*;
pub use evtchn::*;
pub use grant::*;
pub use hypercalls::*;
pub use lifecycle::*;
pub use memtarget::*;
pub use mgmt::*;
pub use msi::*;
pub use pci::*;
pub use shared::*;
pub use stage::*;
pub use start_info::*;
pub use status::*;
pub use utc::{UtcTime, days_in_month};

/// The ABI version: major in the high 16 bits, minor in the low 16 bits
/// (this is 2.3). A guest built against a different major version must
/// refuse to start.
pub const PVABI_VERSION: u32 = 0x0002_0003;

/// The major part of an ABI version number.
pub const fn version_major(version: u32) -> u16 {
    (version >> 16) as u16
}

/// The minor part of an ABI version number.
pub const fn version_minor(version: u32) -> u16 {
    (version & 0xffff) as u16
}

/// Whether a hypervisor offering `offered` can run a guest built against
/// [`PVABI_VERSION`]: same major version, and at least our minor version.
pub const fn is_compatible(offered: u32) -> bool {
    version_major(offered) == version_major(PVABI_VERSION)
        && version_minor(offered) >= version_minor(PVABI_VERSION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_encoding() {
        assert_eq!(PVABI_VERSION, 0x0002_0003);
        assert_eq!(version_major(PVABI_VERSION), 2);
        assert_eq!(version_minor(PVABI_VERSION), 3);
        // A 2.3 guest needs 2.3's additions: a 2.2, 2.1 or 2.0 hypervisor lacks them.
        assert!(!is_compatible(0x0002_0002));
        assert!(!is_compatible(0x0002_0001));
        assert!(!is_compatible(0x0002_0000));
        assert!(
            !is_compatible(0x0001_0004),
            "2.0 changed control structures"
        );
        assert_eq!(version_major(0x0003_0002), 3);
        assert_eq!(version_minor(0x0003_0002), 2);
        assert!(is_compatible(PVABI_VERSION));
        assert!(is_compatible(0x0002_0003), "a newer minor only adds");
        assert!(!is_compatible(0x0000_0001), "0.1 was pre-release");
        assert!(!is_compatible(0x0000_0000));
        assert!(!is_compatible(0x0003_0000));
        assert!(!is_compatible(u32::MAX));
    }
}

//! The management protocol between `hvctl` (or any client) and dom0's
//! management service: one JSON object per line, UTF-8, `\n`-terminated,
//! at most [`MAX_LINE`] bytes. Documented with an example of every message
//! in `docs/toolstack.md`.
//!
//! The client sends [`Request`]s, each with an `id` the [`Response`]
//! echoes. It starts with `hello`; a server whose [`VERSION`] differs
//! answers `version_mismatch`. The server also sends [`Event`]s, which have
//! no `id` but an `event` key: console output of an attached domain.
//! A line that cannot be decoded gets an error response (with the request's
//! `id` if one could be read); the connection stays usable.

mod codec;
mod session;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_schema;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use serde::{Deserialize, Serialize};

pub use codec::{
    DecodeError, LineBuffer, decode_request, decode_server_line, encode_event, encode_request,
    encode_response,
};
pub use session::{SessionId, split_session, tag};

/// Protocol version; a change that an older peer would misread bumps it.
pub const VERSION: u32 = 1;
/// Longest line either side sends or accepts, newline excluded.
pub const MAX_LINE: usize = 64 * 1024;
/// Most bytes one `upload_chunk` carries (before base64): 32 KiB is
/// 43,692 base64 characters, which leaves room in a [`MAX_LINE`] line for
/// the rest of the request and a session tag.
pub const UPLOAD_CHUNK_MAX: usize = 32 * 1024;
/// Most zero bytes one `import_zeros` names, or one `chunk` reply skips
/// (`volume import/export`, docs/toolstack.md): dom0 writes or reads that
/// many bytes of its disk for one request, so a request stays short
/// however large the run of zeros.
pub const XFER_ZEROS_MAX: u64 = 8 << 20;

/// A domain named by its id or its name (names never start with a digit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DomainRef {
    Id(u32),
    Name(String),
}

impl DomainRef {
    /// `"7"` is domain id 7, anything else a name.
    pub fn parse(s: &str) -> Self {
        match s.parse() {
            Ok(id) if s.bytes().all(|b| b.is_ascii_digit()) => Self::Id(id),
            _ => Self::Name(s.into()),
        }
    }
}

impl fmt::Display for DomainRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(id) => write!(f, "{id}"),
            Self::Name(n) => f.write_str(n),
        }
    }
}

/// A client's request: `{"id": 1, "op": "list"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Chosen by the client, echoed in the response.
    pub id: u64,
    #[serde(flatten)]
    pub op: Op,
}

/// What a request asks for (`"op"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// First request on a connection. Answered by [`Reply::Hello`].
    Hello { version: u32, client: String },
    /// Every domain. Answered by [`Reply::Domains`].
    List,
    /// Create (and start those with `autostart`) the domains in a
    /// configuration file's text, checked whole first. [`Reply::Domains`].
    Create { file: String, config: String },
    /// Destroy a domain, returning its memory. [`Reply::Done`].
    Destroy { domain: DomainRef },
    /// Stop scheduling a domain's vCPUs. [`Reply::Domain`].
    Pause { domain: DomainRef },
    /// Schedule a paused domain again. [`Reply::Domain`].
    Unpause { domain: DomainRef },
    /// One domain. [`Reply::Domain`].
    Info { domain: DomainRef },
    /// Start streaming the domain's console as [`Event::Console`]; the
    /// reply comes first. [`Reply::Attached`].
    ConsoleAttach { domain: DomainRef },
    /// Stop streaming. [`Reply::Done`].
    ConsoleDetach { domain: DomainRef },
    /// Bytes for the domain's console input (an attached console).
    /// [`Reply::Done`].
    ConsoleInput { domain: DomainRef, data: String },
    /// The machine: CPUs, memory, domains, versions. [`Reply::Host`].
    Host,
    /// Ask a domain to power off (or, with `reboot`, to reboot): it sees
    /// `VIRQ_SHUTDOWN` and may end itself; dom0 destroys it if it has not
    /// ended `timeout_ms` later (default 30 s) and reports it `forced`.
    /// `force`: destroy it now, without asking. The reply comes once the
    /// request is made (or, with `force`, the domain destroyed), not when
    /// it ends. [`Reply::Done`].
    Shutdown {
        domain: DomainRef,
        #[serde(default)]
        reboot: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_ms: Option<u64>,
        #[serde(default)]
        force: bool,
    },
    /// Change a live domain's scheduling weight and/or cap (the other one
    /// kept). [`Reply::Domain`] with the new values.
    SetSched {
        domain: DomainRef,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        weight: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cap: Option<u32>,
    },
    /// Set a live domain's memory target (`hvctl mem-set`, as `xl
    /// mem-set`): bytes, a whole number of 4 KiB pages from 4 MiB up to its
    /// memory; the domain sees `VIRQ_MEM_TARGET` and a cooperating guest
    /// balloons toward it (nothing is forced). Not dom0.
    /// [`Reply::Domain`] with the new target.
    MemSet {
        domain: DomainRef,
        target_bytes: u64,
    },
    /// dom0's log: the lines it printed (`dom0: ...`), oldest first.
    /// [`Reply::Lines`].
    Log,
    /// The domain's console lines dom0 kept (live or ended).
    /// [`Reply::Lines`].
    ConsoleHistory { domain: DomainRef },
    /// Drops an ended domain from the list (every ended one of that name,
    /// or the one with that id). [`Reply::Done`].
    Forget { domain: DomainRef },
    /// Ends the sender's session: its consoles detach, the next request
    /// needs a `hello` again. Sent by `hvctl relay` when a client's
    /// connection closes. [`Reply::Done`].
    Bye,
    /// From now on the session receives an [`Event::Domain`] for every
    /// change of every domain's life cycle (`hvctl events`), until it
    /// ends. [`Reply::Done`].
    Subscribe,
    /// Every image dom0 has: boot modules, uploaded ones and those in its
    /// store (docs/store.md). [`Reply::Images`].
    ImageList,
    /// Removes an uploaded image (not while a live domain dom0 may rebuild
    /// from it names it), or else the store's image of that name.
    /// [`Reply::Done`].
    ImageDelete { name: String },
    /// Starts sending image `name` of `size` bytes whose SHA-256 is
    /// `sha256` (64 hex digits); dom0 sets the memory aside first. One
    /// upload per session at a time. [`Reply::Done`].
    UploadBegin {
        name: String,
        size: u64,
        sha256: String,
    },
    /// The next bytes of the session's upload: `offset` is how many came
    /// before (chunks in order), `data` base64 of at most
    /// [`UPLOAD_CHUNK_MAX`] bytes. [`Reply::Done`].
    UploadChunk {
        name: String,
        offset: u64,
        data: String,
    },
    /// Every byte sent: dom0 checks length and SHA-256 and keeps the image.
    /// [`Reply::Image`].
    UploadEnd { name: String },
    /// Drops the session's upload. [`Reply::Done`].
    UploadAbort { name: String },
    /// Creates a volume of `size_bytes` in dom0's store, reading as zeros.
    /// [`Reply::Volumes`] with it.
    VolumeCreate { name: String, size_bytes: u64 },
    /// The volumes in dom0's store (docs/store.md). [`Reply::Volumes`].
    VolumeList,
    /// Deletes a volume from the store. [`Reply::Done`].
    VolumeDelete { name: String },
    /// Starts importing `size` bytes with SHA-256 `sha256` (of all of
    /// them, zeros included) as store object `name` (`hvctl image|volume
    /// import`; the client reads qcow2 itself and sends the guest-visible
    /// bytes). The blocks are set aside; the object exists only after
    /// `import_end`. One import per session at a time. [`Reply::Done`].
    ImportBegin {
        kind: ObjectKind,
        name: String,
        size: u64,
        sha256: String,
    },
    /// The next bytes of the session's import at `offset` (in order),
    /// `data` base64 of at most [`UPLOAD_CHUNK_MAX`] bytes. [`Reply::Done`].
    ImportChunk {
        name: String,
        offset: u64,
        data: String,
    },
    /// The next `length` bytes (1 to [`XFER_ZEROS_MAX`]) at `offset` are
    /// zeros: dom0 writes them, nothing more is sent. [`Reply::Done`].
    ImportZeros {
        name: String,
        offset: u64,
        length: u64,
    },
    /// Every byte sent: dom0 checks the length and SHA-256, then commits.
    /// [`Reply::Image`] or [`Reply::Volumes`] with the new object.
    ImportEnd { name: String },
    /// Drops the session's import: nothing of it is kept. [`Reply::Done`].
    ImportAbort { name: String },
    /// Starts reading store object `name` out, one `export_next` at a
    /// time. One export per session at a time. [`Reply::Export`].
    ExportBegin { kind: ObjectKind, name: String },
    /// The next piece of the session's export. [`Reply::Chunk`]; the last
    /// one carries the SHA-256 of every byte sent, and ends the export.
    ExportNext { name: String },
    /// Ends the session's export early. [`Reply::Done`].
    ExportAbort { name: String },
}

/// Which of the store's two name spaces (docs/store.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    Image,
    Volume,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Volume => "volume",
        }
    }
}

/// Where an image came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageSource {
    /// A boot module (GRUB or `-initrd`).
    Module,
    /// Sent at run time (`upload_*`).
    Upload,
    /// Kept in dom0's store, on its disk (docs/store.md).
    Store,
    /// A source this client does not know (sent by a newer server).
    #[serde(other)]
    Unknown,
}

/// One image dom0 can build domains from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub name: String,
    pub size: u64,
    /// SHA-256, 64 lowercase hex digits.
    pub sha256: String,
    pub source: ImageSource,
    /// An ELF image (a domain's `image`/`kernel`); `false`: data (an
    /// initrd, a configuration).
    pub elf: bool,
}

/// A volume `volume list` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeInfo {
    pub name: String,
    pub size_bytes: u64,
}

/// A domain's life-cycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DomainState {
    /// Created, not yet started.
    Created,
    Running,
    /// Every vCPU blocked, waiting for an event.
    Blocked,
    Paused,
    /// Exited by itself (or was destroyed); its memory is being returned.
    Shutdown,
    /// Killed for breaking a rule.
    Crashed,
    /// Ended and freed; kept in dom0's history (`exit_code`, `reason`)
    /// until `forget` or until newer ones push it out.
    Ended,
    /// A state this client does not know (sent by a newer server).
    #[serde(other)]
    Unknown,
}

impl DomainState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Blocked => "blocked",
            Self::Paused => "paused",
            Self::Shutdown => "shutdown",
            Self::Crashed => "crashed",
            Self::Ended => "ended",
            Self::Unknown => "unknown",
        }
    }
}

/// One domain as the service reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainInfo {
    pub id: u32,
    pub name: String,
    /// Its UUID (RFC 4122 text form): given in its configuration or
    /// generated by dom0, kept across `on_*` restarts; absent from older
    /// services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    pub state: DomainState,
    pub memory_bytes: u64,
    pub vcpus: u32,
    pub weight: u32,
    /// Percent of one CPU; 0 = no cap.
    pub cap: u32,
    /// CPU time used by all its vCPUs (for an ended domain: as dom0 last
    /// saw it).
    pub cpu_time_ns: u64,
    /// Hypervisor heap it may use (its budget) and uses now, in bytes
    /// (absent from older services: 0).
    #[serde(default)]
    pub heap_budget_bytes: u64,
    #[serde(default)]
    pub heap_used_bytes: u64,
    /// Guest exits (VM exits) so far: what it costs the machine besides its
    /// CPU time; an idle domain's stay flat (absent from older services:
    /// 0).
    #[serde(default)]
    pub exits: u64,
    /// Bytes of memory it holds now (`memory_bytes` is its maximum; less
    /// while ballooned); absent for ended domains and from older services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_bytes: Option<u64>,
    /// Its memory target (`mem_set`; `memory_bytes` until one is set);
    /// absent for dom0, ended domains and from older services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_bytes: Option<u64>,
    /// Nanoseconds since dom0 first saw it (created it), until it ended;
    /// absent when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_ns: Option<u64>,
    /// How it ended: its exit code (-1 when killed or destroyed); only
    /// for ended domains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// How it ended: `exited`, `rebooted`, `crashed` (the guest reported
    /// a crash), `killed` (by the hypervisor: see `kill_reason`),
    /// `destroyed`, `forced` (dom0 destroyed it when a shutdown request
    /// timed out) or `unknown`; only for ended domains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Why the hypervisor killed it, as the hypervisor said (`killed`
    /// only, and only from a hypervisor that says).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_reason: Option<String>,
}

/// A successful result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reply {
    Hello {
        version: u32,
        server: String,
    },
    Domains {
        domains: Vec<DomainInfo>,
    },
    Domain {
        domain: DomainInfo,
    },
    Attached {
        domain: u32,
        name: String,
    },
    Done,
    /// Lines kept in memory, oldest first; `dropped` older ones are gone.
    Lines {
        lines: Vec<String>,
        dropped: u64,
    },
    /// The host inventory.
    Host(HostReport),
    /// Every image (`image_list`), by name.
    Images {
        images: Vec<ImageInfo>,
    },
    /// The image an upload made (`upload_end`).
    Image {
        image: ImageInfo,
    },
    /// Volumes (`volume_list`, `volume_create`).
    Volumes {
        volumes: Vec<VolumeInfo>,
    },
    /// An export begun (`export_begin`): the object's size, and for an
    /// image its recorded SHA-256.
    Export {
        size: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sha256: Option<String>,
    },
    /// A piece of an export (`export_next`): from byte `offset`, `zeros`
    /// zero bytes (not sent), then `data` (base64, at most
    /// [`UPLOAD_CHUNK_MAX`] bytes). The last piece (its end is the size)
    /// has `sha256`: of every byte of the object as dom0 read it.
    Chunk {
        offset: u64,
        zeros: u64,
        data: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sha256: Option<String>,
    },
}

/// What `host` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostReport {
    pub cpus: u32,
    pub memory_total_bytes: u64,
    pub memory_free_bytes: u64,
    /// Domains that exist now (dom0 included).
    pub domains: u32,
    /// Ended domains dom0 still lists.
    pub ended_domains: u32,
    /// dom0's name and version (`kestrel-dom0 0.1.0`).
    pub dom0: String,
    /// The pvabi version dom0 was built against (`1.4`).
    pub pvabi: String,
    /// The pvabi version the hypervisor speaks (from dom0's start info).
    pub hypervisor_pvabi: String,
    /// The hypervisor's system time (ns since it started; absent from
    /// older services: 0).
    #[serde(default)]
    pub uptime_ns: u64,
    /// dom0's PCI functions, one line each (`0000:00:05.0 1b36:0010 nvme
    /// BAR0 mem64 0xfeb40000+0x4000 mapped`); absent from older servers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pci: Vec<String>,
    /// dom0's disks, one line each (`0000:00:05.0 nvme 16 MiB, 512-byte
    /// blocks, model "QEMU NVMe Ctrl"`, docs/disks.md); absent when it has
    /// none and from older servers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<String>,
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, not an object, unknown `op`, missing or mistyped fields.
    BadRequest,
    /// Longer than [`MAX_LINE`].
    LineTooLong,
    /// `hello` with another protocol version, or a request before `hello`.
    VersionMismatch,
    NoSuchDomain,
    /// No image of that name (`image_delete`).
    NoSuchImage,
    /// A `create` configuration failed its checks; the message has every
    /// error, one per line, each with file, line, field.
    BadConfig,
    /// A name that is already taken.
    Exists,
    /// The domain is not in a state that allows the operation.
    BadState,
    /// Not enough memory or another resource.
    NoResources,
    /// No image or volume of that name in the store.
    NoSuchObject,
    /// The server's fault.
    Internal,
    /// A code this client does not know (sent by a newer server).
    #[serde(other)]
    Unknown,
}

/// A typed error with a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtoError {
    pub code: ErrorCode,
    pub message: String,
}

impl ProtoError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// A server's answer to one request: `{"id": 1, "ok": {...}}` or
/// `{"id": 1, "error": {"code": ..., "message": ...}}`. `id` is `null` when
/// the request's could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub id: Option<u64>,
    #[serde(flatten)]
    pub result: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok(Reply),
    Error(ProtoError),
}

/// Unsolicited server messages: `{"event": "console", ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Console output; bytes that are not UTF-8 arrive as U+FFFD.
    Console { domain: u32, data: String },
    /// The console stream ended without a detach (e.g. the domain died).
    ConsoleClosed { domain: u32, reason: String },
    /// A domain's life cycle changed (sent to sessions that asked with
    /// [`Op::Subscribe`]), in the order dom0 saw the changes.
    Domain(DomainEvent),
}

/// What happened to a domain ([`Event::Domain`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Built (paused).
    Created,
    /// Started running the first time.
    Started,
    Paused,
    Unpaused,
    /// dom0 asked it to power off or reboot (`reason`: `poweroff` or
    /// `reboot`).
    ShutdownRequested,
    /// It ended (`reason` and `exit_code` as [`DomainInfo`] has them).
    Ended,
    /// A change this client does not know (sent by a newer server).
    #[serde(other)]
    Unknown,
}

/// One change of one domain: `{"event":"domain","change":"paused",
/// "domain":3,"name":"web","uuid":"..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainEvent {
    pub change: Change,
    pub domain: u32,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

/// Any line a server sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerLine {
    Response(Response),
    Event(Event),
}

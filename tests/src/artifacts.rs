//! What the tests boot: the kernel, module payloads and GRUB ISOs, made once
//! per test process and kept under `target/boot-tests/` for inspection.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use xtask::iso::{IsoSpec, Module};
use xtask::paths::{self, Profile};

/// Where tests keep their files.
pub fn root() -> PathBuf {
    paths::target_dir().join("boot-tests")
}

/// A fresh, empty directory for one test's files (serial log, emulator log).
pub fn test_dir(test: &str) -> PathBuf {
    let d = root().join("runs").join(test);
    let _ = std::fs::remove_dir_all(&d);
    if let Err(e) = std::fs::create_dir_all(&d) {
        panic!("creating {}: {e}", d.display());
    }
    d
}

/// The release kernel, or the file `KESTREL_KERNEL` names (taken as is).
/// Panics with what to do if it is missing or older than the hypervisor's
/// sources.
pub fn kernel() -> &'static Path {
    static KERNEL: OnceLock<PathBuf> = OnceLock::new();
    KERNEL.get_or_init(|| {
        if let Some(k) = std::env::var_os("KESTREL_KERNEL").filter(|k| !k.is_empty()) {
            let k = PathBuf::from(k);
            assert!(k.is_file(), "KESTREL_KERNEL={} is not a file", k.display());
            return k;
        }
        fresh_binary(paths::kernel(Profile::Release))
    })
}

/// The release build of guest `name` (`guests/src/bin/<name>.rs`), checked
/// like the kernel: present and not older than its sources.
pub fn guest(name: &str) -> PathBuf {
    static CHECKED: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    let mut checked = CHECKED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, p)) = checked.iter().find(|(n, _)| n == name) {
        return p.clone();
    }
    let p = fresh_binary(paths::guest(Profile::Release, name));
    checked.push((name.to_string(), p.clone()));
    p
}

/// The host's release `hvctl` (`cargo xtask build` builds it), checked
/// like the kernel.
pub fn hvctl() -> &'static Path {
    static HVCTL: OnceLock<PathBuf> = OnceLock::new();
    HVCTL.get_or_init(|| fresh_binary(paths::target_dir().join("release").join("hvctl")))
}

/// `binary` if it exists and is newer than every source Cargo lists for
/// it; otherwise panics saying how to rebuild.
fn fresh_binary(binary: PathBuf) -> PathBuf {
    let Ok(meta) = binary.metadata() else {
        panic!(
            "{} does not exist: build it with `cargo xtask build` (or run everything with \
             `cargo xtask test`)",
            binary.display()
        )
    };
    let built = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    if let Some(src) = newer_source(&binary, built) {
        panic!(
            "{} is older than {}: rebuild with `cargo xtask build` so the tests boot the \
             current code",
            binary.display(),
            src.display()
        );
    }
    binary
}

/// A source the binary was built from that changed since `built`, per the
/// dependency file Cargo writes next to it (`kestrel.d`: "target: source
/// source ..."). No dependency file, no check.
fn newer_source(binary: &Path, built: SystemTime) -> Option<PathBuf> {
    let mut d = binary.as_os_str().to_owned();
    d.push(".d");
    let deps = std::fs::read_to_string(PathBuf::from(d)).ok()?;
    let (_, sources) = deps.split_once(": ")?;
    sources
        .split_whitespace()
        .map(PathBuf::from)
        .filter(|p| {
            p.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t > built)
        })
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
}

/// Module payloads: the `hello` guest (a real guest the hypervisor starts
/// as a domain), a small text file, and the guest cut short.
#[derive(Debug)]
pub struct Payloads {
    /// `hello.elf`: a copy of the `hello` guest.
    pub hello: PathBuf,
    /// `guests.toml`: a few lines of text (not an ELF: no domain).
    pub guests: PathBuf,
    /// `hello-truncated.elf`: `hello.elf` cut in the middle of its first
    /// loadable segment, so the segment (and the section headers at the
    /// end of the file) lie beyond its end.
    pub truncated: PathBuf,
    /// Where the cut is (bytes kept).
    pub truncated_len: usize,
}

/// Contents of `guests.toml`: odd-sized on purpose.
pub const GUESTS_TOML: &str = "# Boot configuration (test payload)\n\
[[domain]]\nname = \"hello\"\nimage = \"hello.elf\"\nmemory_mib = 16\nvcpus = 1\n";

/// The payloads, written once per test process.
pub fn payloads() -> &'static Payloads {
    static PAYLOADS: OnceLock<Payloads> = OnceLock::new();
    PAYLOADS.get_or_init(|| {
        let dir = root().join("payloads");
        mkdir(&dir);
        let elf = read(&guest("hello"));
        let cut = truncation_point(&elf);
        let p = Payloads {
            hello: dir.join("hello.elf"),
            guests: dir.join("guests.toml"),
            truncated: dir.join("hello-truncated.elf"),
            truncated_len: cut,
        };
        write(&p.hello, &elf);
        write(&p.guests, GUESTS_TOML.as_bytes());
        write(&p.truncated, &elf[..cut]);
        p
    })
}

/// Half-way through the first `PT_LOAD` segment with bytes in the file.
fn truncation_point(elf: &[u8]) -> usize {
    let loads = xtask::elfinfo::loads(elf).unwrap_or_else(|e| panic!("hello guest: {e}"));
    let Some(seg) = loads.iter().find(|l| l.filesz > 1) else {
        panic!("the hello guest has no loadable segment with file bytes")
    };
    let cut = usize::try_from(seg.offset + seg.filesz / 2).unwrap_or(usize::MAX);
    assert!(
        cut < elf.len(),
        "hello guest: segment at {:#x} + {:#x} lies beyond the file",
        seg.offset,
        seg.filesz
    );
    cut
}

/// Arguments of the `hello.elf` module on the test ISOs (the guest prints
/// them back).
pub const HELLO_ARGS: &str = "role=dom0 console=hvc0 mem=64M";
/// Arguments of the second module.
pub const GUESTS_ARGS: &str = "format=toml autostart";

/// The ISO every QEMU ISO test boots (BIOS and UEFI alike): test command
/// line, exit through `isa-debug-exit`, hello.elf and guests.toml with
/// arguments.
pub fn qemu_iso() -> &'static Path {
    static ISO: OnceLock<PathBuf> = OnceLock::new();
    ISO.get_or_init(|| {
        iso(
            "qemu-test.iso",
            "exit=qemu shutdown loglevel=info",
            &standard_modules(),
        )
    })
}

/// The ISO for Bochs: same modules, exit through Bochs' shutdown port.
pub fn bochs_iso() -> &'static Path {
    static ISO: OnceLock<PathBuf> = OnceLock::new();
    ISO.get_or_init(|| {
        iso(
            "bochs-test.iso",
            "exit=bochs shutdown loglevel=info",
            &standard_modules(),
        )
    })
}

fn standard_modules() -> Vec<Module> {
    let p = payloads();
    [(&p.hello, HELLO_ARGS), (&p.guests, GUESTS_ARGS)]
        .into_iter()
        .map(|(path, args)| Module::new(path, args).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

/// One guest module: the release build of guest `guest`, called `name` in
/// the image (and so in the hypervisor's log), with `args`.
pub fn guest_module(guest_name: &str, name: &str, args: &str) -> Module {
    Module::named(guest(guest_name), name, args).unwrap_or_else(|e| panic!("{e}"))
}

/// The ISO `name` (under `target/boot-tests/iso/`), built once per test
/// process however many tests ask for it.
pub fn shared_iso(name: &str, cmdline: &str, modules: &[Module]) -> PathBuf {
    static ISOS: Mutex<Vec<(String, Arc<OnceLock<PathBuf>>)>> = Mutex::new(Vec::new());
    let cell = {
        let mut isos = ISOS.lock().unwrap_or_else(|e| e.into_inner());
        match isos.iter().find(|(n, _)| n == name) {
            Some((_, c)) => Arc::clone(c),
            None => {
                let c = Arc::new(OnceLock::new());
                isos.push((name.to_string(), Arc::clone(&c)));
                c
            }
        }
    };
    // Built outside the list's lock: other ISOs are built in parallel.
    cell.get_or_init(|| iso(name, cmdline, modules)).clone()
}

fn iso(name: &str, cmdline: &str, modules: &[Module]) -> PathBuf {
    let dir = root().join("iso");
    mkdir(&dir);
    let spec = IsoSpec {
        kernel: kernel().to_path_buf(),
        cmdline: cmdline.into(),
        modules: modules.to_vec(),
        timeout_s: 0,
        output: dir.join(name),
    };
    if let Err(e) = xtask::iso::build(&spec) {
        panic!("building {}: {e}", spec.output.display());
    }
    spec.output
}

/// What a module line must report for `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// File name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// CRC-32 (IEEE 802.3, as zlib) of the contents.
    pub crc32: u32,
}

/// Name, size and CRC-32 of a payload file.
pub fn expected(path: &Path) -> Expected {
    let bytes = read(path);
    Expected {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        size: bytes.len() as u64,
        crc32: crc32fast::hash(&bytes),
    }
}

fn mkdir(d: &Path) {
    if let Err(e) = std::fs::create_dir_all(d) {
        panic!("creating {}: {e}", d.display());
    }
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

/// Writes through a temporary name and renames, so a concurrent reader
/// (another test process) never sees half a file.
fn write(p: &Path, bytes: &[u8]) {
    let tmp = p.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", tmp.display()));
    std::fs::rename(&tmp, p).unwrap_or_else(|e| panic!("renaming to {}: {e}", p.display()));
}

/// The SHA-256 of `bytes` as dom0 and `hvctl` print it (64 lowercase hex
/// digits, the toolstack's own encoder).
pub fn sha256_hex(bytes: &[u8]) -> String {
    kestrel_toolstack::server::upload::hex(&kestrel_toolstack::server::upload::sha256(bytes))
}

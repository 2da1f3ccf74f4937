//! What the tests boot: the kernel, module payloads and GRUB ISOs, made once
//! per test process and kept under `target/boot-tests/` for inspection.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
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
        let k = paths::kernel(Profile::Release);
        let Ok(meta) = k.metadata() else {
            panic!(
                "{} does not exist: build it with `cargo xtask build` (or run everything with \
                 `cargo xtask test`)",
                k.display()
            )
        };
        let built = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        if let Some(src) = newer_source(&k, built) {
            panic!(
                "{} is older than {}: rebuild with `cargo xtask build` so the tests boot the \
                 current code",
                k.display(),
                src.display()
            );
        }
        k
    })
}

/// A source the kernel was built from that changed since `built`, per the
/// dependency file Cargo writes next to the binary (`kestrel.d`: "target:
/// source source ..."). No dependency file, no check.
fn newer_source(kernel: &Path, built: SystemTime) -> Option<PathBuf> {
    let mut d = kernel.as_os_str().to_owned();
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

/// Module payloads: a real ELF64 (the hypervisor's own image, standing in
/// for dom0), a small text file, and the ELF cut to half its size.
#[derive(Debug)]
pub struct Payloads {
    /// `dom0.elf`: a copy of the kernel ELF.
    pub dom0: PathBuf,
    /// `guests.toml`: a few lines of text.
    pub guests: PathBuf,
    /// `dom0-truncated.elf`: the first half of `dom0.elf`.
    pub truncated: PathBuf,
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
        let elf = read(kernel());
        let p = Payloads {
            dom0: dir.join("dom0.elf"),
            guests: dir.join("guests.toml"),
            truncated: dir.join("dom0-truncated.elf"),
        };
        write(&p.dom0, &elf);
        write(&p.guests, GUESTS_TOML.as_bytes());
        write(&p.truncated, &elf[..elf.len() / 2]);
        p
    })
}

/// Module arguments the ISO tests pass and expect back.
pub const DOM0_ARGS: &str = "role=dom0 console=hvc0 mem=64M";
/// Arguments of the second module.
pub const GUESTS_ARGS: &str = "format=toml autostart";

/// The ISO every QEMU ISO test boots (BIOS and UEFI alike): test command
/// line, exit through `isa-debug-exit`, dom0.elf and guests.toml with arguments.
pub fn qemu_iso() -> &'static Path {
    static ISO: OnceLock<PathBuf> = OnceLock::new();
    ISO.get_or_init(|| iso("qemu-test.iso", "exit=qemu shutdown loglevel=info"))
}

/// The ISO for Bochs: same modules, exit through Bochs' shutdown port.
pub fn bochs_iso() -> &'static Path {
    static ISO: OnceLock<PathBuf> = OnceLock::new();
    ISO.get_or_init(|| iso("bochs-test.iso", "exit=bochs shutdown loglevel=info"))
}

fn iso(name: &str, cmdline: &str) -> PathBuf {
    let p = payloads();
    let modules = [(&p.dom0, DOM0_ARGS), (&p.guests, GUESTS_ARGS)]
        .into_iter()
        .map(|(path, args)| Module::new(path, args).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let dir = root().join("iso");
    mkdir(&dir);
    let spec = IsoSpec {
        kernel: kernel().to_path_buf(),
        cmdline: cmdline.into(),
        modules,
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

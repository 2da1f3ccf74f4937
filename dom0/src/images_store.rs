//! Building domains from staged images (issue 14): a domain whose image
//! (or Linux kernel, or initramfs) is an upload or an image in dom0's
//! store is built through the hypervisor's stages
//! (`pvabi::guest::stage`, `DOMCTL_CREATE_STAGED`): dom0 streams the
//! bytes into a stage 64 KiB at a time, so a store image never has to fit
//! in dom0's 4 MiB heap, and each hypercall copies a bounded amount.
//! A store image is checked against its recorded SHA-256 while it is
//! streamed (a damaged disk builds nothing). Domains made only of boot
//! modules are built from the modules as before (`hv.rs`).
//!
//! Stages are aborted on every failure (a successful create frees them in
//! the hypervisor); if dom0 itself dies, the hypervisor frees them.

use alloc::format;
use alloc::string::String;
use alloc::vec;

use kestrel_store::Kind;
use kestrel_toolstack::config::DomainConfig;
use kestrel_toolstack::server::ImageKeeper;
use kestrel_toolstack::server::upload::{Hasher, hex};
use pvabi::guest::{domctl, stage};
use pvabi::{DOMCTL_STAGE_WRITE_MAX, DomainCreate, Error};

use crate::hv::{Hv, Module};
use crate::say;

/// Where one of a domain's images comes from.
enum Source<'a> {
    Module(&'a Module),
    Upload(&'a [u8]),
    Store(String),
}

/// Finds image `name` as the configuration checker did: a boot module
/// (an ELF one for a kernel or pvabi image), an upload, then the store.
fn find<'a>(hv: &'a mut Hv, name: &str, elf_only: bool) -> Result<Source<'a>, Error> {
    if let Some(m) = hv
        .modules
        .iter()
        .find(|m| m.name == name && (m.elf || !elf_only))
    {
        return Ok(Source::Module(m));
    }
    if let Some(b) = hv.uploads.bytes(name) {
        return Ok(Source::Upload(b));
    }
    match &hv.store {
        Some(s) if s.get(Kind::Image, name).is_ok() => Ok(Source::Store(String::from(name))),
        _ => Err(Error::NoEntry),
    }
}

/// Whether domain `d` needs a stage: one of its images is not a boot
/// module.
pub fn needs_stage(hv: &mut Hv, d: &DomainConfig) -> bool {
    let kernel = !matches!(find(hv, &d.image, true), Ok(Source::Module(_)));
    let initrd = d
        .initrd
        .as_ref()
        .is_some_and(|n| !matches!(find(hv, n, false), Ok(Source::Module(_))));
    kernel || initrd
}

/// Copies image `name` into a new stage: its handle. The stage is
/// aborted on any failure.
fn stage_image(hv: &mut Hv, name: &str, elf_only: bool) -> Result<u64, Error> {
    let src = find(hv, name, elf_only)?;
    let size = match &src {
        Source::Module(m) => m.size,
        Source::Upload(b) => b.len() as u64,
        Source::Store(_) => hv
            .store
            .as_ref()
            .and_then(|s| s.get(Kind::Image, name).ok())
            .map_or(0, |o| o.size),
    };
    let h = stage::begin(size)?;
    let r = fill(hv, name, h, size, elf_only);
    if let Err(e) = r {
        let _ = stage::abort(h);
        say(&format!("stage: image {name}: {e:?}: not built"));
        return Err(e);
    }
    Ok(h)
}

fn fill(hv: &mut Hv, name: &str, h: u64, size: u64, elf_only: bool) -> Result<(), Error> {
    let mut buf = vec![0u8; DOMCTL_STAGE_WRITE_MAX as usize];
    match find(hv, name, elf_only)? {
        Source::Upload(b) => {
            stage::write_all(h, 0, b)?;
        }
        Source::Module(m) => {
            let (index, mut at) = (m.index, 0u64);
            while at < size {
                let n =
                    domctl::module_read(index, at, &mut buf[..pvabi::DOMCTL_READ_MAX as usize])?;
                let piece = buf
                    .get(..n)
                    .filter(|p| !p.is_empty())
                    .ok_or(Error::Invalid)?;
                stage::write(h, at, piece)?;
                at += n as u64;
            }
        }
        Source::Store(name) => {
            let store = hv.store.as_mut().ok_or(Error::NoEntry)?;
            let want = store
                .get(Kind::Image, &name)
                .map_err(|_| Error::NoEntry)?
                .sha256;
            let mut hash = Hasher::default();
            let mut at = 0u64;
            while at < size {
                let n = (size - at).min(DOMCTL_STAGE_WRITE_MAX) as usize;
                let piece = buf.get_mut(..n).ok_or(Error::Invalid)?;
                if let Err(e) = store.read(Kind::Image, &name, at, piece) {
                    say(&format!(
                        "stage: image {name}: reading the store at {at}: {e}"
                    ));
                    return Err(Error::Invalid);
                }
                hash.update(piece);
                stage::write(h, at, piece)?;
                at += n as u64;
            }
            let got = hash.finish();
            if got != want {
                say(&format!(
                    "stage: image {name}: the store's bytes hash to {}, not the {} recorded: \
                     damaged, not built",
                    hex(&got),
                    hex(&want)
                ));
                return Err(Error::Invalid);
            }
        }
    }
    Ok(())
}

/// Builds domain `d` from stages (see the module doc): its id.
pub fn create(hv: &mut Hv, d: &DomainConfig) -> Result<u32, Error> {
    let kernel = stage_image(hv, &d.image, true)?;
    let initrd = match &d.initrd {
        Some(n) if d.linux => match stage_image(hv, n, false) {
            Ok(h) => h,
            Err(e) => {
                let _ = stage::abort(kernel);
                return Err(e);
            }
        },
        _ => 0,
    };
    let mut req = pvabi::DomainCreateStagedRequest {
        create: DomainCreate::new(&d.name, 0, d.memory_bytes(), d.vcpus),
        staged: pvabi::DomainCreateStaged {
            image: 0,
            initrd: 0,
            cmdline_gpa: 0,
            cmdline_len: 0,
            _pad: 0,
        },
    };
    req.create.weight = d.weight;
    req.create.cap = d.cap;
    req.create.heap_budget = d.heap_budget_bytes();
    let r = if d.linux {
        domctl::create_staged(&mut req, kernel, Some((initrd, d.cmdline.as_bytes())))
    } else if req.create.set_cmdline(&d.cmdline) {
        domctl::create_staged(&mut req, kernel, None)
    } else {
        Err(Error::TooBig)
    };
    if r.is_err() {
        // A create that fails leaves its stages.
        let _ = stage::abort(kernel);
        if initrd != 0 {
            let _ = stage::abort(initrd);
        }
    }
    r
}

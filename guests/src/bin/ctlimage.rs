//! A control domain that builds a domain from an image in its own memory
//! (`DOMCTL_CREATE_IMAGE`, issue 14), on both backends: boot it as module
//! 0 with the hypervisor's `dom0` option and a `hello` module after it.
//!
//! It reads module `hello` into its heap, checks the refusals (no bytes,
//! a module index as well, a range past its memory, bytes that are not an
//! ELF image, the Linux flag as well), then builds a child `fromimg` from
//! the bytes with command line `from memory`, wipes its own copy at once
//! (the hypervisor copied it), unpauses the child and waits for it to
//! exit 0, and checks free memory is back. Prints `<N> checks, 0 failed`.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;

use kestrel_guests::Checks;
use pvabi::guest::{domctl, sched, time};
use pvabi::{DOMAIN_DYING, DomainCreate, DomainCreateImage, DomainCreateImageRequest, Error};

pvabi::entry_point!(main);
pvabi::guest_heap!(1 << 20);

static CHECKS: Checks = Checks::new("ctlimage");

fn code(r: Result<impl Sized, Error>) -> i64 {
    match r {
        Ok(_) => 0,
        Err(e) => e.code(),
    }
}

fn request(name: &str) -> DomainCreateImageRequest {
    DomainCreateImageRequest {
        create: DomainCreate::new(name, 0, 4 << 20, 1),
        image: DomainCreateImage {
            image_gpa: 0,
            image_len: 0,
        },
    }
}

/// Module `name`'s bytes.
fn read_module(name: &str) -> Option<Vec<u8>> {
    let n = domctl::host_info().ok()?.nr_modules;
    let index = (0..n).find(|&i| {
        domctl::module_info(i)
            .is_ok_and(|m| m.name.get(..m.name_len as usize) == Some(name.as_bytes()))
    })?;
    let size = domctl::module_info(index).ok()?.size;
    let mut out = Vec::new();
    let mut buf = [0u8; pvabi::DOMCTL_READ_MAX as usize];
    while (out.len() as u64) < size {
        let got = domctl::module_read(index, out.len() as u64, &mut buf).ok()?;
        out.extend_from_slice(buf.get(..got).filter(|b| !b.is_empty())?);
    }
    Some(out)
}

/// Waits (up to 10 s) until domain `id` is gone: its exit code as seen
/// while it was dying.
fn wait_gone(id: u32) -> Option<i32> {
    let deadline = time::now_ns() + 10_000_000_000;
    let mut code = None;
    loop {
        match domctl::info(id) {
            // Freed before we saw it dying: its end report has the code.
            Err(Error::NoEntry) => {
                return code.or_else(|| domctl::ended(id).ok().map(|e| e.exit_code));
            }
            Ok(i) if i.state == DOMAIN_DYING => code = Some(i.exit_code),
            Ok(_) => {}
            Err(_) => return None,
        }
        if time::now_ns() > deadline {
            return None;
        }
        sched::yield_now();
    }
}

fn main(si: &pvabi::StartInfo) -> i32 {
    let Some(mut image) = read_module("hello") else {
        pvabi::println!("ctlimage: no hello module FAILED");
        return 1;
    };
    let free = domctl::host_info().map_or(0, |h| h.free_bytes);
    pvabi::println!(
        "ctlimage: domain {}, hello is {} bytes",
        si.domain_id,
        image.len()
    );
    let einval = Error::Invalid.code();
    let efault = Error::Fault.code();
    CHECKS.check(
        "no bytes",
        code(domctl::create_image(&mut request("x"), &[])),
        einval,
    );
    // A module index besides the image (create_image sets 0: set it after).
    let mut r = request("x");
    r.create.flags = pvabi::DOMCTL_CREATE_IMAGE;
    r.create.module = 1;
    r.image.image_gpa = image.as_ptr() as u64;
    r.image.image_len = image.len() as u64;
    CHECKS.check(
        "a module as well",
        code(domctl::create_image_raw(&r)),
        einval,
    );
    r.create.module = 0;
    r.create.flags |= pvabi::DOMCTL_CREATE_LINUX;
    CHECKS.check(
        "the Linux flag as well",
        code(domctl::create_image_raw(&r)),
        einval,
    );
    r.create.flags = pvabi::DOMCTL_CREATE_IMAGE;
    r.image.image_gpa = si.memory_bytes - 4096;
    r.image.image_len = 8192;
    CHECKS.check(
        "past its memory",
        code(domctl::create_image_raw(&r)),
        efault,
    );
    let junk = [0x5au8; 4096];
    CHECKS.check(
        "not an ELF image",
        code(domctl::create_image(&mut request("x"), &junk)),
        einval,
    );
    let mut req = request("fromimg");
    if !req.create.set_cmdline("from memory") {
        return 1;
    }
    let id = domctl::create_image(&mut req, &image);
    CHECKS.check("create from its memory", code(id), 0);
    // The hypervisor built from its own copy: ours may change at once.
    image.fill(0);
    if let Ok(id) = id {
        CHECKS.check("unpause", code(domctl::unpause(id)), 0);
        CHECKS.check(
            "the child exited 0",
            i64::from(wait_gone(id).unwrap_or(-99)),
            0,
        );
    }
    let after = domctl::host_info().map_or(0, |h| h.free_bytes);
    CHECKS.check("free memory back", i64::from(after == free), 1);
    let (checks, failed) = CHECKS.counts();
    pvabi::println!("ctlimage: {checks} checks, {failed} failed");
    i32::from(failed != 0)
}

//! The bare-metal hypervisor image. All of it lives in the library; this
//! binary only exists to be linked with the boot entry points.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
use hypervisor as _;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("kestrel is a bare-metal image: build it with `cargo xtask build`");
    std::process::exit(2);
}

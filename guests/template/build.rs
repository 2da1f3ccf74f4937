//! Links the guest with `guest.ld` (loaded at 2 MiB guest-physical, the
//! image end marked `_end` for the runtime) and 4 KiB pages, the layout the
//! hypervisor's loader and pvabi's runtime expect.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    println!("cargo:rustc-link-arg-bins=-T{dir}/guest.ld");
    // The default 64 KiB max page size would pad segments apart.
    println!("cargo:rustc-link-arg-bins=-zmax-page-size=4096");
    println!("cargo:rerun-if-changed=guest.ld");
}

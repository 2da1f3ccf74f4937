//! Links every guest at 2 MiB guest-physical with the guest linker script,
//! except those linked like a Linux kernel (high virtual, loaded by
//! physical address: `linux.ld`).
fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default() != "none" {
        return;
    }
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let linux_like = ["linuxproto"];
    let bins = std::fs::read_dir(format!("{dir}/src/bin"))
        .into_iter()
        .flatten();
    for e in bins.flatten() {
        let p = e.path();
        let name = match p.file_stem().and_then(|s| s.to_str()) {
            Some(n) => n.to_string(),
            None => continue,
        };
        let script = if linux_like.contains(&name.as_str()) {
            "linux.ld"
        } else {
            "guest.ld"
        };
        println!("cargo:rustc-link-arg-bin={name}=-T{dir}/{script}");
        println!("cargo:rustc-link-arg-bin={name}=-zmax-page-size=4096");
    }
    println!("cargo:rerun-if-changed=guest.ld");
    println!("cargo:rerun-if-changed=linux.ld");
    println!("cargo:rerun-if-changed=src/bin");
}

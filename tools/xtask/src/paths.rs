//! Where things are: the repository, Cargo's target directory, the kernel.

use std::path::{Path, PathBuf};

/// The bare-metal target the hypervisor is built for.
pub const KERNEL_TARGET: &str = "x86_64-unknown-none";
/// The hypervisor's package and binary names.
pub const KERNEL_PACKAGE: &str = "hypervisor";
/// The hypervisor's binary name (and its file name inside images).
pub const KERNEL_BIN: &str = "kestrel";
/// The package of example and test guests (bare-metal binaries only).
pub const GUESTS_PACKAGE: &str = "kestrel-guests";
/// The control domain's package (binary [`DOM0_BIN`]; bare metal only).
pub const DOM0_PACKAGE: &str = "kestrel-dom0";
/// The control domain's binary name.
pub const DOM0_BIN: &str = "dom0";
/// The `cargo` arguments that build the host's `hvctl` (release), which
/// the boot tests drive: `target/release/hvctl`.
pub const HVCTL_BUILD_ARGS: [&str; 4] = ["build", "-p", "hvctl", "--release"];

/// The `cargo` arguments that build the hypervisor and every guest for the
/// bare-metal target (release unless `debug`).
pub fn build_args(debug: bool) -> Vec<&'static str> {
    let mut args = vec![
        "build",
        "-p",
        KERNEL_PACKAGE,
        "-p",
        GUESTS_PACKAGE,
        "-p",
        DOM0_PACKAGE,
        "--bins",
        "--target",
        KERNEL_TARGET,
    ];
    if !debug {
        args.push("--release");
    }
    args
}

/// Which Cargo profile a kernel was built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `--release`: what images, tests and benchmarks use.
    Release,
    /// The dev profile (`cargo xtask build --debug`).
    Debug,
}

impl Profile {
    /// The directory name Cargo uses for this profile.
    pub fn dir(self) -> &'static str {
        match self {
            Self::Release => "release",
            Self::Debug => "debug",
        }
    }
}

/// The repository root (the workspace directory).
pub fn repo_root() -> PathBuf {
    // This crate lives at <root>/tools/xtask.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .unwrap_or(manifest)
        .to_path_buf()
}

/// Cargo's target directory, honouring `CARGO_TARGET_DIR` like Cargo does.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                repo_root().join(dir)
            }
        }
        _ => repo_root().join("target"),
    }
}

/// The hypervisor ELF that `cargo build -p hypervisor --bin kestrel` makes.
pub fn kernel(profile: Profile) -> PathBuf {
    target_dir()
        .join(KERNEL_TARGET)
        .join(profile.dir())
        .join(KERNEL_BIN)
}

/// A guest binary from `guests/src/bin/<name>.rs`; `cargo xtask build`
/// puts it next to the hypervisor.
pub fn guest(profile: Profile, name: &str) -> PathBuf {
    target_dir()
        .join(KERNEL_TARGET)
        .join(profile.dir())
        .join(name)
}

/// Where generated images go (`build/`, ignored by git).
pub fn build_dir() -> PathBuf {
    repo_root().join("build")
}

/// The server image's path, `build/kestrel.iso` (`cargo xtask image`).
pub fn default_iso() -> PathBuf {
    build_dir().join("kestrel.iso")
}

/// The image development runs boot (`cargo xtask qemu`, `./qemu-run.sh`),
/// `build/dev.iso`: never the server image's path, so a test run does not
/// replace the image an operator is about to write to a USB stick.
pub fn dev_iso() -> PathBuf {
    build_dir().join("dev.iso")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_holds_the_workspace() {
        assert!(repo_root().join("Cargo.toml").is_file());
        assert!(repo_root().join("tools/xtask/Cargo.toml").is_file());
    }

    #[test]
    fn kernel_path_shape() {
        let k = kernel(Profile::Release);
        assert!(
            k.ends_with("x86_64-unknown-none/release/kestrel"),
            "{}",
            k.display()
        );
        let g = guest(Profile::Release, "hello");
        assert!(
            g.ends_with("x86_64-unknown-none/release/hello"),
            "{}",
            g.display()
        );
    }
}

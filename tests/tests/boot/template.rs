//! The out-of-tree guest template (`guests/template/`, documented in its
//! README): copied out of this repository, its `pvabi` path pointed at this
//! checkout, built with plain `cargo build --release` in the copy (its own
//! workspace, toolchain file, `.cargo/config.toml` and `build.rs`: nothing
//! from this workspace), and booted.
//!
//! | test | machine | asserts |
//! |---|---|---|
//! | `template_builds_out_of_tree_and_boots` | QEMU TCG (AMD-V), PVH, 1 CPU | the copy builds; its ELF is an `ET_EXEC` linked at 2 MiB (the static relocation model and the linker script took); booted as the only module it greets (`my-guest: hello world from domain 1`), reads the date, and exits 0 |
//! | `template_boots_on_bochs` | Bochs Haswell (VT-x), GRUB ISO with `name=kestrel times=2` | its arguments reached it (pvabi's parser): two greetings to `kestrel`; exit 0 |

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use boot_tests::artifacts::{root, shared_iso};
use boot_tests::bochs::{self, Pc};
use boot_tests::domains::ReportOnPanic;
use boot_tests::qemu::{PVH_TIMEOUT_S, pvh_vm, run};
use xtask::iso::Module;
use xtask::paths;

use crate::TEST_CMDLINE;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    let entries = std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    for e in entries.flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst)
                .unwrap_or_else(|err| panic!("copying {}: {err}", src.display()));
        }
    }
}

/// The template, copied to a directory outside the repository and built
/// there; the guest ELF.
fn built() -> &'static PathBuf {
    static ELF: OnceLock<PathBuf> = OnceLock::new();
    ELF.get_or_init(|| {
        let repo = paths::repo_root();
        let src = std::env::temp_dir().join(format!("kestrel-template-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&src);
        copy_dir(&repo.join("guests/template"), &src);
        let manifest = src.join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest).unwrap_or_default();
        let pvabi = repo.join("pvabi");
        let pointed = text.replace(
            "path = \"../../pvabi\"",
            &format!("path = \"{}\"", pvabi.display()),
        );
        assert_ne!(
            text, pointed,
            "the template's Cargo.toml no longer names ../../pvabi"
        );
        std::fs::write(&manifest, pointed).unwrap_or_else(|e| panic!("{e}"));
        // The workspace's lock file: the same dependency versions, and no
        // registry lookup for them.
        let _ = std::fs::copy(repo.join("Cargo.lock"), src.join("Cargo.lock"));
        // Kept between runs (the copy is not): pvabi builds once.
        let target = root().join("template-target");
        let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        cmd.args(["build", "--release"]).current_dir(&src);
        // Nothing of this build's own configuration may leak into the
        // copy's: it must build from its own files alone.
        for v in [
            "CARGO_BUILD_TARGET",
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_TARGET_X86_64_UNKNOWN_NONE_RUSTFLAGS",
            "CARGO_MANIFEST_DIR",
        ] {
            cmd.env_remove(v);
        }
        cmd.env("CARGO_TARGET_DIR", &target);
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("running cargo: {e}"));
        assert!(
            out.status.success(),
            "the template does not build out of tree ({}): {}\n{}",
            src.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let elf = target.join("x86_64-unknown-none/release/my-guest");
        let bytes = std::fs::read(&elf).unwrap_or_else(|e| panic!("{}: {e}", elf.display()));
        // e_type (offset 16) 2 = ET_EXEC: the static relocation model took
        // (the target's default would make a position-independent ET_DYN).
        assert_eq!(
            bytes.get(16..18),
            Some(&[2u8, 0][..]),
            "{}: not ET_EXEC",
            elf.display()
        );
        let loads = xtask::elfinfo::loads(&bytes).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            loads.iter().all(|l| l.paddr >= 0x20_0000),
            "{}: a segment below 2 MiB: guest.ld was not used ({loads:?})",
            elf.display()
        );
        let _ = std::fs::remove_dir_all(&src);
        elf
    })
}

#[test]
fn template_builds_out_of_tree_and_boots() {
    let test = "template_builds_out_of_tree_and_boots";
    let elf = built();
    let o = run(
        test,
        pvh_vm(1, "128M", TEST_CMDLINE, Some(elf)),
        PVH_TIMEOUT_S,
    );
    let _report = ReportOnPanic(&o);
    o.assert_qemu_success("pvh");
    o.expect_line("my-guest: hello world from domain 1");
    o.expect_line("my-guest: it is 20");
    o.assert_domain("module0", "exited", 0);
}

#[test]
fn template_boots_on_bochs() {
    let test = "template_boots_on_bochs";
    let m = Module::named(built(), "my-guest", "name=kestrel times=2")
        .unwrap_or_else(|e| panic!("{e}"));
    let iso = shared_iso(
        "template-bochs.iso",
        "exit=bochs shutdown loglevel=info",
        &[m],
    );
    let o = bochs::run_iso(
        test,
        &Pc::new("corei7_haswell_4770", 1, 128),
        &iso,
        None,
        bochs::TIMEOUT_S,
    );
    let _report = ReportOnPanic(&o);
    let greetings = o
        .lines
        .iter()
        .filter(|l| l.contains("my-guest: hello kestrel from domain 1"))
        .count();
    assert_eq!(greetings, 2, "{test}: times=2 name=kestrel");
    o.assert_domain("my-guest", "exited", 0);
}

/// The template's copies of the linker script and the toolchain pin are
/// the tree's own, so what the template documents is what the in-tree
/// guests are built with.
#[test]
fn template_files_match_the_tree() {
    let repo = paths::repo_root();
    for (copy, original) in [
        ("guests/template/guest.ld", "guests/guest.ld"),
        ("guests/template/rust-toolchain.toml", "rust-toolchain.toml"),
    ] {
        let read =
            |p: &str| std::fs::read_to_string(repo.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
        assert_eq!(
            read(copy),
            read(original),
            "{copy} differs from {original}: copy it again"
        );
    }
}

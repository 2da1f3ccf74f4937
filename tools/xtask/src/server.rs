//! The server image (`cargo xtask image`): the hypervisor with the `dom0`
//! option, dom0 as boot module 0, a boot configuration and every image it
//! names, so the machine that boots it runs a system, not an idle
//! hypervisor.
//!
//! The configuration is `dom0/demo.toml` unless the operator gives their
//! own. Each `image = "NAME"` in it must be a boot module called `NAME`;
//! [`modules`] finds the file for it next to the configuration first
//! (`<dir>/NAME`, the operator's own guests), then among the guests this
//! repository builds (`target/x86_64-unknown-none/<profile>/NAME`), and
//! says where it looked when it finds neither. The configuration is checked
//! with dom0's own parser first ([`check`]), so a file dom0 would refuse is
//! refused here, with the same `file:line:column` messages, before anything
//! is built.
//!
//! `cargo xtask qemu --dom0` (`./qemu-run.sh`) boots the same modules built
//! from `dom0/demo.toml`, into its own image path ([`crate::paths::dev_iso`]),
//! never into the server image's.

use std::path::{Path, PathBuf};

use kestrel_toolstack::config::{self, Images, Limits};

use crate::bail;
use crate::error::{Context, Result};
use crate::iso::{IsoSpec, Module};
use crate::paths::{self, Profile};

/// The server image's hypervisor command line unless `--cmdline` is given
/// (`dom0` is added to a given one that lacks it).
pub const CMDLINE: &str = "dom0 loglevel=info";
/// GRUB's menu timeout on the server image: the operator at the console
/// (or on serial-over-LAN) has 3 s to pick or edit the entry.
pub const TIMEOUT_S: u32 = 3;
/// dom0's module name in every image.
pub const DOM0_MODULE: &str = "dom0";
/// The module name of the Linux guest kernel this repository builds
/// (`cargo xtask linux`): a configuration's `kernel = "vmlinux"`.
pub const LINUX_KERNEL: &str = "vmlinux";
/// The module name of its busybox initramfs: `initrd = "initramfs.cpio"`.
pub const LINUX_INITRD: &str = "initramfs.cpio";

/// The demo's configuration, `dom0/demo.toml`: the server image's default.
pub fn demo_config() -> PathBuf {
    paths::repo_root().join("dom0").join("demo.toml")
}

/// `cmdline` with the `dom0` flag (added in front when missing).
pub fn with_dom0_flag(cmdline: &str) -> String {
    if cmdline.split_whitespace().any(|w| w == "dom0") {
        cmdline.to_string()
    } else {
        format!("dom0 {cmdline}").trim_end().to_string()
    }
}

/// Reads and checks `config` with dom0's parser: its file name and its
/// domains. `cargo xtask image` calls it before it builds anything.
pub fn check(config: &Path) -> Result<(String, config::BootConfig)> {
    let text = std::fs::read_to_string(config)
        .context(|| format!("reading the boot configuration {}", config.display()))?;
    let file_name = match config.file_name().and_then(|n| n.to_str()) {
        Some(n) => n.to_string(),
        None => bail!("boot configuration {} has no file name", config.display()),
    };
    let shown = config.display().to_string();
    let parsed = config::parse(&shown, &text, &Limits::default(), Images::Any)
        .map_err(|e| crate::error::Error::new(e.to_string()))?;
    if parsed.domains.is_empty() {
        bail!(
            "boot configuration {} names no domain: the image would boot dom0 and nothing \
             else (add a [[domain]] table, or use --bare for the hypervisor alone)",
            config.display()
        );
    }
    Ok((file_name, parsed))
}

/// dom0, each image `config` names (once, in order of first use) and the
/// configuration itself, as boot modules, built with `profile`.
pub fn modules(profile: Profile, config: &Path) -> Result<Vec<Module>> {
    // The Linux guest (`cargo xtask linux`: cached, or built now from the
    // installed Debian packages) only when the configuration asks for it
    // by its built names and no file of that name is next to it.
    let (_, parsed) = check(config)?;
    let dir = config.parent().unwrap_or(Path::new("."));
    let wants_linux = parsed
        .domains
        .iter()
        .flat_map(|d| std::iter::once(&d.image).chain(d.initrd.as_ref()))
        .any(|n| (n == LINUX_KERNEL || n == LINUX_INITRD) && !dir.join(n).is_file());
    let linux = if wants_linux {
        Some(crate::linux::build()?)
    } else {
        None
    };
    modules_from(config, &|name| match (&linux, name) {
        (Some(l), LINUX_KERNEL) => l.vmlinux.clone(),
        (Some(l), LINUX_INITRD) => l.initramfs.clone(),
        _ => paths::guest(profile, name),
    })
}

/// [`modules`], with `built(name)` the path of this repository's built
/// guest `name` (host tests point it at files of their own: a fresh clone
/// runs them before any guest is built).
fn modules_from(config: &Path, built: &dyn Fn(&str) -> PathBuf) -> Result<Vec<Module>> {
    let (file_name, parsed) = check(config)?;
    let dir = config.parent().unwrap_or(Path::new("."));
    let mut out = vec![Module::named(
        built(paths::DOM0_BIN),
        DOM0_MODULE,
        // dom0 picks the first `.toml` module by itself; any other file
        // name must be named to it.
        if file_name.ends_with(".toml") {
            String::new()
        } else {
            format!("config={file_name}")
        },
    )?];
    // A Linux domain's initramfs is a boot module like its kernel.
    let images = parsed
        .domains
        .iter()
        .flat_map(|d| std::iter::once((d, &d.image)).chain(d.initrd.as_ref().map(|i| (d, i))));
    for (d, image) in images {
        if out.iter().any(|m| &m.name == image) {
            continue;
        }
        if image == DOM0_MODULE || image == &file_name {
            bail!(
                "{}: domain \"{}\": image \"{}\" is the name of dom0's own module or of the \
                 configuration; give the guest image another name",
                config.display(),
                d.name,
                image
            );
        }
        let path = find_image(dir, image, built).map_err(|looked| {
            crate::error::Error::new(format!(
                "{}: domain \"{}\": image \"{}\" not found: looked for {} (put the file next to \
                 the configuration, or build it into guests/src/bin with `cargo xtask build`)",
                config.display(),
                d.name,
                image,
                looked
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" and ")
            ))
        })?;
        out.push(Module::named(path, image.as_str(), "")?);
    }
    out.push(Module::named(config, file_name.as_str(), "")?);
    Ok(out)
}

/// The file for image `name`: `<dir>/name`, else the built guest `name`;
/// on failure, the paths looked at.
fn find_image(
    dir: &Path,
    name: &str,
    built: &dyn Fn(&str) -> PathBuf,
) -> std::result::Result<PathBuf, Vec<PathBuf>> {
    let candidates = [dir.join(name), built(name)];
    match candidates.iter().find(|p| p.is_file()) {
        Some(p) => Ok(p.clone()),
        None => Err(candidates.to_vec()),
    }
}

/// The server image: `kernel`, [`modules`] of `config` and then `extra`
/// modules, `cmdline` with the `dom0` flag, GRUB's menu for [`TIMEOUT_S`].
pub fn spec(
    profile: Profile,
    kernel: PathBuf,
    config: &Path,
    cmdline: &str,
    extra: Vec<Module>,
    output: PathBuf,
) -> Result<IsoSpec> {
    let mut modules = modules(profile, config)?;
    modules.extend(extra);
    Ok(IsoSpec {
        kernel,
        cmdline: with_dom0_flag(cmdline),
        modules,
        timeout_s: TIMEOUT_S,
        output,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    fn scratch(test: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xtask-server-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn dom0_flag_added_once() {
        assert_eq!(with_dom0_flag("loglevel=debug"), "dom0 loglevel=debug");
        assert_eq!(with_dom0_flag("loglevel=info dom0"), "loglevel=info dom0");
        assert_eq!(with_dom0_flag(""), "dom0");
    }

    /// A stand-in for the built guests: `names` as files in a scratch
    /// directory laid out as cargo's, and the lookup into it.
    fn built(test: &str, names: &[&str]) -> (PathBuf, impl Fn(&str) -> PathBuf) {
        let d = scratch(&format!("{test}-built"));
        let rel = d.join("x86_64-unknown-none/release");
        std::fs::create_dir_all(&rel).unwrap();
        for n in names {
            std::fs::write(rel.join(n), b"\x7fELF").unwrap();
        }
        (d, move |n: &str| rel.join(n))
    }

    #[test]
    fn demo_config_names_dom0_its_images_and_itself() {
        let (d, guest) = built(
            "demo",
            &["dom0", "hello", "ticker", LINUX_KERNEL, LINUX_INITRD],
        );
        let m = modules_from(&demo_config(), &guest).unwrap();
        let names: Vec<&str> = m.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "dom0",
                "hello",
                "ticker",
                "vmlinux",
                "initramfs.cpio",
                "demo.toml"
            ]
        );
        assert!(m[0].path.ends_with("x86_64-unknown-none/release/dom0"));
        assert!(m[1].path.ends_with("x86_64-unknown-none/release/hello"));
        assert_eq!(m[5].path, demo_config());
        assert!(m.iter().all(|m| m.args.is_empty()));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn operator_images_next_to_the_config_win() {
        let d = scratch("own");
        std::fs::write(d.join("web.elf"), b"\x7fELF").unwrap();
        let cfg = d.join("site.conf");
        std::fs::write(
            &cfg,
            "[[domain]]\nname = \"web\"\nimage = \"web.elf\"\nmemory = 8\n\
             [[domain]]\nname = \"t\"\nimage = \"ticker\"\nmemory = 4\n\
             [[domain]]\nname = \"w2\"\nimage = \"web.elf\"\nmemory = 8\n",
        )
        .unwrap();
        let (b, guest) = built("own", &["dom0", "ticker"]);
        let m = modules_from(&cfg, &guest).unwrap();
        let _ = std::fs::remove_dir_all(&b);
        let names: Vec<&str> = m.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["dom0", "web.elf", "ticker", "site.conf"]);
        assert_eq!(m[1].path, d.join("web.elf"));
        // Not a .toml name: dom0 is told which module is its configuration.
        assert_eq!(m[0].args, "config=site.conf");
        let _ = std::fs::remove_dir_all(&d);
    }

    /// A Linux domain's `initrd` is a boot module too (it was left out:
    /// dom0 then refused the domain, `ENOENT`), found like an image.
    #[test]
    fn linux_kernel_and_initrd_are_modules() {
        let d = scratch("linux");
        std::fs::write(d.join("my.cpio"), b"070701").unwrap();
        let cfg = d.join("lx.toml");
        std::fs::write(
            &cfg,
            "[[domain]]\nname = \"a\"\nkernel = \"vmlinux\"\ninitrd = \"my.cpio\"\nmemory = 64\n\
             [[domain]]\nname = \"b\"\nkernel = \"vmlinux\"\ninitrd = \"my.cpio\"\nmemory = 64\n\
             [[domain]]\nname = \"c\"\nkernel = \"vmlinux\"\ninitrd = \"none.cpio\"\nmemory = 64\n",
        )
        .unwrap();
        let (b, guest) = built("linux", &["dom0", "vmlinux"]);
        let e = modules_from(&cfg, &guest).unwrap_err().to_string();
        assert!(
            e.contains("domain \"c\": image \"none.cpio\" not found: looked for")
                && e.contains(&d.join("none.cpio").display().to_string()),
            "{e}"
        );
        std::fs::write(d.join("none.cpio"), b"070701").unwrap();
        let m = modules_from(&cfg, &guest).unwrap();
        let _ = std::fs::remove_dir_all(&b);
        let names: Vec<&str> = m.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            ["dom0", "vmlinux", "my.cpio", "none.cpio", "lx.toml"]
        );
        assert!(m[1].path.ends_with("x86_64-unknown-none/release/vmlinux"));
        assert_eq!(m[2].path, d.join("my.cpio"));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn missing_image_empty_and_bad_files_are_refused_with_the_file_name() {
        let d = scratch("bad");
        let cfg = d.join("g.toml");
        std::fs::write(
            &cfg,
            "[[domain]]\nname = \"a\"\nimage = \"nginx.elf\"\nmemory = 4\n",
        )
        .unwrap();
        let e = modules(Profile::Release, &cfg).unwrap_err().to_string();
        assert!(
            e.contains("g.toml: domain \"a\": image \"nginx.elf\" not found: looked for")
                && e.contains(&d.join("nginx.elf").display().to_string()),
            "{e}"
        );
        std::fs::write(&cfg, "# nothing yet\n").unwrap();
        let e = modules(Profile::Release, &cfg).unwrap_err().to_string();
        assert!(e.contains("names no domain"), "{e}");
        std::fs::write(
            &cfg,
            "[[domain]]\nname = \"a\"\nimage = \"hello\"\nmemroy = 4\n",
        )
        .unwrap();
        let e = modules(Profile::Release, &cfg).unwrap_err().to_string();
        assert!(e.contains("g.toml:4:1") && e.contains("memroy"), "{e}");
        let e = modules(Profile::Release, &d.join("none.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("none.toml"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }
}

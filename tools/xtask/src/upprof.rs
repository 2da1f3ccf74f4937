//! `cargo xtask bench --only uploadprof`: where dom0's instructions go
//! during an image upload (issue 14). One boot of the upload bench
//! (`upbench.rs`: `hvctl --host image upload` of its 1 MiB file, no raw
//! stream) under the `insncount` plugin with its per-address profile
//! (`prof=`), and one boot that sends nothing; each function's count in
//! the first less the second, per MiB sent, largest first. Twice: over
//! the hypervisor's code, then over dom0's (the plugin profiles the one
//! range it is given; dom0 runs at its link address, so its symbols name
//! the addresses).

use std::collections::BTreeMap;
use std::path::Path;

use xtask::error::{Context, Result};
use xtask::{bail, paths};

use crate::evprof::{per_function, print_top, profile, symbols};
use crate::upbench::{FILE_BYTES, Send, file_bytes, hvctl, one};

pub fn run(kernel: &Path, out_dir: &Path) -> Result<()> {
    if !hvctl().exists() {
        bail!(
            "{} missing: run `cargo xtask build` first",
            hvctl().display()
        );
    }
    let dom0 = paths::guest(paths::Profile::Release, "dom0");
    let plugin = crate::insncount::prepare(kernel, std::slice::from_ref(&dom0))?;
    let (lo, hi) = crate::insncount::exec_range(&dom0)?;
    let dom0_plugin = crate::insncount::Plugin {
        lo,
        hi,
        ..plugin.clone()
    };
    for (what, plugin, elf) in [
        ("dom0", &dom0_plugin, dom0.as_path()),
        ("hypervisor", &plugin, kernel),
    ] {
        profile_one(what, plugin, elf, kernel, out_dir)?;
    }
    Ok(())
}

fn profile_one(
    what: &str,
    plugin: &crate::insncount::Plugin,
    elf: &Path,
    kernel: &Path,
    out_dir: &Path,
) -> Result<()> {
    let syms = symbols(elf)?;
    let bytes = file_bytes();
    let dir = out_dir.join("uploadprof").join(what);
    std::fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
    let file = dir.join("image.bin");
    std::fs::write(&file, &bytes).context(|| format!("writing {}", file.display()))?;
    let mut funcs: Vec<BTreeMap<String, i64>> = Vec::new();
    for (name, upload) in [("idle", false), ("upload", true)] {
        let d = dir.join(name);
        let prof = d.join("prof.txt");
        let send = Send { upload, raw: false };
        // `one` clears `d` first: the profile is written after it.
        let r = one(kernel, &d, &file, &bytes, send, Some(plugin), Some(&prof))?;
        println!(
            "uploadprof {what} {name}: outside the range {} instructions, upload {:?}",
            r.guest_insns.unwrap_or(0),
            r.upload
        );
        funcs.push(per_function(&syms, &profile(&prof)?));
    }
    let mut diff = funcs.pop().unwrap_or_default();
    for (f, n) in funcs.pop().unwrap_or_default() {
        *diff.entry(f).or_insert(0) -= n;
    }
    let mib = FILE_BYTES as f64 / f64::from(1u32 << 20);
    print_top(
        &format!("{what}: upload less idle, instructions per MiB by function"),
        &diff,
        mib,
    );
    Ok(())
}

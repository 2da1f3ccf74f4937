//! Images sent at run time over the authenticated TCP channel (issue 14):
//! the machine of `netmgmt.rs` (q35, `intel-iommu`, virtio-net on QEMU's
//! user network with a host forward to dom0's port 4444, one key), and
//! `hvctl --host` uploading. QEMU only (AMD-V under TCG; Bochs has no
//! IOMMU and no virtio-net).
//!
//! | test | asserts |
//! |---|---|
//! | `upload_qemu_tcp` | over `hvctl --host --key-file`: `image upload` of the `abi` guest (the largest small guest, not a boot module) is kept with the file's size and SHA-256; `create` of a configuration naming `./ticker.elf` uploads it and the domain ticks on its console (`console --history` over TCP shows it); it is destroyed; the serial line keeps answering `image list` with both uploads |

use std::path::Path;

use boot_tests::artifacts::sha256_hex as sha;
use boot_tests::artifacts::{guest, guest_module, test_dir};
use boot_tests::mgmt::{config_module, hvctl_cmd, input_file, mgmt_vm, wait_for_line};
use boot_tests::qemu::{BIOS_TIMEOUT_S, run_until};
use boot_tests::scaled;
use boot_tests::tcp::{forwarded_nic, free_port, keygen, over_tcp};
use xtask::iso::Module;

const TEST: &str = "upload_qemu_tcp";
const CONFIG: &str = "[network]\naddress = \"10.0.2.15/24\"\ngateway = \"10.0.2.2\"\n\
                      key_files = [\"ops.key\"]\n";
const END: &str =
    "[[domain]]\nname = \"end\"\nimage = \"hello\"\nmemory = 4\ncmdline = \"kestrel-test-end\"\n";

#[test]
fn upload_qemu_tcp() {
    let keys = test_dir(&format!("{TEST}.keys"));
    let key = keygen(&keys, "ops.key");
    let modules = vec![
        guest_module("dom0", "dom0", ""),
        guest_module("hello", "hello", ""),
        config_module(TEST, CONFIG),
        Module::named(&key, "ops.key", "").unwrap_or_else(|e| panic!("{e}")),
    ];
    let (mut vm, sock, log) = mgmt_vm(TEST, &modules);
    let port = free_port();
    vm.extra.extend(["-device".into(), "intel-iommu".into()]);
    vm.extra.extend(forwarded_nic(port));
    let qemu = std::thread::spawn(move || {
        run_until(
            TEST,
            vm,
            BIOS_TIMEOUT_S,
            Some(&["[end] hello from", "kestrel-test-end"]),
        )
    });
    let addr = format!("127.0.0.1:{port}");
    let checks = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for_line(&log, "dom0: ready: ", scaled(120))
            .unwrap_or_else(|| panic!("{TEST}: dom0 never became ready"));
        // The largest small guest, as an image of its own.
        let abi = guest("abi");
        let abi_bytes = std::fs::read(&abi).unwrap_or_else(|e| panic!("{e}"));
        let (code, out, err) = over_tcp(
            &addr,
            &key,
            &[
                "image",
                "upload",
                abi.to_str().unwrap_or(""),
                "--name",
                "abi-up",
            ],
        );
        assert_eq!(code, 0, "upload over TCP: {out}{err}");
        assert_eq!(
            out,
            format!(
                "uploaded {} as abi-up ({} bytes, sha256 {})\n",
                abi.display(),
                abi_bytes.len(),
                sha(&abi_bytes)
            )
        );
        // create with a local path.
        let cfg = input_file(
            TEST,
            "up.toml",
            "[[domain]]\nname = \"tick-t\"\nimage = \"./ticker.elf\"\nmemory = 4\n\
             cmdline = \"every_ms=100\"\n",
        );
        let local = cfg.parent().unwrap_or(Path::new(".")).join("ticker.elf");
        std::fs::copy(guest("ticker"), &local).unwrap_or_else(|e| panic!("{e}"));
        let (code, out, err) = over_tcp(&addr, &key, &["create", cfg.to_str().unwrap_or("")]);
        assert_eq!(code, 0, "create over TCP: {out}{err}");
        assert!(
            wait_for_line(&log, "[tick-t] ticker: tick ", scaled(30)).is_some(),
            "the uploaded ticker never ticked"
        );
        let (code, out, err) = over_tcp(&addr, &key, &["console", "--history", "tick-t"]);
        assert!(code == 0 && out.contains("ticker: tick"), "{out}{err}");
        let (code, out, err) = over_tcp(&addr, &key, &["destroy", "tick-t"]);
        assert_eq!(code, 0, "destroy: {out}{err}");
        // The serial line sees the same images.
        let (code, out, err) = hvctl_cmd(&sock, &["image", "list"]);
        assert_eq!(code, 0, "{out}{err}");
        let row = out
            .lines()
            .find(|l| l.starts_with("abi-up "))
            .unwrap_or_else(|| panic!("no abi-up in {out}"));
        assert!(row.ends_with(&sha(&abi_bytes)), "{row}");
        assert!(out.contains("ticker.elf-"), "{out}");
    }));
    if checks.is_ok() {
        let end = input_file(TEST, "end.toml", END);
        let _ = over_tcp(&addr, &key, &["create", end.to_str().unwrap_or("")]);
    }
    let o = qemu
        .join()
        .unwrap_or_else(|_| panic!("{TEST}: qemu thread"));
    if let Err(e) = checks {
        eprintln!("{}", o.report());
        std::panic::resume_unwind(e);
    }
    assert!(
        o.fatal_lines().is_empty() && o.panic_lines().is_empty(),
        "{TEST}: died:\n{}",
        o.report()
    );
    let d = o.domain_end("tick-t");
    assert_eq!(d.result, "destroyed");
}

//! Images sent at run time (issue 14): `hvctl create` uploads a guest
//! that is not a boot module and dom0 builds a domain from it
//! (through stages, `DOMCTL_CREATE_STAGED`); broken uploads leave nothing
//! behind.
//! QEMU only (AMD-V under TCG): the management line is a QEMU chardev
//! socket, as for every hvctl test (docs/testing.md).
//!
//! | test | machine | asserts |
//! |---|---|---|
//! | `upload_qemu_serial` | dom0 with boot modules `hello` and the configuration only; hvctl on COM2 | `hvctl image list` shows the boot modules with size and SHA-256 and no upload; a 6 MiB file is refused before a byte is sent, naming its size and dom0's room; a wrong hash is refused naming both hashes; an upload whose client goes mid-stream (connection closed after one chunk) and one that ends early are dropped: the list still has no upload and dom0 keeps serving; `hvctl create` of a configuration with `image = "<path of ticker>"` uploads it (dom0 logs `upload kept`), the domain ticks on its console, `image delete` is refused while it lives, it is destroyed, the image deleted; the same file sent again by `hvctl image upload` goes once, then says `nothing sent` |

use std::path::Path;

use boot_tests::artifacts::sha256_hex as hex;
use boot_tests::artifacts::{guest, guest_module};
use boot_tests::domains::ReportOnPanic;
use boot_tests::mgmt::{config_module, hvctl_cmd, input_file, mgmt_vm, wait_for_line};
use boot_tests::qemu::BIOS_TIMEOUT_S;
use boot_tests::relay::{raw, upload_chunk};
use boot_tests::scaled;
use boot_tests::session::{END_LINE, Machine, dom0_ready};

const TEST: &str = "upload_qemu_serial";

const BOOT: &str =
    "[[domain]]\nname = \"hi\"\nimage = \"hello\"\nmemory = 4\ncmdline = \"first\"\n";
/// `hvctl --json image list`: (name, source) of each.
fn images(sock: &Path) -> Vec<(String, String)> {
    let (code, out, err) = hvctl_cmd(sock, &["--json", "image", "list"]);
    assert_eq!(code, 0, "image list: {out}{err}");
    let v: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("image list: {e}: {out}"));
    v["images"]
        .as_array()
        .unwrap_or_else(|| panic!("image list: {out}"))
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap_or("?").to_string(),
                i["source"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect()
}

fn no_uploads(sock: &Path, when: &str) {
    let list = images(sock);
    assert!(
        list.iter().all(|(_, s)| s == "module"),
        "{when}: an upload is listed: {list:?}"
    );
}

#[test]
fn upload_qemu_serial() {
    let modules = vec![
        guest_module("dom0", "dom0", ""),
        guest_module("hello", "hello", ""),
        config_module(TEST, BOOT),
    ];
    let (vm, sock, log) = mgmt_vm(TEST, &modules);
    let qemu = Machine::qemu(TEST, vm, BIOS_TIMEOUT_S, END_LINE);
    let ticker = guest("ticker");
    let ticker_bytes =
        std::fs::read(&ticker).unwrap_or_else(|e| panic!("{}: {e}", ticker.display()));
    let (o, ()) = qemu.session(&sock, TEST, || {
        dom0_ready(TEST, &log, 90);
        // The boot modules, with size and SHA-256; no upload yet.
        let (code, out, err) = hvctl_cmd(&sock, &["image", "list"]);
        assert_eq!(code, 0, "image list: {out}{err}");
        let hello = std::fs::read(guest("hello")).unwrap_or_default();
        let row = out
            .lines()
            .find(|l| l.starts_with("hello "))
            .unwrap_or_else(|| panic!("no hello in {out}"));
        assert!(
            row.contains(&format!(" {} module  yes  ", hello.len())) && row.ends_with(&hex(&hello)),
            "{row}"
        );
        no_uploads(&sock, "at boot");

        // A wrong hash: refused with both hashes, nothing kept.
        let small = &ticker_bytes[..1000];
        let hello_line = r#"{"id":1,"op":"hello","version":1,"client":"raw"}"#.to_string();
        let got = raw(
            &sock,
            &[
                hello_line.clone(),
                format!(
                    r#"{{"id":2,"op":"upload_begin","name":"bad","size":1000,"sha256":"{}"}}"#,
                    hex(b"something else")
                ),
                upload_chunk("bad", 0, small),
                r#"{"id":4,"op":"upload_end","name":"bad"}"#.into(),
            ],
            4,
            scaled(20),
        );
        assert!(
            got[3].contains("bad_request")
                && got[3].contains(&hex(small))
                && got[3].contains("nothing kept"),
            "{got:?}"
        );
        // Ended before every byte: refused.
        let got = raw(
            &sock,
            &[
                hello_line.clone(),
                format!(
                    r#"{{"id":2,"op":"upload_begin","name":"short","size":1000,"sha256":"{}"}}"#,
                    hex(small)
                ),
                upload_chunk("short", 0, &small[..400]),
                r#"{"id":4,"op":"upload_end","name":"short"}"#.into(),
            ],
            4,
            scaled(20),
        );
        assert!(got[3].contains("after 400 of 1000 bytes"), "{got:?}");
        // The client goes mid-stream: its connection closes after one
        // chunk was taken (the relay ends its session).
        let got = raw(
            &sock,
            &[
                hello_line,
                format!(
                    r#"{{"id":2,"op":"upload_begin","name":"gone","size":1000,"sha256":"{}"}}"#,
                    hex(small)
                ),
                upload_chunk("gone", 0, &small[..500]),
            ],
            3,
            scaled(20),
        );
        assert!(got[2].contains("\"kind\":\"done\""), "{got:?}");
        no_uploads(&sock, "after the broken uploads");

        // `create` with a local path: ticker is not a boot module.
        // (`input_file` renews the input directory: the copy comes after.)
        let cfg = input_file(
            TEST,
            "up.toml",
            "[[domain]]\nname = \"tick-u\"\nimage = \"./ticker.elf\"\nmemory = 4\n\
             cmdline = \"every_ms=100\"\n",
        );
        let local = cfg.parent().unwrap_or(Path::new(".")).join("ticker.elf");
        std::fs::copy(&ticker, &local).unwrap_or_else(|e| panic!("{e}"));
        // More than dom0 has room for: refused before any byte is sent,
        // with the numbers.
        let huge = cfg.parent().unwrap_or(Path::new(".")).join("huge.bin");
        let pattern: Vec<u8> = (0..6u32 << 20).map(|i| (i % 251) as u8).collect();
        std::fs::write(&huge, &pattern).unwrap_or_else(|e| panic!("{e}"));
        let (code, out, err) = hvctl_cmd(&sock, &["image", "upload", huge.to_str().unwrap_or("")]);
        assert!(
            code == 1
                && err.contains(&format!(
                    "of {} bytes does not fit: dom0 has room for ",
                    6 << 20
                )),
            "{out}{err}"
        );
        let (code, out, err) = hvctl_cmd(&sock, &["create", cfg.to_str().unwrap_or("")]);
        assert_eq!(code, 0, "create: {out}{err}");
        assert!(out.contains("(tick-u)"), "create: {out}");
        let name = format!("ticker.elf-{}", &hex(&ticker_bytes)[..12]);
        assert!(
            wait_for_line(
                &log,
                &format!("dom0: image {name}: upload kept"),
                scaled(10)
            )
            .is_some(),
            "no upload line"
        );
        assert!(
            wait_for_line(&log, "[tick-u] ticker: tick ", scaled(30)).is_some(),
            "the uploaded ticker never ticked"
        );
        assert!(images(&sock).contains(&(name.clone(), "upload".into())));
        let (code, _, err) = hvctl_cmd(&sock, &["image", "delete", &name]);
        assert!(code == 1 && err.contains("in use by domain(s)"), "{err}");
        let (code, out, err) = hvctl_cmd(&sock, &["destroy", "tick-u"]);
        assert_eq!(code, 0, "destroy: {out}{err}");
        let (code, out, err) = hvctl_cmd(&sock, &["image", "delete", &name]);
        assert_eq!(code, 0, "delete: {out}{err}");
        no_uploads(&sock, "after the delete");

        // Sent once; the second time dom0 has it.
        let (code, out, err) = hvctl_cmd(&sock, &["image", "upload", local.to_str().unwrap_or("")]);
        assert!(code == 0 && out.starts_with("uploaded "), "{out}{err}");
        let (code, out, err) = hvctl_cmd(&sock, &["image", "upload", local.to_str().unwrap_or("")]);
        assert!(code == 0 && out.contains("nothing sent"), "{out}{err}");
    });
    let _report = ReportOnPanic(&o);
    assert_eq!(o.ended, xtask::runner::Ended::Stopped, "{TEST}");
    let ends = o.domain_ends();
    let d = ends
        .iter()
        .find(|d| d.name == "tick-u")
        .unwrap_or_else(|| panic!("no domain-end for tick-u"));
    assert_eq!(d.result, "destroyed");
}

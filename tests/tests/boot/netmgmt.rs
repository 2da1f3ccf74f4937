//! Management over the network (issue 14): dom0 drives a virtio-net NIC
//! (virtio-drivers, behind the IOMMU) with smoltcp and serves the
//! management protocol on TCP port 4444 over the authenticated channel
//! (`kestrel_toolstack::secure`); QEMU's user network forwards a free
//! host port to it. QEMU only (AMD-V under TCG; Bochs has no IOMMU and no
//! virtio-net).
//!
//! | test | machine | asserts |
//! |---|---|---|
//! | `netmgmt_qemu_vtd_static` | q35, `intel-iommu`, `virtio-net-pci` on user-net with a host forward, dom0 with `[network] address = "10.0.2.15/24"`, one key file; `tick-a` autostarted | dom0 says its NIC, address and port; the real `hvctl --host 127.0.0.1:PORT --key-file` lists, creates `tick-d`, shows its console history, destroys it; a plain JSON client gets one `refused:` line and the connection ends; a wrong key is refused (`authentication failed: dom0 refused the key`, exit 3) while the good key keeps working; garbage is refused; a half handshake left open does not stop another client; the serial line (`--socket`) keeps answering; dom0 logs each session with its key's name |
//! | `netmgmt_qemu_amdvi_dhcp` | the same with `amd-iommu` and `address = "dhcp"` | dom0 gets 10.0.2.15 from QEMU's DHCP server and serves `hvctl --host` list and destroy |

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;

use boot_tests::artifacts::{guest_module, test_dir};
use boot_tests::mgmt::{config_module, hvctl_cmd, input_file, mgmt_vm, wait_for_line};
use boot_tests::qemu::{BIOS_TIMEOUT_S, run_until};
use boot_tests::scaled;
use xtask::iso::Module;

use boot_tests::tcp::{forwarded_nic, free_port};
pub(super) use boot_tests::tcp::{keygen, over_tcp};

/// What a client sends first (`kestrel_toolstack::secure::HELLO`).
const HELLO: &[u8] = b"KESTREL-MGMT/1 Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s\n";

const END: &str =
    "[[domain]]\nname = \"end\"\nimage = \"hello\"\nmemory = 4\ncmdline = \"kestrel-test-end\"\n";
const FOURTH: &str = "[[domain]]\nname = \"tick-d\"\nimage = \"ticker\"\nmemory = 4\n";

fn config(address: &str) -> String {
    let gateway = if address == "dhcp" {
        ""
    } else {
        "gateway = \"10.0.2.2\"\n"
    };
    format!(
        "[network]\naddress = \"{address}\"\n{gateway}key_files = [\"ops.key\"]\n\n\
         [[domain]]\nname = \"tick-a\"\nimage = \"ticker\"\nmemory = 4\ncmdline = \"every_ms=200\"\n"
    )
}

/// Sends `bytes` on a fresh connection; everything dom0 answers until it
/// closes the connection.
pub(super) fn raw(addr: &str, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(scaled(20)))
        .unwrap_or_else(|e| panic!("{e}"));
    s.write_all(bytes).unwrap_or_else(|e| panic!("{e}"));
    let mut got = Vec::new();
    // Ends when dom0 closes (EOF or reset); a time-out fails below.
    let r = s.read_to_end(&mut got);
    assert!(
        !matches!(&r, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "dom0 did not close the connection: {r:?}, got {got:?}"
    );
    String::from_utf8_lossy(&got).into_owned()
}

pub(super) struct Machine {
    pub(super) addr: String,
    sock: PathBuf,
    pub(super) log: PathBuf,
    pub(super) good: PathBuf,
    bad: PathBuf,
    qemu: std::thread::JoinHandle<boot_tests::Outcome>,
}

pub(super) fn boot(test: &'static str, iommu: &str, address: &str) -> Machine {
    let keys = test_dir(&format!("{test}.keys"));
    let good = keygen(&keys, "ops.key");
    let bad = keygen(&keys, "other.key");
    let modules = vec![
        guest_module("dom0", "dom0", ""),
        guest_module("hello", "hello", ""),
        guest_module("ticker", "ticker", ""),
        config_module(test, &config(address)),
        Module::named(&good, "ops.key", "").unwrap_or_else(|e| panic!("{e}")),
    ];
    let (mut vm, sock, log) = mgmt_vm(test, &modules);
    let port = free_port();
    vm.extra.extend(["-device".into(), iommu.into()]);
    vm.extra.extend(forwarded_nic(port));
    let qemu = std::thread::spawn(move || {
        run_until(
            test,
            vm,
            BIOS_TIMEOUT_S,
            Some(&["[end] hello from", "kestrel-test-end"]),
        )
    });
    Machine {
        addr: format!("127.0.0.1:{port}"),
        sock,
        log,
        good,
        bad,
        qemu,
    }
}

/// Ends the machine through a domain created over the network, and fails
/// with the serial log if `checks` failed.
pub(super) fn finish(test: &str, m: Machine, checks: std::thread::Result<()>) {
    if checks.is_ok() {
        let end = input_file(test, "end.toml", END);
        let _ = over_tcp(&m.addr, &m.good, &["create", end.to_str().unwrap_or("")]);
    }
    let o = m
        .qemu
        .join()
        .unwrap_or_else(|_| panic!("{test}: qemu thread"));
    if let Err(e) = checks {
        eprintln!("{}", o.report());
        std::panic::resume_unwind(e);
    }
    assert!(
        o.fatal_lines().is_empty() && o.panic_lines().is_empty(),
        "{test}: died:\n{}",
        o.report()
    );
    assert!(o.line("killed").is_none(), "{test}: a domain was killed");
}

pub(super) fn ready(test: &str, m: &Machine, net_line: &str) {
    let net = wait_for_line(&m.log, "dom0: net: ", scaled(120))
        .unwrap_or_else(|| panic!("{test}: dom0 said nothing about the network"));
    assert!(
        net.contains("virtio-net")
            && net.contains(net_line)
            && net.contains("management on TCP port 4444 (authenticated, 1 key(s))"),
        "{net}"
    );
    wait_for_line(&m.log, "dom0: ready: ", scaled(60))
        .unwrap_or_else(|| panic!("{test}: dom0 never became ready"));
}

#[test]
fn netmgmt_qemu_vtd_static() {
    const TEST: &str = "netmgmt_qemu_vtd_static";
    let m = boot(TEST, "intel-iommu", "10.0.2.15/24");
    let checks = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ready(TEST, &m, "address 10.0.2.15/24");
        let (code, out, err) = over_tcp(&m.addr, &m.good, &["list"]);
        assert_eq!(code, 0, "list over TCP: {out}{err}");
        assert!(out.contains("dom0") && out.contains("tick-a"), "{out}");
        wait_for_line(&m.log, "dom0: net: session ", scaled(10))
            .and_then(|_| wait_for_line(&m.log, "authenticated (key ops.key)", scaled(10)))
            .unwrap_or_else(|| panic!("dom0 did not log the session and its key"));

        // A plain JSON client: one refusal line, then the connection ends.
        let got = raw(&m.addr, b"{\"id\":1,\"op\":\"list\"}\n");
        assert!(
            got.starts_with("refused: not a Kestrel management client")
                && got.ends_with('\n')
                && got.matches('\n').count() == 1
                && !got.contains("tick-a"),
            "plain client got {got:?}"
        );
        // Garbage likewise.
        let got = raw(&m.addr, b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03");
        assert!(
            got.starts_with("refused: not a Kestrel"),
            "garbage got {got:?}"
        );
        // A wrong key.
        let (code, out, err) = over_tcp(&m.addr, &m.bad, &["list"]);
        assert_eq!(code, 3, "wrong key: {out}{err}");
        assert!(
            err.starts_with("hvctl: authentication failed: dom0 refused the key"),
            "{err}"
        );
        assert!(out.is_empty(), "{out}");

        // A half handshake held open does not stop the good client.
        let mut half = TcpStream::connect(&m.addr).unwrap_or_else(|e| panic!("{e}"));
        half.write_all(HELLO).unwrap_or_else(|e| panic!("{e}"));
        half.write_all(&[0, 48, 1, 2, 3])
            .unwrap_or_else(|e| panic!("{e}"));

        let fourth = input_file(TEST, "fourth.toml", FOURTH);
        let (code, out, err) =
            over_tcp(&m.addr, &m.good, &["create", fourth.to_str().unwrap_or("")]);
        assert_eq!(code, 0, "create over TCP: {out}{err}");
        assert!(out.contains("tick-d"), "{out}");
        wait_for_line(&m.log, "[tick-d] ticker: tick 2", scaled(30))
            .unwrap_or_else(|| panic!("tick-d never ticked"));
        let (code, out, err) = over_tcp(&m.addr, &m.good, &["console", "--history", "tick-d"]);
        assert_eq!(code, 0, "console over TCP: {out}{err}");
        assert!(out.contains("ticker: tick 1"), "console history: {out}");
        let (code, out, err) = over_tcp(&m.addr, &m.good, &["destroy", "tick-d"]);
        assert_eq!(code, 0, "destroy over TCP: {out}{err}");
        assert!(
            out.contains("destroyed domain") && out.contains("tick-d"),
            "{out}"
        );
        drop(half);

        // The serial line still serves, and sees what the network did.
        let (code, out, err) = hvctl_cmd(&m.sock, &["list"]);
        assert_eq!(code, 0, "list on the serial line: {out}{err}");
        assert!(
            out.contains("tick-a") && !out.contains("tick-d  running"),
            "{out}"
        );
        let (code, out, _) = over_tcp(&m.addr, &m.good, &["info", "tick-a"]);
        assert_eq!(code, 0, "{out}");
    }));
    finish(TEST, m, checks);
}

#[test]
fn netmgmt_qemu_amdvi_dhcp() {
    const TEST: &str = "netmgmt_qemu_amdvi_dhcp";
    let m = boot(TEST, "amd-iommu", "dhcp");
    let checks = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ready(TEST, &m, "address by DHCP");
        wait_for_line(
            &m.log,
            "dom0: net: DHCP address 10.0.2.15/24, gateway 10.0.2.2",
            scaled(60),
        )
        .unwrap_or_else(|| panic!("{TEST}: no DHCP lease"));
        let (code, out, err) = over_tcp(&m.addr, &m.good, &["list"]);
        assert_eq!(code, 0, "list over TCP: {out}{err}");
        assert!(out.contains("tick-a"), "{out}");
        let log = std::fs::read_to_string(&m.log).unwrap_or_default();
        assert!(!log.contains("DHCP lease lost"), "a lease was never lost");
        let (code, out, err) = over_tcp(&m.addr, &m.good, &["destroy", "tick-a"]);
        assert_eq!(code, 0, "destroy over TCP: {out}{err}");
    }));
    finish(TEST, m, checks);
}

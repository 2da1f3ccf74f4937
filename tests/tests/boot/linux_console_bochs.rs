//! Console input to a Linux shell on VT-x (issue 13: the QEMU test
//! `linux_dom0_qemu_hvctl` was the only one).
//!
//! Bochs 2.7 offers dom0's management line, COM2, as `mode=socket-server`
//! (TCP; it waits for one client before the simulation starts), while
//! `hvctl` connects once per command. So the test is that one client:
//! it bridges the TCP line to a unix socket, as QEMU's `-chardev socket`
//! gives the QEMU tests, and the real `hvctl --socket` (with the relay it
//! starts) drives it. Bytes dom0 sends while no hvctl is attached are
//! dropped, as a serial line drops them.
//!
//! | test | machine | asserts |
//! |---|---|---|
//! | `linux_console_bochs` | Bochs Haswell (VT-x), `dom0` option, 2 CPUs, 256 MiB, COM2 a TCP socket bridged to a unix socket | `lx-con` (`kestrel.shell=1`) from the boot configuration: through `hvctl console`, `echo $((6*7))` prints `42`, then `poweroff` typed there ends it `result=exited code=0` |

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use boot_tests::artifacts::guest_module;
use boot_tests::bochs::{TIMEOUT_S, run_iso};
use boot_tests::domains::ReportOnPanic;
use boot_tests::hvconsole::ConsoleSession;
use boot_tests::linux_dom::{BochsMgmt, linux_domain};
use boot_tests::mgmt::{config_module, linux_modules, wait_for_line};
use boot_tests::scaled;
use boot_tests::session::Machine;

const TEST: &str = "linux_console_bochs";

type Client = Arc<Mutex<Option<std::os::unix::net::UnixStream>>>;

/// Connects to Bochs' COM2 at `port` (retrying while Bochs starts) and
/// serves it at the unix socket `sock`, one client at a time (also
/// `linux_shutdown_bochs`'s line).
pub(super) fn bridge(port: u16, sock: &Path) {
    let end = Instant::now() + scaled(60);
    let line = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(e) if Instant::now() >= end => panic!("{TEST}: Bochs' COM2 at {port}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let _ = std::fs::remove_file(sock);
    let listener =
        UnixListener::bind(sock).unwrap_or_else(|e| panic!("{TEST}: {}: {e}", sock.display()));
    let client: Client = Arc::default();
    let mut down = line.try_clone().unwrap_or_else(|e| panic!("{e}"));
    let to = client.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = down.read(&mut buf) {
            if n == 0 {
                break;
            }
            let mut c = to.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(s) = c.as_mut()
                && s.write_all(buf.get(..n).unwrap_or_default()).is_err()
            {
                *c = None;
            }
        }
    });
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let Ok(w) = conn.try_clone() else { continue };
            *client.lock().unwrap_or_else(|e| e.into_inner()) = Some(w);
            let mut up = line.try_clone().unwrap_or_else(|e| panic!("{e}"));
            let mut buf = [0u8; 4096];
            while let Ok(n) = conn.read(&mut buf) {
                if n == 0 || up.write_all(buf.get(..n).unwrap_or_default()).is_err() {
                    break;
                }
            }
        }
    });
}

fn session(sock: &Path, log: &Path) {
    wait_for_line(log, "[lx-con] kestrel-linux: shell on hvc0", scaled(240))
        .unwrap_or_else(|| panic!("{TEST}: lx-con's shell never came"));
    let mut con = ConsoleSession::attach(sock, "lx-con");
    con.send(b"\n");
    con.wait_for("kestrel# ", scaled(60))
        .unwrap_or_else(|| panic!("{TEST}: no prompt; console: {:?}", con.text()));
    con.send(b"echo $((6*7))\n");
    con.wait_for("\n42\n", scaled(60))
        .unwrap_or_else(|| panic!("{TEST}: no 42; console: {:?}", con.text()));
    con.send(b"poweroff\n");
    wait_for_line(log, "name=lx-con result=exited code=0", scaled(60))
        .unwrap_or_else(|| panic!("{TEST}: poweroff typed through hvctl did not end lx-con"));
    let _ = con.close(scaled(10));
}

#[test]
fn linux_console_bochs() {
    let [vmlinux, initramfs] = linux_modules();
    let toml = linux_domain("lx-con", 48, "quiet kestrel.shell=1", "");
    let modules = vec![
        guest_module("dom0", "dom0", ""),
        vmlinux,
        initramfs,
        config_module(TEST, &toml),
    ];
    // Its own stop line (lx-con's end), not the `end` domain's.
    let BochsMgmt {
        pc,
        iso,
        port,
        log,
        sock,
    } = BochsMgmt::new(TEST, &modules);
    let bochs = Machine::spawn("Bochs", move || {
        run_iso(
            TEST,
            &pc,
            &iso,
            Some(&["domain-end: ", " name=lx-con "]),
            TIMEOUT_S,
        )
    });
    let result = std::panic::catch_unwind(|| {
        bridge(port, &sock);
        session(&sock, &log);
    });
    let (o, ()) = bochs.join(result);
    let _report = ReportOnPanic(&o);
    o.expect_line(" name=lx-con result=exited code=0 ");
    assert!(
        o.fatal_lines().is_empty() && o.panic_lines().is_empty(),
        "{TEST}: the hypervisor died"
    );
}

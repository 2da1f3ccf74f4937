//! `dom0_qemu_many`: several management clients at once on dom0's one line
//! (issue 15), through the relay `hvctl` starts by itself: a console
//! attached the whole time (a line typed into it every few seconds, each
//! echoed), a `list` loop and a create/destroy loop, for 60 s as the issue
//! says (loops bounded by time, not count: how many requests each made is
//! printed as `dom0_qemu_many: in 60 s: ...`), every request answered
//! within its timeout (none hangs); then 100 clients cut
//! off at every point of a request and 5 killed `hvctl` processes, after
//! which a request works (QEMU only: COM2 is a QEMU chardev socket, see
//! docs/testing.md).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};

use boot_tests::artifacts::{guest_module, hvctl};
use boot_tests::domains::ReportOnPanic;
use boot_tests::mgmt::input_file;
use boot_tests::qemu::{BIOS_TIMEOUT_S, run_until};
use boot_tests::scaled;

use super::{config_module, hvctl_cmd, mgmt_vm, wait_for_line};

const TEST: &str = "dom0_qemu_many";

const CONFIG: &str = "[[domain]]\nname = \"echo-a\"\nimage = \"echo\"\nmemory = 4\n";
const END: &str = "[[domain]]\nname = \"end\"\nimage = \"echo\"\nmemory = 4\n";
/// How long the three clients run at once (issue 15: "for 60 s").
const SECONDS: u64 = 60;
/// A line is typed into the attached console this often.
const TYPE_EVERY_S: u64 = 5;

fn mux(sock: &std::path::Path) -> std::path::PathBuf {
    let mut p = sock.as_os_str().to_owned();
    p.push(".mux");
    p.into()
}

/// The three clients for [`SECONDS`]; how many create/destroy rounds ran.
fn three_at_once(sock: &std::path::Path, log: &std::path::Path) -> usize {
    let mut console = Command::new(hvctl())
        .arg("--socket")
        .arg(sock)
        .args(["console", "echo-a"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("hvctl console: {e}"));
    let mut stdin = console.stdin.take().unwrap_or_else(|| panic!("no stdin"));
    stdin
        .write_all(b"first\n")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        wait_for_line(log, "[echo-a] echo: first", scaled(30)).is_some(),
        "the console is attached and takes input"
    );
    let timeout = scaled(60).as_secs().to_string();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(SECONDS);
    let s = sock.to_path_buf();
    let t = timeout.clone();
    let lister = std::thread::spawn(move || {
        let mut i = 0;
        while std::time::Instant::now() < until {
            let (code, out, err) = hvctl_cmd(&s, &["--timeout", &t, "list"]);
            assert_eq!(code, 0, "list {i}: {err}");
            assert!(out.contains("echo-a"), "list {i}: {out}");
            i += 1;
        }
        i
    });
    let s = sock.to_path_buf();
    let creator = std::thread::spawn(move || {
        let mut i = 0;
        while std::time::Instant::now() < until {
            let text = format!("[[domain]]\nname = \"c{i}\"\nimage = \"echo\"\nmemory = 4\n");
            let f = input_file(TEST, &format!("c{i}.toml"), &text);
            let f = f.to_str().unwrap_or("");
            let (code, _, err) = hvctl_cmd(&s, &["--timeout", &timeout, "create", f]);
            assert_eq!(code, 0, "create {i}: {err}");
            let name = format!("c{i}");
            let (code, _, err) = hvctl_cmd(&s, &["--timeout", &timeout, "destroy", &name]);
            assert_eq!(code, 0, "destroy {i}: {err}");
            i += 1;
        }
        i
    });
    // The console meanwhile: a line typed every few seconds.
    let mut typed = Vec::new();
    while std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_secs(TYPE_EVERY_S));
        let line = format!("typed {}", typed.len());
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .unwrap_or_else(|e| panic!("console input: {e}"));
        typed.push(line);
    }
    let listed = lister.join();
    let created = creator.join();
    // The console went on meanwhile: it still echoes, then ends with the guest.
    let _ = stdin.write_all(b"after all\nquit\n");
    drop(stdin);
    let mut out = String::new();
    let mut stdout = console.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let reader = std::thread::spawn(move || {
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let end = std::time::Instant::now() + scaled(30);
    let status = loop {
        if let Ok(Some(s)) = console.try_wait() {
            break Some(s);
        }
        if std::time::Instant::now() > end {
            let _ = console.kill();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let out = reader.join().unwrap_or_default();
    let (lists, rounds) = match (listed, created) {
        (Ok(l), Ok(c)) => (l, c),
        (Err(e), _) | (_, Err(e)) => std::panic::resume_unwind(e),
    };
    assert!(
        out.contains("echo: first\n") && out.contains("echo: after all\n"),
        "console printed {out:?}"
    );
    for line in &typed {
        assert!(
            out.contains(&format!("echo: {line}\n")),
            "the console did not echo `{line}` typed while the loops ran: {out:?}"
        );
    }
    assert!(status.is_some_and(|s| s.success()), "console: {status:?}");
    assert!(lists > 0 && rounds > 0, "{lists} lists, {rounds} rounds");
    eprintln!(
        "{TEST}: in {SECONDS} s: {lists} list, {rounds} create + {rounds} destroy, {} console lines typed and echoed: all answered",
        typed.len() + 2
    );
    rounds
}

fn killed_clients(sock: &std::path::Path) {
    let req = "{\"id\":1,\"op\":\"hello\",\"version\":1,\"client\":\"k\"}\n\
               {\"id\":2,\"op\":\"list\"}\n\
               {\"id\":3,\"op\":\"console_attach\",\"domain\":\"tick\"}\n";
    for k in 0..100 {
        let cut = k * req.len() / 99;
        let mut c = UnixStream::connect(mux(sock)).unwrap_or_else(|e| panic!("relay: {e}"));
        c.write_all(req.as_bytes().get(..cut).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    for _ in 0..5 {
        let mut child = Command::new(hvctl())
            .arg("--socket")
            .arg(sock)
            .arg("list")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = child.kill();
        let _ = child.wait();
    }
    let (code, out, err) = hvctl_cmd(sock, &["list"]);
    assert_eq!(code, 0, "list after the killed clients: {err}");
    assert!(
        // By words, not columns: after 60 s of create/destroy the ids
        // (and so the ID column) are 3 digits wide.
        out.lines().any(|l| {
            let w: Vec<&str> = l.split_whitespace().take(3).collect();
            w == ["1", "dom0", "running"]
        }),
        "{out}"
    );
}

#[test]
fn dom0_qemu_many() {
    let modules = vec![
        guest_module("dom0", "dom0", ""),
        guest_module("echo", "echo", ""),
        config_module(TEST, CONFIG),
    ];
    let (vm, sock, log) = mgmt_vm(TEST, &modules);
    let qemu = std::thread::spawn(move || {
        run_until(TEST, vm, BIOS_TIMEOUT_S * 3, Some(&["[end] echo: ready"]))
    });
    let session = std::panic::catch_unwind(|| {
        wait_for_line(&log, "[echo-a] echo: ready", scaled(90))
            .unwrap_or_else(|| panic!("{TEST}: the echo guest never became ready"));
        let rounds = three_at_once(&sock, &log);
        killed_clients(&sock);
        rounds
    });
    let end = input_file(TEST, "end.toml", END);
    let _ = hvctl_cmd(&sock, &["create", end.to_str().unwrap_or("")]);
    let o = qemu
        .join()
        .unwrap_or_else(|_| panic!("the QEMU thread panicked"));
    let _report = ReportOnPanic(&o);
    let rounds = session.unwrap_or_else(|e| std::panic::resume_unwind(e));
    assert_eq!(o.ended, xtask::runner::Ended::Stopped, "{TEST}");
    o.assert_domain("echo-a", "exited", 0);
    let ends = o.domain_ends();
    for i in 0..rounds {
        let name = format!("c{i}");
        let d = ends.iter().find(|d| d.name == name);
        assert_eq!(d.map(|d| d.result.as_str()), Some("destroyed"), "{name}");
    }
}

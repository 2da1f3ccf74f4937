//! dom0 answers ARP and ICMP echo (issue 14, "answers pings"). QEMU's user
//! network passes no ICMP from the host, so dom0's NIC is put on a
//! `-netdev socket` whose other end is this test: QEMU connects to a TCP
//! listener the test opened and carries each Ethernet frame with a 4-byte
//! big-endian length before it (QEMU 7.2 `net/socket.c`,
//! `net_socket_receive`). The test plays the peer 10.0.2.2 with
//! hand-built frames, checksums computed (RFC 1071); management stays on
//! the serial line.
//!
//! | test | machine | asserts |
//! |---|---|---|
//! | `netmgmt_qemu_ping` | q35, `intel-iommu`, `virtio-net-pci` on `-netdev socket,connect=`, dom0 with `[network] address = "10.0.2.15/24"` | dom0 says its NIC is woken by MSI-X; an ARP request for 10.0.2.15 gets a reply from dom0's MAC with the right addresses; three ICMP echo requests (different sequence numbers, 56- to 1000-byte payloads) each get an echo reply from 10.0.2.15 with the same identifier, sequence number and payload and valid IP and ICMP checksums; the serial line still answers `hvctl list` |

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use boot_tests::artifacts::guest_module;
use boot_tests::mgmt::{config_module, hvctl_cmd, input_file, mgmt_vm, wait_for_line};
use boot_tests::qemu::{BIOS_TIMEOUT_S, run_until};
use boot_tests::scaled;
use xtask::iso::Module;

use super::netmgmt::keygen;

const TEST: &str = "netmgmt_qemu_ping";
const PEER_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc];
const PEER_IP: [u8; 4] = [10, 0, 2, 2];
const DOM0_IP: [u8; 4] = [10, 0, 2, 15];
const END: &str =
    "[[domain]]\nname = \"end\"\nimage = \"hello\"\nmemory = 4\ncmdline = \"kestrel-test-end\"\n";

/// RFC 1071 Internet checksum of `data`.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ethernet(dst: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    // Ethernet's minimum frame (60 bytes without the FCS).
    f.resize(f.len().max(60), 0);
    f
}

/// Who has 10.0.2.15? Tell 10.0.2.2 (RFC 826).
fn arp_request() -> Vec<u8> {
    let mut a = vec![0, 1, 0x08, 0x00, 6, 4, 0, 1];
    a.extend_from_slice(&PEER_MAC);
    a.extend_from_slice(&PEER_IP);
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&DOM0_IP);
    ethernet([0xff; 6], 0x0806, &a)
}

/// An IPv4 packet carrying an ICMP echo request (RFC 791, RFC 792).
fn echo_request(dst_mac: [u8; 6], id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0];
    icmp.extend_from_slice(&id.to_be_bytes());
    icmp.extend_from_slice(&seq.to_be_bytes());
    icmp.extend_from_slice(payload);
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let total = u16::try_from(20 + icmp.len()).unwrap_or(u16::MAX);
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&seq.to_be_bytes()); // identification
    ip.extend_from_slice(&[0x40, 0, 64, 1, 0, 0]); // DF, TTL 64, ICMP
    ip.extend_from_slice(&PEER_IP);
    ip.extend_from_slice(&DOM0_IP);
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(&icmp);
    ethernet(dst_mac, 0x0800, &ip)
}

/// The peer's end of QEMU's socket netdev.
struct Wire(TcpStream);

impl Wire {
    fn send(&mut self, frame: &[u8]) {
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        self.0
            .write_all(&len.to_be_bytes())
            .and_then(|()| self.0.write_all(frame))
            .unwrap_or_else(|e| panic!("sending a frame to QEMU: {e}"));
    }

    /// The next frame `want` accepts, skipping others (dom0's own ARP
    /// requests, for one), within `timeout`.
    fn expect(&mut self, what: &str, timeout: Duration, want: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        let end = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = end.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {what} within {timeout:?}; frames seen: {seen:02x?}"
            );
            self.0
                .set_read_timeout(Some(left))
                .unwrap_or_else(|e| panic!("{e}"));
            let mut len = [0u8; 4];
            if let Err(e) = self.0.read_exact(&mut len) {
                panic!("no {what} within {timeout:?} ({e}); frames seen: {seen:02x?}");
            }
            let mut f = vec![0u8; u32::from_be_bytes(len) as usize];
            self.0
                .read_exact(&mut f)
                .unwrap_or_else(|e| panic!("a frame cut short: {e}"));
            if want(&f) {
                return f;
            }
            seen.push(f);
        }
    }
}

/// Waits for QEMU to connect to `l`.
fn accept(l: &TcpListener, timeout: Duration) -> TcpStream {
    l.set_nonblocking(true).unwrap_or_else(|e| panic!("{e}"));
    let end = Instant::now() + timeout;
    loop {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).unwrap_or_else(|e| panic!("{e}"));
                return s;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("QEMU never connected to the socket netdev: {e}"),
        }
    }
}

fn checks(wire: &mut Wire, log: &std::path::Path, sock: &std::path::Path) {
    let net = wait_for_line(log, "dom0: net: ", scaled(120))
        .unwrap_or_else(|| panic!("dom0 said nothing about the network"));
    assert!(
        net.contains("address 10.0.2.15/24") && net.contains("woken by MSI-X entry 0"),
        "{net}"
    );
    wait_for_line(log, "dom0: ready: ", scaled(60))
        .unwrap_or_else(|| panic!("dom0 never became ready"));

    wire.send(&arp_request());
    let reply = wire.expect("ARP reply", scaled(20), |f| {
        f.len() >= 42 && f[12..14] == [0x08, 0x06] && f[20..22] == [0, 2]
    });
    let dom0_mac: [u8; 6] = reply[22..28].try_into().unwrap_or_default();
    assert_eq!(&reply[0..6], &PEER_MAC, "ARP reply not sent to the peer");
    assert_eq!(
        &reply[6..12],
        &dom0_mac,
        "Ethernet source is not the sender"
    );
    assert_eq!(&reply[14..20], &[0, 1, 0x08, 0x00, 6, 4], "ARP header");
    assert_eq!(&reply[28..32], &DOM0_IP, "ARP reply's sender address");
    assert_eq!(&reply[32..38], &PEER_MAC, "ARP reply's target MAC");
    assert_eq!(&reply[38..42], &PEER_IP, "ARP reply's target address");

    for (seq, len) in [(1u16, 56usize), (2, 200), (3, 1000)] {
        let id = 0x4b53;
        let payload: Vec<u8> = (0..len).map(|i| (i * 7 + usize::from(seq)) as u8).collect();
        wire.send(&echo_request(dom0_mac, id, seq, &payload));
        let r = wire.expect(&format!("echo reply {seq}"), scaled(20), |f| {
            f.len() >= 42 && f[12..14] == [0x08, 0x00] && f[23] == 1 && f[34] == 0
        });
        assert_eq!(&r[0..6], &PEER_MAC, "echo reply not sent to the peer");
        assert_eq!(&r[6..12], &dom0_mac, "echo reply not from dom0's MAC");
        let ihl = usize::from(r[14] & 0xf) * 4;
        let ip = &r[14..];
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        assert!(ihl >= 20 && total <= ip.len(), "bad IPv4 header {ip:02x?}");
        assert_eq!(checksum(&ip[..ihl]), 0, "IPv4 header checksum");
        assert_eq!(&ip[12..16], &DOM0_IP, "echo reply's source address");
        assert_eq!(&ip[16..20], &PEER_IP, "echo reply's destination address");
        let icmp = &ip[ihl..total];
        assert_eq!(checksum(icmp), 0, "ICMP checksum");
        assert_eq!(icmp[0..2], [0, 0], "not an echo reply");
        assert_eq!(u16::from_be_bytes([icmp[4], icmp[5]]), id, "identifier");
        assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), seq, "sequence");
        assert_eq!(&icmp[8..], &payload[..], "payload of echo {seq}");
    }

    let (code, out, err) = hvctl_cmd(sock, &["list"]);
    assert_eq!(code, 0, "list on the serial line: {out}{err}");
    assert!(out.contains("dom0"), "{out}");
}

#[test]
fn netmgmt_qemu_ping() {
    let keys = boot_tests::artifacts::test_dir(&format!("{TEST}.keys"));
    let key = keygen(&keys, "ops.key");
    let modules = vec![
        guest_module("dom0", "dom0", ""),
        guest_module("hello", "hello", ""),
        config_module(
            TEST,
            "[network]\naddress = \"10.0.2.15/24\"\nkey_files = [\"ops.key\"]\n",
        ),
        Module::named(&key, "ops.key", "").unwrap_or_else(|e| panic!("{e}")),
    ];
    let (mut vm, sock, log) = mgmt_vm(TEST, &modules);
    let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("listen: {e}"));
    let port = l.local_addr().map(|a| a.port()).unwrap_or(0);
    vm.extra.extend(
        [
            "-device".to_string(),
            "intel-iommu".into(),
            "-netdev".into(),
            format!("socket,id=p,connect=127.0.0.1:{port}"),
            "-device".into(),
            "virtio-net-pci,netdev=p,addr=0x4,disable-legacy=on,iommu_platform=on".into(),
        ]
        .map(Into::into),
    );
    let qemu = std::thread::spawn(move || {
        run_until(
            TEST,
            vm,
            BIOS_TIMEOUT_S,
            Some(&["[end] hello from", "kestrel-test-end"]),
        )
    });
    let result = std::panic::catch_unwind(|| {
        let mut wire = Wire(accept(&l, scaled(60)));
        checks(&mut wire, &log, &sock);
        wire
    });
    if result.is_ok() {
        let end = input_file(TEST, "end.toml", END);
        let _ = hvctl_cmd(&sock, &["create", end.to_str().unwrap_or("")]);
    }
    let o = qemu
        .join()
        .unwrap_or_else(|_| panic!("{TEST}: qemu thread"));
    match result {
        Err(e) => {
            eprintln!("{}", o.report());
            std::panic::resume_unwind(e);
        }
        Ok(wire) => drop(wire),
    }
    assert!(
        o.fatal_lines().is_empty() && o.panic_lines().is_empty(),
        "{TEST}: died:\n{}",
        o.report()
    );
}

//! Kestrel's control domain (dom0): boot module 0 under the hypervisor's
//! `dom0` option.
//!
//! 1. Lists the boot modules and reads the boot configuration: the data
//!    module named by `config=<name>` on dom0's command line, else the
//!    first data module whose name ends in `.toml`.
//! 2. Checks it whole (`kestrel_toolstack::config`, against the real
//!    module names and the hypervisor's limits). Any error: every error is
//!    printed as `file:line:col: domain: field: message` and no domain is
//!    created. Otherwise every domain is built in file order and the
//!    `autostart` ones are started; if one cannot be built, those built
//!    before it are destroyed again and the failure is printed.
//! 3. Serves, forever: other domains' consoles are printed as
//!    `[<name>] <text>`, and the management protocol is answered on the
//!    second serial line (`HC_MGMT_*`). While nothing happens dom0 blocks
//!    until a virq says something did (`wake.rs`), or, where the
//!    hypervisor has no interrupt for the line, polls every few ms.
#![no_std]
#![no_main]
// Unsafe code only in the device drivers (`dev/`), allowed file by file.
#![deny(unsafe_code)]

extern crate alloc;

mod bench;
mod consoles;
mod dev;
mod hv;
mod images;
mod images_store;
mod memlog;
mod msi;
mod net;
mod pci;
mod persist;
mod service;
mod store;
mod wake;

use alloc::format;
use alloc::string::String;

use kestrel_toolstack::config::{self, Images, Limits};
use kestrel_toolstack::server::create_all;
use pvabi::guest::{mgmt, time};

use hv::Hv;

pvabi::entry_point!(main);
/// dom0's heap: its own work and the images sent to it (`images.rs`).
pub const HEAP_BYTES: usize = 4 << 20;
pvabi::guest_heap!(HEAP, HEAP_BYTES);

/// Largest configuration file dom0 reads.
const CONFIG_MAX: u64 = 64 * 1024;

/// Prints one line of dom0's own on the serial console, and keeps it for
/// `hvctl log`.
pub fn say(line: &str) {
    let _ = mgmt::host_console_write(format!("dom0: {line}\n").as_bytes());
    memlog::log(line);
}

fn arg<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// What [`boot`] read and built: the file's `[network]` and `[store]`
/// tables (there even when no domain was created) and the domains.
#[derive(Default)]
struct Boot {
    network: Option<config::network::NetworkConfig>,
    store: Option<config::store::StoreConfig>,
    booted: Option<Booted>,
}

/// The domains [`boot`] built: the file, its domains and their ids, and
/// when (their uptimes count from there).
struct Booted {
    file: String,
    cfg: config::BootConfig,
    ids: alloc::vec::Vec<u32>,
    created_ns: u64,
}

/// Reads the boot configuration and builds its domains (step 1 and 2
/// above).
fn boot(hv: &mut Hv, cmdline: &str) -> Boot {
    let wanted = arg(cmdline, "config");
    let Some(m) = hv.modules.iter().find(|m| {
        !m.elf
            && match wanted {
                Some(name) => m.name == name,
                None => m.name.ends_with(".toml"),
            }
    }) else {
        match wanted {
            Some(name) => say(&format!("no data module \"{name}\": no domain created")),
            None => say("no boot configuration (no .toml module): no domain created"),
        }
        return Boot::default();
    };
    let file = m.name.clone();
    let Some(text) = hv
        .read_module(m, CONFIG_MAX)
        .and_then(|b| String::from_utf8(b).ok())
    else {
        say(&format!(
            "{file}: not UTF-8 text of at most {CONFIG_MAX} bytes: no domain created"
        ));
        return Boot::default();
    };
    let images = kestrel_toolstack::server::Hypervisor::images(hv);
    let names: alloc::vec::Vec<&str> = images.iter().map(String::as_str).collect();
    let cfg = match config::parse(&file, &text, &Limits::default(), Images::Only(&names)) {
        Ok(c) => c,
        Err(errors) => {
            for e in errors.errors() {
                say(&format!("{e}"));
            }
            say(&format!(
                "{file}: {} error(s): no domain created",
                errors.errors().len()
            ));
            return Boot::default();
        }
    };
    let mut out = Boot {
        network: cfg.network.clone(),
        store: cfg.store.clone(),
        booted: None,
    };
    if cfg.domains.is_empty() {
        say(&format!("{file}: no [[domain]] in it: no domain created"));
        return out;
    }
    let created_ns = time::now_ns();
    match create_all(hv, &file, &cfg) {
        Ok(ids) => {
            for (d, id) in cfg.domains.iter().zip(&ids) {
                let how = if d.autostart {
                    "started"
                } else {
                    "created paused"
                };
                say(&format!("domain {id} ({}) {how} from {file}", d.name));
            }
            out.booted = Some(Booted {
                file,
                cfg,
                ids,
                created_ns,
            });
        }
        Err(f) => say(&format!("{f}")),
    }
    out
}

fn main(si: &pvabi::StartInfo) -> i32 {
    let cmdline = core::str::from_utf8(si.cmdline()).unwrap_or("");
    let mut hv = match Hv::new() {
        Ok(mut hv) => {
            hv.abi = si.abi_version;
            hv
        }
        Err(e) => {
            pvabi::println!("dom0: not the control domain ({e}): stopping");
            return 1;
        }
    };
    say(&format!(
        "kestrel-dom0 {}, domain {}, {} boot modules",
        env!("CARGO_PKG_VERSION"),
        si.domain_id,
        hv.modules.len() + 1
    ));
    // From here on the hypervisor keeps every other domain's console
    // output for dom0 (before the first domain exists, so none is missed).
    let _ = mgmt::console_read(si.domain_id, &mut []);
    pci::show();
    // Disks (dev/disks.rs); `diskcheck=<first-lba>+<blocks>` runs the
    // self-check on each. `disk=poll` (or `wake=poll`): completions
    // polled, the fallback, to measure it.
    let disk_poll = match (arg(cmdline, "disk"), arg(cmdline, "wake")) {
        (Some("poll"), _) => Some("disk=poll"),
        (_, Some("poll")) => Some("wake=poll"),
        _ => None,
    };
    let mut disks = dev::disks::open_all(&pci::devices(), disk_poll);
    if let Some(a) = arg(cmdline, "diskcheck") {
        match dev::disks::parse_check(a) {
            Some((first, blocks)) => dev::disks::check_all(&mut disks, first, blocks),
            None => say(&format!(
                "diskcheck={a}: not <first-lba>+<blocks> with blocks > 0: no check"
            )),
        }
    }
    // `diskbench=<MiB>+<ops>`: time the disks, then end (dev/diskbench.rs).
    if let Some(a) = arg(cmdline, "diskbench") {
        match dev::diskbench::parse(a) {
            Some((mib, ops)) => dev::diskbench::run_all(&mut disks, mib, ops),
            None => say(&format!("diskbench={a}: not <MiB>+<ops> above 0: no bench")),
        }
        return 0;
    }
    // `edu-msi=N`: the edu device interrupts N times through its MSI.
    if let Some(n) = arg(cmdline, "edu-msi").and_then(|n| n.parse().ok()) {
        for d in pci::devices().iter().filter(|d| pci::kind(d) == "edu") {
            msi::edu(d, n);
        }
    }
    // `dma-canary=<GPA>`: a page checked after each domain's end
    // (dev/canary.rs), laid before any domain exists.
    if let Some(a) = arg(cmdline, "dma-canary") {
        let free = kestrel_toolstack::server::Hypervisor::free_bytes(&mut hv);
        dev::canary::lay(a, free);
    }
    let Boot {
        network,
        store: store_cfg,
        booted,
    } = boot(&mut hv, cmdline);
    // The image store on the disk `[store]` names (store.rs).
    if let Some(c) = &store_cfg {
        hv.store = store::start(c, &mut disks, &hv.modules);
    }
    // dom0's log and the consoles kept in the store (persist.rs).
    match (&store_cfg, hv.store.as_mut()) {
        (Some(c), Some(s)) => persist::attach(s, &c.logs),
        _ => persist::off(),
    }
    // `history=N`: how many ended domains stay listed.
    let history = arg(cmdline, "history")
        .and_then(|n| n.parse().ok())
        .unwrap_or(kestrel_toolstack::server::DEFAULT_HISTORY);
    let mut svc = service::Service::new(si.domain_id, history);
    // `xfer_idle=<seconds>`: an upload or import with no request for that
    // long is dropped, its space freed (kestrel_toolstack server/transfers.rs).
    if let Some(s) = arg(cmdline, "xfer_idle").and_then(|n| n.parse::<u64>().ok()) {
        svc.set_transfer_idle(s.saturating_mul(1_000_000_000));
    }
    // Generated UUIDs: RDRAND where the CPU has it, else the TSC (whose
    // value at this point differs from boot to boot on real hardware,
    // not under QEMU's -icount).
    svc.seed_uuids(pvabi::guest::random::rdrand64().unwrap_or_else(time::read_tsc));
    for (id, name) in core::mem::take(&mut hv.created) {
        svc.consoles.follow(id, &name);
    }
    // The network management service, if the configuration has one.
    // `net=poll`: the NIC alone polled (its fallback), to measure it.
    let poll = arg(cmdline, "wake") == Some("poll");
    let net_poll = match arg(cmdline, "net") {
        Some("poll") => Some("net=poll"),
        _ if poll => Some("wake=poll"),
        _ => None,
    };
    svc.net = network.as_ref().and_then(|n| net::start(&hv, n, net_poll));
    // `sink=<port>`: a discard port and byte meters (net/sink.rs).
    if let (Some(n), Some(p)) = (svc.net.as_mut(), arg(cmdline, "sink")) {
        n.open_sink(p, si.domain_id);
    }
    // Uptimes count from when dom0 created them, not from now: a domain
    // may already have run and ended (issue 15's dom0_ended race).
    if let Some(b) = booted {
        for (id, d) in b.ids.iter().zip(&b.cfg.domains) {
            svc.adopt(&mut hv, *id, &b.file, d, b.created_ns);
        }
    }
    let mgmt_line = mgmt::read(&mut []).is_ok();
    say(&format!(
        "ready: {} domains, free_bytes={}, management {}",
        kestrel_toolstack::server::Hypervisor::list(&mut hv).map_or(0, |l| l.len()),
        hv.free_bytes(),
        if mgmt_line { "on COM2" } else { "line absent" }
    ));
    // `wake=poll`: poll every few ms as before the interrupt path (to
    // measure the difference, or where COM2's interrupt misbehaves).
    let (wake, why) = if poll {
        (wake::Wake::polling(), Some("wake=poll on the command line"))
    } else {
        wake::Wake::bind(mgmt_line)
    };
    match why {
        Some(why) => say(&format!(
            "polling every {} ms: {why}",
            wake::POLL_NS / 1_000_000
        )),
        None => say("idle until an event: management line interrupt, console output, domain end"),
    }
    // A pass that found work is made again at once (the line is read
    // until it is empty, rings until drained), with the same sources.
    let mut woken = wake::Woken::ALL;
    let bench = arg(cmdline, "bench");
    if bench.is_some() {
        bench::stats(si.domain_id);
    }
    loop {
        let busy = svc.poll(&mut hv, mgmt_line, woken);
        if let Some(s) = hv.store.as_mut() {
            persist::sync(s);
        }
        if !busy {
            let next = svc.next_deadline().into_iter().chain(persist::deadline());
            woken = wake.wait(next.min());
        }
        // Taken every pass (kept only for `bench=`).
        let ended = core::mem::take(&mut svc.ended);
        if let Some(wanted) = bench {
            for name in ended {
                if bench::ended(&mut hv, si.domain_id, wanted, &name) {
                    return 0;
                }
            }
        }
    }
}

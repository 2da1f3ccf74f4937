//! dom0's image store on its disk (issue 14; docs/store.md,
//! `dom0/src/store.rs`, crate `dom0/store`): a power cut in the middle of
//! an import loses that import and nothing else.
//!
//! One disk file (virtio-blk behind `intel-iommu`, serial `kestrel-store0`)
//! across three boots of QEMU (q35, TCG, AMD-V):
//!
//! | boot | dom0's `[store]` | what happens | asserts |
//! |---|---|---|---|
//! | 1 | `format = true`, `import = ["small.bin"]` | dom0 formats the blank disk and imports the module; the real `hvctl volume create vol1 1M` | `hvctl image list` shows small.bin as the store's one image (source `store`) with the SHA-256 the host computes; `hvctl volume list` shows vol1 |
//! | 2 | `import = ["small.bin", "big.bin"]` (24 MiB) | QEMU is killed (SIGKILL) at dom0's first `importing big.bin` progress line | small.bin is found already there; big.bin never finished, but its first block is in the disk file |
//! | 3 | `import = ["small.bin"]` | the store opens | the same generation, objects and free space as boot 2 opened with; `hvctl image list` shows small.bin as the store's one image with the same SHA-256; vol1 is there |
//!
//! Bochs (VT-x) has no IOMMU, so dom0 gets no disk there (as
//! tests/tests/boot/disks.rs): `store_bochs_no_disk` checks that dom0 with
//! a `[store]` table names the disk it did not find and runs on.

use std::path::{Path, PathBuf};

use boot_tests::artifacts::{self, guest_module, sha256_hex as sha256};
use boot_tests::domains::ReportOnPanic;
use boot_tests::mgmt::config_module;
use boot_tests::qemu::{BIOS_TIMEOUT_S, run_until};
use boot_tests::store_vm::{hvctl_ok, store_boot, store_images, store_vm};
use xtask::iso::Module;

const TEST: &str = "store_qemu_power_cut";

fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn file(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    p
}

fn module(path: &Path, name: &str) -> Module {
    Module::named(path, name, "").unwrap_or_else(|e| panic!("{e}"))
}

fn store_table(format: bool, import: &[&str]) -> String {
    let list: Vec<String> = import.iter().map(|m| format!("\"{m}\"")).collect();
    format!(
        "[store]\ndisk = \"kestrel-store0\"\nformat = {format}\nimport = [{}]\n",
        list.join(", ")
    )
}

/// Boot `n` on `disk` with `config` and `extra` modules
/// ([`store_boot`]); `session` gets the management socket.
fn boot_with_session(
    n: u32,
    disk: &Path,
    config: &str,
    extra: &[Module],
    session: impl FnOnce(&Path) + std::panic::UnwindSafe,
) -> boot_tests::Outcome {
    let test = format!("{TEST}_{n}");
    let vm = store_vm(&test, disk, config, extra);
    store_boot(
        &test,
        vm,
        BIOS_TIMEOUT_S,
        &format!("boot {n}"),
        |sock, _| session(sock),
    )
}

/// dom0's `store: <disk>: generation ...` line (what it opened).
fn opened(o: &boot_tests::Outcome) -> String {
    let l = o
        .line("dom0: store: 0000:00:03.0 virtio-blk: generation ")
        .unwrap_or_else(|| panic!("{}: the store was not opened", o.test));
    l.to_string()
}

#[test]
fn store_qemu_power_cut() {
    let dir = artifacts::test_dir(&format!("{TEST}.files"));
    let disk = file(&dir, "store.img", &vec![0u8; 64 << 20]);
    let small = bytes(1, 65_536 + 123);
    let big = bytes(2, 24 << 20);
    let small_sha = sha256(&small);
    let small_m = module(&file(&dir, "small.bin", &small), "small.bin");
    let big_m = module(&file(&dir, "big.bin", &big), "big.bin");
    // What `hvctl image list` shows of the store (boot modules are listed
    // beside it, with source `module`).
    let listed = vec![(
        "small.bin".to_string(),
        small.len() as u64,
        small_sha.clone(),
    )];
    let volumes = format!(
        "{:<4}  {:>10}\n{:<4}  {:>10}\n",
        "NAME", "SIZE", "vol1", "1 MiB"
    );

    // Boot 1: format, import small.bin, create a volume.
    let (want, vols) = (listed.clone(), volumes.clone());
    let o1 = boot_with_session(
        1,
        &disk,
        &store_table(true, &["small.bin"]),
        std::slice::from_ref(&small_m),
        move |sock| {
            assert_eq!(store_images(sock), want);
            assert_eq!(
                hvctl_ok(sock, &["volume", "create", "vol1", "1M"]),
                "created volume vol1 (1 MiB)\n"
            );
            assert_eq!(hvctl_ok(sock, &["volume", "list"]), vols);
        },
    );
    {
        let _r = ReportOnPanic(&o1);
        assert!(
            o1.line("dom0: store: 0000:00:03.0 virtio-blk: formatting (it held no store, blank)")
                .is_some()
        );
        assert!(
            o1.line(&format!(
                "dom0: store: imported image small.bin (65659 bytes, sha256 {small_sha})"
            ))
            .is_some()
        );
    }

    // Boot 2: killed in the middle of importing big.bin.
    let test2 = format!("{TEST}_2");
    let (vm, _sock, _log) = store_vm(
        &test2,
        &disk,
        &store_table(false, &["small.bin", "big.bin"]),
        &[small_m.clone(), big_m],
    );
    let o2 = run_until(
        &test2,
        vm,
        BIOS_TIMEOUT_S,
        Some(&["dom0: store: importing big.bin: "]),
    );
    let opened2 = {
        let _r = ReportOnPanic(&o2);
        assert_eq!(
            o2.ended,
            xtask::runner::Ended::Stopped,
            "boot 2 never reached the import"
        );
        assert!(o2.line(&format!("dom0: store: image small.bin already in the store (65659 bytes, sha256 {small_sha})")).is_some());
        assert!(
            o2.line("dom0: store: imported image big.bin").is_none(),
            "boot 2: the import finished before the kill: the test cut nothing"
        );
        let l = opened(&o2);
        assert!(l.contains(", 1 images, 1 volumes, "), "{l}");
        // The cut came after some of big.bin reached the disk: its first
        // block is there, in blocks no committed root owns.
        let on_disk = std::fs::read(&disk).unwrap_or_else(|e| panic!("{}: {e}", disk.display()));
        assert!(
            on_disk.chunks_exact(4096).any(|b| b == &big[..4096]),
            "boot 2: none of big.bin reached the disk before the kill"
        );
        l
    };

    // Boot 3: the store opens as boot 2 found it; big.bin is gone.
    let (want, vols) = (listed, volumes);
    let o3 = boot_with_session(
        3,
        &disk,
        &store_table(false, &["small.bin"]),
        std::slice::from_ref(&small_m),
        move |sock| {
            assert_eq!(store_images(sock), want);
            assert_eq!(hvctl_ok(sock, &["volume", "list"]), vols);
        },
    );
    let _r = ReportOnPanic(&o3);
    assert_eq!(
        opened(&o3),
        opened2,
        "boot 3 opened another state than boot 2 had before the cut"
    );
    assert!(o3.line("store: import").is_none());
}

/// VT-x (Bochs) has no IOMMU, so dom0 gets no disk: with a `[store]`
/// table it names the disk it did not find, says it runs without a store,
/// and builds its domains as usual.
#[test]
fn store_bochs_no_disk() {
    use boot_tests::Backend;
    use boot_tests::artifacts::shared_iso;
    use boot_tests::bochs::{self, Pc};
    const T: &str = "store_bochs_no_disk";
    let config = format!(
        "{}\n[[domain]]\nname = \"hello-a\"\nimage = \"hello\"\nmemory = 4\n",
        store_table(true, &["hello"])
    );
    let modules = vec![
        guest_module("dom0", "dom0", ""),
        guest_module("hello", "hello", ""),
        config_module(T, &config),
    ];
    let iso = shared_iso(
        &format!("{T}.iso"),
        &format!("{} dom0 loglevel=info", Backend::Vmx.exit()),
        &modules,
    );
    let o = bochs::run_iso(
        T,
        &Pc::new("corei7_haswell_4770", 2, 128),
        &iso,
        Some(&["dom0: ready: "]),
        bochs::TIMEOUT_S,
    );
    let _r = ReportOnPanic(&o);
    assert_eq!(
        o.ended,
        xtask::runner::Ended::Stopped,
        "{T}: dom0 never became ready"
    );
    assert!(
        o.fatal_lines().is_empty() && o.panic_lines().is_empty(),
        "{T}: died"
    );
    assert!(
        o.line("dom0: store: no disk \"kestrel-store0\" (dom0's disks: none): no store")
            .is_some(),
        "{T}: no line naming the missing store disk"
    );
    assert!(
        o.line("dom0: domain 2 (hello-a) started").is_some(),
        "{T}: hello-a not started"
    );
    assert!(o.line("store: import").is_none() && o.line("formatting").is_none());
}

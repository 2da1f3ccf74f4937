//! An unprivileged domain that owns no PCI device calls the PCI hypercalls
//! (2.1, 51-53) on a device that exists but is not its own (QEMU's
//! `edu` at 0000:00:06.0), on one that does not exist, and with bad
//! arguments: each must fail with the documented error, in the documented
//! order. With `touch-bar`, it then maps the edu's BAR0 into its own page
//! tables and reads it: the hypervisor never mapped that into its nested
//! tables, so the domain must be killed for touching memory outside its
//! own (tests/tests/boot/pci.rs).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use kestrel_guests::Checks;
use pvabi::guest::{mmio, pci};
use pvabi::{
    E2BIG, EFAULT, EINVAL, ENOENT, EPERM, HC_PCI_CONFIG_READ, HC_PCI_CONFIG_WRITE, HC_PCI_LIST,
    PciDevice, sbdf,
};

pvabi::entry_point!(main);

static CHECKS: Checks = Checks::new("pcihostile");

fn code<T>(r: Result<T, pvabi::Error>) -> i64 {
    r.map_or_else(|e| e.code(), |_| 0)
}

/// QEMU `-device edu,addr=0x6`, and its BAR0 as SeaBIOS places it.
const EDU: u32 = sbdf(0, 0, 6, 0);

fn main(si: &pvabi::StartInfo) -> i32 {
    let mut list = [PciDevice::default(); 4];
    CHECKS.check(
        "list: owns nothing",
        code(pci::list(&mut list, 0).map(|n| n as u64)),
        0,
    );
    CHECKS.check(
        "read of another's device",
        code(pci::config_read(EDU, 0, 4)),
        EPERM,
    );
    CHECKS.check(
        "command write",
        code(pci::config_write(EDU, 4, 2, 0)),
        EPERM,
    );
    CHECKS.check("BAR write", code(pci::config_write(EDU, 0x10, 4, 0)), EPERM);
    CHECKS.check(
        "no such function",
        code(pci::config_read(sbdf(0, 0, 0x1e, 0), 0, 4)),
        ENOENT,
    );
    // Arguments are checked before the device.
    for (what, off, size) in [
        ("offset 4096", 4096u64, 4u64),
        ("offset 4095 size 2", 4095, 2),
        ("unaligned", 2, 4),
        ("size 3", 0, 3),
        ("size 0", 0, 0),
        ("size 8", 0, 8),
        ("huge offset", u64::MAX, 1),
    ] {
        CHECKS.check(
            what,
            code(pci::raw(
                HC_PCI_CONFIG_READ,
                [EDU.into(), off, size, 0, 0, 0],
            )),
            EINVAL,
        );
    }
    CHECKS.check(
        "sbdf above 32 bits",
        code(pci::raw(HC_PCI_CONFIG_READ, [1 << 32, 0, 4, 0, 0, 0])),
        EINVAL,
    );
    CHECKS.check(
        "value wider than size",
        code(pci::raw(
            HC_PCI_CONFIG_WRITE,
            [EDU.into(), 4, 2, 0x1_0000, 0, 0],
        )),
        EINVAL,
    );
    CHECKS.check(
        "list too long",
        code(pci::raw(
            HC_PCI_LIST,
            [list.as_ptr() as u64, 33, 0, 0, 0, 0],
        )),
        E2BIG,
    );
    CHECKS.check(
        "list outside memory",
        code(pci::raw(HC_PCI_LIST, [si.memory_bytes, 1, 0, 0, 0, 0])),
        EFAULT,
    );
    let (n, failed) = CHECKS.counts();
    pvabi::println!("pcihostile: {n} checks, {failed} failed");
    if failed != 0 {
        return 1;
    }
    if si.cmdline() == b"touch-bar" {
        // The BAR is outside this domain's memory: mapping it in the
        // guest's own tables is allowed, touching it is not.
        match mmio::map(0xfea0_0000, 4096) {
            Ok(m) => {
                pvabi::println!("pcihostile: reading another's BAR");
                let v = m.read32(0);
                pvabi::println!("pcihostile: read {v:?}: NOT KILLED");
                return 2;
            }
            Err(e) => {
                pvabi::println!("pcihostile: map failed: {e}");
                return 3;
            }
        }
    }
    0
}

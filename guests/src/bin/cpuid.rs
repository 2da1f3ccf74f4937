//! Checks what CPUID tells a guest: the hypervisor's signature and ABI
//! version, the hypervisor bit, and no VT-x or AMD-V (a guest may not nest).
#![no_std]
#![no_main]

use core::arch::x86_64::__cpuid;

pvabi::entry_point!(main);

fn main(_: &pvabi::StartInfo) -> i32 {
    let mut bad = 0;
    let sig = __cpuid(0x4000_0000);
    let mut name = [0u8; 12];
    for (i, r) in [sig.ebx, sig.ecx, sig.edx].iter().enumerate() {
        name[i * 4..i * 4 + 4].copy_from_slice(&r.to_le_bytes());
    }
    let name = core::str::from_utf8(&name).unwrap_or("?");
    pvabi::println!("signature \"{name}\", max leaf {:#x}", sig.eax);
    if name != "KestrelHyper" || sig.eax < 0x4000_0001 {
        bad += 1;
    }
    let abi = __cpuid(0x4000_0001);
    if abi.eax != pvabi::PVABI_VERSION {
        pvabi::println!(
            "ABI version {:#x}, expected {:#x}",
            abi.eax,
            pvabi::PVABI_VERSION
        );
        bad += 1;
    }
    let l1 = __cpuid(1);
    if l1.ecx & (1 << 31) == 0 || l1.ecx & (1 << 5) != 0 {
        pvabi::println!(
            "leaf 1 ECX {:#x}: hypervisor bit clear or VMX visible",
            l1.ecx
        );
        bad += 1;
    }
    if __cpuid(0x8000_0000).eax >= 0x8000_0001 && __cpuid(0x8000_0001).ecx & (1 << 2) != 0 {
        pvabi::println!("SVM visible");
        bad += 1;
    }
    pvabi::println!("cpuid checks: {bad} failed");
    bad
}

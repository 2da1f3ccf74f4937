//! The boot CPU's path from the 64-bit entry to "ready": boot information,
//! command line, console, memory, the hypervisor's own page tables, heap,
//! exception stacks, ACPI, local APICs and every application processor.

use core::sync::atomic::Ordering;

use arrayvec::ArrayVec;
use x86_64::registers::control::Cr3;

use crate::arch::bootcpu::{self, FramesError, StacksError};
use crate::arch::cpu::{CpuInfo, VirtFeatures};
use crate::arch::physmem::IdentityMem;
use crate::arch::{acpi, exit, heap, idt, lapic, modules, paging, percpu, pit, serial, smp};
use crate::boot::cmdline::{Options, SelfTest};
use crate::boot::info::MAX_MEMORY_REGIONS;
use crate::boot::{BootInfo, BootProtocol, MemoryRegion, multiboot2, pvh};
use crate::domain::lifecycle::{DomainSpec, all_created, create};
use crate::mm::memmap;
use crate::mm::size::Size;
use crate::run::run_cpu;
use crate::sched::clock::init_time;
use crate::sched::live::init as init_scheduler;
use crate::virt::select::{backend, init_virt, init_virt_this_cpu};

/// Less usable RAM than this and the hypervisor refuses to start: its own
/// structures plus a useful control domain do not fit.
pub const MIN_USABLE_RAM: u64 = 24 << 20;
/// Local APIC timer rate.
const TIMER_HZ: u32 = 100;
/// Timer interrupts every CPU must have taken before "ready" (one proves
/// its APIC timer and interrupt path work).
const READY_TICKS: u64 = 1;
use crate::arch::frames::{self, FOUR_GIB};

/// CPUs that came online (set once at boot).
pub use crate::arch::platform::ONLINE_CPUS;
/// Usable RAM in bytes (set once at boot).
pub use crate::arch::platform::RAM_BYTES;

macro_rules! fatal {
    ($($arg:tt)*) => { exit::fatal(format_args!($($arg)*)) };
}

/// The 64-bit entry of the boot CPU (called from the trampoline in
/// `arch::entry`) with the loader's magic and information pointer.
// The link name is the contract with `arch/entry.rs`, which calls it by
// that name and imports nothing from this layer; exporting an unmangled
// symbol is what the `unsafe_code` lint flags, and the one such item here.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "C" fn kestrel_main(magic: u32, info: u64) -> ! {
    // Per-CPU data and an IDT first, so any fault from here on is reported
    // instead of triple-faulting.
    percpu::init_this_cpu(0, 0);
    bootcpu::early_tables();
    serial::init(Some(serial::COM1));

    // The boot information (about 70 KiB, `boot/info.rs`) is parsed in
    // place in a static, not on the 128 KiB boot stack. kestrel_main runs
    // once, so the lock is free; leaking it keeps it for good. Multiboot2
    // (discriminant 0) keeps the initial value all zeros, so the static
    // lands in .bss, not in the image file; `parse_into` sets the protocol.
    static BOOT_INFO: spin::Mutex<BootInfo> =
        spin::Mutex::new(BootInfo::new(BootProtocol::Multiboot2));
    let boot: &'static mut BootInfo = spin::MutexGuard::leak(BOOT_INFO.lock());
    let parsed = match magic {
        multiboot2::BOOTLOADER_MAGIC => multiboot2::parse_into(&IdentityMem, info, boot),
        pvh::START_MAGIC => pvh::parse_into(&IdentityMem, info, boot),
        other => fatal!(
            "unknown boot protocol (magic {other:#x}): boot Kestrel with GRUB (multiboot2) or as a PVH kernel"
        ),
    };
    if let Err(e) = parsed {
        // The command line is read before what can go wrong (modules,
        // memory map): its `exit=` still ends a test run (QEMU, Bochs)
        // instead of leaving it halted until its deadline.
        exit::set_method(Options::parse(&boot.cmdline).0.exit);
        fatal!("boot information rejected: {e}");
    }

    let (opts, cmdline_error) = Options::parse(&boot.cmdline);
    exit::set_method(opts.exit);
    if opts.console.io_port() != Some(serial::COM1) {
        serial::init(opts.console.io_port());
    }
    serial::init_logger(opts.log_level);
    if let Some(e) = cmdline_error {
        fatal!("{e}");
    }
    boot_cpu(boot, &opts)
}

fn banner(boot: &BootInfo, cpu: &CpuInfo) {
    crate::println!(
        "Kestrel {} booting via {} (loader \"{}\", cmdline \"{}\")",
        crate::VERSION,
        boot.protocol.name(),
        boot.loader_name,
        boot.cmdline
    );
    log::info!(
        "cpu: {} family {:#x} model {:#x} stepping {} \"{}\"{}",
        cpu.vendor_string,
        cpu.family,
        cpu.model,
        cpu.stepping,
        cpu.brand,
        if cpu.x2apic { ", x2APIC" } else { "" }
    );
    log::info!("virt: {}", cpu.virt);
}

/// The boot's wall-clock base, from the CMOS RTC (`boot::rtc`): what
/// domains read as `TimeInfo::wall_clock_base_ns`.
fn set_wall_clock_from_rtc() {
    match crate::arch::rtc::read() {
        None => log::warn!("wall clock unknown: the CMOS RTC never settled"),
        Some(regs) => match regs.decode() {
            Some(t) => {
                let s = t.to_unix_s().unwrap_or(0);
                crate::sched::clock::set_wall_clock(s.saturating_mul(1_000_000_000));
                log::info!("wall clock: {t} (CMOS RTC, taken as UTC)");
            }
            None => log::warn!("wall clock unknown: the CMOS RTC holds no valid date: {regs:?}"),
        },
    }
}

fn boot_cpu(boot: &BootInfo, opts: &Options) -> ! {
    let cpu = CpuInfo::read();
    banner(boot, &cpu);
    match cpu.virt {
        VirtFeatures::None => {
            log::warn!("no hardware virtualization: the hypervisor runs, but cannot start guests")
        }
        VirtFeatures::Vmx {
            locked_off: true, ..
        }
        | VirtFeatures::Svm {
            locked_off: true, ..
        } => {
            log::warn!(
                "hardware virtualization is disabled by firmware: guests cannot start until it is enabled"
            )
        }
        _ => {}
    }

    // --- Memory ---------------------------------------------------------
    let mut map: ArrayVec<MemoryRegion, MAX_MEMORY_REGIONS> = ArrayVec::new();
    if let Err(e) = memmap::normalize(&boot.memory, &mut map) {
        fatal!("memory map rejected: {e:?}");
    }
    let ram = memmap::ram_bytes(&map);
    RAM_BYTES.store(ram, Ordering::Relaxed);
    let usable = memmap::usable_bytes(&map);
    for r in &map {
        log::debug!("mem: {:#014x}-{:#014x} {:?}", r.start, r.end, r.kind);
    }
    if usable < MIN_USABLE_RAM {
        fatal!(
            "not enough memory: {} of usable RAM ({} in all), Kestrel needs at least {}",
            Size(usable),
            Size(ram),
            Size(MIN_USABLE_RAM)
        );
    }

    let (image_start, image_end) = bootcpu::image_range();
    let mut reserved: ArrayVec<(u64, u64), 48> = ArrayVec::new();
    fn reserve(list: &mut ArrayVec<(u64, u64), 48>, r: (u64, u64)) {
        if list.try_push(r).is_err() {
            fatal!("too many reserved ranges at boot");
        }
    }
    reserve(&mut reserved, (0, 0x1000)); // real-mode IVT/BDA; page 0 stays unmapped
    reserve(&mut reserved, (image_start, image_end));
    for m in &boot.modules {
        reserve(&mut reserved, (m.start, m.end));
    }
    for r in &boot.loader_ranges {
        reserve(&mut reserved, *r);
    }
    let bitmap_bytes = match bootcpu::install_frames(&map, &mut reserved) {
        Ok(b) => b,
        Err(FramesError::NoRoom(b)) => fatal!("no room for the frame bitmap ({})", Size(b)),
        Err(FramesError::Unmapped(bitmap)) => {
            fatal!("frame bitmap at {bitmap:#x} lies outside the boot identity map")
        }
        Err(FramesError::TooManyReserved) => fatal!("too many reserved ranges at boot"),
        Err(FramesError::Allocator(e)) => fatal!("frame allocator: {e:?}"),
        Err(e @ FramesError::OutOfOrder) => fatal!("frame allocator: {e:?}"),
    };
    // The AP trampoline needs a page below 1 MiB; take it before anything
    // else can.
    let trampoline = frames::alloc_below_1mib();

    // --- The hypervisor's own page tables --------------------------------
    let top = map
        .iter()
        .filter(|r| r.kind.is_ram())
        .map(|r| r.end)
        .max()
        .unwrap_or(0)
        .max(FOUR_GIB)
        .next_multiple_of(2 << 20);
    if let Err(e) = bootcpu::switch_page_tables(top) {
        fatal!("building the hypervisor page tables: {e:?}");
    }
    let wx = paging::verify_wx();
    if wx.writable_executable != 0 {
        fatal!(
            "{} hypervisor pages are both writable and executable",
            wx.writable_executable
        );
    }
    log::info!(
        "paging: identity map to {:#x}, {} leaf mappings, {} executable, none writable+executable; page 0 and stack guards unmapped",
        top,
        wx.leaves,
        wx.executable
    );

    // --- Heap and exception stacks ---------------------------------------
    let heap_bytes = memmap::heap_bytes(usable);
    match bootcpu::heap_and_stacks(heap_bytes) {
        Ok(()) => {}
        Err(StacksError::Heap(b)) => fatal!("no memory for the {} heap", Size(b)),
        Err(StacksError::Ist) => fatal!("no memory for exception stacks"),
        Err(e @ StacksError::OutOfOrder) => fatal!("heap and stacks: {e:?}"),
    }

    // --- Modules ----------------------------------------------------------
    modules::check(boot);

    // --- Speculation mitigations and hardware virtualization -----------------
    crate::arch::spec::init(
        cpu.vendor == crate::arch::cpu::Vendor::Intel,
        &opts.spec_ctrl,
    );
    match init_virt(&cpu.virt).and_then(|b| init_virt_this_cpu().map(|()| b)) {
        Ok(b) => log::info!("virt: running guests with {}", b.name()),
        Err(why) => log::warn!("virt: guests cannot run: {why}"),
    }

    // --- Interrupt controllers, timer, other CPUs ---------------------------
    pit::disable_legacy_pic(idt::VECTOR_PIC_BASE);
    let x2apic = cpu.x2apic;
    lapic::init_this_cpu(x2apic);
    let bsp_apic = lapic::id();
    percpu::init_this_cpu(0, bsp_apic);
    let clocks = pit::calibrate(cpu.vendor == crate::arch::cpu::Vendor::Intel);
    init_time(bootcpu::boot_tsc(), clocks.tsc_hz);
    set_wall_clock_from_rtc();
    log::info!(
        "apic: {} mode, boot CPU APIC ID {bsp_apic}, TSC {} kHz ({}), timer {} counts/10ms ({})",
        if x2apic { "x2APIC" } else { "xAPIC" },
        clocks.tsc_hz / 1000,
        clocks.tsc_source,
        clocks.lapic_per_10ms,
        clocks.lapic_source
    );
    lapic::start_timer(TIMER_HZ);
    x86_64::instructions::interrupts::enable();

    let (topo, madt_cpus) = match acpi::read_topology(boot.rsdp) {
        Ok((t, _)) => {
            let n = t.apic_ids.len() + t.ignored;
            (Some(t), n)
        }
        Err(e) => {
            log::warn!("ACPI: {e}; running on the boot CPU only");
            (None, 1)
        }
    };
    // DMA remapping first, every device blocked until assigned: the PCI
    // policy below asks it which devices a unit covers.
    crate::iommu::init(boot.rsdp);
    // Before the other CPUs start: ECAM is remapped uncached here.
    enumerate_pci(boot, opts);
    let mut online = 1usize;
    if let Some(topo) = &topo {
        log::info!(
            "acpi: MADT lists {} CPUs, {} I/O APICs, local APIC at {:#x}",
            madt_cpus,
            topo.io_apics,
            topo.local_apic_address
        );
        if topo.ignored > 0 {
            log::warn!(
                "{} CPUs beyond the limit of {} are left parked",
                topo.ignored,
                percpu::MAX_CPUS
            );
        }
        if !x2apic && topo.local_apic_address != 0xfee0_0000 {
            log::warn!(
                "local APIC at unusual address {:#x}",
                topo.local_apic_address
            );
        }
        online += start_aps(topo, bsp_apic, trampoline, x2apic, cpu.fast_ap_start());
    }

    ONLINE_CPUS.store(online as u32, Ordering::Relaxed);
    init_scheduler(online);
    // Every online CPU must take timer interrupts before we call it ready.
    wait_for_ticks(online);

    // The boot CPU's run stack is taken now, so the free memory reported
    // below is what stays free while guests run.
    if !bootcpu::prepare_run_stack() {
        log::warn!("no frames for the boot CPU's run stack");
    }
    let (free, used) = frames::counts();
    let free_bytes = free * 4096;
    let hv_bytes = (image_end - image_start) + used * 4096 + bitmap_bytes;
    let boot_tsc = crate::arch::cpu::rdtsc().wrapping_sub(bootcpu::boot_tsc());
    if opts.selftest == SelfTest::IommuDma {
        exit::exit(crate::iommu::selftest::run());
    }
    if opts.selftest != SelfTest::None {
        log::info!("running self-test {:?}", opts.selftest);
        crate::arch::selftest::run(opts.selftest);
        fatal!("self-test {:?} did not fault", opts.selftest);
    }
    let (heap_used, heap_free) = heap::usage();
    log::info!(
        "mem: {} RAM, {} usable, hypervisor keeps {} (image {}, page tables {}, heap {} with {} used / {} free), {} free",
        Size(ram),
        Size(usable),
        Size(hv_bytes),
        Size(image_end - image_start),
        Size(paging::TABLE_FRAMES.load(Ordering::Relaxed) * 4096),
        Size(heap_bytes),
        heap_used,
        heap_free,
        Size(free_bytes)
    );
    crate::println!(
        "stats: cpus={online} cpus_madt={madt_cpus} ram_bytes={ram} free_bytes={free_bytes} hv_bytes={hv_bytes} boot_tsc={boot_tsc}"
    );
    crate::println!(
        "Kestrel ready: {online} CPUs online, {} MiB free of {} MiB RAM",
        free_bytes >> 20,
        ram.div_ceil(1 << 20)
    );
    if opts.dom0 {
        // The control domain's management line.
        if opts.console.io_port() == Some(serial::COM2) {
            log::info!("dom0: no management line (COM2 is the console)");
        } else if serial::init_mgmt(serial::COM2) {
            log::info!("dom0: management line on COM2");
            crate::arch::mgmt_irq::enable(topo.as_ref(), bsp_apic);
            // Its I/O APIC pin through the interrupt remapping (if on).
            if let Some(t) = topo.as_ref() {
                crate::iommu::remap_ioapic(t, crate::arch::idt::VECTOR_MGMT_RX);
            }
        } else {
            log::info!("dom0: no management line (no COM2)");
        }
    }
    serial::note_started();
    // What domains' budgets may charge together: the heap less its
    // reserve and what the hypervisor holds now (`domain/budget.rs`).
    crate::domain::budget::HEAP_POOL.note_base(heap::usage().0 as u64);
    if opts.console_stamp {
        crate::console::stamp::enable();
    }
    start_domains(boot, opts.dom0);
    // Devices not given to a control domain (`domain::lifecycle::create`).
    crate::pci::table::boot_done();
    all_created(opts.shutdown);
    bootcpu::run_on_own_stack(run_cpu)
}

fn start_aps(
    topo: &acpi::Topology,
    bsp_apic: u32,
    trampoline: Option<u64>,
    x2apic: bool,
    fast: bool,
) -> usize {
    let Some(page) = trampoline else {
        log::warn!("no free page below 1 MiB for the AP trampoline; running on the boot CPU only");
        return 0;
    };
    smp::register_ap_entry(smp::ApEntry {
        init_virt: init_virt_this_cpu,
        run: run_cpu,
    });
    if let Err(e) = smp::install_trampoline(page) {
        log::warn!("AP trampoline: {e:?}; running on the boot CPU only");
        return 0;
    }
    let cr3 = Cr3::read().0.start_address().as_u64();
    let mut ids = alloc::vec::Vec::with_capacity(topo.apic_ids.len());
    for &apic_id in topo.apic_ids.iter().filter(|&&id| id != bsp_apic) {
        if !x2apic && apic_id > 254 {
            log::warn!(
                "CPU with APIC ID {apic_id} needs x2APIC, which this CPU lacks; left parked"
            );
            continue;
        }
        ids.push(apic_id);
    }
    let started = match smp::start_aps(&ids, page, cr3, x2apic, TIMER_HZ, fast) {
        Ok(n) => n,
        Err(smp::StartError::Timeout(n)) => {
            log::error!(
                "only {n} of {} other CPUs started within 2 s; the rest stay parked",
                ids.len()
            );
            n
        }
        Err(smp::StartError::OutOfMemory) => {
            log::error!("no memory for the other CPUs' stacks; running on the boot CPU only");
            0
        }
    };
    log::info!("smp: {} CPUs online", started + 1);
    started
}

fn wait_for_ticks(online: usize) {
    // Each CPU's first interrupt comes microseconds after its timer starts
    // (`lapic::start_timer`).
    let all = || {
        (0..online)
            .all(|i| percpu::cpu(i).is_some_and(|c| c.ticks.load(Ordering::Relaxed) >= READY_TICKS))
    };
    if smp::wait_until(all, 2_000_000) {
        return;
    }
    for i in 0..online {
        if let Some(c) = percpu::cpu(i) {
            log::warn!(
                "cpu{i}: only {} timer interrupts after 2 s",
                c.ticks.load(Ordering::Relaxed)
            );
        }
    }
}

/// Starts the boot domains. Without `dom0` every ELF boot module becomes a
/// domain (its arguments are the guest's command line); a module that
/// cannot be started is reported and skipped, the others still run. With
/// `dom0` only module 0 starts, as the privileged control domain; the
/// other modules wait for it to create domains from them.
/// Finds the PCI devices and decides which may be assigned
/// (`docs/pci.md`); they are given to dom0 when it is created.
fn enumerate_pci(boot: &BootInfo, opts: &Options) {
    use crate::boot::pciopts::IommuMode;
    if opts.iommu == IommuMode::OffUnsafe {
        log::warn!(
            "iommu=off-unsafe: PCI devices are assigned with no DMA isolation: an assigned device can read and write all memory, the hypervisor's included"
        );
    }
    let (access, segments) = crate::arch::pci::discover(boot.rsdp);
    let found = crate::pci::walk::walk(&access, &segments);
    log::info!("pci: {} functions through {}", found.len(), access.name());
    // Device messages (`pci/msi_live.rs`): the CPU they target and the
    // MSI-X tables mapped, before the other CPUs start.
    crate::arch::msi::setup(&found, crate::arch::lapic::id());
    crate::pci::msi_live::register_mmio(alloc::boxed::Box::new(crate::arch::msi::TableMmio));
    let policy = crate::pci::assign::Policy {
        iommu: opts.iommu,
        hide: opts.pci_hide,
        console_port: opts.console.io_port(),
    };
    crate::pci::table::install(found, &policy);
    crate::pci::live::register(alloc::boxed::Box::new(access));
}

fn start_domains(boot: &BootInfo, dom0: bool) {
    modules::register(boot);
    for (i, m) in modules::modules().iter().enumerate() {
        if !m.elf || (dom0 && i > 0) {
            continue;
        }
        let Some(backend) = backend() else {
            log::error!(
                "domain {}: not started: no usable hardware virtualization",
                m.name
            );
            continue;
        };
        let mut spec = DomainSpec::boot_module(&m.name, m.bytes(), &m.args);
        spec.privileged = dom0;
        let linux_args = crate::domain::linux_args::parse(&m.args);
        if let Some(parsed) = &linux_args {
            match linux_spec(&mut spec, parsed) {
                Ok(()) => {}
                Err(e) => {
                    log::error!("domain {}: not started: {e}", m.name);
                    continue;
                }
            }
        }
        if let Err(e) = create(backend, &spec) {
            log::error!("domain {}: not started: {e}", m.name);
            if dom0 {
                log::error!("no control domain: nothing else is started");
            }
        }
        if dom0 {
            return;
        }
    }
    if dom0 && modules::modules().first().is_none_or(|m| !m.elf) {
        log::error!("dom0: module 0 is not an ELF image: no control domain");
    }
}

/// Makes `spec` a Linux domain from its module's `kind=linux` arguments
/// (`domain/linux_args.rs`): the initramfs module found by name, the
/// memory, the kernel command line.
fn linux_spec<'a>(
    spec: &mut DomainSpec<'a>,
    parsed: &'a Result<
        crate::domain::linux_args::LinuxArgs<'a>,
        crate::domain::linux_args::ArgError,
    >,
) -> Result<(), alloc::string::String> {
    use alloc::string::ToString;
    let a = parsed.as_ref().map_err(|e| e.to_string())?;
    let initrd = match a.initrd {
        None => &[][..],
        Some(name) => modules::modules()
            .iter()
            .find(|m| m.name.as_str() == name)
            .map(|m| m.bytes())
            .ok_or_else(|| alloc::format!("initrd={name}: no boot module of that name"))?,
    };
    spec.kind = crate::domain::lifecycle::ImageKind::Linux { initrd };
    spec.memory = a.memory;
    spec.nr_vcpus = a.vcpus;
    spec.cmdline = &a.cmdline;
    Ok(())
}

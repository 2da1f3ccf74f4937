//! The boot CPU's path from the 64-bit entry to "ready": boot information,
//! command line, console, memory, the hypervisor's own page tables, heap,
//! exception stacks, ACPI, local APICs and every application processor.

use core::sync::atomic::Ordering;

use arrayvec::ArrayVec;
use x86_64::PhysAddr;
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::PhysFrame;

use crate::arch::cpu::{CpuInfo, VirtFeatures};
use crate::arch::physmem::{self, IdentityMem};
use crate::arch::{acpi, entry, exit, gdt, heap, idt, lapic, paging, percpu, pit, serial, smp};
use crate::boot::cmdline::{Options, SelfTest};
use crate::boot::info::MAX_MEMORY_REGIONS;
use crate::boot::{BootInfo, MemoryRegion, multiboot2, pvh};
use crate::domain::lifecycle::all_created;
use crate::mm::frame::FrameAllocator;
use crate::mm::memmap;
use crate::mm::size::Size;
use crate::run::run_cpu;
use crate::sched::clock::init_time;
use crate::sched::live::init as init_scheduler;
use crate::virt::select::{init_virt, init_virt_this_cpu};

/// Less usable RAM than this and the hypervisor refuses to start: its own
/// structures plus a useful control domain do not fit.
pub const MIN_USABLE_RAM: u64 = 24 << 20;
/// Local APIC timer rate.
const TIMER_HZ: u32 = 100;
/// Timer interrupts every CPU must have taken before "ready" (one proves
/// its APIC timer and interrupt path work).
const READY_TICKS: u64 = 1;
use crate::arch::frames::{self, FOUR_GIB};

unsafe extern "C" {
    static __image_start: u8;
    static __image_end: u8;
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_start: u8;
    static __rodata_end: u8;
    static __data_start: u8;
}

fn sym(s: *const u8) -> u64 {
    s as u64
}

/// CPUs that came online (set once at boot).
pub use crate::arch::platform::ONLINE_CPUS;
/// Usable RAM in bytes (set once at boot).
pub use crate::arch::platform::RAM_BYTES;

macro_rules! fatal {
    ($($arg:tt)*) => { exit::fatal(format_args!($($arg)*)) };
}

/// The 64-bit entry of the boot CPU (called from the trampoline in
/// [`entry`]) with the loader's magic and information pointer.
pub extern "C" fn kmain(magic: u32, info: u64) -> ! {
    // Per-CPU data and an IDT first, so any fault from here on is reported
    // instead of triple-faulting.
    percpu::init_this_cpu(0, 0);
    // SAFETY: first thing on the boot CPU, interrupts off, no other CPU runs.
    unsafe {
        idt::init();
        gdt::load(0, [0; 3]);
    }
    idt::load();
    serial::init(Some(serial::COM1));

    let boot = match magic {
        multiboot2::BOOTLOADER_MAGIC => multiboot2::parse(&IdentityMem, info),
        pvh::START_MAGIC => pvh::parse(&IdentityMem, info),
        other => fatal!(
            "unknown boot protocol (magic {other:#x}): boot Kestrel with GRUB (multiboot2) or as a PVH kernel"
        ),
    };
    let boot = match boot {
        Ok(b) => b,
        Err(e) => fatal!("boot information rejected: {e}"),
    };

    let (opts, cmdline_error) = Options::parse(&boot.cmdline);
    exit::set_method(opts.exit);
    if opts.console.io_port() != Some(serial::COM1) {
        serial::init(opts.console.io_port());
    }
    serial::init_logger(opts.log_level);
    if let Some(e) = cmdline_error {
        fatal!("{e}");
    }
    boot_cpu(&boot, &opts)
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

    let image_start = sym(&raw const __image_start);
    let image_end = sym(&raw const __image_end);
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
    let words = FrameAllocator::storage_words(&map);
    let bitmap_bytes = (words as u64 * 8).next_multiple_of(4096);
    let Some(bitmap) = FrameAllocator::find_storage(&map, &reserved, bitmap_bytes) else {
        fatal!("no room for the frame bitmap ({})", Size(bitmap_bytes));
    };
    if !physmem::is_mapped(bitmap, bitmap_bytes) {
        fatal!("frame bitmap at {bitmap:#x} lies outside the boot identity map");
    }
    reserve(&mut reserved, (bitmap, bitmap + bitmap_bytes));
    // SAFETY: `find_storage` chose usable RAM that no reserved range (image,
    // modules, loader data) touches; it is identity-mapped (checked) and the
    // allocator is its only user from now on.
    let storage = unsafe { core::slice::from_raw_parts_mut(bitmap as *mut u64, words) };
    match FrameAllocator::new(&map, &reserved, storage) {
        Ok(a) => frames::install(a),
        Err(e) => fatal!("frame allocator: {e:?}"),
    }
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
    if let Err(e) = build_page_tables(top) {
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
    let Some(heap_base) = frames::alloc_frames(heap_bytes / 4096) else {
        fatal!("no memory for the {} heap", Size(heap_bytes));
    };
    // SAFETY: freshly allocated, identity-mapped RW frames owned by the heap.
    unsafe { heap::init(heap_base, heap_bytes as usize) };
    let Some(ist) = smp::prepare_ist(0) else {
        fatal!("no memory for exception stacks");
    };
    // SAFETY: on the boot CPU with its own freshly allocated IST stacks.
    unsafe { gdt::load(0, ist) };

    // --- Modules ----------------------------------------------------------
    crate::arch::modules::check(boot);

    // --- Hardware virtualization -------------------------------------------
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
    // SAFETY: written once by the entry code before Rust ran.
    init_time(
        unsafe { core::ptr::read_volatile(&raw const entry::__boot_tsc) },
        clocks.tsc_hz,
    );
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

    let (free, used) = frames::counts();
    let free_bytes = free * 4096;
    let hv_bytes = (image_end - image_start) + used * 4096 + bitmap_bytes;
    let boot_tsc = crate::arch::cpu::rdtsc().wrapping_sub(
        // SAFETY: written once by the entry code before Rust ran.
        unsafe { core::ptr::read_volatile(&raw const entry::__boot_tsc) },
    );
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
        } else {
            log::info!("dom0: no management line (no COM2)");
        }
    }
    crate::arch::modules::start_domains(boot, opts.dom0);
    all_created(opts.shutdown);
    run_cpu()
}

fn build_page_tables(top: u64) -> Result<(), paging::MapError> {
    use paging::{NX, PCD, PWT, W};
    let mut alloc = || frames::alloc_frame();
    let mut space = paging::AddressSpace::new(&mut alloc)?;
    // Everything (RAM, ACPI, MMIO below 4 GiB) read/write, never executable.
    space.map(0, 0, top, W | NX, &mut alloc)?;
    // The local and I/O APIC pages uncached (MTRRs normally agree).
    space.map(
        0xfec0_0000,
        0xfec0_0000,
        4 << 20,
        W | NX | PCD | PWT,
        &mut alloc,
    )?;
    // The image by section.
    let image_start = sym(&raw const __image_start);
    let text_start = sym(&raw const __text_start);
    let text_end = sym(&raw const __text_end);
    let rodata_start = sym(&raw const __rodata_start);
    let rodata_end = sym(&raw const __rodata_end);
    let data_start = sym(&raw const __data_start);
    let image_end = sym(&raw const __image_end);
    space.map(
        image_start,
        image_start,
        text_start - image_start,
        NX,
        &mut alloc,
    )?;
    space.map(text_start, text_start, text_end - text_start, 0, &mut alloc)?;
    space.map(
        rodata_start,
        rodata_start,
        rodata_end - rodata_start,
        NX,
        &mut alloc,
    )?;
    space.map(
        data_start,
        data_start,
        image_end - data_start,
        W | NX,
        &mut alloc,
    )?;
    space.unmap_page(0, &mut alloc)?;
    let boot_guard = sym(&raw const entry::__boot_stack_guard);
    space.unmap_page(boot_guard, &mut alloc)?;
    paging::register_guard(boot_guard);
    let root = space.root();
    let Some(frame) = PhysFrame::from_start_address(PhysAddr::new(root)).ok() else {
        return Err(paging::MapError::BadAddress(root));
    };
    // SAFETY: the new tables map the whole image with the rights its
    // sections need, the boot stack, all RAM and the APIC pages; every
    // address used from here on stays valid.
    unsafe { Cr3::write(frame, Cr3Flags::empty()) };
    physmem::set_mapped_limit(top);
    *paging::KERNEL_SPACE.lock() = Some(space);
    Ok(())
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

//! Per-CPU GDT and TSS. The TSS carries the interrupt stacks (IST) for the
//! exceptions that must never run on a possibly broken stack: #DF, NMI, #MC
//! (Intel SDM Vol. 3A 7.14.5).

use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;

use super::percpu::MAX_CPUS;

/// IST slot (1-based as the IDT counts) for double faults.
pub const IST_DOUBLE_FAULT: u8 = 1;
/// IST slot for NMIs.
pub const IST_NMI: u8 = 2;
/// IST slot for machine checks.
pub const IST_MACHINE_CHECK: u8 = 3;

/// Selector of the 64-bit code segment (same in every CPU's GDT).
pub const KERNEL_CS: u16 = 0x08;

static mut GDTS: [GlobalDescriptorTable; MAX_CPUS] =
    [const { GlobalDescriptorTable::new() }; MAX_CPUS];
static mut TSSS: [TaskStateSegment; MAX_CPUS] = [const { TaskStateSegment::new() }; MAX_CPUS];

/// Builds and loads CPU `cpu`'s GDT and TSS. `ist` holds the tops of the
/// #DF, NMI and #MC stacks (zero before stacks exist: the early boot CPU).
///
/// # Safety
/// Must run on CPU `cpu` itself, once per distinct `ist`, before any other
/// CPU could use slot `cpu`; the stacks must be mapped and owned by this CPU.
pub unsafe fn load(cpu: usize, ist: [u64; 3]) {
    assert!(cpu < MAX_CPUS, "CPU index {cpu} beyond MAX_CPUS");
    // SAFETY: slot `cpu` belongs to the calling CPU (caller contract); no
    // other reference to it exists while we rebuild it. The GDT is reloaded
    // below before the old contents could be relied on again.
    let (gdt, tss) = unsafe {
        (
            &mut *(&raw mut GDTS).cast::<GlobalDescriptorTable>().add(cpu),
            &mut *(&raw mut TSSS).cast::<TaskStateSegment>().add(cpu),
        )
    };
    *tss = TaskStateSegment::new();
    for (slot, top) in ist.iter().enumerate() {
        tss.interrupt_stack_table[slot] = VirtAddr::new(*top);
    }
    *gdt = GlobalDescriptorTable::new();
    let code = gdt.append(Descriptor::kernel_code_segment());
    let data = gdt.append(Descriptor::kernel_data_segment());
    let tss_sel = gdt.append(Descriptor::tss_segment(tss));
    debug_assert_eq!(code.0, KERNEL_CS);
    gdt.load();
    // SAFETY: the selectors come from the GDT just loaded; the TSS
    // descriptor is fresh (not busy) because the GDT was rebuilt.
    unsafe {
        CS::set_reg(code);
        DS::set_reg(data);
        ES::set_reg(data);
        SS::set_reg(data);
        load_tss(tss_sel);
    }
    let _ = SegmentSelector(0);
}

/// Linear address of CPU `cpu`'s TSS (for the VMCS host state).
pub fn tss_base(cpu: usize) -> u64 {
    (&raw const TSSS)
        .cast::<TaskStateSegment>()
        .wrapping_add(cpu.min(MAX_CPUS - 1)) as u64
}

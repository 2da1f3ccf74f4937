//! A vCPU backend for host tests: `run()` plays a scripted guest.
//!
//! A guest here is a **program**: a closure called once per entry that does
//! what the guest would do until its next exit (set registers, read and
//! write its memory) and returns that exit, usually a hypercall made with
//! [`Guest::hypercall`]. The result of a hypercall is in RAX at the next
//! call ([`Guest::rax`]), as the real guest would see it after VMCALL.
//! [`Guest::spin`] is a guest that computes until the host interrupts it
//! (its CPU's timer or an IPI), which is what a CPU-bound guest costs.
//!
//! Guest memory is reached as the CPU reaches it: through the domain's
//! nested page tables (NPT or EPT format, as the backend says), walked by
//! [`GuestPageTable::translate_root`] over the frames the runtime gave the
//! domain. So a granted page mapped into a domain is visible to its
//! program, and an access to an unmapped page or a read-only one gives the
//! nested-page-fault exit the hardware would.
//!
//! Each domain's programs come from a factory the test registers with
//! [`next_domain`] before creating it (vCPU 0 and every vCPU the guest
//! brings up with `HC_VCPU_UP` are made from it; the factory sees the
//! vCPU's [`BootState`], so the argument a guest passes in RDI to
//! `HC_VCPU_UP` tells it which vCPU it is).

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use spin::Mutex;

use super::msr::GuestMsr;
use super::{Backend, GuestRegs, VcpuBackend, VmExit};
use crate::mm::gpt::{Ept, GuestPageTable, Npt, TableMemory};
use crate::platform::host;
use crate::platform::{P, Platform};
use crate::virt::boot::BootState;

/// What a guest does from one entry to its next exit.
pub type Program = Box<dyn FnMut(&mut Guest<'_>) -> VmExit + Send>;
/// Makes the program of each vCPU of a domain.
pub type Factory = Arc<dyn Fn(&BootState) -> Program + Send + Sync>;

/// The factory for the next domain created (its first vCPU takes it).
static NEXT: Mutex<Option<Factory>> = Mutex::new(None);
/// Each domain's factory, by domain id.
static BY_DOMAIN: Mutex<BTreeMap<u32, Factory>> = Mutex::new(BTreeMap::new());
/// vCPUs made and released: their difference is what is still alive.
static MADE: AtomicU64 = AtomicU64::new(0);
static RELEASED: AtomicU64 = AtomicU64::new(0);

/// The next domain created runs `factory`'s programs.
pub fn next_domain(factory: impl Fn(&BootState) -> Program + Send + Sync + 'static) {
    *NEXT.lock() = Some(Arc::new(factory));
}

/// vCPUs made and not yet released (a dead domain leaves none).
pub fn unreleased() -> u64 {
    MADE.load(Ordering::Acquire) - RELEASED.load(Ordering::Acquire)
}

/// Forgets every domain's factory (between tests).
pub fn reset() {
    BY_DOMAIN.lock().clear();
    *NEXT.lock() = None;
}

/// A scripted vCPU.
pub struct FakeVcpu {
    backend: Backend,
    /// Root of the domain's nested page tables.
    root: u64,
    domain_id: u32,
    regs: GuestRegs,
    rip: u64,
    /// The vector `set_upcall` asked to inject at the next entry.
    upcall: Option<u8>,
    /// #GP injections asked for and not yet seen by the program.
    gp: u32,
    program: Program,
    released: bool,
    /// Guest-owned MSRs, in `GuestMsr::ALL` order.
    msrs: [u64; 13],
}

impl FakeVcpu {
    /// A vCPU of domain `domain_id` starting per `boot`; `None` when no
    /// program was registered for it (the domain cannot run).
    pub fn new(backend: Backend, boot: &BootState, root: u64, domain_id: u32) -> Option<Self> {
        let factory = {
            let mut map = BY_DOMAIN.lock();
            match map.get(&domain_id) {
                Some(f) => f.clone(),
                None => {
                    let f = NEXT.lock().take()?;
                    map.insert(domain_id, f.clone());
                    f
                }
            }
        };
        MADE.fetch_add(1, Ordering::AcqRel);
        let regs = GuestRegs {
            rdi: boot.rdi,
            rsi: boot.rsi,
            ..GuestRegs::default()
        };
        Some(Self {
            backend,
            root,
            domain_id,
            regs,
            rip: boot.rip,
            upcall: None,
            gp: 0,
            program: factory(boot),
            released: false,
            msrs: fake_msrs(boot.efer),
        })
    }
}

/// The guest's view during one run: its registers and memory.
pub struct Guest<'a> {
    /// Its general-purpose registers.
    pub regs: &'a mut GuestRegs,
    /// Its RIP.
    pub rip: &'a mut u64,
    backend: Backend,
    root: u64,
    /// Its domain's id.
    pub domain_id: u32,
    /// The upcall vector injected at this entry, if any.
    pub upcall: Option<u8>,
    /// #GP exceptions injected since the last run.
    pub gp: u32,
}

impl Guest<'_> {
    /// RAX: a hypercall's result, once the hypervisor returned from it.
    pub fn rax(&self) -> u64 {
        self.regs.rax
    }

    /// RAX as a status (negative: an error code).
    pub fn status(&self) -> i64 {
        self.regs.rax as i64
    }

    /// Makes hypercall `nr` with up to six arguments (RDI, RSI, RDX, R10,
    /// R8, R9): the exit to return.
    pub fn hypercall(&mut self, nr: u64, args: &[u64]) -> VmExit {
        let r = &mut *self.regs;
        r.rax = nr;
        let slots = [
            &mut r.rdi, &mut r.rsi, &mut r.rdx, &mut r.r10, &mut r.r8, &mut r.r9,
        ];
        for (slot, &a) in slots.into_iter().zip(args.iter().chain([0u64; 6].iter())) {
            *slot = a;
        }
        VmExit::Hypercall { len: 3 }
    }

    /// Computes until the host interrupts this CPU: the exit to return.
    pub fn spin(&mut self) -> VmExit {
        host::wait_for_interrupt();
        VmExit::ExternalInterrupt
    }

    /// Host-physical address of guest-physical `gpa` with the rights the
    /// nested tables give, or the fault exit.
    fn translate(&self, gpa: u64, write: bool) -> Result<u64, VmExit> {
        let t = ReadTables;
        let hit = match self.backend {
            Backend::Svm => GuestPageTable::<Npt>::translate_root(self.root, gpa, &t),
            Backend::Vmx => GuestPageTable::<Ept>::translate_root(self.root, gpa, &t),
        };
        match hit {
            Some((hpa, perms, _)) if perms.read && (!write || perms.write) => Ok(hpa),
            _ => Err(VmExit::NestedPageFault {
                gpa,
                write,
                fetch: false,
            }),
        }
    }

    /// Reads guest-physical memory; `Err` is the exit the access causes.
    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), VmExit> {
        for (i, b) in buf.iter_mut().enumerate() {
            let hpa = self.translate(gpa + i as u64, false)?;
            let mut one = [0u8];
            P::read_phys(hpa, &mut one);
            *b = one[0];
        }
        Ok(())
    }

    /// Writes guest-physical memory; `Err` is the exit the access causes.
    pub fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), VmExit> {
        for (i, &b) in bytes.iter().enumerate() {
            let hpa = self.translate(gpa + i as u64, true)?;
            P::write_phys(hpa, &[b]);
        }
        Ok(())
    }

    /// The aligned guest word at `gpa` as the CPU's atomic instructions
    /// reach it (writable through the nested tables, or the fault exit):
    /// for words the hypervisor changes concurrently (the event-channel
    /// control area).
    pub fn word(&self, gpa: u64) -> Result<&'static AtomicU64, VmExit> {
        let hpa = self.translate(gpa, true)?;
        P::phys_word(hpa).ok_or(VmExit::NestedPageFault {
            gpa,
            write: true,
            fetch: false,
        })
    }

    /// Reads a little-endian u64.
    pub fn read_u64(&self, gpa: u64) -> Result<u64, VmExit> {
        let mut b = [0u8; 8];
        self.read(gpa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
}

/// A fake vCPU's MSRs at creation: EFER from its boot state, PAT at its
/// power-on value (SDM Vol. 3A 12.12.4), the rest 0.
pub fn fake_msrs(efer: u64) -> [u64; 13] {
    let mut m = [0; 13];
    for (slot, msr) in m.iter_mut().zip(GuestMsr::ALL) {
        *slot = match msr {
            GuestMsr::Efer => efer,
            GuestMsr::Pat => 0x0007_0406_0007_0406,
            _ => 0,
        };
    }
    m
}

fn msr_slot(m: GuestMsr) -> usize {
    GuestMsr::ALL.iter().position(|&x| x == m).unwrap_or(0)
}

impl VcpuBackend for FakeVcpu {
    fn msr(&self, m: GuestMsr) -> u64 {
        self.msrs.get(msr_slot(m)).copied().unwrap_or(0)
    }
    fn set_msr(&mut self, m: GuestMsr, value: u64) {
        if let Some(slot) = self.msrs.get_mut(msr_slot(m)) {
            *slot = value;
        }
    }
    fn enter(&mut self, _cpu: usize) {}

    fn flush_tlb(&mut self) {}

    fn run(&mut self) -> VmExit {
        // The guest runs for a while: other CPUs may act meanwhile (a
        // switch point for the interleaving tests, `sync.rs`).
        crate::sync::point();
        if self.released {
            return VmExit::InvalidState { detail: 0 };
        }
        let mut g = Guest {
            regs: &mut self.regs,
            rip: &mut self.rip,
            backend: self.backend,
            root: self.root,
            domain_id: self.domain_id,
            upcall: self.upcall.take(),
            gp: core::mem::take(&mut self.gp),
        };
        (self.program)(&mut g)
    }

    fn release(&mut self) {
        if !self.released {
            self.released = true;
            RELEASED.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn set_upcall(&mut self, vector: Option<u8>) {
        // The scripted guest always takes interrupts (RFLAGS.IF = 1, no
        // shadow): the vector is injected at the next entry.
        self.upcall = vector;
    }

    fn set_slice_end(&mut self, _tsc: u64) {}

    fn put(&mut self) {}

    fn regs(&mut self) -> &mut GuestRegs {
        &mut self.regs
    }

    fn rax(&self) -> u64 {
        self.regs.rax
    }

    fn set_rax(&mut self, value: u64) {
        self.regs.rax = value;
    }

    fn rip(&self) -> u64 {
        self.rip
    }

    fn skip(&mut self, len: u64) {
        self.rip = self.rip.wrapping_add(len);
    }

    fn inject_gp(&mut self) {
        self.gp += 1;
    }

    fn inject_ud(&mut self) {
        self.gp += 1;
    }

    /// Scripted guests run in their kernel only.
    fn cpl(&self) -> u8 {
        0
    }

    fn rsp(&self) -> u64 {
        0
    }

    /// Scripted guests always take interrupts (see `set_upcall`).
    fn interrupts_enabled(&self) -> bool {
        true
    }

    /// Scripted guests never write control registers.
    fn control_reg(&self, _n: u8) -> u64 {
        0
    }

    fn set_control_reg(&mut self, _n: u8, _value: u64) -> bool {
        false
    }
}

/// A minimal guest image: one executable `PT_LOAD` at 1 MiB, entered
/// there. The fake vCPU never runs its bytes; the builder places it.
pub fn image() -> Vec<u8> {
    const AT: u64 = 1 << 20;
    let text = [0x0f, 0x01, 0xd9, 0xf4, 0xeb, 0xfd];
    let mut b = alloc::vec![0u8; 0x1000];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = 2; // ELFCLASS64
    b[5] = 1; // little endian
    b[6] = 1; // EV_CURRENT
    b[16..18].copy_from_slice(&crate::elf::ET_EXEC.to_le_bytes());
    b[18..20].copy_from_slice(&crate::elf::EM_X86_64.to_le_bytes());
    b[20..24].copy_from_slice(&1u32.to_le_bytes());
    b[24..32].copy_from_slice(&AT.to_le_bytes());
    b[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    b[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    b[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    b[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
    let ph = 64;
    b[ph..ph + 4].copy_from_slice(&crate::elf::PT_LOAD.to_le_bytes());
    b[ph + 4..ph + 8].copy_from_slice(&(crate::elf::PF_X | 4).to_le_bytes());
    b[ph + 8..ph + 16].copy_from_slice(&0x1000u64.to_le_bytes()); // p_offset
    b[ph + 16..ph + 24].copy_from_slice(&AT.to_le_bytes());
    b[ph + 24..ph + 32].copy_from_slice(&AT.to_le_bytes());
    b[ph + 32..ph + 40].copy_from_slice(&(text.len() as u64).to_le_bytes());
    b[ph + 40..ph + 48].copy_from_slice(&0x10u64.to_le_bytes());
    b[ph + 48..ph + 56].copy_from_slice(&0x1000u64.to_le_bytes());
    b.extend_from_slice(&text);
    b.resize(0x2000, 0);
    b
}

/// One step of a [`steps`] program: the exit to make, or `None` for "not
/// yet" (the guest sleeps 1 ms and the step runs again).
pub type Step = Box<dyn FnMut(&mut Guest<'_>) -> Option<VmExit> + Send>;

/// A program that runs `steps` in order, one per entry (RAX holds the
/// previous hypercall's result), then blocks for events for good.
pub fn steps(steps: Vec<Step>) -> Program {
    let mut steps = steps.into_iter();
    let mut cur: Option<Step> = steps.next();
    Box::new(move |g: &mut Guest<'_>| {
        let Some(step) = cur.as_mut() else {
            return g.hypercall(pvabi::HC_SCHED_BLOCK, &[0]);
        };
        match step(g) {
            Some(exit) => {
                cur = steps.next();
                exit
            }
            None => {
                let soon = crate::sched::clock::now_ns() + 1_000_000;
                g.hypercall(pvabi::HC_SCHED_BLOCK, &[soon])
            }
        }
    })
}

/// A boxed [`Step`].
pub fn step(f: impl FnMut(&mut Guest<'_>) -> Option<VmExit> + Send + 'static) -> Step {
    Box::new(f)
}

/// The nested tables as the fake "CPU" walks them: read-only, through
/// the host platform's physical memory (the fake never builds tables;
/// `domain/` does, and the fake must not reach up into it).
struct ReadTables;

impl TableMemory for ReadTables {
    fn alloc_table(&mut self) -> Option<u64> {
        None
    }
    fn read_entry(&self, table: u64, index: usize) -> u64 {
        P::phys_word(table + index.min(511) as u64 * 8).map_or(0, |w| w.load(Ordering::Relaxed))
    }
    fn write_entry(&mut self, _table: u64, _index: usize, _value: u64) {}
    fn free_table(&mut self, _table: u64) {}
}

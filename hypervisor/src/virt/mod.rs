//! Hardware virtualization behind one vendor-neutral interface.
//!
//! A backend ([`svm`] for AMD-V, [`vmx`] for Intel VT-x) runs a vCPU until
//! something needs the hypervisor and translates the vendor's exit
//! information into one [`VmExit`]. Everything above — the exit handler,
//! hypercalls, domains, the scheduler — sees only [`VcpuBackend`]. The
//! vendor is chosen at boot from CPUID and each vCPU's backend is made in
//! `select.rs`, the one place that names a vendor; one image serves both.
//!
//! `unsafe` is allowed only in the vendor backends (they execute VMRUN,
//! VMLAUNCH and friends, each marked `allow` below); the rest of `virt/`
//! denies it.
#![deny(unsafe_code)]

pub mod boot;
pub mod cr;
pub mod decode;
pub mod exit;
pub mod msr;
pub mod msrmap;

pub use exit::{Backend, CrSource, GuestRegs, VmExit};

#[cfg(target_os = "none")]
#[allow(unsafe_code)]
pub mod debugregs;
#[cfg(not(target_os = "none"))]
pub mod fake;
pub mod select;
#[cfg(target_os = "none")]
#[allow(unsafe_code)]
pub mod svm;
#[cfg(target_os = "none")]
#[allow(unsafe_code)]
pub mod vmx;
#[cfg(target_os = "none")]
#[allow(unsafe_code)]
mod vmx_fields;
pub mod xstate;

/// Whether guests may use RDTSCP and RDPID: the CPU has TSC_AUX and the
/// backend switches it per vCPU (VT-x also needs "enable RDTSCP"); the
/// CPUID guests see says so (`hypercall::filter_cpuid`).
static RDTSCP_OFFERED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Records whether RDTSCP/RDPID work in guests (backend init).
pub fn set_rdtscp_offered(on: bool) {
    RDTSCP_OFFERED.store(on, core::sync::atomic::Ordering::Relaxed);
}

/// Whether RDTSCP/RDPID work in guests.
pub fn rdtscp_offered() -> bool {
    RDTSCP_OFFERED.load(core::sync::atomic::Ordering::Relaxed)
}

/// A vCPU's concrete backend, for the run loop's one dispatch per slice
/// (`run.rs`): within the slice its exits then call the vendor's code
/// directly, inlined, rather than through [`VcpuBackend`]'s vtable (three
/// indirect calls per hypercall). The host tests' fakes are `Other`: the
/// same loop, driven through the vtable.
pub enum Concrete<'a> {
    #[cfg(target_os = "none")]
    Svm(&'a mut svm::SvmVcpu),
    #[cfg(target_os = "none")]
    Vmx(&'a mut vmx::VmxVcpu),
    #[cfg(not(target_os = "none"))]
    Other(core::marker::PhantomData<&'a mut ()>),
}

/// One vCPU of either vendor, as the rest of the hypervisor drives it.
///
/// A vCPU is made by `select::new_vcpu` (bare metal) and lives in a
/// `Box<dyn VcpuBackend>`; host tests implement it with fakes. The slice
/// protocol is: [`enter`](Self::enter), then [`run`](Self::run) until the
/// slice ends, then [`put`](Self::put); [`release`](Self::release) once
/// when the vCPU dies.
pub trait VcpuBackend: Send {
    /// The concrete backend ([`Concrete`]); every bare-metal backend names
    /// itself.
    #[cfg(target_os = "none")]
    fn concrete(&mut self) -> Concrete<'_>;
    /// Host tests: driven through the vtable.
    #[cfg(not(target_os = "none"))]
    fn concrete(&mut self) -> Concrete<'_> {
        Concrete::Other(core::marker::PhantomData)
    }
    /// Switches the vCPU in on this CPU, `cpu` (the caller's index: before
    /// the first `run` of a slice).
    fn enter(&mut self, cpu: usize);
    /// Drops the guest's cached translations on this CPU before the next
    /// run (after its nested page tables lost a mapping).
    fn flush_tlb(&mut self);
    /// Runs until the next exit.
    fn run(&mut self) -> VmExit;
    /// Whether [`run`](Self::run) returns with the host's interrupts on
    /// (the run loop then enables none itself). A backend that does not
    /// say returns with them as they may be: the loop enables them.
    fn exits_with_interrupts_on(&self) -> bool {
        false
    }
    /// Frees the vCPU's control page (VMCB or VMCS); the vCPU is dead.
    fn release(&mut self);
    /// Before an entry: `Some(vector)` injects that external interrupt if
    /// the guest can take it now (RFLAGS.IF = 1, no interrupt shadow,
    /// nothing else being injected), else requests an interrupt-window
    /// exit so the next entry tries again; `None` withdraws the request.
    fn set_upcall(&mut self, vector: Option<u8>);
    /// The time slice ends at TSC `tsc`. A backend whose exits cannot be
    /// forced by the host's timer interrupt bounds each entry itself
    /// (VT-x: the VMX-preemption timer); others ignore it.
    fn set_slice_end(&mut self, tsc: u64);
    /// Switches the vCPU out (after the last `run` of a slice).
    fn put(&mut self);
    /// General-purpose registers (RAX through R15; RAX also through
    /// [`VcpuBackend::rax`]).
    fn regs(&mut self) -> &mut GuestRegs;
    /// Guest RAX.
    fn rax(&self) -> u64;
    /// Sets guest RAX.
    fn set_rax(&mut self, value: u64);
    /// Guest RIP.
    fn rip(&self) -> u64;
    /// Moves RIP past the exiting instruction.
    fn skip(&mut self, len: u64);
    /// A hypercall's number (RAX) and the registers holding its arguments,
    /// in one call (the exit path's); `None` from CPL > 0.
    fn hypercall_regs(&mut self) -> Option<(u64, &mut GuestRegs)> {
        if self.cpl() != 0 {
            return None;
        }
        let nr = self.rax();
        Some((nr, self.regs()))
    }
    /// Completes an instruction `len` bytes long: RIP past it, and RAX set
    /// to `rax` if given (one call for [`Self::skip`] and [`Self::set_rax`]).
    fn complete(&mut self, len: u64, rax: Option<u64>) {
        self.skip(len);
        if let Some(value) = rax {
            self.set_rax(value);
        }
    }
    /// Injects #GP(0) on the next entry.
    fn inject_gp(&mut self);
    /// The guest's CR4 as it reads it (CPUID's OSXSAVE and OSPKE follow
    /// it). A backend that does not say reports 0: those bits stay clear.
    fn guest_cr4(&self) -> u64 {
        0
    }
    /// The guest's XSETBV of `value` into XCR `xcr`: `true` if loaded,
    /// `false` if refused (the caller injects #GP). See `xstate.rs`; a
    /// backend that does not switch XCR0 refuses every value.
    fn set_xcr(&mut self, xcr: u32, value: u64) -> bool {
        let _ = (xcr, value);
        false
    }
    /// Injects #UD on the next entry.
    fn inject_ud(&mut self);
    /// The guest's current privilege level (0 = its kernel, 3 = user):
    /// SS.DPL, which the CPU keeps equal to CPL (VMCB CPL field, APM Vol. 2
    /// Appendix B; SDM Vol. 3C 27.3.1.2).
    fn cpl(&self) -> u8;
    /// Guest RSP.
    fn rsp(&self) -> u64;
    /// Whether the guest's RFLAGS.IF is set (an HLT it executes can be
    /// ended by an interrupt, `sched/halt.rs`).
    fn interrupts_enabled(&self) -> bool;
    /// Control register `n` (0, 3 or 4) as the guest sees it (on VT-x the
    /// read shadow for CR0/CR4).
    fn control_reg(&self, n: u8) -> u64;
    /// Gives the guest CR0 or CR4 = `value`, already checked against the
    /// architecture and the CPUID the guest sees (`virt::cr`); `false`
    /// (nothing changed) when the hardware cannot hold it (VT-x fixed
    /// bits), and the caller injects #GP. Flushes the guest's TLB: a
    /// write to CR0.PG/WP or CR4.PGE/PAE/PCIDE/SMEP must (SDM Vol. 3A 4.10.4.1).
    fn set_control_reg(&mut self, n: u8, value: u64) -> bool;
    /// The TSC_AUX value RDTSCP and RDPID return while this vCPU runs (its
    /// vCPU id, as Linux's getcpu expects). Backends that switch it
    /// override this; the default ignores it (host-test fakes).
    fn set_tsc_aux(&mut self, _aux: u32) {}
    /// A guest-owned MSR's value as the guest reads it (EFER without
    /// AMD-V's SVME). Valid while the vCPU is switched in (between `enter`
    /// and `put`), where the exit handler calls it.
    fn msr(&self, m: msr::GuestMsr) -> u64;
    /// Sets a guest-owned MSR to `value`, already checked by the MSR model
    /// (`hypercall/msr.rs`: canonical bases, valid PAT, EFER's fixed bits);
    /// takes effect at the next entry.
    fn set_msr(&mut self, m: msr::GuestMsr, value: u64);
    /// Debug register `n` (0-3, 6, 7) as the guest sees it, for backends
    /// that intercept MOV DR (AMD-V); the default (never called) is 0.
    fn debug_reg(&self, _n: u8) -> u64 {
        0
    }
    /// Sets debug register `n` (0-3, 6, 7; the value checked by
    /// `virt::cr::emulate_dr`) for backends that intercept MOV DR;
    /// `false` where the backend does not.
    fn set_debug_reg(&mut self, _n: u8, _value: u64) -> bool {
        false
    }
    /// Writes the guest state that explains a fault (the event being
    /// delivered, RSP, RFLAGS, IDTR, control and debug registers) for the
    /// log line of a domain killed by a triple fault; fakes write nothing.
    fn describe(&self, _out: &mut dyn core::fmt::Write) -> core::fmt::Result {
        Ok(())
    }
}

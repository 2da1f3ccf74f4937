//! A machine for host tests of the runtime: threads play the CPUs (each
//! runs `run::schedule` in a loop, as `run_cpu` does on bare metal), the
//! host platform (`platform/host.rs`) plays the hardware, and domains run
//! scripted vCPUs (`virt/fake.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::string::String;
use std::sync::Arc;
use std::sync::MutexGuard;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use std::vec::Vec;

use crate::domain::builder::BootState;
use crate::domain::ids::DomainId;
use crate::domain::lifecycle::{self, ALIVE, DOMAINS, Domain, DomainSpec, VcpuEntry};
use crate::platform::host;
use crate::platform::{P, Platform};
use crate::virt::Backend;
use crate::virt::fake::{self, Program};

/// How long any wait in a test may take before it fails (a stall is a
/// failure, never something to sit out).
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Running CPU threads over the runtime; stopped (and joined) on drop.
pub struct Machine {
    stop: Arc<AtomicBool>,
    cpus: Vec<JoinHandle<()>>,
    /// Frames free before the test made anything.
    pub free_at_start: u64,
    _one: MutexGuard<'static, ()>,
}

impl Machine {
    /// `n` CPUs running the scheduler loop, over an empty runtime.
    pub fn start(n: usize) -> Self {
        assert!(n < host::CPUS, "at most {} CPU threads", host::CPUS - 1);
        let one = host::exclusive();
        host::install_logger();
        fake::reset();
        assert!(
            DOMAINS.lock().is_empty(),
            "a previous test left vCPUs behind"
        );
        crate::sched::clock::init_time(0, P::tsc_hz());
        crate::sched::live::init(n);
        host::set_online_cpus(n as u32);
        let free_at_start = P::free_frame_count();
        let stop = Arc::new(AtomicBool::new(false));
        let cpus = (0..n)
            .map(|i| {
                let stop = stop.clone();
                std::thread::Builder::new()
                    .name(std::format!("cpu{i}"))
                    .spawn(move || {
                        host::become_cpu(i);
                        while !stop.load(Ordering::Acquire) {
                            crate::run::schedule(i);
                        }
                    })
                    .unwrap()
            })
            .collect();
        // The test's own thread (creating, pausing, destroying domains)
        // plays a CPU that runs no loop, so the kicks it sends to the
        // others are IPIs, as a domctl from another CPU's guest would be.
        host::become_cpu(host::CPUS - 1);
        Self {
            stop,
            cpus,
            free_at_start,
            _one: one,
        }
    }

    /// Creates a domain of `mem_mib` MiB and `vcpus` vCPUs whose vCPUs run
    /// the programs `factory` makes; returns its id.
    pub fn create(
        &self,
        name: &str,
        vcpus: u32,
        paused: bool,
        factory: impl Fn(&BootState) -> Program + Send + Sync + 'static,
    ) -> u32 {
        self.create_as(name, vcpus, paused, false, factory)
    }

    /// [`Self::create`], privileged (a control domain) if `privileged`.
    pub fn create_as(
        &self,
        name: &str,
        vcpus: u32,
        paused: bool,
        privileged: bool,
        factory: impl Fn(&BootState) -> Program + Send + Sync + 'static,
    ) -> u32 {
        fake::next_domain(factory);
        let image = fake::image();
        let spec = DomainSpec {
            name,
            image: &image,
            kind: crate::domain::lifecycle::ImageKind::Pvabi,
            cmdline: "",
            memory: 4 << 20,
            nr_vcpus: vcpus,
            weight: 256,
            cap: 0,
            privileged,
            paused,
            budget: 0,
        };
        match lifecycle::create(Backend::Svm, &spec) {
            Ok(id) => id.0,
            Err(e) => panic!("creating {name}: {e}"),
        }
    }

    /// Waits until `cond` holds; fails the test (with the console) if it
    /// does not within [`PATIENCE`].
    pub fn wait(&self, what: &str, cond: impl Fn() -> bool) {
        let t0 = Instant::now();
        while !cond() {
            // A guest program's assertion failed on a CPU thread.
            if self.cpus.iter().any(JoinHandle::is_finished) {
                panic!(
                    "a CPU thread died while waiting for {what}; console:\n{}",
                    host::console_take()
                );
            }
            if t0.elapsed() > PATIENCE {
                panic!(
                    "waited {PATIENCE:?} for {what}; console:\n{}",
                    host::console_take()
                );
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits until no domain is alive and every frame and vCPU is back.
    pub fn wait_all_gone(&self) {
        self.wait("every domain to end", || {
            ALIVE.load(Ordering::Acquire) == 0 && DOMAINS.lock().is_empty()
        });
        assert_eq!(fake::unreleased(), 0, "vCPUs not released");
        assert_eq!(
            P::free_frame_count(),
            self.free_at_start,
            "frames not returned; console:\n{}",
            host::console_take()
        );
        assert_eq!(crate::sched::timers::next_due(), u64::MAX, "timers left");
    }

    /// Stops the CPUs; returns what was printed.
    pub fn stop(mut self) -> String {
        self.halt_cpus();
        host::console_take()
    }

    fn halt_cpus(&mut self) {
        if self.cpus.is_empty() {
            return;
        }
        // A test that failed half-way leaves domains: end them while the
        // CPUs still run, so the next test starts from an empty runtime.
        let left: Vec<Arc<Domain>> = DOMAINS.lock().domains().map(|(_, d)| d.clone()).collect();
        for d in left {
            d.finish("destroyed", -1, None);
        }
        let t0 = Instant::now();
        while !DOMAINS.lock().is_empty() && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.stop.store(true, Ordering::Release);
        for i in 0..self.cpus.len() {
            P::send_ipi(i);
        }
        for t in self.cpus.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.halt_cpus();
    }
}

/// Domain `id`, while it is in the domain table (dying ones included).
pub fn domain(id: u32) -> Option<Arc<Domain>> {
    DOMAINS.lock().get(DomainId(id)).cloned()
}

/// vCPU `index` of domain `id`.
pub fn vcpu(id: u32, index: u32) -> Option<Arc<VcpuEntry>> {
    DOMAINS.lock().vcpu(DomainId(id), index).cloned()
}

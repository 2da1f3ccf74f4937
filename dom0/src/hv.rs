//! The toolstack's [`Hypervisor`] over the domctl hypercalls, and the boot
//! modules dom0 was given.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use kestrel_toolstack::config::DomainConfig;
use kestrel_toolstack::server::{HvDomain, HvEnded, HvHost, Hypervisor};
use pvabi::guest::{domctl, sched, time};
use pvabi::{DOMAIN_FLAG_PRIVILEGED, DomainCreate, Error, MODULE_ELF, ModuleInfo};

/// One boot module.
pub struct Module {
    pub index: u32,
    pub name: String,
    pub elf: bool,
    pub size: u64,
}

fn text(bytes: &[u8], len: u32) -> String {
    let b = bytes.get(..len as usize).unwrap_or(bytes);
    String::from_utf8_lossy(b).into_owned()
}

fn module(index: u32, m: &ModuleInfo) -> Module {
    Module {
        index,
        name: text(&m.name, m.name_len),
        elf: m.kind == MODULE_ELF,
        size: m.size,
    }
}

/// The hypervisor as the toolstack sees it.
pub struct Hv {
    /// Every boot module but dom0's own (module 0).
    pub modules: Vec<Module>,
    /// Names of domains this dom0 created, for their console lines.
    pub created: Vec<(u32, String)>,
    /// The hypervisor's `PVABI_VERSION` (dom0's start info).
    pub abi: u32,
    /// Images sent at run time (`images.rs`).
    pub uploads: kestrel_toolstack::server::MemImages,
    /// The boot modules as images, hashed on first use.
    module_images: Option<Vec<kestrel_toolstack::proto::ImageInfo>>,
    /// The image store, when `[store]` names a disk that holds one.
    pub store: Option<crate::store::DiskStore>,
}

impl Hv {
    pub fn new() -> Result<Self, Error> {
        let host = domctl::host_info()?;
        let modules = (1..host.nr_modules)
            .filter_map(|i| domctl::module_info(i).ok().map(|m| module(i, &m)))
            .collect();
        Ok(Self {
            modules,
            created: Vec::new(),
            abi: 0,
            uploads: crate::images::keeper(),
            module_images: None,
            store: None,
        })
    }

    /// Bytes of a (data) module, at most `max`; `None` if longer or unreadable.
    pub fn read_module(&self, m: &Module, max: u64) -> Option<Vec<u8>> {
        if m.size > max {
            return None;
        }
        let mut out = Vec::new();
        let mut buf = [0u8; pvabi::DOMCTL_READ_MAX as usize];
        while (out.len() as u64) < m.size {
            let n = domctl::module_read(m.index, out.len() as u64, &mut buf).ok()?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(buf.get(..n)?);
        }
        Some(out)
    }

    /// Free memory now.
    pub fn free_bytes(&self) -> u64 {
        domctl::host_info().map_or(0, |h| h.free_bytes)
    }
}

impl Hypervisor for Hv {
    fn list(&mut self) -> Result<Vec<u32>, Error> {
        let mut ids = [0u32; 256];
        let n = domctl::list(&mut ids)?;
        Ok(ids.iter().take(n).copied().collect())
    }

    fn info(&mut self, id: u32) -> Result<HvDomain, Error> {
        let i = domctl::info(id)?;
        let name_len = i.name.iter().position(|&b| b == 0).unwrap_or(i.name.len());
        Ok(HvDomain {
            id: i.id,
            name: text(&i.name, name_len as u32),
            state: i.state,
            exit_code: i.exit_code,
            memory_bytes: i.max_pages.saturating_mul(4096),
            vcpus: i.nr_vcpus,
            weight: i.weight,
            cap: i.cap,
            cpu_time_ns: i.cpu_time_ns,
            privileged: i.flags & DOMAIN_FLAG_PRIVILEGED != 0,
            heap_budget: i.heap_budget,
            heap_used: i.heap_used,
            exits: i.exits,
            current_bytes: i.current_pages.saturating_mul(4096),
            // dom0 has none; an older hypervisor answers ENOSYS.
            target_bytes: (i.flags & DOMAIN_FLAG_PRIVILEGED == 0)
                .then(|| pvabi::guest::memtarget::get(id).ok())
                .flatten()
                .map(|p| p.saturating_mul(4096)),
        })
    }

    fn images(&mut self) -> Vec<String> {
        use kestrel_toolstack::server::ImageKeeper;
        let mut names: Vec<String> = self
            .modules
            .iter()
            .filter(|m| m.elf)
            .map(|m| m.name.clone())
            .collect();
        names.extend(self.uploads.list().into_iter().map(|i| i.name));
        // The store's images too: a domain may be built from them.
        if let Some(s) = &self.store {
            names.extend(
                s.objects()
                    .iter()
                    .filter(|o| o.kind == kestrel_store::Kind::Image)
                    .map(|o| o.name.clone()),
            );
        }
        names
    }

    fn module_images(&mut self) -> Vec<kestrel_toolstack::proto::ImageInfo> {
        let modules = &self.modules;
        self.module_images
            .get_or_insert_with(|| modules.iter().map(crate::images::module_info).collect())
            .clone()
    }

    fn keeper(&mut self) -> Option<&mut dyn kestrel_toolstack::server::ImageKeeper> {
        Some(&mut self.uploads)
    }

    fn create(&mut self, d: &DomainConfig) -> Result<u32, Error> {
        // An upload or a store image (a kernel or initramfs too): built
        // through stages (`images_store.rs`).
        if crate::images_store::needs_stage(self, d) {
            let id = crate::images_store::create(self, d)?;
            self.created.push((id, d.name.to_string()));
            return Ok(id);
        }
        let m = self
            .modules
            .iter()
            .find(|m| m.elf && m.name == d.image)
            .ok_or(Error::NoEntry)?;
        let mut req = DomainCreate::new(&d.name, m.index, d.memory_bytes(), d.vcpus);
        req.weight = d.weight;
        req.cap = d.cap;
        req.heap_budget = d.heap_budget_bytes();
        let id = if d.linux {
            // A Linux domain: its initramfs is any boot module (a cpio is
            // not an ELF), its command line up to 2,047 bytes.
            let initrd = match &d.initrd {
                None => pvabi::DOMCTL_NO_INITRD,
                Some(name) => {
                    self.modules
                        .iter()
                        .find(|m| &m.name == name)
                        .ok_or(Error::NoEntry)?
                        .index
                }
            };
            let mut linux = pvabi::DomainCreateLinuxRequest {
                create: req,
                linux: pvabi::DomainCreateLinux {
                    initrd_module: initrd,
                    cmdline_len: 0,
                    cmdline_gpa: 0,
                    _pad: 0,
                },
            };
            domctl::create_linux(&mut linux, d.cmdline.as_bytes())?
        } else {
            if !req.set_cmdline(&d.cmdline) {
                return Err(Error::TooBig);
            }
            domctl::create(&req)?
        };
        self.created.push((id, d.name.to_string()));
        Ok(id)
    }

    fn unpause(&mut self, id: u32) -> Result<(), Error> {
        domctl::unpause(id)
    }

    fn pause(&mut self, id: u32) -> Result<(), Error> {
        domctl::pause(id)
    }

    fn ended(&mut self, id: u32) -> Result<HvEnded, Error> {
        let i = domctl::ended(id)?;
        let reason = if i.flags & pvabi::DOMAIN_FLAG_EXITED != 0 {
            "exited"
        } else if i.flags & pvabi::DOMAIN_FLAG_REBOOTED != 0 {
            "rebooted"
        } else if i.flags & pvabi::DOMAIN_FLAG_DESTROYED != 0 {
            "destroyed"
        } else if i.flags & pvabi::DOMAIN_FLAG_CRASHED != 0 {
            "crashed"
        } else {
            "killed"
        };
        // What the hypervisor gave as the kill reason (an older one has
        // none to give: EINVAL).
        let mut why = [0u8; pvabi::DOMCTL_REASON_MAX as usize];
        let kill_reason = match domctl::end_reason(id, &mut why) {
            Ok(n) if n > 0 && reason == "killed" => {
                Some(String::from_utf8_lossy(why.get(..n).unwrap_or_default()).into_owned())
            }
            _ => None,
        };
        Ok(HvEnded {
            exit_code: i.exit_code,
            reason,
            kill_reason,
        })
    }

    fn log(&mut self) -> (Vec<String>, u64) {
        crate::persist::log_lines(self.store.as_mut())
    }

    fn console_history(&mut self, id: u32) -> Option<(Vec<String>, u64)> {
        crate::persist::console_lines(self.store.as_mut(), id)
    }

    fn console_history_named(&mut self, name: &str) -> Option<(Vec<String>, u64)> {
        crate::persist::console_lines_named(self.store.as_mut(), name)
    }

    fn pci_devices(&mut self) -> alloc::vec::Vec<alloc::string::String> {
        crate::pci::devices()
            .iter()
            .map(|d| crate::pci::describe(d).trim_start_matches("pci ").into())
            .collect()
    }

    fn disks(&mut self) -> alloc::vec::Vec<alloc::string::String> {
        crate::dev::disks::lines()
    }

    fn store(&mut self) -> Option<&mut dyn kestrel_toolstack::server::store::ImageStore> {
        self.store
            .as_mut()
            .map(|s| s as &mut dyn kestrel_toolstack::server::store::ImageStore)
    }

    fn host(&mut self) -> Result<HvHost, Error> {
        let h = domctl::host_info()?;
        Ok(HvHost {
            cpus: h.nr_cpus,
            total_bytes: h.total_bytes,
            free_bytes: h.free_bytes,
            domains: h.nr_domains,
            abi: self.abi,
        })
    }

    fn free_bytes(&mut self) -> Option<u64> {
        domctl::host_info().ok().map(|h| h.free_bytes)
    }

    fn now_ns(&mut self) -> u64 {
        time::now_ns()
    }

    fn request_shutdown(&mut self, id: u32, reboot: bool) -> Result<(), Error> {
        use pvabi::guest::lifecycle::{Request, request};
        request(
            id,
            if reboot {
                Request::Reboot
            } else {
                Request::PowerOff
            },
        )
    }

    fn set_sched(&mut self, id: u32, weight: u32, cap: u32) -> Result<(), Error> {
        pvabi::guest::lifecycle::set_sched(id, weight, cap)
    }

    fn set_mem_target(&mut self, id: u32, pages: u64) -> Result<u64, Error> {
        pvabi::guest::memtarget::set(id, pages)
    }

    fn assign_pci(&mut self, id: u32, sbdf: u32) -> Result<(), Error> {
        pvabi::guest::pci::assign(id, sbdf)
    }

    fn console_input(&mut self, id: u32, bytes: &[u8]) -> Result<usize, Error> {
        pvabi::guest::mgmt::console_write(id, bytes)
    }

    fn destroy(&mut self, id: u32) -> Result<(), Error> {
        domctl::destroy(id)?;
        // Its memory returns once its vCPUs are off their CPUs (a tick).
        let deadline = time::now_ns().saturating_add(5_000_000_000);
        while domctl::info(id).is_ok() {
            if time::now_ns() > deadline {
                return Err(Error::Busy);
            }
            sched::yield_now();
        }
        Ok(())
    }
}

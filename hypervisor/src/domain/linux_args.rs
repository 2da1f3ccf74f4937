//! A Linux boot module's arguments (`docs/linux-guest.md`):
//!
//! ```text
//! module2 /boot/vmlinux kind=linux initrd=initrd.cpio memory=64 console=hvc0 quiet
//! module2 /boot/vmlinux kind=linux initrd=initrd.cpio cmdline="console=hvc0 quiet"
//! ```
//!
//! `kind=linux` marks the kernel; `initrd=<module name>` names the module
//! with its initramfs; `memory=<MiB>` sizes the domain (default
//! [`DEFAULT_MEMORY_MIB`]); `vcpus=<n>` its vCPUs (1 to
//! `pvabi::DOMCTL_MAX_VCPUS`, default [`DEFAULT_VCPUS`]). The kernel command line is everything after
//! `cmdline=` (surrounding quotes dropped) when that word is there, else
//! every other word, in order. Pure: the boot path and the host tests
//! share it.
#![forbid(unsafe_code)]

use alloc::string::String;
use core::fmt;

/// Memory of a Linux boot-module domain without `memory=`: what a
/// tinyconfig kernel with a busybox initramfs needs, with room to spare.
pub const DEFAULT_MEMORY_MIB: u64 = 64;
/// vCPUs of a Linux boot-module domain without `vcpus=`: what every
/// boot-module domain gets.
pub const DEFAULT_VCPUS: u32 = crate::domain::lifecycle::DOMAIN_VCPUS;
/// Longest kernel command line a Linux boot-module domain takes: Linux's
/// own (`COMMAND_LINE_SIZE` 2,048 with its NUL), what a domain dom0
/// builds takes too.
pub const LINUX_CMDLINE_MAX: usize = pvabi::DOMCTL_LINUX_CMDLINE_MAX as usize;

/// What a `kind=linux` module asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinuxArgs<'a> {
    /// The initramfs module's name, if any.
    pub initrd: Option<&'a str>,
    /// Domain memory in bytes (a multiple of 2 MiB).
    pub memory: u64,
    /// vCPUs (Linux brings up as many CPUs).
    pub vcpus: u32,
    /// The kernel command line, at most [`LINUX_CMDLINE_MAX`] bytes.
    pub cmdline: String,
}

/// Why a `kind=linux` module's arguments were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgError {
    /// `memory=` is not a number of MiB that is even and within the
    /// domctl bounds.
    BadMemory,
    /// `vcpus=` is not a number from 1 to `pvabi::DOMCTL_MAX_VCPUS`.
    BadVcpus,
    /// The kernel command line is longer than [`LINUX_CMDLINE_MAX`]
    /// (its length).
    TooLong(usize),
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMemory => write!(
                f,
                "memory= must be an even number of MiB from {} to {}",
                pvabi::DOMCTL_MEMORY_MIN >> 20,
                pvabi::DOMCTL_MEMORY_MAX >> 20
            ),
            Self::BadVcpus => write!(
                f,
                "vcpus= must be a number from 1 to {}",
                pvabi::DOMCTL_MAX_VCPUS
            ),
            Self::TooLong(len) => write!(
                f,
                "the kernel command line is {len} bytes, longer than Linux's {LINUX_CMDLINE_MAX}"
            ),
        }
    }
}

/// `None` unless `args` contain the word `kind=linux`.
pub fn parse(args: &str) -> Option<Result<LinuxArgs<'_>, ArgError>> {
    if !args.split_ascii_whitespace().any(|w| w == "kind=linux") {
        return None;
    }
    Some(parse_linux(args))
}

fn parse_linux(args: &str) -> Result<LinuxArgs<'_>, ArgError> {
    let (head, tail) = match args.find("cmdline=") {
        // Only as a word of its own, not inside another argument.
        Some(i) if i == 0 || args[..i].ends_with(|c: char| c.is_ascii_whitespace()) => {
            (&args[..i], Some(&args[i + "cmdline=".len()..]))
        }
        _ => (args, None),
    };
    let mut out = LinuxArgs {
        initrd: None,
        memory: DEFAULT_MEMORY_MIB << 20,
        vcpus: DEFAULT_VCPUS,
        cmdline: String::new(),
    };
    let mut rest = String::new();
    for w in head.split_ascii_whitespace() {
        if w == "kind=linux" {
        } else if let Some(n) = w.strip_prefix("initrd=") {
            out.initrd = Some(n);
        } else if let Some(m) = w.strip_prefix("memory=") {
            let mib: u64 = m.parse().map_err(|_| ArgError::BadMemory)?;
            let bytes = mib.checked_mul(1 << 20).ok_or(ArgError::BadMemory)?;
            if !bytes.is_multiple_of(pvabi::DOMCTL_MEMORY_ALIGN)
                || !(pvabi::DOMCTL_MEMORY_MIN..=pvabi::DOMCTL_MEMORY_MAX).contains(&bytes)
            {
                return Err(ArgError::BadMemory);
            }
            out.memory = bytes;
        } else if let Some(v) = w.strip_prefix("vcpus=") {
            out.vcpus = v
                .parse()
                .ok()
                .filter(|n| (1..=pvabi::DOMCTL_MAX_VCPUS).contains(n))
                .ok_or(ArgError::BadVcpus)?;
        } else {
            if !rest.is_empty() {
                rest.push(' ');
            }
            rest.push_str(w);
        }
    }
    out.cmdline = match tail {
        Some(t) => {
            let t = t.trim();
            let t = t
                .strip_prefix('"')
                .and_then(|u| u.strip_suffix('"'))
                .unwrap_or(t);
            String::from(t)
        }
        None => rest,
    };
    if out.cmdline.len() > LINUX_CMDLINE_MAX {
        return Err(ArgError::TooLong(out.cmdline.len()));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn vcpus_are_checked_and_not_passed_on() {
        let a = parse("kind=linux vcpus=2 console=hvc0").unwrap().unwrap();
        assert_eq!((a.vcpus, a.cmdline.as_str()), (2, "console=hvc0"));
        assert_eq!(parse("kind=linux").unwrap().unwrap().vcpus, DEFAULT_VCPUS);
        let max = pvabi::DOMCTL_MAX_VCPUS;
        let a = std::format!("kind=linux vcpus={max}");
        assert_eq!(parse(&a).unwrap().unwrap().vcpus, max);
        for bad in ["vcpus=0", "vcpus=x", "vcpus=-1"] {
            let a = std::format!("kind=linux {bad}");
            assert_eq!(parse(&a).unwrap(), Err(ArgError::BadVcpus), "{bad}");
        }
        let a = std::format!("kind=linux vcpus={}", max + 1);
        assert_eq!(parse(&a).unwrap(), Err(ArgError::BadVcpus));
    }

    #[test]
    fn not_linux() {
        assert_eq!(parse(""), None);
        assert_eq!(parse("console=hvc0 kind=linuxish"), None);
    }

    #[test]
    fn words_form() {
        let a = parse("kind=linux initrd=init.cpio console=hvc0  quiet memory=128")
            .unwrap()
            .unwrap();
        assert_eq!(a.initrd, Some("init.cpio"));
        assert_eq!(a.memory, 128 << 20);
        assert_eq!(a.cmdline.as_str(), "console=hvc0 quiet");
    }

    #[test]
    fn cmdline_form_keeps_everything_after_it() {
        let a = parse("initrd=i kind=linux cmdline=\"console=hvc0 initrd=x kind=y\"")
            .unwrap()
            .unwrap();
        assert_eq!(a.initrd, Some("i"));
        assert_eq!(a.memory, DEFAULT_MEMORY_MIB << 20);
        assert_eq!(a.cmdline.as_str(), "console=hvc0 initrd=x kind=y");
        // Unquoted too (GRUB may drop the quotes).
        let a = parse("kind=linux cmdline=a b").unwrap().unwrap();
        assert_eq!(a.cmdline.as_str(), "a b");
        // Inside another word it is an ordinary word.
        let a = parse("kind=linux xcmdline=1").unwrap().unwrap();
        assert_eq!(a.cmdline.as_str(), "xcmdline=1");
    }

    #[test]
    fn cmdline_up_to_linux_limit() {
        // Both forms take Linux's whole 2,047 bytes (the module line
        // around them is longer still: `boot::info::MAX_MODULE_CMDLINE`).
        let pad = "p".repeat(LINUX_CMDLINE_MAX - "console=hvc0 x=".len());
        let args = std::format!("kind=linux initrd=i vcpus=2 console=hvc0 x={pad}");
        assert!(args.len() > LINUX_CMDLINE_MAX);
        let a = parse(&args).unwrap().unwrap();
        assert_eq!(a.cmdline.len(), LINUX_CMDLINE_MAX);
        assert_eq!(a.cmdline, std::format!("console=hvc0 x={pad}"));
        let quoted = std::format!("kind=linux initrd=i cmdline=\"console=hvc0 x={pad}\"");
        assert_eq!(parse(&quoted).unwrap().unwrap().cmdline, a.cmdline);
        // One byte more is refused, with the length and the limit named.
        let over = std::format!("kind=linux console=hvc0 x={pad}y");
        assert_eq!(
            parse(&over).unwrap(),
            Err(ArgError::TooLong(LINUX_CMDLINE_MAX + 1))
        );
        assert_eq!(
            std::format!("{}", ArgError::TooLong(2048)),
            "the kernel command line is 2048 bytes, longer than Linux's 2047"
        );
        let over = std::format!("kind=linux cmdline=\"console=hvc0 x={pad}y\"");
        assert_eq!(
            parse(&over).unwrap(),
            Err(ArgError::TooLong(LINUX_CMDLINE_MAX + 1))
        );
    }

    #[test]
    fn bad_memory() {
        for m in ["x", "3", "2", "2048", "99999999999999999"] {
            let args = std::format!("kind=linux memory={m}");
            assert_eq!(parse(&args), Some(Err(ArgError::BadMemory)), "{m}");
        }
        assert!(!std::format!("{}", ArgError::BadMemory).is_empty());
    }
}

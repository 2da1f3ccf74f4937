//! Host tools the image and test commands run, and the Debian packages that
//! provide them, so a missing one is reported with what to install.

use std::path::{Path, PathBuf};

use crate::bail;
use crate::error::Result;

/// A program on `PATH` and the Debian package that provides it.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    /// Executable name.
    pub program: &'static str,
    /// Debian/Ubuntu package.
    pub package: &'static str,
}

/// A data file (firmware, GRUB platform modules) and its package.
#[derive(Debug, Clone, Copy)]
pub struct DataFile {
    /// Absolute path.
    pub path: &'static str,
    /// Debian/Ubuntu package.
    pub package: &'static str,
}

/// `qemu-system-x86_64`.
pub const QEMU: Tool = Tool {
    program: "qemu-system-x86_64",
    package: "qemu-system-x86",
};
/// `grub-mkrescue`, which drives the rest of the ISO tool chain.
pub const GRUB_MKRESCUE: Tool = Tool {
    program: "grub-mkrescue",
    package: "grub-common",
};
/// ISO 9660 writer used by `grub-mkrescue`.
pub const XORRISO: Tool = Tool {
    program: "xorriso",
    package: "xorriso",
};
/// FAT tools `grub-mkrescue` uses for the EFI system partition image.
pub const MFORMAT: Tool = Tool {
    program: "mformat",
    package: "mtools",
};
/// Bochs (Intel VT-x/EPT emulation).
pub const BOCHS: Tool = Tool {
    program: "bochs",
    package: "bochs",
};

/// GRUB's BIOS platform files; without them the ISO does not boot on BIOS.
pub const GRUB_BIOS: DataFile = DataFile {
    path: "/usr/lib/grub/i386-pc/moddep.lst",
    package: "grub-pc-bin",
};
/// GRUB's UEFI platform files; without them the ISO does not boot on UEFI.
pub const GRUB_EFI: DataFile = DataFile {
    path: "/usr/lib/grub/x86_64-efi/moddep.lst",
    package: "grub-efi-amd64-bin",
};
/// OVMF code (UEFI firmware for QEMU), 4 MiB flash layout.
pub const OVMF_CODE: DataFile = DataFile {
    path: "/usr/share/OVMF/OVMF_CODE_4M.fd",
    package: "ovmf",
};
/// OVMF variable store template; each boot gets a writable copy.
pub const OVMF_VARS: DataFile = DataFile {
    path: "/usr/share/OVMF/OVMF_VARS_4M.fd",
    package: "ovmf",
};
/// Bochs' own BIOS (with ACPI tables, so the MADT is there).
pub const BOCHS_BIOS: DataFile = DataFile {
    path: "/usr/share/bochs/BIOS-bochs-latest",
    package: "bochsbios",
};
/// VGA BIOS for Bochs.
pub const BOCHS_VGABIOS: DataFile = DataFile {
    path: "/usr/share/vgabios/vgabios.bin",
    package: "vgabios",
};
/// Bochs display library we run headless with (`rfb`).
pub const BOCHS_RFB: DataFile = DataFile {
    path: "/usr/lib/x86_64-linux-gnu/bochs/plugins/libbx_rfb_gui.so",
    package: "bochs",
};

/// Finds `program` in `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

impl Tool {
    /// The program's path, or an error naming the package to install.
    pub fn require(self) -> Result<PathBuf> {
        match which(self.program) {
            Some(p) => Ok(p),
            None => bail!(
                "`{}` not found in PATH: install the `{}` package (tools/setup.sh does it: \
                 apt-get install {})",
                self.program,
                self.package,
                self.package
            ),
        }
    }
}

impl DataFile {
    /// The file's path, or an error naming the package to install.
    pub fn require(self) -> Result<&'static Path> {
        let p = Path::new(self.path);
        if p.is_file() {
            Ok(p)
        } else {
            bail!(
                "{} is missing: install the `{}` package (tools/setup.sh does it: apt-get install {})",
                self.path,
                self.package,
                self.package
            )
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    #[test]
    fn missing_tool_names_its_package() {
        let t = Tool {
            program: "kestrel-no-such-program",
            package: "kestrel-pkg",
        };
        let e = t.require().unwrap_err().to_string();
        assert!(
            e.contains("kestrel-no-such-program") && e.contains("`kestrel-pkg`"),
            "{e}"
        );
        let f = DataFile {
            path: "/nonexistent/kestrel",
            package: "kestrel-pkg",
        };
        let e = f.require().unwrap_err().to_string();
        assert!(
            e.contains("/nonexistent/kestrel") && e.contains("kestrel-pkg"),
            "{e}"
        );
    }

    #[test]
    fn finds_sh() {
        assert!(which("sh").is_some());
    }
}

//! Which virtualization backend a guest test runs on, and what that means
//! for the emulator and the serial log.

/// The two backends, each with the emulator CI can run it on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Backend {
    /// AMD-V with nested paging: QEMU TCG.
    Svm,
    /// VT-x with EPT: Bochs.
    Vmx,
}

impl Backend {
    /// The `exit=` option that ends the run on this emulator.
    pub fn exit(self) -> &'static str {
        match self {
            Self::Svm => "exit=qemu",
            Self::Vmx => "exit=bochs",
        }
    }

    /// A short name for test and file names.
    pub fn suffix(self) -> &'static str {
        match self {
            Self::Svm => "qemu",
            Self::Vmx => "bochs",
        }
    }

    /// The line naming the backend guests run with.
    pub fn running_line(self) -> &'static str {
        match self {
            Self::Svm => "virt: running guests with AMD-V/NPT",
            Self::Vmx => "virt: running guests with VT-x/EPT",
        }
    }
}

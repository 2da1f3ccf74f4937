//! The store's one error type. Every message names the problem (and the
//! object or block it concerns) so dom0 can log it and hvctl show it as is.

use alloc::string::String;
use core::fmt;

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// The disk failed a read, write or flush (the driver's message).
    Disk(String),
    /// Neither root slot holds a Kestrel store (no magic): a blank or
    /// foreign disk. `blank` when both root blocks read as zeros.
    NotAStore { blank: bool },
    /// The disk holds a store, but no root is usable (both damaged), or
    /// its metadata breaks a rule; the text says which and where.
    Corrupt(String),
    /// The disk is too small or its block size does not divide 4096.
    BadDisk(String),
    /// Not enough free space: `need` bytes asked for, `free` bytes free.
    NoSpace { need: u64, free: u64 },
    /// A name that breaks the naming rule (the text says which).
    BadName(String),
    /// An object of that kind and name exists already (or is being
    /// imported).
    Exists(String),
    /// No object of that kind and name.
    NotFound(String),
    /// A request the object or operation does not allow (writing an
    /// image, reading past the end, an import that got more or fewer
    /// bytes than it announced, ...).
    Invalid(String),
    /// A qcow2 file the importer cannot take (the text names the feature
    /// or the broken field).
    Qcow2(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Disk(w) => write!(f, "store disk: {w}"),
            StoreError::NotAStore { blank: true } => {
                write!(f, "the disk holds no store (it is blank)")
            }
            StoreError::NotAStore { blank: false } => write!(
                f,
                "the disk holds no store (its first blocks hold other data)"
            ),
            StoreError::Corrupt(w) => write!(f, "store damaged: {w}"),
            StoreError::BadDisk(w) => write!(f, "store disk unusable: {w}"),
            StoreError::NoSpace { need, free } => {
                write!(f, "store full: {need} bytes needed, {free} bytes free")
            }
            StoreError::BadName(w)
            | StoreError::Exists(w)
            | StoreError::NotFound(w)
            | StoreError::Invalid(w) => f.write_str(w),
            StoreError::Qcow2(w) => write!(f, "qcow2: {w}"),
        }
    }
}

/// The store's result.
pub type Result<T> = core::result::Result<T, StoreError>;

//! Status codes: what RAX holds after a hypercall.

use core::fmt;

/// A hypercall error: the negative values of RAX. The numbers are Linux's
/// errno values, negated, so a Linux guest can pass them on unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// `EPERM` (-1): the domain lacks the privilege the operation needs.
    Perm,
    /// `ENOENT` (-2): the object named does not exist (e.g. a page that is
    /// already released).
    NoEntry,
    /// `E2BIG` (-7): an argument (typically a length or count) is over its
    /// limit.
    TooBig,
    /// `ENOMEM` (-12): the domain's quota or the host's memory would be
    /// exceeded.
    NoMem,
    /// `EFAULT` (-14): a guest address is outside the guest's memory.
    Fault,
    /// `EBUSY` (-16): the object is in a state that forbids the operation
    /// (e.g. a vCPU that is already up).
    Busy,
    /// `EEXIST` (-17): the object already exists (e.g. a page that is
    /// already present).
    Exists,
    /// `EINVAL` (-22): an argument has a value the hypercall rejects.
    Invalid,
    /// `ENOSYS` (-38): no hypercall has the number in RAX.
    NoSys,
}

/// Status code of [`Error::Perm`].
pub const EPERM: i64 = -1;
/// Status code of [`Error::NoEntry`].
pub const ENOENT: i64 = -2;
/// Status code of [`Error::TooBig`].
pub const E2BIG: i64 = -7;
/// Status code of [`Error::NoMem`].
pub const ENOMEM: i64 = -12;
/// Status code of [`Error::Fault`].
pub const EFAULT: i64 = -14;
/// Status code of [`Error::Busy`].
pub const EBUSY: i64 = -16;
/// Status code of [`Error::Exists`].
pub const EEXIST: i64 = -17;
/// Status code of [`Error::Invalid`].
pub const EINVAL: i64 = -22;
/// Status code of [`Error::NoSys`].
pub const ENOSYS: i64 = -38;

impl Error {
    /// Every error this ABI version defines, in order of code (closest to
    /// zero first).
    pub const ALL: [Error; 9] = [
        Self::Perm,
        Self::NoEntry,
        Self::TooBig,
        Self::NoMem,
        Self::Fault,
        Self::Busy,
        Self::Exists,
        Self::Invalid,
        Self::NoSys,
    ];

    /// The status code (negative) the hypervisor puts in RAX.
    pub const fn code(self) -> i64 {
        match self {
            Self::Perm => EPERM,
            Self::NoEntry => ENOENT,
            Self::TooBig => E2BIG,
            Self::NoMem => ENOMEM,
            Self::Fault => EFAULT,
            Self::Busy => EBUSY,
            Self::Exists => EEXIST,
            Self::Invalid => EINVAL,
            Self::NoSys => ENOSYS,
        }
    }

    /// The conventional name (`"EFAULT"`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Perm => "EPERM",
            Self::NoEntry => "ENOENT",
            Self::TooBig => "E2BIG",
            Self::NoMem => "ENOMEM",
            Self::Fault => "EFAULT",
            Self::Busy => "EBUSY",
            Self::Exists => "EEXIST",
            Self::Invalid => "EINVAL",
            Self::NoSys => "ENOSYS",
        }
    }

    /// A short description, for log lines.
    pub const fn description(self) -> &'static str {
        match self {
            Self::Perm => "operation not permitted",
            Self::NoEntry => "no such object",
            Self::TooBig => "argument too large",
            Self::NoMem => "out of memory",
            Self::Fault => "bad guest address",
            Self::Busy => "busy",
            Self::Exists => "already exists",
            Self::Invalid => "invalid argument",
            Self::NoSys => "unknown hypercall",
        }
    }

    /// The status code as the raw RAX value.
    pub const fn to_rax(self) -> u64 {
        self.code() as u64
    }
}

/// A status code that is neither success nor a known [`Error`] (e.g. from a
/// newer hypervisor).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownStatus(pub i64);

impl fmt::Display for UnknownStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown hypercall status {}", self.0)
    }
}

impl TryFrom<i64> for Error {
    type Error = UnknownStatus;

    fn try_from(code: i64) -> Result<Self, UnknownStatus> {
        Self::ALL
            .iter()
            .copied()
            .find(|e| e.code() == code)
            .ok_or(UnknownStatus(code))
    }
}

impl From<Error> for i64 {
    fn from(e: Error) -> i64 {
        e.code()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.description())
    }
}

impl core::error::Error for Error {}

impl core::error::Error for UnknownStatus {}

/// Decodes RAX after a hypercall: `Ok(value)` for success (`>= 0` as
/// `i64`), `Err(Ok(error))` for a known error, `Err(Err(unknown))` for a
/// negative code this version does not know.
pub fn decode_status(rax: u64) -> Result<u64, Result<Error, UnknownStatus>> {
    let signed = rax as i64;
    if signed >= 0 {
        Ok(rax)
    } else {
        Err(Error::try_from(signed))
    }
}

/// Encodes a hypercall result as RAX: the value for success (which must fit
/// in `i64`; larger values become `EINVAL`), the negative code for an error.
pub fn encode_status(result: Result<u64, Error>) -> u64 {
    match result {
        Ok(v) if i64::try_from(v).is_ok() => v,
        Ok(_) => Error::Invalid.to_rax(),
        Err(e) => e.to_rax(),
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;

    #[test]
    fn codes_are_linux_errno() {
        let expect: [(Error, i64, &str); 9] = [
            (Error::Perm, -1, "EPERM"),
            (Error::NoEntry, -2, "ENOENT"),
            (Error::TooBig, -7, "E2BIG"),
            (Error::NoMem, -12, "ENOMEM"),
            (Error::Fault, -14, "EFAULT"),
            (Error::Busy, -16, "EBUSY"),
            (Error::Exists, -17, "EEXIST"),
            (Error::Invalid, -22, "EINVAL"),
            (Error::NoSys, -38, "ENOSYS"),
        ];
        for (e, code, name) in expect {
            assert_eq!(e.code(), code);
            assert_eq!(e.name(), name);
        }
        assert_eq!(Error::ALL.len(), expect.len());
    }

    #[test]
    fn error_round_trips() {
        for e in Error::ALL {
            assert!(e.code() < 0);
            assert_eq!(Error::try_from(e.code()), Ok(e));
            assert_eq!(i64::from(e), e.code());
            assert_eq!(decode_status(e.to_rax()), Err(Ok(e)));
            assert_eq!(encode_status(Err(e)), e.to_rax());
            assert_eq!(e.to_rax() as i64, e.code());
            assert!(format!("{e}").starts_with(e.name()));
            assert!(!e.description().is_empty());
        }
        // Codes are distinct.
        for (i, a) in Error::ALL.iter().enumerate() {
            for b in &Error::ALL[i + 1..] {
                assert_ne!(a.code(), b.code());
                assert!(a.code() > b.code(), "ALL is ordered by code");
            }
        }
        assert_eq!(format!("{}", Error::Fault), "EFAULT (bad guest address)");
        for unknown in [-3, -99, i64::MIN, 0, 5] {
            assert_eq!(Error::try_from(unknown), Err(UnknownStatus(unknown)));
        }
        assert_eq!(
            format!("{}", UnknownStatus(-99)),
            "unknown hypercall status -99"
        );
    }

    #[test]
    fn status_encoding() {
        assert_eq!(decode_status(0), Ok(0));
        assert_eq!(decode_status(4096), Ok(4096));
        assert_eq!(decode_status(i64::MAX as u64), Ok(i64::MAX as u64));
        assert_eq!(decode_status(-3i64 as u64), Err(Err(UnknownStatus(-3))));
        assert_eq!(decode_status(-1i64 as u64), Err(Ok(Error::Perm)));
        assert_eq!(encode_status(Ok(17)), 17);
        assert_eq!(encode_status(Ok(u64::MAX)), Error::Invalid.to_rax());
        for v in [0u64, 1, 4096, i64::MAX as u64] {
            assert_eq!(decode_status(encode_status(Ok(v))), Ok(v));
        }
    }
}

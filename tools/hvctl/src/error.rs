//! hvctl's errors and the exit status each one gives.

use std::fmt;
use std::process::ExitCode;

use kestrel_toolstack::proto::ProtoError;

#[derive(Debug)]
pub enum Error {
    /// dom0 answered with an error: exit 1.
    Refused(ProtoError),
    /// Bad arguments: exit 2.
    Usage(String),
    /// The configuration file failed its checks or could not be read: exit 2.
    Config(String),
    /// The socket could not be reached, or the connection broke: exit 3.
    Connection(String),
    /// No reply within the time limit: exit 3.
    Timeout(String),
    /// A reply that does not decode or another protocol version: exit 4.
    Protocol(String),
    /// `shutdown`/`reboot`: the guest did not end in time and dom0
    /// destroyed it: exit 5.
    Forced(String),
}

impl Error {
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Self::Refused(_) => 1,
            Self::Usage(_) | Self::Config(_) => 2,
            Self::Connection(_) | Self::Timeout(_) => 3,
            Self::Protocol(_) => 4,
            Self::Forced(_) => 5,
        })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The message says what went wrong; the code is for scripts
            // (`--json` prints it), not people (issue 15: "(exists)" noise).
            Self::Refused(e) => write!(f, "dom0 refused: {}", e.message),
            Self::Usage(m)
            | Self::Config(m)
            | Self::Connection(m)
            | Self::Timeout(m)
            | Self::Forced(m) => f.write_str(m),
            Self::Protocol(m) => write!(f, "protocol error: {m}"),
        }
    }
}

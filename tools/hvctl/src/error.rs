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
}

impl Error {
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Self::Refused(_) => 1,
            Self::Usage(_) | Self::Config(_) => 2,
            Self::Connection(_) | Self::Timeout(_) => 3,
            Self::Protocol(_) => 4,
        })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused(e) => {
                let code = serde_json::to_value(e.code).ok();
                let code = code.as_ref().and_then(|c| c.as_str()).unwrap_or("unknown");
                write!(f, "dom0 refused: {} ({code})", e.message)
            }
            Self::Usage(m) | Self::Config(m) | Self::Connection(m) | Self::Timeout(m) => {
                f.write_str(m)
            }
            Self::Protocol(m) => write!(f, "protocol error: {m}"),
        }
    }
}

//! Where dom0's management service is: `--socket`/`--tcp`/`--host`/`--serial`, else
//! `KESTREL_SOCKET`/`KESTREL_HOST`, else the configuration file
//! (`$KESTREL_CONFIG`, else `$XDG_CONFIG_HOME/kestrel/hvctl.toml`, else
//! `~/.config/kestrel/hvctl.toml`: `socket = "PATH"` or `host = "HOST[:PORT]"`),
//! else the demo's socket (`build/kestrel-mgmt.sock` in this repository).
//!
//! `--socket` and `--tcp` reach dom0's management *serial line* (a QEMU
//! chardev, a console server): the rescue channel, unauthenticated, as
//! safe as access to the console. `--host` reaches dom0's *network*
//! service, which speaks only the authenticated channel
//! (`kestrel_toolstack::secure`): it needs a key file, from `--key-file`,
//! else `KESTREL_KEY_FILE`, else `key_file = "PATH"` in the configuration
//! file.

use std::fmt;
use std::path::PathBuf;

use crate::error::Error;

/// dom0's management port when `--host`/`KESTREL_HOST`/`host` gives none.
pub const DEFAULT_PORT: u16 = 4444;

/// Where dom0's management service is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The serial line as a unix socket.
    Unix(PathBuf),
    /// The serial line as a TCP socket.
    Tcp(String),
    /// A serial device (`serial.rs`).
    Serial(PathBuf),
    /// dom0's network service (address with port), and the key file.
    Secure { addr: String, key_file: PathBuf },
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(p) | Self::Serial(p) => write!(f, "{}", p.display()),
            Self::Tcp(a) | Self::Secure { addr: a, .. } => f.write_str(a),
        }
    }
}

/// The demo's management socket (`cargo xtask qemu --dom0`, `./qemu-run.sh`).
pub fn demo_socket() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../build/kestrel-mgmt.sock"
    ))
}

/// `HOST` or `HOST:PORT` as an address with a port.
fn host_addr(h: &str) -> String {
    if h.rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        h.into()
    } else {
        format!("{h}:{DEFAULT_PORT}")
    }
}

/// What the places above give, first found wins.
pub struct Sources<'a> {
    pub socket: Option<PathBuf>,
    pub tcp: Option<String>,
    pub host: Option<String>,
    pub serial: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// The configuration file's path and text, if there is one.
    pub config: Option<(PathBuf, String)>,
    pub demo: PathBuf,
}

/// The configuration file hvctl reads, if any.
pub fn config_file(env: &dyn Fn(&str) -> Option<String>) -> Option<(PathBuf, String)> {
    let path = env("KESTREL_CONFIG").map(PathBuf::from).or_else(|| {
        let base = env("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".config")))?;
        Some(base.join("kestrel").join("hvctl.toml"))
    })?;
    let text = std::fs::read_to_string(&path).ok()?;
    Some((path, text))
}

/// `key = "value"` in a small TOML file (strings only; `#` comments).
fn config_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        if k.trim() != key {
            return None;
        }
        let v = v.trim();
        let v = v.strip_prefix('"')?;
        Some(v.get(..v.find('"')?)?.to_string())
    })
}

pub fn resolve(s: &Sources<'_>) -> Result<Target, Error> {
    let key_file = || -> Result<PathBuf, Error> {
        if let Some(k) = s
            .key_file
            .clone()
            .or_else(|| (s.env)("KESTREL_KEY_FILE").map(PathBuf::from))
        {
            return Ok(k);
        }
        if let Some(k) = s
            .config
            .as_ref()
            .and_then(|(_, t)| config_value(t, "key_file"))
        {
            return Ok(k.into());
        }
        Err(Error::Usage(
            "--host reaches dom0's authenticated network service and needs its key: give \
             --key-file FILE, set KESTREL_KEY_FILE, or write key_file = \"PATH\" in \
             ~/.config/kestrel/hvctl.toml (hvctl keygen makes a key; dom0's configuration \
             must name the same one)"
                .into(),
        ))
    };
    let host = |h: &str| -> Result<Target, Error> {
        Ok(Target::Secure {
            addr: host_addr(h),
            key_file: key_file()?,
        })
    };
    if s.key_file.is_some()
        && s.host.is_none()
        && (s.socket.is_some() || s.tcp.is_some() || s.serial.is_some())
    {
        return Err(Error::Usage(
            "--key-file is for --host (dom0's network service); --socket, --tcp and --serial reach the \
             serial line, which has no key"
                .into(),
        ));
    }
    let host_given = match s.host.as_deref() {
        Some(h) => Some(host(h)?),
        None => None,
    };
    let given = [
        s.socket.clone().map(Target::Unix),
        s.tcp.clone().map(Target::Tcp),
        host_given,
        s.serial.clone().map(Target::Serial),
    ];
    let mut given = given.into_iter().flatten();
    if let Some(t) = given.next() {
        if given.next().is_some() {
            return Err(Error::Usage(
                "give one of --socket, --tcp, --host and --serial, not several".into(),
            ));
        }
        return Ok(t);
    }
    match ((s.env)("KESTREL_SOCKET"), (s.env)("KESTREL_HOST")) {
        (Some(_), Some(_)) => {
            return Err(Error::Usage(
                "both KESTREL_SOCKET and KESTREL_HOST are set: unset one".into(),
            ));
        }
        (Some(p), None) => return Ok(Target::Unix(p.into())),
        (None, Some(h)) => return host(&h),
        (None, None) => {}
    }
    if let Some((path, text)) = &s.config {
        match (config_value(text, "socket"), config_value(text, "host")) {
            (Some(p), None) => return Ok(Target::Unix(p.into())),
            (None, Some(h)) => return host(&h),
            (Some(_), Some(_)) => {
                return Err(Error::Usage(format!(
                    "{}: give socket or host, not both",
                    path.display()
                )));
            }
            (None, None) => {
                return Err(Error::Usage(format!(
                    "{}: no socket = \"PATH\" or host = \"HOST[:PORT]\" in it",
                    path.display()
                )));
            }
        }
    }
    if s.demo.exists() {
        return Ok(Target::Unix(s.demo.clone()));
    }
    Err(Error::Usage(format!(
        "no management connection: give --socket PATH or --tcp HOST:PORT (or --host HOST), \
         set KESTREL_SOCKET or KESTREL_HOST, or write socket = \"PATH\" in \
         ~/.config/kestrel/hvctl.toml; the demo's socket {} does not exist (is ./qemu-run.sh running?)",
        s.demo.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src<'a>(env: &'a dyn Fn(&str) -> Option<String>) -> Sources<'a> {
        Sources {
            socket: None,
            tcp: None,
            host: None,
            serial: None,
            key_file: None,
            env,
            config: None,
            demo: "/nonexistent/demo.sock".into(),
        }
    }

    fn secure(addr: &str, key: &str) -> Target {
        Target::Secure {
            addr: addr.into(),
            key_file: key.into(),
        }
    }

    #[test]
    fn a_key_file_goes_with_host_only() {
        let none = |_: &str| None;
        let mut s = src(&none);
        s.tcp = Some("h:1".into());
        s.key_file = Some("/k".into());
        assert!(resolve(&s).is_err_and(|e| e.to_string().contains("serial line")));
        s.tcp = None;
        s.host = Some("h".into());
        assert_eq!(resolve(&s).ok(), Some(secure("h:4444", "/k")));
    }

    #[test]
    fn flags_then_environment_then_file_then_demo() {
        let none = |_: &str| None;
        let mut s = src(&none);
        let e = resolve(&s).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            e.contains("--socket PATH or --tcp HOST:PORT") && e.contains("/nonexistent/demo.sock"),
            "{e}"
        );
        s.demo = std::env::temp_dir();
        assert_eq!(resolve(&s).ok(), Some(Target::Unix(std::env::temp_dir())));
        s.config = Some(("c.toml".into(), "# mine\nhost = \"srv\"\n".into()));
        assert!(resolve(&s).is_err_and(|e| e.to_string().contains("needs its key")));
        s.config = Some((
            "c.toml".into(),
            "host = \"srv\"\nkey_file = \"/k\"\n".into(),
        ));
        assert_eq!(resolve(&s).ok(), Some(secure("srv:4444", "/k")));
        s.config = Some(("c.toml".into(), "nothing = 1\n".into()));
        assert!(resolve(&s).is_err_and(|e| e.to_string().contains("c.toml: no socket")));
        let env = |k: &str| match k {
            "KESTREL_HOST" => Some("10.0.0.2:7000".to_string()),
            "KESTREL_KEY_FILE" => Some("/env.key".to_string()),
            _ => None,
        };
        let mut s = src(&env);
        s.config = Some(("c.toml".into(), "socket = \"/s\"\n".into()));
        assert_eq!(resolve(&s).ok(), Some(secure("10.0.0.2:7000", "/env.key")));
        s.key_file = Some("/flag.key".into());
        assert_eq!(resolve(&s).ok(), Some(secure("10.0.0.2:7000", "/flag.key")));
        s.key_file = None;
        s.socket = Some("/flag".into());
        assert_eq!(resolve(&s).ok(), Some(Target::Unix("/flag".into())));
        s.host = Some("h".into());
        assert!(resolve(&s).is_err_and(|e| e.to_string().contains("not several")));
        s.host = None;
        s.socket = None;
        s.serial = Some("/dev/ttyS1".into());
        assert_eq!(resolve(&s).ok(), Some(Target::Serial("/dev/ttyS1".into())));
        s.tcp = Some("h:1".into());
        assert!(resolve(&s).is_err_and(|e| e.to_string().contains("--serial, not several")));
        let both = |k: &str| Some(k.to_string());
        assert!(resolve(&src(&both)).is_err_and(|e| e.to_string().contains("unset one")));
    }
}

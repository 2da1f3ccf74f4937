//! dom0's `[network]` table: the management service on its NIC (issue 14).
//!
//! ```toml
//! [network]
//! address = "10.0.2.15/24"   # an IPv4 address and prefix length, or "dhcp"
//! gateway = "10.0.2.2"       # optional; with a static address only
//! port = 4444                # the management port; default 4444
//! key_files = ["ops.key"]    # boot modules holding the keys dom0 accepts
//!                            # (64 hex digits each, `hvctl keygen`); at least one;
//!                            # dom0 checks they exist when it starts the service
//! ```
//!
//! Only dom0's boot configuration may have it: `hvctl create` sends
//! domains, not dom0's own settings.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use toml::de::{DeTable, DeValue};

use super::error::Sink;
use super::parse::{Value, found, integer, string};

/// The default management port (hvctl's `DEFAULT_PORT`).
pub const DEFAULT_PORT: u16 = 4444;
/// Most key files.
pub const MAX_KEYS: usize = 8;

const FIELDS: &[&str] = &["address", "gateway", "port", "key_files"];

/// How dom0 gets its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Address {
    Dhcp,
    Static { ip: [u8; 4], prefix: u8 },
}

/// The checked `[network]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    pub address: Address,
    pub gateway: Option<[u8; 4]>,
    pub port: u16,
    /// Boot module names.
    pub key_files: Vec<String>,
}

/// `a.b.c.d`.
pub fn ipv4(s: &str) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut parts = s.split('.');
    for o in &mut out {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *o = p.parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

const LABEL: &str = "network";

/// Checks the `[network]` table `v`; errors go to `sink`.
pub(super) fn network(sink: &mut Sink<'_>, v: &Value<'_>) -> Option<NetworkConfig> {
    let DeValue::Table(t) = v.get_ref() else {
        let msg = format!("expected a table [network], found {}", found(v.get_ref()));
        sink.push(v.span().start, Some(LABEL), None, msg);
        return None;
    };
    table(sink, v.span().start, t)
}

fn table(sink: &mut Sink<'_>, at: usize, t: &DeTable<'_>) -> Option<NetworkConfig> {
    let before = sink.errors.len();
    let (mut address, mut gateway, mut port, mut keys) = (None, None, DEFAULT_PORT, Vec::new());
    let mut seen_keys = false;
    for (k, v) in t.iter() {
        match k.get_ref().as_ref() {
            "address" => {
                let Some((s, at)) = string(sink, LABEL, "address", v) else {
                    continue;
                };
                address = parse_address(&s);
                if address.is_none() {
                    let msg = format!(
                        "expected \"dhcp\" or an IPv4 address with a prefix length such as \"10.0.2.15/24\", found {s:?}"
                    );
                    sink.push(at, Some(LABEL), Some("address"), msg);
                }
            }
            "gateway" => {
                let Some((s, at)) = string(sink, LABEL, "gateway", v) else {
                    continue;
                };
                gateway = ipv4(&s);
                if gateway.is_none() {
                    let msg = format!("expected an IPv4 address such as \"10.0.2.2\", found {s:?}");
                    sink.push(at, Some(LABEL), Some("gateway"), msg);
                }
            }
            "port" => {
                let n = integer(sink, LABEL, "port", v, "a TCP port", 1, 65535);
                port = n
                    .and_then(|n| u16::try_from(n).ok())
                    .unwrap_or(DEFAULT_PORT);
            }
            "key_files" => {
                seen_keys = true;
                let DeValue::Array(a) = v.get_ref() else {
                    let msg = format!(
                        "expected an array of boot module names, found {}",
                        found(v.get_ref())
                    );
                    sink.push(v.span().start, Some(LABEL), Some("key_files"), msg);
                    continue;
                };
                for item in a.iter() {
                    let Some((s, _)) = string(sink, LABEL, "key_files", item) else {
                        continue;
                    };
                    keys.push(s);
                }
                if a.len() > MAX_KEYS {
                    let msg = format!("at most {MAX_KEYS} key files, found {}", a.len());
                    sink.push(v.span().start, Some(LABEL), Some("key_files"), msg);
                }
            }
            other => {
                let msg = format!("unknown field {other:?} (known: {})", FIELDS.join(", "));
                sink.push(k.span().start, Some(LABEL), None, msg);
            }
        }
    }
    if address.is_none() && sink.errors.len() == before {
        sink.push(
            at,
            Some(LABEL),
            Some("address"),
            "missing: \"dhcp\" or an address such as \"10.0.2.15/24\"".to_string(),
        );
    }
    if !seen_keys || (keys.is_empty() && sink.errors.len() == before) {
        sink.push(
            at,
            Some(LABEL),
            Some("key_files"),
            "missing: the network service accepts only authenticated clients; name at least one key file (hvctl keygen)".to_string(),
        );
    }
    if matches!(address, Some(Address::Dhcp)) && gateway.is_some() {
        sink.push(
            at,
            Some(LABEL),
            Some("gateway"),
            "with dhcp the gateway comes from the DHCP server".to_string(),
        );
    }
    if sink.errors.len() != before {
        return None;
    }
    Some(NetworkConfig {
        address: address?,
        gateway,
        port,
        key_files: keys,
    })
}

fn parse_address(s: &str) -> Option<Address> {
    if s == "dhcp" {
        return Some(Address::Dhcp);
    }
    let (ip, prefix) = s.split_once('/')?;
    let prefix: u8 = prefix.parse().ok().filter(|p| (1..=32).contains(p))?;
    Some(Address::Static {
        ip: ipv4(ip)?,
        prefix,
    })
}

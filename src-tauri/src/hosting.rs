//! Hosting from this machine: what the embedded server keeps between starts and what its
//! invite links name.
//!
//! The embedded server is a real server. It listens on every interface (`::`, which also
//! serves IPv4; `0.0.0.0` where the machine has no IPv6) at ports chosen free the first
//! time and reused at every later start, serves https with a self-signed certificate kept
//! in its data dir, and keeps one meeting. [`HostRecord`] (`host.json` in the server's
//! data dir, beside its database and certificate) remembers the ports, the meeting and the
//! address the last invitations named, so links handed out yesterday still reach the same
//! server, certificate and meeting today.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use url::Url;

/// The record's file name, in the embedded server's data dir.
pub const HOST_FILE: &str = "host.json";

/// What hosting keeps between starts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostRecord {
    /// The HTTPS port (admin API and signaling): the `server=` of every link.
    pub http_port: Option<u16>,
    /// The media port (UDP, and TCP for ICE-TCP).
    pub media_port: Option<u16>,
    /// The meeting this app hosts.
    pub meeting_id: Option<String>,
    /// The address the last invitations named (an interface address, or a public host).
    pub invite_address: Option<String>,
}

impl HostRecord {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(HOST_FILE)
    }

    /// The stored record; none yet is the empty record. A file that cannot be read as one
    /// is moved aside (`host.json.bad`) and hosting starts afresh, which it says.
    pub fn load(data_dir: &Path) -> HostRecord {
        let path = Self::path(data_dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return HostRecord::default(),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the hosting record; starting afresh");
                return HostRecord::default();
            }
        };
        match serde_json::from_str(&text) {
            Ok(record) => record,
            Err(e) => {
                let aside = path.with_extension("json.bad");
                let _ = std::fs::rename(&path, &aside);
                tracing::warn!(path = %path.display(), error = %e, "the hosting record is damaged (kept as {}); starting afresh", aside.display());
                HostRecord::default()
            }
        }
    }

    /// Writes the record (whole: a temporary file renamed over the old one).
    pub fn save(&self, data_dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(data_dir)?;
        let path = Self::path(data_dir);
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).map_err(io::Error::other)?;
        std::fs::write(&tmp, text + "\n")?;
        std::fs::rename(&tmp, &path)
    }
}

/// One address of this machine, for the "Invite people" choice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostAddress {
    pub ip: IpAddr,
    /// The interface's name (`eth0`, `wlp2s0`, ...).
    pub interface: String,
    /// Reachable from this machine only.
    pub loopback: bool,
}

/// The machine's addresses others may reach the server at: IPv4 first, then IPv6 (only
/// when the server serves IPv6), loopback last. Link-local, multicast and unspecified
/// addresses are left out (they need a scope or reach no one).
pub fn interface_addresses(with_v6: bool) -> Vec<HostAddress> {
    let mut out: Vec<HostAddress> = onstage_server::sfu::net::interface_addresses(with_v6)
        .into_iter()
        .map(|a| HostAddress {
            ip: a.ip,
            loopback: a.ip.is_loopback(),
            interface: a.name,
        })
        .collect();
    if out.is_empty() {
        out.push(HostAddress {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            interface: "lo".into(),
            loopback: true,
        });
    }
    out
}

/// Why an address typed for the links cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("the address is empty")]
    Empty,
    #[error("{0:?} is not an IP address or a host name")]
    BadHost(String),
    #[error("{0:?} is not a port (1 to 65535)")]
    BadPort(String),
    #[error("the embedded server speaks https; leave out {0:?}")]
    Scheme(String),
}

/// The server URL of invite links for `address`: an IPv4 or IPv6 address (brackets
/// optional) or a host name, optionally with `:port` (a port forwarded to this machine
/// under another number); without one, `port`. Always `https://`.
pub fn server_url(address: &str, port: u16) -> Result<Url, AddressError> {
    let address = address.trim();
    if address.is_empty() {
        return Err(AddressError::Empty);
    }
    let rest = match address.split_once("://") {
        Some(("https", rest)) => rest.trim_end_matches('/'),
        Some((scheme, _)) => return Err(AddressError::Scheme(format!("{scheme}://"))),
        None => address,
    };
    let (host, explicit_port) = split_host_port(rest)?;
    let port = match explicit_port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| AddressError::BadPort(p.to_owned()))?,
        None => port,
    };
    let host_part = match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Err(_) if is_dns_name(host) => host.to_ascii_lowercase(),
        Err(_) => return Err(AddressError::BadHost(host.to_owned())),
    };
    Url::parse(&format!("https://{host_part}:{port}"))
        .map_err(|_| AddressError::BadHost(host.to_owned()))
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address.
fn split_host_port(text: &str) -> Result<(&str, Option<&str>), AddressError> {
    if let Some(inner) = text.strip_prefix('[') {
        let (host, after) = inner
            .split_once(']')
            .ok_or_else(|| AddressError::BadHost(text.to_owned()))?;
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(AddressError::BadHost(text.to_owned()));
        }
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(AddressError::BadHost(text.to_owned())),
            },
        };
    }
    match text.matches(':').count() {
        0 => Ok((text, None)),
        1 => {
            let (host, port) = text.split_once(':').unwrap_or((text, ""));
            Ok((host, Some(port)))
        }
        // More than one colon: a bare IPv6 address (no port possible without brackets).
        _ => Ok((text, None)),
    }
}

fn is_dns_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        // All digits and dots is a mistyped IPv4 address, not a name.
        && !host.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_from_addresses() {
        let ok = |a: &str| server_url(a, 8443).map(|u| u.to_string());
        assert_eq!(ok("10.99.0.1").unwrap(), "https://10.99.0.1:8443/");
        assert_eq!(
            ok(" 192.168.1.20:9000 ").unwrap(),
            "https://192.168.1.20:9000/"
        );
        assert_eq!(ok("fd00::1").unwrap(), "https://[fd00::1]:8443/");
        assert_eq!(ok("[fd00::1]").unwrap(), "https://[fd00::1]:8443/");
        assert_eq!(ok("[fd00::1]:443").unwrap(), "https://[fd00::1]/");
        assert_eq!(
            ok("Meet.Example.com").unwrap(),
            "https://meet.example.com:8443/"
        );
        assert_eq!(
            ok("meet.example.com:443").unwrap(),
            "https://meet.example.com/"
        );
        assert_eq!(
            ok("https://meet.example.com:9/").unwrap(),
            "https://meet.example.com:9/"
        );
        assert_eq!(server_url("", 1), Err(AddressError::Empty));
        for bad in [
            "http://h",
            "ftp://h",
            "host:0",
            "host:99999",
            "host:x",
            "bad_name",
            "a..b",
            "-a.b",
            "300.1.1.1",
            "[fd00::1",
            "[nothost]:1",
            "[fd00::1]x",
            "a b",
            "user@host",
        ] {
            assert!(server_url(bad, 8443).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_record_survives_a_round_trip_and_a_damaged_one_is_put_aside() {
        let dir = std::env::temp_dir().join(format!("onstage-host-{}", uuid::Uuid::new_v4()));
        assert_eq!(HostRecord::load(&dir), HostRecord::default());
        let record = HostRecord {
            http_port: Some(41000),
            media_port: Some(41001),
            meeting_id: Some("m-1".into()),
            invite_address: Some("10.0.0.5".into()),
        };
        record.save(&dir).unwrap();
        assert_eq!(HostRecord::load(&dir), record);
        // Fields added later (or removed) do not make an old file unreadable.
        std::fs::write(HostRecord::path(&dir), r#"{"http_port":5,"future":1}"#).unwrap();
        assert_eq!(HostRecord::load(&dir).http_port, Some(5));
        std::fs::write(HostRecord::path(&dir), "{not json").unwrap();
        assert_eq!(HostRecord::load(&dir), HostRecord::default());
        assert!(dir.join("host.json.bad").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn addresses_list_loopback_last() {
        let list = interface_addresses(true);
        assert!(!list.is_empty());
        let first_loopback = list.iter().position(|a| a.loopback).unwrap_or(list.len());
        assert!(list[first_loopback..].iter().all(|a| a.loopback));
        assert!(interface_addresses(false).iter().all(|a| a.ip.is_ipv4()));
    }
}

//! `[[scan.snmp]]`: the routers a scanner reads, each with its segment,
//! the subnets it serves and its credentials (from files only).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::Deserialize;

use super::{Credentials, Source};
use crate::{secret::Secret, settings::Error, units::parse_duration};

/// At most this many sources per scanner: each is read every sweep.
pub const MAX_SOURCES: usize = 32;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_RETRIES: u32 = 1;
const DEFAULT_UPLINK_MACS: usize = 8;
const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);
/// A read past a minute is a router that drips, whatever it is told.
const MAX_DEADLINE: Duration = Duration::from_secs(60);

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    /// A DNS label naming it: its hosts' source is `snmp:NAME`.
    pub name: String,
    /// `HOST` or `HOST:PORT` (161 by default), an address, not a name.
    pub address: String,
    /// The network segment its hosts are on (a DNS label); with `subnets`.
    #[serde(default)]
    pub segment: String,
    /// The subnets it serves (IPv4 and IPv6 CIDRs), whose hosts its
    /// neighbour table gives; other rows are dropped.
    #[serde(default)]
    pub subnets: Vec<String>,
    /// A switch: read its forwarding table for each device's port.
    #[serde(default)]
    pub ports: bool,
    /// Ports (by ifName) that lead to other switches, beside those found
    /// by LLDP and by their crowd of MACs.
    #[serde(default)]
    pub uplinks: Vec<String>,
    /// A port with more MACs than this is an uplink (default 8).
    pub uplink_macs: Option<usize>,
    /// "2c" or "3".
    pub version: String,
    /// v2c: the file holding the community.
    pub community_file: Option<PathBuf>,
    /// v3 (authPriv only): the user, its protocols and password files.
    pub user: Option<String>,
    pub auth: Option<String>,
    pub auth_password_file: Option<PathBuf>,
    pub privacy: Option<String>,
    pub privacy_password_file: Option<PathBuf>,
    pub timeout: Option<String>,
    pub retries: Option<u32>,
    pub deadline: Option<String>,
    pub max_age: Option<String>,
}

/// Every source, checked: names unique, each field whole.
pub fn resolve(raw: &[RawSource]) -> Result<Vec<Source>, Error> {
    if raw.len() > MAX_SOURCES {
        return Err(Error(format!(
            "scan.snmp: {} sources, at most {MAX_SOURCES}",
            raw.len()
        )));
    }
    let mut out: Vec<Source> = Vec::new();
    for r in raw {
        let s = one(r)?;
        if out.iter().any(|o| o.name == s.name) {
            return Err(Error(format!("scan.snmp: {:?} is named twice", s.name)));
        }
        out.push(s);
    }
    Ok(out)
}

fn one(r: &RawSource) -> Result<Source, Error> {
    let at = |field: &str, why: String| Error(format!("scan.snmp[{:?}].{field}: {why}", r.name));
    crate::db::load::check_dns_label(&r.name)
        .map_err(|why| Error(format!("scan.snmp: name {:?} {why}", r.name)))?;
    if !r.subnets.is_empty() {
        crate::db::load::check_dns_label(&r.segment)
            .map_err(|why| at("segment", format!("{:?} {why}", r.segment)))?;
    }
    let address = address(&r.address).ok_or_else(|| {
        at(
            "address",
            format!(
                "{:?} is not an address like 198.18.1.1 or [2001:db8::1]:161",
                r.address
            ),
        )
    })?;
    if r.subnets.is_empty() && !r.ports {
        return Err(at(
            "subnets",
            "name the subnets it serves (a router's neighbour table), or set ports = true (a switch's forwarding table)".into(),
        ));
    }
    let serves = r
        .subnets
        .iter()
        .map(|t| {
            t.parse()
                .map_err(|_| at("subnets", format!("{t:?} is not a CIDR like 198.18.2.0/24")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let wait = |field: &str, text: &Option<String>, default: Duration| match text {
        None => Ok(default),
        Some(t) => parse_duration(t)
            .filter(|d| *d >= Duration::from_millis(10))
            .ok_or_else(|| at(field, format!("{t:?} is not a duration of at least 10ms"))),
    };
    let timeout = wait("timeout", &r.timeout, DEFAULT_TIMEOUT)?;
    let deadline = wait("deadline", &r.deadline, DEFAULT_DEADLINE)?;
    if deadline > MAX_DEADLINE || deadline < timeout {
        return Err(at(
            "deadline",
            format!("{deadline:?}: between the timeout ({timeout:?}) and {MAX_DEADLINE:?}"),
        ));
    }
    let retries = r.retries.unwrap_or(DEFAULT_RETRIES);
    if retries > 5 {
        return Err(at("retries", format!("{retries}: at most 5")));
    }
    Ok(Source {
        name: r.name.clone(),
        address,
        credentials: credentials(r, &at)?,
        segment: r.segment.clone(),
        serves,
        ports: port_rules(r, &at)?,
        timeout,
        retries,
        deadline,
        max_age: match &r.max_age {
            None => None,
            some => Some(wait("max_age", some, Duration::ZERO)?),
        },
    })
}

/// A switch's rules for which ports are uplinks; None when it is no
/// switch (and then it names none).
fn port_rules(
    r: &RawSource,
    at: &dyn Fn(&str, String) -> Error,
) -> Result<Option<super::PortRules>, Error> {
    if !r.ports && (!r.uplinks.is_empty() || r.uplink_macs.is_some()) {
        return Err(at(
            "uplinks",
            "uplinks and uplink_macs are for a switch: set ports = true".into(),
        ));
    }
    if r.uplink_macs == Some(0) {
        return Err(at(
            "uplink_macs",
            "at least 1 (a device's port holds its MAC)".into(),
        ));
    }
    if r.uplinks.len() > 256 || r.uplinks.iter().any(|u| u.is_empty() || u.len() > 64) {
        return Err(at(
            "uplinks",
            "at most 256 port names of 1 to 64 characters".into(),
        ));
    }
    Ok(r.ports.then(|| super::PortRules {
        uplink_macs: r.uplink_macs.unwrap_or(DEFAULT_UPLINK_MACS),
        uplinks: r.uplinks.clone(),
    }))
}

fn address(text: &str) -> Option<SocketAddr> {
    text.parse::<SocketAddr>()
        .ok()
        .or_else(|| Some(SocketAddr::new(text.parse().ok()?, 161)))
        .or_else(|| {
            let inner = text.strip_prefix('[')?.strip_suffix(']')?;
            Some(SocketAddr::new(inner.parse().ok()?, 161))
        })
}

fn credentials(r: &RawSource, at: &dyn Fn(&str, String) -> Error) -> Result<Credentials, Error> {
    let secret = |field: &str, path: &Option<PathBuf>| match path {
        None => Err(at(field, "missing: give the file that holds it".into())),
        Some(p) => Secret::from_file(p).map_err(|e| at(field, e.to_string())),
    };
    let v3_only = [
        ("user", r.user.is_some()),
        ("auth", r.auth.is_some()),
        ("privacy", r.privacy.is_some()),
    ];
    match r.version.as_str() {
        "2c" => {
            if let Some((field, _)) = v3_only.iter().find(|(_, given)| *given) {
                return Err(at(field, "is for version \"3\"".into()));
            }
            Ok(Credentials::V2c {
                community: secret("community_file", &r.community_file)?,
            })
        }
        "3" => {
            let user = r
                .user
                .clone()
                .filter(|u| {
                    !u.is_empty() && u.len() <= 32 && u.chars().all(|c| c.is_ascii_graphic())
                })
                .ok_or_else(|| {
                    at(
                        "user",
                        "give the SNMPv3 user (printable, at most 32 characters)".into(),
                    )
                })?;
            let auth = r.auth.as_deref().unwrap_or("").parse().map_err(|_| {
                at(
                    "auth",
                    "one of md5, sha, sha224, sha256, sha384, sha512".into(),
                )
            })?;
            let privacy = r.privacy.as_deref().unwrap_or("").parse().map_err(|_| {
                at(
                    "privacy",
                    "one of des, 3des, aes (aes128), aes192-blumenthal, aes256-blumenthal".into(),
                )
            })?;
            let password = |field: &str, path: &Option<PathBuf>| {
                let s = secret(field, path)?;
                if s.expose().len() < 8 {
                    return Err(at(
                        field,
                        "shorter than 8 characters: SNMPv3 needs 8".into(),
                    ));
                }
                Ok(s)
            };
            let auth_password = password("auth_password_file", &r.auth_password_file)?;
            let privacy_password = password("privacy_password_file", &r.privacy_password_file)?;
            // The client's own check (protocols it can pair), at start
            // rather than at every sweep.
            async_snmp::UsmConfig::new(user.clone().into_bytes())
                .auth_priv(
                    auth,
                    auth_password.expose(),
                    privacy,
                    privacy_password.expose(),
                )
                .map_err(|e| at("privacy", e.to_string()))?;
            Ok(Credentials::V3 {
                user,
                auth,
                auth_password,
                privacy,
                privacy_password,
            })
        }
        other => Err(at(
            "version",
            format!("{other:?}: \"2c\", or \"3\" (authPriv)"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(dir: &std::path::Path) -> RawSource {
        let f = dir.join("community");
        std::fs::write(&f, "s3cret\n").unwrap();
        RawSource {
            name: "gw".into(),
            address: "198.18.1.1".into(),
            segment: "guest".into(),
            subnets: vec!["198.18.2.0/24".into()],
            version: "2c".into(),
            community_file: Some(f),
            ..Default::default()
        }
    }

    #[test]
    fn a_v2c_source_resolves_with_its_defaults() {
        let d = tempfile::tempdir().unwrap();
        let s = resolve(&[raw(d.path())]).unwrap();
        assert_eq!(s[0].address, "198.18.1.1:161".parse().unwrap());
        assert_eq!(s[0].tag(), "snmp:gw");
        assert_eq!(s[0].timeout, DEFAULT_TIMEOUT);
        match &s[0].credentials {
            Credentials::V2c { community } => assert_eq!(community.expose(), "s3cret"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn each_bad_field_is_named() {
        let d = tempfile::tempdir().unwrap();
        type Change = Box<dyn Fn(&mut RawSource)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|r| r.address = "router.lan".into()), ".address:"),
            (Box::new(|r| r.subnets = vec![]), ".subnets:"),
            (
                Box::new(|r| r.uplinks = vec!["ge-0/0/48".into()]),
                ".uplinks:",
            ),
            (
                Box::new(|r| {
                    r.ports = true;
                    r.uplink_macs = Some(0);
                }),
                ".uplink_macs:",
            ),
            (
                Box::new(|r| {
                    r.ports = true;
                    r.uplinks = vec![String::new()];
                }),
                ".uplinks:",
            ),
            (Box::new(|r| r.subnets = vec!["nope".into()]), ".subnets:"),
            (Box::new(|r| r.segment = "Bad Seg".into()), ".segment:"),
            (Box::new(|r| r.version = "1".into()), ".version:"),
            (Box::new(|r| r.user = Some("u".into())), ".user:"),
            (Box::new(|r| r.community_file = None), ".community_file:"),
            (
                Box::new(|r| r.community_file = Some("/nonexistent/c".into())),
                ".community_file:",
            ),
            (Box::new(|r| r.timeout = Some("0s".into())), ".timeout:"),
            (Box::new(|r| r.retries = Some(9)), ".retries:"),
            (Box::new(|r| r.deadline = Some("2h".into())), ".deadline:"),
            (
                Box::new(|r| {
                    r.timeout = Some("5s".into());
                    r.deadline = Some("1s".into());
                }),
                ".deadline:",
            ),
            (
                Box::new(|r| {
                    r.version = "3".into();
                    r.community_file = None;
                    r.user = Some("mdb".into());
                    r.auth = Some("sha".into());
                    r.privacy = Some("rot13".into());
                }),
                ".privacy:",
            ),
        ];
        for (change, want) in cases {
            let mut r = raw(d.path());
            change(&mut r);
            let e = resolve(&[r]).unwrap_err().0;
            assert!(
                e.starts_with("scan.snmp[\"gw\"]") && e.contains(want),
                "{e}"
            );
        }
        let twice = resolve(&[raw(d.path()), raw(d.path())]).unwrap_err().0;
        assert!(twice.contains("named twice"), "{twice}");
    }

    #[test]
    fn a_switch_needs_no_segment() {
        let d = tempfile::tempdir().unwrap();
        let mut r = raw(d.path());
        r.subnets.clear();
        r.segment.clear();
        r.ports = true;
        let s = resolve(&[r]).unwrap();
        assert!(s[0].serves.is_empty());
        assert_eq!(
            s[0].ports.as_ref().map(|p| p.uplink_macs),
            Some(DEFAULT_UPLINK_MACS)
        );
    }

    #[test]
    fn a_v3_source_needs_every_secret() {
        let d = tempfile::tempdir().unwrap();
        let pw = d.path().join("pw");
        std::fs::write(&pw, "authpass123").unwrap();
        let short = d.path().join("short");
        std::fs::write(&short, "1234567").unwrap();
        let mut r = raw(d.path());
        r.version = "3".into();
        r.community_file = None;
        r.user = Some("mdb".into());
        r.auth = Some("SHA".into());
        r.auth_password_file = Some(pw.clone());
        r.privacy = Some("AES".into());
        let e = resolve(std::slice::from_ref(&r)).unwrap_err().0;
        assert!(e.contains(".privacy_password_file: missing"), "{e}");
        r.privacy_password_file = Some(short);
        let e = resolve(std::slice::from_ref(&r)).unwrap_err().0;
        assert!(e.contains(".privacy_password_file: shorter than 8"), "{e}");
        r.privacy_password_file = Some(pw);
        let s = resolve(&[r]).unwrap();
        assert!(matches!(s[0].credentials, Credentials::V3 { .. }));
        assert!(!format!("{:?}", s[0]).contains("authpass123"));
    }
}

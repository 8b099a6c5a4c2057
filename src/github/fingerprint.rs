//! The identity of a problem on GitHub: which kind of problem and whose.
//! Its text form (`new-device:mac=dc:a6:32:00:00:23`) rides in a hidden
//! marker in every issue and pull request body mdb writes, which is what
//! makes filing idempotent across restarts and lost answers.

use std::{fmt, net::IpAddr, str::FromStr};

use crate::{
    net::Mac,
    proto::{DiscoveredHost, HostState},
};

/// What kind of problem an issue is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    NewDevice,
    Unprovisionable,
    Conflict,
    /// A readiness check or a provisioning run failed (the runner's).
    Provisioning,
    /// A database machine that opted in has been down too long.
    Missing,
}

impl Kind {
    pub const WORDS: &'static [(&'static str, Kind)] = &[
        ("new-device", Kind::NewDevice),
        ("unprovisionable", Kind::Unprovisionable),
        ("conflict", Kind::Conflict),
        ("provisioning", Kind::Provisioning),
        ("missing", Kind::Missing),
    ];

    /// The word labels and fingerprints use.
    pub fn word(self) -> &'static str {
        crate::db::words::word_in(Kind::WORDS, self)
    }
}

/// Whose problem it is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    Mac(Mac),
    Ip(IpAddr),
    Machine(String),
    Cluster(String),
    /// The name a host with a random MAC announces (its history key), so
    /// a new MAC and a new lease are still the same device.
    Name(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint {
    pub kind: Kind,
    pub subject: Subject,
}

impl Fingerprint {
    /// A machine's name for a machine that cannot be provisioned, the
    /// address for a conflict, and for a new device its MAC when that is
    /// not randomised, else its IP.
    pub fn of(h: &DiscoveredHost) -> Option<Fingerprint> {
        let ip = h.ip.parse::<IpAddr>().ok();
        let (kind, subject) = match HostState::try_from(h.state) {
            Ok(HostState::Unprovisionable) if !h.machine.is_empty() => {
                (Kind::Unprovisionable, Subject::Machine(h.machine.clone()))
            }
            Ok(HostState::Conflict) => (Kind::Conflict, Subject::Ip(ip?)),
            Ok(HostState::Missing) if !h.machine.is_empty() => {
                (Kind::Missing, Subject::Machine(h.machine.clone()))
            }
            _ => match h.mac.parse::<Mac>().ok().filter(|m| !m.is_local()) {
                Some(m) => (Kind::NewDevice, Subject::Mac(m)),
                None => match h.key.strip_prefix("name:") {
                    Some(name) => (Kind::NewDevice, Subject::Name(name.to_string())),
                    None => (Kind::NewDevice, Subject::Ip(ip?)),
                },
            },
        };
        Some(Fingerprint { kind, subject })
    }

    /// A short stable token for branch names: kind and subject, no colons.
    pub fn slug(&self) -> String {
        let who = match &self.subject {
            Subject::Mac(m) => m.to_string().replace(':', ""),
            Subject::Ip(ip) => ip.to_string().replace([':', '.'], "-"),
            Subject::Machine(n) | Subject::Cluster(n) => n.clone(),
            Subject::Name(n) => n.replace('.', "-"),
        };
        format!("{}-{who}", self.kind.word())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.kind.word())?;
        match &self.subject {
            Subject::Mac(m) => write!(f, "mac={m}"),
            Subject::Ip(ip) => write!(f, "ip={ip}"),
            Subject::Machine(n) => write!(f, "machine={n}"),
            Subject::Cluster(n) => write!(f, "cluster={n}"),
            Subject::Name(n) => write!(f, "name={n}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a fingerprint like new-device:mac=dc:a6:32:00:00:23")]
pub struct ParseError(String);

impl FromStr for Fingerprint {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseError(s.chars().take(100).collect());
        let (kind, who) = s.split_once(':').ok_or_else(bad)?;
        let kind = Kind::WORDS
            .iter()
            .find(|(w, _)| *w == kind)
            .map(|(_, k)| *k)
            .ok_or_else(bad)?;
        let (key, value) = who.split_once('=').ok_or_else(bad)?;
        let subject = match key {
            "mac" => Subject::Mac(value.parse().map_err(|_| bad())?),
            "ip" => Subject::Ip(value.parse().map_err(|_| bad())?),
            "machine" if !value.is_empty() => Subject::Machine(value.to_string()),
            "cluster" if !value.is_empty() => Subject::Cluster(value.to_string()),
            "name" if !value.is_empty() => Subject::Name(value.to_string()),
            _ => return Err(bad()),
        };
        Ok(Fingerprint { kind, subject })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_reads_back() {
        for text in [
            "new-device:mac=dc:a6:32:00:00:23",
            "new-device:ip=198.18.0.23",
            "unprovisionable:machine=alpha-w-1",
            "conflict:ip=2001:db8::1",
            "provisioning:cluster=alpha",
            "missing:machine=printer",
            "new-device:name=phone.lan",
        ] {
            let fp: Fingerprint = text.parse().unwrap();
            assert_eq!(fp.to_string(), text);
        }
        assert!("new-device".parse::<Fingerprint>().is_err());
        assert!("nonsense:ip=198.18.0.4".parse::<Fingerprint>().is_err());
        assert!("conflict:ip=not-an-ip".parse::<Fingerprint>().is_err());
    }

    #[test]
    fn random_macs_are_fingerprinted_by_ip() {
        let h = DiscoveredHost {
            ip: "198.18.0.23".into(),
            mac: "da:a6:32:00:00:23".into(),
            state: HostState::New as i32,
            ..Default::default()
        };
        assert_eq!(
            Fingerprint::of(&h).unwrap().to_string(),
            "new-device:ip=198.18.0.23"
        );
        assert_eq!(
            Fingerprint::of(&h).unwrap().slug(),
            "new-device-198-18-0-23"
        );
        let routed = DiscoveredHost {
            mac: String::new(),
            ..h.clone()
        };
        assert_eq!(
            Fingerprint::of(&routed).unwrap().to_string(),
            "new-device:ip=198.18.0.23",
            "a host seen without a MAC is its address"
        );
        let named = DiscoveredHost {
            key: "name:phone.lan".into(),
            ..h
        };
        assert_eq!(
            Fingerprint::of(&named).unwrap().to_string(),
            "new-device:name=phone.lan",
            "one device across new MACs and new leases"
        );
    }
}

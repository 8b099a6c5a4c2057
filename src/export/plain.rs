//! What every emitter checks before it writes a line: each name a DNS
//! label, each MAC a MAC, each address an address, the revision a commit
//! id. A DHCP server's config line, an inventory's YAML and a comment in
//! either are only ever made of these, so nothing a server (or an impostor
//! answering in its place) sends can add a line of its own.

use crate::db::Snapshot;

/// The first value that is not plain, and where it is.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("refused to write it out: {what} {value:?} {why}")]
pub struct Unplain {
    pub what: String,
    pub value: String,
    pub why: String,
}

/// Checks every value an emitter writes out of `snap`.
pub fn check(snap: &Snapshot) -> Result<(), Unplain> {
    let bad = |what: String, value: &str, why: String| Unplain {
        what,
        value: crate::escape::clean(value, 80),
        why,
    };
    crate::db::received::check_snapshot_revision(&snap.revision)
        .map_err(|why| bad("the revision".into(), &snap.revision, why))?;
    for m in &snap.machines {
        crate::db::load::check_dns_label(&m.name)
            .map_err(|why| bad("the machine name".into(), &m.name, why.into()))?;
        if !m.mac.is_empty() {
            m.mac
                .parse::<crate::net::Mac>()
                .map_err(|e| bad(format!("{}'s MAC", m.name), &m.mac, e.to_string()))?;
        }
        for ip in &m.ips {
            ip.parse::<std::net::IpAddr>().map_err(|_| {
                bad(
                    format!("{}'s address", m.name),
                    ip,
                    "is not an IP address".into(),
                )
            })?;
        }
        crate::db::load::check_dns_name(&m.hostname)
            .map_err(|why| bad(format!("{}'s host name", m.name), &m.hostname, why.into()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Machine;

    fn snap(revision: &str, m: Machine) -> Snapshot {
        Snapshot::new(revision.into(), vec![m], Default::default())
    }

    #[test]
    fn names_macs_addresses_and_revisions_with_a_line_of_their_own_are_refused() {
        let good = Machine {
            name: "pi".into(),
            mac: "dc:a6:32:00:00:01".into(),
            ips: vec!["198.18.0.5".into()],
            ..Default::default()
        };
        assert!(check(&snap("abcd", good.clone())).is_ok());
        assert!(check(&snap(crate::db::received::WORKING_TREE, good.clone())).is_ok());
        let e = check(&snap("abcd\nx", good.clone())).unwrap_err();
        assert_eq!(e.what, "the revision");
        let cases = [
            Machine {
                name: "pi\ndhcp-script=/srv/x".into(),
                ..good.clone()
            },
            Machine {
                mac: "dc:a6:32:00:00:01\nx".into(),
                ..good.clone()
            },
            Machine {
                ips: vec!["198.18.0.5,x".into()],
                ..good.clone()
            },
            Machine {
                hostname: "a b".into(),
                ..good.clone()
            },
        ];
        for m in cases {
            assert!(check(&snap("abcd", m.clone())).is_err(), "{m:?}");
        }
    }
}

//! The pure plan: which issue operations bring GitHub in line with one
//! sweep, given what the repository already holds. No I/O.

use std::collections::{HashMap, HashSet};

use crate::{
    db::Snapshot,
    discover::classify::expects_provisioning,
    github::{
        fingerprint::{Fingerprint, Kind, Subject},
        text::files_issue,
    },
    proto::{DiscoveredHost, HostState},
};

/// What mdb knows of one issue it filed.
#[derive(Clone, Debug, PartialEq)]
pub struct Known {
    pub number: u64,
    pub open: bool,
    /// The address the body last reported.
    pub ip: String,
}

/// One change to make on GitHub.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Create {
        fingerprint: Fingerprint,
        host: DiscoveredHost,
    },
    /// The host is at another address now: comment and refresh the body.
    Update {
        number: u64,
        fingerprint: Fingerprint,
        host: DiscoveredHost,
    },
    Reopen {
        number: u64,
        fingerprint: Fingerprint,
        host: DiscoveredHost,
    },
    Close {
        number: u64,
        fingerprint: Fingerprint,
        why: String,
    },
}

/// The operations that bring the issues in line with one sweep. Pure:
/// `known` is what the repository holds, `snap` the database now.
pub fn plan(
    hosts: &[DiscoveredHost],
    snap: &Snapshot,
    known: &HashMap<Fingerprint, Known>,
    cap: usize,
    dismissed: &HashMap<Fingerprint, u64>,
) -> (Vec<Op>, usize) {
    let mut ops = Vec::new();
    let mut desired: Vec<(Fingerprint, &DiscoveredHost)> = Vec::new();
    let mut seen_fp = HashSet::new();
    for h in hosts.iter().filter(|h| files_issue(h, Some(snap))) {
        let Some(fp) = Fingerprint::of(h) else {
            continue;
        };
        if seen_fp.insert(fp.clone()) {
            desired.push((fp, h));
        }
    }
    let mut created = 0;
    let mut deferred = 0;
    for (fp, h) in &desired {
        if let Some(pull) = dismissed.get(fp) {
            if let Some(k) = known.get(fp).filter(|k| k.open) {
                ops.push(Op::Close {
                    number: k.number,
                    fingerprint: fp.clone(),
                    why: format!("the device was dismissed: pull request #{pull} was closed without merging (reopen it to undo)."),
                });
            }
            continue;
        }
        match known.get(fp) {
            None if created < cap => {
                created += 1;
                ops.push(Op::Create {
                    fingerprint: fp.clone(),
                    host: (*h).clone(),
                });
            }
            None => deferred += 1,
            Some(k) if !k.open => ops.push(Op::Reopen {
                number: k.number,
                fingerprint: fp.clone(),
                host: (*h).clone(),
            }),
            Some(k) if k.ip != h.ip => ops.push(Op::Update {
                number: k.number,
                fingerprint: fp.clone(),
                host: (*h).clone(),
            }),
            Some(_) => {}
        }
    }
    let mut open: Vec<(&Fingerprint, &Known)> = known
        .iter()
        .filter(|(fp, k)| k.open && !seen_fp.contains(*fp))
        .collect();
    open.sort_by_key(|(_, k)| k.number);
    for (fp, k) in open {
        if let Some(why) = resolution(fp, hosts, snap) {
            ops.push(Op::Close {
                number: k.number,
                fingerprint: fp.clone(),
                why,
            });
        }
    }
    (ops, deferred)
}

/// Why the problem behind an open issue is gone, if it is. A host that is
/// merely offline has not been resolved.
pub fn resolution(fp: &Fingerprint, hosts: &[DiscoveredHost], snap: &Snapshot) -> Option<String> {
    let rev = &snap.revision;
    let now_known = |m: &crate::proto::Machine, what: String| {
        format!(
            "{what} is now in the database as `{}` (revision {rev}).",
            m.name
        )
    };
    match (&fp.kind, &fp.subject) {
        (Kind::NewDevice, Subject::Mac(mac)) => {
            snap.by_mac(*mac).map(|m| now_known(m, mac.to_string()))
        }
        (Kind::NewDevice, Subject::Ip(ip)) => snap.by_ip(*ip).map(|m| now_known(m, ip.to_string())),
        (Kind::NewDevice, Subject::Name(name)) => hosts
            .iter()
            .filter(|h| h.dns_name == *name)
            .find_map(|h| snap.by_name(&h.machine))
            .map(|m| now_known(m, name.clone())),
        (Kind::Unprovisionable, Subject::Machine(name)) => match snap.by_name(name) {
            None => Some(format!(
                "`{name}` is no longer in the database (revision {rev})."
            )),
            Some(m) if !expects_provisioning(m) => {
                Some(format!("`{name}` is no longer expected to be provisioned."))
            }
            Some(_) => hosts
                .iter()
                .find(|h| {
                    h.machine == *name && HostState::try_from(h.state) == Ok(HostState::Known)
                })
                .map(|h| format!("SSH on `{name}` ({}) answers again.", h.ip)),
        },
        (Kind::Missing, Subject::Machine(name)) => match snap.by_name(name) {
            None => Some(format!(
                "`{name}` is no longer in the database (revision {rev})."
            )),
            Some(m) if !snap.settings.scan.file_missing.covers(m) => Some(format!(
                "`{name}` is no longer filed when missing (scan.file_missing)."
            )),
            Some(_) => hosts
                .iter()
                .find(|h| h.machine == *name && h.presence == crate::proto::Presence::Up as i32)
                .map(|h| format!("`{name}` answers again at {}.", h.ip)),
        },
        (Kind::Conflict, Subject::Ip(ip)) => {
            if snap.by_ip(*ip).is_none() {
                return Some(format!(
                    "{ip} is no longer any machine's address in the database."
                ));
            }
            let value = ip.to_string();
            hosts
                .iter()
                .find(|h| h.ip == value && HostState::try_from(h.state) != Ok(HostState::Conflict))
                .map(|h| format!("{value} answers as `{}` again.", h.machine))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{validate, SourceFile};

    fn snap(file_missing: &str) -> Snapshot {
        let machines = "machines:\n  - name: printer\n    ip: 198.18.0.50\n    use: { device: receipt printer }\n  - name: gamer\n    ip: 198.18.0.60\n    use: games\n";
        validate(
            &[
                SourceFile {
                    path: "machines/a.yaml".into(),
                    text: machines.into(),
                },
                SourceFile {
                    path: "mdb.yaml".into(),
                    text: format!("scan:\n  missing_after: 2h\n{file_missing}"),
                },
            ],
            "r",
        )
        .unwrap()
    }

    fn missing(name: &str, ip: &str) -> DiscoveredHost {
        DiscoveredHost {
            ip: ip.into(),
            machine: name.into(),
            state: HostState::Missing as i32,
            ..Default::default()
        }
    }

    fn created(ops: &[Op]) -> Vec<String> {
        ops.iter()
            .filter_map(|op| match op {
                Op::Create { fingerprint, .. } => Some(fingerprint.to_string()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn missing_machines_are_filed_only_where_opted_in() {
        let hosts = [
            missing("printer", "198.18.0.50"),
            missing("gamer", "198.18.0.60"),
        ];
        let none = HashMap::new();
        let (ops, _) = plan(&hosts, &snap(""), &none, 10, &HashMap::new());
        assert!(ops.is_empty(), "off by default: {ops:?}");
        let by_use = snap("  file_missing: { uses: [device] }\n");
        let (ops, _) = plan(&hosts, &by_use, &none, 10, &HashMap::new());
        assert_eq!(created(&ops), ["missing:machine=printer"]);
        let by_name = snap("  file_missing: { machines: [gamer] }\n");
        let (ops, _) = plan(&hosts, &by_name, &none, 10, &HashMap::new());
        assert_eq!(created(&ops), ["missing:machine=gamer"]);

        // Back on the network: the issue closes.
        let fp: Fingerprint = "missing:machine=printer".parse().unwrap();
        let known = HashMap::from([(
            fp,
            Known {
                number: 7,
                open: true,
                ip: "198.18.0.50".into(),
            },
        )]);
        let back = DiscoveredHost {
            state: HostState::Known as i32,
            presence: crate::proto::Presence::Up as i32,
            ..missing("printer", "198.18.0.50")
        };
        let (ops, _) = plan(&[back], &by_use, &known, 10, &HashMap::new());
        assert!(
            matches!(&ops[..], [Op::Close { number: 7, why, .. }] if why.contains("answers again")),
            "{ops:?}"
        );
    }
}

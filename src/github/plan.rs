//! The pure plan: which issue operations bring GitHub in line with one
//! sweep, given what the repository already holds. No I/O.

use std::collections::{HashMap, HashSet};

use crate::{
    db::Snapshot,
    discover::classify::expects_provisioning,
    github::{
        fingerprint::{Fingerprint, Kind, Subject},
        text::files_issue,
        Cap, Caps, Deferred,
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
    /// The reservation the issue last said its device waits to reach.
    pub waiting: Option<String>,
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
    /// The device is in the database but not yet at its reserved address
    /// (it has not renewed its old DHCP lease): say so once, keep it open.
    Wait {
        number: u64,
        fingerprint: Fingerprint,
        host: DiscoveredHost,
        reserved: String,
    },
}

/// The operations that bring the issues in line with one sweep. Pure:
/// `known` is what the repository holds, `snap` the database now. Closes
/// come first, so what they free counts for the caps; then, most important
/// first (database machines' problems, then hosts that are up, then those
/// seen longest), creates and reopens while the caps allow.
pub fn plan(
    hosts: &[DiscoveredHost],
    snap: &Snapshot,
    known: &HashMap<Fingerprint, Known>,
    caps: &Caps,
    dismissed: &HashMap<Fingerprint, u64>,
) -> (Vec<Op>, Deferred) {
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
    desired.sort_by_key(|(fp, h)| {
        (
            fp.kind == Kind::NewDevice,
            h.presence != crate::proto::Presence::Up as i32,
            h.first_seen_unix,
        )
    });
    let mut ops = closes(&desired, hosts, snap, known, dismissed, &seen_fp);
    let closing = ops.len();
    let mut open = known
        .values()
        .filter(|k| k.open)
        .count()
        .saturating_sub(closing);
    let mut created = 0;
    let mut deferred = Deferred::new();
    let mut defer = |cap: Cap| *deferred.entry(cap).or_default() += 1;
    for (fp, h) in &desired {
        if dismissed.contains_key(fp) {
            continue;
        }
        let host = (*h).clone();
        let fingerprint = fp.clone();
        match known.get(fp) {
            None if created >= caps.new_per_sweep => defer(Cap::NewPerSweep),
            None | Some(Known { open: false, .. }) if open >= caps.open_issues => {
                defer(Cap::OpenIssues)
            }
            None => {
                created += 1;
                open += 1;
                ops.push(Op::Create { fingerprint, host });
            }
            Some(k) if !k.open => {
                open += 1;
                ops.push(Op::Reopen {
                    number: k.number,
                    fingerprint,
                    host,
                });
            }
            Some(k) if k.ip != h.ip => ops.push(Op::Update {
                number: k.number,
                fingerprint,
                host,
            }),
            Some(_) => {}
        }
    }
    (ops, deferred)
}

/// The open issues to close: their device was dismissed, or the problem
/// behind them is gone.
fn closes(
    desired: &[(Fingerprint, &DiscoveredHost)],
    hosts: &[DiscoveredHost],
    snap: &Snapshot,
    known: &HashMap<Fingerprint, Known>,
    dismissed: &HashMap<Fingerprint, u64>,
    seen_fp: &HashSet<Fingerprint>,
) -> Vec<Op> {
    let mut ops = Vec::new();
    for (fp, _) in desired {
        if let (Some(pull), Some(k)) = (dismissed.get(fp), known.get(fp).filter(|k| k.open)) {
            ops.push(Op::Close {
                number: k.number,
                fingerprint: fp.clone(),
                why: format!("the device was dismissed: pull request #{pull} was closed without merging (reopen it to undo)."),
            });
        }
    }
    let mut open: Vec<(&Fingerprint, &Known)> = known
        .iter()
        .filter(|(fp, k)| k.open && !seen_fp.contains(*fp))
        .collect();
    open.sort_by_key(|(_, k)| k.number);
    for (fp, k) in open {
        if let Some((host, reserved)) = away_from_reservation(fp, hosts, snap) {
            if k.waiting.as_deref() != Some(reserved.as_str()) {
                ops.push(Op::Wait {
                    number: k.number,
                    fingerprint: fp.clone(),
                    host: host.clone(),
                    reserved,
                });
            }
            continue;
        }
        if let Some(why) = resolution(fp, hosts, snap) {
            ops.push(Op::Close {
                number: k.number,
                fingerprint: fp.clone(),
                why,
            });
        }
    }
    ops
}

/// A new device now in the database whose MAC still answers, up, at
/// another address than its own: it has not renewed its old DHCP lease. Its
/// host and its reserved address.
pub fn away_from_reservation<'h>(
    fp: &Fingerprint,
    hosts: &'h [DiscoveredHost],
    snap: &Snapshot,
) -> Option<(&'h DiscoveredHost, String)> {
    let (Kind::NewDevice, Subject::Mac(mac)) = (&fp.kind, &fp.subject) else {
        return None;
    };
    let own = snap.by_mac(*mac)?.ips.first()?.clone();
    let text = mac.to_string();
    let host = hosts.iter().find(|h| {
        h.mac == text && h.ip != own && h.presence == crate::proto::Presence::Up as i32
    })?;
    Some((host, own))
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
            Some(m) if !snap.mdb_yaml.scan.file_missing.covers(m) => Some(format!(
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
        let (ops, _) = plan(&hosts, &snap(""), &none, &Caps::default(), &HashMap::new());
        assert!(ops.is_empty(), "off by default: {ops:?}");
        let by_use = snap("  file_missing: { uses: [device] }\n");
        let (ops, _) = plan(&hosts, &by_use, &none, &Caps::default(), &HashMap::new());
        assert_eq!(created(&ops), ["missing:machine=printer"]);
        let by_name = snap("  file_missing: { machines: [gamer] }\n");
        let (ops, _) = plan(&hosts, &by_name, &none, &Caps::default(), &HashMap::new());
        assert_eq!(created(&ops), ["missing:machine=gamer"]);

        // Back on the network: the issue closes.
        let fp: Fingerprint = "missing:machine=printer".parse().unwrap();
        let known = HashMap::from([(
            fp,
            Known {
                number: 7,
                open: true,
                ip: "198.18.0.50".into(),
                waiting: None,
            },
        )]);
        let back = DiscoveredHost {
            state: HostState::Known as i32,
            presence: crate::proto::Presence::Up as i32,
            ..missing("printer", "198.18.0.50")
        };
        let (ops, _) = plan(&[back], &by_use, &known, &Caps::default(), &HashMap::new());
        assert!(
            matches!(&ops[..], [Op::Close { number: 7, why, .. }] if why.contains("answers again")),
            "{ops:?}"
        );
    }

    fn new_device(i: u8) -> DiscoveredHost {
        DiscoveredHost {
            ip: format!("198.18.0.{}", 100 + i),
            mac: format!("dc:a6:32:00:01:{i:02x}"),
            state: HostState::New as i32,
            presence: crate::proto::Presence::Up as i32,
            first_seen_unix: 1_000 + i64::from(i),
            ..Default::default()
        }
    }

    #[test]
    fn caps_bound_what_is_open_and_the_longest_seen_go_first() {
        let earlier: HashMap<Fingerprint, Known> = (0..2u8)
            .map(|i| {
                let fp = format!("new-device:mac=dc:a6:32:00:02:{i:02x}")
                    .parse()
                    .unwrap();
                (
                    fp,
                    Known {
                        number: u64::from(i) + 1,
                        open: true,
                        ip: String::new(),
                        waiting: None,
                    },
                )
            })
            .collect();
        let mut hosts: Vec<DiscoveredHost> = (0..6u8).map(new_device).collect();
        hosts.reverse();
        let caps = Caps {
            open_issues: 5,
            ..Caps::default()
        };
        let (ops, deferred) = plan(&hosts, &snap(""), &earlier, &caps, &HashMap::new());
        assert_eq!(
            created(&ops),
            [
                "new-device:mac=dc:a6:32:00:01:00",
                "new-device:mac=dc:a6:32:00:01:01",
                "new-device:mac=dc:a6:32:00:01:02"
            ],
            "the oldest first, up to 5 open"
        );
        assert_eq!(deferred.get(&Cap::OpenIssues), Some(&3));
        let caps = Caps {
            new_per_sweep: 2,
            ..Caps::default()
        };
        let (ops, deferred) = plan(&hosts, &snap(""), &earlier, &caps, &HashMap::new());
        assert_eq!(created(&ops).len(), 2);
        assert_eq!(deferred.get(&Cap::NewPerSweep), Some(&4));
    }
}

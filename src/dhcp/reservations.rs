//! Which reservations a revision asks for, and which of them a live lease
//! of another MAC forbids. Pure: the targets write what this decides.

use std::{
    collections::{BTreeMap, HashMap},
    net::Ipv4Addr,
};

use crate::{net::Mac, proto::Machine};

/// One static lease: a MAC always gets this address and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reservation {
    pub name: String,
    pub mac: Mac,
    pub ip: Ipv4Addr,
}

/// A reservation left out, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub reservation: Reservation,
    pub why: String,
}

/// Every machine with a MAC and a fixed IPv4 address (its first), in name
/// order. A machine whose MAC or address another machine also claims is
/// refused, both of them, and so is a name that is no DNS label (it names
/// a file and a dnsmasq line): validation refuses such a revision; this is
/// the follower's own guard.
pub fn wanted(machines: &[Machine]) -> (Vec<Reservation>, Vec<Refused>) {
    let mut all: Vec<Reservation> = machines
        .iter()
        .filter_map(|m| {
            let mac = m.mac.parse::<Mac>().ok()?;
            let ip = m.ips.iter().find_map(|i| i.parse::<Ipv4Addr>().ok())?;
            Some(Reservation {
                name: m.name.clone(),
                mac,
                ip,
            })
        })
        .collect();
    all.sort();
    let count = |key: &dyn Fn(&Reservation) -> String| {
        let mut n: HashMap<String, usize> = HashMap::new();
        for r in &all {
            *n.entry(key(r)).or_default() += 1;
        }
        n
    };
    let by_ip = count(&|r| r.ip.to_string());
    let by_mac = count(&|r| r.mac.to_string());
    let (mut kept, mut refused) = (Vec::new(), Vec::new());
    for r in all {
        if let Err(why) = crate::db::load::check_dns_label(&r.name) {
            let why = format!("its name {} {why}", crate::escape::clean(&r.name, 64));
            refused.push(Refused {
                reservation: r,
                why,
            });
        } else if by_ip[&r.ip.to_string()] > 1 {
            let why = format!("{} is claimed by more than one machine", r.ip);
            refused.push(Refused {
                reservation: r,
                why,
            });
        } else if by_mac[&r.mac.to_string()] > 1 {
            let why = format!("{} is claimed by more than one machine", r.mac);
            refused.push(Refused {
                reservation: r,
                why,
            });
        } else {
            kept.push(r);
        }
    }
    (kept, refused)
}

/// Leaves out a reservation whose address a live lease gives another MAC:
/// writing it would hand one address to two devices.
pub fn against_leases(
    wanted: Vec<Reservation>,
    leases: &BTreeMap<Ipv4Addr, Mac>,
) -> (Vec<Reservation>, Vec<Refused>) {
    let (mut kept, mut refused) = (Vec::new(), Vec::new());
    for r in wanted {
        match leases.get(&r.ip) {
            Some(holder) if *holder != r.mac => {
                let why = format!(
                    "{} is leased to {holder} now; reserving it for {} would give one address to two devices",
                    r.ip, r.mac
                );
                refused.push(Refused {
                    reservation: r,
                    why,
                });
            }
            _ => kept.push(r),
        }
    }
    (kept, refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, mac: &str, ips: &[&str]) -> Machine {
        Machine {
            name: name.into(),
            mac: mac.into(),
            ips: ips.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn only_a_mac_and_an_ipv4_address_make_a_reservation() {
        let (kept, refused) = wanted(&[
            m("pi", "dc:a6:32:00:00:11", &["2001:db8::11", "198.18.1.11"]),
            m("no-mac", "", &["198.18.1.12"]),
            m("no-ip", "dc:a6:32:00:00:13", &[]),
            m("twin-a", "dc:a6:32:00:00:14", &["198.18.1.14"]),
            m("twin-b", "dc:a6:32:00:00:15", &["198.18.1.14"]),
        ]);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].ip, Ipv4Addr::new(198, 18, 1, 11));
        assert_eq!(refused.len(), 2, "both twins: {refused:?}");
    }

    /// A name becomes a file name and a dnsmasq line: one that is no DNS
    /// label is refused here too, whatever validation let through.
    #[test]
    fn a_name_that_is_no_label_is_refused() {
        let (kept, refused) = wanted(&[
            m("pi", "dc:a6:32:00:00:11", &["198.18.1.11"]),
            m("../../etc/cron.d/x", "dc:a6:32:00:00:12", &["198.18.1.12"]),
            m("a,b", "dc:a6:32:00:00:13", &["198.18.1.13"]),
        ]);
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert_eq!(kept[0].name, "pi");
        assert_eq!(refused.len(), 2, "{refused:?}");
        assert!(refused.iter().all(|r| r.why.starts_with("its name")));
    }

    #[test]
    fn a_live_lease_of_another_mac_refuses_the_reservation() {
        let (kept, _) = wanted(&[
            m("pi", "dc:a6:32:00:00:11", &["198.18.1.11"]),
            m("nas", "00:11:32:00:00:12", &["198.18.1.12"]),
        ]);
        let leases = BTreeMap::from([
            (
                Ipv4Addr::new(198, 18, 1, 11),
                "dc:a6:32:00:00:11".parse().unwrap(),
            ),
            (
                Ipv4Addr::new(198, 18, 1, 12),
                "02:00:00:00:00:99".parse().unwrap(),
            ),
        ]);
        let (kept, refused) = against_leases(kept, &leases);
        assert_eq!(
            kept.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["pi"]
        );
        assert!(
            refused[0].why.contains("leased to 02:00:00:00:00:99"),
            "{refused:?}"
        );
    }
}

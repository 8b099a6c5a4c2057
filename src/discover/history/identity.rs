//! Which identity a host keeps in the history: a database machine by its
//! name, a random MAC by the name it alone announces, else the sweep's own
//! (`mac:…` for a stable MAC, `ip:…` otherwise).

use std::collections::HashSet;

use crate::{discover::classify::Classified, proto::HostState};

/// Names that more than one MAC claims this sweep, by any source (reverse
/// DNS, mDNS, a DHCP lease): none of them is anyone's identity (a rogue
/// device announcing a known phone's name must not take over its history,
/// its issue or its dismissal).
pub(super) fn shared_names(seen: &[Classified]) -> HashSet<String> {
    let mut claimed: std::collections::HashMap<&str, &str> = Default::default();
    let mut shared = HashSet::new();
    for c in seen {
        let who = if c.host.mac.is_empty() {
            c.key.as_str()
        } else {
            c.host.mac.as_str()
        };
        let names = std::iter::once(c.host.dns_name.as_str())
            .chain(c.host.names.iter().map(|n| n.name.as_str()))
            .filter(|n| !n.is_empty());
        for name in names {
            match claimed.insert(name, who) {
                Some(other) if other != who => {
                    shared.insert(name.to_string());
                }
                _ => {}
            }
        }
    }
    shared
}

/// The name a random MAC is known by: one it alone announces, and a real
/// DNS name (it goes into fingerprints and issue trailers).
fn own_name<'a>(c: &'a Classified, shared: &HashSet<String>) -> Option<&'a str> {
    let name = c.host.dns_name.as_str();
    (c.host.mac_is_local
        && !name.is_empty()
        && !shared.contains(name)
        && crate::db::load::check_dns_name(name).is_ok())
    .then_some(name)
}

/// The identity a host keeps in the history: a database machine by its
/// name (so it survives a move, and enrolment carries its past over), a
/// random MAC by the name it alone announces, else the sweep's own.
/// `shared` is [`shared_names`] of the same sweep.
pub fn history_key(c: &Classified, shared: &HashSet<String>) -> String {
    let h = &c.host;
    let state = HostState::try_from(h.state).unwrap_or_default();
    let the_machine = matches!(
        state,
        HostState::Known | HostState::Moved | HostState::Unprovisionable
    );
    if the_machine && !h.machine.is_empty() {
        return format!("machine:{}", h.machine);
    }
    if let Some(name) = own_name(c, shared).filter(|_| state == HostState::New) {
        return format!("name:{name}");
    }
    c.key.clone()
}

/// The identities the same host may have had before: the sweep's own, and
/// for a random MAC the name it alone announces. (Never a bare address for
/// a stable MAC: a new device on an old lease is not the old device.)
pub(super) fn aliases(c: &Classified, shared: &HashSet<String>) -> Vec<String> {
    let mut out = vec![c.key.clone()];
    if let Some(name) = own_name(c, shared) {
        out.push(format!("name:{name}"));
    }
    out
}

pub(super) fn machine_key(key: &str) -> Option<&str> {
    key.strip_prefix("machine:")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::DiscoveredHost;

    fn phone(ip: &str, name: &str) -> Classified {
        Classified {
            listed6: Vec::new(),
            host: DiscoveredHost {
                ip: ip.into(),
                mac: "da:00:00:00:00:01".into(),
                mac_is_local: true,
                dns_name: name.into(),
                state: HostState::New as i32,
                ..Default::default()
            },
            key: format!("ip:{ip}"),
        }
    }

    #[test]
    fn a_name_is_an_identity_only_while_one_live_host_announces_it() {
        let alone = [phone("198.18.0.20", "phone.lan")];
        let shared = shared_names(&alone);
        assert_eq!(history_key(&alone[0], &shared), "name:phone.lan");
        let mut impostor = phone("198.18.0.21", "phone.lan");
        impostor.host.mac = "da:00:00:00:00:09".into();
        let rogue = [phone("198.18.0.20", "phone.lan"), impostor];
        let shared = shared_names(&rogue);
        assert_eq!(history_key(&rogue[0], &shared), "ip:198.18.0.20");
        assert_eq!(history_key(&rogue[1], &shared), "ip:198.18.0.21");
        assert_eq!(aliases(&rogue[1], &shared), ["ip:198.18.0.21"]);
        // The same name from another MAC through mDNS: nobody's either.
        let mut other = phone("198.18.0.23", "");
        other.host.mac = "da:00:00:00:00:02".into();
        other.host.names = vec![crate::proto::HostName {
            name: "phone.lan".into(),
            source: "mdns".into(),
        }];
        let by_mdns = [phone("198.18.0.20", "phone.lan"), other];
        assert_eq!(
            history_key(&by_mdns[0], &shared_names(&by_mdns)),
            "ip:198.18.0.20"
        );
        // One MAC at two addresses announcing its name is still one claim.
        let aliases_of_one = [
            phone("198.18.0.20", "phone.lan"),
            phone("198.18.0.24", "phone.lan"),
        ];
        assert!(shared_names(&aliases_of_one).is_empty());
        let odd = [phone("198.18.0.22", "not a <name>")];
        assert_eq!(history_key(&odd[0], &shared_names(&odd)), "ip:198.18.0.22");
    }
}

//! A discovered host's names as they are shown and chosen: in the order of
//! `scan.names`, `name (source)` for tables and issue bodies, and the one
//! an entry is named after, which is a valid DNS label or nothing. Each
//! name is the device's own words, cleaned where it was captured
//! (`discover::names`); its sink escapes it.

use crate::{
    db::words::NameSource,
    proto::{DiscoveredHost, HostName},
};

/// The host's names, the first source of `order` first.
pub fn ordered<'h>(h: &'h DiscoveredHost, order: &[NameSource]) -> Vec<&'h HostName> {
    let rank = |n: &HostName| {
        order
            .iter()
            .position(|s| s.word() == n.source)
            .unwrap_or(order.len())
    };
    let mut names: Vec<&HostName> = h.names.iter().collect();
    names.sort_by_key(|n| rank(n));
    names
}

/// The best name for a new entry: the first, by `order`, whose first label
/// is a DNS label (lower case, not `host-…`, which routers make up).
pub fn entry_label(h: &DiscoveredHost, order: &[NameSource]) -> Option<String> {
    let mut candidates: Vec<&str> = ordered(h, order)
        .into_iter()
        .map(|n| n.name.as_str())
        .collect();
    if h.names.is_empty() {
        // Histories written before names had sources.
        candidates.push(&h.dns_name);
    }
    candidates.into_iter().find_map(|name| {
        let label = name.split('.').next()?.to_ascii_lowercase();
        (crate::db::load::check_dns_label(&label).is_ok() && !label.starts_with("host-"))
            .then_some(label)
    })
}

/// "name (source)" of each name, for tables and issue bodies.
pub fn described(h: &DiscoveredHost, order: &[NameSource]) -> String {
    ordered(h, order)
        .iter()
        .map(|n| format!("{} ({})", n.name, n.source))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(names: &[(&str, &str)]) -> DiscoveredHost {
        DiscoveredHost {
            names: names
                .iter()
                .map(|(n, s)| HostName {
                    name: n.to_string(),
                    source: s.to_string(),
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn the_order_decides_and_bad_labels_are_passed_over() {
        let h = host(&[
            ("Laser-1", "dhcp"),
            ("printer.local-x", "mdns"),
            ("host-198-18-0-5.lan", "rdns"),
        ]);
        let mdns_first = crate::db::words::DEFAULT_NAME_ORDER;
        assert_eq!(entry_label(&h, mdns_first).as_deref(), Some("printer"));
        let dhcp_first = [NameSource::Dhcp, NameSource::Mdns, NameSource::Rdns];
        assert_eq!(entry_label(&h, &dhcp_first).as_deref(), Some("laser-1"));
        let hostile = host(&[("<b>x</b>", "mdns"), ("host-1-2", "rdns")]);
        assert_eq!(entry_label(&hostile, mdns_first), None);
        assert_eq!(
            described(&h, &dhcp_first),
            "Laser-1 (dhcp), printer.local-x (mdns), host-198-18-0-5.lan (rdns)"
        );
    }
}

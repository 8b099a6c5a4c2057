//! The name a new entry proposes: the best name the LAN gives that is a
//! DNS label, else the vendor and the MAC's tail, else the address; then
//! made unique against the database and open enrolments.

use std::net::IpAddr;

use super::{Error, Held};
use crate::{
    db::{self, load::check_dns_label, Snapshot},
    net::Mac,
    proto::DiscoveredHost,
};

/// The best name the LAN gives (DHCP, mDNS, reverse DNS, by `order`)
/// where it is a DNS label; else vendor and MAC tail (`pi-dca632-0060`);
/// else the address (`host-198-18-10-5`).
pub(super) fn base_name(
    h: &DiscoveredHost,
    mac: Option<Mac>,
    ip: IpAddr,
    order: &[db::words::NameSource],
) -> String {
    if let Some(n) = crate::export::names::entry_label(h, order) {
        return n;
    }
    match mac {
        Some(m) => {
            let b = m.0;
            format!(
                "{}-{:02x}{:02x}{:02x}-{:02x}{:02x}",
                vendor_word(&h.vendor),
                b[0],
                b[1],
                b[2],
                b[4],
                b[5]
            )
        }
        None => format!("host-{}", ip.to_string().replace(['.', ':'], "-")),
    }
}

/// A short lower-case word for a vendor: "Raspberry Pi Trading" → "pi".
fn vendor_word(vendor: &str) -> String {
    let lower = vendor.to_ascii_lowercase();
    if lower.contains("raspberry") {
        return "pi".into();
    }
    let word: String = lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .find(|w| !w.is_empty())
        .unwrap_or("host")
        .chars()
        .take(20)
        .collect();
    word
}

/// `base`, or `base-2`, `base-3`... whichever no machine or enrolment has.
pub(super) fn unique_name(base: &str, snap: &Snapshot, held: &Held) -> Result<String, Error> {
    let free = |n: &str| snap.by_name(n).is_none() && !held.names.contains(n);
    let base: String = base.chars().take(56).collect();
    let base = base.trim_end_matches('-').to_string();
    (1..100)
        .map(|i| {
            if i == 1 {
                base.clone()
            } else {
                format!("{base}-{i}")
            }
        })
        .find(|n| check_dns_label(n).is_ok() && free(n))
        .ok_or(Error::NoName(base))
}

//! What an IPv6 address of a device is: link-local, stable (EUI-64 from
//! its MAC, or one it keeps) or temporary (a privacy address it rotates).
//! Pure functions of addresses and times; no I/O.

use std::net::Ipv6Addr;

use crate::net::Mac;

/// A privacy address is preferred for a day by default
/// (`temp_prefered_lft`); one kept longer is the device's stable one.
pub const TEMPORARY_LIFETIME: i64 = 24 * 3600;

/// The kind of one IPv6 address of a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Stable first: the address to propose, show and dial.
    Stable,
    LinkLocal,
    Temporary,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Stable, Kind::LinkLocal, Kind::Temporary];

    pub fn word(self) -> &'static str {
        match self {
            Kind::Stable => "stable",
            Kind::LinkLocal => "link-local",
            Kind::Temporary => "temporary",
        }
    }

    pub fn parse(word: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.word() == word)
    }
}

pub fn is_link_local(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// A unicast address a device can hold on a link: not multicast,
/// unspecified, loopback or IPv4-mapped.
pub fn is_device_unicast(a: Ipv6Addr) -> bool {
    !(a.is_multicast()
        || a.is_unspecified()
        || a.is_loopback()
        || a.to_ipv4_mapped().is_some()
        || a.segments()[0] == 0)
}

/// The modified EUI-64 interface identifier of `mac` (RFC 4291 appendix A).
pub fn interface_id(mac: Mac) -> u64 {
    let m = mac.0;
    u64::from_be_bytes([m[0] ^ 0x02, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]])
}

/// The SLAAC address `mac` takes in the /64 holding `prefix`.
pub fn eui64(mac: Mac, prefix: Ipv6Addr) -> Ipv6Addr {
    let net = u128::from(prefix) & !u128::from(u64::MAX);
    Ipv6Addr::from(net | u128::from(interface_id(mac)))
}

fn prefix64(a: Ipv6Addr) -> u64 {
    (u128::from(a) >> 64) as u64
}

/// One address of a device as history holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    pub ip: Ipv6Addr,
    pub first_seen: i64,
    pub last_seen: i64,
}

impl Held {
    /// An address one sweep saw, with no history behind it.
    pub fn once(ip: Ipv6Addr) -> Held {
        Held {
            ip,
            first_seen: 0,
            last_seen: 0,
        }
    }
}

/// The kind of each of a device's addresses (same order). Link-local by
/// prefix; an EUI-64 of its MAC or an address the database lists is
/// stable. Of the others in one /64: beside a stable one, temporary;
/// otherwise the one kept longest is stable once kept past
/// [`TEMPORARY_LIFETIME`] (a stable-privacy address), the rest temporary.
/// An address alone is no proof: an echo from a global source draws a
/// host's temporary address, so one seen once stays temporary.
pub fn kinds(mac: Option<Mac>, held: &[Held], listed: &[Ipv6Addr]) -> Vec<Kind> {
    let pinned = |a: Ipv6Addr| listed.contains(&a) || mac.is_some_and(|m| eui64(m, a) == a);
    held.iter()
        .map(|h| {
            if is_link_local(h.ip) {
                return Kind::LinkLocal;
            }
            if pinned(h.ip) {
                return Kind::Stable;
            }
            let same: Vec<&Held> = held
                .iter()
                .filter(|o| prefix64(o.ip) == prefix64(h.ip) && !is_link_local(o.ip))
                .collect();
            if same.iter().any(|o| pinned(o.ip)) {
                return Kind::Temporary;
            }
            let kept = |o: &Held| o.last_seen.saturating_sub(o.first_seen);
            let longest = same
                .iter()
                .max_by_key(|o| (kept(o), std::cmp::Reverse(o.ip)))
                .map(|o| o.ip);
            if longest == Some(h.ip) && kept(h) > TEMPORARY_LIFETIME {
                Kind::Stable
            } else {
                Kind::Temporary
            }
        })
        .collect()
}

/// The address to show and dial for a device with no IPv4: a stable one,
/// else its link-local one, else the newest temporary one.
pub fn primary(held: &[Held], kinds: &[Kind]) -> Option<Ipv6Addr> {
    held.iter()
        .zip(kinds)
        .min_by_key(|(h, k)| (**k, std::cmp::Reverse(h.last_seen)))
        .map(|(h, _)| h.ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(ip: &str, first: i64, last: i64) -> Held {
        Held {
            ip: ip.parse().unwrap(),
            first_seen: first,
            last_seen: last,
        }
    }

    #[test]
    fn eui64_follows_rfc_4291() {
        let mac: Mac = "52:54:00:12:34:56".parse().unwrap();
        assert_eq!(
            eui64(mac, "2001:db8:1::".parse().unwrap()),
            "2001:db8:1:0:5054:ff:fe12:3456"
                .parse::<Ipv6Addr>()
                .unwrap()
        );
    }

    #[test]
    fn a_device_with_slaac_and_privacy_addresses_has_one_stable_address() {
        let mac: Mac = "52:54:00:12:34:56".parse().unwrap();
        let h = [
            held("fe80::5054:ff:fe12:3456", 0, 10),
            held("2001:db8:1::9a1:77", 5, 10),
            held("2001:db8:1:0:5054:ff:fe12:3456", 0, 10),
            held("2001:db8:1::33", 0, 4),
        ];
        let k = kinds(Some(mac), &h, &[]);
        assert_eq!(
            k,
            [
                Kind::LinkLocal,
                Kind::Temporary,
                Kind::Stable,
                Kind::Temporary
            ]
        );
        assert_eq!(primary(&h, &k), Some(h[2].ip));
    }

    #[test]
    fn stable_privacy_addresses_become_stable_by_keeping_them() {
        let mac: Mac = "52:54:00:12:34:56".parse().unwrap();
        let day = TEMPORARY_LIFETIME;
        let only = [held("2001:db8:1::aaaa", 0, 5)];
        assert_eq!(kinds(Some(mac), &only, &[]), [Kind::Temporary]);
        let kept = [held("2001:db8:1::aaaa", 0, 2 * day)];
        assert_eq!(kinds(Some(mac), &kept, &[]), [Kind::Stable]);
        let young = [
            held("2001:db8:1::aaaa", 0, 5),
            held("2001:db8:1::bbbb", 3, 5),
        ];
        assert_eq!(
            kinds(Some(mac), &young, &[]),
            [Kind::Temporary, Kind::Temporary]
        );
        let old = [
            held("2001:db8:1::aaaa", 0, 2 * day),
            held("2001:db8:1::bbbb", day, 2 * day),
        ];
        assert_eq!(kinds(Some(mac), &old, &[]), [Kind::Stable, Kind::Temporary]);
        let listed = ["2001:db8:1::bbbb".parse().unwrap()];
        assert_eq!(
            kinds(Some(mac), &young, &listed),
            [Kind::Temporary, Kind::Stable]
        );
    }

    #[test]
    fn only_device_unicast_addresses_count() {
        for bad in ["ff02::1", "::", "::1", "::ffff:198.18.0.1", "::198.18.0.1"] {
            assert!(!is_device_unicast(bad.parse().unwrap()), "{bad}");
        }
        assert!(is_device_unicast("fe80::1".parse().unwrap()));
        assert!(is_device_unicast("2001:db8::1".parse().unwrap()));
        assert_eq!(Kind::parse("temporary"), Some(Kind::Temporary));
    }
}

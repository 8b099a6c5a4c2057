//! The addresses of a sweep as ranges, never as a list: a /8 is a handful
//! of numbers, and an address's position (for per-address state) is found
//! by binary search.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::{IpNetwork, Ipv6Network};

use super::{Error, HARD_MAX_ADDRESSES, MAX_ADDRESSES};

/// Sorted, disjoint, inclusive IPv4 ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct V4Ranges {
    ranges: Vec<(u32, u32)>,
    /// Index of each range's first address.
    offsets: Vec<usize>,
    len: usize,
}

impl V4Ranges {
    /// Sorts and merges overlapping or touching ranges.
    pub fn new(mut ranges: Vec<(u32, u32)>) -> V4Ranges {
        ranges.retain(|(a, b)| a <= b);
        ranges.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
        for (a, b) in ranges {
            match merged.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        let mut offsets = Vec::with_capacity(merged.len());
        let mut len = 0usize;
        for (a, b) in &merged {
            offsets.push(len);
            len += (b - a) as usize + 1;
        }
        V4Ranges {
            ranges: merged,
            offsets,
            len,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, i: usize) -> Option<Ipv4Addr> {
        if i >= self.len {
            return None;
        }
        let r = self.offsets.partition_point(|o| *o <= i) - 1;
        Some(Ipv4Addr::from(
            self.ranges[r].0 + (i - self.offsets[r]) as u32,
        ))
    }

    pub fn index_of(&self, ip: Ipv4Addr) -> Option<usize> {
        let n = u32::from(ip);
        let r = self
            .ranges
            .partition_point(|(a, _)| *a <= n)
            .checked_sub(1)?;
        let (a, b) = self.ranges[r];
        (n <= b).then(|| self.offsets[r] + (n - a) as usize)
    }

    pub fn iter(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.ranges
            .iter()
            .flat_map(|(a, b)| (*a..=*b).map(Ipv4Addr::from))
    }

    /// The part of these ranges inside `net`, without `except`.
    pub fn within(&self, net: ipnetwork::Ipv4Network, except: Ipv4Addr) -> V4Ranges {
        let (lo, hi) = (u32::from(net.network()), u32::from(net.broadcast()));
        let x = u32::from(except);
        let mut out = Vec::new();
        for &(a, b) in &self.ranges {
            let (a, b) = (a.max(lo), b.min(hi));
            if a > b {
                continue;
            }
            if (a..=b).contains(&x) {
                if x > a {
                    out.push((a, x - 1));
                }
                if x < b {
                    out.push((x + 1, b));
                }
            } else {
                out.push((a, b));
            }
        }
        V4Ranges::new(out)
    }

    /// These ranges without the addresses of `other`.
    pub fn without(&self, other: &V4Ranges) -> V4Ranges {
        // u64 so that `d + 1` after 255.255.255.255 cannot wrap.
        let mut out = Vec::new();
        for &(a, b) in &self.ranges {
            let (mut from, b) = (u64::from(a), u64::from(b));
            for &(c, d) in &other.ranges {
                let (c, d) = (u64::from(c), u64::from(d));
                if d < from || c > b {
                    continue;
                }
                if c > from {
                    out.push((from as u32, (c - 1) as u32));
                }
                from = d + 1;
            }
            if from <= b {
                out.push((from as u32, b as u32));
            }
        }
        V4Ranges::new(out)
    }
}

/// Every address of a sweep: IPv4 as ranges, IPv6 (at most a /112's
/// worth) listed, larger IPv6 prefixes as prefixes (searched by neighbour
/// discovery on the link they are attached to, never swept).
#[derive(Clone, Debug, Default)]
pub struct Targets {
    pub v4: V4Ranges,
    pub v6: Vec<Ipv6Addr>,
    pub prefixes6: Vec<Ipv6Network>,
}

impl Targets {
    /// The addresses of `nets`: IPv4 networks lose their network and
    /// broadcast addresses (except /31, /32). Refuses more than a /16 in
    /// all unless `allow_large`, and more than a /8 always.
    pub fn of(nets: &[IpNetwork], allow_large: bool) -> Result<Targets, Error> {
        if nets.is_empty() {
            return Err(Error::NoTargets);
        }
        let mut v4 = Vec::new();
        let mut v6 = std::collections::BTreeSet::new();
        let mut prefixes6 = Vec::new();
        let mut total: u128 = 0;
        for net in nets {
            let count = size(net);
            if let (IpNetwork::V6(n), true) = (net, count > MAX_ADDRESSES) {
                prefixes6.push(*n);
                continue;
            }
            total = total.saturating_add(count);
            if total > HARD_MAX_ADDRESSES {
                return Err(Error::WayTooLarge {
                    net: net.to_string(),
                    count,
                });
            }
            if total > MAX_ADDRESSES && !allow_large {
                return Err(Error::TooLarge {
                    net: net.to_string(),
                    count,
                });
            }
            match net {
                IpNetwork::V4(n) => {
                    let (first, last) = (u32::from(n.network()), u32::from(n.broadcast()));
                    v4.push(if n.prefix() >= 31 {
                        (first, last)
                    } else {
                        (first + 1, last - 1)
                    });
                }
                IpNetwork::V6(n) => {
                    let first = u128::from(n.network());
                    v6.extend((0..count).map(|i| Ipv6Addr::from(first + i)));
                }
            }
        }
        Ok(Targets {
            v4: V4Ranges::new(v4),
            v6: v6.into_iter().collect(),
            prefixes6,
        })
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.v4
            .iter()
            .map(IpAddr::V4)
            .chain(self.v6.iter().map(|a| IpAddr::V6(*a)))
    }
}

fn size(net: &IpNetwork) -> u128 {
    match net {
        IpNetwork::V4(n) => 1u128 << (32 - n.prefix()),
        IpNetwork::V6(n) => 1u128
            .checked_shl(128 - n.prefix() as u32)
            .unwrap_or(u128::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_merge_index_and_subtract() {
        let r = V4Ranges::new(vec![
            (u32::from(ip("198.18.0.10")), u32::from(ip("198.18.0.20"))),
            (u32::from(ip("198.18.0.1")), u32::from(ip("198.18.0.12"))),
            (u32::from(ip("198.18.1.1")), u32::from(ip("198.18.1.1"))),
        ]);
        assert_eq!(r.len(), 21);
        assert_eq!(r.get(0), Some(ip("198.18.0.1")));
        assert_eq!(r.get(19), Some(ip("198.18.0.20")));
        assert_eq!(r.get(20), Some(ip("198.18.1.1")));
        assert_eq!(r.get(21), None);
        for (i, a) in r.iter().enumerate() {
            assert_eq!(r.index_of(a), Some(i));
        }
        assert_eq!(r.index_of(ip("198.18.0.21")), None);
        let inner = r.within("198.18.0.0/24".parse().unwrap(), ip("198.18.0.5"));
        assert_eq!(inner.len(), 19);
        assert_eq!(inner.index_of(ip("198.18.0.5")), None);
        let rest = r.without(&inner);
        assert_eq!(
            rest.iter().collect::<Vec<_>>(),
            [ip("198.18.0.5"), ip("198.18.1.1")]
        );
    }

    #[test]
    fn a_slash_8_is_a_few_numbers() {
        let t = Targets::of(&["10.0.0.0/8".parse().unwrap()], true).unwrap();
        assert_eq!(t.len(), (1 << 24) - 2);
        assert_eq!(t.v4.ranges.len(), 1);
        assert_eq!(t.v4.get(t.len() - 1), Some(ip("10.255.255.254")));
    }
}

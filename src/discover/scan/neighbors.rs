//! The kernel's IPv4 neighbour table (`/proc/net/arp`): MACs of hosts the
//! kernel already talked to, e.g. found by ICMP when raw ARP is not allowed.

use std::{collections::HashMap, net::Ipv4Addr};

use crate::net::Mac;

/// Complete entries only (flag 0x2); incomplete ones are absent hosts.
pub fn parse(text: &str) -> HashMap<Ipv4Addr, Mac> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let ip: Ipv4Addr = cols.first()?.parse().ok()?;
            let flags = u32::from_str_radix(cols.get(2)?.trim_start_matches("0x"), 16).ok()?;
            let mac: Mac = cols.get(3)?.parse().ok()?;
            (flags & 0x2 != 0 && mac.0 != [0; 6]).then_some((ip, mac))
        })
        .collect()
}

pub fn read() -> HashMap<Ipv4Addr, Mac> {
    std::fs::read_to_string("/proc/net/arp")
        .map(|t| parse(&t))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_complete_entries_count() {
        let text =
            "IP address       HW type     Flags       HW address            Mask     Device\n\
                    198.18.0.11      0x1         0x2         02:00:00:00:00:11     *        br0\n\
                    198.18.0.99      0x1         0x0         00:00:00:00:00:00     *        br0\n";
        let t = super::parse(text);
        assert_eq!(t.len(), 1);
        assert_eq!(
            t[&"198.18.0.11".parse().unwrap()].to_string(),
            "02:00:00:00:00:11"
        );
    }
}

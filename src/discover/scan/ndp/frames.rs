//! The frames of IPv6 neighbour discovery: building an echo to all nodes
//! and a solicitation, and reading what a received frame claims.

use std::net::Ipv6Addr;

use super::{Claim, Heard, Link, ECHO_ID, ETH_P_IPV6};
use crate::{discover::scan::packet, ipv6, net::Mac};

/// An Ethernet frame carrying one ICMPv6 message from `src` to `dst`.
fn frame(
    link: &Link,
    dst_mac: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hops: u8,
    icmp: &[u8],
) -> Vec<u8> {
    let mut f = Vec::with_capacity(54 + icmp.len());
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&link.mac.0);
    f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    f.extend_from_slice(&[58, hops]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    let start = f.len();
    f.extend_from_slice(icmp);
    let mut pseudo = [0u8; 40];
    pseudo[0..16].copy_from_slice(&src.octets());
    pseudo[16..32].copy_from_slice(&dst.octets());
    pseudo[32..36].copy_from_slice(&(icmp.len() as u32).to_be_bytes());
    pseudo[39] = 58;
    let sum = packet::checksum(&[&pseudo, &f[start..]], 0);
    f[start + 2..start + 4].copy_from_slice(&sum.to_be_bytes());
    f
}

/// An echo request to all nodes from `src`; hop limit 1, never routed.
pub fn echo_frame(link: &Link, src: Ipv6Addr, seq: u16) -> Vec<u8> {
    let mut icmp = vec![128, 0, 0, 0];
    icmp.extend_from_slice(&ECHO_ID.to_be_bytes());
    icmp.extend_from_slice(&seq.to_be_bytes());
    icmp.extend_from_slice(ECHO_PAYLOAD);
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    frame(link, [0x33, 0x33, 0, 0, 0, 1], src, all_nodes, 1, &icmp)
}

/// A neighbour solicitation for `target` to its solicited-node group.
pub fn solicit_frame(link: &Link, src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let t = target.octets();
    let group = Ipv6Addr::from([
        0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, t[13], t[14], t[15],
    ]);
    let mut icmp = vec![135, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&t);
    icmp.extend_from_slice(&[1, 1]);
    icmp.extend_from_slice(&link.mac.0);
    frame(
        link,
        [0x33, 0x33, 0xff, t[13], t[14], t[15]],
        src,
        group,
        255,
        &icmp,
    )
}

/// The link-layer address option of type `kind` among NDP options.
fn option_mac(mut opts: &[u8], kind: u8) -> Option<Mac> {
    while opts.len() >= 8 {
        let len = usize::from(opts[1]) * 8;
        if len == 0 || len > opts.len() {
            return None;
        }
        if opts[0] == kind && len == 8 {
            return <[u8; 6]>::try_from(&opts[2..8]).ok().map(Mac);
        }
        opts = &opts[len..];
    }
    None
}

fn addr(b: &[u8]) -> Option<Ipv6Addr> {
    <[u8; 16]>::try_from(b).ok().map(Ipv6Addr::from)
}

/// What our echo requests carry, and their answers with them.
const ECHO_PAYLOAD: &[u8; 8] = b"mdb-ndp!";

/// What a received frame claims, if it is an answer to our echo or
/// neighbour discovery that passes RFC 4861's checks (hop limit 255, a
/// unicast MAC that is not ours and is the frame's sender, a device
/// unicast address).
pub fn parse(frame: &[u8], ours: Mac) -> Option<Claim> {
    if frame.len() < 58 || frame[12..14] != ETH_P_IPV6.to_be_bytes() || frame[14] >> 4 != 6 {
        return None;
    }
    let src_mac = Mac(<[u8; 6]>::try_from(&frame[6..12]).ok()?);
    let payload = usize::from(u16::from_be_bytes([frame[18], frame[19]]));
    let (next, hops) = (frame[20], frame[21]);
    let (src, dst) = (addr(&frame[22..38])?, addr(&frame[38..54])?);
    let icmp = frame.get(54..54 + payload)?;
    if next != 58
        || icmp.len() < 8
        || src_mac == ours
        || src_mac.is_multicast()
        || src_mac.0 == [0; 6]
    {
        return None;
    }
    let nd = hops == 255 && icmp[1] == 0;
    let (ip, mac, heard) = match icmp[0] {
        129 if icmp[4..6] == ECHO_ID.to_be_bytes() && icmp[8..] == *ECHO_PAYLOAD => {
            (src, src_mac, Heard::Echo)
        }
        // A solicitation from :: is duplicate address detection: the
        // target is the address being taken.
        135 if nd && icmp.len() >= 24 && src.is_unspecified() => {
            (addr(&icmp[8..24])?, src_mac, Heard::Overheard)
        }
        135 if nd && icmp.len() >= 24 => (
            src,
            option_mac(&icmp[24..], 1).unwrap_or(src_mac),
            Heard::Overheard,
        ),
        136 if nd && icmp.len() >= 24 => (
            addr(&icmp[8..24])?,
            option_mac(&icmp[24..], 2).unwrap_or(src_mac),
            Heard::Overheard,
        ),
        134 if nd && icmp.len() >= 16 && ipv6::is_link_local(src) => (
            src,
            option_mac(&icmp[16..], 1).unwrap_or(src_mac),
            Heard::Router,
        ),
        _ => return None,
    };
    // A link-layer option naming another MAC than the frame's sender
    // (a proxy, or a forger putting addresses in a victim's name) is no
    // claim.
    if mac != src_mac || !ipv6::is_device_unicast(ip) {
        return None;
    }
    Some(Claim {
        ip,
        mac,
        heard,
        to: dst,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::link;
    use super::*;

    /// A frame from `mac` as a host would send it (reusing our builder
    /// with the roles turned round).
    fn from(mac: &str, build: impl Fn(&Link) -> Vec<u8>) -> Vec<u8> {
        let mut l = link();
        l.mac = mac.parse().unwrap();
        build(&l)
    }

    #[test]
    fn checksums_hold_and_echo_answers_parse() {
        let l = link();
        let f = echo_frame(&l, "fe80::1".parse().unwrap(), 0);
        let mut pseudo = [0u8; 40];
        pseudo[0..32].copy_from_slice(&f[22..54]);
        pseudo[32..36].copy_from_slice(&((f.len() - 54) as u32).to_be_bytes());
        pseudo[39] = 58;
        assert_eq!(packet::checksum(&[&pseudo, &f[54..]], 0), 0);
        // The same frame as an answer from a host.
        let mut reply = from("52:54:00:12:34:56", |h| {
            echo_frame(h, "fe80::5054:ff:fe12:3456".parse().unwrap(), 0)
        });
        reply[54] = 129;
        let c = parse(&reply, l.mac).unwrap();
        assert_eq!(c.heard, Heard::Echo);
        assert_eq!(c.mac.to_string(), "52:54:00:12:34:56");
        // Our own frames and echo requests are no claims.
        assert_eq!(parse(&f, l.mac), None);
    }

    #[test]
    fn dad_and_advertisements_claim_addresses_only_at_hop_limit_255() {
        let l = link();
        let target: Ipv6Addr = "2001:db8:1::77".parse().unwrap();
        let mut dad = from("52:54:00:00:00:77", |h| {
            solicit_frame(h, Ipv6Addr::UNSPECIFIED, target)
        });
        let c = parse(&dad, l.mac).unwrap();
        assert_eq!((c.ip, c.heard), (target, Heard::Overheard));
        dad[21] = 64;
        assert_eq!(parse(&dad, l.mac), None, "a routed ND message is forged");
        let mut na = from("52:54:00:00:00:77", |h| {
            solicit_frame(h, "fe80::77".parse().unwrap(), target)
        });
        na[54] = 136;
        na[78] = 2; // the option is the target's address
        let c = parse(&na, l.mac).unwrap();
        assert_eq!(c.ip, target);
        // A claim of a multicast address is none.
        let mut bad = na.clone();
        bad[62] = 0xff;
        assert_eq!(parse(&bad, l.mac), None);
        assert_eq!(parse(&na[..40], l.mac), None);
        // An advertisement in another MAC's name (its option) is none.
        let mut proxy = na.clone();
        proxy[84] ^= 0x01;
        assert_eq!(parse(&proxy, l.mac), None);
        // Short ICMPv6 messages (payload length 0 to 7) are none, not a panic.
        for len in 0..8u16 {
            let mut short = na.clone();
            short[18..20].copy_from_slice(&len.to_be_bytes());
            assert_eq!(parse(&short, l.mac), None, "payload {len}");
        }
    }

    #[test]
    fn only_answers_to_our_own_echo_count() {
        let l = link();
        let mut reply = from("52:54:00:12:34:56", |h| {
            echo_frame(h, "fe80::5054:ff:fe12:3456".parse().unwrap(), 0)
        });
        reply[54] = 129;
        assert!(parse(&reply, l.mac).is_some());
        let mut other = reply.clone();
        let last = other.len() - 1;
        other[last] ^= 1;
        assert_eq!(parse(&other, l.mac), None, "another payload");
    }
}

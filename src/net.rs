//! Address types shared by the database and the scanner: MAC addresses and
//! inclusive IPv4/IPv6 ranges. Parsing only; no I/O.

use std::{fmt, net::IpAddr, str::FromStr};

/// A 48-bit MAC address, shown lower-case and colon-separated.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a MAC address (want six hex pairs like aa:bb:cc:dd:ee:ff)")]
pub struct BadMac(pub String);

impl Mac {
    /// A locally administered address (second hex digit 2, 6, A or E) is
    /// usually a randomised "private" MAC and no stable identity.
    pub fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }

    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// The first three bytes, as the IEEE assigns them.
    pub fn oui(&self) -> [u8; 3] {
        [self.0[0], self.0[1], self.0[2]]
    }
}

impl FromStr for Mac {
    type Err = BadMac;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex: String = s
            .trim()
            .chars()
            .filter(|c| !matches!(c, ':' | '-' | '.'))
            .collect();
        let bad = || BadMac(s.to_string());
        let separators_ok = {
            let t = s.trim();
            // aa:bb:.., aa-bb-.., aabb.ccdd.eeff (Cisco) or bare hex.
            let parts: Vec<&str> = t.split([':', '-']).collect();
            parts.len() == 6 && parts.iter().all(|p| p.len() == 2)
                || t.split('.').count() == 3 && t.split('.').all(|p| p.len() == 4)
                || (t.len() == 12 && !t.contains([':', '-', '.']))
        };
        if hex.len() != 12 || !separators_ok {
            return Err(bad());
        }
        let mut out = [0u8; 6];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).map_err(|_| bad())?;
        }
        Ok(Mac(out))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// An inclusive range of addresses of one family, e.g. `198.18.0.10-198.18.0.99`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpRange {
    pub first: IpAddr,
    pub last: IpAddr,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not an address range (want FIRST-LAST of one family, FIRST <= LAST)")]
pub struct BadRange(pub String);

impl IpRange {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.first, self.last, ip) {
            (IpAddr::V4(a), IpAddr::V4(b), IpAddr::V4(x)) => a <= x && x <= b,
            (IpAddr::V6(a), IpAddr::V6(b), IpAddr::V6(x)) => a <= x && x <= b,
            _ => false,
        }
    }
}

impl FromStr for IpRange {
    type Err = BadRange;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadRange(s.to_string());
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let first: IpAddr = a.trim().parse().map_err(|_| bad())?;
        let last: IpAddr = b.trim().parse().map_err(|_| bad())?;
        let ok = match (first, last) {
            (IpAddr::V4(a), IpAddr::V4(b)) => a <= b,
            (IpAddr::V6(a), IpAddr::V6(b)) => a <= b,
            _ => false,
        };
        if ok {
            Ok(IpRange { first, last })
        } else {
            Err(bad())
        }
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// `_ipp._tcp`: an underscore label of a service, then `_tcp` or `_udp`.
pub fn is_service_type(s: &str) -> bool {
    let mut parts = s.split('.');
    let (Some(service), Some(proto), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    (proto == "_tcp" || proto == "_udp")
        && service.len() > 1
        && service.len() <= 16
        && service.starts_with('_')
        && service[1..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_types_are_checked() {
        assert!(is_service_type("_ipp._tcp"));
        assert!(is_service_type("_printer._tcp"));
        assert!(!is_service_type("_ipp._tcp.x"));
        assert!(!is_service_type("ipp._tcp"));
        assert!(!is_service_type("_a b._tcp"));
        assert!(!is_service_type("_waytoolongservicename._tcp"));
    }

    #[test]
    fn mac_accepts_common_spellings_and_normalises() {
        for s in [
            "DC:A6:32:01:02:03",
            "dc-a6-32-01-02-03",
            "dca6.3201.0203",
            "dca632010203",
        ] {
            assert_eq!(s.parse::<Mac>().unwrap().to_string(), "dc:a6:32:01:02:03");
        }
    }

    #[test]
    fn mac_rejects_malformed() {
        for s in [
            "",
            "dc:a6:32:01:02",
            "dc:a6:32:01:02:0g",
            "dca:632:010:203",
            "d:ca6:32:01:02:03",
        ] {
            assert!(s.parse::<Mac>().is_err(), "{s} parsed");
        }
    }

    #[test]
    fn locally_administered_bit_is_detected() {
        assert!("da:a6:32:01:02:03".parse::<Mac>().unwrap().is_local());
        assert!(!"dc:a6:32:01:02:03".parse::<Mac>().unwrap().is_local());
    }

    #[test]
    fn range_parses_and_contains() {
        let r: IpRange = "198.18.0.10-198.18.0.20".parse().unwrap();
        assert!(r.contains("198.18.0.10".parse().unwrap()));
        assert!(r.contains("198.18.0.20".parse().unwrap()));
        assert!(!r.contains("198.18.0.21".parse().unwrap()));
        assert!("198.18.0.20-198.18.0.10".parse::<IpRange>().is_err());
        assert!("198.18.0.1-::1".parse::<IpRange>().is_err());
    }
}

//! Live DHCP leases, read from the lease files a DHCP server keeps:
//! dnsmasq's `dnsmasq.leases` (`EXPIRY MAC IP HOSTNAME CLIENT-ID`), ISC
//! dhcpd's `dhcpd.leases` (`lease IP { … }` blocks) and Kea's memfile CSV
//! (`address,hwaddr,…,expire,…,hostname,state,…`). Bounded: a file is read
//! up to a limit, a line that does not parse is counted and skipped, and an
//! expired lease is no lease. What a device calls itself (its hostname) is
//! its own words: cleaned and bounded.

use std::{collections::BTreeMap, net::Ipv4Addr, path::Path};

use crate::net::Mac;

/// The most of one lease file read.
pub const MAX_LEASE_FILE: u64 = 16 << 20;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub ip: Ipv4Addr,
    pub mac: Mac,
    /// The name the client sent, cleaned; may be empty.
    pub hostname: String,
    /// When it ends (0: never).
    pub expires_unix: i64,
}

/// The leases of one file, and what was wrong with it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Read {
    pub leases: Vec<Lease>,
    /// Lines or blocks that did not parse.
    pub skipped: usize,
    /// The file was larger than [`MAX_LEASE_FILE`]; only its start was read.
    pub truncated: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("lease file {path}: {source}")]
pub struct Error {
    pub path: String,
    pub source: std::io::Error,
}

/// Reads a lease file of any of the three formats (told apart by their
/// content), keeping the leases live at `now`.
pub fn read(path: &Path, now: i64) -> Result<Read, Error> {
    use std::io::Read as _;
    let err = |source| Error {
        path: path.display().to_string(),
        source,
    };
    let f = std::fs::File::open(path).map_err(err)?;
    let mut bytes = Vec::new();
    f.take(MAX_LEASE_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(err)?;
    let truncated = bytes.len() as u64 > MAX_LEASE_FILE;
    bytes.truncate(MAX_LEASE_FILE as usize);
    let text = String::from_utf8_lossy(&bytes);
    let mut out = parse(&text, now);
    out.truncated = truncated;
    Ok(out)
}

/// The leases in `text`, live at `now`.
pub fn parse(text: &str, now: i64) -> Read {
    let mut out = if text.contains("lease ") && text.contains('{') {
        isc(text)
    } else if text.starts_with("address,") {
        kea(text)
    } else {
        dnsmasq(text)
    };
    out.leases
        .retain(|l| l.expires_unix == 0 || l.expires_unix > now);
    out
}

/// The live leases by address, for the follower's conflict check.
pub fn by_address(leases: &[Lease]) -> BTreeMap<Ipv4Addr, Mac> {
    leases.iter().map(|l| (l.ip, l.mac)).collect()
}

fn hostname(raw: &str) -> String {
    match raw.trim() {
        "*" | "" => String::new(),
        name => crate::escape::clean(name, 253),
    }
}

fn dnsmasq(text: &str) -> Read {
    let mut out = Read::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let lease = (f.len() >= 4).then_some(()).and_then(|_| {
            Some(Lease {
                expires_unix: f[0].parse().ok()?,
                mac: f[1].parse().ok()?,
                ip: f[2].parse().ok()?,
                hostname: hostname(f[3]),
            })
        });
        match lease {
            Some(l) => out.leases.push(l),
            // duid lines of DHCPv6 and anything broken.
            None if line.starts_with("duid ") => {}
            None => out.skipped += 1,
        }
    }
    out
}

fn kea(text: &str) -> Read {
    let mut out = Read::default();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
    let col = |name: &str| header.iter().position(|h| h.trim() == name);
    let (Some(a), Some(h), Some(e)) = (col("address"), col("hwaddr"), col("expire")) else {
        out.skipped += 1;
        return out;
    };
    let (name_col, state_col) = (col("hostname"), col("state"));
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split(',').collect();
        // A later line for the same address replaces an earlier one; state
        // 0 is a lease in use (1 declined, 2 expired-reclaimed).
        let lease = (|| {
            if state_col
                .and_then(|c| f.get(c))
                .is_some_and(|s| s.trim() != "0")
            {
                return None;
            }
            Some(Lease {
                ip: f.get(a)?.trim().parse().ok()?,
                mac: f.get(h)?.trim().parse().ok()?,
                expires_unix: f.get(e)?.trim().parse().ok()?,
                hostname: name_col
                    .and_then(|c| f.get(c))
                    .map_or(String::new(), |n| hostname(n)),
            })
        })();
        match lease {
            Some(l) => {
                out.leases.retain(|old| old.ip != l.ip);
                out.leases.push(l);
            }
            None => out.skipped += 1,
        }
    }
    out
}

fn isc(text: &str) -> Read {
    let mut out = Read::default();
    for block in text.split("lease ").skip(1) {
        let Some((head, body)) = block.split_once('{') else {
            out.skipped += 1;
            continue;
        };
        let body = body.split('}').next().unwrap_or("");
        let field = |key: &str| {
            body.split(';')
                .map(str::trim)
                .find_map(|s| s.strip_prefix(key))
                .map(|v| v.trim().trim_matches('"').to_string())
        };
        let ends = field("ends ").and_then(|v| isc_time(&v));
        let active = field("binding state ").is_none_or(|s| s == "active");
        let lease = (|| {
            Some(Lease {
                ip: head.trim().parse().ok()?,
                mac: field("hardware ethernet ")?.parse().ok()?,
                hostname: field("client-hostname ").map_or(String::new(), |n| hostname(&n)),
                expires_unix: ends?,
            })
        })();
        match lease {
            Some(l) if active => {
                out.leases.retain(|old| old.ip != l.ip);
                out.leases.push(l);
            }
            Some(_) => {}
            None => out.skipped += 1,
        }
    }
    out
}

/// `ends 4 2026/12/01 16:00:00` (UTC) or `ends never`.
fn isc_time(v: &str) -> Option<i64> {
    if v == "never" {
        return Some(0);
    }
    let mut parts = v.split_whitespace().skip(1);
    let (date, time) = (parts.next()?, parts.next()?);
    let d: Vec<i64> = date.split('/').filter_map(|x| x.parse().ok()).collect();
    let t: Vec<i64> = time.split(':').filter_map(|x| x.parse().ok()).collect();
    let ([y, m, dd], [hh, mm, ss]) = (d.as_slice(), t.as_slice()) else {
        return None;
    };
    // Days from civil (H. Hinnant).
    let (y, m) = if *m <= 2 { (y - 1, m + 9) } else { (*y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + dd - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some((era * 146_097 + doe - 719_468) * 86_400 + hh * 3600 + mm * 60 + ss)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_formats_read_and_expired_leases_are_dropped() {
        let now = 1_800_000_000;
        let dnsmasq = "1800000600 dc:a6:32:00:00:11 198.18.1.148 pi-new 01:dc:a6:32:00:00:11\n1700000000 dc:a6:32:00:00:12 198.18.1.149 old *\nduid 00:01\ngarbage\n0 02:00:00:00:00:13 198.18.1.150 * *\n";
        let r = parse(dnsmasq, now);
        assert_eq!(r.leases.len(), 2, "{r:?}");
        assert_eq!(r.leases[0].hostname, "pi-new");
        assert_eq!(r.leases[1].hostname, "", "* is no name");
        assert_eq!(r.skipped, 1);

        let kea = "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context\n198.18.1.148,dc:a6:32:00:00:11,,3600,1800000600,1,0,0,pi-kea,0,\n198.18.1.149,dc:a6:32:00:00:12,,3600,1800000600,1,0,0,gone,2,\n";
        let r = parse(kea, now);
        assert_eq!(r.leases.len(), 1, "{r:?}");
        assert_eq!(r.leases[0].hostname, "pi-kea");

        let isc = "lease 198.18.1.148 {\n  starts 2 2027/01/15 08:00:00;\n  ends 2 2027/01/15 09:00:00;\n  binding state active;\n  hardware ethernet dc:a6:32:00:00:11;\n  client-hostname \"pi-isc\";\n}\nlease 198.18.1.149 {\n  ends never;\n  binding state free;\n  hardware ethernet dc:a6:32:00:00:12;\n}\n";
        let r = parse(isc, now);
        assert_eq!(r.leases.len(), 1, "{r:?}");
        assert_eq!(r.leases[0].hostname, "pi-isc");
        assert_eq!(r.leases[0].expires_unix, 1_800_003_600);
    }

    #[test]
    fn a_hostile_name_is_cleaned_and_a_huge_file_is_cut() {
        let r = parse("0 dc:a6:32:00:00:11 198.18.1.148 evil\u{1b}[2J<b>\n", 1);
        assert_eq!(r.leases[0].hostname, "evil [2J<b>");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.leases");
        let line = "0 dc:a6:32:00:00:11 198.18.1.148 pi *\n";
        std::fs::write(
            &path,
            line.repeat((MAX_LEASE_FILE as usize / line.len()) + 10),
        )
        .unwrap();
        let r = read(&path, 1).unwrap();
        assert!(r.truncated);
        assert!(!r.leases.is_empty());
    }
}

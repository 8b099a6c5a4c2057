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
    let mut out = match Format::of(text) {
        Format::Kea => kea(text),
        Format::Isc => isc(text),
        Format::Dnsmasq => dnsmasq(text),
    };
    out.leases
        .retain(|l| l.expires_unix == 0 || l.expires_unix > now);
    out
}

#[derive(Debug, PartialEq, Eq)]
enum Format {
    Dnsmasq,
    Isc,
    Kea,
}

impl Format {
    /// Told by how lines start (a hostname never starts a line: dnsmasq
    /// keeps one lease a line, dhcpd writes a newline in a string as an
    /// escape): Kea's CSV header; a dnsmasq line (an expiry time, or
    /// `duid`); else dhcpd's comments and statements; anything else is read
    /// as dnsmasq's, whose junk lines are counted.
    fn of(text: &str) -> Format {
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .take(64)
            .collect();
        let first_word = |l: &str| l.split_whitespace().next().unwrap_or_default().to_string();
        let dnsmasq = |l: &&str| {
            let w = first_word(l);
            w == "duid" || (!w.is_empty() && w.bytes().all(|b| b.is_ascii_digit()))
        };
        let isc = |l: &&str| l.starts_with('#') || ISC_STATEMENTS.contains(&first_word(l).as_str());
        if lines.first().is_some_and(|l| l.starts_with("address,")) {
            Format::Kea
        } else if lines.iter().any(dnsmasq) {
            Format::Dnsmasq
        } else if lines.iter().any(isc) {
            Format::Isc
        } else {
            Format::Dnsmasq
        }
    }
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

/// Kea's CSV writes a character that would end a field as `&#xHH`
/// (a comma as `&#x2c`).
fn kea_unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(at) = rest.find("&#x") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 3..];
        let hex = after.get(..2).and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(v) => {
                out.push(char::from(v));
                rest = &after[2..];
            }
            None => {
                out.push_str("&#x");
                rest = after;
            }
        }
    }
    out.push_str(rest);
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
                    .map_or(String::new(), |n| hostname(&kea_unescape(n))),
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

/// A token of ISC dhcpd's lease file: a word, a quoted string (its
/// escapes decoded), or one of `{ } ; =`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Word(String),
    Quoted(Vec<u8>),
    Open,
    Close,
    End,
}

/// Tokens of `text` as dhcpd writes and reads them: a `#` starts a comment
/// (outside quotes), and inside quotes `\"`, `\\` and octal `\ooo` are
/// escapes, so a client's hostname never ends a statement or a block.
fn isc_tokens(text: &str) -> Vec<Token> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            c if c.is_ascii_whitespace() => i += 1,
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'{' => {
                out.push(Token::Open);
                i += 1;
            }
            b'}' => {
                out.push(Token::Close);
                i += 1;
            }
            b';' | b'=' => {
                out.push(if b[i] == b';' {
                    Token::End
                } else {
                    Token::Word("=".into())
                });
                i += 1;
            }
            b'"' => {
                let (s, next) = isc_quoted(b, i + 1);
                out.push(Token::Quoted(s));
                i = next;
            }
            _ => {
                let start = i;
                while i < b.len() && !b[i].is_ascii_whitespace() && !b"{};=\"#".contains(&b[i]) {
                    i += 1;
                }
                out.push(Token::Word(text[start..i].to_string()));
            }
        }
    }
    out
}

/// A quoted string from just after its opening quote: its bytes and where
/// reading goes on. An unterminated string runs to the end.
fn isc_quoted(b: &[u8], mut i: usize) -> (Vec<u8>, usize) {
    let mut s = Vec::new();
    while i < b.len() {
        match b[i] {
            b'"' => return (s, i + 1),
            b'\\'
                if i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) =>
            {
                let v = b[i + 1..i + 4]
                    .iter()
                    .fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                s.push(v as u8);
                i += 4;
            }
            b'\\' if i + 1 < b.len() => {
                s.push(match b[i + 1] {
                    b'n' => b'\n',
                    b't' => b'\t',
                    b'r' => b'\r',
                    other => other,
                });
                i += 2;
            }
            c => {
                s.push(c);
                i += 1;
            }
        }
    }
    (s, i)
}

/// The statements of one block, each its tokens without the `;`; nested
/// blocks (`on expiry { … }`) are skipped whole, by counting braces (no
/// recursion: a file of braces is no stack overflow). Returns where the
/// block ends (after its `}`).
fn isc_block(tokens: &[Token], mut i: usize) -> (Vec<Vec<Token>>, usize) {
    let mut statements = Vec::new();
    let mut current = Vec::new();
    while i < tokens.len() {
        match &tokens[i] {
            Token::Close => return (statements, i + 1),
            Token::End => statements.push(std::mem::take(&mut current)),
            Token::Open => {
                i = isc_skip_block(tokens, i + 1);
                current.clear();
                continue;
            }
            t => current.push(t.clone()),
        }
        i += 1;
    }
    (statements, i)
}

/// What dhcpd writes at the top of its lease file.
const ISC_STATEMENTS: &[&str] = &[
    "authoring-byte-order",
    "server-duid",
    "host",
    "failover",
    "lease",
];

/// Where the top-level statement starting at `i` ends: after its `;`, or
/// after the block it opens.
fn isc_statement_end(tokens: &[Token], mut i: usize) -> usize {
    while i < tokens.len() {
        match tokens[i] {
            Token::End => return i + 1,
            Token::Open => return isc_skip_block(tokens, i + 1),
            _ => i += 1,
        }
    }
    i
}

/// Where the block opened just before `i` ends (after its `}`).
fn isc_skip_block(tokens: &[Token], mut i: usize) -> usize {
    let mut depth = 1usize;
    while i < tokens.len() && depth > 0 {
        match tokens[i] {
            Token::Open => depth += 1,
            Token::Close => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    i
}

fn isc(text: &str) -> Read {
    let tokens = isc_tokens(text);
    let mut out = Read::default();
    let mut i = 0;
    while i < tokens.len() {
        let is_lease = matches!(&tokens[i], Token::Word(w) if w == "lease");
        let (Some(Token::Word(ip)), Some(Token::Open), true) =
            (tokens.get(i + 1), tokens.get(i + 2), is_lease)
        else {
            // Any other statement or block at the top: passed over whole;
            // one dhcpd does not write is counted.
            let known =
                matches!(&tokens[i], Token::Word(w) if ISC_STATEMENTS.contains(&w.as_str()));
            if !known {
                out.skipped += 1;
            }
            i = isc_statement_end(&tokens, i);
            continue;
        };
        let (body, next) = isc_block(&tokens, i + 3);
        i = next;
        match isc_lease(ip, &body) {
            Some((l, true)) => {
                out.leases.retain(|old| old.ip != l.ip);
                out.leases.push(l);
            }
            Some((_, false)) => {}
            None => out.skipped += 1,
        }
    }
    out
}

/// One `lease IP { … }`: the lease, and whether it is active.
fn isc_lease(ip: &str, body: &[Vec<Token>]) -> Option<(Lease, bool)> {
    let words = |s: &[Token]| -> Vec<String> {
        s.iter()
            .map(|t| match t {
                Token::Word(w) => w.clone(),
                Token::Quoted(q) => String::from_utf8_lossy(q).into_owned(),
                _ => String::new(),
            })
            .collect()
    };
    let (mut ends, mut mac, mut name, mut active) = (None, None, String::new(), true);
    for st in body {
        let w = words(st);
        match w.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            ["ends", rest @ ..] => ends = isc_time(&rest.join(" ")),
            ["binding", "state", state] => active = *state == "active",
            ["hardware", "ethernet", m] => mac = m.parse().ok(),
            ["client-hostname", _] => {
                if let Some(Token::Quoted(q)) = st.get(1) {
                    name = crate::escape::clean_bytes(q, 253);
                }
            }
            _ => {}
        }
    }
    let lease = Lease {
        ip: ip.parse().ok()?,
        mac: mac?,
        hostname: hostname(&name),
        expires_unix: ends?,
    };
    Some((lease, active))
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
    fn a_hostname_that_looks_like_a_lease_stays_a_hostname() {
        let now = 1_800_000_000;
        // What dhcpd wrote for a client that sent this hostname: the
        // quotes hold it, octal escapes hold its control bytes.
        let isc = "# The format of this file is documented in the dhcpd.leases(5) manual page.\nauthoring-byte-order little-endian;\nlease 198.18.1.148 {\n  starts 2 2027/01/15 08:00:00;\n  ends 2 2027/01/15 09:00:00;\n  binding state active;\n  hardware ethernet dc:a6:32:00:00:11;\n  uid \"\\001\\334\\246\";\n  set vendor-class-identifier = \"udhcp 1.36.1\";\n  client-hostname \"x lease 198.18.0.10 { ends never; hardware ethernet 02:66:66:66:66:66\\\"\\012}\";\n}\nserver-duid \"\\000\\001\";\n";
        let r = parse(isc, now);
        assert_eq!(r.leases.len(), 1, "{r:?}");
        assert_eq!(r.skipped, 0, "{r:?}");
        let l = &r.leases[0];
        assert_eq!(l.ip.to_string(), "198.18.1.148");
        assert_eq!(l.mac.to_string(), "dc:a6:32:00:00:11");
        assert_eq!(
            l.hostname,
            "x lease 198.18.0.10 { ends never; hardware ethernet 02:66:66:66:66:66\" }"
        );
        // Kea's CSV escapes the commas of a hostname.
        let kea = "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context\n198.18.1.148,dc:a6:32:00:00:11,,3600,1800000600,1,0,0,x&#x2c198.18.0.10&#x2c02:66:66:66:66:66,0,\n";
        let r = parse(kea, now);
        assert_eq!(r.leases.len(), 1, "{r:?}");
        assert_eq!(r.leases[0].ip.to_string(), "198.18.1.148");
        assert_eq!(r.leases[0].hostname, "x,198.18.0.10,02:66:66:66:66:66");
    }

    #[test]
    fn the_format_comes_from_the_shape_of_the_first_line_and_braces_are_no_recursion() {
        // A dnsmasq client called `server-duid` keeps its file dnsmasq's.
        let r = parse(
            "1800000600 dc:a6:32:00:00:11 198.18.1.148 server-duid *\n",
            1,
        );
        assert_eq!(r.leases.len(), 1, "{r:?}");
        assert_eq!(Format::of("# The format of this file\nlease"), Format::Isc);
        assert_eq!(Format::of("duid 00:01\n1 a b c"), Format::Dnsmasq);
        assert_eq!(
            Format::of("not a lease\n1 dc:a6:32:00:00:99"),
            Format::Dnsmasq
        );
        let junk = parse("authoring-byte-order little-endian;\nwhat is this;\n", 1);
        assert_eq!(junk.skipped, 1, "{junk:?}");
        let braces = format!("lease 1.2.3.4 {}", "{".repeat(1 << 20));
        let r = parse(&braces, 1);
        assert!(r.leases.is_empty());
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

//! SSH host keys: the `TYPE BASE64` form the database and known-hosts
//! files hold ([`HostKey`]), and reading the key a host offers (`scan`).
//!
//! What a host offers is its own claim: a key read from one is only a
//! proposal (an enrolment pull request a DB writer merges) or compared
//! with a key pinned already. OpenSSH itself proves possession (the
//! signature of the exchange) when a session is made with the pinned key.

mod scan;

#[cfg(test)]
pub(crate) use scan::test_sshd;
pub use scan::{offer, scan, Offer, ScanError, Scanned, ALL_ALGORITHMS, MAX_BANNER};

use std::{fmt, str::FromStr};

use base64::{engine::general_purpose::STANDARD, engine::general_purpose::STANDARD_NO_PAD, Engine};
use sha2::Digest;

/// The key types a host key may have, as their blobs name them.
pub const TYPES: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
];
/// The largest key blob read (an RSA key of 16,384 bits is about 2 KiB).
const MAX_BLOB: usize = 4096;

/// An SSH public host key.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostKey {
    /// One of [`TYPES`].
    kind: &'static str,
    /// The public key blob (RFC 4253 §6.6), whose first field is `kind`.
    blob: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BadKey {
    #[error("is not a host key: want \"TYPE BASE64\" as ssh-keyscan prints it, TYPE one of {}", TYPES.join(", "))]
    Form,
    #[error("has the unknown key type {0:?} (want one of {types})", types = TYPES.join(", "))]
    Type(String),
    #[error("is not valid base64")]
    Base64,
    #[error("holds a key of another type than it says")]
    Mismatch,
    #[error("is longer than {MAX_BLOB} bytes")]
    TooLong,
}

impl HostKey {
    /// A key from its blob, as a server sends it.
    pub fn from_blob(blob: &[u8]) -> Result<HostKey, BadKey> {
        if blob.len() > MAX_BLOB {
            return Err(BadKey::TooLong);
        }
        let mut r = Reader(blob);
        let named = r.string().ok_or(BadKey::Mismatch)?;
        let kind = TYPES
            .iter()
            .find(|t| t.as_bytes() == named)
            .ok_or_else(|| {
                BadKey::Type(String::from_utf8_lossy(named).chars().take(40).collect())
            })?;
        // The rest must be the fields of that type, and nothing more.
        let fields = if *kind == "ssh-ed25519" { 1 } else { 2 };
        for _ in 0..fields {
            r.string().ok_or(BadKey::Mismatch)?;
        }
        if !r.0.is_empty() {
            return Err(BadKey::Mismatch);
        }
        Ok(HostKey {
            kind,
            blob: blob.to_vec(),
        })
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// `SHA256:…`, as `ssh-keygen -l` shows it.
    pub fn fingerprint(&self) -> String {
        format!(
            "SHA256:{}",
            STANDARD_NO_PAD.encode(sha2::Sha256::digest(&self.blob))
        )
    }

    /// The host key algorithms that use a key of this type, preferred first.
    pub fn algorithms(&self) -> &'static [&'static str] {
        algorithms_of(self.kind)
    }
}

pub(crate) fn algorithms_of(kind: &str) -> &'static [&'static str] {
    match kind {
        "ssh-ed25519" => &["ssh-ed25519"],
        "ecdsa-sha2-nistp256" => &["ecdsa-sha2-nistp256"],
        "ecdsa-sha2-nistp384" => &["ecdsa-sha2-nistp384"],
        "ecdsa-sha2-nistp521" => &["ecdsa-sha2-nistp521"],
        _ => &["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
    }
}

/// `TYPE BASE64`, optionally followed by a comment, which is dropped.
impl FromStr for HostKey {
    type Err = BadKey;

    fn from_str(s: &str) -> Result<HostKey, BadKey> {
        let mut words = s.split_ascii_whitespace();
        let (Some(kind), Some(data)) = (words.next(), words.next()) else {
            return Err(BadKey::Form);
        };
        if !TYPES.contains(&kind) {
            return Err(BadKey::Type(kind.chars().take(40).collect()));
        }
        if data.len() > MAX_BLOB * 4 / 3 + 4 {
            return Err(BadKey::TooLong);
        }
        let blob = STANDARD.decode(data).map_err(|_| BadKey::Base64)?;
        let key = HostKey::from_blob(&blob)?;
        if key.kind != kind {
            return Err(BadKey::Mismatch);
        }
        Ok(key)
    }
}

impl fmt::Display for HostKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, STANDARD.encode(&self.blob))
    }
}

impl fmt::Debug for HostKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.fingerprint())
    }
}

/// One line of an OpenSSH known-hosts file: `ALIAS TYPE BASE64`.
pub fn known_hosts_line(alias: &str, key: &HostKey) -> String {
    format!("{alias} {key}\n")
}

/// A cursor over SSH wire fields.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn string(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(u32::from_be_bytes(self.0.get(..4)?.try_into().ok()?)).ok()?;
        let end = len.checked_add(4)?;
        let s = self.0.get(4..end)?;
        self.0 = &self.0[end..];
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIQFtusPZJiBkXPjFPCubwzUHxvTK71qtuBFPW7KekEO";

    #[test]
    fn keys_parse_print_and_refuse_what_is_not_a_key() {
        let k: HostKey = format!("{ED25519} root@pi").parse().unwrap();
        assert_eq!(k.to_string(), ED25519, "the comment is dropped");
        assert_eq!(k.kind(), "ssh-ed25519");
        assert!(k.fingerprint().starts_with("SHA256:"));
        assert_eq!("".parse::<HostKey>(), Err(BadKey::Form));
        assert!(matches!(
            "ssh-dss AAAA".parse::<HostKey>(),
            Err(BadKey::Type(_))
        ));
        assert_eq!("ssh-ed25519 !!!".parse::<HostKey>(), Err(BadKey::Base64));
        // An ed25519 blob labelled as RSA.
        let lie = ED25519.replace("ssh-ed25519", "ssh-rsa");
        assert_eq!(lie.parse::<HostKey>(), Err(BadKey::Mismatch));
        // Trailing bytes after the key's fields.
        let mut blob = STANDARD.decode(ED25519.split(' ').nth(1).unwrap()).unwrap();
        blob.push(0);
        let padded = format!("ssh-ed25519 {}", STANDARD.encode(&blob));
        assert_eq!(padded.parse::<HostKey>(), Err(BadKey::Mismatch));
        let huge = format!("ssh-rsa {}", "A".repeat(10_000));
        assert_eq!(huge.parse::<HostKey>(), Err(BadKey::TooLong));
    }
}

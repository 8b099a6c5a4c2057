//! Who may ask a port of mdb: scoped bearer tokens read from files, checked
//! in constant time (`Tokens`), by one layer for every gRPC server (`grpc`)
//! and one guard for the page and `/metrics` (`web`: a login by a trusted
//! proxy's header or a hashed password file). Health and readiness stay
//! open; everything else answers only a caller who can tell who it is.
//! With nothing configured, every port answers as before, and the daemon
//! says once that its ports are open.

pub mod grpc;
pub mod settings;
pub mod web;

use std::path::{Path, PathBuf};

use sha2::Digest;

/// What a token lets its holder ask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// The database and discovery API: the CLI, the inventory, the runner,
    /// the DHCP follower.
    Read,
    /// What a replica or the filer needs of a scanner it mirrors: the
    /// Watch of its sweeps, its histories and its stats; nothing else.
    Mirror,
    /// A runner's statuses (its own port).
    Runner,
    /// `/metrics`, as Prometheus' `authorization.credentials_file` sends it.
    Metrics,
    /// Waking a machine of the database (a scanner sends the magic packet
    /// on its segment for a runner or `mdb wake` elsewhere).
    Wake,
}

impl Scope {
    pub const WORDS: &'static [(&'static str, Scope)] = &[
        ("read", Scope::Read),
        ("mirror", Scope::Mirror),
        ("runner", Scope::Runner),
        ("metrics", Scope::Metrics),
        ("wake", Scope::Wake),
    ];

    pub fn word(self) -> &'static str {
        crate::db::words::word_in(Scope::WORDS, self)
    }
}

/// Why a caller was refused, as `mdb_auth_refused_total{reason}` spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    /// No credentials at all.
    Missing,
    /// A token no file holds.
    Invalid,
    /// A token of another scope than the call needs.
    Scope,
    /// A call that sends packets (Wake) on a server that asks nobody for
    /// credentials: it is refused to everyone.
    Unguarded,
}

impl Denied {
    pub const WORDS: &'static [(&'static str, Denied)] = &[
        ("missing", Denied::Missing),
        ("invalid", Denied::Invalid),
        ("scope", Denied::Scope),
        ("unguarded", Denied::Unguarded),
    ];

    pub fn word(self) -> &'static str {
        crate::db::words::word_in(Denied::WORDS, self)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("token file {}: {why}", .path.display())]
    File { path: PathBuf, why: String },
}

/// The shortest token taken: a guessable one is no credential.
pub const MIN_TOKEN_LEN: usize = 16;
/// Tokens one file may hold (one per line: a new one beside the old while
/// clients move over).
const MAX_TOKENS_PER_FILE: usize = 16;
/// The largest token file read.
const MAX_TOKEN_FILE: u64 = 64 << 10;

/// Every accepted token, kept as its SHA-256 only.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    digests: Vec<(Scope, [u8; 32])>,
}

impl Tokens {
    /// The tokens of each scope's file: one per line, blank lines and
    /// `#` comments skipped.
    pub fn load(files: &[(Scope, PathBuf)]) -> Result<Tokens, Error> {
        let mut digests = Vec::new();
        for (scope, path) in files {
            for token in read_tokens(path)? {
                digests.push((*scope, digest(&token)));
            }
        }
        Ok(Tokens { digests })
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Whether `presented` (an `authorization` value) is a token of one of
    /// `allowed`. Every digest is compared, in constant time each, so the
    /// time taken says nothing of which bytes matched.
    pub fn check(&self, presented: Option<&str>, allowed: &[Scope]) -> Result<Scope, Denied> {
        let Some(token) = presented.and_then(bearer) else {
            return Err(Denied::Missing);
        };
        let d = digest(token);
        let mut found: Option<Scope> = None;
        for (scope, known) in &self.digests {
            if constant_time_eq(&d, known) && (found.is_none() || allowed.contains(scope)) {
                found = Some(*scope);
            }
        }
        match found {
            None => Err(Denied::Invalid),
            Some(s) if allowed.contains(&s) => Ok(s),
            Some(_) => Err(Denied::Scope),
        }
    }
}

/// The token of `Authorization: Bearer TOKEN`.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn digest(token: &str) -> [u8; 32] {
    sha2::Sha256::digest(token.as_bytes()).into()
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn read_tokens(path: &Path) -> Result<Vec<String>, Error> {
    use std::io::Read;
    let err = |why: String| Error::File {
        path: path.to_path_buf(),
        why,
    };
    let f = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let mut text = String::new();
    f.take(MAX_TOKEN_FILE)
        .read_to_string(&mut text)
        .map_err(|e| err(e.to_string()))?;
    let tokens: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    if tokens.is_empty() {
        return Err(err("holds no token".into()));
    }
    if tokens.len() > MAX_TOKENS_PER_FILE {
        return Err(err(format!("holds more than {MAX_TOKENS_PER_FILE} tokens")));
    }
    for (i, t) in tokens.iter().enumerate() {
        let printable = t.bytes().all(|b| b.is_ascii_graphic());
        if t.len() < MIN_TOKEN_LEN || !printable {
            return Err(err(format!(
                "token {} is not {MIN_TOKEN_LEN} or more printable characters without spaces",
                i + 1
            )));
        }
    }
    Ok(tokens)
}

/// Tells once, at start, that a daemon's ports answer anyone.
pub fn warn_open(what: &str) {
    tracing::warn!("{what} answers anyone who can reach its ports: no token files or client CA are configured (see the README's Security section)");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_taken_for_its_scope_only_and_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let read = dir.path().join("read");
        let mirror = dir.path().join("mirror");
        std::fs::write(
            &read,
            "# the CLI\nread-token-0123456789\nread-token-new-abcdef\n",
        )
        .unwrap();
        std::fs::write(&mirror, "mirror-token-0123456789\n").unwrap();
        let t = Tokens::load(&[(Scope::Read, read.clone()), (Scope::Mirror, mirror)]).unwrap();
        let ok = |v: &str, s: &[Scope]| t.check(Some(v), s);
        assert_eq!(
            ok("Bearer read-token-0123456789", &[Scope::Read]),
            Ok(Scope::Read)
        );
        assert_eq!(
            ok("bearer read-token-new-abcdef", &[Scope::Read]),
            Ok(Scope::Read)
        );
        assert_eq!(
            ok("Bearer mirror-token-0123456789", &[Scope::Read]),
            Err(Denied::Scope)
        );
        assert_eq!(
            ok(
                "Bearer mirror-token-0123456789",
                &[Scope::Read, Scope::Mirror]
            ),
            Ok(Scope::Mirror)
        );
        assert_eq!(
            ok("Bearer read-token-012345678", &[Scope::Read]),
            Err(Denied::Invalid)
        );
        assert_eq!(
            ok("Basic read-token-0123456789", &[Scope::Read]),
            Err(Denied::Missing)
        );
        assert_eq!(t.check(None, &[Scope::Read]), Err(Denied::Missing));
        for bad in ["", "short\n", "has a space in it here\n"] {
            std::fs::write(&read, bad).unwrap();
            assert!(
                Tokens::load(&[(Scope::Read, read.clone())]).is_err(),
                "{bad:?}"
            );
        }
    }
}

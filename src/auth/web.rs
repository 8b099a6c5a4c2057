//! The guard in front of an HTTP port: the page and its events need a
//! signed-in person, as `web_auth` says: `forward` trusts the user header
//! a login proxy (oauth2-proxy, Authelia, Authentik) sets, from the proxy's
//! own addresses only; `basic` checks a password file of bcrypt hashes
//! (`htpasswd -B`); `none` lets anyone in. `/metrics` needs the metrics
//! token when one is configured (Prometheus' `credentials_file`);
//! `/healthz` and `/readyz` are always open, for the probes.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use axum::{
    extract::{Request, State},
    http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use base64::Engine;
use ipnetwork::IpNetwork;
use sha2::Digest;

use super::{Scope, Tokens};

/// How the page is signed in to.
#[derive(Clone, Debug, Default)]
pub enum Login {
    /// Anyone who reaches the port sees the page.
    #[default]
    None,
    /// A login proxy in front says who it is, in `header`; believed only
    /// from `proxies`.
    Forward {
        header: HeaderName,
        proxies: Vec<IpNetwork>,
    },
    /// HTTP Basic, checked against bcrypt hashes by user.
    Basic { users: HashMap<String, String> },
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("password file {}: {why}", .path.display())]
    Passwords { path: PathBuf, why: String },
}

/// The largest password file read.
const MAX_PASSWORD_FILE: u64 = 1 << 20;
/// Users a password file may hold.
const MAX_USERS: usize = 1000;
/// The longest user name shown or taken.
const MAX_USER: usize = 64;
/// Passwords checked with bcrypt at once: each costs tens of milliseconds.
const CHECKS_AT_ONCE: usize = 4;
/// How long a request waits for one of those checks.
const CHECK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);
/// Sign-ins remembered (a digest of the credentials, never the password),
/// so that each request of a signed-in page is not another bcrypt.
const REMEMBERED: usize = 256;

/// Reads an `htpasswd -B` file: `user:$2y$…` per line; any other hash is
/// refused, since only bcrypt is slow enough to keep.
pub fn read_passwords(path: &Path) -> Result<HashMap<String, String>, Error> {
    use std::io::Read;
    let err = |why: String| Error::Passwords {
        path: path.to_path_buf(),
        why,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PASSWORD_FILE).read_to_string(&mut text))
        .map_err(|e| err(e.to_string()))?;
    let mut users = HashMap::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let (user, hash) = line
            .trim()
            .split_once(':')
            .ok_or_else(|| err(format!("line {}: not user:hash", i + 1)))?;
        if user.is_empty() || user.len() > MAX_USER || !user.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(err(format!("line {}: a bad user name", i + 1)));
        }
        if !(hash.starts_with("$2y$") || hash.starts_with("$2b$") || hash.starts_with("$2a$")) {
            return Err(err(format!(
                "line {}: only bcrypt hashes are taken (htpasswd -B)",
                i + 1
            )));
        }
        users.insert(user.to_string(), hash.to_string());
    }
    if users.is_empty() {
        return Err(err("holds no user".into()));
    }
    if users.len() > MAX_USERS {
        return Err(err(format!("holds more than {MAX_USERS} users")));
    }
    Ok(users)
}

/// The guard of one HTTP port.
pub struct Guard {
    login: Login,
    /// Tokens of the metrics scope, if `/metrics` needs one.
    metrics: Arc<Tokens>,
    /// The paths answered to the metrics token (`/metrics`, and a daemon's
    /// machine-readable status).
    token_paths: &'static [&'static str],
    checks: Arc<tokio::sync::Semaphore>,
    /// Digests of credentials that signed in, by user.
    remembered: Mutex<HashMap<[u8; 32], String>>,
    refused: prometheus::IntCounterVec,
}

/// The peer address of an HTTP connection, put on each of its requests.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

tokio::task_local! {
    static SIGNED_IN: Option<String>;
}

/// Who the page being rendered is for (by `guard`); `None` without login.
pub fn signed_in() -> Option<String> {
    SIGNED_IN.try_with(Clone::clone).ok().flatten()
}

impl Guard {
    pub fn new(login: Login, metrics: Arc<Tokens>, registry: &prometheus::Registry) -> Guard {
        Guard {
            login,
            metrics,
            token_paths: &["/metrics"],
            checks: Arc::new(tokio::sync::Semaphore::new(CHECKS_AT_ONCE)),
            remembered: Mutex::default(),
            refused: crate::metrics::counter_by(
                registry,
                "http_unauthenticated_total",
                "HTTP requests refused for want of a login or a token, by path kind (page, metrics).",
                "path",
                &["page", "metrics"],
            ),
        }
    }

    /// `paths` answered, like `/metrics`, to the metrics token only.
    pub fn with_token_paths(mut self, paths: &'static [&'static str]) -> Guard {
        self.token_paths = paths;
        self
    }

    /// Whether the page and `/metrics` answer anyone.
    pub fn is_open(&self) -> bool {
        matches!(self.login, Login::None) && self.metrics.is_empty()
    }

    /// Who signed in, or why not.
    async fn who(
        &self,
        headers: &HeaderMap,
        peer: Option<Peer>,
    ) -> Result<Option<String>, Response> {
        match &self.login {
            Login::None => Ok(None),
            Login::Forward { header, proxies } => {
                let from_proxy =
                    peer.is_some_and(|p| proxies.iter().any(|n| n.contains(canonical(p.0.ip()))));
                // Exactly one: a proxy that appends would leave the
                // client's own value first.
                let mut values = headers.get_all(header).iter();
                let user = values
                    .next()
                    .filter(|_| values.next().is_none())
                    .and_then(|v| v.to_str().ok())
                    .map(|v| crate::escape::clean(v, MAX_USER))
                    .filter(|v| !v.is_empty());
                match (from_proxy, user) {
                    (true, Some(u)) => Ok(Some(u)),
                    _ => Err((
                        StatusCode::UNAUTHORIZED,
                        "sign in through the lab's login proxy\n",
                    )
                        .into_response()),
                }
            }
            Login::Basic { users } => self.basic(headers, users).await,
        }
    }

    async fn basic(
        &self,
        headers: &HeaderMap,
        users: &HashMap<String, String>,
    ) -> Result<Option<String>, Response> {
        let challenge = || {
            let mut r = (StatusCode::UNAUTHORIZED, "sign in\n").into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"mdb\", charset=\"UTF-8\""),
            );
            r
        };
        let Some((user, password)) = basic_credentials(headers) else {
            return Err(challenge());
        };
        let key: [u8; 32] = sha2::Sha256::digest(format!("{user}\0{password}")).into();
        if let Some(u) = self
            .remembered
            .lock()
            .ok()
            .and_then(|m| m.get(&key).cloned())
        {
            return Ok(Some(u));
        }
        // A user not in the file costs one bcrypt too, at the file's cost,
        // so the time of a refusal does not tell which users exist.
        let known = users.get(&user).cloned();
        let hash = known.clone();
        let cost = cost_of(users);
        // The slot goes with the check: a client that hangs up does not
        // free it while bcrypt still runs; one that waits too long is told
        // to come back.
        let slot = tokio::time::timeout(CHECK_WAIT, self.checks.clone().acquire_owned()).await;
        let Ok(Ok(slot)) = slot else {
            let mut busy =
                (StatusCode::SERVICE_UNAVAILABLE, "busy checking passwords\n").into_response();
            busy.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return Err(busy);
        };
        let ok = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let hash = hash.unwrap_or_else(|| stand_in(cost));
            bcrypt::verify(password, &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        if !ok || known.is_none() {
            return Err(challenge());
        }
        if let Ok(mut m) = self.remembered.lock() {
            if m.len() >= REMEMBERED {
                m.clear();
            }
            m.insert(key, user.clone());
        }
        Ok(Some(user))
    }
}

/// The cost of the file's first hash (`$2y$NN$…`).
fn cost_of(users: &HashMap<String, String>) -> u32 {
    users
        .values()
        .next()
        .and_then(|h| h.get(4..6)?.parse().ok())
        .unwrap_or(bcrypt::DEFAULT_COST)
}

/// A hash of nobody's password at `cost`, made once (it is slow).
fn stand_in(cost: u32) -> String {
    static STAND_IN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    STAND_IN
        .get_or_init(|| bcrypt::hash(rand::random::<u64>().to_string(), cost).unwrap_or_default())
        .clone()
}

/// An IPv4-mapped IPv6 peer as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") || encoded.len() > 1024 {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// The middleware: health open, `/metrics` by token when one is set, the
/// rest by login; the signed-in user is known to the page while it renders.
pub async fn guard(State(g): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if path == "/healthz" || path == "/readyz" {
        return next.run(req).await;
    }
    if g.token_paths.contains(&path) {
        if g.metrics.is_empty() {
            return next.run(req).await;
        }
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        return match g.metrics.check(presented, &[Scope::Metrics]) {
            Ok(_) => next.run(req).await,
            Err(_) => {
                g.refused.with_label_values(&["metrics"]).inc();
                (StatusCode::UNAUTHORIZED, "a metrics token is required\n").into_response()
            }
        };
    }
    let peer = req.extensions().get::<Peer>().copied();
    let headers = req.headers().clone();
    match g.who(&headers, peer).await {
        Ok(user) => SIGNED_IN.scope(user, next.run(req)).await,
        Err(refusal) => {
            g.refused.with_label_values(&["page"]).inc();
            refusal
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bcrypt_hashes_are_taken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        std::fs::write(&path, format!("alice:{hash}\n")).unwrap();
        let users = read_passwords(&path).unwrap();
        assert!(bcrypt::verify("s3cret", &users["alice"]).unwrap());
        for bad in [
            "alice:{SHA}abc\n",
            "alice:$apr1$x$y\n",
            "alice:plain\n",
            "",
            "nocolon\n",
        ] {
            std::fs::write(&path, bad).unwrap();
            assert!(read_passwords(&path).is_err(), "{bad:?}");
        }
    }
}

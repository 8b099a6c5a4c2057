//! The settings of who may ask a daemon and who it says it is: the token
//! files of each scope (`tokens`), TLS with an optional client CA (mutual
//! TLS), the page's login (`web_auth`), and a client's own token file and
//! certificate. Resolved once at start: a missing or bad file exits 64
//! before any port is bound.

use std::{path::PathBuf, sync::Arc};

use serde::Deserialize;

use super::{web::Login, Scope, Tokens};
use crate::{
    dial::{ClientIdentity, Credentials},
    secret::Secret,
    settings::{Env, Error},
};

/// `[server.tokens]`, `[provision.tokens]`: the file of each scope's tokens
/// (one per line).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokens {
    pub read: Option<PathBuf>,
    pub mirror: Option<PathBuf>,
    pub runner: Option<PathBuf>,
    pub metrics: Option<PathBuf>,
    pub wake: Option<PathBuf>,
}

/// `[server.web_auth]`: how the page is signed in to.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebAuth {
    /// `forward`, `basic` or `none`.
    pub mode: String,
    /// forward: the header the login proxy sets (default `Remote-User`).
    pub header: Option<String>,
    /// forward: the only addresses whose header is believed (CIDRs).
    #[serde(default)]
    pub proxies: Vec<String>,
    /// basic: a password file of bcrypt hashes (`htpasswd -B`).
    pub htpasswd: Option<PathBuf>,
}

/// TLS on a daemon's gRPC port, and the CA whose certificates are mdb's own
/// parts (mutual TLS).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
}

/// A daemon's side of authentication, resolved.
#[derive(Clone, Debug, Default)]
pub struct ServerAuth {
    pub tokens: Arc<Tokens>,
    /// TLS for the gRPC port; with a client CA in it, mutual TLS.
    pub tls: Option<tonic::transport::ServerTlsConfig>,
    pub client_certs: bool,
    pub login: Login,
}

impl ServerAuth {
    /// Whether every port answers anyone (said once at start).
    pub fn is_open(&self) -> bool {
        self.tokens.is_empty() && !self.client_certs && matches!(self.login, Login::None)
    }
}

/// The tokens of the scopes `allowed` of a daemon; another scope named
/// is an error (a runner has no mirror tokens).
pub fn tokens(raw: &RawTokens, allowed: &[Scope], section: &str) -> Result<Tokens, Error> {
    let named = [
        (Scope::Read, &raw.read),
        (Scope::Mirror, &raw.mirror),
        (Scope::Runner, &raw.runner),
        (Scope::Metrics, &raw.metrics),
        (Scope::Wake, &raw.wake),
    ];
    let mut files = Vec::new();
    for (scope, path) in named {
        let Some(path) = path else { continue };
        if !allowed.contains(&scope) {
            return Err(Error(format!(
                "{section}.tokens.{}: this daemon serves nothing of that scope",
                scope.word()
            )));
        }
        files.push((scope, path.clone()));
    }
    Tokens::load(&files).map_err(|e| Error(format!("{section}.tokens: {e}")))
}

/// TLS for a gRPC port, from its certificate, key and client CA.
pub fn tls(
    raw: &RawTls,
    section: &str,
) -> Result<(Option<tonic::transport::ServerTlsConfig>, bool), Error> {
    use tonic::transport::{Certificate, ServerTlsConfig};
    let (cert, key) = match (&raw.cert, &raw.key) {
        (None, None) if raw.client_ca.is_some() => {
            return Err(Error(format!(
                "{section}.tls: a client_ca needs the port's own cert and key"
            )))
        }
        (None, None) => return Ok((None, false)),
        (Some(c), Some(k)) => (c, k),
        _ => return Err(Error(format!("{section}.tls: give both cert and key"))),
    };
    let identity = crate::dial::read_identity(&ClientIdentity {
        cert: cert.clone(),
        key: key.clone(),
    })
    .map_err(|e| Error(format!("{section}.tls: {e}")))?;
    let mut cfg = ServerTlsConfig::new().identity(identity);
    let client_certs = match &raw.client_ca {
        Some(ca) => {
            let pem = std::fs::read(ca)
                .map_err(|e| Error(format!("{section}.tls.client_ca: {}: {e}", ca.display())))?;
            if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                return Err(Error(format!(
                    "{section}.tls.client_ca: {}: no PEM certificate in it",
                    ca.display()
                )));
            }
            // Optional: a caller without a certificate may still show a token.
            cfg = cfg
                .client_ca_root(Certificate::from_pem(pem))
                .client_auth_optional(true);
            true
        }
        None => false,
    };
    Ok((Some(cfg), client_certs))
}

/// The page's login.
pub fn login(raw: Option<&RawWebAuth>, section: &str) -> Result<Login, Error> {
    let Some(w) = raw else {
        return Ok(Login::None);
    };
    let at = |field: &str, why: String| Error(format!("{section}.web_auth.{field}: {why}"));
    match w.mode.as_str() {
        "none" => Ok(Login::None),
        "forward" => {
            let name = w.header.clone().unwrap_or_else(|| "Remote-User".into());
            let header = name
                .parse::<axum::http::HeaderName>()
                .map_err(|_| at("header", format!("{name:?} is not a header name")))?;
            if w.proxies.is_empty() {
                return Err(at(
                    "proxies",
                    "name the login proxy's addresses: a header from anyone else is ignored".into(),
                ));
            }
            let proxies = w
                .proxies
                .iter()
                .map(|p| {
                    p.parse::<ipnetwork::IpNetwork>()
                        .map_err(|_| at("proxies", format!("{p:?} is not a CIDR")))
                })
                .collect::<Result<_, _>>()?;
            Ok(Login::Forward { header, proxies })
        }
        "basic" => {
            let path = w.htpasswd.as_ref().ok_or_else(|| {
                at(
                    "htpasswd",
                    "basic needs a password file (htpasswd -B)".into(),
                )
            })?;
            let users =
                super::web::read_passwords(path).map_err(|e| at("htpasswd", e.to_string()))?;
            Ok(Login::Basic { users })
        }
        other => Err(at(
            "mode",
            format!("{other:?} is not forward, basic or none"),
        )),
    }
}

/// A client's credentials: the token of `token_file`, else of the file or
/// value the environment names (`{env_prefix}_TOKEN_FILE`, `_TOKEN`), and a
/// client certificate with its key.
pub fn credentials(
    token_file: Option<&PathBuf>,
    cert: Option<&PathBuf>,
    key: Option<&PathBuf>,
    allow_plaintext: bool,
    env: &Env,
    env_prefix: &str,
    section: &str,
) -> Result<Credentials, Error> {
    let from_env_file = env
        .get(&format!("{env_prefix}_TOKEN_FILE"))
        .map(PathBuf::from);
    let token = match token_file.cloned().or(from_env_file) {
        Some(p) => {
            Some(Secret::from_file(&p).map_err(|e| Error(format!("{section}.token_file: {e}")))?)
        }
        None => env
            .get(&format!("{env_prefix}_TOKEN"))
            .map(|t| t.trim())
            .filter(|t| !t.is_empty())
            .map(Secret::new),
    };
    let identity = match (cert, key) {
        (Some(cert), Some(key)) => Some(ClientIdentity {
            cert: cert.clone(),
            key: key.clone(),
        }),
        (None, None) => None,
        _ => {
            return Err(Error(format!(
                "{section}: give both client_cert and client_key"
            )))
        }
    };
    if let Some(id) = &identity {
        crate::dial::read_identity(id).map_err(|e| Error(format!("{section}: {e}")))?;
    }
    Ok(Credentials {
        token,
        identity,
        allow_plaintext,
    })
}

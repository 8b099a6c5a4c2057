//! How mdb reaches a gRPC server: `host:port` and `http://` in plaintext,
//! `https://` over TLS (rustls) with the system's roots or one CA file.
//! Any other scheme is refused rather than silently spoken in plaintext.
//! A client says who it is with its [`Credentials`]: a bearer token on
//! every call, or a client certificate (mutual TLS). The same roots make
//! the rustls client of mdb's other TLS clients (notifications over
//! https:// and mqtts://).

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use tokio_rustls::rustls::{
    self,
    pki_types::{pem::PemObject, CertificateDer},
    RootCertStore,
};

use tonic::{
    service::interceptor::InterceptedService,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};

use crate::secret::Secret;

/// Largest CA bundle read: a system bundle is ~200 KiB.
const MAX_CA_FILE: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0:?}: unsupported scheme (use host:port, http:// or https://)")]
    Scheme(String),
    #[error("{0:?} is not a server address ({1})")]
    Address(String, String),
    #[error("CA file {}: {why}", .path.display())]
    CaFile { path: PathBuf, why: String },
    #[error("no CA certificates on this system; name a ca_file")]
    NoRoots,
    #[error("TLS: {0}")]
    Tls(String),
    #[error("client certificate {}: {why}", .path.display())]
    Identity { path: PathBuf, why: String },
    #[error("a client certificate is for https:// servers only")]
    IdentityInPlaintext,
    #[error("{0} is plaintext to another host: the token goes over https:// only (or set allow_plaintext)")]
    TokenInPlaintext(String),
}

/// Who a client is to the server it dials: a bearer token (read from a
/// file or the environment, never a flag) and, for https://, a client
/// certificate and its key (mutual TLS).
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    pub token: Option<Secret>,
    pub identity: Option<ClientIdentity>,
    /// Send the token over plaintext to a host other than this one (anyone
    /// on the path, or answering in the server's place, would read it).
    pub allow_plaintext: bool,
}

/// A client certificate and its key, as PEM files.
#[derive(Clone, Debug)]
pub struct ClientIdentity {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A server to dial, and what to tell it of who is calling.
#[derive(Clone, Debug, Default)]
pub struct Remote {
    pub addr: String,
    pub creds: Credentials,
}

impl Remote {
    /// A server reached with no credentials.
    pub fn open(addr: &str) -> Remote {
        Remote {
            addr: addr.to_string(),
            creds: Credentials::default(),
        }
    }
}

/// Adds `authorization: Bearer TOKEN` to every call, when there is a token.
#[derive(Clone, Debug, Default)]
pub struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// A connection to a server that says who the client is on every call.
pub type Conn = InterceptedService<Channel, Bearer>;

impl Credentials {
    /// The interceptor of these credentials; a token that cannot be a
    /// header value (a control character in it) is refused.
    pub fn bearer(&self) -> Result<Bearer, Error> {
        let Some(t) = &self.token else {
            return Ok(Bearer::default());
        };
        let value = format!("Bearer {}", t.expose())
            .parse()
            .map_err(|_| Error::Tls("the token holds characters a header cannot".into()))?;
        Ok(Bearer(Some(value)))
    }

    /// Whether these credentials may go to `addr`: a token never goes in
    /// plaintext to another host unless allowed.
    pub fn check_transport(&self, addr: &str) -> Result<(), Error> {
        if self.token.is_some() && !self.allow_plaintext && plaintext_off_host(addr) {
            return Err(Error::TokenInPlaintext(addr.to_string()));
        }
        Ok(())
    }

    /// `channel` saying who this client is on every call.
    pub fn on(&self, channel: Channel) -> Result<Conn, Error> {
        Ok(InterceptedService::new(channel, self.bearer()?))
    }
}

/// The credentials the CLI sends (from `--token-file`, `MDB_TOKEN_FILE`
/// or `MDB_TOKEN`), set once at start.
static CLI_CREDENTIALS: std::sync::OnceLock<Credentials> = std::sync::OnceLock::new();

/// Sets the credentials the CLI's commands send to every server.
pub fn use_credentials(c: Credentials) {
    let _ = CLI_CREDENTIALS.set(c);
}

/// The CLI's credentials (none unless set).
pub fn cli_credentials() -> Credentials {
    CLI_CREDENTIALS.get().cloned().unwrap_or_default()
}

/// The URL tonic is given: `host:port` gets `http://`.
pub fn url(addr: &str) -> Result<String, Error> {
    let addr = addr.trim();
    match addr.split_once("://") {
        None => Ok(format!("http://{addr}")),
        Some(("http" | "https", _)) => Ok(addr.to_string()),
        Some(_) => Err(Error::Scheme(addr.to_string())),
    }
}

/// The CA file `--ca-file` (or `MDB_CA_FILE`) names, set once at start;
/// every https:// server mdb reaches is checked against it.
static CA_FILE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Trust only this CA for https:// servers (else the system's roots).
pub fn trust_ca_file(path: PathBuf) {
    let _ = CA_FILE.set(path);
}

/// The endpoint for `addr`; TLS for https://, trusting `ca_file` alone when
/// given (else the one set by [`trust_ca_file`]), the system's roots
/// otherwise, and presenting `identity` when given.
pub fn endpoint(
    addr: &str,
    ca_file: Option<&Path>,
    identity: Option<&ClientIdentity>,
) -> Result<Endpoint, Error> {
    let ca_file = ca_file.or_else(|| CA_FILE.get().map(PathBuf::as_path));
    let url = url(addr)?;
    let endpoint = Endpoint::from_shared(url.clone())
        .map_err(|e| Error::Address(url.clone(), e.to_string()))?;
    if !url.starts_with("https://") {
        if identity.is_some() {
            return Err(Error::IdentityInPlaintext);
        }
        return Ok(endpoint);
    }
    let mut tls = match ca_file {
        Some(path) => ClientTlsConfig::new().ca_certificate(read_ca(path)?),
        None => ClientTlsConfig::new().with_native_roots(),
    };
    if let Some(id) = identity {
        tls = tls.identity(read_identity(id)?);
    }
    endpoint
        .tls_config(tls)
        .map_err(|e| Error::Address(url, e.to_string()))
}

/// A client certificate and key, bounded and checked to be PEM.
pub fn read_identity(id: &ClientIdentity) -> Result<Identity, Error> {
    let read = |path: &Path, marker: &str| -> Result<Vec<u8>, Error> {
        let bad = |why: String| Error::Identity {
            path: path.to_path_buf(),
            why,
        };
        let text = std::fs::read(path).map_err(|e| bad(e.kind().to_string()))?;
        if text.len() as u64 > MAX_CA_FILE {
            return Err(bad(format!("larger than {MAX_CA_FILE} bytes")));
        }
        if !text.windows(marker.len()).any(|w| w == marker.as_bytes()) {
            return Err(bad(format!("no {marker} in it")));
        }
        Ok(text)
    };
    Ok(Identity::from_pem(
        read(&id.cert, "-----BEGIN CERTIFICATE-----")?,
        read(&id.key, "PRIVATE KEY-----")?,
    ))
}

/// Whether `addr` is spoken in plaintext to a host other than this one.
pub fn plaintext_off_host(addr: &str) -> bool {
    let Ok(url) = url(addr) else {
        return false;
    };
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split('/').next().unwrap_or("");
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    !loopback
}

/// Warns, once per address in this process, that a stream mdb acts on
/// (`what`) is followed in plaintext across the network: anyone on the
/// path can answer in the server's place. Allowed, since a lab may have no
/// CA; the README shows it over TLS.
pub fn warn_if_plaintext(addr: &str, what: &str) {
    static WARNED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    if !plaintext_off_host(addr) {
        return;
    }
    let mut warned = WARNED.lock().unwrap_or_else(|p| p.into_inner());
    if !warned.iter().any(|a| a == addr) {
        warned.push(addr.to_string());
        tracing::warn!(server = %addr, "{what} follows {addr} in plaintext: anyone on the network path can answer in its place; use https:// (and --ca-file for a private CA)");
    }
}

/// Connects now, saying who this client is; the transport's error is
/// tonic's, for the caller to word.
pub async fn connect(
    addr: &str,
    creds: &Credentials,
) -> Result<Result<Conn, tonic::transport::Error>, Error> {
    creds.check_transport(addr)?;
    let endpoint = endpoint(addr, None, creds.identity.as_ref())?;
    let bearer = creds.bearer()?;
    Ok(endpoint
        .connect()
        .await
        .map(|ch| InterceptedService::new(ch, bearer)))
}

/// A rustls client trusting `ca_file` alone, or the system's roots.
pub fn rustls_client(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, Error> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let bad = |why: String| Error::CaFile {
                path: path.to_path_buf(),
                why,
            };
            for cert in CertificateDer::pem_slice_iter(&read_ca_pem(path)?) {
                let cert = cert.map_err(|e| bad(e.to_string()))?;
                roots.add(cert).map_err(|e| bad(e.to_string()))?;
            }
        }
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            if roots.is_empty() {
                return Err(Error::NoRoots);
            }
        }
    }
    trusting(roots)
}

/// A rustls client that trusts nobody: for connectors that need one but
/// only ever speak plain HTTP.
pub fn rustls_untrusting() -> Result<Arc<rustls::ClientConfig>, Error> {
    trusting(RootCertStore::empty())
}

fn trusting(roots: RootCertStore) -> Result<Arc<rustls::ClientConfig>, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn read_ca(path: &Path) -> Result<Certificate, Error> {
    Ok(Certificate::from_pem(read_ca_pem(path)?))
}

/// The CA file's PEM, bounded, with at least one certificate in it.
fn read_ca_pem(path: &Path) -> Result<Vec<u8>, Error> {
    use std::io::Read;
    let bad = |why: String| Error::CaFile {
        path: path.to_path_buf(),
        why,
    };
    let file = std::fs::File::open(path).map_err(|e| bad(e.kind().to_string()))?;
    let mut pem = Vec::new();
    file.take(MAX_CA_FILE + 1)
        .read_to_end(&mut pem)
        .map_err(|e| bad(e.kind().to_string()))?;
    if pem.len() as u64 > MAX_CA_FILE {
        return Err(bad(format!("larger than {MAX_CA_FILE} bytes")));
    }
    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_are_plaintext_tls_or_refused() {
        assert_eq!(url("10.0.0.1:50051").unwrap(), "http://10.0.0.1:50051");
        assert_eq!(url("http://a:1").unwrap(), "http://a:1");
        assert_eq!(url("https://a:443").unwrap(), "https://a:443");
        assert_eq!(
            url("grpcs://a:443").unwrap_err().to_string(),
            "\"grpcs://a:443\": unsupported scheme (use host:port, http:// or https://)"
        );
        assert!(endpoint("https://mdb.example:443", None, None).is_ok());
    }

    #[test]
    fn a_rustls_client_trusts_the_ca_file_or_says_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        std::fs::write(&path, params.self_signed(&key).unwrap().pem()).unwrap();
        assert!(rustls_client(Some(&path)).is_ok());
        let broken = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n";
        std::fs::write(&path, broken).unwrap();
        let e = rustls_client(Some(&path)).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("CA file {}: ", path.display())),
            "{e}"
        );
        std::fs::write(&path, "no certificate").unwrap();
        let e = rustls_client(Some(&path)).unwrap_err().to_string();
        assert!(e.ends_with("ca.pem: no PEM certificate in it"), "{e}");
    }

    #[test]
    fn a_ca_file_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        let e = endpoint("https://a:1", Some(&path), None)
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("ca.pem: no PEM certificate in it"), "{e}");
        let e = endpoint("https://a:1", Some(&dir.path().join("absent")), None)
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("absent: entity not found"), "{e}");
    }

    #[test]
    fn plaintext_to_another_host_is_told_apart_from_loopback_and_tls() {
        for addr in [
            "127.0.0.1:50051",
            "http://localhost:1",
            "http://[::1]:5",
            "https://mdb.lab:443",
        ] {
            assert!(!plaintext_off_host(addr), "{addr}");
        }
        for addr in [
            "mdb-scanner:50052",
            "http://198.18.0.1:50051",
            "http://[2001:db8::1]:1",
        ] {
            assert!(plaintext_off_host(addr), "{addr}");
        }
    }
}

//! The one layer every gRPC server of mdb puts in front of its services
//! (the API of `mdb serve`, the runner's port): a call whose method needs a
//! scope gets through with a token of that scope (`authorization: Bearer
//! …`) or a client certificate the server's client CA verified (mdb's own
//! parts, over mutual TLS); anything else is `UNAUTHENTICATED`, counted by
//! reason. Health's Check is always open, for Kubernetes' probes.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use prometheus::IntCounterVec;

use super::{Denied, Scope, Tokens};

/// What a caller of `path` must hold; `None` for what is open (health).
pub fn required(path: &str) -> Option<&'static [Scope]> {
    /// What mirroring a scanner calls: a mirror token holds no more.
    const MIRRORED: &[&str] = &["Watch", "ListHostHistory", "GetHostHistory", "GetStats"];
    // The probe's Check only: Health's Watch is a stream, and streams
    // are for callers who can say who they are.
    if path == "/grpc.health.v1.Health/Check" {
        return None;
    }
    if path == "/mdb.v1.MachineDb/Wake" {
        return Some(&[Scope::Wake]);
    }
    if let Some(method) = path.strip_prefix("/mdb.v1.MachineDb/") {
        return Some(if MIRRORED.contains(&method) {
            &[Scope::Read, Scope::Mirror]
        } else {
            &[Scope::Read]
        });
    }
    if path.starts_with("/mdb.v1.Provisioning/") {
        return Some(&[Scope::Runner]);
    }
    // Reflection and anything else describe the API: as reading it.
    Some(&[Scope::Read])
}

/// The refusals of one port, by reason (created at 0).
#[derive(Clone)]
pub struct Refused(IntCounterVec);

impl Refused {
    pub fn register(r: &prometheus::Registry) -> Refused {
        let reasons: Vec<&str> = Denied::WORDS.iter().map(|(w, _)| *w).collect();
        Refused(crate::metrics::counter_by(
            r,
            "grpc_unauthenticated_total",
            "gRPC calls refused as UNAUTHENTICATED, by reason (missing, invalid, scope, unguarded: Wake on a server without credentials).",
            "reason",
            &reasons,
        ))
    }

    fn count(&self, d: Denied) {
        self.0.with_label_values(&[d.word()]).inc();
    }
}

/// The layer: tokens, whether a verified client certificate is enough,
/// and where refusals are counted.
#[derive(Clone)]
pub struct AuthLayer {
    tokens: Arc<Tokens>,
    /// A client CA is configured: a certificate it verified is mdb's own.
    client_certs: bool,
    refused: Refused,
}

impl AuthLayer {
    pub fn new(tokens: Arc<Tokens>, client_certs: bool, refused: Refused) -> AuthLayer {
        AuthLayer {
            tokens,
            client_certs,
            refused,
        }
    }

    /// Whether nothing is required of anyone (today's open ports).
    pub fn is_open(&self) -> bool {
        self.tokens.is_empty() && !self.client_certs
    }

    fn decide<B>(&self, req: &http::Request<B>) -> Result<(), Denied> {
        let Some(allowed) = required(req.uri().path()) else {
            return Ok(());
        };
        if self.is_open() {
            // Waking sends packets on the LAN: an open server wakes nothing.
            if allowed == [Scope::Wake] {
                return Err(Denied::Unguarded);
            }
            return Ok(());
        }
        if self.client_certs && verified_client(req) {
            return Ok(());
        }
        let presented = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        self.tokens.check(presented, allowed).map(|_| ())
    }
}

/// Whether the TLS handshake of this call's connection carried a client
/// certificate (rustls verified it against the client CA, or refused it).
fn verified_client<B>(req: &http::Request<B>) -> bool {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    req.extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|i| i.peer_certs())
        .is_some_and(|certs| !certs.is_empty())
}

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    layer: AuthLayer,
}

type Response = http::Response<tonic::body::Body>;

impl<S, B> tower_service::Service<http::Request<B>> for Auth<S>
where
    S: tower_service::Service<http::Request<B>, Response = Response>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        match self.layer.decide(&req) {
            Ok(()) => Box::pin(self.inner.call(req)),
            Err(denied) => {
                self.layer.refused.count(denied);
                let why = match denied {
                    Denied::Missing => "a token or a client certificate is required",
                    Denied::Invalid => "the token is not valid",
                    Denied::Scope => "the token's scope does not allow this call",
                    Denied::Unguarded => "this server asks nobody for credentials, so it wakes nothing: give it [server.tokens] wake (or a client CA)",
                };
                let status = tonic::Status::unauthenticated(why);
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_method_needs_its_scope_and_health_is_open() {
        assert_eq!(required("/grpc.health.v1.Health/Check"), None);
        assert!(required("/grpc.health.v1.Health/Watch").is_some());
        assert_eq!(
            required("/mdb.v1.MachineDb/ListMachines"),
            Some(&[Scope::Read][..])
        );
        assert_eq!(
            required("/mdb.v1.MachineDb/Watch"),
            Some(&[Scope::Read, Scope::Mirror][..])
        );
        assert_eq!(
            required("/mdb.v1.Provisioning/ListProvisionStatus"),
            Some(&[Scope::Runner][..])
        );
        // Waking sends packets on the LAN: a reader cannot.
        assert_eq!(required("/mdb.v1.MachineDb/Wake"), Some(&[Scope::Wake][..]));
        assert_eq!(
            required("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            Some(&[Scope::Read][..])
        );
    }

    #[test]
    fn an_open_server_answers_all_but_wake() {
        let layer = AuthLayer::new(
            Arc::new(Tokens::default()),
            false,
            Refused::register(&prometheus::Registry::new()),
        );
        let call = |path: &str| {
            let req = http::Request::builder().uri(path).body(()).unwrap();
            layer.decide(&req)
        };
        assert!(layer.is_open());
        assert_eq!(call("/mdb.v1.MachineDb/ListMachines"), Ok(()));
        assert_eq!(call("/mdb.v1.MachineDb/Wake"), Err(Denied::Unguarded));
    }
}

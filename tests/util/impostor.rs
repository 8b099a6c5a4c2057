//! An impostor mdb server: a real tonic server on loopback that answers
//! `Watch`, `ListMachines`, `GetMachine` and `GetReadiness` with whatever
//! the test gives it, and as a scanner `GetStats` and `ListHostHistory`
//! (over TLS when given a certificate). It is what anyone on the path of a
//! plaintext gRPC connection (or at a server's address) could send, or a
//! scanner that was taken over.
#![allow(dead_code)]

use std::{
    pin::Pin,
    sync::{Arc, Mutex},
};

use mdb::proto::{
    machine_db_server::MachineDb, DiscoveredHost, GetReadinessResponse, Machine, WatchEvent,
};
use tonic::{Request, Response, Status};

#[derive(Clone)]
pub struct Impostor {
    pub revision: Arc<Mutex<String>>,
    pub machines: Arc<Mutex<Vec<Machine>>>,
    /// Readiness checks and policy, as `GetReadiness` answers.
    pub readiness: Arc<Mutex<GetReadinessResponse>>,
    pub events: tokio::sync::broadcast::Sender<WatchEvent>,
    /// What `ListHostHistory` answers, one page.
    pub histories: Arc<Mutex<Vec<mdb::proto::HostHistory>>>,
    /// Calls seen, and the `authorization` each carried.
    pub calls: Arc<Mutex<Vec<String>>>,
    /// What `ListHostHistory` answers besides the hosts.
    pub page: Arc<Mutex<mdb::proto::ListHostHistoryResponse>>,
    /// While set, every `ListHostHistory` page says another follows.
    pub endless: Arc<std::sync::atomic::AtomicBool>,
}

type Events = Pin<Box<dyn futures::Stream<Item = Result<WatchEvent, Status>> + Send>>;

impl Impostor {
    pub fn new(revision: &str, machines: Vec<Machine>) -> Impostor {
        Impostor {
            revision: Arc::new(Mutex::new(revision.into())),
            machines: Arc::new(Mutex::new(machines)),
            readiness: Arc::default(),
            events: tokio::sync::broadcast::channel(64).0,
            histories: Arc::default(),
            calls: Arc::default(),
            page: Arc::default(),
            endless: Arc::default(),
        }
    }

    /// Serves over TLS with `cert.pem` and `key.pem` of `pki_dir`, on
    /// loopback; its URL, as `https://localhost:PORT`.
    pub async fn serve_tls(&self, pki_dir: &std::path::Path) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        self.serve_tls_on(listener, pki_dir).await
    }

    /// [`Impostor::serve_tls`] on `listener` (one in a namespace).
    pub async fn serve_tls_on(
        &self,
        listener: std::net::TcpListener,
        pki_dir: &std::path::Path,
    ) -> String {
        listener.set_nonblocking(true).expect("nonblocking");
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        let url = format!(
            "https://localhost:{}",
            listener.local_addr().expect("addr").port()
        );
        let identity = tonic::transport::Identity::from_pem(
            std::fs::read(pki_dir.join("cert.pem")).expect("cert"),
            std::fs::read(pki_dir.join("key.pem")).expect("key"),
        );
        let mut server = tonic::transport::Server::builder()
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .expect("tls");
        tokio::spawn(
            server
                .add_service(mdb::proto::machine_db_server::MachineDbServer::new(
                    self.clone(),
                ))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        url
    }

    fn seen<T>(&self, method: &str, req: &Request<T>) {
        let auth = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        self.calls
            .lock()
            .expect("lock")
            .push(format!("{method} {auth}"));
    }

    /// Serves on a loopback port (in the current runtime); its URL.
    pub async fn serve(&self) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        self.serve_on(listener).await
    }

    /// [`Impostor::serve`] on `listener` (one in a namespace), in plaintext.
    pub async fn serve_on(&self, listener: std::net::TcpListener) -> String {
        listener.set_nonblocking(true).expect("nonblocking");
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(mdb::proto::machine_db_server::MachineDbServer::new(
                    self.clone(),
                ))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        url
    }

    /// Sends `ev` to every Watch stream open now.
    pub fn send(&self, ev: WatchEvent) {
        let _ = self.events.send(ev);
    }

    /// What a later Watch and list are answered with.
    pub fn set(&self, revision: &str, machines: Vec<Machine>) {
        *self.revision.lock().expect("lock") = revision.into();
        *self.machines.lock().expect("lock") = machines;
    }

    fn revision(&self) -> String {
        self.revision.lock().expect("lock").clone()
    }
}

#[tonic::async_trait]
impl MachineDb for Impostor {
    type WatchStream = Events;

    async fn watch(
        &self,
        req: Request<mdb::proto::WatchRequest>,
    ) -> Result<Response<Events>, Status> {
        self.seen("Watch", &req);
        use futures::StreamExt;
        let first = WatchEvent {
            revision: self.revision(),
            changed: self.machines.lock().expect("lock").clone(),
            whole: true,
            ..Default::default()
        };
        let later = tokio_stream::wrappers::BroadcastStream::new(self.events.subscribe())
            .filter_map(|e| async move { e.ok().map(Ok) });
        Ok(Response::new(Box::pin(
            futures::stream::once(async { Ok(first) }).chain(later),
        )))
    }

    async fn get_readiness(
        &self,
        _: Request<mdb::proto::GetReadinessRequest>,
    ) -> Result<Response<mdb::proto::GetReadinessResponse>, Status> {
        let mut r = self.readiness.lock().expect("lock").clone();
        r.revision = self.revision();
        Ok(Response::new(r))
    }

    async fn list_machines(
        &self,
        _: Request<mdb::proto::ListMachinesRequest>,
    ) -> Result<Response<mdb::proto::ListMachinesResponse>, Status> {
        let machines = self.machines.lock().expect("lock").clone();
        Ok(Response::new(mdb::proto::ListMachinesResponse {
            total_matching: machines.len() as u64,
            machines,
            revision: self.revision(),
            ..Default::default()
        }))
    }
    async fn get_machine(
        &self,
        req: Request<mdb::proto::GetMachineRequest>,
    ) -> Result<Response<Machine>, Status> {
        let key = req.into_inner().key;
        self.machines
            .lock()
            .expect("lock")
            .iter()
            .find(|m| m.name.starts_with(&key))
            .cloned()
            .map(Response::new)
            .ok_or_else(|| Status::not_found("impostor"))
    }
    async fn list_clusters(
        &self,
        _: Request<mdb::proto::ListClustersRequest>,
    ) -> Result<Response<mdb::proto::ListClustersResponse>, Status> {
        Err(Status::unimplemented("impostor"))
    }
    async fn get_cluster(
        &self,
        _: Request<mdb::proto::GetClusterRequest>,
    ) -> Result<Response<mdb::proto::Cluster>, Status> {
        Err(Status::unimplemented("impostor"))
    }
    async fn get_stats(
        &self,
        req: Request<mdb::proto::GetStatsRequest>,
    ) -> Result<Response<mdb::proto::Stats>, Status> {
        self.seen("GetStats", &req);
        Ok(Response::new(mdb::proto::Stats::default()))
    }
    async fn list_discovered(
        &self,
        _: Request<mdb::proto::ListDiscoveredRequest>,
    ) -> Result<Response<mdb::proto::ListDiscoveredResponse>, Status> {
        Err(Status::unimplemented("impostor"))
    }
    async fn get_discovered(
        &self,
        _: Request<mdb::proto::GetDiscoveredRequest>,
    ) -> Result<Response<DiscoveredHost>, Status> {
        Err(Status::unimplemented("impostor"))
    }
    async fn suggest_address(
        &self,
        _: Request<mdb::proto::SuggestAddressRequest>,
    ) -> Result<Response<mdb::proto::SuggestAddressResponse>, Status> {
        Err(Status::unimplemented("impostor"))
    }
    async fn wake(
        &self,
        _: Request<mdb::proto::WakeRequest>,
    ) -> Result<Response<mdb::proto::WakeResponse>, Status> {
        Err(Status::unimplemented("impostor"))
    }
    async fn get_host_history(
        &self,
        _: Request<mdb::proto::GetHostHistoryRequest>,
    ) -> Result<Response<mdb::proto::HostHistory>, Status> {
        Err(Status::unimplemented("impostor"))
    }
    async fn list_host_history(
        &self,
        req: Request<mdb::proto::ListHostHistoryRequest>,
    ) -> Result<Response<mdb::proto::ListHostHistoryResponse>, Status> {
        self.seen("ListHostHistory", &req);
        let endless = self.endless.load(std::sync::atomic::Ordering::SeqCst);
        Ok(Response::new(mdb::proto::ListHostHistoryResponse {
            hosts: self.histories.lock().expect("lock").clone(),
            as_of_unix: mdb::db::store::now_unix(),
            next_page_token: if endless {
                "more".into()
            } else {
                String::new()
            },
            ..self.page.lock().expect("lock").clone()
        }))
    }
}

/// `h` as a scanner serves it: its history, with the transition that made
/// it what it is.
pub fn history(h: mdb::proto::DiscoveredHost) -> mdb::proto::HostHistory {
    mdb::proto::HostHistory {
        transitions: vec![mdb::proto::PresenceTransition {
            key: h.key.clone(),
            ip: h.ip.clone(),
            presence: h.presence,
            at_unix: h.first_seen_unix,
            ..Default::default()
        }],
        host: Some(h),
        ..Default::default()
    }
}

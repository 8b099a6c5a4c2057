//! An impostor mdb server: a real tonic server on loopback that answers
//! `Watch`, `ListMachines`, `GetMachine` and `GetReadiness` with whatever
//! the test gives it. It is what anyone on the path of a plaintext gRPC
//! connection (or at a server's address) could send.
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
}

type Events = Pin<Box<dyn futures::Stream<Item = Result<WatchEvent, Status>> + Send>>;

impl Impostor {
    pub fn new(revision: &str, machines: Vec<Machine>) -> Impostor {
        Impostor {
            revision: Arc::new(Mutex::new(revision.into())),
            machines: Arc::new(Mutex::new(machines)),
            readiness: Arc::default(),
            events: tokio::sync::broadcast::channel(64).0,
        }
    }

    /// Serves on a loopback port (in the current runtime); its URL.
    pub async fn serve(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
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
        _: Request<mdb::proto::WatchRequest>,
    ) -> Result<Response<Events>, Status> {
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
        _: Request<mdb::proto::GetStatsRequest>,
    ) -> Result<Response<mdb::proto::Stats>, Status> {
        Err(Status::unimplemented("impostor"))
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
    async fn get_host_history(
        &self,
        _: Request<mdb::proto::GetHostHistoryRequest>,
    ) -> Result<Response<mdb::proto::HostHistory>, Status> {
        Err(Status::unimplemented("impostor"))
    }
    async fn list_host_history(
        &self,
        _: Request<mdb::proto::ListHostHistoryRequest>,
    ) -> Result<Response<mdb::proto::ListHostHistoryResponse>, Status> {
        Err(Status::unimplemented("impostor"))
    }
}

//! Statuses: what the runner last found of each machine and cluster, and
//! why it refuses a revision, shared with its read-only gRPC service
//! (`mdb.v1.Provisioning`), which `mdb provisioned` and the page read.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use crate::{
    db::store::now_unix,
    proto::{
        provisioning_server::Provisioning, ListProvisionStatusRequest, ListProvisionStatusResponse,
        ProvisionResult, ProvisionStatus,
    },
};

/// Statuses by (is a cluster, name), shared with the gRPC service.
pub type Statuses = Arc<Mutex<BTreeMap<(bool, String), ProvisionStatus>>>;

/// Why the runner refuses the revision it was sent, if it does.
pub type Refusal = Arc<Mutex<String>>;

pub fn ok_status(name: &str, cluster: bool, revision: &str) -> ProvisionStatus {
    ProvisionStatus {
        target: name.to_string(),
        cluster,
        applied_revision: revision.to_string(),
        result: ProvisionResult::Ok as i32,
        at_unix: now_unix(),
        ..Default::default()
    }
}

/// The runner's read-only gRPC service.
pub struct StatusService {
    pub statuses: Statuses,
    pub refused: Refusal,
}

#[tonic::async_trait]
impl Provisioning for StatusService {
    async fn list_status(
        &self,
        _req: tonic::Request<ListProvisionStatusRequest>,
    ) -> Result<tonic::Response<ListProvisionStatusResponse>, tonic::Status> {
        let statuses = self
            .statuses
            .lock()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default();
        let refused = self.refused.lock().map(|r| r.clone()).unwrap_or_default();
        Ok(tonic::Response::new(ListProvisionStatusResponse {
            revision: String::new(),
            statuses,
            refused,
        }))
    }
}

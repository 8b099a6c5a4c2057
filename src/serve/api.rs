//! The read-only gRPC service over the [`Store`]. Every method reads one
//! snapshot; nothing here writes. Health and reflection are wired in
//! `server`.

use std::{collections::HashSet, net::IpAddr, sync::Arc};

use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::{
    db::{self, words::state_name, Snapshot, Store},
    proto::{
        machine::Use, machine_db_server::MachineDb, Cluster, DiscoveredHost, GetClusterRequest,
        GetDiscoveredRequest, GetHostHistoryRequest, GetMachineRequest, GetStatsRequest,
        HostHistory, HostState, ListClustersRequest, ListClustersResponse, ListDiscoveredRequest,
        ListDiscoveredResponse, ListHostHistoryRequest, ListHostHistoryResponse,
        ListMachinesRequest, ListMachinesResponse, Machine, Provisioner, Stats,
        SuggestAddressRequest, SuggestAddressResponse, UseKind, WakeRequest, WakeResponse,
        WatchRequest,
    },
    serve::metrics::GrpcMetrics,
};

mod hosts;
mod watch;

use hosts::history_page;
pub use hosts::{find_host, DEFAULT_HISTORY_PAGE, MAX_HISTORY_PAGE};

pub const DEFAULT_PAGE_SIZE: usize = 1000;
/// Keeps a page well below tonic's 4 MiB message limit.
pub const MAX_PAGE_SIZE: usize = 10_000;

/// Watch streams one server holds open at most; one more is refused
/// (`RESOURCE_EXHAUSTED`) until one ends.
pub const MAX_WATCHES: usize = 256;
/// Watch streams one client address holds at most: one token holder (an
/// IoT segment's scanner node, say) cannot take every place.
pub const MAX_WATCHES_PER_CLIENT: usize = 32;

#[derive(Clone)]
pub struct Api {
    store: Arc<Store>,
    metrics: GrpcMetrics,
    /// Ends open Watch streams on shutdown, so the server can drain.
    shutdown: CancellationToken,
    /// A place per open Watch stream, and per client address.
    watches: Arc<tokio::sync::Semaphore>,
    watches_per_client: Arc<crate::limit::PerAddress>,
    /// Wakes asked of this server in the last hour, per machine.
    wakes: Arc<std::sync::Mutex<crate::wake::Limiter>>,
}

impl Api {
    pub fn new(store: Arc<Store>, metrics: GrpcMetrics, shutdown: CancellationToken) -> Api {
        Api {
            store,
            metrics,
            shutdown,
            watches: Arc::new(tokio::sync::Semaphore::new(MAX_WATCHES)),
            watches_per_client: Arc::new(crate::limit::PerAddress::new(MAX_WATCHES_PER_CLIENT)),
            wakes: Arc::default(),
        }
    }

    /// The stats of what is served; before the first load they still carry
    /// the sync error, so a wrong URL or token shows through the API.
    fn stats(&self) -> Stats {
        let status = self.store.status();
        let disc = self.store.discovery();
        let mut by_state = std::collections::HashMap::new();
        for h in &disc.hosts {
            *by_state
                .entry(state_name(h.state).to_string())
                .or_insert(0u64) += 1;
        }
        let mut stats = Stats {
            loaded_unix: status.loaded_unix,
            last_sync_unix: status.last_success_unix,
            last_sync_error: status.last_error,
            discovered_by_state: by_state,
            last_sweep_unix: disc.last_sweep_unix,
            discovery_source: disc.source.to_string(),
            discovery_stale: disc.stale,
            files_github: self.store.files_github(),
            ..Stats::default()
        };
        if let Some(s) = self.store.snapshot() {
            stats.machines = s.machines.len() as u64;
            stats.machines_by_use = s
                .count_by_use()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            stats.clusters = s.cluster_names().count() as u64;
            stats.revision = s.revision.clone();
        }
        stats
    }

    fn snapshot(&self) -> Result<Arc<Snapshot>, Status> {
        self.store
            .snapshot()
            .ok_or_else(|| Status::unavailable("no database revision loaded yet"))
    }

    fn track<T>(
        &self,
        started: std::time::Instant,
        method: &'static str,
        r: Result<T, Status>,
    ) -> Result<Response<T>, Status> {
        self.metrics.request(
            method,
            r.as_ref().err().map(|s| s.code()),
            started.elapsed(),
        );
        r.map(Response::new)
    }
}

/// Whether a machine passes a ListMachines filter.
pub fn matches(m: &Machine, f: &ListMachinesRequest, labels: &[(&str, Option<&str>)]) -> bool {
    let use_ok =
        f.r#use == UseKind::Unspecified as i32 || db::use_kind(m.r#use.as_ref()) as i32 == f.r#use;
    let cluster_ok =
        f.cluster.is_empty() || matches!(&m.r#use, Some(Use::Cluster(c)) if c.cluster == f.cluster);
    let prov = m
        .features
        .as_ref()
        .map_or(Provisioner::None as i32, |x| x.provisioner);
    let prov_ok = f.provisioner.is_none_or(|p| p == prov);
    let labels_ok = labels.iter().all(|(k, v)| match (m.labels.get(*k), v) {
        (Some(have), Some(want)) => have == want,
        (Some(_), None) => true,
        (None, _) => false,
    });
    use_ok && cluster_ok && prov_ok && labels_ok
}

fn readiness_check(p: &crate::db::mdb_yaml::ReadinessProbe) -> crate::proto::ReadinessCheck {
    use crate::{db::mdb_yaml::Check, proto::readiness_check::Check as Wire};
    crate::proto::ReadinessCheck {
        r#use: p.for_use as i32,
        check: Some(match &p.check {
            Check::Tcp(port) => Wire::TcpPort(u32::from(*port)),
            Check::Http { port, path, status } => Wire::Http(crate::proto::HttpCheck {
                port: u32::from(*port),
                path: path.clone(),
                status: u32::from(*status),
            }),
        }),
    }
}

/// Longest key, name or subnet a request may name; longer ones are refused
/// without being echoed back.
pub const MAX_KEY_LEN: usize = 256;

fn checked_key<'a>(field: &str, key: &'a str) -> Result<&'a str, Status> {
    if key.trim().is_empty() {
        return Err(Status::invalid_argument(format!("{field} is empty")));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(Status::invalid_argument(format!(
            "{field} is {} bytes, over the limit of {MAX_KEY_LEN}",
            key.len()
        )));
    }
    Ok(key)
}

/// An enum filter must be one of the enum's values: an unknown number (a
/// newer client, a typo) is an error, not an empty answer.
fn known_enum<E: TryFrom<i32>>(field: &str, value: i32) -> Result<(), Status> {
    E::try_from(value)
        .map(|_| ())
        .map_err(|_| Status::invalid_argument(format!("{field} {value} is not a known value")))
}

/// The page size a request asks for: 0 means `default`, over `max` is refused.
fn page_size(asked: u32, default: usize, max: usize) -> Result<usize, Status> {
    match asked as usize {
        0 => Ok(default),
        n if n > max => Err(Status::invalid_argument(format!(
            "page_size {n} is over the limit of {max}"
        ))),
        n => Ok(n),
    }
}

pub fn list(snap: &Snapshot, req: &ListMachinesRequest) -> Result<ListMachinesResponse, Status> {
    known_enum::<UseKind>("use", req.r#use)?;
    if let Some(p) = req.provisioner {
        known_enum::<Provisioner>("provisioner", p)?;
    }
    if req.cluster.len() > MAX_KEY_LEN || req.page_token.len() > MAX_KEY_LEN {
        return Err(Status::invalid_argument(format!(
            "cluster and page_token are at most {MAX_KEY_LEN} bytes"
        )));
    }
    let size = page_size(req.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
    let labels: Vec<(&str, Option<&str>)> = req
        .labels
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (l.as_str(), None),
        })
        .collect();
    let candidates = snap.candidates(&req.cluster, req.r#use);
    // Names are unique and indexes ascend in name order, so the token (the
    // last name returned) splits the candidates in two.
    let start =
        candidates.partition_point(|&i| snap.machines[i].name.as_str() <= req.page_token.as_str());
    let mut total = 0u64;
    let mut page = Vec::new();
    let mut more = false;
    for (pos, &i) in candidates.iter().enumerate() {
        let m = &snap.machines[i];
        if !matches(m, req, &labels) {
            continue;
        }
        total += 1;
        if pos >= start {
            if page.len() < size {
                page.push(m.clone());
            } else {
                more = true;
            }
        }
    }
    let next_page_token = match (more, page.last()) {
        (true, Some(last)) => last.name.clone(),
        _ => String::new(),
    };
    Ok(ListMachinesResponse {
        machines: page,
        next_page_token,
        total_matching: total,
        revision: snap.revision.clone(),
    })
}

use watch::WatchStream;
pub use watch::{chunks, WATCH_CHUNK};

#[tonic::async_trait]
impl MachineDb for Api {
    async fn list_machines(
        &self,
        req: Request<ListMachinesRequest>,
    ) -> Result<Response<ListMachinesResponse>, Status> {
        let started = std::time::Instant::now();
        let r = self.snapshot().and_then(|s| list(&s, req.get_ref()));
        self.track(started, "ListMachines", r)
    }

    async fn get_machine(
        &self,
        req: Request<GetMachineRequest>,
    ) -> Result<Response<Machine>, Status> {
        let started = std::time::Instant::now();
        let key = &req.get_ref().key;
        let r = checked_key("key", key)
            .and_then(|_| self.snapshot())
            .and_then(|s| {
                s.lookup(key).cloned().ok_or_else(|| {
                    Status::not_found(format!("no machine with name, IP or MAC {key:?}"))
                })
            });
        self.track(started, "GetMachine", r)
    }

    async fn list_clusters(
        &self,
        _req: Request<ListClustersRequest>,
    ) -> Result<Response<ListClustersResponse>, Status> {
        let started = std::time::Instant::now();
        let r = self.snapshot().map(|s| ListClustersResponse {
            clusters: s
                .cluster_names()
                .filter_map(|n| s.cluster_view(n))
                .collect(),
        });
        self.track(started, "ListClusters", r)
    }

    async fn get_cluster(
        &self,
        req: Request<GetClusterRequest>,
    ) -> Result<Response<Cluster>, Status> {
        let started = std::time::Instant::now();
        let name = &req.get_ref().name;
        let r = checked_key("name", name)
            .and_then(|_| self.snapshot())
            .and_then(|s| {
                s.cluster_view(name)
                    .ok_or_else(|| Status::not_found(format!("no cluster {name:?}")))
            });
        self.track(started, "GetCluster", r)
    }

    async fn wake(&self, req: Request<WakeRequest>) -> Result<Response<WakeResponse>, Status> {
        let started = std::time::Instant::now();
        let key = req.get_ref().machine.clone();
        let r = match checked_key("machine", &key).and_then(|_| self.snapshot()) {
            Ok(s) => wake(&s, &key, &self.wakes).await,
            Err(e) => Err(e),
        };
        self.track(started, "Wake", r)
    }

    async fn get_stats(&self, _req: Request<GetStatsRequest>) -> Result<Response<Stats>, Status> {
        let started = std::time::Instant::now();
        let r = Ok(self.stats());
        self.track(started, "GetStats", r)
    }

    async fn list_discovered(
        &self,
        req: Request<ListDiscoveredRequest>,
    ) -> Result<Response<ListDiscoveredResponse>, Status> {
        let started = std::time::Instant::now();
        let want = req.get_ref().state;
        let disc = self.store.discovery();
        let r = known_enum::<HostState>("state", want).map(|_| ListDiscoveredResponse {
            hosts: disc
                .hosts
                .iter()
                .filter(|h| want == HostState::Unspecified as i32 || h.state == want)
                .cloned()
                .collect(),
            as_of_unix: disc.last_sweep_unix,
            stale: disc.stale,
        });
        self.track(started, "ListDiscovered", r)
    }

    async fn get_discovered(
        &self,
        req: Request<GetDiscoveredRequest>,
    ) -> Result<Response<DiscoveredHost>, Status> {
        let started = std::time::Instant::now();
        let disc = self.store.discovery();
        let r = find_host(&disc, &req.get_ref().key).and_then(|h| {
            h.host
                .clone()
                .ok_or_else(|| Status::not_found("the host has no record"))
        });
        self.track(started, "GetDiscovered", r)
    }

    async fn get_host_history(
        &self,
        req: Request<GetHostHistoryRequest>,
    ) -> Result<Response<HostHistory>, Status> {
        let started = std::time::Instant::now();
        let disc = self.store.discovery();
        let r = find_host(&disc, &req.get_ref().key).cloned();
        self.track(started, "GetHostHistory", r)
    }

    async fn list_host_history(
        &self,
        req: Request<ListHostHistoryRequest>,
    ) -> Result<Response<ListHostHistoryResponse>, Status> {
        let started = std::time::Instant::now();
        let disc = self.store.discovery();
        let r = history_page(&disc, &self.store.reserved(), req.get_ref());
        self.track(started, "ListHostHistory", r)
    }

    async fn suggest_address(
        &self,
        req: Request<SuggestAddressRequest>,
    ) -> Result<Response<SuggestAddressResponse>, Status> {
        let started = std::time::Instant::now();
        let key = &req.get_ref().subnet;
        checked_key("subnet", key)?;
        let r = self.snapshot().and_then(|s| {
            let subnet = s
                .mdb_yaml
                .subnet(key)
                .ok_or_else(|| Status::not_found(format!("no subnet {key:?} in mdb.yaml")))?;
            let mut seen: HashSet<IpAddr> = self
                .store
                .discovery()
                .hosts
                .iter()
                .filter_map(|h| h.ip.parse().ok())
                .collect();
            seen.extend(self.store.reserved().iter());
            crate::export::ipam::next_free(subnet, &s, &seen)
                .map(|ip| SuggestAddressResponse { ip: ip.to_string() })
                .ok_or_else(|| {
                    Status::resource_exhausted(format!(
                        "subnet {} has no free static address",
                        subnet.name
                    ))
                })
        });
        self.track(started, "SuggestAddress", r)
    }

    async fn get_readiness(
        &self,
        _req: Request<crate::proto::GetReadinessRequest>,
    ) -> Result<Response<crate::proto::GetReadinessResponse>, Status> {
        let started = std::time::Instant::now();
        let r = self.snapshot().map(|s| {
            let policy = &s.mdb_yaml.provision;
            crate::proto::GetReadinessResponse {
                revision: s.revision.clone(),
                checks: s.mdb_yaml.readiness.iter().map(readiness_check).collect(),
                policy_by_use: policy
                    .uses
                    .iter()
                    .map(|(kind, t)| {
                        (
                            crate::db::kind_name(*kind as i32).to_string(),
                            t.word().to_string(),
                        )
                    })
                    .collect(),
                policy_by_machine: policy
                    .machines
                    .iter()
                    .map(|(name, t)| (name.clone(), t.word().to_string()))
                    .collect(),
                wake_uses: policy
                    .wake
                    .iter()
                    .map(|k| crate::db::kind_name(*k as i32).to_string())
                    .collect(),
            }
        });
        self.track(started, "GetReadiness", r)
    }

    type WatchStream = WatchStream;

    async fn watch(&self, req: Request<WatchRequest>) -> Result<Response<WatchStream>, Status> {
        let started = std::time::Instant::now();
        let Ok(slot) = self.watches.clone().try_acquire_owned() else {
            self.metrics.watch_dropped("limit");
            let full = Status::resource_exhausted(format!(
                "this server holds {MAX_WATCHES} Watch streams already; try again later"
            ));
            return self.track(started, "Watch", Err(full));
        };
        let client = req.remote_addr().map(|a| a.ip());
        let held = match client {
            Some(ip) => match self.watches_per_client.take(ip) {
                Some(h) => Some(h),
                None => {
                    self.metrics.watch_dropped("limit");
                    let full = Status::resource_exhausted(format!(
                        "this address holds {MAX_WATCHES_PER_CLIENT} Watch streams already"
                    ));
                    return self.track(started, "Watch", Err(full));
                }
            },
            None => None,
        };
        // Subscribe before reading, so no revision falls between the two.
        let rx = self.store.subscribe();
        let first = self.snapshot();
        let metrics = self.metrics.clone();
        let stream = first.map(|first| {
            watch::stream(
                req.into_inner(),
                rx,
                first,
                self.store.clone(),
                self.shutdown.clone(),
                (slot, held),
                move || metrics.watch_dropped("slow"),
            )
        });
        self.track(started, "Watch", stream)
    }
}

/// Wakes the machine named (by name or MAC) of `snap` on its subnet's
/// link: only machines of the database, within the hourly bound.
async fn wake(
    snap: &Snapshot,
    key: &str,
    wakes: &std::sync::Mutex<crate::wake::Limiter>,
) -> Result<WakeResponse, Status> {
    let m = snap
        .by_name_or_mac(key)
        .ok_or_else(|| Status::not_found(format!("no machine with name or MAC {key:?}")))?
        .clone();
    wakes
        .lock()
        .map_err(|_| Status::internal("the wake limiter is poisoned"))?
        .allow(&m.name, std::time::Instant::now())
        .map_err(|e| Status::resource_exhausted(e.to_string()))?;
    match crate::wake::send_machine(&m).await {
        Ok(interface) => Ok(WakeResponse {
            machine: m.name,
            interface,
        }),
        Err(
            e @ (crate::wake::Error::NoMac(_)
            | crate::wake::Error::NoAddress(_)
            | crate::wake::Error::NotAttached { .. }),
        ) => Err(Status::failed_precondition(e.to_string())),
        Err(e) => Err(Status::internal(e.to_string())),
    }
}

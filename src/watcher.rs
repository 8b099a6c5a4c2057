//! Following a server's database to act on it (the provisioning runner, the
//! DHCP follower): Watch with the whole database first, then every change,
//! reconnecting with backoff; once changes have been quiet for a debounce,
//! the server's `mdb.yaml` checks and policy are read, and the revision as
//! received is validated with the code of `mdb validate` (emitted as YAML
//! and read back) before anyone acts on it. An invalid revision is refused,
//! said once, and nothing acts on it: neither a server nor anyone answering
//! in its place can make mdb act on what a DB writer could never merge.

use std::{collections::BTreeMap, future::Future, time::Duration};

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::proto::{
    machine_db_client::MachineDbClient, GetReadinessRequest, GetReadinessResponse, Machine,
    WatchEvent, WatchRequest,
};

/// Waits between reconnects to the server: from this, doubling...
const RECONNECT_FIRST: Duration = Duration::from_millis(500);
/// ...up to this.
const RECONNECT_MAX: Duration = Duration::from_secs(30);

/// Machines a followed database may hold: a stream that sends more is
/// dropped (a campus has thousands).
pub const MAX_MACHINES: usize = 200_000;

/// The server's database as followed: a revision that validated.
#[derive(Clone, Debug, Default)]
pub struct Database {
    /// Pieces of `revision` are still to come.
    in_pieces: bool,
    pub revision: String,
    /// By name.
    pub machines: BTreeMap<String, Machine>,
    /// `mdb.yaml`'s readiness checks and provisioning policy.
    pub readiness: GetReadinessResponse,
}

impl Database {
    /// Applies one message; true once its revision is complete (no more
    /// pieces of it follow). A whole revision replaces everything held, so
    /// a removal missed while behind is not kept. A piece of another
    /// revision than the one in pieces, or more machines than
    /// [`MAX_MACHINES`], is a broken stream.
    fn apply(&mut self, ev: WatchEvent) -> Result<bool, String> {
        if self.in_pieces && ev.revision != self.revision {
            return Err("a piece of another revision came before the last one's end".into());
        }
        if ev.whole {
            self.machines.clear();
        }
        self.revision = ev.revision;
        for m in ev.changed {
            self.machines.insert(m.name.clone(), m);
        }
        for name in ev.removed {
            self.machines.remove(&name);
        }
        if self.machines.len() > MAX_MACHINES {
            return Err(format!("more than {MAX_MACHINES} machines"));
        }
        self.in_pieces = ev.more;
        Ok(!ev.more)
    }

    /// Why the revision as received does not validate, if it does not.
    pub fn problems(&self) -> Option<String> {
        let machines: Vec<Machine> = self.machines.values().cloned().collect();
        crate::db::received::check(&self.revision, &machines, &self.readiness).err()
    }
}

/// What acts on a followed database.
pub trait Acts {
    /// Called once changes have been quiet, with a revision that validated;
    /// returns when to be called again without a change (a retry, a check).
    fn act<'a>(
        &'a mut self,
        db: &'a Database,
        server: &'a mut MachineDbClient<crate::dial::Conn>,
        shutdown: &'a CancellationToken,
    ) -> impl Future<Output = Option<Duration>> + Send + 'a;

    /// The revision received does not validate (`Some`, why), or does again.
    fn refuse(&mut self, why: Option<&str>);

    /// Stops after the first call of [`Acts::act`] (a dry run).
    fn once(&self) -> bool {
        false
    }
}

/// Follows `server` until `shutdown`, reconnecting with backoff; `what`
/// names the follower in logs.
pub async fn watch(
    server: &crate::dial::Remote,
    what: &str,
    debounce: Duration,
    actor: &mut (impl Acts + Send),
    shutdown: CancellationToken,
) {
    let mut wait = RECONNECT_FIRST;
    loop {
        match connection(server, what, debounce, actor, &shutdown).await {
            Ok(()) => return,
            Err(e) => {
                warn!(server = %server.addr, error = %e, "{what} lost the server; reconnecting in {wait:?}")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(RECONNECT_MAX);
    }
}

/// One connection: the full database first, then every change.
async fn connection(
    remote: &crate::dial::Remote,
    what: &str,
    debounce: Duration,
    actor: &mut (impl Acts + Send),
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let server = remote.addr.as_str();
    crate::dial::warn_if_plaintext(server, what);
    let conn = crate::dial::connect(server, &remote.creds)
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let mut client = MachineDbClient::new(conn);
    let mut stream = client
        .watch(WatchRequest {
            initial_snapshot: true,
            discovery: false,
        })
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    info!(server, "{what} follows the database");
    let mut db = Database::default();
    let mut refused_revision = String::new();
    let mut due: Option<tokio::time::Instant> = None;
    loop {
        let sleep = async {
            match due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            msg = stream.message() => match msg {
                Ok(Some(ev)) => {
                    // A revision is acted on only once all its pieces are in.
                    due = db
                        .apply(ev)?
                        .then(|| tokio::time::Instant::now() + debounce);
                }
                Ok(None) => return Err("the server ended the stream".into()),
                Err(s) => return Err(s.message().to_string()),
            },
            _ = sleep => {
                db.readiness = client
                    .get_readiness(GetReadinessRequest {})
                    .await
                    .map(|r| r.into_inner())
                    .map_err(|s| s.message().to_string())?;
                if let Some(problems) = db.problems() {
                    let shown = crate::escape::clean(&db.revision, 64);
                    let why = format!("revision {shown:?} from {server} does not validate, so {what} does nothing with it: {problems}");
                    if refused_revision != db.revision {
                        error!(revision = %shown, server, "{why}");
                        refused_revision = db.revision.clone();
                    }
                    actor.refuse(Some(&why));
                    due = None;
                } else {
                    actor.refuse(None);
                    due = actor.act(&db, &mut client, shutdown).await.map(|d| tokio::time::Instant::now() + d);
                }
                if actor.once() {
                    return Ok(());
                }
            }
        }
    }
}

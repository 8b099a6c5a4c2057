//! Routers and layer-3 switches as sources: their neighbour tables read
//! over SNMP (v2c, or v3 with authentication and privacy), within a
//! deadline and a row cap. What an agent sends is an untrusted answer:
//! every row is checked ([`table`]) before it names a host.

pub mod ports;
pub mod settings;
pub mod table;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use async_snmp::{Auth, Client, ErrorKind, Oid, Retry, WalkOptions};
use ipnetwork::IpNetwork;

pub use table::{Cell, Neighbour, Table};

use crate::secret::Secret;

/// Rows read from one table at most: a router of a lab holds hundreds, a
/// campus core a few thousand. More is a flood, and the read fails.
pub const MAX_ROWS: usize = 16_384;
/// Bindings asked per GETBULK.
const MAX_REPETITIONS: u32 = 32;

/// One SNMP source, as the scanner's configuration names it.
#[derive(Clone, Debug)]
pub struct Source {
    /// A DNS label; its hosts' source is `snmp:NAME`.
    pub name: String,
    pub address: SocketAddr,
    pub credentials: Credentials,
    /// The segment whose hosts its table gives (`scan.segment` of the
    /// scanner that would sweep it).
    pub segment: String,
    /// The subnets it serves: rows outside them are dropped. Empty: its
    /// neighbour table is not read (a switch that routes nothing).
    pub serves: Vec<IpNetwork>,
    /// Read its forwarding table for the port of each MAC.
    pub ports: Option<PortRules>,
    /// Each request's wait for an answer, and the retries after it.
    pub timeout: Duration,
    pub retries: u32,
    /// A whole read's end, whatever the agent does.
    pub deadline: Duration,
    /// An entry the agent says it last updated longer ago is not present.
    /// None by default: net-snmp counts from a row's last change, not the
    /// router's last answer, so a device that stays put grows old there.
    pub max_age: Option<Duration>,
}

/// Which ports of a switch are no device's own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortRules {
    /// A port with more MACs than this leads to another switch.
    pub uplink_macs: usize,
    /// Ports named (ifName) as uplinks.
    pub uplinks: Vec<String>,
}

#[derive(Clone, Debug)]
pub enum Credentials {
    V2c {
        community: Secret,
    },
    V3 {
        user: String,
        auth: async_snmp::AuthProtocol,
        auth_password: Secret,
        privacy: async_snmp::PrivProtocol,
        privacy_password: Secret,
    },
}

impl Source {
    /// How its hosts name their source.
    pub fn tag(&self) -> String {
        tag(&self.name)
    }
}

/// `snmp:NAME`: a source's name as its hosts carry it.
pub fn tag(name: &str) -> String {
    format!("snmp:{name}")
}

/// Why a read gave nothing to believe; the view keeps its last good one.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no answer within {0:?} (agent down, unreachable, or a community it does not know)")]
    Timeout(Duration),
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("more than {MAX_ROWS} rows: a flood, not a neighbour table")]
    Flood,
    #[error("the table holds no entry ({rejected} rows rejected): a view without its MIB, or a device that just restarted")]
    Empty { rejected: usize },
    #[error("an answer SNMP does not allow: {0}")]
    Garbage(String),
    #[error("{0}")]
    Network(String),
    #[error("credentials: {0}")]
    Credentials(String),
}

impl Error {
    /// Each kind as `mdb_snmp_reads_total{result}` spells it.
    pub const LABELS: &'static [&'static str] = &[
        "ok",
        "timeout",
        "auth",
        "flood",
        "empty",
        "garbage",
        "network",
        "credentials",
    ];

    /// Every failure's label is among [`Error::LABELS`].
    pub fn label(&self) -> &'static str {
        match self {
            Error::Timeout(_) => "timeout",
            Error::Auth(_) => "auth",
            Error::Flood => "flood",
            Error::Empty { .. } => "empty",
            Error::Garbage(_) => "garbage",
            Error::Network(_) => "network",
            Error::Credentials(_) => "credentials",
        }
    }

    /// The time of a timeout is filled in by [`within`], which every read
    /// goes through.
    fn of(e: &async_snmp::Error) -> Error {
        match e.kind() {
            ErrorKind::Timeout | ErrorKind::ConstructionTimeout => Error::Timeout(Duration::ZERO),
            ErrorKind::Auth | ErrorKind::Report | ErrorKind::Privacy => Error::Auth(e.to_string()),
            ErrorKind::Network | ErrorKind::Closed => Error::Network(e.to_string()),
            ErrorKind::WalkAborted if e.to_string().contains("limit") => Error::Flood,
            // The crate's words for a malformed answer may quote the whole
            // answer: its kind and a bounded start are enough.
            kind => Error::Garbage(crate::escape::clean(
                &format!("{}: {e}", kind.as_str()),
                200,
            )),
        }
    }
}

/// The source's neighbour table: `ipNetToPhysicalTable`, and
/// `ipNetToMediaTable` when that gave no IPv4 neighbour (an agent without
/// it, or one that keeps only IPv6 there). Ends by `source.deadline`, and
/// by `until` (the sweep's end) when that comes first.
pub async fn neighbours(source: &Source, until: Option<Instant>) -> Result<Table, Error> {
    within(source, until, read(source)).await
}

/// `read` cut at the source's deadline or `until`, whichever comes first;
/// a timeout, the crate's or this one, says how long the read waited.
async fn within<T>(
    source: &Source,
    until: Option<Instant>,
    read: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    let started = Instant::now();
    let end = until.map_or(started + source.deadline, |u| {
        u.min(started + source.deadline)
    });
    match tokio::time::timeout_at(end.into(), read).await {
        Ok(Err(Error::Timeout(_))) | Err(_) => Err(Error::Timeout(Duration::from_millis(
            started.elapsed().as_millis() as u64,
        ))),
        Ok(r) => r,
    }
}

async fn read(source: &Source) -> Result<Table, Error> {
    let client = connect(source).await?;
    let fail = |e: Box<async_snmp::Error>| Error::of(&e);
    let uptime = match client.get(&Oid::from_slice(table::SYS_UPTIME)).await {
        Ok(r) => r.varbinds.first().and_then(|v| v.value.as_u32()),
        // An SNMPv3 agent answers a wrong password with a report it cannot
        // sign, which is (rightly) not believed: the first authenticated
        // request then times out although the agent answered mdb's
        // engine discovery. A router that stopped between the two looks
        // the same, so a fresh session asks once more before the
        // password is blamed.
        Err(e)
            if e.kind() == ErrorKind::Timeout
                && matches!(source.credentials, Credentials::V3 { .. })
                && client.stats().correlated_datagrams > 0 =>
        {
            if !refuses_our_keys(source).await {
                return Err(fail(e));
            }
            return Err(Error::Auth(
                "the agent answered but not to this user's keys: wrong user, password or protocol?"
                    .into(),
            ));
        }
        Err(e) => return Err(fail(e)),
    };
    let physical = walk(&client, table::PHYSICAL_ENTRY, &[4, 5, 6, 7]).await?;
    let mut table = table::physical(&physical, uptime);
    if !table.neighbours.iter().any(|n| n.ip.is_ipv4()) {
        let media = walk(&client, table::MEDIA_ENTRY, &[2, 4]).await?;
        let older = table::media(&media);
        table.neighbours.extend(older.neighbours);
        table.rejected += older.rejected;
    }
    if table.neighbours.is_empty() {
        return Err(Error::Empty {
            rejected: table.rejected,
        });
    }
    Ok(table)
}

/// The switch's forwarding table, its ports' names and which of them
/// face another bridge (LLDP). Ends as [`neighbours`] does.
pub async fn ports(source: &Source, until: Option<Instant>) -> Result<ports::Fdb, Error> {
    within(source, until, read_ports(source)).await
}

async fn read_ports(source: &Source) -> Result<ports::Fdb, Error> {
    let client = connect(source).await?;
    let (mut learned, mut rejected) =
        ports::learned(&walk(&client, ports::Q_FDB_ENTRY, &[2, 3]).await?, true);
    if learned.is_empty() {
        (learned, rejected) =
            ports::learned(&walk(&client, ports::FDB_ENTRY, &[2, 3]).await?, false);
    }
    if learned.is_empty() {
        return Err(Error::Empty { rejected });
    }
    ports::vlans_of(
        &mut learned,
        &walk(&client, ports::VLAN_CURRENT_ENTRY, &[3]).await?,
    );
    let base = ports::base_ports(&walk(&client, ports::BASE_PORT_ENTRY, &[2]).await?);
    let if_names = ports::texts(&walk(&client, ports::IF_X_ENTRY, &[1]).await?, 1);
    let names: std::collections::HashMap<u32, String> = base
        .iter()
        .filter_map(|(port, index)| Some((*port, if_names.get(index)?.clone())))
        .collect();
    let local = ports::texts(&walk(&client, ports::LLDP_LOC_PORT_ENTRY, &[4]).await?, 4);
    let remote = walk(&client, ports::LLDP_REM_ENTRY, &[12]).await?;
    let bridged = ports::bridged_base_ports(&ports::bridged_ports(&remote), &local, &names);
    Ok(ports::Fdb {
        learned,
        names,
        bridged,
        rejected,
    })
}

/// Whether a fresh session's engine discovery is answered while its
/// authenticated request is not: the agent is there, our keys are wrong.
async fn refuses_our_keys(source: &Source) -> bool {
    let Ok(client) = connect(source).await else {
        return false;
    };
    let asked = client.get(&Oid::from_slice(table::SYS_UPTIME)).await;
    asked.is_err_and(|e| e.kind() == ErrorKind::Timeout) && client.stats().correlated_datagrams > 0
}

async fn connect(source: &Source) -> Result<Client<async_snmp::UdpHandle>, Error> {
    let auth = match &source.credentials {
        Credentials::V2c { community } => Auth::v2c(community.expose()),
        Credentials::V3 {
            user,
            auth,
            auth_password,
            privacy,
            privacy_password,
        } => async_snmp::UsmConfig::new(user.clone().into_bytes())
            .auth_priv(
                *auth,
                auth_password.expose(),
                *privacy,
                privacy_password.expose(),
            )
            .map_err(|e| Error::Credentials(e.to_string()))?
            .into(),
    };
    let retry = Retry::fixed(source.retries, Duration::ZERO)
        .map_err(|e| Error::Credentials(e.to_string()))?;
    Client::builder(source.address, auth)
        .strict_source(true)
        .request_timeout(source.timeout)
        .retry(retry)
        .connect()
        .await
        .map_err(|e| Error::of(&e))
}

/// The bindings of `columns` below `entry`, each column walked on its
/// own, as (column and index, cell): [`MAX_ROWS`] distinct rows at most,
/// each value copied out small (a long string in such a table is garbage,
/// not a row).
async fn walk(
    client: &Client<async_snmp::UdpHandle>,
    entry: &[u32],
    columns: &[u32],
) -> Result<Vec<(Vec<u32>, Cell)>, Error> {
    let options = WalkOptions {
        max_repetitions: MAX_REPETITIONS,
        result_limit: Some(MAX_ROWS + 1),
        ..WalkOptions::default()
    };
    let entry = Oid::from_slice(entry);
    let mut out = Vec::new();
    let mut rows = std::collections::HashSet::new();
    for &column in columns {
        let prefix = entry.child(column);
        let mut stream = client
            .walk_with(prefix.clone(), options)
            .map_err(|e| Error::of(&e))?;
        while let Some(item) = stream.next().await {
            let vb = item.map_err(|e| Error::of(&e))?;
            let Some(index) = vb.oid.strip_prefix(&prefix) else {
                break;
            };
            let cell = Cell::of(&vb.value).ok_or_else(|| {
                Error::Garbage(format!("a {} value in a table", vb.value.kind().as_str()))
            })?;
            if rows.insert(index.arcs().to_vec()) && rows.len() > MAX_ROWS {
                return Err(Error::Flood);
            }
            let mut arcs = vec![column];
            arcs.extend_from_slice(index.arcs());
            out.push((arcs, cell));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_has_a_series_from_the_start() {
        let all = [
            Error::Timeout(Duration::ZERO),
            Error::Auth(String::new()),
            Error::Flood,
            Error::Empty { rejected: 0 },
            Error::Garbage(String::new()),
            Error::Network(String::new()),
            Error::Credentials(String::new()),
        ];
        for e in all {
            assert!(Error::LABELS.contains(&e.label()), "{}", e.label());
        }
    }
}

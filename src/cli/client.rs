//! The small gRPC client commands of the CLI (`mdb list`, `mdb get`,
//! `mdb stats`, `mdb clusters`): connect, ask, print a table or JSON.

use serde_json::{json, Value};

use crate::{
    db::{
        self,
        words::{provisioner_name, state_name},
    },
    proto::{
        machine_db_client::MachineDbClient, GetMachineRequest, GetStatsRequest,
        ListMachinesRequest, Machine,
    },
};

pub const ENV_SERVER: &str = "MDB_SERVER";
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:50051";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach mdb at {addr}: {why} (is `mdb serve` running there? see --server or MDB_SERVER)")]
    Connect { addr: String, why: String },
    #[error(transparent)]
    Dial(#[from] crate::dial::Error),
    /// Only the server's own words: tonic's rendering repeats them.
    #[error("{}", .0.message())]
    Rpc(Box<tonic::Status>),
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Error {
        Error::Rpc(Box::new(s))
    }
}

pub use crate::dial::trust_ca_file;

/// The CLI's credentials: the token of `--token-file` (or
/// `MDB_TOKEN_FILE`), else `MDB_TOKEN`; none without either.
pub fn credentials(
    token_file: Option<&std::path::Path>,
) -> anyhow::Result<crate::dial::Credentials> {
    let token = match token_file {
        Some(p) => Some(
            crate::secret::Secret::from_file(p)
                .map_err(|e| anyhow::anyhow!("--token-file: {e}"))?,
        ),
        None => std::env::var("MDB_TOKEN")
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .map(crate::secret::Secret::new),
    };
    Ok(crate::dial::Credentials {
        token,
        identity: None,
        allow_plaintext: std::env::var("MDB_ALLOW_PLAINTEXT").is_ok_and(|v| v == "1"),
    })
}

/// A connection to `addr`, over TLS for https:// (checked against the CA
/// of `--ca-file`, else the system's roots), sending the CLI's token.
pub async fn channel(addr: &str) -> Result<crate::dial::Conn, Error> {
    crate::dial::connect(addr, &crate::dial::cli_credentials())
        .await?
        .map_err(|e| Error::Connect {
            why: root_cause(&e),
            addr: addr.to_string(),
        })
}

pub async fn connect(addr: &str) -> Result<MachineDbClient<crate::dial::Conn>, Error> {
    Ok(MachineDbClient::new(channel(addr).await?))
}

/// The innermost cause of a transport error, without tonic's and hyper's
/// repeated wrappers ("transport error: transport error: tcp connect...").
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    while let Some(next) = last.source() {
        last = next;
    }
    let text = last.to_string();
    match text.split_once(" (os error") {
        Some((head, _)) => head.to_lowercase(),
        None => text,
    }
}

/// Every page of a listing, with the revision of its first page.
pub async fn list_all(
    client: &mut MachineDbClient<crate::dial::Conn>,
    mut req: ListMachinesRequest,
) -> Result<(String, Vec<Machine>), Error> {
    let mut out = Vec::new();
    let mut revision = None;
    for _ in 0..MAX_PAGES {
        let page = client.list_machines(req.clone()).await?.into_inner();
        revision.get_or_insert(page.revision);
        out.extend(page.machines);
        if page.next_page_token.is_empty() {
            return Ok((revision.unwrap_or_default(), out));
        }
        if out.len() > MAX_MACHINES {
            break;
        }
        req.page_token = page.next_page_token;
    }
    Err(Error::Rpc(Box::new(tonic::Status::out_of_range(format!(
        "the server's list goes on past {MAX_PAGES} pages or {MAX_MACHINES} machines; stopped reading"
    )))))
}

/// Pages of a list read at most: a server that never ends one is cut off.
pub const MAX_PAGES: usize = 1000;
/// Machines of a list read at most.
pub const MAX_MACHINES: usize = 1_000_000;

pub use crate::export::view::{history_json, host_json, machine_json, use_detail};

/// Every field of one machine, one per line, with where it is defined.
pub fn machine_detail(m: &Machine) -> String {
    let mut labels: Vec<String> = m.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    labels.sort();
    let ssh = m
        .ssh
        .as_ref()
        .map(|s| format!("{}@port {}", s.user, if s.port == 0 { 22 } else { s.port }))
        .unwrap_or_default();
    let rows = [
        ("name", m.name.clone()),
        ("addresses", m.ips.join(", ")),
        ("mac", m.mac.clone()),
        ("hostname", m.hostname.clone()),
        ("use", use_detail(m)),
        ("provisioner", provisioner_name(m).to_string()),
        ("ssh", ssh),
        ("labels", labels.join(", ")),
        ("notes", m.notes.clone()),
        ("defined in", m.source.clone()),
    ];
    fields(&rows)
}

/// Fields one per line, name then value, control characters escaped and
/// an empty value shown as `-`.
fn fields(rows: &[(&str, String)]) -> String {
    rows.iter()
        .map(|(k, v)| {
            let v = if v.is_empty() { "-" } else { v };
            format!("{k:<12} {}\n", crate::escape::terminal(v))
        })
        .collect()
}

/// Left-aligned columns, two spaces apart. Every cell is shown with its
/// control characters escaped: a name from the LAN cannot move the cursor
/// or forge a row.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| crate::escape::terminal(c)).collect())
        .collect();
    let rows = &rows;
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

pub fn machines_table(ms: &[Machine]) -> String {
    machines_table_with(ms, None, None)
}

pub async fn get(
    client: &mut MachineDbClient<crate::dial::Conn>,
    key: &str,
) -> Result<Machine, Error> {
    Ok(client
        .get_machine(GetMachineRequest {
            key: key.to_string(),
        })
        .await?
        .into_inner())
}

pub async fn stats(
    client: &mut MachineDbClient<crate::dial::Conn>,
) -> Result<crate::proto::Stats, Error> {
    Ok(client.get_stats(GetStatsRequest {}).await?.into_inner())
}

/// A share of sweeps as a whole percentage; "-" before any sweep.
fn share(h: &crate::proto::DiscoveredHost, value: f64) -> String {
    if h.first_seen_unix == 0 && h.missed_sweeps == 0 {
        return "-".into();
    }
    format!("{:.0}%", value * 100.0)
}

/// Presence and its times, as `mdb get` and `mdb history` print them.
pub fn presence_lines(h: &crate::proto::DiscoveredHost) -> String {
    use crate::db::store::ago;
    let mut out = format!(
        "state        {} ({}) since {}{}\n",
        state_name(h.state),
        db::words::presence_name(h.presence),
        ago(h.state_since_unix),
        if h.detail.is_empty() {
            String::new()
        } else {
            format!(": {}", crate::escape::terminal(&h.detail))
        }
    );
    out.push_str(&format!(
        "first seen   {}\nlast seen    {} ({})\nup           {} of sweeps over 24 h, {} over 7 d\n",
        crate::github::entry::time(h.first_seen_unix),
        crate::github::entry::time(h.last_seen_unix),
        ago(h.last_seen_unix),
        share(h, h.uptime_24h),
        share(h, h.uptime_7d),
    ));
    if h.macs_seen.len() > 1 {
        out.push_str(&format!(
            "MACs used    {}\n",
            crate::escape::terminal(&h.macs_seen.join(", "))
        ));
    }
    out
}

pub fn discovered_table(hosts: &[crate::proto::DiscoveredHost], with_state: bool) -> String {
    let rows: Vec<Vec<String>> = hosts
        .iter()
        .map(|h| {
            let ports: Vec<String> = h.open_ports.iter().map(|p| p.to_string()).collect();
            let mut r = vec![
                h.ip.clone(),
                h.mac.clone(),
                h.vendor.clone(),
                crate::export::names::described(h, crate::db::words::DEFAULT_NAME_ORDER),
                ports.join(","),
            ];
            if with_state {
                use crate::db::store::ago;
                r.push(state_name(h.state).to_string());
                r.push(if h.machine.is_empty() {
                    db::kind_name(h.guessed_use).to_string()
                } else {
                    h.machine.clone()
                });
                r.push(db::words::presence_name(h.presence).to_string());
                r.push(crate::github::entry::time(h.first_seen_unix));
                r.push(ago(h.last_seen_unix));
                r.push(ago(h.state_since_unix));
                r.push(share(h, h.uptime_24h));
                r.push(share(h, h.uptime_7d));
                r.push(h.detail.clone());
            }
            r
        })
        .collect();
    let with_v6 = hosts.iter().any(|h| !h.ipv6_addresses.is_empty());
    let with_source = hosts.iter().any(|h| !h.source.is_empty());
    let with_port = hosts.iter().any(|h| h.switch_port.is_some());
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .zip(hosts)
        .map(|(mut r, h)| {
            if with_port {
                r.insert(1, crate::export::view::port_text(h));
            }
            if with_source {
                r.insert(1, crate::export::view::seen_on(h));
            }
            if with_v6 {
                r.insert(1, crate::export::view::ipv6_text(h));
            }
            r
        })
        .collect();
    let mut head: Vec<&str> = if with_state {
        vec![
            "IP",
            "MAC",
            "VENDOR",
            "NAME",
            "PORTS",
            "STATE",
            "MACHINE/GUESS",
            "PRESENCE",
            "FIRST SEEN",
            "LAST SEEN",
            "SINCE",
            "UP 24H",
            "UP 7D",
            "DETAIL",
        ]
    } else {
        vec!["IP", "MAC", "VENDOR", "NAME", "PORTS"]
    };
    if with_port {
        head.insert(1, "SWITCH PORT");
    }
    if with_source {
        head.insert(1, "SEEN ON");
    }
    if with_v6 {
        head.insert(1, "IPV6");
    }
    table(&head, &rows)
}

/// Every machine's provisioning status from a runner, by machine name.
pub async fn provision_statuses(
    runner: &str,
) -> anyhow::Result<std::collections::HashMap<String, crate::proto::ProvisionStatus>> {
    Ok(list_statuses(runner)
        .await?
        .into_iter()
        .filter(|s| !s.cluster)
        .map(|s| (s.target.clone(), s))
        .collect())
}

/// Every status a runner serves, machines and clusters.
pub async fn list_statuses(runner: &str) -> anyhow::Result<Vec<crate::proto::ProvisionStatus>> {
    Ok(runner_statuses(runner).await?.statuses)
}

/// What a runner serves: every status, and why it refuses its revision.
pub async fn runner_statuses(
    runner: &str,
) -> anyhow::Result<crate::proto::ListProvisionStatusResponse> {
    use crate::proto::provisioning_client::ProvisioningClient;
    let mut c = match channel(runner).await {
        Ok(ch) => ProvisioningClient::new(ch),
        Err(Error::Connect { addr, why }) => anyhow::bail!(
            "cannot reach the provisioning runner at {addr}: {why} (is mdb provision running?)"
        ),
        Err(e) => return Err(e.into()),
    };
    let list = c
        .list_status(crate::proto::ListProvisionStatusRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("{runner}: {}", s.message()))?
        .into_inner();
    Ok(list)
}

/// The word for a provisioning result.
pub use crate::db::words::provision_result_name as result_word;

/// "provisioning: ok at revision abc (2026-11-26T17:00:00Z)" and the reason.
pub fn status_line(s: &crate::proto::ProvisionStatus) -> String {
    let mut line = format!(
        "provisioning: {} (applied revision {}, {})",
        result_word(s.result),
        if s.applied_revision.is_empty() {
            "none"
        } else {
            &s.applied_revision
        },
        crate::github::entry::time(s.at_unix)
    );
    if !s.reason.is_empty() {
        line.push_str(&format!(
            "\nprovisioning problem: {}",
            crate::escape::terminal(&s.reason)
        ));
    }
    line
}

/// One target's whole status, one field per line, then the end of its
/// last run's output (control characters shown escaped, lines kept).
pub fn status_detail(s: &crate::proto::ProvisionStatus) -> String {
    let rows = [
        (
            "target",
            if s.cluster {
                format!("cluster {}", s.target)
            } else {
                s.target.clone()
            },
        ),
        ("result", result_word(s.result).to_string()),
        ("policy", s.treatment.clone()),
        ("applied", s.applied_revision.clone()),
        ("at", crate::github::entry::time(s.at_unix)),
        ("attempts", s.attempts.to_string()),
        ("reason", s.reason.clone()),
    ];
    let mut out = fields(&rows);
    if !s.output_tail.is_empty() {
        out.push_str("\noutput (the end of the last run):\n");
        for line in s.output_tail.lines() {
            out.push_str(&crate::escape::terminal(line));
            out.push('\n');
        }
    }
    out
}

/// A machine's JSON with its provisioning status, when one is known.
pub fn with_status(
    mut v: Value,
    statuses: Option<&std::collections::HashMap<String, crate::proto::ProvisionStatus>>,
    name: &str,
) -> Value {
    if let Some(s) = statuses.and_then(|s| s.get(name)) {
        v["provisioning"] = json!({
            "result": result_word(s.result),
            "treatment": s.treatment,
            "applied_revision": s.applied_revision,
            "at_unix": s.at_unix,
            "reason": s.reason,
        });
    }
    v
}

/// A machine's JSON with what the sweeps say of it, when they saw it.
pub fn with_presence(mut v: Value, seen: &[crate::proto::DiscoveredHost], name: &str) -> Value {
    if let Some(h) = crate::export::view::sweeps_of(seen, name) {
        v["presence"] = json!({
            "presence": crate::db::words::presence_name(h.presence),
            "since_unix": h.presence_since_unix,
            "ip": h.ip,
            "state": crate::db::words::state_name(h.state),
        });
    }
    v
}

/// The machines table; a PRESENCE column when the server's sweeps are
/// given, a PROVISIONING column when a runner's statuses are.
pub fn machines_table_with(
    ms: &[Machine],
    seen: Option<&[crate::proto::DiscoveredHost]>,
    statuses: Option<&std::collections::HashMap<String, crate::proto::ProvisionStatus>>,
) -> String {
    use crate::export::view::{presence_text, provisioning_text, sweeps_of};
    let rows: Vec<Vec<String>> = ms
        .iter()
        .map(|m| {
            let mut row = vec![
                m.name.clone(),
                m.ips.join(","),
                m.mac.clone(),
                use_detail(m),
                provisioner_name(m).to_string(),
            ];
            if let Some(hosts) = seen {
                row.push(presence_text(sweeps_of(hosts, &m.name)));
            }
            if let Some(st) = statuses {
                row.push(provisioning_text(st.get(&m.name)));
            }
            row
        })
        .collect();
    let mut header = vec!["NAME", "IP", "MAC", "USE", "PROVISIONER"];
    if seen.is_some() {
        header.push("PRESENCE");
    }
    if statuses.is_some() {
        header.push("PROVISIONING");
    }
    table(&header, &rows)
}

/// The snapshot with each machine's provisioning status as labels, so the
/// inventory carries them as hostvars (`mdb_provision_*`).
pub fn label_statuses(
    snap: crate::db::Snapshot,
    statuses: &std::collections::HashMap<String, crate::proto::ProvisionStatus>,
) -> crate::db::Snapshot {
    let mut machines = snap.machines.clone();
    for m in &mut machines {
        if let Some(s) = statuses.get(&m.name) {
            m.labels.insert(
                "mdb_provision_result".into(),
                result_word(s.result).replace(' ', "_"),
            );
            m.labels
                .insert("mdb_provision_revision".into(), s.applied_revision.clone());
        }
    }
    crate::db::Snapshot::new(snap.revision.clone(), machines, snap.mdb_yaml.clone())
}

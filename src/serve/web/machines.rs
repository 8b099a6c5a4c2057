//! The machine pages: `/machines` (filter, search, sort), `/machines/NAME`
//! (every field, where it is defined, what the sweeps and the runner say),
//! and `/clusters`.

use super::*;
use crate::{
    export::view::{presence_text, provisioning_text, sweeps_of},
    proto::ProvisionStatus,
};
use hosts::{hosts_table, short};
use paging::Paging;

/// The machines a page's filters and search keep, sorted as asked.
pub fn filter_machines<'a>(snap: &'a Snapshot, q: &HashMap<String, String>) -> Vec<&'a Machine> {
    let get = |k: &str| q.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());
    let search = get("q").map(str::to_lowercase);
    let mut out: Vec<&Machine> = snap
        .machines
        .iter()
        .filter(|m| get("use").is_none_or(|u| crate::db::use_name(m.r#use.as_ref()) == u))
        .filter(|m| get("cluster").is_none_or(|c| matches!(&m.r#use, Some(crate::proto::machine::Use::Cluster(x)) if x.cluster == c)))
        .filter(|m| get("provisioner").is_none_or(|p| provisioner_name(m) == p))
        .filter(|m| {
            get("label").is_none_or(|l| match l.split_once('=') {
                Some((k, v)) => m.labels.get(k).is_some_and(|x| x == v),
                None => m.labels.contains_key(l),
            })
        })
        .filter(|m| {
            search.as_deref().is_none_or(|s| {
                m.name.contains(s) || m.ips.iter().any(|i| i.contains(s)) || m.mac.contains(s)
            })
        })
        .collect();
    match get("sort") {
        Some("ip") => out.sort_by_key(|m| {
            m.ips
                .first()
                .and_then(|i| i.parse::<std::net::IpAddr>().ok())
        }),
        Some("use") => out.sort_by_key(|m| (crate::db::use_name(m.r#use.as_ref()), m.name.clone())),
        _ => {}
    }
    out
}

/// What the page shows beside the database: what the sweeps saw, and the
/// runner's statuses (when `[server] runner` names one that answers).
#[derive(Default)]
pub struct Around {
    pub seen: Vec<DiscoveredHost>,
    pub statuses: Option<HashMap<String, ProvisionStatus>>,
}

impl Around {
    async fn of(w: &Web) -> Around {
        let statuses = runner_statuses(w.runner.as_ref()).await.map(|all| {
            all.into_iter()
                .filter(|s| !s.cluster)
                .map(|s| (s.target.clone(), s))
                .collect()
        });
        Around {
            seen: w.store.discovery().hosts.clone(),
            statuses,
        }
    }

    fn status(&self, name: &str) -> Option<&ProvisionStatus> {
        self.statuses.as_ref().and_then(|s| s.get(name))
    }
}

pub(super) async fn machines(State(w): State<Web>, q: Params) -> Response {
    let Some(snap) = w.store.snapshot() else {
        return not_loaded();
    };
    let all = filter_machines(&snap, &q);
    let paging = Paging::of(&q, all.len());
    let list = paging.slice(&all);
    let around = Around::of(&w).await;
    if wants_json(&q) {
        let json_of = |m: &&Machine| {
            let mut v = machine_json(m);
            if let Some(h) = sweeps_of(&around.seen, &m.name) {
                v["presence"] = json!({ "presence": presence_name(h.presence), "since_unix": h.presence_since_unix });
            }
            if let Some(s) = around.status(&m.name) {
                v["provisioning"] = json!({
                    "result": crate::db::words::provision_result_name(s.result),
                    "applied_revision": s.applied_revision,
                    "reason": s.reason,
                });
            }
            v
        };
        return json_response(
            json!({ "revision": snap.revision, "paging": paging.json("/machines", &q), "machines": list.iter().map(json_of).collect::<Vec<_>>() }),
        );
    }
    page(
        "Machines",
        "Machines",
        machines_body(&snap, &all, &q, &around),
    )
}

/// The machines page's content (also what the benchmark renders): `list`
/// is every machine the filters keep, shown a page at a time.
pub fn machines_body(
    snap: &Snapshot,
    list: &[&Machine],
    q: &HashMap<String, String>,
    around: &Around,
) -> Markup {
    let paging = Paging::of(q, list.len());
    let val = |k: &str| q.get(k).cloned().unwrap_or_default();
    let link = |sort: &str| {
        let mut p: Vec<(String, String)> = q
            .iter()
            .filter(|(k, _)| *k != "sort" && *k != "page")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        p.push(("sort".into(), sort.into()));
        p.sort();
        let qs: Vec<String> = p
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect();
        format!("/machines?{}", qs.join("&"))
    };
    html! {
        h1 { "Machines" }
        form method="get" action="/machines" class="filters" {
            label { "search " input type="search" name="q" value=(val("q")) placeholder="name, IP or MAC"; }
            label { "use "
                select name="use" {
                    option value="" { "any" }
                    @for u in USE_NAMES { option value=(u) selected[val("use") == *u] { (u) } }
                }
            }
            label { "cluster "
                select name="cluster" {
                    option value="" { "any" }
                    @for c in snap.cluster_names() { option value=(c) selected[val("cluster") == c] { (c) } }
                }
            }
            label { "provisioner "
                select name="provisioner" {
                    option value="" { "any" }
                    @for p in ["primary", "secondary"] { option value=(p) selected[val("provisioner") == p] { (p) } }
                }
            }
            label { "label " input type="text" name="label" value=(val("label")) placeholder="key=value"; }
            button type="submit" { "Filter" }
        }
        p class="count" { (list.len()) " of " (snap.machines.len()) " machines" }
        (paging.nav("/machines", q, "machines"))
        table id="machines" {
            thead { tr {
                th { a href=(link("name")) { "name" } }
                th { a href=(link("ip")) { "IP" } }
                th { "MAC" }
                th { a href=(link("use")) { "use" } }
                th { "provisioner" }
                th { "presence" }
                @if around.statuses.is_some() { th { "provisioning" } }
            } }
            tbody {
                @for m in paging.slice(list) {
                    @let seen = sweeps_of(&around.seen, &m.name);
                    tr {
                        td { a href=(format!("/machines/{}", m.name)) { (m.name) } }
                        td { (m.ips.join(", ")) }
                        td { code { (m.mac) } }
                        td { (use_detail(m)) }
                        td { (provisioner_name(m)) }
                        td class=(seen.map_or("", |h| presence_name(h.presence))) { (presence_text(seen)) }
                        @if around.statuses.is_some() { td { (provisioning_text(around.status(&m.name))) } }
                    }
                }
            }
        }
    }
}

pub(super) async fn machine(State(w): State<Web>, Path(name): Path<String>, q: Params) -> Response {
    let Some(snap) = w.store.snapshot() else {
        return not_loaded();
    };
    let Some(m) = snap.by_name(&name) else {
        return not_found("Machines", "No machine", &name);
    };
    let disc = w.store.discovery();
    let seen: Vec<&DiscoveredHost> = disc
        .hosts
        .iter()
        .filter(|h| {
            h.machine == m.name || (!m.mac.is_empty() && h.mac == m.mac) || m.ips.contains(&h.ip)
        })
        .collect();
    if wants_json(&q) {
        return json_response(json!({
            "machine": machine_json(m),
            "discovered": seen.iter().map(|h| host_json(h)).collect::<Vec<_>>(),
            "seen_at": sweeps_of(&disc.hosts, &m.name).map(|h| h.ip.clone()),
        }));
    }
    let provisioning = provision_status(w.runner.as_ref(), &m.name).await;
    // Up at another address than its own: a DHCP device on its old lease.
    let away = sweeps_of(&disc.hosts, &m.name)
        .filter(|h| h.state == crate::proto::HostState::Moved as i32 && !m.ips.contains(&h.ip))
        .map(|h| h.ip.clone());
    let source = source_link(w.repo_web.as_deref(), &snap.revision, &m.source);
    let issues = w
        .repo_web
        .as_ref()
        .map(|r| format!("{r}/issues?q=is%3Aissue+{}", enc(&m.name)));
    let pulls = w
        .repo_web
        .as_ref()
        .map(|r| format!("{r}/pulls?q=is%3Apr+{}", enc(&m.name)));
    page(
        &m.name,
        "Machines",
        html! {
            h1 { (m.name) }
            dl {
                dt { "addresses" } dd {
                    (m.ips.join(", "))
                    @if let Some(at) = &away { br; span class="state moved" { "reserved " (m.ips.first().cloned().unwrap_or_default()) ", seen at " (at) " (its old lease, until it renews)" } }
                }
                dt { "MAC" } dd { code { (m.mac) } }
                dt { "hostname" } dd { (m.hostname) }
                dt { "use" } dd { (use_detail(m)) }
                dt { "provisioner" } dd { (provisioner_name(m)) }
                dt { "SSH" } dd { @if let Some(s) = &m.ssh { (s.user) "@ port " (if s.port == 0 { 22 } else { s.port }) } }
                dt { "labels" } dd { @for (k, v) in sorted_labels(m) { span class="label" { (k) "=" (v) } " " } }
                dt { "notes" } dd class="notes" { (m.notes) }
                dt { "defined in" } dd {
                    @match &source { Some(url) => a href=(url) { (m.source) }, None => code { (m.source) } }
                }
                dt { "provisioning" } dd {
                @match &provisioning {
                    Some((result, revision, reason)) => {
                        span class=(format!("state {}", result.replace(' ', "-"))) { (result) }
                        @if !revision.is_empty() { " (applied revision " code { (short(revision)) } ")" }
                        @if !reason.is_empty() { br; (reason) }
                    },
                    None => "unknown (no provisioning runner configured or reachable)",
                }
            }
                @if let Some(url) = &issues { dt { "GitHub" } dd { a href=(url) { "issues" } " · " @if let Some(p) = &pulls { a href=(p) { "pull requests" } } } }
            }
            h2 { "Seen on the network" }
            @if seen.is_empty() { p { "Not seen by the last sweeps." } } @else { (hosts_table(&seen)) }
        },
    )
}

/// Every status the runner serves. Bounded: the page never waits long for
/// it, and a runner that does not answer is no status at all.
async fn runner_statuses(runner: Option<&crate::dial::Remote>) -> Option<Vec<ProvisionStatus>> {
    use crate::proto::{provisioning_client::ProvisioningClient, ListProvisionStatusRequest};
    let runner = runner?;
    let ask = async {
        let conn = crate::dial::connect(&runner.addr, &runner.creds)
            .await
            .ok()?
            .ok()?;
        let mut c = ProvisioningClient::new(conn);
        let list = c
            .list_status(ListProvisionStatusRequest {})
            .await
            .ok()?
            .into_inner();
        Some(list.statuses)
    };
    tokio::time::timeout(std::time::Duration::from_secs(1), ask)
        .await
        .ok()?
}

/// A machine's provisioning status from the runner: result, applied
/// revision, reason.
async fn provision_status(
    runner: Option<&crate::dial::Remote>,
    name: &str,
) -> Option<(String, String, String)> {
    let s = runner_statuses(runner)
        .await?
        .into_iter()
        .find(|s| !s.cluster && s.target == name)?;
    let result = crate::db::words::provision_result_name(s.result);
    Some((result.to_string(), s.applied_revision, s.reason))
}

fn sorted_labels(m: &Machine) -> Vec<(&String, &String)> {
    let mut v: Vec<(&String, &String)> = m.labels.iter().collect();
    v.sort();
    v
}

/// A link to `file:line` in the DB repository's web UI, at `revision`.
pub fn source_link(repo_web: Option<&str>, revision: &str, source: &str) -> Option<String> {
    let (file, line) = source.rsplit_once(':')?;
    let line: u32 = line.parse().ok()?;
    Some(format!("{}/blob/{revision}/{file}#L{line}", repo_web?))
}

pub(super) fn cluster_json(snap: &Snapshot, name: &str) -> Value {
    let (cp, w) = snap.cluster(name).unwrap_or_default();
    json!({ "name": name, "control_plane": cp.iter().map(|m| &m.name).collect::<Vec<_>>(), "workers": w.iter().map(|m| &m.name).collect::<Vec<_>>() })
}

pub(super) async fn clusters(State(w): State<Web>, q: Params) -> Response {
    let Some(snap) = w.store.snapshot() else {
        return not_loaded();
    };
    if wants_json(&q) {
        return json_response(
            json!({ "clusters": snap.cluster_names().map(|c| cluster_json(&snap, c)).collect::<Vec<_>>() }),
        );
    }
    let disc = w.store.discovery();
    let state_of = |m: &Machine| {
        disc.hosts
            .iter()
            .find(|h| h.machine == m.name)
            .map_or("not seen", |h| state_name(h.state))
    };
    page(
        "Clusters",
        "Clusters",
        html! {
            h1 { "Clusters" }
            @for c in snap.cluster_names() {
                @if let Some((cp, wk)) = snap.cluster(c) {
                    section class="cluster" {
                        h2 { (c) }
                        table {
                            thead { tr { th { "node" } th { "role" } th { "address" } th { "seen as" } } }
                            tbody {
                                @for m in cp.iter().chain(wk.iter()) {
                                    @let role = match &m.r#use { Some(crate::proto::machine::Use::Cluster(u)) => role_name(u.role), _ => "" };
                                    tr {
                                        td { a href=(format!("/machines/{}", m.name)) { (m.name) } }
                                        td { (role) }
                                        td { (m.ips.join(", ")) }
                                        td class=(format!("state {}", state_of(m).replace(' ', "-"))) { (state_of(m)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

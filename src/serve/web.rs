//! The read-only web page of the lab: overview, machines (filter, search,
//! sort), one machine, clusters, discovered hosts. Server-rendered with
//! maud (compile-time checked, everything escaped), no forms that write,
//! works without JavaScript; `/static/app.js` only swaps in fresh content
//! when `/events` (server-sent events fed by the same changes as `Watch`)
//! says something changed. Every page has a JSON twin (`?format=json`) and
//! a strict Content-Security-Policy with no inline script or style.

use std::{collections::HashMap, sync::Arc};

use axum::{
    extract::{Path, Query, State},
    http::{header, HeaderValue, StatusCode},
    response::{
        sse::{Event, KeepAlive, Sse},
        IntoResponse, Response,
    },
    routing::get,
    Router,
};
use futures::StreamExt;
use maud::{html, Markup, DOCTYPE};
use serde_json::{json, Value};

use crate::{
    db::{
        store::ago,
        words::{presence_name, provisioner_name, role_name, state_name, USE_NAMES},
        Snapshot, Store,
    },
    export::view::{history_json, host_json, machine_json, use_detail},
    proto::{DiscoveredHost, HostState, Machine},
};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
const APP_JS: &str = include_str!("web/app.js");
const STYLE_CSS: &str = include_str!("web/style.css");
const ICON_SVG: &str = include_str!("web/icon.svg");

#[derive(Clone)]
pub struct Web {
    store: Arc<Store>,
    /// `https://github.com/OWNER/REPO` when the DB repository is on GitHub.
    repo_web: Option<String>,
    /// The provisioning runner to ask for statuses, if one is configured.
    runner: Option<String>,
}

/// The GitHub web address of a DB repository URL, if it is a GitHub one.
pub fn github_web(url: &str) -> Option<String> {
    let rest = url.strip_prefix("https://github.com/")?;
    let rest = rest.trim_end_matches('/').trim_end_matches(".git");
    let mut parts = rest.split('/');
    let (owner, repo) = (parts.next()?, parts.next()?);
    if owner.is_empty() || repo.is_empty() || parts.next().is_some() {
        return None;
    }
    Some(format!("https://github.com/{owner}/{repo}"))
}

pub fn router(store: Arc<Store>, repo_url: &str, runner: Option<String>) -> Router {
    Router::new()
        .route("/", get(overview))
        .route("/machines", get(machines))
        .route("/machines/{name}", get(machine))
        .route("/clusters", get(clusters))
        .route("/discovered", get(discovered))
        .route("/discovered/{key}", get(discovered_host))
        .route("/events", get(events))
        .route(
            "/static/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/static/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
        .route(
            "/static/icon.svg",
            get(|| async { asset("image/svg+xml", ICON_SVG) }),
        )
        .route(
            "/favicon.ico",
            get(|| async { asset("image/svg+xml", ICON_SVG) }),
        )
        .with_state(Web {
            store,
            repo_web: github_web(repo_url),
            runner,
        })
}

type Params = Query<HashMap<String, String>>;

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}

fn wants_json(q: &HashMap<String, String>) -> bool {
    q.get("format").is_some_and(|f| f == "json")
}

fn json_response(v: Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

/// A whole page: the navigation, `main`, and the security headers.
fn page(title: &str, active: &str, main: Markup) -> Response {
    let nav = [
        ("/", "Overview"),
        ("/machines", "Machines"),
        ("/clusters", "Clusters"),
        ("/discovered", "Discovered"),
    ];
    let doc = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · mdb" }
                link rel="stylesheet" href="/static/style.css";
                link rel="icon" href="/static/icon.svg" type="image/svg+xml";
                script src="/static/app.js" defer {}
            }
            body {
                header {
                    strong { "mdb" }
                    nav {
                        @for (href, label) in nav {
                            @if label == active { a href=(href) aria-current="page" { (label) } } @else { a href=(href) { (label) } }
                        }
                    }
                }
                main id="main" { (main) }
            }
        }
    };
    let mut r = doc.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    r
}

fn not_loaded() -> Response {
    let mut r = page(
        "Not loaded",
        "",
        html! { p { "No database revision is loaded yet." } },
    );
    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    r
}

const PROBLEMS: &[HostState] = &[
    HostState::New,
    HostState::Unprovisionable,
    HostState::Missing,
    HostState::Conflict,
];

async fn overview(State(w): State<Web>, q: Params) -> Response {
    let Some(snap) = w.store.snapshot() else {
        return not_loaded();
    };
    let status = w.store.status();
    let disc = w.store.discovery();
    let by_use = snap.count_by_use();
    let mut by_state: HashMap<&str, usize> = HashMap::new();
    for h in &disc.hosts {
        *by_state.entry(state_name(h.state)).or_default() += 1;
    }
    let problems: Vec<&DiscoveredHost> = disc
        .hosts
        .iter()
        .filter(|h| PROBLEMS.iter().any(|p| *p as i32 == h.state))
        .collect();
    if wants_json(&q) {
        return json_response(json!({
            "revision": snap.revision, "machines": snap.machines.len(), "by_use": by_use,
            "clusters": snap.cluster_names().map(|c| cluster_json(&snap, c)).collect::<Vec<_>>(),
            "last_sync_unix": status.last_success_unix, "last_sync_error": status.last_error,
            "last_sweep_unix": disc.last_sweep_unix, "hosts_by_state": by_state,
            "problems": problems.iter().map(|h| host_json(h)).collect::<Vec<_>>(),
        }));
    }
    let max = by_use.values().copied().max().unwrap_or(1).max(1);
    page(
        "Overview",
        "Overview",
        html! {
            h1 { "The lab at a glance" }
            @if !problems.is_empty() {
                section class="problems" {
                    h2 { "Problems (" (problems.len()) ")" }
                    (hosts_table(&problems))
                }
            }
            section class="cards" {
                div class="card" { h2 { "Machines" } p class="big" { (snap.machines.len()) } }
                div class="card" {
                    h2 { "Database" }
                    p { "revision " code { (short(&snap.revision)) } }
                    p { "synced " (ago(status.last_success_unix)) }
                    @if !status.last_error.is_empty() { p class="error" { "last error: " (status.last_error) } }
                }
                div class="card" {
                    h2 { "Last sweep" }
                    p { (ago(disc.last_sweep_unix)) }
                    @for (state, n) in sorted(&by_state) { p { (state) ": " (n) } }
                }
            }
            section {
                h2 { "Machines per use" }
                svg class="bars" viewBox=(format!("0 0 400 {}", 24 * USE_NAMES.len())) role="img" aria-label="machines per use" {
                    @for (i, u) in USE_NAMES.iter().enumerate() {
                        @let n = by_use.get(u).copied().unwrap_or(0);
                        text x="0" y=(i * 24 + 16) { (u) }
                        rect x="110" y=(i * 24 + 4) height="16" width=(n * 240 / max) {}
                        text x=(115 + n * 240 / max) y=(i * 24 + 16) { (n) }
                    }
                }
            }
            section {
                h2 { "Clusters" }
                table {
                    thead { tr { th { "cluster" } th { "control plane" } th { "workers" } } }
                    tbody {
                        @for c in snap.cluster_names() {
                            @if let Some((cp, wk)) = snap.cluster(c) {
                                tr { td { a href="/clusters" { (c) } } td { (cp.len()) } td { (wk.len()) } }
                            }
                        }
                    }
                }
            }
        },
    )
}

fn sorted<'a>(m: &HashMap<&'a str, usize>) -> Vec<(&'a str, usize)> {
    let mut v: Vec<(&str, usize)> = m.iter().map(|(k, v)| (*k, *v)).collect();
    v.sort();
    v
}

fn short(rev: &str) -> &str {
    rev.get(..12).unwrap_or(rev)
}

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

async fn machines(State(w): State<Web>, q: Params) -> Response {
    let Some(snap) = w.store.snapshot() else {
        return not_loaded();
    };
    let list = filter_machines(&snap, &q);
    if wants_json(&q) {
        return json_response(
            json!({ "revision": snap.revision, "machines": list.iter().map(|m| machine_json(m)).collect::<Vec<_>>() }),
        );
    }
    page("Machines", "Machines", machines_body(&snap, &list, &q))
}

/// The machines page's content (also what the benchmark renders).
pub fn machines_body(snap: &Snapshot, list: &[&Machine], q: &HashMap<String, String>) -> Markup {
    let val = |k: &str| q.get(k).cloned().unwrap_or_default();
    let link = |sort: &str| {
        let mut p: Vec<(String, String)> = q
            .iter()
            .filter(|(k, _)| *k != "sort")
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
        table id="machines" {
            thead { tr {
                th { a href=(link("name")) { "name" } }
                th { a href=(link("ip")) { "IP" } }
                th { "MAC" }
                th { a href=(link("use")) { "use" } }
                th { "provisioner" }
            } }
            tbody {
                @for m in list {
                    tr {
                        td { a href=(format!("/machines/{}", m.name)) { (m.name) } }
                        td { (m.ips.join(", ")) }
                        td { code { (m.mac) } }
                        td { (use_detail(m)) }
                        td { (provisioner_name(m)) }
                    }
                }
            }
        }
    }
}

/// Percent-encodes a query value (only what a query needs).
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn machine(State(w): State<Web>, Path(name): Path<String>, q: Params) -> Response {
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
        return json_response(
            json!({ "machine": machine_json(m), "discovered": seen.iter().map(|h| host_json(h)).collect::<Vec<_>>() }),
        );
    }
    let provisioning = provision_status(w.runner.as_deref(), &m.name).await;
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
                dt { "addresses" } dd { (m.ips.join(", ")) }
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

/// A machine's provisioning status from the runner: result, applied
/// revision, reason. Bounded: the page never waits long for it.
async fn provision_status(runner: Option<&str>, name: &str) -> Option<(String, String, String)> {
    use crate::proto::{provisioning_client::ProvisioningClient, ListProvisionStatusRequest};
    let addr = runner?;
    let ask = async {
        let channel = crate::dial::channel(addr, None).await.ok()?.ok()?;
        let mut c = ProvisioningClient::new(channel);
        let list = c
            .list_status(ListProvisionStatusRequest {})
            .await
            .ok()?
            .into_inner();
        list.statuses
            .into_iter()
            .find(|s| !s.cluster && s.target == name)
    };
    let s = tokio::time::timeout(std::time::Duration::from_secs(1), ask)
        .await
        .ok()??;
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

fn cluster_json(snap: &Snapshot, name: &str) -> Value {
    let (cp, w) = snap.cluster(name).unwrap_or_default();
    json!({ "name": name, "control_plane": cp.iter().map(|m| &m.name).collect::<Vec<_>>(), "workers": w.iter().map(|m| &m.name).collect::<Vec<_>>() })
}

async fn clusters(State(w): State<Web>, q: Params) -> Response {
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

fn hosts_table(hosts: &[&DiscoveredHost]) -> Markup {
    html! {
        table class="hosts" {
            thead { tr { th { "state" } th { "IP" } th { "MAC" } th { "vendor" } th { "machine" } th { "presence" } th { "first seen" } th { "last seen" } th { "up 24 h" } th { "up 7 d" } th { "why" } } }
            tbody {
                @for h in hosts {
                    tr {
                        td class=(format!("state {}", state_name(h.state))) { (state_name(h.state)) }
                        td { @if h.key.is_empty() { (h.ip) } @else { a href=(format!("/discovered/{}", path_segment(&h.key))) { (h.ip) } } }
                        td { code { (h.mac) } }
                        td { (h.vendor) }
                        td { @if !h.machine.is_empty() { a href=(format!("/machines/{}", h.machine)) { (h.machine) } } }
                        td class=(format!("presence {}", presence_name(h.presence))) { (presence_name(h.presence)) " " small { (ago(h.state_since_unix)) } }
                        td { (ago(h.first_seen_unix)) }
                        td { (ago(h.last_seen_unix)) }
                        td { (format!("{:.0}%", h.uptime_24h * 100.0)) }
                        td { (format!("{:.0}%", h.uptime_7d * 100.0)) }
                        td { (h.detail) }
                    }
                }
            }
        }
    }
}

/// A key as one URL path segment: a name a host announces may hold `/`,
/// `?` or markup.
fn path_segment(key: &str) -> String {
    key.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A 404 page in `section`: "No machine `x`".
fn not_found(section: &str, what: &str, key: &str) -> Response {
    let mut r = page(
        "Not found",
        section,
        html! { h1 { (what) " " code { (key) } } },
    );
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}

/// One host's history: addresses it used and its presence transitions.
async fn discovered_host(State(w): State<Web>, Path(key): Path<String>, q: Params) -> Response {
    let disc = w.store.discovery();
    let Some(r) = crate::serve::api::find_host(&disc, &key).ok() else {
        return not_found("Discovered", "No discovered host", &key);
    };
    let h = r.host.clone().unwrap_or_default();
    if wants_json(&q) {
        return json_response(history_json(r));
    }
    let time = crate::github::entry::time;
    page(
        &h.ip,
        "Discovered",
        html! {
            h1 { (h.ip) " " small { (h.key) } }
            @if disc.stale { p class="stale" { "Stale: this server cannot reach its scanner." } }
            (hosts_table(&[&h]))
            h2 { "Addresses used" }
            table {
                thead { tr { th { "IP" } th { "MAC" } th { "first seen" } th { "last seen" } } }
                tbody { @for a in &r.addresses { tr { td { (a.ip) } td { code { (a.mac) } } td { (time(a.first_seen_unix)) } td { (time(a.last_seen_unix)) } } } }
            }
            h2 { "Up and down" }
            table {
                thead { tr { th { "at" } th { "went" } th { "IP" } } }
                tbody { @for t in r.transitions.iter().rev() { tr { td { (time(t.at_unix)) } td class=(format!("presence {}", presence_name(t.presence))) { (presence_name(t.presence)) } td { (t.ip) } } } }
            }
        },
    )
}

async fn discovered(State(w): State<Web>, q: Params) -> Response {
    let disc = w.store.discovery();
    let state = q.get("state").cloned().unwrap_or_default();
    let hosts: Vec<&DiscoveredHost> = disc
        .hosts
        .iter()
        .filter(|h| state.is_empty() || state_name(h.state) == state)
        .collect();
    if wants_json(&q) {
        return json_response(
            json!({ "last_sweep_unix": disc.last_sweep_unix, "stale": disc.stale, "source": disc.source.to_string(), "hosts": hosts.iter().map(|h| host_json(h)).collect::<Vec<_>>() }),
        );
    }
    let issues = w
        .repo_web
        .as_ref()
        .map(|r| format!("{r}/issues?q=is%3Aissue+label%3Amdb"));
    page(
        "Discovered",
        "Discovered",
        html! {
            h1 { "Discovered hosts" }
            @if disc.stale { p class="stale" { "Stale: this server cannot reach its scanner; the state below is of " (ago(disc.last_sweep_unix)) "." } }
            p { "Last sweep " (ago(disc.last_sweep_unix)) "." @if let Some(url) = &issues { " " a href=(url) { "Issues mdb filed" } } }
            (hosts_table(&hosts))
        },
    )
}

/// Server-sent events: one `change` per new revision or discovery change.
async fn events(State(w): State<Web>) -> impl IntoResponse {
    let rx = w.store.subscribe();
    let stream = tokio_stream::wrappers::BroadcastStream::new(rx).filter_map(|ev| async move {
        let revision = match ev {
            Ok(e) => e.revision.clone(),
            Err(_) => String::new(),
        };
        Some(Ok::<_, std::convert::Infallible>(
            Event::default().event("change").data(revision),
        ))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_urls_become_web_links() {
        assert_eq!(
            github_web("https://github.com/you/lab-db.git").as_deref(),
            Some("https://github.com/you/lab-db")
        );
        assert_eq!(github_web("file:///tmp/db.git"), None);
        assert_eq!(
            source_link(
                Some("https://github.com/you/lab-db"),
                "abc",
                "machines/a.yaml:12"
            )
            .as_deref(),
            Some("https://github.com/you/lab-db/blob/abc/machines/a.yaml#L12")
        );
    }

    #[test]
    fn a_note_with_markup_is_escaped() {
        let snap = crate::db::validate(
            &[crate::db::SourceFile {
                path: "machines/x.yaml".into(),
                text: "machines:\n  - name: x\n    ip: 198.18.0.5\n    use: games\n    notes: \"<script>alert(1)</script>\"\n".into(),
            }],
            "r",
        )
        .unwrap();
        let list: Vec<&Machine> = snap.machines.iter().collect();
        let html = machines_body(&snap, &list, &HashMap::new()).into_string();
        assert!(!html.contains("<script>"), "{html}");
    }
}

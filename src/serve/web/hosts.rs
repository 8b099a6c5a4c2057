//! The pages of what the sweeps found: the overview `/`, `/discovered`
//! and `/discovered/KEY`.

use super::*;
use crate::db::words::{HOST_STATES, PRESENCES};
use machines::cluster_json;
use paging::Paging;

const PROBLEMS: &[HostState] = &[
    HostState::New,
    HostState::Unprovisionable,
    HostState::Missing,
    HostState::Conflict,
];

pub(super) async fn overview(State(w): State<Web>, q: Params) -> Response {
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

pub(super) fn short(rev: &str) -> &str {
    rev.get(..12).unwrap_or(rev)
}

pub(super) fn hosts_table(hosts: &[&DiscoveredHost]) -> Markup {
    html! {
        table class="hosts" {
            thead { tr { th { "state" } th { "IP" } th { "MAC" } th { "vendor" } th { "names" } th { "machine" } th { "presence" } th { "first seen" } th { "last seen" } th { "up 24 h" } th { "up 7 d" } th { "why" } } }
            tbody {
                @for h in hosts {
                    tr {
                        td class=(format!("state {}", state_name(h.state))) { (state_name(h.state)) }
                        td {
                            @if h.key.is_empty() { (h.ip) } @else { a href=(format!("/discovered/{}", path_segment(&h.key))) { (h.ip) } }
                            @for a in h.ipv6_addresses.iter().filter(|a| a.ip != h.ip) {
                                br; small class=(format!("ipv6 {}", a.kind)) { (a.ip) " (" (a.kind) ")" }
                            }
                            @if !h.source.is_empty() {
                                br; small class="seen-on" { (crate::export::view::seen_on(h)) }
                            }
                            @if let Some(p) = &h.switch_port {
                                br; small class="switch-port" { (crate::export::view::port_words(p)) }
                            }
                        }
                        td { code { (h.mac) } }
                        td { (h.vendor) }
                        td { (crate::export::names::described(h, crate::db::words::DEFAULT_NAME_ORDER)) }
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

/// One host's history: addresses it used and its presence transitions.
pub(super) async fn discovered_host(
    State(w): State<Web>,
    Path(key): Path<String>,
    q: Params,
) -> Response {
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

/// The hosts a `/discovered` request's filters and search keep, over every
/// page: `state`, `presence`, and `q` in the IP, MAC, vendor, name, machine
/// or key.
pub fn filter_hosts<'a>(
    hosts: &'a [DiscoveredHost],
    q: &HashMap<String, String>,
) -> Vec<&'a DiscoveredHost> {
    let get = |k: &str| q.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());
    let search = get("q").map(str::to_lowercase);
    hosts
        .iter()
        .filter(|h| get("state").is_none_or(|s| state_name(h.state) == s))
        .filter(|h| get("presence").is_none_or(|p| presence_name(h.presence) == p))
        .filter(|h| {
            search.as_deref().is_none_or(|s| {
                [&h.ip, &h.mac, &h.dns_name, &h.machine, &h.key]
                    .iter()
                    .any(|f| f.to_lowercase().contains(s))
                    || h.vendor.to_lowercase().contains(s)
                    || h.names.iter().any(|n| n.name.to_lowercase().contains(s))
            })
        })
        .collect()
}

/// The list part of `/discovered` (also what the benchmark renders): the
/// filters, the page links and one page of the hosts `q` keeps.
pub fn discovered_list(all: &[DiscoveredHost], q: &HashMap<String, String>) -> Markup {
    let hosts = filter_hosts(all, q);
    let paging = Paging::of(q, hosts.len());
    html! {
        (hosts_filters(q))
        (paging.nav("/discovered", q, "hosts"))
        (hosts_table(paging.slice(&hosts)))
    }
}

pub(super) async fn discovered(State(w): State<Web>, q: Params) -> Response {
    let disc = w.store.discovery();
    if wants_json(&q) {
        let hosts = filter_hosts(&disc.hosts, &q);
        let paging = Paging::of(&q, hosts.len());
        let shown = paging.slice(&hosts);
        return json_response(json!({
            "last_sweep_unix": disc.last_sweep_unix, "stale": disc.stale,
            "source": disc.source.to_string(),
            "paging": paging.json("/discovered", &q),
            "hosts": shown.iter().map(|h| host_json(h)).collect::<Vec<_>>(),
        }));
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
            (discovered_list(&disc.hosts, &q))
        },
    )
}

fn hosts_filters(q: &HashMap<String, String>) -> Markup {
    let val = |k: &str| q.get(k).cloned().unwrap_or_default();
    html! {
        form method="get" action="/discovered" class="filters" {
            label { "search " input type="search" name="q" value=(val("q")) placeholder="IP, MAC, vendor or name"; }
            label { "state "
                select name="state" {
                    option value="" { "any" }
                    @for (word, _) in HOST_STATES { option value=(word) selected[val("state") == *word] { (word) } }
                }
            }
            label { "presence "
                select name="presence" {
                    option value="" { "any" }
                    @for (word, _) in PRESENCES { option value=(word) selected[val("presence") == *word] { (word) } }
                }
            }
            input type="hidden" name="per_page" value=(Paging::of(q, 0).per_page);
            button type="submit" { "Filter" }
        }
    }
}

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

mod hosts;
mod machines;
mod paging;

use hosts::{discovered, discovered_host, overview};
pub use hosts::{discovered_list, filter_hosts};
use machines::{clusters, machine, machines};
pub use machines::{filter_machines, machines_body, source_link, Around};
pub use paging::Paging;

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
    runner: Option<crate::dial::Remote>,
    /// A place per open `/events` stream.
    event_streams: Arc<tokio::sync::Semaphore>,
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

/// Event streams (`/events`) open at most: each holds a connection, so the
/// rest of the port's connections stay for pages, probes and scrapes.
pub const MAX_EVENT_STREAMS: usize = 64;

pub fn router(store: Arc<Store>, repo_url: &str, runner: Option<crate::dial::Remote>) -> Router {
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
            event_streams: Arc::new(tokio::sync::Semaphore::new(MAX_EVENT_STREAMS)),
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
                    @if let Some(user) = crate::auth::web::signed_in() {
                        span class="user" { "signed in as " strong { (user) } }
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

/// Server-sent events: one `change` per new revision or discovery change.
/// One past [`MAX_EVENT_STREAMS`] is told to come back later.
async fn events(State(w): State<Web>) -> Response {
    let Ok(place) = w.event_streams.clone().try_acquire_owned() else {
        let mut r = (StatusCode::SERVICE_UNAVAILABLE, "too many event streams\n").into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
        return r;
    };
    let rx = w.store.subscribe();
    let stream = tokio_stream::wrappers::BroadcastStream::new(rx).filter_map(move |ev| {
        let _place = &place;
        let ev = ev.map(|e| e.revision.clone());
        async move {
            let revision = ev.unwrap_or_default();
            Some(Ok::<_, std::convert::Infallible>(
                Event::default().event("change").data(revision),
            ))
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
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
        let html = machines_body(&snap, &list, &HashMap::new(), &Around::default()).into_string();
        assert!(!html.contains("<script>"), "{html}");
    }
}

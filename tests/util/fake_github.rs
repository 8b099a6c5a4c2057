//! A small fake of GitHub's REST API for issues and pull requests, on a
//! real HTTP socket. Pull requests share the issues' numbers, as on GitHub;
//! with a bare repository attached, a pull request's head must be a real
//! branch there, and deleting a branch deletes it there.
//! It records every request and holds requests to GitHub's real shapes
//! (auth header, user agent, API version, JSON bodies with only the fields
//! GitHub knows, query parameters GitHub accepts), answering 401/404/422 as
//! GitHub would, so it cannot drift into accepting what GitHub rejects.
#![allow(dead_code)]

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    body::Bytes,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    Router,
};
use serde_json::{json, Value};

mod issues;
mod pulls;
use issues::issues_route;
use pulls::{delete_ref, pulls_route};

pub const OWNER: &str = "lab";
pub const REPO: &str = "machines";
pub const TOKEN: &str = "ghp_fakeTestToken0123456789abcdef";
/// The login the token belongs to: what mdb creates is authored by it.
pub const LOGIN: &str = "mdb-bot";

#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
    pub status: u16,
    /// When the whole request had arrived.
    pub at: std::time::Instant,
}

#[derive(Clone, Debug)]
pub struct Issue {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub state: String,
    pub labels: Vec<String>,
    pub assignees: Vec<String>,
    pub comments: Vec<String>,
    /// Set for a pull request.
    pub pull: Option<PullInfo>,
    /// Who opened it: [`LOGIN`] for what the token created.
    pub author: String,
}

#[derive(Clone, Debug, Default)]
pub struct PullInfo {
    pub head: String,
    /// `owner/name` of the repository the head branch lives in (a fork's
    /// for a pull request from a fork); the DB repository when empty.
    pub head_repo: String,
    pub base: String,
    pub merged: bool,
    pub reviewers: Vec<String>,
}

/// A canned failure for the next matching request. With `apply`, the
/// request is carried out before the failure is returned (a lost answer).
#[derive(Clone, Debug)]
pub struct Fault {
    pub method: Option<&'static str>,
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub apply: bool,
}

#[derive(Default)]
pub struct State {
    pub issues: Vec<Issue>,
    pub requests: Vec<Request>,
    pub faults: VecDeque<Fault>,
    /// Requests that match no GitHub route or break its rules.
    pub rejected: Vec<String>,
    /// The bare repository branches live in, when attached.
    pub git: Option<std::path::PathBuf>,
}

#[derive(Clone)]
pub struct FakeGithub {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
}

impl FakeGithub {
    /// Serves on `listener` from the current tokio runtime.
    pub fn start(listener: std::net::TcpListener) -> FakeGithub {
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State::default()));
        let s = state.clone();
        let app = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let s = s.clone();
                async move { handle(&s, method, uri, headers, body) }
            },
        );
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeGithub { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn issues(&self) -> Vec<Issue> {
        self.state.lock().expect("lock").issues.clone()
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().expect("lock").requests.clone()
    }

    pub fn rejected(&self) -> Vec<String> {
        self.state.lock().expect("lock").rejected.clone()
    }

    pub fn fail_next(&self, f: Fault) {
        self.state.lock().expect("lock").faults.push_back(f);
    }

    /// Branches of pull requests must exist in this bare repository.
    pub fn attach_git(&self, bare: &std::path::Path) {
        self.state.lock().expect("lock").git = Some(bare.to_path_buf());
    }

    /// Only the pull requests.
    pub fn pulls(&self) -> Vec<Issue> {
        self.issues()
            .into_iter()
            .filter(|i| i.pull.is_some())
            .collect()
    }

    /// Only the issues that are not pull requests.
    pub fn plain_issues(&self) -> Vec<Issue> {
        self.issues()
            .into_iter()
            .filter(|i| i.pull.is_none())
            .collect()
    }

    /// Marks a pull request merged (the test merges the branch itself).
    pub fn mark_merged(&self, number: u64) {
        let mut s = self.state.lock().expect("lock");
        if let Some(i) = s.issues.iter_mut().find(|i| i.number == number) {
            i.state = "closed".into();
            if let Some(p) = i.pull.as_mut() {
                p.merged = true;
            }
        }
    }

    /// Adds an item someone else opened (a stranger, or a fork's pull
    /// request); its number is the next one. Returns the number.
    pub fn add_foreign(&self, mut item: Issue) -> u64 {
        let mut s = self.state.lock().expect("lock");
        item.number = s.issues.len() as u64 + 1;
        let n = item.number;
        s.issues.push(item);
        n
    }

    /// POSTs that create an item: `what` is "issues" or "pulls". Counts what
    /// mdb sent, whatever the fake answered.
    pub fn creates(&self, what: &str) -> usize {
        let path = format!("/repos/{OWNER}/{REPO}/{what}");
        self.requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path == path)
            .count()
    }

    /// Every request that touched item `number` other than by reading it.
    pub fn writes_to(&self, number: u64) -> Vec<Request> {
        let tail = format!("/{number}");
        let inner = format!("/{number}/");
        self.requests()
            .into_iter()
            .filter(|r| r.method != "GET")
            .filter(|r| r.path.ends_with(&tail) || r.path.contains(&inner))
            .collect()
    }

    /// Closes a pull request or issue without merging, as a person would.
    pub fn close(&self, number: u64) {
        let mut s = self.state.lock().expect("lock");
        if let Some(i) = s.issues.iter_mut().find(|i| i.number == number) {
            i.state = "closed".into();
        }
    }
}

fn error(status: StatusCode, message: &str) -> (StatusCode, Value) {
    (
        status,
        json!({ "message": message, "documentation_url": "https://docs.github.com/rest" }),
    )
}

fn issue_json(i: &Issue, base: &str) -> Value {
    let mut v = json!({
        "id": 1000 + i.number,
        "node_id": format!("I_{}", i.number),
        "number": i.number,
        "title": i.title,
        "body": i.body,
        "state": i.state,
        "labels": i.labels.iter().map(|l| json!({"name": l})).collect::<Vec<_>>(),
        "assignees": i.assignees.iter().map(|a| json!({"login": a})).collect::<Vec<_>>(),
        "comments": i.comments.len(),
        "url": format!("{base}/repos/{OWNER}/{REPO}/issues/{}", i.number),
        "html_url": format!("https://github.com/{OWNER}/{REPO}/issues/{}", i.number),
        "user": {"login": i.author},
        "created_at": "2026-11-26T00:00:00Z",
        "updated_at": "2026-11-26T00:00:00Z",
    });
    if i.pull.is_some() {
        v["pull_request"] =
            json!({ "url": format!("{base}/repos/{OWNER}/{REPO}/pulls/{}", i.number) });
    }
    v
}

/// Checks that `body` is an object with only `allowed` keys.
fn only(body: &Value, allowed: &[&str]) -> Result<(), String> {
    let obj = body.as_object().ok_or("body is not a JSON object")?;
    for k in obj.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(format!("\"{k}\" is not a permitted key."));
        }
    }
    Ok(())
}

fn strings(v: &Value) -> Option<Vec<String>> {
    v.as_array()?
        .iter()
        .map(|x| x.as_str().map(String::from))
        .collect()
}

fn handle(
    state: &Mutex<State>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let at = std::time::Instant::now();
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("").to_string();
    let body: Value = if raw.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&raw).unwrap_or(json!("<invalid json>"))
    };
    let mut s = state.lock().expect("lock");
    let fault = match s.faults.front() {
        Some(f) if f.method.is_none_or(|m| m == method.as_str()) => s.faults.pop_front(),
        _ => None,
    };
    let (status, reply) = match &fault {
        Some(f) if !f.apply => (
            StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            json!({"message": "injected failure"}),
        ),
        _ => {
            let r = route(&mut s, &method, &path, &query, &headers, &body, &raw);
            match &fault {
                Some(f) => (
                    StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    json!({"message": "injected failure after applying"}),
                ),
                None => r,
            }
        }
    };
    if matches!(status.as_u16(), 400 | 401 | 404 | 415 | 422) && fault.is_none() {
        s.rejected
            .push(format!("{method} {path}?{query} -> {status}: {reply}"));
    }
    s.requests.push(Request {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: body.clone(),
        status: status.as_u16(),
        at,
    });
    let mut response = (
        status,
        [("content-type", "application/json; charset=utf-8")],
        reply.to_string(),
    )
        .into_response();
    if let Some(f) = fault {
        for (k, v) in f.headers {
            if let (Ok(name), Ok(value)) = (
                axum::http::HeaderName::from_bytes(k.as_bytes()),
                axum::http::HeaderValue::from_str(&v),
            ) {
                response.headers_mut().insert(name, value);
            }
        }
    }
    response
}

/// The issue a path segment names, if it exists.
fn issue_mut<'a>(s: &'a mut State, number: &str) -> Option<&'a mut Issue> {
    let n: u64 = number.parse().ok()?;
    s.issues.iter_mut().find(|i| i.number == n)
}

fn route(
    s: &mut State,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &Value,
    raw: &Bytes,
) -> (StatusCode, Value) {
    let header = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
    // GitHub rejects requests without a User-Agent.
    if header("user-agent").is_empty() {
        return error(StatusCode::FORBIDDEN, "Request forbidden by administrative rules. Please make sure your request has a User-Agent header");
    }
    let auth = header("authorization");
    if auth != format!("Bearer {TOKEN}") && auth != format!("token {TOKEN}") {
        return error(StatusCode::UNAUTHORIZED, "Bad credentials");
    }
    let version = header("x-github-api-version");
    if !version.is_empty() && version != "2022-11-28" && version != "2026-03-10" {
        return error(StatusCode::BAD_REQUEST, "Unsupported API version");
    }
    if matches!(*method, Method::POST | Method::PATCH) {
        if !header("content-type").starts_with("application/json") {
            return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Unsupported Media Type");
        }
        if serde_json::from_slice::<Value>(raw).is_err() {
            return error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
        }
    }
    if path == "/user" && *method == Method::GET {
        return (
            StatusCode::OK,
            json!({"login": LOGIN, "id": 4242, "type": "Bot", "site_admin": false}),
        );
    }
    let prefix = format!("/repos/{OWNER}/{REPO}/");
    if let Some(rest) = path.strip_prefix(&format!("{prefix}pulls")) {
        return pulls_route(s, method, rest, query, body);
    }
    if let Some(branch) = path.strip_prefix(&format!("{prefix}git/refs/heads/")) {
        return delete_ref(s, method, branch);
    }
    let Some(rest) = path.strip_prefix(&format!("{prefix}issues")) else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    issues_route(s, method, rest, query, body)
}

/// Query parameters of a list, checked as GitHub checks them.
struct ListQuery {
    state: String,
    per_page: usize,
    page: usize,
    asc: bool,
}

impl ListQuery {
    /// One page of `items`, newest first unless `direction=asc`.
    fn page<'a>(
        &self,
        items: impl Iterator<Item = &'a Issue>,
        json: impl Fn(&Issue) -> Value,
    ) -> Value {
        let mut list: Vec<&Issue> = items.collect();
        if !self.asc {
            list.reverse();
        }
        Value::Array(
            list.into_iter()
                .skip((self.page - 1) * self.per_page)
                .take(self.per_page)
                .map(json)
                .collect(),
        )
    }
}

fn list_query(
    query: &str,
    sorts: &[&str],
    allowed: &[&str],
) -> Result<ListQuery, (StatusCode, Value)> {
    let mut q = ListQuery {
        state: "open".into(),
        per_page: 30,
        page: 1,
        asc: false,
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "state" if matches!(v, "open" | "closed" | "all") => q.state = v.into(),
            "per_page" => match v.parse::<usize>() {
                Ok(n) if (1..=100).contains(&n) => q.per_page = n,
                _ => {
                    return Err(error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "per_page must be 1..100",
                    ))
                }
            },
            "page" => q.page = v.parse().unwrap_or(1).max(1),
            "direction" if matches!(v, "asc" | "desc") => q.asc = v == "asc",
            "sort" if sorts.contains(&v) => {}
            k if allowed.contains(&k) => {}
            _ => {
                return Err(error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &format!("Validation Failed: {k}={v}"),
                ))
            }
        }
    }
    Ok(q)
}

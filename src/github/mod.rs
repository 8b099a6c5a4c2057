//! GitHub issues for hosts that need a person: what an issue says and how
//! it is recognised again. The fingerprint marker in the body is what makes
//! filing idempotent across restarts; local memory is only a cache.

use crate::{
    net::Mac,
    proto::{DiscoveredHost, HostState},
};

/// Whether a host in this state gets an issue.
pub fn files_issue(h: &DiscoveredHost) -> bool {
    matches!(
        HostState::try_from(h.state),
        Ok(HostState::New | HostState::Conflict | HostState::Unprovisionable)
    )
}

/// The problem kind, as label and fingerprint spell it.
pub fn kind(h: &DiscoveredHost) -> &'static str {
    match HostState::try_from(h.state) {
        Ok(HostState::Unprovisionable) => "unprovisionable",
        Ok(HostState::Conflict) => "conflict",
        _ => "new-device",
    }
}

/// Stable identity of the problem: a machine's name for a machine that
/// cannot be provisioned, the address for a conflict, and for a new device
/// its MAC when that is not randomised, else its IP.
pub fn fingerprint(h: &DiscoveredHost) -> String {
    let who = match HostState::try_from(h.state) {
        Ok(HostState::Unprovisionable) if !h.machine.is_empty() => format!("machine={}", h.machine),
        Ok(HostState::Conflict) => format!("ip={}", h.ip),
        _ => match h.mac.parse::<Mac>().ok().filter(|m| !m.is_local()) {
            Some(m) => format!("mac={m}"),
            None => format!("ip={}", h.ip),
        },
    };
    format!("{}:{who}", kind(h))
}

/// The hidden marker that carries the fingerprint in an issue body.
pub fn marker(fingerprint: &str) -> String {
    format!("<!-- mdb-fingerprint: {fingerprint} -->")
}

/// Reads the fingerprint back out of an issue body.
pub fn fingerprint_in(body: &str) -> Option<&str> {
    let start = body.find("<!-- mdb-fingerprint: ")? + "<!-- mdb-fingerprint: ".len();
    let rest = &body[start..];
    Some(rest[..rest.find(" -->")?].trim())
}

pub fn title(h: &DiscoveredHost) -> String {
    let what = match (h.vendor.as_str(), h.mac.as_str()) {
        ("", "") => String::new(),
        ("", mac) => format!(" ({mac})"),
        (v, "") => format!(" ({v})"),
        (v, mac) => format!(" ({v}, {mac})"),
    };
    match HostState::try_from(h.state) {
        Ok(HostState::Unprovisionable) => format!("Cannot provision {} ({})", h.machine, h.ip),
        Ok(HostState::Conflict) => format!("Address conflict at {}{what}", h.ip),
        _ => format!("New device {}{what}", h.ip),
    }
}

/// Everything seen, and for a new device a ready-to-paste DB entry.
pub fn body(h: &DiscoveredHost, suggested_ip: Option<&str>) -> String {
    let ports: Vec<String> = h.open_ports.iter().map(|p| p.to_string()).collect();
    let time = |t: i64| {
        if t == 0 {
            "-".to_string()
        } else {
            format!("<t:{t}> (unix {t})")
        }
    };
    let mut b = String::new();
    b.push_str(&format!(
        "mdb's sweep found a host that needs attention: **{}**.\n\n",
        h.detail
    ));
    b.push_str("| field | value |\n| --- | --- |\n");
    for (k, v) in [
        ("IP", h.ip.clone()),
        ("MAC", h.mac.clone()),
        ("vendor", h.vendor.clone()),
        ("reverse DNS", h.dns_name.clone()),
        ("open ports", ports.join(", ")),
        ("SSH banner", h.ssh_banner.clone()),
        ("answered", h.seen_by.clone()),
        ("database machine", h.machine.clone()),
        (
            "guessed use",
            crate::db::kind_name(h.guessed_use).to_string(),
        ),
        ("first seen", time(h.first_seen_unix)),
        ("last seen", time(h.last_seen_unix)),
    ] {
        if !v.is_empty() {
            b.push_str(&format!(
                "| {k} | `{}` |\n",
                v.replace('|', "\\|").replace('`', "'")
            ));
        }
    }
    if h.mac_is_local {
        b.push_str("\nThe MAC is locally administered (often a randomised, private address), so this issue follows the IP.\n");
    }
    if HostState::try_from(h.state) == Ok(HostState::New) {
        b.push_str("\nTo record it, add this to a file under `machines/` in the DB repository:\n\n```yaml\n");
        b.push_str(&yaml_entry(h, suggested_ip));
        b.push_str("```\n");
    }
    b.push_str("\nmdb closes this issue by itself when the problem is resolved.\n\n");
    b.push_str(&marker(&fingerprint(h)));
    b.push_str(&format!("\n<!-- mdb-ip: {} -->\n", h.ip));
    b
}

/// The address an issue body last reported.
pub fn ip_in(body: &str) -> Option<&str> {
    let start = body.find("<!-- mdb-ip: ")? + "<!-- mdb-ip: ".len();
    let rest = &body[start..];
    Some(rest[..rest.find(" -->")?].trim())
}

/// A DB entry for a new host, with the guessed use.
pub fn yaml_entry(h: &DiscoveredHost, suggested_ip: Option<&str>) -> String {
    let name = h
        .dns_name
        .split('.')
        .next()
        .map(|n| n.to_ascii_lowercase())
        .filter(|n| crate::db::load::check_dns_label(n).is_ok())
        .unwrap_or_else(|| format!("host-{}", h.ip.replace(['.', ':'], "-")));
    let use_ = match crate::db::kind_name(h.guessed_use) {
        "cluster" => "\n      cluster: { name: CHANGE-ME, role: worker }".to_string(),
        "development" => " { development: server }".to_string(),
        "games" => " games".to_string(),
        "device" => format!(
            " {{ device: {} }}",
            if h.vendor.is_empty() {
                "unknown device".to_string()
            } else {
                h.vendor
                    .replace(['{', '}', ':', ','], " ")
                    .trim()
                    .to_string()
            }
        ),
        _ => " discover".to_string(),
    };
    let mut y = String::from("machines:\n");
    y.push_str(&format!("  - name: {name}\n"));
    y.push_str(&format!("    ip: {}\n", suggested_ip.unwrap_or(&h.ip)));
    if !h.mac.is_empty() && !h.mac_is_local {
        y.push_str(&format!("    mac: {}\n", h.mac));
    }
    y.push_str(&format!("    use:{use_}\n"));
    if let Some(ip) = suggested_ip.filter(|ip| *ip != h.ip) {
        y.push_str(&format!(
            "    notes: seen at {}; {ip} is the next free static address\n",
            h.ip
        ));
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_host() -> DiscoveredHost {
        DiscoveredHost {
            ip: "198.18.0.23".into(),
            mac: "dc:a6:32:00:00:23".into(),
            vendor: "Raspberry Pi Trading Ltd".into(),
            state: HostState::New as i32,
            guessed_use: crate::proto::UseKind::Cluster as i32,
            detail: "not in the database".into(),
            ..Default::default()
        }
    }

    #[test]
    fn body_carries_a_fingerprint_that_reads_back() {
        let h = new_host();
        let b = body(&h, None);
        assert_eq!(fingerprint_in(&b), Some("new-device:mac=dc:a6:32:00:00:23"));
        assert!(title(&h).starts_with("New device 198.18.0.23 (Raspberry Pi"));
    }

    #[test]
    fn yaml_entry_is_a_valid_database_file_once_named() {
        let h = new_host();
        let y = yaml_entry(&h, Some("198.18.0.40")).replace("CHANGE-ME", "alpha");
        let cp = "machines:\n  - name: cp\n    ip: 198.18.0.2\n    use: { cluster: { name: alpha, role: control-plane } }\n";
        let files = [
            crate::db::SourceFile {
                path: "machines/new.yaml".into(),
                text: y.clone(),
            },
            crate::db::SourceFile {
                path: "machines/cp.yaml".into(),
                text: cp.into(),
            },
        ];
        let snap = crate::db::validate(&files, "t").unwrap_or_else(|r| panic!("{r}\n{y}"));
        assert!(snap.by_ip("198.18.0.40".parse().unwrap()).is_some());
    }

    #[test]
    fn random_macs_are_fingerprinted_by_ip() {
        let mut h = new_host();
        h.mac = "da:a6:32:00:00:23".into();
        assert_eq!(fingerprint(&h), "new-device:ip=198.18.0.23");
    }
}

// === the filer ===

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    classify::expects_provisioning,
    db::{Snapshot, Store},
    discovery::SweepResult,
    metrics::Metrics,
    secret::Secret,
};

pub const DEFAULT_API_URL: &str = "https://api.github.com";
pub const DEFAULT_LABELS: &[&str] = &["mdb", "priority/high"];
pub const DEFAULT_MAX_NEW_PER_SWEEP: usize = 10;
/// GitHub asks for content-creating requests to be at least a second apart.
pub const DEFAULT_WRITE_GAP: Duration = Duration::from_secs(1);
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_secs(1);
/// The longest mdb waits for a rate limit before giving up until next sweep.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(15 * 60);
/// Secondary rate limits often come without headers; GitHub says wait a minute.
const RATE_LIMIT_FALLBACK: Duration = Duration::from_secs(60);
const MAX_ATTEMPTS: u32 = 5;
const MAX_PAGES: u32 = 50;

#[derive(Clone, Debug)]
pub struct Config {
    /// `owner/name` of the repository issues go to.
    pub repo: String,
    pub token: Secret,
    pub api_url: String,
    /// Added to every issue, with the problem kind.
    pub labels: Vec<String>,
    pub assignee: Option<String>,
    /// New issues per sweep at most; the rest wait for the next sweep.
    pub max_new_per_sweep: usize,
    pub write_gap: Duration,
    /// First backoff after a 5xx or a timeout; doubles per attempt.
    pub retry_base: Duration,
    pub max_wait: Duration,
    /// Connect and read timeout of one request.
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("GitHub client: {0}")]
    Client(String),
    #[error("GitHub request {what} failed: {message}")]
    Transient { what: String, message: String },
    #[error("GitHub answered {status} to {what}: {message}")]
    Status {
        what: String,
        status: u16,
        message: String,
    },
    #[error(
        "GitHub rate limit on {what}: would have to wait {wait:?}, more than the {max:?} allowed"
    )]
    RateLimited {
        what: String,
        wait: Duration,
        max: Duration,
    },
    #[error("issues are disabled in the repository")]
    Disabled,
    #[error("unexpected answer to {what}: {message}")]
    Decode { what: String, message: String },
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Client(_) => "client",
            Error::Transient { .. } => "transient",
            Error::Status { .. } => "status",
            Error::RateLimited { .. } => "rate_limited",
            Error::Disabled => "disabled",
            Error::Decode { .. } => "decode",
        }
    }
}

/// What mdb knows of one issue it filed.
#[derive(Clone, Debug, PartialEq)]
pub struct Known {
    pub number: u64,
    pub open: bool,
    /// The address the body last reported.
    pub ip: String,
}

/// One change to make on GitHub.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Create {
        fingerprint: String,
        host: DiscoveredHost,
    },
    /// The host is at another address now: comment and refresh the body.
    Update {
        number: u64,
        fingerprint: String,
        host: DiscoveredHost,
    },
    Reopen {
        number: u64,
        fingerprint: String,
        host: DiscoveredHost,
    },
    Close {
        number: u64,
        fingerprint: String,
        why: String,
    },
}

/// The operations that bring the issues in line with one sweep. Pure:
/// `known` is what the repository holds, `snap` the database now.
pub fn plan(
    hosts: &[DiscoveredHost],
    snap: &Snapshot,
    known: &HashMap<String, Known>,
    cap: usize,
) -> (Vec<Op>, usize) {
    let mut ops = Vec::new();
    let mut desired: Vec<(String, &DiscoveredHost)> = Vec::new();
    let mut seen_fp = HashSet::new();
    for h in hosts.iter().filter(|h| files_issue(h)) {
        let fp = fingerprint(h);
        if seen_fp.insert(fp.clone()) {
            desired.push((fp, h));
        }
    }
    let mut created = 0;
    let mut deferred = 0;
    for (fp, h) in &desired {
        match known.get(fp) {
            None if created < cap => {
                created += 1;
                ops.push(Op::Create {
                    fingerprint: fp.clone(),
                    host: (*h).clone(),
                });
            }
            None => deferred += 1,
            Some(k) if !k.open => ops.push(Op::Reopen {
                number: k.number,
                fingerprint: fp.clone(),
                host: (*h).clone(),
            }),
            Some(k) if k.ip != h.ip => ops.push(Op::Update {
                number: k.number,
                fingerprint: fp.clone(),
                host: (*h).clone(),
            }),
            Some(_) => {}
        }
    }
    let mut open: Vec<(&String, &Known)> = known
        .iter()
        .filter(|(fp, k)| k.open && !seen_fp.contains(*fp))
        .collect();
    open.sort_by_key(|(_, k)| k.number);
    for (fp, k) in open {
        if let Some(why) = resolution(fp, hosts, snap) {
            ops.push(Op::Close {
                number: k.number,
                fingerprint: fp.clone(),
                why,
            });
        }
    }
    (ops, deferred)
}

/// Why the problem behind an open issue is gone, if it is. A host that is
/// merely offline has not been resolved.
pub fn resolution(fp: &str, hosts: &[DiscoveredHost], snap: &Snapshot) -> Option<String> {
    let (kind, who) = fp.split_once(':')?;
    let (key, value) = who.split_once('=')?;
    let rev = &snap.revision;
    match (kind, key) {
        ("new-device", "mac") => {
            let m = snap.by_mac(value.parse().ok()?)?;
            Some(format!(
                "{value} is now in the database as `{}` (revision {rev}).",
                m.name
            ))
        }
        ("new-device", "ip") => {
            let m = snap.by_ip(value.parse().ok()?)?;
            Some(format!(
                "{value} is now in the database as `{}` (revision {rev}).",
                m.name
            ))
        }
        ("unprovisionable", "machine") => match snap.by_name(value) {
            None => Some(format!(
                "`{value}` is no longer in the database (revision {rev})."
            )),
            Some(m) if !expects_provisioning(m) => Some(format!(
                "`{value}` is no longer expected to be provisioned."
            )),
            Some(_) => hosts
                .iter()
                .find(|h| {
                    h.machine == value && HostState::try_from(h.state) == Ok(HostState::Known)
                })
                .map(|h| format!("SSH on `{value}` ({}) answers again.", h.ip)),
        },
        ("conflict", "ip") => {
            let ip: IpAddr = value.parse().ok()?;
            if snap.by_ip(ip).is_none() {
                return Some(format!(
                    "{value} is no longer any machine's address in the database."
                ));
            }
            hosts
                .iter()
                .find(|h| h.ip == value && HostState::try_from(h.state) != Ok(HostState::Conflict))
                .map(|h| format!("{value} answers as `{}` again.", h.machine))
        }
        _ => None,
    }
}

/// Files, updates and closes issues. Holds an octocrab client whose own
/// retries are off: mdb owns them, because a create whose answer was lost
/// must be looked for, not sent again.
pub struct Filer {
    gh: octocrab::Octocrab,
    cfg: Config,
    /// Fingerprint → issue, loaded from GitHub at the first pass.
    known: HashMap<String, Known>,
    loaded: bool,
    last_write: Option<Instant>,
    metrics: Arc<Metrics>,
}

/// The outcome of one reconcile pass, for logs and tests.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    pub created: usize,
    pub updated: usize,
    pub reopened: usize,
    pub closed: usize,
    pub deferred: usize,
}

enum Method {
    Get,
    Post,
    Patch,
}

/// The HTTP client for GitHub's REST API (needs a tokio runtime).
pub fn client(cfg: &Config) -> Result<octocrab::Octocrab, Error> {
    octocrab::Octocrab::builder()
        .personal_token(cfg.token.expose().to_string())
        .base_uri(cfg.api_url.as_str())
        .map_err(|e| Error::Client(format!("api_url {:?}: {e}", cfg.api_url)))?
        // mdb owns the retries: octocrab's would re-send a POST whose answer was lost.
        .add_retry_config(octocrab::service::middleware::retry::RetryConfig::None)
        .set_connect_timeout(Some(cfg.timeout))
        .set_read_timeout(Some(cfg.timeout))
        .set_write_timeout(Some(cfg.timeout))
        .build()
        .map_err(|e| Error::Client(e.to_string()))
}

impl Filer {
    pub fn new(cfg: Config, metrics: Arc<Metrics>) -> Result<Filer, Error> {
        let gh = client(&cfg)?;
        if cfg.repo.split('/').filter(|p| !p.is_empty()).count() != 2 {
            return Err(Error::Client(format!(
                "repo {:?} is not owner/name",
                cfg.repo
            )));
        }
        Ok(Filer {
            gh,
            cfg,
            known: HashMap::new(),
            loaded: false,
            last_write: None,
            metrics,
        })
    }

    pub fn known(&self) -> &HashMap<String, Known> {
        &self.known
    }

    fn issues_path(&self) -> String {
        format!("/repos/{}/issues", self.cfg.repo)
    }

    /// One request with mdb's retry policy. `retry_5xx` is false for a
    /// create: the caller looks for the issue before sending it again.
    async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Value>,
        retry_5xx: bool,
    ) -> Result<Value, Error> {
        let what = format!(
            "{} {}",
            match method {
                Method::Get => "GET",
                Method::Post => "POST",
                Method::Patch => "PATCH",
            },
            path.split('?').next().unwrap_or(path)
        );
        let write = !matches!(method, Method::Get);
        let mut attempt = 0;
        loop {
            attempt += 1;
            if write {
                if let Some(t) = self.last_write {
                    let next = t + self.cfg.write_gap;
                    if next > Instant::now() {
                        tokio::time::sleep_until(next.into()).await;
                    }
                }
                self.last_write = Some(Instant::now());
            }
            let sent = match &method {
                Method::Get => self.gh._get(path).await,
                Method::Post => self.gh._post(path, body.as_ref()).await,
                Method::Patch => self.gh._patch(path, body.as_ref()).await,
            };
            let backoff =
                (self.cfg.retry_base * 2u32.saturating_pow(attempt - 1)).min(RATE_LIMIT_FALLBACK);
            let response = match sent {
                Ok(r) => r,
                Err(e) => {
                    self.metrics
                        .github_requests
                        .with_label_values(&["transport_error"])
                        .inc();
                    let err = Error::Transient {
                        what: what.clone(),
                        message: e.to_string(),
                    };
                    if !retry_5xx || attempt >= MAX_ATTEMPTS {
                        return Err(err);
                    }
                    warn!(error = %err, attempt, "GitHub request failed; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            };
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let text = self.gh.body_to_string(response).await.unwrap_or_default();
            if (200..300).contains(&status) {
                self.metrics
                    .github_requests
                    .with_label_values(&["ok"])
                    .inc();
                if text.trim().is_empty() {
                    return Ok(Value::Null);
                }
                return serde_json::from_str(&text).map_err(|e| Error::Decode {
                    what,
                    message: e.to_string(),
                });
            }
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["message"].as_str().map(String::from))
                .unwrap_or_else(|| text.chars().take(200).collect());
            if let Some(wait) = rate_limit_wait(status, &headers, &message) {
                self.metrics
                    .github_requests
                    .with_label_values(&["rate_limited"])
                    .inc();
                if wait > self.cfg.max_wait || attempt >= MAX_ATTEMPTS {
                    return Err(Error::RateLimited {
                        what,
                        wait,
                        max: self.cfg.max_wait,
                    });
                }
                warn!(status, wait = ?wait, "GitHub rate limit; waiting");
                tokio::time::sleep(wait).await;
                continue;
            }
            if status >= 500 {
                self.metrics
                    .github_requests
                    .with_label_values(&["server_error"])
                    .inc();
                let err = Error::Transient {
                    what: what.clone(),
                    message: format!("{status} {message}"),
                };
                if !retry_5xx || attempt >= MAX_ATTEMPTS {
                    return Err(err);
                }
                warn!(error = %err, attempt, "GitHub server error; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                continue;
            }
            self.metrics
                .github_requests
                .with_label_values(&["client_error"])
                .inc();
            if status == 410 {
                return Err(Error::Disabled);
            }
            return Err(Error::Status {
                what,
                status,
                message,
            });
        }
    }

    /// Reads every issue of the repository and keeps those mdb filed.
    pub async fn load(&mut self) -> Result<(), Error> {
        let mut known = HashMap::new();
        for page in 1..=MAX_PAGES {
            let path = format!(
                "{}?state=all&per_page=100&page={page}&sort=created&direction=asc",
                self.issues_path()
            );
            let v = self.request(Method::Get, &path, None, true).await?;
            let items = v.as_array().ok_or_else(|| Error::Decode {
                what: "issue list".into(),
                message: "not a list".into(),
            })?;
            for i in items {
                if i.get("pull_request").is_some() {
                    continue;
                }
                let body = i["body"].as_str().unwrap_or_default();
                let (Some(fp), Some(number)) = (fingerprint_in(body), i["number"].as_u64()) else {
                    continue;
                };
                let k = Known {
                    number,
                    open: i["state"] == "open",
                    ip: ip_in(body).unwrap_or_default().to_string(),
                };
                // Should duplicates exist (filed by hand, or before mdb
                // looked), an open one wins, then the newest.
                let keep = match known.get(fp) {
                    Some(old) => {
                        let old: &Known = old;
                        (k.open && !old.open) || (k.open == old.open && k.number > old.number)
                    }
                    None => true,
                };
                if keep {
                    known.insert(fp.to_string(), k);
                }
            }
            if items.len() < 100 {
                break;
            }
        }
        self.known = known;
        self.loaded = true;
        Ok(())
    }

    fn labels(&self, h: &DiscoveredHost) -> Vec<String> {
        let mut l = self.cfg.labels.clone();
        l.push(kind(h).to_string());
        l
    }

    async fn comment(&mut self, number: u64, text: &str) -> Result<(), Error> {
        let path = format!("{}/{number}/comments", self.issues_path());
        self.request(Method::Post, &path, Some(json!({ "body": text })), true)
            .await?;
        Ok(())
    }

    async fn create(
        &mut self,
        fp: &str,
        h: &DiscoveredHost,
        suggested: Option<&str>,
    ) -> Result<u64, Error> {
        let mut body =
            json!({ "title": title(h), "body": body(h, suggested), "labels": self.labels(h) });
        if let Some(a) = &self.cfg.assignee {
            body["assignees"] = json!([a]);
        }
        let path = self.issues_path();
        for attempt in 1..=MAX_ATTEMPTS {
            match self
                .request(Method::Post, &path, Some(body.clone()), false)
                .await
            {
                Ok(v) => {
                    let number = v["number"].as_u64().ok_or_else(|| Error::Decode {
                        what: "created issue".into(),
                        message: "no number".into(),
                    })?;
                    return Ok(number);
                }
                Err(Error::Transient { .. }) if attempt < MAX_ATTEMPTS => {
                    // The issue may exist although the answer was lost: look
                    // before sending it again.
                    tokio::time::sleep(self.cfg.retry_base * 2u32.pow(attempt - 1)).await;
                    self.load().await?;
                    if let Some(k) = self.known.get(fp) {
                        info!(
                            issue = k.number,
                            fingerprint = fp,
                            "issue was created although GitHub's answer was lost"
                        );
                        return Ok(k.number);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::Transient {
            what: format!("POST {path}"),
            message: "gave up".into(),
        })
    }

    async fn set(&mut self, number: u64, fields: Value) -> Result<(), Error> {
        let path = format!("{}/{number}", self.issues_path());
        self.request(Method::Patch, &path, Some(fields), true)
            .await?;
        Ok(())
    }

    /// Records an issue mdb just opened (or reopened) and counts it.
    fn opened(&mut self, fp: String, number: u64, ip: &str, op: &str) {
        self.known.insert(
            fp,
            Known {
                number,
                open: true,
                ip: ip.to_string(),
            },
        );
        self.metrics.github_issues.with_label_values(&[op]).inc();
    }

    /// Brings the issues in line with one sweep.
    pub async fn reconcile(
        &mut self,
        result: &SweepResult,
        snap: &Snapshot,
    ) -> Result<Summary, Error> {
        if !self.loaded {
            self.load().await?;
        }
        let (ops, deferred) = plan(&result.hosts, snap, &self.known, self.cfg.max_new_per_sweep);
        self.metrics.github_deferred.set(deferred as i64);
        let mut summary = Summary {
            deferred,
            ..Default::default()
        };
        let mut seen: HashSet<IpAddr> = result
            .hosts
            .iter()
            .filter_map(|h| h.ip.parse().ok())
            .collect();
        for op in ops {
            match op {
                Op::Create {
                    fingerprint: fp,
                    host,
                } => {
                    let suggested = suggest(&host, snap, &mut seen);
                    let number = self.create(&fp, &host, suggested.as_deref()).await?;
                    info!(issue = number, fingerprint = %fp, "filed issue");
                    self.opened(fp, number, &host.ip, "created");
                    summary.created += 1;
                }
                Op::Update {
                    number,
                    fingerprint: fp,
                    host,
                } => {
                    let old = self
                        .known
                        .get(&fp)
                        .map(|k| k.ip.clone())
                        .unwrap_or_default();
                    self.comment(
                        number,
                        &format!("Now seen at {} (was {old}). {}", host.ip, host.detail),
                    )
                    .await?;
                    self.set(
                        number,
                        json!({ "title": title(&host), "body": body(&host, None) }),
                    )
                    .await?;
                    if let Some(k) = self.known.get_mut(&fp) {
                        k.ip = host.ip.clone();
                    }
                    self.metrics
                        .github_issues
                        .with_label_values(&["updated"])
                        .inc();
                    summary.updated += 1;
                }
                Op::Reopen {
                    number,
                    fingerprint: fp,
                    host,
                } => {
                    self.set(number, json!({ "state": "open", "title": title(&host), "body": body(&host, None) })).await?;
                    self.comment(
                        number,
                        &format!("The problem is back: {} ({}).", host.detail, host.ip),
                    )
                    .await?;
                    self.opened(fp, number, &host.ip, "reopened");
                    summary.reopened += 1;
                }
                Op::Close {
                    number,
                    fingerprint: fp,
                    why,
                } => {
                    self.comment(number, &format!("Resolved: {why} Closing."))
                        .await?;
                    self.set(
                        number,
                        json!({ "state": "closed", "state_reason": "completed" }),
                    )
                    .await?;
                    if let Some(k) = self.known.get_mut(&fp) {
                        k.open = false;
                    }
                    self.metrics
                        .github_issues
                        .with_label_values(&["closed"])
                        .inc();
                    summary.closed += 1;
                }
            }
        }
        Ok(summary)
    }
}

/// The next free static address of the host's subnet, for the YAML entry.
fn suggest(h: &DiscoveredHost, snap: &Snapshot, seen: &mut HashSet<IpAddr>) -> Option<String> {
    let ip: IpAddr = h.ip.parse().ok()?;
    let subnet = snap
        .settings
        .subnets
        .iter()
        .find(|s| s.cidr.contains(ip) && s.static_range.is_some())?;
    let next = crate::ipam::next_free(subnet, snap, seen)?;
    seen.insert(next);
    Some(next.to_string())
}

/// How long a 403/429 asks to wait: `retry-after`, else the reset time when
/// no requests remain, else a minute for a secondary limit.
fn rate_limit_wait(status: u16, headers: &http::HeaderMap, message: &str) -> Option<Duration> {
    let header = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).map(str::trim);
    let retry_after = header("retry-after")
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs);
    let exhausted = header("x-ratelimit-remaining") == Some("0");
    let limited = status == 429
        || (status == 403
            && (retry_after.is_some()
                || exhausted
                || message.to_lowercase().contains("rate limit")));
    if !limited {
        return None;
    }
    if let Some(d) = retry_after {
        return Some(d);
    }
    if exhausted {
        if let Some(reset) = header("x-ratelimit-reset").and_then(|v| v.parse::<i64>().ok()) {
            let now = crate::db::store::now_unix();
            return Some(Duration::from_secs((reset - now).max(1) as u64));
        }
    }
    Some(RATE_LIMIT_FALLBACK)
}

/// The filer task: reconciles after every sweep, never blocking the sweep
/// loop (a slow GitHub only makes it skip to the latest sweep).
pub async fn run(
    cfg: Config,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    mut results: watch::Receiver<Option<Arc<SweepResult>>>,
    shutdown: CancellationToken,
) {
    let mut filer = match Filer::new(cfg, metrics.clone()) {
        Ok(f) => f,
        Err(e) => {
            warn!(error = %e, "GitHub filer disabled");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = results.changed() => if changed.is_err() { return },
        }
        let Some(result) = results.borrow_and_update().clone() else {
            continue;
        };
        let Some(snap) = store.snapshot() else {
            continue;
        };
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = filer.reconcile(&result, &snap) => r,
        };
        match outcome {
            Ok(s) => {
                if s != Summary::default() {
                    info!(
                        created = s.created,
                        updated = s.updated,
                        reopened = s.reopened,
                        closed = s.closed,
                        deferred = s.deferred,
                        "GitHub issues reconciled"
                    );
                }
                if s.deferred > 0 {
                    warn!(deferred = s.deferred, "more new problems than max_new_per_sweep; the rest wait for the next sweep");
                }
            }
            Err(e) => {
                warn!(error = %e, "GitHub reconcile failed; will retry after the next sweep");
                metrics
                    .github_errors
                    .with_label_values(&[e.metric_label()])
                    .inc();
            }
        }
    }
}

//! The service's own configuration: a TOML file, overridden by environment
//! variables, overridden by flags. Everything is validated before any port
//! is bound; a bad value is one line naming the setting.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

use crate::{secret::Secret, sync};

pub const ENV_DB_URL: &str = "MDB_DB_URL";
pub const ENV_DB_BRANCH: &str = "MDB_DB_BRANCH";
pub const ENV_DB_TOKEN: &str = "MDB_DB_TOKEN";
pub const ENV_DB_TOKEN_FILE: &str = "MDB_DB_TOKEN_FILE";
pub const ENV_CHECKOUT: &str = "MDB_CHECKOUT_DIR";
pub const ENV_GRPC_LISTEN: &str = "MDB_GRPC_LISTEN";
pub const ENV_METRICS_LISTEN: &str = "MDB_METRICS_LISTEN";
pub const ENV_POLL: &str = "MDB_POLL_INTERVAL";
pub const ENV_RESYNC: &str = "MDB_RESYNC_INTERVAL";
pub const ENV_SCAN_SUBNETS: &str = "MDB_SCAN_SUBNETS";
pub const ENV_GITHUB_TOKEN: &str = "MDB_GITHUB_TOKEN";
pub const ENV_GITHUB_TOKEN_FILE: &str = "MDB_GITHUB_TOKEN_FILE";

pub const DEFAULT_BRANCH: &str = "main";
pub const DEFAULT_GRPC_LISTEN: &str = "0.0.0.0:50051";
pub const DEFAULT_METRICS_LISTEN: &str = "0.0.0.0:9090";
pub const DEFAULT_CHECKOUT: &str = "/var/lib/mdb/db";
/// Below Kubernetes' default 30 s termination grace period.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// A configuration problem, as one line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Error(pub String);

/// The file as typed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub db: RawDb,
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub scan: RawScan,
    pub github: Option<RawGithub>,
    pub provision: Option<RawProvision>,
}

/// `[provision]`: the provisioning runner (`mdb provision`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvision {
    pub server: Option<String>,
    pub state_dir: Option<PathBuf>,
    #[serde(default)]
    pub machine_command: Vec<String>,
    #[serde(default)]
    pub cluster_command: Vec<String>,
    pub cluster_format: Option<String>,
    #[serde(default)]
    pub removal_command: Vec<String>,
    pub timeout: Option<String>,
    pub retry_base: Option<String>,
    pub retry_max: Option<String>,
    pub debounce: Option<String>,
    pub ssh_key: Option<PathBuf>,
    pub ssh_user: Option<String>,
    pub ssh_timeout: Option<String>,
    pub grpc_listen: Option<String>,
    pub metrics_listen: Option<String>,
    pub shutdown_grace: Option<String>,
}

/// Flags of `mdb provision`.
#[derive(Debug, Default, Clone)]
pub struct ProvisionFlags {
    pub server: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub grpc_listen: Option<String>,
    pub metrics_listen: Option<String>,
    pub dry_run: bool,
}

pub const ENV_RUNNER: &str = "MDB_RUNNER";
pub const ENV_SCANNER: &str = "MDB_SCANNER";
pub const ENV_STATE_DIR: &str = "MDB_STATE_DIR";
pub const ENV_PROVISION_SERVER: &str = "MDB_PROVISION_SERVER";
pub const ENV_PROVISION_STATE_DIR: &str = "MDB_PROVISION_STATE_DIR";
pub const ENV_PROVISION_SSH_KEY: &str = "MDB_PROVISION_SSH_KEY";

/// How the runner logs in to check that a machine can be provisioned.
fn provision_ssh(
    r: &RawProvision,
    env: &HashMap<String, String>,
    state_dir: &Path,
) -> Result<crate::provision::ready::SshLogin, Error> {
    Ok(crate::provision::ready::SshLogin {
        key: env
            .get(ENV_PROVISION_SSH_KEY)
            .map(PathBuf::from)
            .or(r.ssh_key.clone()),
        known_hosts: state_dir.join("known_hosts"),
        default_user: r.ssh_user.clone().unwrap_or_else(|| "root".into()),
        timeout: duration(
            "provision.ssh_timeout",
            r.ssh_timeout.clone(),
            Duration::from_secs(10),
        )?,
    })
}

/// A listen address of the runner: flag > file > default.
fn provision_listen(
    name: &str,
    flag: &Option<String>,
    file: &Option<String>,
    default: &str,
) -> Result<SocketAddr, Error> {
    let s = flag
        .clone()
        .or(file.clone())
        .unwrap_or_else(|| default.into());
    s.parse::<SocketAddr>().map_err(|_| {
        Error(format!(
            "{name}: {s:?} is not an address like 0.0.0.0:50053"
        ))
    })
}

/// Resolves `[provision]` < env < flags into the runner's settings.
pub fn resolve_provision(
    raw: RawConfig,
    env: &HashMap<String, String>,
    flags: &ProvisionFlags,
) -> Result<crate::provision::Config, Error> {
    use crate::provision as p;
    let r = raw.provision.as_ref().cloned().unwrap_or_default();
    let server = flags
        .server
        .clone()
        .or_else(|| env.get(ENV_PROVISION_SERVER).cloned())
        .or(r.server.clone())
        .unwrap_or_else(|| "http://127.0.0.1:50051".into());
    crate::dial::url(&server).map_err(|e| Error(format!("provision.server: {e}")))?;
    let state_dir = flags
        .state_dir
        .clone()
        .or_else(|| env.get(ENV_PROVISION_STATE_DIR).map(PathBuf::from))
        .or(r.state_dir.clone())
        .unwrap_or_else(|| PathBuf::from(p::DEFAULT_STATE_DIR));
    if r.machine_command.is_empty() && r.cluster_command.is_empty() && !flags.dry_run {
        return Err(Error(
            "provision: set machine_command or cluster_command (or run with --dry-run)".into(),
        ));
    }
    let w = r.cluster_format.as_deref().unwrap_or("k3s");
    let cluster_format = p::ClusterFormat::WORDS
        .iter()
        .find(|(word, _)| *word == w)
        .map(|(_, f)| *f)
        .ok_or_else(|| {
            Error(format!(
                "provision.cluster_format: {w:?} is not k3s or kubespray"
            ))
        })?;
    Ok(p::Config {
        server,
        machine_command: r.machine_command.clone(),
        cluster_command: r.cluster_command.clone(),
        cluster_format,
        removal_command: r.removal_command.clone(),
        timeout: duration("provision.timeout", r.timeout.clone(), p::DEFAULT_TIMEOUT)?,
        retry_base: duration(
            "provision.retry_base",
            r.retry_base.clone(),
            p::DEFAULT_RETRY_BASE,
        )?,
        retry_max: duration(
            "provision.retry_max",
            r.retry_max.clone(),
            p::DEFAULT_RETRY_MAX,
        )?,
        debounce: duration(
            "provision.debounce",
            r.debounce.clone(),
            p::DEFAULT_DEBOUNCE,
        )?,
        ssh: provision_ssh(&r, env, &state_dir)?,
        grpc_listen: provision_listen(
            "provision.grpc_listen",
            &flags.grpc_listen,
            &r.grpc_listen,
            p::DEFAULT_GRPC_LISTEN,
        )?,
        metrics_listen: provision_listen(
            "provision.metrics_listen",
            &flags.metrics_listen,
            &r.metrics_listen,
            p::DEFAULT_METRICS_LISTEN,
        )?,
        dry_run: flags.dry_run,
        github: match &raw.github {
            Some(g) => {
                let mut g = resolve_github(g, env, None)?;
                g.enrol = None;
                Some(g)
            }
            None => None,
        },
        shutdown_grace: duration(
            "provision.shutdown_grace",
            r.shutdown_grace.clone(),
            DEFAULT_SHUTDOWN_GRACE,
        )?,
        state_dir,
    })
}

/// Where new and unprovisionable hosts are filed as issues.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGithub {
    /// owner/name; by default the DB repository's, when that is on github.com.
    #[serde(default)]
    pub repo: String,
    pub token_file: Option<PathBuf>,
    pub api_url: Option<String>,
    pub labels: Option<Vec<String>>,
    pub assignee: Option<String>,
    pub max_new_per_sweep: Option<usize>,
    pub write_gap: Option<String>,
    pub retry_base: Option<String>,
    pub max_wait: Option<String>,
    pub timeout: Option<String>,
    /// "pull-request" (the default) or "issue-only".
    pub enrol: Option<String>,
    /// Labels of enrolment pull requests.
    pub pull_request_labels: Option<Vec<String>>,
    /// People asked to review enrolment pull requests.
    pub reviewers: Option<Vec<String>>,
    /// Enrol devices whose MAC is locally administered (random) too.
    pub enrol_random_macs: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScan {
    /// CIDRs to sweep; nothing is swept unless named here or `db_subnets`.
    #[serde(default)]
    pub subnets: Vec<String>,
    /// Also sweep the subnets of the DB's mdb.yaml marked `scan: true`.
    #[serde(default)]
    pub db_subnets: bool,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub tries: Option<u32>,
    pub rate: Option<u32>,
    pub interface: Option<String>,
    #[serde(default)]
    pub allow_large: bool,
    pub reverse_dns: Option<bool>,
    pub arp: Option<bool>,
    /// Where the sweep history is kept (a persistent volume); without it
    /// the history lives in memory only.
    pub state_dir: Option<PathBuf>,
    /// How long hosts that are gone and old transitions are kept, e.g. "90d".
    pub retention: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDb {
    pub url: Option<String>,
    pub branch: Option<String>,
    pub token_file: Option<PathBuf>,
    pub checkout: Option<PathBuf>,
    pub poll_interval: Option<String>,
    pub resync_interval: Option<String>,
    pub fetch_timeout: Option<String>,
    /// Largest database file, e.g. "16MiB".
    pub max_file_size: Option<String>,
    /// Largest total of a revision's database files, e.g. "128MiB".
    pub max_repo_size: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub grpc_listen: Option<String>,
    pub metrics_listen: Option<String>,
    pub shutdown_grace: Option<String>,
    /// A provisioning runner whose statuses the web page shows.
    pub runner: Option<String>,
    /// The scanner this API replica mirrors discovery from.
    pub scanner: Option<String>,
}

/// Flags of `mdb serve`; `None` leaves the setting to env or file.
#[derive(Debug, Default, Clone)]
pub struct Flags {
    pub db_url: Option<String>,
    pub branch: Option<String>,
    pub token_file: Option<PathBuf>,
    pub checkout: Option<PathBuf>,
    pub grpc_listen: Option<String>,
    pub metrics_listen: Option<String>,
    pub poll_interval: Option<String>,
    pub resync_interval: Option<String>,
    /// Subnets to sweep (repeatable); adds to the file's.
    pub scan: Vec<String>,
    pub scan_interval: Option<String>,
    /// A provisioning runner whose statuses the web page shows.
    pub runner: Option<String>,
    /// The scanner an API replica follows.
    pub scanner: Option<String>,
    /// Where the scanner keeps its history.
    pub state_dir: Option<PathBuf>,
}

/// Validated settings of `mdb serve` (defined where they are used).
pub use crate::serve::Config;

pub use crate::units::{parse_duration, parse_size, MAX_DURATION};

fn size(name: &str, v: Option<String>, default: u64) -> Result<u64, Error> {
    match v {
        None => Ok(default),
        Some(s) => parse_size(&s)
            .filter(|n| *n > 0)
            .ok_or_else(|| Error(format!("{name}: {s:?} is not a size like 16MiB or 512KiB"))),
    }
}

/// Refuses a URL that carries a user or password: git would store it in
/// the checkout's logs and config in clear text.
fn refuse_credentials(url: &str) -> Result<(), Error> {
    let authority = url
        .split_once("://")
        .map(|(_, rest)| rest.split('/').next().unwrap_or(""))
        .unwrap_or("");
    if authority.contains('@') {
        return Err(Error(format!(
            "db.url: {} carries credentials; put the token in a file and name it with [db] token_file or {ENV_DB_TOKEN_FILE} (or set {ENV_DB_TOKEN})",
            sync::redact_url(url)
        )));
    }
    Ok(())
}

/// A duration setting: `default` when unset, an error naming it when bad.
fn duration(name: &str, v: Option<String>, default: Duration) -> Result<Duration, Error> {
    match v {
        None => Ok(default),
        Some(s) => parse_duration(&s).filter(|d| !d.is_zero()).ok_or_else(|| {
            Error(format!(
                "{name}: {s:?} is not a duration like 90s, 5m or 1h"
            ))
        }),
    }
}

pub fn read_file(path: &Path) -> Result<RawConfig, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error(format!("config file {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| {
        let msg = e.message().to_string();
        let at = e
            .span()
            .map(|s| format!(":{}", text[..s.start].lines().count().max(1)))
            .unwrap_or_default();
        Error(format!("config file {}{at}: {msg}", path.display()))
    })
}

/// Resolves file < env < flags into a validated [`Config`].
pub fn resolve(
    raw: RawConfig,
    env: &HashMap<String, String>,
    flags: &Flags,
) -> Result<Config, Error> {
    let layers = Layers { env, flags };
    let source = layers.source(&raw.db)?;
    let timing = sync::Timing {
        poll: duration(
            "poll_interval",
            layers.pick(&flags.poll_interval, ENV_POLL, &raw.db.poll_interval),
            sync::DEFAULT_POLL,
        )?,
        resync: duration(
            "resync_interval",
            layers.pick(&flags.resync_interval, ENV_RESYNC, &raw.db.resync_interval),
            sync::DEFAULT_RESYNC,
        )?,
    };
    let (grpc_listen, metrics_listen) = layers.listen(&raw.server)?;
    let scan = resolve_scan(&raw.scan, env, flags)?;
    let scanner = resolve_scanner(&raw.server, env, flags, scan.is_some())?;
    let github = match &raw.github {
        None => None,
        Some(_) if scan.is_none() => {
            return Err(Error(
                "[github] files issues found by sweeps; configure [scan] too".into(),
            ))
        }
        Some(g) => Some(resolve_github(g, env, Some(&source))?),
    };
    Ok(Config {
        scan,
        github,
        source,
        timing,
        grpc_listen,
        metrics_listen,
        shutdown_grace: duration(
            "shutdown_grace",
            raw.server.shutdown_grace.clone(),
            DEFAULT_SHUTDOWN_GRACE,
        )?,
        runner: flags
            .runner
            .clone()
            .or_else(|| env.get(ENV_RUNNER).cloned())
            .or(raw.server.runner.clone())
            .filter(|r| !r.trim().is_empty()),
        scanner,
    })
}

/// The three layers a setting comes from: flag > environment > file.
struct Layers<'a> {
    env: &'a HashMap<String, String>,
    flags: &'a Flags,
}

impl Layers<'_> {
    fn pick(&self, flag: &Option<String>, var: &str, file: &Option<String>) -> Option<String> {
        flag.clone()
            .or_else(|| self.env.get(var).cloned())
            .or_else(|| file.clone())
            .filter(|s| !s.trim().is_empty())
    }

    /// Where the database comes from, with its token and limits.
    fn source(&self, db: &RawDb) -> Result<sync::Source, Error> {
        let (env, flags) = (self.env, self.flags);
        let url = self
            .pick(&flags.db_url, ENV_DB_URL, &db.url)
            .ok_or_else(|| {
                Error(format!(
                    "no DB repository: set [db] url, {ENV_DB_URL} or --db-url"
                ))
            })?;
        refuse_credentials(&url)?;
        let token_file = flags
            .token_file
            .clone()
            .or_else(|| env.get(ENV_DB_TOKEN_FILE).map(PathBuf::from))
            .or(db.token_file.clone());
        let token = match token_file {
            // An empty name says "no token" over a layer below: a public
            // repository under a shared configuration.
            Some(p) if p.as_os_str().is_empty() => None,
            Some(p) => Some(Secret::from_file(&p).map_err(|e| Error(e.to_string()))?),
            None => env
                .get(ENV_DB_TOKEN)
                .filter(|t| !t.trim().is_empty())
                .map(|t| Secret::new(t.trim())),
        };
        Ok(sync::Source {
            url,
            branch: self
                .pick(&flags.branch, ENV_DB_BRANCH, &db.branch)
                .unwrap_or_else(|| DEFAULT_BRANCH.into()),
            token,
            checkout: flags
                .checkout
                .clone()
                .or_else(|| env.get(ENV_CHECKOUT).map(PathBuf::from))
                .or(db.checkout.clone())
                .unwrap_or_else(|| PathBuf::from(DEFAULT_CHECKOUT)),
            fetch_timeout: duration(
                "fetch_timeout",
                db.fetch_timeout.clone(),
                sync::DEFAULT_FETCH_TIMEOUT,
            )?,
            limits: crate::db::Limits {
                file_bytes: size(
                    "db.max_file_size",
                    db.max_file_size.clone(),
                    crate::db::DEFAULT_MAX_FILE_BYTES,
                )?,
                repo_bytes: size(
                    "db.max_repo_size",
                    db.max_repo_size.clone(),
                    crate::db::DEFAULT_MAX_REPO_BYTES,
                )?,
            },
        })
    }

    /// The gRPC and HTTP addresses, which must differ.
    fn listen(&self, server: &RawServer) -> Result<(SocketAddr, SocketAddr), Error> {
        let flags = self.flags;
        let addr = |name: &str, v: Option<String>, default: &str| -> Result<SocketAddr, Error> {
            let s = v.unwrap_or_else(|| default.to_string());
            s.parse().map_err(|_| {
                Error(format!(
                    "{name}: {s:?} is not an address like 0.0.0.0:50051"
                ))
            })
        };
        let grpc = addr(
            "grpc_listen",
            self.pick(&flags.grpc_listen, ENV_GRPC_LISTEN, &server.grpc_listen),
            DEFAULT_GRPC_LISTEN,
        )?;
        let http = addr(
            "metrics_listen",
            self.pick(
                &flags.metrics_listen,
                ENV_METRICS_LISTEN,
                &server.metrics_listen,
            ),
            DEFAULT_METRICS_LISTEN,
        )?;
        if grpc == http && grpc.port() != 0 {
            return Err(Error(format!(
                "grpc_listen and metrics_listen are both {grpc}"
            )));
        }
        Ok((grpc, http))
    }
}

/// A sweep's per-address wait: `auto`, or a duration of at least 1 ms
/// (a zero wait would end every sweep before any answer).
pub fn scan_timeout(text: &str) -> Result<Option<std::time::Duration>, String> {
    if text.trim() == "auto" {
        return Ok(None);
    }
    let d = parse_duration(text)
        .ok_or_else(|| format!("{text:?} is not a duration like 500ms (or auto)"))?;
    if d < std::time::Duration::from_millis(1) {
        return Err(format!("{text:?}: must be at least 1ms (or auto)"));
    }
    Ok(Some(d))
}

/// The scanner an API replica follows: a gRPC address, and never on a
/// process that sweeps itself.
fn resolve_scanner(
    raw: &RawServer,
    env: &HashMap<String, String>,
    flags: &Flags,
    sweeps: bool,
) -> Result<Option<String>, Error> {
    let Some(addr) = flags
        .scanner
        .clone()
        .or_else(|| env.get(ENV_SCANNER).cloned())
        .or(raw.scanner.clone())
        .filter(|a| !a.trim().is_empty())
    else {
        return Ok(None);
    };
    if sweeps {
        return Err(Error(format!(
            "server.scanner: this process sweeps itself ([scan]); a replica that follows {addr} must not sweep"
        )));
    }
    crate::dial::endpoint(&addr, None).map_err(|e| Error(format!("server.scanner: {e}")))?;
    Ok(Some(addr))
}

fn resolve_scan(
    raw: &RawScan,
    env: &HashMap<String, String>,
    flags: &Flags,
) -> Result<Option<crate::discover::sweep::Config>, Error> {
    use crate::discover::scan;
    let mut texts: Vec<String> = raw.subnets.clone();
    if let Some(v) = env.get(ENV_SCAN_SUBNETS) {
        texts.extend(
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty()),
        );
    }
    texts.extend(flags.scan.iter().cloned());
    let mut subnets = Vec::new();
    for t in &texts {
        let net: ipnetwork::IpNetwork = t.parse().map_err(|_| {
            Error(format!(
                "scan.subnets: {t:?} is not a CIDR like 198.18.0.0/24"
            ))
        })?;
        subnets.push(net);
    }
    if subnets.is_empty() && !raw.db_subnets {
        return Ok(None);
    }
    if !subnets.is_empty() {
        scan::Targets::of(&subnets, raw.allow_large)
            .map_err(|e| Error(format!("scan.subnets: {e}")))?;
    }
    let interval = duration(
        "scan.interval",
        flags.scan_interval.clone().or(raw.interval.clone()),
        crate::discover::sweep::DEFAULT_INTERVAL,
    )?;
    // The scanner waits the full time for every address by default: nobody
    // waits for its sweeps, and a late device must not flap.
    let timeout = match &raw.timeout {
        Some(t) => scan_timeout(t).map_err(|e| Error(format!("scan.timeout {e}")))?,
        None => Some(scan::DEFAULT_TIMEOUT),
    };
    if raw.rate == Some(0) || raw.tries == Some(0) {
        return Err(Error("scan.rate and scan.tries must be at least 1".into()));
    }
    let retention = duration(
        "scan.retention",
        raw.retention.clone(),
        crate::discover::history::DEFAULT_RETENTION,
    )?;
    if retention < Duration::from_secs(7 * 24 * 3600) {
        return Err(Error(
            "scan.retention: keep at least 7d (uptime is shown over 7 days)".into(),
        ));
    }
    let state_dir = flags
        .state_dir
        .clone()
        .or_else(|| env.get(ENV_STATE_DIR).map(PathBuf::from))
        .or(raw.state_dir.clone())
        .filter(|p| !p.as_os_str().is_empty());
    Ok(Some(crate::discover::sweep::Config {
        ports: crate::discover::sweep::Ports::Database,
        state_dir,
        retention,
        subnets,
        db_subnets: raw.db_subnets,
        interval,
        options: scan::Options {
            timeout,
            tries: raw.tries,
            rate: raw.rate,
            interface: raw.interface.clone(),
            allow_large: raw.allow_large,
            reverse_dns: raw.reverse_dns.unwrap_or(true),
            arp: raw.arp.unwrap_or(true),
            ..scan::Options::default()
        },
    }))
}

/// `owner/name` of a github.com repository URL (`.git` optional).
fn github_repo_of(url: &str) -> Option<String> {
    let path = url.strip_prefix("https://github.com/")?;
    let path = path.trim_end_matches('/').trim_end_matches(".git");
    let mut parts = path.split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(owner), Some(name), None) if !owner.is_empty() && !name.is_empty() => {
            Some(format!("{owner}/{name}"))
        }
        _ => None,
    }
}

fn resolve_github(
    g: &RawGithub,
    env: &HashMap<String, String>,
    source: Option<&sync::Source>,
) -> Result<crate::github::Config, Error> {
    use crate::github as gh;
    let repo = match (g.repo.is_empty(), source) {
        (true, Some(s)) => github_repo_of(&s.url).ok_or_else(|| {
            Error(format!(
                "github.repo: not given, and db.url {:?} is not a github.com repository",
                s.url
            ))
        })?,
        _ => g.repo.clone(),
    };
    if repo.split('/').filter(|p| !p.is_empty()).count() != 2 {
        return Err(Error(format!("github.repo: {repo:?} is not owner/name")));
    }
    let token_file = env
        .get(ENV_GITHUB_TOKEN_FILE)
        .map(PathBuf::from)
        .or(g.token_file.clone());
    let token = match token_file {
        Some(p) => Secret::from_file(&p).map_err(|e| Error(e.to_string()))?,
        None => env
            .get(ENV_GITHUB_TOKEN)
            .filter(|t| !t.trim().is_empty())
            .map(|t| Secret::new(t.trim()))
            .ok_or_else(|| Error(format!("github: no token; set github.token_file, {ENV_GITHUB_TOKEN_FILE} or {ENV_GITHUB_TOKEN}")))?,
    };
    let api_url = g
        .api_url
        .clone()
        .unwrap_or_else(|| gh::DEFAULT_API_URL.into());
    // The same parse octocrab's base_uri makes, so the client cannot fail
    // on it later, after the ports are bound.
    let parsed = api_url.parse::<http::Uri>().ok();
    if !(api_url.starts_with("https://") || api_url.starts_with("http://"))
        || parsed.and_then(|u| u.host().map(str::to_owned)).is_none()
    {
        return Err(Error(format!(
            "github.api_url: {api_url:?} is not an http(s) URL"
        )));
    }
    let cfg = gh::Config {
        repo,
        token,
        api_url,
        labels: g
            .labels
            .clone()
            .unwrap_or_else(|| gh::DEFAULT_LABELS.iter().map(|s| s.to_string()).collect()),
        assignee: g.assignee.clone(),
        max_new_per_sweep: g.max_new_per_sweep.unwrap_or(gh::DEFAULT_MAX_NEW_PER_SWEEP),
        write_gap: duration(
            "github.write_gap",
            g.write_gap.clone(),
            gh::DEFAULT_WRITE_GAP,
        )?,
        retry_base: duration(
            "github.retry_base",
            g.retry_base.clone(),
            gh::DEFAULT_RETRY_BASE,
        )?,
        max_wait: duration("github.max_wait", g.max_wait.clone(), gh::DEFAULT_MAX_WAIT)?,
        timeout: duration("github.timeout", g.timeout.clone(), Duration::from_secs(30))?,
        enrol: match source {
            Some(s) => resolve_enrol(g, s)?,
            None => None,
        },
    };
    Ok(cfg)
}

/// Enrolment pull requests go to the DB repository itself, through the
/// remote sync uses, from a bare repository beside the checkout.
fn resolve_enrol(
    g: &RawGithub,
    source: &sync::Source,
) -> Result<Option<crate::github::enrol::EnrolConfig>, Error> {
    match g.enrol.as_deref().unwrap_or(ENROL_PULL_REQUEST) {
        ENROL_ISSUE_ONLY => return Ok(None),
        ENROL_PULL_REQUEST => {}
        other => {
            return Err(Error(format!(
                "github.enrol: {other:?} is not {ENROL_PULL_REQUEST:?} or {ENROL_ISSUE_ONLY:?}"
            )))
        }
    }
    let mut work_dir = source.checkout.clone().into_os_string();
    work_dir.push(".enrol");
    Ok(Some(crate::github::enrol::EnrolConfig {
        source: source.clone(),
        work_dir: PathBuf::from(work_dir),
        labels: g
            .pull_request_labels
            .clone()
            .unwrap_or_else(|| vec!["mdb".into(), "enrolment".into()]),
        reviewers: g.reviewers.clone().unwrap_or_default(),
        random_macs: g.enrol_random_macs.unwrap_or(false),
    }))
}

pub const ENROL_PULL_REQUEST: &str = "pull-request";
pub const ENROL_ISSUE_ONLY: &str = "issue-only";

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn flags_beat_env_beat_file() {
        let raw: RawConfig = toml::from_str("[db]\nurl = \"file:///a\"\nbranch = \"x\"\n").unwrap();
        let c = resolve(raw, &env(&[(ENV_DB_BRANCH, "y")]), &Flags::default()).unwrap();
        assert_eq!(c.source.url, "file:///a");
        assert_eq!(c.source.branch, "y");
        let raw: RawConfig = toml::from_str("[db]\nurl = \"file:///a\"\n").unwrap();
        let flags = Flags {
            db_url: Some("file:///b".into()),
            ..Default::default()
        };
        let c = resolve(raw, &env(&[(ENV_DB_URL, "file:///c")]), &flags).unwrap();
        assert_eq!(c.source.url, "file:///b");
        assert_eq!(c.timing.resync, Duration::from_secs(3600));
    }

    #[test]
    fn bad_values_name_the_setting() {
        let raw: RawConfig =
            toml::from_str("[db]\nurl = \"file:///a\"\npoll_interval = \"soon\"\n").unwrap();
        let e = resolve(raw, &HashMap::new(), &Flags::default()).unwrap_err();
        assert!(e.0.starts_with("poll_interval:"), "{e}");
        let e = resolve(RawConfig::default(), &HashMap::new(), &Flags::default()).unwrap_err();
        assert!(e.0.contains(ENV_DB_URL), "{e}");
        assert!(toml::from_str::<RawConfig>("[db]\nurl = \"x\"\ncolour = 1\n").is_err());
    }

    #[test]
    fn token_comes_from_env_and_is_never_shown() {
        let raw: RawConfig =
            toml::from_str("[db]\nurl = \"https://example.invalid/a.git\"\n").unwrap();
        let c = resolve(
            raw,
            &env(&[(ENV_DB_TOKEN, "ghp_topsecret")]),
            &Flags::default(),
        )
        .unwrap();
        assert_eq!(
            c.source.token.as_ref().map(|t| t.expose()),
            Some("ghp_topsecret")
        );
        assert!(!format!("{c:?}").contains("topsecret"));
    }

    #[test]
    fn scanning_is_off_unless_subnets_are_named_and_huge_ones_are_refused() {
        let raw: RawConfig = toml::from_str("[db]\nurl = \"file:///a\"\n").unwrap();
        assert!(resolve(raw, &HashMap::new(), &Flags::default())
            .unwrap()
            .scan
            .is_none());
        let raw: RawConfig =
            toml::from_str("[db]\nurl = \"file:///a\"\n[scan]\nsubnets = [\"198.18.0.0/24\"]\n")
                .unwrap();
        let c = resolve(raw, &HashMap::new(), &Flags::default()).unwrap();
        assert_eq!(c.scan.unwrap().subnets.len(), 1);
        let raw: RawConfig =
            toml::from_str("[db]\nurl = \"file:///a\"\n[scan]\nsubnets = [\"198.18.0.0/15\"]\n")
                .unwrap();
        let e = resolve(raw, &HashMap::new(), &Flags::default()).unwrap_err();
        assert!(e.0.contains("--allow-large"), "{e}");
    }

    #[test]
    fn the_example_config_is_complete_and_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/mdb.toml");
        let raw = read_file(&path).unwrap();
        let dir = std::env::temp_dir().join(format!("mdb-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let token = dir.join("token");
        std::fs::write(&token, "ghp_example\n").unwrap();
        let env = env(&[
            (ENV_DB_TOKEN_FILE, token.to_str().unwrap()),
            (ENV_GITHUB_TOKEN_FILE, token.to_str().unwrap()),
        ]);
        let c = resolve(raw, &env, &Flags::default()).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            c.source.token.as_ref().map(|t| t.expose()),
            Some("ghp_example")
        );
        let scan = c.scan.unwrap();
        assert!(scan.db_subnets);
        assert_eq!(scan.options.rate, Some(5000));
        assert_eq!(scan.options.timeout, None, "auto, as the example says");
        assert_eq!(scan.state_dir, Some(PathBuf::from("/var/lib/mdb/state")));
        assert_eq!(scan.retention, crate::discover::history::DEFAULT_RETENTION);
        let gh = c.github.unwrap();
        assert_eq!(gh.repo, "you/lab-db");
        assert_eq!(gh.max_new_per_sweep, 10);
    }

    #[test]
    fn history_and_replica_settings_are_checked() {
        let resolve_text = |text: &str, env: &HashMap<String, String>| {
            let raw: RawConfig = toml::from_str(text).unwrap();
            resolve(raw, env, &Flags::default())
        };
        let scan = "[db]\nurl = \"file:///a\"\n[scan]\nsubnets = [\"198.18.0.0/30\"]\n";
        let c = resolve_text(
            &format!("{scan}state_dir = \"/s\"\nretention = \"30d\"\n"),
            &env(&[]),
        )
        .unwrap();
        let sweep = c.scan.unwrap();
        assert_eq!(sweep.state_dir, Some(PathBuf::from("/s")));
        assert_eq!(sweep.retention, Duration::from_secs(30 * 86_400));
        let from_env = resolve_text(scan, &env(&[(ENV_STATE_DIR, "/e")])).unwrap();
        assert_eq!(from_env.scan.unwrap().state_dir, Some(PathBuf::from("/e")));
        let e = resolve_text(&format!("{scan}retention = \"1d\"\n"), &env(&[])).unwrap_err();
        assert!(e.0.contains("at least 7d"), "{e}");

        let replica = "[db]\nurl = \"file:///a\"\n[server]\nscanner = \"mdb-scanner:50052\"\n";
        let c = resolve_text(replica, &env(&[])).unwrap();
        assert_eq!(c.scanner.as_deref(), Some("mdb-scanner:50052"));
        let e = resolve_text(
            &format!("{replica}[scan]\nsubnets = [\"198.18.0.0/30\"]\n"),
            &env(&[]),
        )
        .unwrap_err();
        assert!(e.0.contains("must not sweep"), "{e}");
        let e = resolve_text(&replica.replace("mdb-scanner", "ftp://x"), &env(&[])).unwrap_err();
        assert!(e.0.starts_with("server.scanner:"), "{e}");
    }

    #[test]
    fn github_needs_scan_and_a_token() {
        let raw: RawConfig =
            toml::from_str("[db]\nurl = \"file:///a\"\n[github]\nrepo = \"a/b\"\n").unwrap();
        let e = resolve(raw, &HashMap::new(), &Flags::default()).unwrap_err();
        assert!(e.0.contains("[scan]"), "{e}");
        let raw: RawConfig = toml::from_str("[db]\nurl = \"file:///a\"\n[scan]\nsubnets = [\"198.18.0.0/30\"]\n[github]\nrepo = \"a/b\"\n").unwrap();
        let e = resolve(raw, &HashMap::new(), &Flags::default()).unwrap_err();
        assert!(e.0.contains(ENV_GITHUB_TOKEN), "{e}");
    }

    #[test]
    fn a_github_api_url_octocrab_cannot_use_is_a_config_error() {
        let raw: RawConfig = toml::from_str("[db]\nurl = \"file:///a\"\n[scan]\nsubnets = [\"198.18.0.0/30\"]\n[github]\nrepo = \"a/b\"\napi_url = \"http://bad host/\"\n").unwrap();
        let e = resolve(raw, &env(&[(ENV_GITHUB_TOKEN, "t")]), &Flags::default()).unwrap_err();
        assert!(e.0.starts_with("github.api_url: "), "{e}");
    }

    #[test]
    fn a_token_in_the_url_is_refused_without_being_shown() {
        let raw: RawConfig =
            toml::from_str("[db]\nurl = \"https://x:ghp_secret@github.com/a/b.git\"\n").unwrap();
        let e = resolve(raw, &HashMap::new(), &Flags::default()).unwrap_err();
        assert!(e.0.contains("token_file"), "{e}");
        assert!(!e.0.contains("ghp_secret"), "{e}");
    }
}

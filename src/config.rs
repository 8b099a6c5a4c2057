//! The service's own configuration: a TOML file, overridden by environment
//! variables, overridden by flags. Each subsystem keeps its own settings
//! beside it (`sync::settings`, `discover::settings`, `github::settings`,
//! `provision::settings`); this module layers them, owns `[server]`, and
//! checks the whole before any port is bound. A bad value is one line
//! naming the setting.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::Deserialize;

use crate::settings::{duration, pick};
pub use crate::{
    discover::settings::{scan_timeout, RawScan, ScanFlags, ENV_SCAN_SUBNETS, ENV_STATE_DIR},
    github::settings::{
        RawGithub, ENROL_ISSUE_ONLY, ENROL_PULL_REQUEST, ENV_GITHUB_TOKEN, ENV_GITHUB_TOKEN_FILE,
    },
    provision::settings::{
        ProvisionFlags, RawProvision, ENV_PROVISION_SERVER, ENV_PROVISION_SSH_KEY,
        ENV_PROVISION_STATE_DIR,
    },
    settings::{Env, Error, DEFAULT_SHUTDOWN_GRACE},
    sync::settings::{
        DbFlags, RawDb, DEFAULT_BRANCH, DEFAULT_CHECKOUT, ENV_CHECKOUT, ENV_DB_BRANCH,
        ENV_DB_TOKEN, ENV_DB_TOKEN_FILE, ENV_DB_URL, ENV_POLL, ENV_RESYNC,
    },
    units::{parse_duration, parse_size, MAX_DURATION},
};

pub const ENV_GRPC_LISTEN: &str = "MDB_GRPC_LISTEN";
pub const ENV_METRICS_LISTEN: &str = "MDB_METRICS_LISTEN";
pub const ENV_RUNNER: &str = "MDB_RUNNER";
pub const ENV_SCANNER: &str = "MDB_SCANNER";

pub const DEFAULT_GRPC_LISTEN: &str = "0.0.0.0:50051";
pub const DEFAULT_METRICS_LISTEN: &str = "0.0.0.0:9090";

/// The file as typed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub db: RawDb,
    #[serde(default)]
    pub server: RawServer,
    /// `None` when the file has no `[scan]` (an API replica).
    pub scan: Option<RawScan>,
    pub github: Option<RawGithub>,
    pub provision: Option<RawProvision>,
    pub dhcp: Option<crate::dhcp::settings::RawDhcp>,
    #[serde(default)]
    pub notify: Vec<crate::notify::settings::RawSink>,
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
    /// Several scanners (one per network segment), merged into one view.
    #[serde(default)]
    pub scanners: Vec<String>,
    /// Where a replica keeps each scanner's last view, so that it starts
    /// with it (stale) while that scanner is away.
    pub mirror_cache: Option<PathBuf>,
    /// How often a replica reads each scanner whole again (default 10m):
    /// sweep events carry the histories that changed, not every host's
    /// pulse, so round trips, uptime shares and missed sweeps are as fresh
    /// as this.
    pub mirror_refresh: Option<String>,
    /// The tokens this server takes, by scope.
    #[serde(default)]
    pub tokens: crate::auth::settings::RawTokens,
    /// TLS on the gRPC port, and the CA of mdb's own parts (mutual TLS).
    #[serde(default)]
    pub tls: crate::auth::settings::RawTls,
    /// How the page is signed in to.
    pub web_auth: Option<crate::auth::settings::RawWebAuth>,
    /// The token this process shows the scanners it mirrors (`mirror`).
    pub scanner_token_file: Option<PathBuf>,
    /// The token this process shows the runner whose statuses the page
    /// shows (`runner`).
    pub runner_token_file: Option<PathBuf>,
    /// The client certificate this process shows its scanners and runner.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// Send those tokens over plaintext to another host (not advised).
    #[serde(default)]
    pub allow_plaintext: bool,
}

/// Flags of `mdb serve`, each declared once beside its subsystem's
/// settings; `None` leaves the setting to env or file.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct Flags {
    #[command(flatten)]
    pub db: DbFlags,
    #[command(flatten)]
    pub scan: ScanFlags,
    /// The gRPC port's address, e.g. 0.0.0.0:50051.
    #[arg(long, value_name = "ADDR")]
    pub grpc_listen: Option<String>,
    /// The HTTP port's address (metrics, health, the page), e.g. 0.0.0.0:9090.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// A provisioning runner whose statuses the web page shows.
    #[arg(long)]
    pub runner: Option<String>,
    /// Mirror discovery from this scanner (an API replica; never sweeps).
    #[arg(long)]
    pub scanner: Option<String>,
}

/// Validated settings of `mdb serve` (defined where they are used).
pub use crate::serve::Config;

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
pub fn resolve(raw: RawConfig, env: &Env, flags: &Flags) -> Result<Config, Error> {
    let source = crate::sync::settings::source(&raw.db, env, &flags.db)?;
    let timing = crate::sync::settings::timing(&raw.db, env, &flags.db)?;
    let (grpc_listen, metrics_listen) = listen(&raw.server, env, flags)?;
    let scan = crate::discover::settings::resolve(raw.scan.as_ref(), env, &flags.scan)?;
    let scanner = resolve_scanner(
        &raw.server,
        env,
        flags,
        scan.is_some() && raw.github.is_none(),
    )?;
    let github = match &raw.github {
        None => None,
        Some(_) if scan.is_none() => {
            return Err(Error(format!(
                "github: [github] files what this process's sweeps find, and it sweeps nothing: add a [scan] section with subnets (or {ENV_SCAN_SUBNETS}, --scan), or move [github] to the scanner's configuration"
            )))
        }
        Some(g) => Some(crate::github::settings::resolve(g, env, Some(&source))?),
    };
    if !raw.notify.is_empty() && scan.is_none() {
        return Err(Error(
            "notify: [[notify]] tells what this process's sweeps find, and it sweeps nothing: add a [scan] section, or move [[notify]] to the scanner's configuration".into(),
        ));
    }
    let notify = crate::notify::settings::resolve(
        &raw.notify,
        env,
        scan.as_ref().and_then(|s| s.state_dir.as_deref()),
    )?;
    let auth = server_auth(&raw.server)?;
    let (scanner_creds, runner_creds) = server_credentials(&raw.server, env)?;
    for s in &scanner {
        scanner_creds
            .check_transport(s)
            .map_err(|e| Error(format!("server.scanners: {e}")))?;
    }
    let runner = pick(&flags.runner, env, ENV_RUNNER, &raw.server.runner);
    if let Some(r) = &runner {
        runner_creds
            .check_transport(r)
            .map_err(|e| Error(format!("server.runner: {e}")))?;
    }
    Ok(Config {
        scan,
        github,
        notify,
        source,
        timing,
        grpc_listen,
        metrics_listen,
        auth,
        scanner_creds,
        shutdown_grace: duration(
            "shutdown_grace",
            raw.server.shutdown_grace.clone(),
            DEFAULT_SHUTDOWN_GRACE,
        )?,
        runner: runner.map(|addr| crate::dial::Remote {
            addr,
            creds: runner_creds,
        }),
        scanners: scanner,
        mirror_cache: raw.server.mirror_cache.clone(),
        mirror_refresh: duration(
            "mirror_refresh",
            raw.server.mirror_refresh.clone(),
            crate::discover::mirroring::DEFAULT_REFRESH,
        )?,
    })
}

/// Who may ask `mdb serve`: its tokens, TLS and the page's login.
fn server_auth(s: &RawServer) -> Result<crate::auth::settings::ServerAuth, Error> {
    use crate::auth::{settings, Scope};
    let tokens = settings::tokens(
        &s.tokens,
        &[Scope::Read, Scope::Mirror, Scope::Metrics, Scope::Wake],
        "server",
    )?;
    let (tls, client_certs) = settings::tls(&s.tls, "server")?;
    Ok(settings::ServerAuth {
        tokens: std::sync::Arc::new(tokens),
        tls,
        client_certs,
        login: settings::login(s.web_auth.as_ref(), "server")?,
    })
}

/// What this process shows the scanners it mirrors and the runner.
fn server_credentials(
    s: &RawServer,
    env: &Env,
) -> Result<(crate::dial::Credentials, crate::dial::Credentials), Error> {
    let (cert, key) = (s.client_cert.as_ref(), s.client_key.as_ref());
    let scanner = crate::auth::settings::credentials(
        s.scanner_token_file.as_ref(),
        cert,
        key,
        s.allow_plaintext,
        env,
        "MDB_SCANNER",
        "server",
    )?;
    let runner = crate::auth::settings::credentials(
        s.runner_token_file.as_ref(),
        cert,
        key,
        s.allow_plaintext,
        env,
        "MDB_RUNNER",
        "server",
    )?;
    Ok((scanner, runner))
}

/// Resolves the file's `[provision]` (and `[github]`, for its issues) <
/// env < flags into the runner's settings.
pub fn resolve_provision(
    raw: RawConfig,
    env: &Env,
    flags: &ProvisionFlags,
) -> Result<crate::provision::Config, Error> {
    let mut cfg = crate::provision::settings::resolve(
        raw.provision.as_ref(),
        raw.github.as_ref(),
        env,
        flags,
    )?;
    cfg.notify = crate::notify::settings::resolve(&raw.notify, env, Some(&cfg.state_dir))?;
    let secrets = secret_envs(&raw);
    for name in &cfg.env {
        crate::command::env::check_allowed(name, &secrets)
            .map_err(|why| Error(format!("provision.env: {why}")))?;
    }
    Ok(cfg)
}

/// The environment variables that hold mdb's own secrets: never passed on.
fn secret_envs(raw: &RawConfig) -> Vec<&str> {
    let mut names = vec![ENV_GITHUB_TOKEN, ENV_DB_TOKEN];
    names.extend(raw.notify.iter().filter_map(|s| s.secret_env.as_deref()));
    names
}

/// Resolves the file's `[dhcp]` < env < flags into `mdb dhcp --follow`'s
/// settings.
pub fn resolve_dhcp(
    raw: RawConfig,
    env: &Env,
    flags: &crate::dhcp::settings::DhcpFlags,
    server: Option<String>,
) -> Result<crate::dhcp::Config, Error> {
    let cfg = crate::dhcp::settings::resolve(raw.dhcp.as_ref(), env, flags, server)?;
    let secrets = secret_envs(&raw);
    for name in &cfg.env {
        crate::command::env::check_allowed(name, &secrets)
            .map_err(|why| Error(format!("dhcp.env: {why}")))?;
    }
    Ok(cfg)
}

/// The gRPC and HTTP addresses, which must differ.
fn listen(server: &RawServer, env: &Env, flags: &Flags) -> Result<(SocketAddr, SocketAddr), Error> {
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
        pick(
            &flags.grpc_listen,
            env,
            ENV_GRPC_LISTEN,
            &server.grpc_listen,
        ),
        DEFAULT_GRPC_LISTEN,
    )?;
    let http = addr(
        "metrics_listen",
        pick(
            &flags.metrics_listen,
            env,
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

/// The scanners an API replica follows (`scanner`, or `scanners`, one per
/// segment; the flag and the environment take a comma-separated list):
/// gRPC addresses, each once. A process that sweeps follows others only
/// when it is the filer (`[github]`): the one that files from the merged
/// view of every segment.
fn resolve_scanner(
    raw: &RawServer,
    env: &Env,
    flags: &Flags,
    sweeps: bool,
) -> Result<Vec<String>, Error> {
    let mut given: Vec<String> = match pick(&flags.scanner, env, ENV_SCANNER, &raw.scanner) {
        Some(list) => list.split(',').map(|s| s.trim().to_string()).collect(),
        None => Vec::new(),
    };
    if flags.scanner.is_none() && env.get(ENV_SCANNER).is_none() {
        given.extend(raw.scanners.iter().cloned());
    }
    given.retain(|s| !s.is_empty());
    let mut out: Vec<String> = Vec::new();
    for addr in given {
        if sweeps {
            return Err(Error(format!(
                "server.scanner: this process sweeps itself ([scan]) and files nothing; only the filer (the scanner with [github]) follows other scanners such as {addr}, and a replica that follows must not sweep"
            )));
        }
        crate::dial::endpoint(&addr, None, None)
            .map_err(|e| Error(format!("server.scanner: {e}")))?;
        if out.contains(&addr) {
            return Err(Error(format!("server.scanners: {addr} is named twice")));
        }
        out.push(addr);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, time::Duration};

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
            db: DbFlags {
                db_url: Some("file:///b".into()),
                ..Default::default()
            },
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
            ("MDB_WEBHOOK_SECRET", "s3cret"),
        ]);
        let c = resolve(raw, &env, &Flags::default()).unwrap();
        let n = c.notify.as_ref().unwrap();
        assert_eq!(n.sinks.len(), 3);
        assert_eq!(
            n.ledger,
            Some(PathBuf::from("/var/lib/mdb/state/notify.told"))
        );
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
        assert_eq!(gh.caps.new_per_sweep, 10);
        assert_eq!(gh.caps, crate::github::Caps::default());
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
        assert_eq!(c.scanners, ["mdb-scanner:50052"]);
        let two = resolve_text(
            &replica.replace(
                "scanner = \"mdb-scanner:50052\"",
                "scanners = [\"scan-lab:50052\", \"scan-iot:50052\"]",
            ),
            &env(&[]),
        )
        .unwrap();
        assert_eq!(two.scanners, ["scan-lab:50052", "scan-iot:50052"]);
        let twice = replica.replace(
            "scanner = \"mdb-scanner:50052\"",
            "scanners = [\"a:1\", \"a:1\"]",
        );
        assert!(resolve_text(&twice, &env(&[])).is_err());
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
    fn a_scan_section_that_sweeps_nothing_is_an_error() {
        let raw: RawConfig =
            toml::from_str("[db]\nurl = \"file:///a\"\n[scan]\ninterval = \"1m\"\n").unwrap();
        let e = resolve(raw, &HashMap::new(), &Flags::default()).unwrap_err();
        assert!(
            e.0.starts_with("scan: the [scan] section sweeps nothing"),
            "{e}"
        );
        assert!(e.0.contains("db_subnets = true"), "{e}");
        let raw: RawConfig =
            toml::from_str("[db]\nurl = \"file:///a\"\n[scan]\ninterval = \"1m\"\n").unwrap();
        let env = env(&[(ENV_SCAN_SUBNETS, "198.18.0.0/30")]);
        assert!(resolve(raw, &env, &Flags::default())
            .unwrap()
            .scan
            .is_some());
    }

    #[test]
    fn github_needs_scan_and_a_token() {
        let raw: RawConfig =
            toml::from_str("[db]\nurl = \"file:///a\"\n[github]\nrepo = \"a/b\"\n").unwrap();
        let e = resolve(raw, &HashMap::new(), &Flags::default()).unwrap_err();
        assert!(e.0.starts_with("github: "), "{e}");
        assert!(e.0.contains("add a [scan] section with subnets"), "{e}");
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

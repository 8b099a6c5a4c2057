//! `[provision]` and the flags of `mdb provision`: the runner's server,
//! commands, timing, SSH login and ports, resolved into a
//! [`crate::provision::Config`].

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

use crate::settings::{duration, Env, Error, DEFAULT_SHUTDOWN_GRACE};

/// `[provision]`: the provisioning runner (`mdb provision`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvision {
    pub server: Option<String>,
    pub state_dir: Option<PathBuf>,
    /// The action `machine` (what `provision:` in mdb.yaml names by default).
    #[serde(default)]
    pub machine_command: Vec<String>,
    /// More actions by name, for `provision:` in mdb.yaml to choose.
    #[serde(default)]
    pub actions: std::collections::BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub cluster_command: Vec<String>,
    /// How often machines judged by readiness alone are checked again.
    pub recheck_interval: Option<String>,
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
    /// How long a woken machine's SSH is awaited (`wake: true`).
    pub wake_timeout: Option<String>,
    pub grpc_listen: Option<String>,
    pub metrics_listen: Option<String>,
    pub shutdown_grace: Option<String>,
    /// Environment variables the commands inherit beyond PATH, HOME, LANG
    /// and the like (e.g. `ANSIBLE_CONFIG`); never one of mdb's secrets.
    #[serde(default)]
    pub env: Vec<String>,
    /// The token the runner shows its server (scope `read`).
    pub token_file: Option<PathBuf>,
    /// The client certificate the runner shows its server (mutual TLS).
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// Send the token over plaintext to another host (not advised).
    #[serde(default)]
    pub allow_plaintext: bool,
    /// The tokens the runner's own port takes (`runner`, `metrics`).
    #[serde(default)]
    pub tokens: crate::auth::settings::RawTokens,
    /// TLS on the runner's own gRPC port.
    #[serde(default)]
    pub tls: crate::auth::settings::RawTls,
}

/// Flags of `mdb provision`; each over the environment and the file.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct ProvisionFlags {
    /// The mdb server to follow.
    #[arg(long)]
    pub server: Option<String>,
    /// State file, inventories and known hosts.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    #[arg(long)]
    pub grpc_listen: Option<String>,
    #[arg(long)]
    pub metrics_listen: Option<String>,
    /// Print what would run for the current revision and exit.
    #[arg(long)]
    pub dry_run: bool,
}

pub const ENV_PROVISION_SERVER: &str = "MDB_PROVISION_SERVER";
pub const ENV_PROVISION_STATE_DIR: &str = "MDB_PROVISION_STATE_DIR";
pub const ENV_PROVISION_SSH_KEY: &str = "MDB_PROVISION_SSH_KEY";

/// The runner's actions by name: `machine_command` is the action
/// `machine`, `[provision.actions]` adds more. Names are what `provision:`
/// in mdb.yaml says (DNS labels); a command is never empty.
fn actions(r: &RawProvision) -> Result<std::collections::BTreeMap<String, Vec<String>>, Error> {
    let mut out = r.actions.clone();
    if !r.machine_command.is_empty() {
        let default = crate::db::policy::DEFAULT_ACTION.to_string();
        if out
            .insert(default.clone(), r.machine_command.clone())
            .is_some()
        {
            return Err(Error(format!(
                "provision: machine_command and actions.{default} are the same action; give one"
            )));
        }
    }
    for (name, argv) in &out {
        crate::db::load::check_dns_label(name)
            .map_err(|why| Error(format!("provision.actions.{name}: the name {why}")))?;
        if argv.is_empty() || argv[0].trim().is_empty() {
            return Err(Error(format!("provision.actions.{name}: an empty command")));
        }
    }
    Ok(out)
}

/// How the runner logs in to check that a machine can be provisioned.
fn provision_ssh(
    r: &RawProvision,
    env: &Env,
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
        wake_timeout: duration(
            "provision.wake_timeout",
            r.wake_timeout.clone(),
            crate::wake::DEFAULT_WAKE_TIMEOUT,
        )?,
    })
}

/// Who may ask the runner's own port.
fn runner_auth(r: &RawProvision) -> Result<crate::auth::settings::ServerAuth, Error> {
    use crate::auth::{settings, Scope};
    let tokens = settings::tokens(&r.tokens, &[Scope::Runner, Scope::Metrics], "provision")?;
    let (tls, client_certs) = settings::tls(&r.tls, "provision")?;
    Ok(settings::ServerAuth {
        tokens: std::sync::Arc::new(tokens),
        tls,
        client_certs,
        login: Default::default(),
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
pub fn resolve(
    raw: Option<&RawProvision>,
    github: Option<&crate::github::settings::RawGithub>,
    env: &Env,
    flags: &ProvisionFlags,
) -> Result<crate::provision::Config, Error> {
    use crate::provision as p;
    let r = raw.cloned().unwrap_or_default();
    let server = flags
        .server
        .clone()
        .or_else(|| env.get(ENV_PROVISION_SERVER).cloned())
        .or(r.server.clone())
        .unwrap_or_else(|| "http://127.0.0.1:50051".into());
    crate::dial::url(&server).map_err(|e| Error(format!("provision.server: {e}")))?;
    let creds = crate::auth::settings::credentials(
        r.token_file.as_ref(),
        r.client_cert.as_ref(),
        r.client_key.as_ref(),
        r.allow_plaintext,
        env,
        "MDB_PROVISION",
        "provision",
    )?;
    creds
        .check_transport(&server)
        .map_err(|e| Error(format!("provision.server: {e}")))?;
    let auth = runner_auth(&r)?;
    let state_dir = flags
        .state_dir
        .clone()
        .or_else(|| env.get(ENV_PROVISION_STATE_DIR).map(PathBuf::from))
        .or(r.state_dir.clone())
        .unwrap_or_else(|| PathBuf::from(p::DEFAULT_STATE_DIR));
    let actions = actions(&r)?;
    if actions.is_empty() && r.cluster_command.is_empty() && !flags.dry_run {
        return Err(Error(
            "provision: set machine_command, [provision.actions] or cluster_command (or run with --dry-run)".into(),
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
        server: crate::dial::Remote {
            addr: server,
            creds,
        },
        auth,
        actions,
        recheck: duration(
            "provision.recheck_interval",
            r.recheck_interval.clone(),
            p::DEFAULT_RECHECK,
        )?,
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
        env: r.env.clone(),
        notify: None,
        github: match github {
            Some(g) => {
                let mut g = crate::github::settings::resolve(g, env, None)?;
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

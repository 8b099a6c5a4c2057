//! `[dhcp]` and the flags of `mdb dhcp --follow`: the server to follow,
//! the targets, lease files and the HTTP port, resolved into a
//! [`super::Config`]. A follower with no target at all is an error.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::Deserialize;

use crate::settings::{duration, Env, Error, DEFAULT_SHUTDOWN_GRACE};

pub const ENV_DHCP_SERVER: &str = "MDB_DHCP_SERVER";
pub const DEFAULT_METRICS_LISTEN: &str = "0.0.0.0:9094";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/mdb/dhcp";
pub const DEFAULT_RECHECK: Duration = Duration::from_secs(60);

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDhcp {
    pub server: Option<String>,
    pub hostsdir: Option<PathBuf>,
    pub kea_reservations: Option<PathBuf>,
    pub kea_socket: Option<PathBuf>,
    #[serde(default)]
    pub hook: Vec<String>,
    #[serde(default)]
    pub leases: Vec<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub debounce: Option<String>,
    pub recheck_interval: Option<String>,
    pub metrics_listen: Option<String>,
    pub shutdown_grace: Option<String>,
    /// Environment variables the hook inherits beyond PATH, HOME, LANG and
    /// the like; never one of mdb's secrets.
    #[serde(default)]
    pub env: Vec<String>,
    /// The token the follower shows its server (scope `read`).
    pub token_file: Option<PathBuf>,
    /// The client certificate the follower shows its server (mutual TLS).
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// Send the token over plaintext to another host (not advised).
    #[serde(default)]
    pub allow_plaintext: bool,
    /// The tokens its own HTTP port takes (`metrics`).
    #[serde(default)]
    pub tokens: crate::auth::settings::RawTokens,
}

/// Flags of `mdb dhcp --follow` (where it applies reservations); each over
/// the file's. The server is `mdb dhcp`'s own `--server`.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct DhcpFlags {
    /// A dnsmasq (or Pi-hole) --dhcp-hostsdir: one file per machine.
    #[arg(long, requires = "follow")]
    pub hostsdir: Option<PathBuf>,
    /// The reservations file Kea's configuration includes.
    #[arg(long, requires = "follow")]
    pub kea_reservations: Option<PathBuf>,
    /// Kea's control socket (config-reload is sent after each change).
    #[arg(long, requires = "follow")]
    pub kea_socket: Option<PathBuf>,
    /// A command run after each change, one argument per --hook; {file} is
    /// a file of every reservation (MAC,IP,NAME lines).
    #[arg(long, requires = "follow", allow_hyphen_values = true)]
    pub hook: Vec<String>,
    /// A DHCP lease file (dnsmasq, ISC dhcpd or Kea CSV); repeatable. A
    /// reservation another MAC's live lease holds is refused.
    #[arg(long, requires = "follow")]
    pub leases: Vec<PathBuf>,
    #[arg(long, requires = "follow")]
    pub state_dir: Option<PathBuf>,
    /// Metrics, /status and /healthz.
    #[arg(long, requires = "follow")]
    pub metrics_listen: Option<String>,
}

/// Resolves `[dhcp]` < env < flags; `server` is the `--server` given, if
/// one was.
pub fn resolve(
    raw: Option<&RawDhcp>,
    env: &Env,
    flags: &DhcpFlags,
    server: Option<String>,
) -> Result<super::Config, Error> {
    let r = raw.cloned().unwrap_or_default();
    let server = server
        .or_else(|| env.get(ENV_DHCP_SERVER).cloned())
        .or(r.server.clone())
        .unwrap_or_else(|| "http://127.0.0.1:50051".into());
    crate::dial::url(&server).map_err(|e| Error(format!("dhcp.server: {e}")))?;
    let creds = crate::auth::settings::credentials(
        r.token_file.as_ref(),
        r.client_cert.as_ref(),
        r.client_key.as_ref(),
        r.allow_plaintext,
        env,
        "MDB_DHCP",
        "dhcp",
    )?;
    creds
        .check_transport(&server)
        .map_err(|e| Error(format!("dhcp.server: {e}")))?;
    let tokens = crate::auth::settings::tokens(&r.tokens, &[crate::auth::Scope::Metrics], "dhcp")?;
    let kea = match (flags.kea_reservations.clone().or(r.kea_reservations.clone()), flags.kea_socket.clone().or(r.kea_socket.clone())) {
        (Some(reservations), Some(socket)) => Some(super::Kea { reservations, socket }),
        (None, None) => None,
        _ => return Err(Error("dhcp: Kea needs both kea_reservations (the file its configuration includes) and kea_socket (its control socket)".into())),
    };
    let hostsdir = flags.hostsdir.clone().or(r.hostsdir.clone());
    let hook = if flags.hook.is_empty() {
        r.hook.clone()
    } else {
        flags.hook.clone()
    };
    if hostsdir.is_none() && kea.is_none() && hook.is_empty() {
        return Err(Error("dhcp: nothing to apply reservations to; give hostsdir (dnsmasq, Pi-hole), kea_reservations and kea_socket, or hook".into()));
    }
    if let Some(dir) = &hostsdir {
        if !dir.is_dir() {
            return Err(Error(format!(
                "dhcp.hostsdir: {} is not a directory",
                dir.display()
            )));
        }
    }
    let listen = flags
        .metrics_listen
        .clone()
        .or(r.metrics_listen.clone())
        .unwrap_or_else(|| DEFAULT_METRICS_LISTEN.into());
    let metrics_listen: SocketAddr = listen.parse().map_err(|_| {
        Error(format!(
            "dhcp.metrics_listen: {listen:?} is not an address like 0.0.0.0:9094"
        ))
    })?;
    let mut leases = r.leases.clone();
    leases.extend(flags.leases.iter().cloned());
    Ok(super::Config {
        server: crate::dial::Remote {
            addr: server,
            creds,
        },
        tokens: std::sync::Arc::new(tokens),
        hostsdir,
        kea,
        hook,
        env: r.env.clone(),
        leases,
        state_dir: flags
            .state_dir
            .clone()
            .or(r.state_dir.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
        debounce: duration("dhcp.debounce", r.debounce.clone(), Duration::from_secs(1))?,
        recheck: duration(
            "dhcp.recheck_interval",
            r.recheck_interval.clone(),
            DEFAULT_RECHECK,
        )?,
        metrics_listen,
        shutdown_grace: duration(
            "dhcp.shutdown_grace",
            r.shutdown_grace.clone(),
            DEFAULT_SHUTDOWN_GRACE,
        )?,
    })
}

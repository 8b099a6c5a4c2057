//! The provisioning runner (`mdb provision`): follows a server's `Watch`,
//! works out what changed since the last finished run (`plan`, pure),
//! checks that each machine can be provisioned (`ready`), runs the
//! configured commands (`run`) one target at a time, and remembers what it
//! applied (`state`), so a restart neither skips nor repeats work. It never
//! acts on a host that is not in the database, and a removed machine
//! triggers nothing unless a removal command is configured.

pub mod metrics;
pub mod pins;
pub mod plan;
pub mod ready;
pub mod report;
pub mod runner;
pub mod settings;
pub mod state;
pub mod status;
pub mod waking;
mod work;

use std::{net::SocketAddr, path::PathBuf, time::Duration};

/// Settings of `mdb provision` (`[provision]` in the TOML file).
#[derive(Clone, Debug)]
pub struct Config {
    /// The mdb server whose `Watch` drives the runner, and what the runner
    /// shows it of who it is.
    pub server: crate::dial::Remote,
    /// Who may ask the runner's own port.
    pub auth: crate::auth::settings::ServerAuth,
    /// Where the state file, inventories and known hosts live.
    pub state_dir: PathBuf,
    /// Commands by action name (`machine` is `machine_command`), run for
    /// the changed machines `provision:` in mdb.yaml gives that action, e.g.
    /// `ansible-playbook -i {inventory} --limit {hosts} site.yml`.
    pub actions: std::collections::BTreeMap<String, Vec<String>>,
    /// How often machines judged by readiness alone are checked again.
    pub recheck: Duration,
    /// Run per changed cluster, e.g. k3s-ansible's playbook with `{inventory}`.
    pub cluster_command: Vec<String>,
    /// The cluster inventory written for `cluster_command`.
    pub cluster_format: ClusterFormat,
    /// Run for removed machines; nothing happens to them without it.
    pub removal_command: Vec<String>,
    /// Longest one run may take before it is killed.
    pub timeout: Duration,
    /// First wait before a failed target is tried again; doubles per failure.
    pub retry_base: Duration,
    /// Longest wait between tries of a failing target.
    pub retry_max: Duration,
    /// Quiet time after the last change before work starts (a burst of
    /// commits gives one run on the newest revision).
    pub debounce: Duration,
    pub ssh: ready::SshLogin,
    pub grpc_listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    /// Print what would run; run nothing and change no state.
    pub dry_run: bool,
    /// Environment variables commands inherit beyond [`crate::command::env::ALWAYS`]
    /// (`[provision] env`); never one of mdb's own secrets.
    pub env: Vec<String>,
    /// Where failures are filed as issues, if anywhere.
    pub github: Option<crate::github::Config>,
    /// Where news of runs goes (`[[notify]]`).
    pub notify: Option<crate::notify::Config>,
    pub shutdown_grace: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterFormat {
    K3s,
    Kubespray,
}

impl ClusterFormat {
    pub const WORDS: &'static [(&'static str, ClusterFormat)] = &[
        ("k3s", ClusterFormat::K3s),
        ("kubespray", ClusterFormat::Kubespray),
    ];
}

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_secs(30);
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(15 * 60);
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_secs(5);
pub const DEFAULT_RECHECK: Duration = Duration::from_secs(60);
pub const DEFAULT_GRPC_LISTEN: &str = "0.0.0.0:50053";
pub const DEFAULT_METRICS_LISTEN: &str = "0.0.0.0:9093";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/mdb/provision";

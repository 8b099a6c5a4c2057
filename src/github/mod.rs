//! GitHub: issues for hosts that need a person. `fingerprint` is the
//! identity of a problem, `text` what an issue says, `plan` the pure
//! decision of what to change, `http` the one request path with its retry
//! policy, `filer` the task that carries a plan out. GitHub is the shared
//! state: local memory is only a cache.

pub mod enrol;
pub mod entry;
pub mod error;
pub mod filer;
pub mod fingerprint;
pub mod http;
pub mod issues;
pub mod metrics;
pub mod plan;
pub mod pulls;
pub mod settings;
pub mod text;
pub mod trust;

use std::time::Duration;

use crate::secret::Secret;

pub use filer::{run, Filer, Summary};
pub use fingerprint::Fingerprint;
pub use http::{client, Error};
pub use metrics::GithubMetrics;
pub use plan::{plan, resolution, Known, Op};
pub use text::{body, files_issue, kind, title};
pub use trust::Trailer;

pub const DEFAULT_API_URL: &str = "https://api.github.com";
pub const DEFAULT_LABELS: &[&str] = &["mdb", "priority/high"];
pub const DEFAULT_MAX_NEW_PER_SWEEP: usize = 10;
pub const DEFAULT_MAX_OPEN_ISSUES: usize = 50;
pub const DEFAULT_MAX_OPEN_PULLS: usize = 20;
pub const DEFAULT_MAX_RESERVED: usize = 20;
/// GitHub asks for content-creating requests to be at least a second apart.
pub const DEFAULT_WRITE_GAP: Duration = Duration::from_secs(1);
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_secs(1);
/// The longest mdb waits for a rate limit before giving up until next sweep.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(15 * 60);
/// Pages of 100 issues read at most when looking for mdb's own.
pub const MAX_PAGES: u32 = 50;

/// Bounds on what mdb opens on GitHub, so a device flooding the LAN with
/// new MACs can neither bury the repository in issues and pull requests
/// nor reserve the whole static range. What is over a cap waits, counted
/// in `mdb_github_deferred{cap}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    /// New issues per sweep; the rest wait for the next sweep.
    pub new_per_sweep: usize,
    /// mdb's issues open at once.
    pub open_issues: usize,
    /// mdb's enrolment pull requests open at once.
    pub open_pulls: usize,
    /// Addresses open enrolment pull requests hold at once.
    pub reserved: usize,
}

impl Default for Caps {
    fn default() -> Caps {
        Caps {
            new_per_sweep: DEFAULT_MAX_NEW_PER_SWEEP,
            open_issues: DEFAULT_MAX_OPEN_ISSUES,
            open_pulls: DEFAULT_MAX_OPEN_PULLS,
            reserved: DEFAULT_MAX_RESERVED,
        }
    }
}

/// Which cap held something back, as `mdb_github_deferred{cap}` spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cap {
    NewPerSweep,
    OpenIssues,
    OpenPulls,
    Reserved,
}

impl Cap {
    pub const WORDS: &'static [(&'static str, Cap)] = &[
        ("new_per_sweep", Cap::NewPerSweep),
        ("open_issues", Cap::OpenIssues),
        ("open_pulls", Cap::OpenPulls),
        ("reserved", Cap::Reserved),
    ];

    /// The setting that sets this cap.
    pub fn setting(self) -> &'static str {
        match self {
            Cap::NewPerSweep => "github.max_new_per_sweep",
            Cap::OpenIssues => "github.max_open_issues",
            Cap::OpenPulls => "github.max_open_pulls",
            Cap::Reserved => "github.max_reserved",
        }
    }
}

/// How many problems each cap held back in one pass.
pub type Deferred = std::collections::BTreeMap<Cap, usize>;

#[derive(Clone, Debug)]
pub struct Config {
    /// `owner/name` of the repository issues go to.
    pub repo: String,
    pub token: Secret,
    pub api_url: String,
    /// Added to every issue, with the problem kind.
    pub labels: Vec<String>,
    pub assignee: Option<String>,
    /// How much mdb opens per sweep and keeps open at once.
    pub caps: Caps,
    pub write_gap: Duration,
    /// First backoff after a 5xx or a timeout; doubles per attempt.
    pub retry_base: Duration,
    pub max_wait: Duration,
    /// Connect and read timeout of one request.
    pub timeout: Duration,
    /// Enrolment pull requests; `None` files issues only.
    pub enrol: Option<enrol::EnrolConfig>,
}

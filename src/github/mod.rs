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
/// GitHub asks for content-creating requests to be at least a second apart.
pub const DEFAULT_WRITE_GAP: Duration = Duration::from_secs(1);
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_secs(1);
/// The longest mdb waits for a rate limit before giving up until next sweep.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(15 * 60);
/// Pages of 100 issues read at most when looking for mdb's own.
pub const MAX_PAGES: u32 = 50;

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
    /// Enrolment pull requests; `None` files issues only.
    pub enrol: Option<enrol::EnrolConfig>,
}

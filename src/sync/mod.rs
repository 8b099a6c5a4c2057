//! Keeps a local checkout of the DB repository in step with its remote
//! (git2) and hands each new, valid revision to the [`Store`].
//!
//! The checkout always mirrors the remote branch: every change is taken by
//! a hard reset, never a merge, and hourly the checkout is reset and cleaned
//! even when nothing changed. A revision that fails validation is never
//! served; the last good one stays. Files are read from the fetched commit's
//! tree in the object database, so local edits cannot leak into what is served.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use git2::{build::CheckoutBuilder, Oid, Repository, ResetType};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

mod backoff;
pub mod metrics;
mod network;
pub mod packs;
pub mod propose;
pub mod settings;

use backoff::Backoff;
pub(crate) use network::{callbacks, network_error};
use network::{on_thread, FetchJob};
pub use network::{redact_url, set_git_timeouts};

use metrics::{RunResult, SyncMetrics};

use crate::{
    db::{self, Report, Snapshot, Store},
    secret::Secret,
};

/// Where the database comes from.
#[derive(Clone, Debug)]
pub struct Source {
    /// https://, file:// or a local path. Credentials never go here.
    pub url: String,
    pub branch: String,
    /// Sent as the password of HTTPS basic auth (GitHub accepts tokens so).
    pub token: Option<Secret>,
    /// The local checkout; created, repaired or replaced as needed.
    pub checkout: PathBuf,
    /// Bound on one whole fetch (connect, ref advertisement and transfer),
    /// since libgit2 has no overall network timeout.
    pub fetch_timeout: Duration,
    /// What one revision may make mdb read.
    pub limits: db::Limits,
}

#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// How often the remote is asked for a new commit.
    pub poll: Duration,
    /// How often the checkout is reset and cleaned even when unchanged.
    pub resync: Duration,
}

pub const DEFAULT_POLL: Duration = Duration::from_secs(120);
pub const DEFAULT_RESYNC: Duration = Duration::from_secs(3600);
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("checkout at {path} is unusable: {message}")]
    Checkout { path: String, message: String },
    #[error("fetching {url}: {message}")]
    Fetch { url: String, message: String },
    #[error("fetching {url}: authentication failed (token missing or refused)")]
    Auth { url: String },
    #[error("branch {branch:?} not found at {url}")]
    NoBranch { url: String, branch: String },
    #[error("reading revision {revision}: {message}")]
    Read { revision: String, message: String },
    #[error("revision {revision} is invalid, still serving the last good one: {report}")]
    Invalid { revision: String, report: Report },
    #[error("fetching {url}: no complete answer within {after:?} (the remote hangs or drips)")]
    Stalled { url: String, after: Duration },
}

impl Error {
    /// Every value of [`Error::metric_label`], for series created at 0.
    pub const LABELS: &'static [&'static str] = &[
        "checkout",
        "fetch",
        "auth",
        "no_branch",
        "read",
        "invalid",
        "timeout",
    ];

    /// A fixed, small label set for `mdb_sync_errors_total{kind}`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Checkout { .. } => "checkout",
            Error::Fetch { .. } => "fetch",
            Error::Auth { .. } => "auth",
            Error::NoBranch { .. } => "no_branch",
            Error::Read { .. } => "read",
            Error::Invalid { .. } => "invalid",
            Error::Stalled { .. } => "timeout",
        }
    }
}

pub enum Outcome {
    /// The remote head is the revision already served.
    Unchanged(Oid),
    Loaded(Box<Snapshot>),
}

/// The ref in the checkout that marks the last revision that validated,
/// so a restart can serve it before (or without) reaching the remote.
const LAST_GOOD_REF: &str = "refs/mdb/last-good";

/// The local checkout. Blocking: call from `spawn_blocking`.
pub struct Checkout {
    src: Source,
    repo: Option<Repository>,
    /// A revision that failed validation, with its report, so an unchanged
    /// bad head is reported again without validating it again.
    failed: Option<(Oid, Report)>,
    /// Set on shutdown: a waiting fetch returns at once.
    stop: Arc<AtomicBool>,
    /// Times the checkout was thrown away and cloned again.
    pub reclones: u64,
}

impl Checkout {
    pub fn new(src: Source) -> Checkout {
        Checkout {
            src,
            repo: None,
            failed: None,
            stop: Arc::new(AtomicBool::new(false)),
            reclones: 0,
        }
    }

    pub fn source(&self) -> &Source {
        &self.src
    }

    /// A flag that, once set, ends a fetch being waited for.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    fn url(&self) -> String {
        redact_url(&self.src.url)
    }

    fn checkout_error(&self, e: impl std::fmt::Display) -> Error {
        Error::Checkout {
            path: self.src.checkout.display().to_string(),
            message: e.to_string(),
        }
    }

    /// Opens the checkout, or starts a fresh one where it is missing or broken.
    fn repo(&mut self) -> Result<&Repository, Error> {
        if self.repo.is_none() {
            let path = &self.src.checkout;
            let repo = match Repository::open(path) {
                Ok(r) => r,
                Err(e) => {
                    if path.exists() {
                        warn!(path = %path.display(), error = %e, "checkout is not a usable repository; starting over");
                        std::fs::remove_dir_all(path).map_err(|e| self.checkout_error(e))?;
                        self.reclones += 1;
                    }
                    Repository::init(path).map_err(|e| self.checkout_error(e))?
                }
            };
            self.repo = Some(repo);
        }
        self.repo
            .as_ref()
            .ok_or_else(|| self.checkout_error("not open"))
    }

    /// Past `packs::MAX_PACKS`, the checkout's packs written again as one;
    /// the open repository goes with the old packs' file descriptors.
    fn compact(&mut self) {
        match packs::compact(&self.src.checkout) {
            Ok(0) => {}
            Ok(removed) => {
                debug!(removed, "packs of the checkout written again as one");
                self.repo = None;
            }
            Err(e) => warn!(error = %e, "cannot write the checkout's packs again as one"),
        }
    }

    /// Throws the checkout away; the next step re-creates it. Only for a
    /// checkout that is broken, never because the remote could not be reached.
    fn discard(&mut self) -> Result<(), Error> {
        self.repo = None;
        if self.src.checkout.exists() {
            std::fs::remove_dir_all(&self.src.checkout).map_err(|e| self.checkout_error(e))?;
        }
        self.reclones += 1;
        Ok(())
    }

    /// Fetches the branch and returns the remote head, within the fetch
    /// timeout whatever the remote does: the fetch runs on a thread of its
    /// own that is abandoned at the deadline or at shutdown.
    pub fn fetch(&mut self) -> Result<Oid, Error> {
        self.repo()?;
        let shown = self.url();
        let after = self.src.fetch_timeout;
        let job = FetchJob {
            path: self.src.checkout.clone(),
            url: self.src.url.clone(),
            shown: shown.clone(),
            branch: self.src.branch.clone(),
            token: self.src.token.clone(),
            after,
            abandon: Arc::new(AtomicBool::new(false)),
        };
        let abandon = job.abandon.clone();
        on_thread(&self.stop, abandon, &shown, after, move || job.run())
    }

    /// The last revision that validated in this checkout, validated again:
    /// what a restart serves while the remote cannot be reached.
    pub fn last_good(&mut self) -> Option<Snapshot> {
        if !self.src.checkout.join(".git").exists() {
            return None;
        }
        let oid = self.repo().ok()?.refname_to_id(LAST_GOOD_REF).ok()?;
        let intake = self.files_at(oid).ok()?;
        intake.validate(&oid.to_string()).ok()
    }

    fn mark_good(&mut self, oid: Oid) {
        if let Ok(repo) = self.repo() {
            if let Err(e) = repo.reference(LAST_GOOD_REF, oid, true, "validated") {
                warn!(error = %e, "cannot record the last good revision in the checkout");
            }
        }
    }

    /// Whether the checkout itself is damaged (as opposed to the remote
    /// being away): the tracking branch's commit and tree cannot be read.
    fn is_damaged(&mut self) -> bool {
        let tracking = format!("refs/remotes/origin/{}", self.src.branch);
        let Ok(repo) = self.repo() else {
            return true;
        };
        match repo.refname_to_id(&tracking) {
            Err(_) => false,
            Ok(oid) => repo.find_commit(oid).and_then(|c| c.tree()).is_err(),
        }
    }

    /// Makes the working tree exactly the given commit: reset, then remove
    /// what is untracked.
    pub fn reset(&mut self, oid: Oid) -> Result<(), Error> {
        let repo = self.repo()?;
        let result = (|| {
            let commit = repo.find_commit(oid)?;
            let mut co = CheckoutBuilder::new();
            co.force();
            repo.reset(commit.as_object(), ResetType::Hard, Some(&mut co))?;
            // A hard reset leaves untracked and ignored files; remove them.
            let mut opts = git2::StatusOptions::new();
            opts.include_untracked(true)
                .recurse_untracked_dirs(false)
                .include_ignored(true);
            let workdir = repo.workdir().map(PathBuf::from);
            let stray: Vec<PathBuf> = repo
                .statuses(Some(&mut opts))?
                .iter()
                .filter(|e| {
                    e.status()
                        .intersects(git2::Status::WT_NEW | git2::Status::IGNORED)
                })
                .filter_map(|e| e.path().map(PathBuf::from))
                .collect();
            if let Some(root) = workdir {
                for rel in stray {
                    let path = root.join(rel);
                    let removed = if path.is_dir() {
                        std::fs::remove_dir_all(&path)
                    } else {
                        std::fs::remove_file(&path)
                    };
                    if let Err(e) = removed {
                        return Err(git2::Error::from_str(&format!(
                            "removing {}: {e}",
                            path.display()
                        )));
                    }
                }
            }
            Ok(())
        })();
        result.map_err(|e: git2::Error| self.checkout_error(e))
    }

    /// Every database file in the commit's tree, straight from the object
    /// database, within the size limits (sizes are read from object headers,
    /// so an oversized blob is never loaded).
    pub fn files_at(&mut self, oid: Oid) -> Result<db::Intake, Error> {
        let limits = self.src.limits;
        files_in_commit(self.repo()?, oid, limits)
    }

    /// One sync step: fetch, mirror the remote, and load the head if it is
    /// new. `hard` also resets and cleans an unchanged checkout. A remote
    /// that cannot be reached leaves the checkout alone; only a damaged
    /// checkout is cloned again.
    pub fn step(&mut self, served: Option<&str>, hard: bool) -> Result<Outcome, Error> {
        let head = match self.fetch() {
            Ok(h) => h,
            Err(e @ Error::Fetch { .. }) if self.is_damaged() => {
                warn!(url = %self.url(), error = %e, "the checkout is damaged; cloning again");
                self.discard()?;
                self.fetch()?
            }
            Err(e) => return Err(e),
        };
        self.compact();
        let current = self.repo()?.head().ok().and_then(|h| h.target());
        if hard || current != Some(head) {
            if let Err(e) = self.reset(head) {
                warn!(error = %e, "reset failed; cloning again");
                self.discard()?;
                let head = self.fetch()?;
                self.reset(head)?;
            }
        }
        let rev = head.to_string();
        if served == Some(rev.as_str()) {
            return Ok(Outcome::Unchanged(head));
        }
        if let Some((bad, report)) = &self.failed {
            if *bad == head {
                return Err(Error::Invalid {
                    revision: rev,
                    report: report.clone(),
                });
            }
        }
        match self.files_at(head)?.validate(&rev) {
            Ok(snap) => {
                self.failed = None;
                self.mark_good(head);
                Ok(Outcome::Loaded(Box::new(snap)))
            }
            Err(report) => {
                self.failed = Some((head, report.clone()));
                Err(Error::Invalid {
                    revision: rev,
                    report,
                })
            }
        }
    }
}

/// Every database file in a commit's tree, straight from the object
/// database, within the size limits (sizes are read from object headers,
/// so an oversized blob is never loaded).
pub(crate) fn files_in_commit(
    repo: &Repository,
    oid: Oid,
    limits: db::Limits,
) -> Result<db::Intake, Error> {
    let read = |e: git2::Error| Error::Read {
        revision: oid.to_string(),
        message: e.message().to_string(),
    };
    let tree = repo.find_commit(oid).and_then(|c| c.tree()).map_err(read)?;
    let mut paths = Vec::new();
    tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
        let path = format!("{dir}{}", entry.name().unwrap_or(""));
        let link = entry.filemode() == i32::from(git2::FileMode::Link);
        let wanted = db::is_db_file(&path) || (link && db::in_machines(&path));
        if entry.kind() == Some(git2::ObjectType::Blob) && wanted {
            paths.push((path, entry.id(), link));
        }
        git2::TreeWalkResult::Ok
    })
    .map_err(read)?;
    paths.sort();
    let odb = repo.odb().map_err(read)?;
    let mut intake = db::Intake::new(limits);
    for (path, id, link) in paths {
        if link {
            intake.refuse_link(&path);
            continue;
        }
        let (size, _) = odb.read_header(id).map_err(read)?;
        if intake.admit(&path, size as u64) {
            let blob = repo.find_blob(id).map_err(read)?;
            intake.add(path, blob.content().to_vec());
        }
    }
    Ok(intake)
}

/// Returns freed heap pages to the OS (glibc keeps them otherwise, and a
/// 100k-machine load frees a lot).
fn release_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The sync loop: the last good local revision first (so a restart during
/// an outage still serves), then one step now and every `poll`; failures
/// retry sooner with backoff. Ends as soon as `shutdown` is cancelled, even
/// in the middle of a fetch.
pub async fn run(
    checkout: Checkout,
    timing: Timing,
    store: Arc<Store>,
    metrics: SyncMetrics,
    shutdown: CancellationToken,
) {
    let stop = checkout.stop_flag();
    let _stop_on_cancel = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            stop.store(true, Ordering::SeqCst);
        })
    };
    let checkout = Arc::new(Mutex::new(checkout));
    serve_last_good(&checkout, &store, &metrics).await;
    let mut last_hard: Option<Instant> = None;
    let mut backoff = Backoff::new(timing.poll);
    let mut last_logged = String::new();
    loop {
        let hard = last_hard.is_none_or(|t| t.elapsed() >= timing.resync);
        let served = store.snapshot().map(|s| s.revision.clone());
        let started = Instant::now();
        let c = checkout.clone();
        let step = tokio::task::spawn_blocking(move || {
            let mut c = c.lock().unwrap_or_else(|p| p.into_inner());
            let result = c.step(served.as_deref(), hard);
            (result, c.reclones)
        });
        let (result, reclones) = tokio::select! {
            _ = shutdown.cancelled() => return,
            joined = step => joined.unwrap_or_else(|e| {
                (Err(Error::Checkout {
                    path: String::new(),
                    message: format!("sync step panicked: {e}"),
                }), 0)
            }),
        };
        metrics.step_took(started.elapsed().as_secs_f64(), reclones);
        let wait = match result {
            Ok(outcome) => {
                if hard {
                    last_hard = Some(Instant::now());
                }
                last_logged.clear();
                publish(outcome, &store, &metrics).await;
                backoff.succeeded()
            }
            Err(e) => {
                report_failure(&e, &store, &metrics, &mut last_logged);
                // A rejected revision's parse trees are freed by now.
                let _ = tokio::task::spawn_blocking(release_memory).await;
                backoff.failed(&e)
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Serves the checkout's last good revision, if there is one, before the
/// remote is asked: a restart while the remote is away keeps serving.
async fn serve_last_good(checkout: &Arc<Mutex<Checkout>>, store: &Store, metrics: &SyncMetrics) {
    let c = checkout.clone();
    let found = tokio::task::spawn_blocking(move || {
        c.lock().unwrap_or_else(|p| p.into_inner()).last_good()
    })
    .await
    .ok()
    .flatten();
    if let Some(snap) = found {
        info!(revision = %snap.revision, machines = snap.machines.len(), "serving the last good revision of the checkout until the remote answers");
        let snap = store.publish(snap);
        metrics.published(&snap);
    }
}

async fn publish(outcome: Outcome, store: &Store, metrics: &SyncMetrics) {
    match outcome {
        Outcome::Unchanged(head) => {
            debug!(revision = %head, "database unchanged");
            store.sync_ok();
            metrics.succeeded(RunResult::Unchanged);
        }
        Outcome::Loaded(snap) => {
            info!(revision = %snap.revision, machines = snap.machines.len(), "serving new database revision");
            let snap = store.publish(*snap);
            metrics.published(&snap);
            // The parse trees and the previous revision are freed by now;
            // give the pages back.
            let _ = tokio::task::spawn_blocking(release_memory).await;
            metrics.succeeded(RunResult::Ok);
        }
    }
}

/// Counts every failure, and logs it once while it stays the same (a bad
/// head is reported again on every poll, which must not flood the logs).
fn report_failure(e: &Error, store: &Store, metrics: &SyncMetrics, last_logged: &mut String) {
    let text = e.to_string();
    let serving = store
        .snapshot()
        .map(|s| s.revision.clone())
        .unwrap_or_else(|| "nothing".into());
    if *last_logged != text {
        warn!(error = %text, kind = e.metric_label(), serving = %serving, "database sync failed");
        *last_logged = text.clone();
    } else {
        debug!(
            kind = e.metric_label(),
            "database sync still failing the same way"
        );
    }
    store.sync_failed(text);
    metrics.failed(e);
}

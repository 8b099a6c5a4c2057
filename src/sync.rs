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
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use git2::{build::CheckoutBuilder, FetchOptions, Oid, RemoteCallbacks, Repository, ResetType};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    config::Secret,
    db::{self, Report, Snapshot, SourceFile, Store},
    metrics::Metrics,
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
    /// Bound on one fetch, since libgit2 has no overall network timeout.
    pub fetch_timeout: Duration,
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
/// First retry after a failed fetch; doubles up to the poll interval (Flux's
/// source-controller starts at 750 ms too).
const FIRST_RETRY: Duration = Duration::from_millis(750);

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
}

impl Error {
    /// A fixed, small label set for `mdb_sync_errors_total{kind}`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Checkout { .. } => "checkout",
            Error::Fetch { .. } => "fetch",
            Error::Auth { .. } => "auth",
            Error::NoBranch { .. } => "no_branch",
            Error::Read { .. } => "read",
            Error::Invalid { .. } => "invalid",
        }
    }
}

/// Drops any `user:password@` part, in case someone put a token in the URL.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority = rest.split('/').next().unwrap_or("");
        if let Some((_, host)) = authority.rsplit_once('@') {
            return format!("{scheme}://***@{host}{}", &rest[authority.len()..]);
        }
    }
    url.to_string()
}

/// Sets libgit2's global network timeouts; call once at start.
pub fn set_git_timeouts(connect: Duration, io: Duration) {
    let ms = |d: Duration| d.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: called at start-up before any git operation runs.
    unsafe {
        let _ = git2::opts::set_server_connect_timeout_in_milliseconds(ms(connect));
        let _ = git2::opts::set_server_timeout_in_milliseconds(ms(io));
    }
}

pub enum Outcome {
    /// The remote head is the revision already served.
    Unchanged(Oid),
    Loaded(Box<Snapshot>),
}

/// The local checkout. Blocking: call from `spawn_blocking`.
pub struct Checkout {
    src: Source,
    repo: Option<Repository>,
    /// A revision that failed validation, with its report, so an unchanged
    /// bad head is reported again without validating it again.
    failed: Option<(Oid, Report)>,
}

impl Checkout {
    pub fn new(src: Source) -> Checkout {
        Checkout {
            src,
            repo: None,
            failed: None,
        }
    }

    pub fn source(&self) -> &Source {
        &self.src
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

    /// Throws the checkout away; the next step re-creates it.
    fn discard(&mut self) -> Result<(), Error> {
        self.repo = None;
        if self.src.checkout.exists() {
            std::fs::remove_dir_all(&self.src.checkout).map_err(|e| self.checkout_error(e))?;
        }
        Ok(())
    }

    /// Fetches the branch and returns the remote head.
    pub fn fetch(&mut self) -> Result<Oid, Error> {
        let url = self.src.url.clone();
        let branch = self.src.branch.clone();
        let token = self.src.token.clone();
        let deadline = Instant::now() + self.src.fetch_timeout;
        let shown = self.url();
        let timeout = self.src.fetch_timeout;
        let repo = self.repo()?;

        let mut asked = 0u32;
        let mut cb = RemoteCallbacks::new();
        cb.credentials(move |_url, user, _allowed| {
            // libgit2 asks again for as long as the server refuses.
            asked += 1;
            match (&token, asked) {
                (Some(t), 1) => {
                    git2::Cred::userpass_plaintext(user.unwrap_or("x-access-token"), t.expose())
                }
                _ => Err(git2::Error::from_str("authentication failed")),
            }
        });
        cb.transfer_progress(move |_| Instant::now() < deadline);
        let mut fo = FetchOptions::new();
        fo.remote_callbacks(cb);
        fo.download_tags(git2::AutotagOption::None);

        let tracking = format!("refs/remotes/origin/{branch}");
        let refspec = format!("+refs/heads/{branch}:{tracking}");
        let mut remote = repo.remote_anonymous(&url).map_err(|e| Error::Fetch {
            url: shown.clone(),
            message: e.message().to_string(),
        })?;
        if let Err(e) = remote.fetch(&[&refspec], Some(&mut fo), None) {
            return Err(match e.class() {
                _ if e.code() == git2::ErrorCode::Auth
                    || e.message().contains("authentication") =>
                {
                    Error::Auth { url: shown }
                }
                _ if e.code() == git2::ErrorCode::User => Error::Fetch {
                    url: shown,
                    message: format!("gave up after {timeout:?}"),
                },
                _ => Error::Fetch {
                    url: shown,
                    message: e.message().to_string(),
                },
            });
        }
        // A branch deleted on the remote must not keep serving a stale ref.
        let advertised = remote
            .list()
            .map(|heads| {
                heads
                    .iter()
                    .any(|h| h.name() == format!("refs/heads/{branch}"))
            })
            .unwrap_or(true);
        if !advertised {
            return Err(Error::NoBranch { url: shown, branch });
        }
        repo.refname_to_id(&tracking)
            .map_err(|_| Error::NoBranch { url: shown, branch })
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
    /// database.
    pub fn files_at(&mut self, oid: Oid) -> Result<Vec<SourceFile>, Error> {
        let repo = self.repo()?;
        let read = |e: git2::Error| Error::Read {
            revision: oid.to_string(),
            message: e.message().to_string(),
        };
        let tree = repo.find_commit(oid).and_then(|c| c.tree()).map_err(read)?;
        let mut paths = Vec::new();
        tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
            let path = format!("{dir}{}", entry.name().unwrap_or(""));
            if entry.kind() == Some(git2::ObjectType::Blob) && db::is_db_file(&path) {
                paths.push((path, entry.id()));
            }
            git2::TreeWalkResult::Ok
        })
        .map_err(read)?;
        let mut files = Vec::with_capacity(paths.len());
        for (path, id) in paths {
            let blob = repo.find_blob(id).map_err(read)?;
            let text = String::from_utf8(blob.content().to_vec()).map_err(|_| Error::Read {
                revision: oid.to_string(),
                message: format!("{path} is not UTF-8 text"),
            })?;
            files.push(SourceFile { path, text });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    /// One sync step: fetch, mirror the remote, and load the head if it is
    /// new. `hard` also resets and cleans an unchanged checkout.
    pub fn step(&mut self, served: Option<&str>, hard: bool) -> Result<Outcome, Error> {
        let head = match self.fetch() {
            Ok(h) => h,
            Err(Error::Checkout { .. }) | Err(Error::Fetch { .. })
                if self.repo.is_some() && hard =>
            {
                // A stale lock or a corrupt object store: re-clone once.
                warn!(url = %self.url(), "fetch failed during hard resync; re-cloning");
                self.discard()?;
                self.fetch()?
            }
            Err(e) => return Err(e),
        };
        let current = self.repo()?.head().ok().and_then(|h| h.target());
        if hard || current != Some(head) {
            if let Err(e) = self.reset(head) {
                warn!(error = %e, "reset failed; re-cloning");
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
        let files = self.files_at(head)?;
        match db::validate(&files, &rev) {
            Ok(snap) => {
                self.failed = None;
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

/// Returns freed heap pages to the OS (glibc keeps them otherwise, and a
/// 100k-machine load frees a lot).
fn release_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The sync loop: one step now, then every `poll`; failures retry sooner
/// with backoff. Ends when `shutdown` is cancelled, after the current step.
pub async fn run(
    checkout: Checkout,
    timing: Timing,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let checkout = Arc::new(Mutex::new(checkout));
    let mut last_hard: Option<Instant> = None;
    let mut retry = FIRST_RETRY;
    loop {
        let hard = last_hard.is_none_or(|t| t.elapsed() >= timing.resync);
        let served = store.snapshot().map(|s| s.revision.clone());
        let started = Instant::now();
        let c = checkout.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut c = c.lock().unwrap_or_else(|p| p.into_inner());
            c.step(served.as_deref(), hard)
        })
        .await
        .unwrap_or_else(|e| {
            Err(Error::Checkout {
                path: String::new(),
                message: format!("sync step panicked: {e}"),
            })
        });
        metrics
            .sync_duration
            .observe(started.elapsed().as_secs_f64());
        let wait = match result {
            Ok(outcome) => {
                if hard {
                    last_hard = Some(Instant::now());
                }
                retry = FIRST_RETRY;
                match outcome {
                    Outcome::Unchanged(head) => {
                        debug!(revision = %head, hard, "database unchanged");
                        store.sync_ok();
                        metrics.sync_runs.with_label_values(&["unchanged"]).inc();
                    }
                    Outcome::Loaded(snap) => {
                        info!(revision = %snap.revision, machines = snap.machines.len(), "serving new database revision");
                        let snap = store.publish(*snap);
                        metrics.observe_snapshot(&snap);
                        // The parse trees and the previous revision are
                        // freed by now; give the pages back.
                        let _ = tokio::task::spawn_blocking(release_memory).await;
                        metrics.sync_runs.with_label_values(&["ok"]).inc();
                    }
                }
                metrics
                    .sync_last_success
                    .set(crate::db::store::now_unix() as f64);
                timing.poll
            }
            Err(e) => {
                let serving = store
                    .snapshot()
                    .map(|s| s.revision.clone())
                    .unwrap_or_else(|| "nothing".into());
                warn!(error = %e, kind = e.metric_label(), serving = %serving, "database sync failed");
                store.sync_failed(e.to_string());
                metrics.sync_runs.with_label_values(&["error"]).inc();
                metrics
                    .sync_errors
                    .with_label_values(&[e.metric_label()])
                    .inc();
                if matches!(e, Error::Invalid { .. }) {
                    // Retrying sooner cannot fix a bad commit; a new push will.
                    timing.poll
                } else {
                    let wait = retry.min(timing.poll);
                    retry = (retry * 2).min(timing.poll);
                    wait
                }
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redact_url("https://x:ghp_secret@github.com/a/b.git"),
            "https://***@github.com/a/b.git"
        );
        assert_eq!(
            redact_url("https://github.com/a/b.git"),
            "https://github.com/a/b.git"
        );
        assert_eq!(redact_url("file:///tmp/a@b/repo"), "file:///tmp/a@b/repo");
    }
}

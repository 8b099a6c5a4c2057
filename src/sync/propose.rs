//! The git side of enrolment: a bare working repository beside the
//! checkout that fetches the DB branch and mdb's enrolment branches, builds
//! a commit of one added file on top of the DB branch, and pushes it to the
//! same remote the database is synced from. Every network operation runs
//! under the fetch deadline; the token goes only to the credentials callback.
//! Blocking: call from `spawn_blocking`.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
};

use git2::{FetchOptions, Oid, PushOptions, Repository, Signature};

use super::{callbacks, files_in_commit, network_error, on_thread, redact_url, Error, Source};
use crate::db;

/// Branches mdb proposes on live under this prefix.
pub const BRANCH_PREFIX: &str = "mdb/enrol/";

/// The remote as the last fetch saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Remote {
    /// The DB branch's head.
    pub base: Option<Oid>,
    /// Every enrolment branch (name without `refs/heads/`) and its tip.
    pub branches: HashMap<String, Oid>,
}

/// What an enrolment branch holds: its parent and its one added file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Branch {
    pub parent: Option<Oid>,
    pub path: String,
    pub text: String,
}

pub struct Proposer {
    src: Source,
    dir: PathBuf,
    stop: Arc<AtomicBool>,
}

impl Proposer {
    /// A proposer working in `dir` (a bare repository it creates).
    pub fn new(src: Source, dir: PathBuf) -> Proposer {
        Proposer {
            src,
            dir,
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A flag that, once set, ends a network operation being waited for.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    fn repo(&self) -> Result<Repository, Error> {
        let checkout_error = |e: git2::Error| Error::Checkout {
            path: self.dir.display().to_string(),
            message: e.message().to_string(),
        };
        match Repository::open_bare(&self.dir) {
            Ok(r) => Ok(r),
            Err(_) => {
                if self.dir.exists() {
                    let _ = std::fs::remove_dir_all(&self.dir);
                }
                Repository::init_bare(&self.dir).map_err(checkout_error)
            }
        }
    }

    /// Fetches the DB branch and every enrolment branch.
    pub fn fetch(&self) -> Result<Remote, Error> {
        self.repo()?;
        let (dir, url, branch) = (
            self.dir.clone(),
            self.src.url.clone(),
            self.src.branch.clone(),
        );
        let (token, after) = (self.src.token.clone(), self.src.fetch_timeout);
        let shown = redact_url(&url);
        let abandon = Arc::new(AtomicBool::new(false));
        let a = abandon.clone();
        let job_shown = shown.clone();
        let fetched = on_thread(&self.stop, abandon, &shown, after, move || {
            let repo = Repository::open_bare(&dir).map_err(|e| Error::Checkout {
                path: dir.display().to_string(),
                message: e.message().to_string(),
            })?;
            let mut fo = FetchOptions::new();
            fo.remote_callbacks(callbacks(token, a));
            fo.download_tags(git2::AutotagOption::None);
            let mut remote = repo
                .remote_anonymous(&url)
                .map_err(|e| network_error(&e, &job_shown, after))?;
            let specs = [
                format!("+refs/heads/{branch}:refs/remotes/origin/{branch}"),
                format!("+refs/heads/{BRANCH_PREFIX}*:refs/remotes/origin/{BRANCH_PREFIX}*"),
            ];
            remote
                .fetch(&specs, Some(&mut fo), None)
                .map_err(|e| network_error(&e, &job_shown, after))?;
            let heads = remote
                .list()
                .map_err(|e| network_error(&e, &job_shown, after))?;
            let mut seen = Remote::default();
            for h in heads {
                if h.name() == format!("refs/heads/{branch}") {
                    seen.base = Some(h.oid());
                } else if let Some(name) = h.name().strip_prefix("refs/heads/") {
                    if name.starts_with(BRANCH_PREFIX) {
                        seen.branches.insert(name.to_string(), h.oid());
                    }
                }
            }
            Ok(seen)
        });
        if fetched.is_ok() {
            if let Err(e) = super::packs::compact(&self.dir) {
                tracing::warn!(error = %e, "cannot write the enrolment repository's packs again as one");
            }
        }
        fetched
    }

    /// The database files of a fetched commit.
    pub fn files_at(&self, oid: Oid) -> Result<db::Intake, Error> {
        files_in_commit(&self.repo()?, oid, self.src.limits)
    }

    /// What a fetched enrolment branch holds: its parent and the one file
    /// it changes against that parent.
    pub fn branch(&self, tip: Oid) -> Result<Branch, Error> {
        let repo = self.repo()?;
        let read = |e: git2::Error| Error::Read {
            revision: tip.to_string(),
            message: e.message().to_string(),
        };
        let commit = repo.find_commit(tip).map_err(read)?;
        let parent = commit.parent(0).ok();
        let old = parent
            .as_ref()
            .map(|p| p.tree())
            .transpose()
            .map_err(read)?;
        let new = commit.tree().map_err(read)?;
        let diff = repo
            .diff_tree_to_tree(old.as_ref(), Some(&new), None)
            .map_err(read)?;
        let mut branch = Branch {
            parent: parent.map(|p| p.id()),
            path: String::new(),
            text: String::new(),
        };
        if let Some(delta) = diff.deltas().next() {
            let file = delta.new_file();
            branch.path = file
                .path()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            if let Ok(blob) = repo.find_blob(file.id()) {
                branch.text = String::from_utf8_lossy(blob.content()).into_owned();
            }
        }
        Ok(branch)
    }

    /// Makes `branch` hold exactly `base` plus `path` with `text`, and pushes
    /// it (replacing what it held: the branch is mdb's). Returns the commit.
    pub fn push(
        &self,
        base: Oid,
        branch: &str,
        path: &str,
        text: &str,
        message: &str,
    ) -> Result<Oid, Error> {
        let repo = self.repo()?;
        let commit =
            commit_with_file(&repo, base, path, text, message).map_err(|e| Error::Checkout {
                path: self.dir.display().to_string(),
                message: e.message().to_string(),
            })?;
        let local = format!("refs/mdb/proposals/{branch}");
        repo.reference(&local, commit, true, "proposal")
            .map_err(|e| Error::Checkout {
                path: self.dir.display().to_string(),
                message: e.message().to_string(),
            })?;
        let (dir, url, token, after) = (
            self.dir.clone(),
            self.src.url.clone(),
            self.src.token.clone(),
            self.src.fetch_timeout,
        );
        let shown = redact_url(&url);
        let abandon = Arc::new(AtomicBool::new(false));
        let a = abandon.clone();
        let job_shown = shown.clone();
        let refspec = format!("+{local}:refs/heads/{branch}");
        on_thread(&self.stop, abandon, &shown, after, move || {
            let repo = Repository::open_bare(&dir).map_err(|e| Error::Checkout {
                path: dir.display().to_string(),
                message: e.message().to_string(),
            })?;
            let mut remote = repo
                .remote_anonymous(&url)
                .map_err(|e| network_error(&e, &job_shown, after))?;
            // A push can "succeed" while the remote refused the ref: each
            // ref's own status comes through this callback.
            let refused: Arc<Mutex<Option<String>>> = Arc::default();
            let mut cb = callbacks(token, a);
            let r = refused.clone();
            cb.push_update_reference(move |name, status| {
                if let Some(why) = status {
                    if let Ok(mut slot) = r.lock() {
                        *slot = Some(format!("{name}: {why}"));
                    }
                }
                Ok(())
            });
            let mut po = PushOptions::new();
            po.remote_callbacks(cb);
            remote
                .push(&[refspec.as_str()], Some(&mut po))
                .map_err(|e| network_error(&e, &job_shown, after))?;
            match refused.lock().ok().and_then(|s| s.clone()) {
                Some(why) => Err(Error::Fetch {
                    url: job_shown,
                    message: format!("the remote refused the push of {why}"),
                }),
                None => Ok(commit),
            }
        })
    }
}

impl Drop for Proposer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A commit whose parent is `base` and whose tree is `base`'s with `path`
/// set to `text`.
fn commit_with_file(
    repo: &Repository,
    base: Oid,
    path: &str,
    text: &str,
    message: &str,
) -> Result<Oid, git2::Error> {
    let parent = repo.find_commit(base)?;
    let blob = repo.blob(text.as_bytes())?;
    let parts: Vec<&str> = path.split('/').collect();
    let tree = insert(repo, Some(parent.tree()?), &parts, blob)?;
    let tree = repo.find_tree(tree)?;
    let sig = Signature::now("mdb", "mdb@localhost")?;
    repo.commit(None, &sig, &sig, message, &tree, &[&parent])
}

/// `tree` with the blob at `parts`, creating folders on the way.
fn insert(
    repo: &Repository,
    tree: Option<git2::Tree<'_>>,
    parts: &[&str],
    blob: Oid,
) -> Result<Oid, git2::Error> {
    let mut builder = repo.treebuilder(tree.as_ref())?;
    match parts {
        [] => Err(git2::Error::from_str("empty path")),
        [file] => {
            builder.insert(file, blob, 0o100644)?;
            builder.write()
        }
        [dir, rest @ ..] => {
            let sub = tree
                .as_ref()
                .and_then(|t| t.get_name(dir).map(|e| e.id()))
                .and_then(|id| repo.find_tree(id).ok());
            let id = insert(repo, sub, rest, blob)?;
            builder.insert(dir, id, 0o040000)?;
            builder.write()
        }
    }
}

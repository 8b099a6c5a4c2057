//! git's network operations: each on a thread of its own with a deadline
//! libgit2 lacks, the token given once, and URLs shown without credentials.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc, Arc,
    },
    time::{Duration, Instant},
};

use git2::{FetchOptions, Oid, RemoteCallbacks, Repository};

use super::Error;
use crate::secret::Secret;

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

/// Sets libgit2's global network timeouts, and its bound on open pack
/// files; call once at start.
pub fn set_git_timeouts(connect: Duration, io: Duration) {
    let ms = |d: Duration| d.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: called at start-up before any git operation runs.
    unsafe {
        let _ = git2::opts::set_server_connect_timeout_in_milliseconds(ms(connect));
        let _ = git2::opts::set_server_timeout_in_milliseconds(ms(io));
    }
    super::packs::limit_open_packs();
}

/// Threads for git's network operations. One that passed its deadline is
/// abandoned but may still run inside libgit2; past `cap` of them, no new
/// operation starts until one ends, so a hung remote cannot pile up threads.
pub(super) struct Slots {
    running: AtomicUsize,
    cap: usize,
}

/// Every git thread of the process.
static GIT_THREADS: Slots = Slots::new(4);

impl Slots {
    const fn new(cap: usize) -> Self {
        Slots {
            running: AtomicUsize::new(0),
            cap,
        }
    }

    /// A slot, or none when `cap` threads are still running.
    fn take(&'static self) -> Option<Slot> {
        self.running
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.cap).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self))
    }
}

/// A running git thread; its slot is free again when this drops.
struct Slot(&'static Slots);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How often a waiting step looks at its deadline and at shutdown.
const WAIT_SLICE: Duration = Duration::from_millis(50);

/// Runs one network operation of git on a thread of its own and waits for
/// it until `after` has passed or `stop` is set: libgit2 has no overall
/// deadline, so an operation past it is abandoned (its callbacks see
/// `abandon` and give up the next time libgit2 calls them).
pub(crate) fn on_thread<T: Send + 'static>(
    stop: &AtomicBool,
    abandon: Arc<AtomicBool>,
    shown_url: &str,
    after: Duration,
    job: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    on_thread_in(&GIT_THREADS, stop, abandon, shown_url, after, job)
}

fn on_thread_in<T: Send + 'static>(
    slots: &'static Slots,
    stop: &AtomicBool,
    abandon: Arc<AtomicBool>,
    shown_url: &str,
    after: Duration,
    job: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let stalled = || Error::Stalled {
        url: shown_url.to_string(),
        after,
    };
    let Some(slot) = slots.take() else {
        return Err(stalled());
    };
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("mdb-git".into())
        .spawn(move || {
            let _slot = slot;
            let _ = tx.send(job());
        });
    if let Err(e) = spawned {
        return Err(Error::Fetch {
            url: shown_url.to_string(),
            message: format!("cannot start a git thread: {e}"),
        });
    }
    let deadline = Instant::now() + after;
    loop {
        match rx.recv_timeout(WAIT_SLICE) {
            Ok(result) => return result,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(Error::Fetch {
                    url: shown_url.to_string(),
                    message: "the git thread ended without an answer".into(),
                })
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if stop.load(Ordering::SeqCst) || Instant::now() >= deadline {
            abandon.store(true, Ordering::SeqCst);
            return Err(stalled());
        }
    }
}

/// Callbacks for a network operation: the token once (libgit2 asks again
/// for as long as the server refuses), and an end when `abandon` is set.
pub(crate) fn callbacks(
    token: Option<Secret>,
    abandon: Arc<AtomicBool>,
) -> RemoteCallbacks<'static> {
    let mut cb = RemoteCallbacks::new();
    let mut asked = 0u32;
    cb.credentials(move |_url, user, _allowed| {
        asked += 1;
        match (&token, asked) {
            (Some(t), 1) => {
                git2::Cred::userpass_plaintext(user.unwrap_or("x-access-token"), t.expose())
            }
            _ => Err(git2::Error::from_str("authentication failed")),
        }
    });
    let a = abandon.clone();
    cb.transfer_progress(move |_| !a.load(Ordering::SeqCst));
    cb.sideband_progress(move |_| !abandon.load(Ordering::SeqCst));
    cb
}

/// A libgit2 error of a network operation, in mdb's terms.
pub(crate) fn network_error(e: &git2::Error, shown: &str, after: Duration) -> Error {
    if e.code() == git2::ErrorCode::Auth || e.message().contains("authentication") {
        return Error::Auth {
            url: shown.to_string(),
        };
    }
    if e.message().contains("timed out") {
        // libgit2's own per-read timeout: a hung remote, like the deadline.
        return Error::Stalled {
            url: shown.to_string(),
            after,
        };
    }
    Error::Fetch {
        url: shown.to_string(),
        message: e.message().to_string(),
    }
}

/// One fetch, run on its own thread by [`Checkout::fetch`].
pub(super) struct FetchJob {
    pub(super) path: PathBuf,
    pub(super) url: String,
    /// The URL as it may be shown (credentials removed).
    pub(super) shown: String,
    pub(super) branch: String,
    pub(super) token: Option<Secret>,
    /// The fetch timeout, for the error that reports it.
    pub(super) after: Duration,
    /// Set when the waiter gave up; callbacks then end the transfer.
    pub(super) abandon: Arc<AtomicBool>,
}

impl FetchJob {
    pub(super) fn run(self) -> Result<Oid, Error> {
        let shown = self.shown.clone();
        let fetch_error = |message: String| Error::Fetch {
            url: shown.clone(),
            message,
        };
        let repo = Repository::open(&self.path).map_err(|e| Error::Checkout {
            path: self.path.display().to_string(),
            message: e.message().to_string(),
        })?;
        let mut fo = FetchOptions::new();
        fo.remote_callbacks(callbacks(self.token.clone(), self.abandon.clone()));
        fo.download_tags(git2::AutotagOption::None);
        let tracking = format!("refs/remotes/origin/{}", self.branch);
        let refspec = format!("+refs/heads/{}:{tracking}", self.branch);
        let mut remote = repo
            .remote_anonymous(&self.url)
            .map_err(|e| fetch_error(e.message().to_string()))?;
        if let Err(e) = remote.fetch(&[&refspec], Some(&mut fo), None) {
            return Err(network_error(&e, &self.shown, self.after));
        }
        // A branch deleted on the remote must not keep serving a stale ref.
        let head = format!("refs/heads/{}", self.branch);
        let advertised = remote
            .list()
            .map(|heads| heads.iter().any(|h| h.name() == head))
            .unwrap_or(true);
        let no_branch = || Error::NoBranch {
            url: self.shown.clone(),
            branch: self.branch.clone(),
        };
        if !advertised {
            return Err(no_branch());
        }
        repo.refname_to_id(&tracking).map_err(|_| no_branch())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn wait_idle(slots: &Slots) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while slots.running.load(Ordering::SeqCst) > 0 {
            assert!(
                Instant::now() < deadline,
                "threads never gave back their slots"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A job that blocks until `release` closes, noting that it ran.
    fn stuck_job(
        release: &Arc<Mutex<mpsc::Receiver<()>>>,
        ran: &Arc<AtomicUsize>,
    ) -> impl FnOnce() -> Result<(), Error> + Send + 'static {
        let (release, ran) = (release.clone(), ran.clone());
        move || {
            ran.fetch_add(1, Ordering::SeqCst);
            let _ = release.lock().map(|r| r.recv());
            Ok(())
        }
    }

    fn run_in(
        slots: &'static Slots,
        job: impl FnOnce() -> Result<(), Error> + Send + 'static,
    ) -> Result<(), Error> {
        let stop = AtomicBool::new(false);
        let abandon = Arc::new(AtomicBool::new(false));
        on_thread_in(
            slots,
            &stop,
            abandon,
            "file:///r",
            Duration::from_millis(100),
            job,
        )
    }

    #[test]
    fn stuck_operations_are_capped_and_their_slots_come_back() {
        static SLOTS: Slots = Slots::new(2);
        let (hold, release) = mpsc::channel::<()>();
        let release = Arc::new(Mutex::new(release));
        let ran = Arc::new(AtomicUsize::new(0));
        for _ in 0..4 {
            let r = run_in(&SLOTS, stuck_job(&release, &ran));
            assert!(matches!(r, Err(Error::Stalled { .. })), "{r:?}");
        }
        assert_eq!(ran.load(Ordering::SeqCst), 2, "only two threads started");
        assert_eq!(SLOTS.running.load(Ordering::SeqCst), 2);
        drop(hold);
        wait_idle(&SLOTS);
        assert!(run_in(&SLOTS, || Ok(())).is_ok(), "a free slot runs again");
        wait_idle(&SLOTS);
    }

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

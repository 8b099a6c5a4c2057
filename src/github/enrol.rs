//! Enrolment by pull request: for every new device, one ready pull request
//! to the DB repository that adds its entry with a reserved address. The
//! branch is pushed with git (`sync::propose`) and the pull request opened
//! through the REST API; both carry the fingerprint, so they are found again
//! after restarts and lost answers. A pull request closed without merging
//! dismisses its device; a merged one has its branch deleted once the
//! served database holds the machine; an open one is moved onto the DB
//! branch whenever that moves on.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use git2::Oid;
use serde_json::json;
use tracing::{info, warn};

use crate::{
    db::{Snapshot, SourceFile},
    github::{
        entry::{Entry, Held},
        fingerprint::{Fingerprint, Kind},
        http::{Error, Http},
        metrics::{GithubMetrics, Operation},
        plan::{resolution, Known},
        pulls::{self, Proposal, Pull},
        text::{files_issue, plain_title, seen_table},
        trust::{is_enrol_branch, Trailer},
        Cap, Caps, Deferred,
    },
    net::Mac,
    proto::{DiscoveredHost, HostState, Presence},
    sync::{
        self,
        propose::{Proposer, Remote, BRANCH_PREFIX},
    },
};

/// How enrolment pull requests are made.
#[derive(Clone, Debug)]
pub struct EnrolConfig {
    /// The DB repository as sync reaches it (URL, branch, token, deadline).
    pub source: sync::Source,
    /// A bare repository of its own, beside the checkout.
    pub work_dir: PathBuf,
    /// Labels for every enrolment pull request.
    pub labels: Vec<String>,
    /// People asked to review every enrolment pull request.
    pub reviewers: Vec<String>,
    /// Whether a device with a locally administered (random) MAC is enrolled.
    pub random_macs: bool,
}

/// The outcome of one pass, for logs and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnrolSummary {
    pub proposed: usize,
    pub rebuilt: usize,
    pub branches_deleted: usize,
    pub closed: usize,
    /// New devices each cap held back this pass.
    pub deferred: Deferred,
}

pub struct Enroller {
    cfg: EnrolConfig,
    repo: String,
    git: Arc<Mutex<Proposer>>,
    pulls: HashMap<Fingerprint, Pull>,
    remote: Remote,
    /// (pull request, base) pairs already told why they cannot be moved on.
    explained: HashSet<(u64, Oid)>,
    /// Devices already told why no enrolment is proposed for them (each
    /// reason is warned once, not every sweep).
    declined: HashSet<(Fingerprint, String)>,
    metrics: GithubMetrics,
    /// Where an opened and a merged enrolment are told.
    pub(super) announcer: crate::notify::Announcer,
}

fn git_error(e: impl std::fmt::Display) -> Error {
    Error::Git(e.to_string())
}

impl Enroller {
    pub fn new(cfg: EnrolConfig, repo: String, metrics: GithubMetrics) -> Enroller {
        let git = Proposer::new(cfg.source.clone(), cfg.work_dir.clone());
        Enroller {
            cfg,
            repo,
            git: Arc::new(Mutex::new(git)),
            pulls: HashMap::new(),
            remote: Remote::default(),
            explained: HashSet::new(),
            declined: HashSet::new(),
            metrics,
            announcer: Default::default(),
        }
    }

    pub fn pulls(&self) -> &HashMap<Fingerprint, Pull> {
        &self.pulls
    }

    /// Runs a blocking git step of the proposer.
    async fn git<T: Send + 'static>(
        &self,
        step: impl FnOnce(&Proposer) -> Result<T, sync::Error> + Send + 'static,
    ) -> Result<T, Error> {
        let git = self.git.clone();
        tokio::task::spawn_blocking(move || {
            let g = git.lock().unwrap_or_else(|p| p.into_inner());
            step(&g)
        })
        .await
        .map_err(git_error)?
        .map_err(git_error)
    }

    /// Reads the enrolment pull requests and the remote's branches again:
    /// people merge and close them between sweeps.
    pub async fn refresh(&mut self, http: &mut Http) -> Result<(), Error> {
        self.pulls = pulls::list(http, &self.repo).await?;
        self.remote = self.git(|g| g.fetch()).await?;
        Ok(())
    }

    /// Devices whose pull request was closed without merging (and has no
    /// open successor): nothing more is filed for them.
    pub fn dismissed(&self) -> HashMap<Fingerprint, u64> {
        self.pulls
            .iter()
            .filter(|(_, p)| !p.open && !p.merged)
            .map(|(fp, p)| (fp.clone(), p.number))
            .collect()
    }

    /// What live hosts and open enrolments hold, but for `except`'s own.
    pub fn held(&self, except: Option<&Fingerprint>, hosts: &[DiscoveredHost]) -> Held {
        let mut held = Held {
            ips: hosts.iter().filter_map(|h| h.ip.parse().ok()).collect(),
            names: HashSet::new(),
        };
        for (fp, p) in &self.pulls {
            if p.open && Some(fp) != except {
                held.ips.extend(p.ip);
                held.names.insert(p.name.clone());
            }
        }
        if let Some(own) = except.and_then(|fp| host_ip(hosts, fp)) {
            held.ips.remove(&own);
        }
        held
    }

    /// The addresses open enrolments hold: no one else should get them.
    pub fn reserved(&self) -> HashSet<IpAddr> {
        self.pulls
            .values()
            .filter(|p| p.open)
            .filter_map(|p| p.ip)
            .collect()
    }

    /// The cap that leaves no room for another proposal, if one does.
    fn full(&self, caps: &Caps, proposed: usize) -> Option<Cap> {
        let open = self.pulls.values().filter(|p| p.open).count();
        if proposed >= caps.new_per_sweep {
            Some(Cap::NewPerSweep)
        } else if open >= caps.open_pulls {
            Some(Cap::OpenPulls)
        } else if self.reserved().len() >= caps.reserved {
            Some(Cap::Reserved)
        } else {
            None
        }
    }

    /// Whether a new host is one to enrol: one with a stable MAC, or none
    /// at all (seen across a router, by ICMP): that one is enrolled by its
    /// address, which is its fingerprint. A random MAC only when configured.
    fn wanted(&self, h: &DiscoveredHost) -> bool {
        let mac_ok = match h.mac.parse::<Mac>() {
            Ok(m) => !m.is_local() || self.cfg.random_macs,
            Err(_) => h.mac.is_empty(),
        };
        HostState::try_from(h.state) == Ok(HostState::New) && files_issue(h, None) && mac_ok
    }

    /// One pass: move open pull requests onto the DB branch, clean up after
    /// merged ones, and propose the new devices within the caps, those that
    /// are up and were seen longest first.
    pub async fn reconcile(
        &mut self,
        http: &mut Http,
        hosts: &[DiscoveredHost],
        snap: &Snapshot,
        issues: &HashMap<Fingerprint, Known>,
        caps: &Caps,
    ) -> Result<EnrolSummary, Error> {
        let mut summary = EnrolSummary::default();
        let Some(base) = self.remote.base else {
            return Ok(summary);
        };
        let base_files = self.git(move |g| g.files_at(base)).await?.files;
        self.tend_open(http, hosts, snap, base, &base_files, &mut summary)
            .await?;
        self.tend_merged(http, snap, &mut summary).await?;
        let mut wanted: Vec<&DiscoveredHost> = hosts.iter().filter(|h| self.wanted(h)).collect();
        wanted.sort_by_key(|h| (h.presence != Presence::Up as i32, h.first_seen_unix));
        for h in wanted {
            let Some(fp) = Fingerprint::of(h) else {
                continue;
            };
            if self.pulls.contains_key(&fp) {
                continue;
            }
            if let Some(cap) = self.full(caps, summary.proposed) {
                *summary.deferred.entry(cap).or_default() += 1;
                continue;
            }
            let issue = issues.get(&fp).filter(|k| k.open).map(|k| k.number);
            let held = self.held(None, hosts).except(&h.ip);
            if self
                .propose(http, &fp, h, snap, &held, base, &base_files, issue)
                .await?
            {
                summary.proposed += 1;
            }
        }
        Ok(summary)
    }

    /// Open pull requests: closed when the device got in another way, moved
    /// onto the DB branch when that moved on.
    async fn tend_open(
        &mut self,
        http: &mut Http,
        hosts: &[DiscoveredHost],
        snap: &Snapshot,
        base: Oid,
        base_files: &[SourceFile],
        summary: &mut EnrolSummary,
    ) -> Result<(), Error> {
        let open: Vec<(Fingerprint, Pull)> = self
            .pulls
            .iter()
            .filter(|(_, p)| p.open)
            .map(|(f, p)| (f.clone(), p.clone()))
            .collect();
        for (fp, pull) in open {
            if let Some(why) = resolution(&fp, hosts, snap) {
                let text = format!("Not needed any more: {why} Closing.");
                pulls::comment(http, &self.repo, pull.number, &text).await?;
                pulls::edit(http, &self.repo, pull.number, json!({ "state": "closed" })).await?;
                pulls::delete_branch(http, &self.repo, &pull.head).await?;
                self.metrics.pull(Operation::Closed);
                if let Some(p) = self.pulls.get_mut(&fp) {
                    p.open = false;
                }
                summary.closed += 1;
                continue;
            }
            let tip = self.remote.branches.get(&pull.head).copied();
            let current = match tip {
                Some(tip) => Some(self.git(move |g| g.branch(tip)).await?),
                None => None,
            };
            if current.as_ref().and_then(|b| b.parent) == Some(base) {
                continue;
            }
            let kept = current.filter(|b| {
                !b.path.is_empty()
                    && crate::db::validate::with_file(base_files, &b.path, &b.text).is_ok()
            });
            if self
                .rebuild(
                    http,
                    &fp,
                    &pull,
                    hosts,
                    snap,
                    base,
                    base_files,
                    kept.map(|b| (b.path, b.text)),
                )
                .await?
            {
                summary.rebuilt += 1;
            }
        }
        Ok(())
    }

    /// Puts an open pull request's branch on top of `base`: with the file it
    /// holds when that still validates, else with a fresh entry (another
    /// name or address), else a comment says why not (once per base).
    #[allow(clippy::too_many_arguments)]
    async fn rebuild(
        &mut self,
        http: &mut Http,
        fp: &Fingerprint,
        pull: &Pull,
        hosts: &[DiscoveredHost],
        snap: &Snapshot,
        base: Oid,
        base_files: &[SourceFile],
        kept: Option<(String, String)>,
    ) -> Result<bool, Error> {
        let (path, text, fresh) = match kept {
            Some((path, text)) => (path, text, None),
            None => {
                let held = self.held(Some(fp), hosts);
                let host = hosts
                    .iter()
                    .find(|h| Fingerprint::of(h).as_ref() == Some(fp));
                match host.map(|h| Entry::for_host(h, snap, &held)) {
                    Some(Ok(e)) if e.check(base_files).is_ok() => (e.path(), e.yaml(), Some(e)),
                    outcome => {
                        let why = match outcome {
                            Some(Err(e)) => e.to_string(),
                            Some(Ok(e)) => e
                                .check(base_files)
                                .err()
                                .map(|r| r.to_string())
                                .unwrap_or_default(),
                            None => {
                                "the device has not been seen since, so no new entry can be made"
                                    .into()
                            }
                        };
                        if self.explained.insert((pull.number, base)) {
                            let text = format!("The DB branch moved on to {base} and this entry no longer fits: {why}\n\nmdb leaves this pull request as it is; edit or close it.");
                            pulls::comment(http, &self.repo, pull.number, &text).await?;
                        }
                        return Ok(false);
                    }
                }
            }
        };
        if !is_enrol_branch(&pull.head) {
            return Err(Error::Git(format!(
                "refusing to push {:?}: not an mdb enrolment branch",
                pull.head
            )));
        }
        let (branch, message) = (
            pull.head.clone(),
            format!("Enrol {} (moved onto {base})", pull.name),
        );
        let commit = self
            .git(move |g| g.push(base, &branch, &path, &text, &message))
            .await?;
        self.remote.branches.insert(pull.head.clone(), commit);
        info!(pull = pull.number, base = %base, "enrolment branch moved onto the DB branch");
        if let Some(e) = fresh {
            let text = format!("The DB branch moved on and `{}` at {} no longer fits; this pull request now proposes `{}` at {}.", pull.name, pull.ip.map(|i| i.to_string()).unwrap_or_default(), e.name, e.ip);
            pulls::comment(http, &self.repo, pull.number, &text).await?;
            if let Some(h) = hosts
                .iter()
                .find(|h| Fingerprint::of(h).as_ref() == Some(fp))
            {
                let body = pull_body(fp, h, &e, None);
                pulls::edit(
                    http,
                    &self.repo,
                    pull.number,
                    json!({ "title": pull_title(h, &e), "body": body }),
                )
                .await?;
            }
            if let Some(p) = self.pulls.get_mut(fp) {
                p.ip = Some(e.ip);
                p.name = e.name.clone();
            }
        }
        self.metrics.pull(Operation::Updated);
        Ok(true)
    }

    /// Merged pull requests: their branch goes once the served database
    /// holds the machine.
    async fn tend_merged(
        &mut self,
        http: &mut Http,
        snap: &Snapshot,
        summary: &mut EnrolSummary,
    ) -> Result<(), Error> {
        let merged: Vec<Pull> = self
            .pulls
            .values()
            .filter(|p| p.merged && self.remote.branches.contains_key(&p.head))
            .cloned()
            .collect();
        for pull in merged {
            if snap.by_name(&pull.name).is_none() {
                continue;
            }
            pulls::delete_branch(http, &self.repo, &pull.head).await?;
            self.remote.branches.remove(&pull.head);
            info!(pull = pull.number, branch = %pull.head, "enrolment merged and served; branch deleted");
            self.announcer.announce(crate::notify::Event::about(
                crate::notify::EventKind::PullMerged,
                pull.head.clone(),
                format!(
                    "{} is in the database: enrolment #{} merged",
                    pull.name, pull.number
                ),
                &pull.name,
            ));
            summary.branches_deleted += 1;
        }
        Ok(())
    }

    /// Pushes a branch with the host's entry and opens its pull request.
    /// Warns why `fp` gets no enrolment, once per reason.
    fn decline(&mut self, fp: &Fingerprint, why: String) {
        const MAX_TOLD: usize = 4096;
        if self.declined.len() >= MAX_TOLD {
            self.declined.clear();
        }
        if self.declined.insert((fp.clone(), why.clone())) {
            warn!(fingerprint = %fp, "{why}");
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn propose(
        &mut self,
        http: &mut Http,
        fp: &Fingerprint,
        h: &DiscoveredHost,
        snap: &Snapshot,
        held: &Held,
        base: Oid,
        base_files: &[SourceFile],
        issue: Option<u64>,
    ) -> Result<bool, Error> {
        let entry = match Entry::for_host(h, snap, held) {
            Ok(e) => e,
            Err(e) => {
                self.decline(fp, format!("no enrolment proposed: {e}"));
                return Ok(false);
            }
        };
        if let Err(report) = entry.check(base_files) {
            self.decline(
                fp,
                format!("no enrolment proposed: the revision would not validate: {report}"),
            );
            return Ok(false);
        }
        let branch = format!("{BRANCH_PREFIX}{}", fp.slug());
        let (b, path, text, message) = (
            branch.clone(),
            entry.path(),
            entry.yaml(),
            format!("Enrol {} ({})", entry.name, entry.ip),
        );
        let commit = self
            .git(move |g| g.push(base, &b, &path, &text, &message))
            .await?;
        self.remote.branches.insert(branch.clone(), commit);
        let proposal = Proposal {
            fingerprint: fp,
            head: &branch,
            base: &self.cfg.source.branch,
            title: pull_title(h, &entry),
            body: pull_body(fp, h, &entry, issue),
        };
        let number = pulls::create(http, &self.repo, &proposal).await?;
        let mut labels = self.cfg.labels.clone();
        labels.extend(super::text::port_labels(h));
        pulls::add_labels(http, &self.repo, number, &labels).await?;
        pulls::request_reviewers(http, &self.repo, number, &self.cfg.reviewers).await?;
        if let Some(issue) = issue {
            let text = format!(
                "Proposed in #{number}: merging it adds `{}` at {}.",
                entry.name, entry.ip
            );
            pulls::comment(http, &self.repo, issue, &text).await?;
        }
        info!(pull = number, fingerprint = %fp, name = %entry.name, ip = %entry.ip, "enrolment pull request opened");
        self.announcer.announce(crate::notify::Event {
            ip: entry.ip.to_string(),
            mac: h.mac.clone(),
            ..crate::notify::Event::about(
                crate::notify::EventKind::PullOpened,
                branch.clone(),
                format!(
                    "Enrolment #{number} proposes {} at {}",
                    entry.name, entry.ip
                ),
                &entry.name,
            )
        });
        self.metrics.pull(Operation::Created);
        self.pulls.insert(
            fp.clone(),
            Pull {
                number,
                open: true,
                merged: false,
                head: branch,
                ip: Some(entry.ip),
                name: entry.name,
            },
        );
        Ok(true)
    }
}

fn host_ip(hosts: &[DiscoveredHost], fp: &Fingerprint) -> Option<IpAddr> {
    hosts
        .iter()
        .find(|h| Fingerprint::of(h).as_ref() == Some(fp))
        .and_then(|h| h.ip.parse().ok())
}

pub fn pull_title(h: &DiscoveredHost, e: &Entry) -> String {
    let what = if h.vendor.is_empty() {
        "device"
    } else {
        h.vendor.as_str()
    };
    plain_title(&format!("Enrol {} at {} ({what})", e.name, e.ip))
}

/// What an enrolment pull request says, with the markers that find it again.
pub fn pull_body(fp: &Fingerprint, h: &DiscoveredHost, e: &Entry, issue: Option<u64>) -> String {
    let mut b = String::new();
    let about = issue.map(|n| format!(" (issue #{n})")).unwrap_or_default();
    b.push_str(&format!("mdb's sweep found a device that is not in the database{about}. Merging this pull request adds it as `{}`:\n\n```yaml\n{}```\n\n", e.path(), e.yaml()));
    b.push_str(&seen_table(h));
    b.push_str("\n- **Merge** to accept it: mdb serves it after the next sync, closes the issue and deletes this branch.\n");
    b.push_str("- **Close without merging** to dismiss the device: mdb files no new issue or pull request for it while this stays closed. To undo, reopen this pull request.\n");
    b.push_str(&format!("- **Edit** `{}` on this branch to change the entry (another name, `use: {{cluster: {{name: NAME, role: worker}}}}`); mdb keeps the file when it moves this branch onto a newer DB revision.\n\n", e.path()));
    if fp.kind != Kind::NewDevice {
        b.push_str(&format!("Kind: {}\n\n", fp.kind.word()));
    }
    b.push_str(
        &Trailer {
            fingerprint: Some(fp.clone()),
            ip: Some(e.ip.to_string()),
            name: Some(e.name.clone()),
            reserved: None,
        }
        .write(),
    );
    b
}

//! The issue filer: carries out the plan of one sweep on GitHub, and finds
//! its own issues again (by their fingerprint) after restarts and lost
//! answers.

use std::{collections::HashMap, sync::Arc};

use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    db::{Snapshot, Store},
    discover::sweep::SweepResult,
    github::{
        enrol::{EnrolSummary, Enroller},
        entry::{Entry, Held},
        fingerprint::Fingerprint,
        http::{Error, Http},
        issues::IssueBook,
        metrics::{GithubMetrics, Operation},
        plan::{plan, Known, Op},
        text::{body, kind, title},
        Cap, Config, Deferred,
    },
    proto::DiscoveredHost,
};

/// Files, updates and closes issues. Holds an octocrab client whose own
/// retries are off: mdb owns them, because a create whose answer was lost
/// must be looked for, not sent again.
pub struct Filer {
    http: Http,
    cfg: Config,
    /// Enrolment pull requests, unless the config says issues only.
    enroller: Option<Enroller>,
    book: IssueBook,
    metrics: GithubMetrics,
}

/// The outcome of one reconcile pass, for logs and tests.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    pub created: usize,
    pub updated: usize,
    pub reopened: usize,
    pub closed: usize,
    /// Problems each cap held back this pass (issues and enrolments).
    pub deferred: Deferred,
    pub enrol: EnrolSummary,
}

impl Summary {
    /// Everything the caps held back this pass.
    pub fn deferred_total(&self) -> usize {
        self.deferred.values().sum()
    }
}

impl Filer {
    pub fn new(cfg: Config, metrics: GithubMetrics) -> Result<Filer, Error> {
        let http = Http::new(&cfg, metrics.clone())?;
        if cfg.repo.split('/').filter(|p| !p.is_empty()).count() != 2 {
            return Err(Error::Client(format!(
                "repo {:?} is not owner/name",
                cfg.repo
            )));
        }
        let enroller = cfg
            .enrol
            .clone()
            .map(|e| Enroller::new(e, cfg.repo.clone(), metrics.clone()));
        Ok(Filer {
            http,
            enroller,
            book: IssueBook::new(&cfg.repo),
            cfg,
            metrics,
        })
    }

    /// Tells what the enroller opens and sees merged through `announcer`.
    pub fn announce_to(&mut self, announcer: crate::notify::Announcer) {
        if let Some(e) = self.enroller.as_mut() {
            e.announcer = announcer;
        }
    }

    pub fn known(&self) -> &HashMap<Fingerprint, Known> {
        &self.book.known
    }

    pub fn enroller(&self) -> Option<&Enroller> {
        self.enroller.as_ref()
    }

    /// Reads every issue of the repository and keeps those mdb filed.
    pub async fn load(&mut self) -> Result<(), Error> {
        self.book.load(&mut self.http).await
    }

    fn labels(&self, h: &DiscoveredHost) -> Vec<String> {
        let mut l = self.cfg.labels.clone();
        l.push(kind(h).word().to_string());
        l
    }

    async fn comment(&mut self, number: u64, text: &str) -> Result<(), Error> {
        self.book.comment(&mut self.http, number, text).await
    }

    async fn create(
        &mut self,
        fp: &Fingerprint,
        h: &DiscoveredHost,
        entry: Option<&Entry>,
    ) -> Result<u64, Error> {
        let mut fields =
            json!({ "title": title(h), "body": body(h, entry), "labels": self.labels(h) });
        if let Some(a) = &self.cfg.assignee {
            fields["assignees"] = json!([a]);
        }
        self.book.create(&mut self.http, fp, fields).await
    }

    async fn set(&mut self, number: u64, fields: Value) -> Result<(), Error> {
        self.book.set(&mut self.http, number, fields).await
    }

    /// Records an issue mdb just opened (or reopened) and counts it.
    fn opened(&mut self, fp: Fingerprint, number: u64, ip: &str, op: Operation) {
        self.book.opened(fp, number, ip);
        self.metrics.issue(op);
    }

    /// Brings the issues in line with one sweep.
    pub async fn reconcile(
        &mut self,
        result: &SweepResult,
        snap: &Snapshot,
    ) -> Result<Summary, Error> {
        self.book.load_once(&mut self.http).await?;
        let mut dismissed = HashMap::new();
        if let Some(e) = self.enroller.as_mut() {
            e.refresh(&mut self.http).await?;
            dismissed = e.dismissed();
        }
        let (ops, deferred) = plan(
            &result.hosts,
            snap,
            &self.book.known,
            &self.cfg.caps,
            &dismissed,
        );
        let mut summary = Summary {
            deferred,
            ..Default::default()
        };
        let mut held = self.held(&result.hosts);
        for op in ops {
            match op {
                Op::Create { fingerprint, host } => {
                    let entry = Entry::for_host(&host, snap, &held.except(&host.ip)).ok();
                    if let Some(e) = &entry {
                        held.ips.insert(e.ip);
                        held.names.insert(e.name.clone());
                    }
                    self.file(fingerprint, &host, entry.as_ref()).await?;
                    summary.created += 1;
                }
                Op::Update {
                    number,
                    fingerprint,
                    host,
                } => {
                    self.moved(number, &fingerprint, &host).await?;
                    summary.updated += 1;
                }
                Op::Reopen {
                    number,
                    fingerprint,
                    host,
                } => {
                    self.reopen(number, fingerprint, &host).await?;
                    summary.reopened += 1;
                }
                Op::Close {
                    number,
                    fingerprint,
                    why,
                } => {
                    self.close(number, &fingerprint, &why).await?;
                    summary.closed += 1;
                }
                Op::Wait {
                    number,
                    fingerprint,
                    host,
                    reserved,
                } => {
                    self.wait(number, &fingerprint, &host, &reserved).await?;
                    summary.updated += 1;
                }
            }
        }
        if let Some(e) = self.enroller.as_mut() {
            summary.enrol = e
                .reconcile(
                    &mut self.http,
                    &result.hosts,
                    snap,
                    &self.book.known,
                    &self.cfg.caps,
                )
                .await?;
            for (cap, n) in &summary.enrol.deferred {
                *summary.deferred.entry(*cap).or_default() += n;
            }
        }
        self.metrics.deferred(&summary.deferred);
        Ok(summary)
    }
}

impl Filer {
    async fn file(
        &mut self,
        fp: Fingerprint,
        host: &DiscoveredHost,
        entry: Option<&Entry>,
    ) -> Result<(), Error> {
        let number = self.create(&fp, host, entry).await?;
        info!(issue = number, fingerprint = %fp, "filed issue");
        self.opened(fp, number, &host.ip, Operation::Created);
        Ok(())
    }

    /// The host is at another address now: say so and refresh the body.
    async fn moved(
        &mut self,
        number: u64,
        fp: &Fingerprint,
        host: &DiscoveredHost,
    ) -> Result<(), Error> {
        let old = self
            .book
            .known
            .get(fp)
            .map(|k| k.ip.clone())
            .unwrap_or_default();
        self.comment(
            number,
            &format!(
                "Now seen at {} (was {old}). {}",
                host.ip,
                crate::escape::markdown(&host.detail)
            ),
        )
        .await?;
        self.set(
            number,
            json!({ "title": title(host), "body": body(host, None) }),
        )
        .await?;
        if let Some(k) = self.book.known.get_mut(fp) {
            k.ip = host.ip.clone();
        }
        self.metrics.issue(Operation::Updated);
        Ok(())
    }

    async fn reopen(
        &mut self,
        number: u64,
        fp: Fingerprint,
        host: &DiscoveredHost,
    ) -> Result<(), Error> {
        self.set(
            number,
            json!({ "state": "open", "title": title(host), "body": body(host, None) }),
        )
        .await?;
        self.comment(
            number,
            &format!(
                "The problem is back: {} ({}).",
                crate::escape::markdown(&host.detail),
                host.ip
            ),
        )
        .await?;
        self.opened(fp, number, &host.ip, Operation::Reopened);
        Ok(())
    }

    /// The device is in the database but still on its old lease: said
    /// once (the body's trailer remembers it), and the issue stays open
    /// until it answers at its reservation.
    async fn wait(
        &mut self,
        number: u64,
        fp: &Fingerprint,
        host: &DiscoveredHost,
        reserved: &str,
    ) -> Result<(), Error> {
        let text = format!(
            "Merged: reserved {reserved}, still at {}: waiting for its renewal. mdb closes this issue once it answers at {reserved}.",
            host.ip
        );
        self.comment(number, &text).await?;
        let body = crate::github::text::body_waiting(host, None, Some(reserved));
        self.set(number, json!({ "body": body })).await?;
        if let Some(k) = self.book.known.get_mut(fp) {
            k.waiting = Some(reserved.to_string());
        }
        self.metrics.issue(Operation::Updated);
        Ok(())
    }

    async fn close(&mut self, number: u64, fp: &Fingerprint, why: &str) -> Result<(), Error> {
        self.comment(number, &format!("Resolved: {why} Closing."))
            .await?;
        self.set(
            number,
            json!({ "state": "closed", "state_reason": "completed" }),
        )
        .await?;
        if let Some(k) = self.book.known.get_mut(fp) {
            k.open = false;
        }
        self.metrics.issue(Operation::Closed);
        Ok(())
    }
}

impl Filer {
    /// What live hosts and open enrolments hold, for new entries.
    fn held(&self, hosts: &[DiscoveredHost]) -> Held {
        match &self.enroller {
            Some(e) => e.held(None, hosts),
            None => Held {
                ips: hosts.iter().filter_map(|h| h.ip.parse().ok()).collect(),
                ..Held::default()
            },
        }
    }
}

/// The filer task: reconciles after every sweep, never blocking the sweep
/// loop (a slow GitHub only makes it skip to the latest sweep).
pub async fn run(
    cfg: Config,
    store: Arc<Store>,
    metrics: GithubMetrics,
    mut results: watch::Receiver<Option<Arc<SweepResult>>>,
    announcer: crate::notify::Announcer,
    shutdown: CancellationToken,
) {
    let mut filer = match Filer::new(cfg, metrics.clone()) {
        Ok(f) => f,
        Err(e) => {
            warn!(error = %e, "GitHub filer disabled");
            return;
        }
    };
    filer.announce_to(announcer);
    let mut capped = Capped::default();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = results.changed() => if changed.is_err() { return },
        }
        let Some(result) = results.borrow_and_update().clone() else {
            continue;
        };
        let Some(snap) = store.snapshot() else {
            continue;
        };
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = filer.reconcile(&result, &snap) => r,
        };
        if let Some(e) = filer.enroller() {
            store.set_reserved("this process's enrolments", e.reserved());
        }
        match outcome {
            Ok(s) => {
                if s != Summary::default() {
                    info!(
                        created = s.created,
                        updated = s.updated,
                        reopened = s.reopened,
                        closed = s.closed,
                        deferred = s.deferred_total(),
                        proposed = s.enrol.proposed,
                        rebuilt = s.enrol.rebuilt,
                        branches_deleted = s.enrol.branches_deleted,
                        "GitHub issues and enrolments reconciled"
                    );
                }
                capped.tell(&s.deferred);
                metrics.passed();
            }
            Err(e) => {
                warn!(error = %e, "GitHub reconcile failed; will retry after the next sweep");
                metrics.failed(&e);
            }
        }
    }
}

/// Which caps held something back at the last pass, so that each is logged
/// once when it starts to bind and once when it lets go, not every sweep.
#[derive(Default)]
struct Capped(std::collections::BTreeSet<Cap>);

impl Capped {
    fn tell(&mut self, deferred: &Deferred) {
        for (cap, n) in deferred {
            if self.0.insert(*cap) {
                warn!(cap = cap.setting(), waiting = n, "a GitHub cap holds problems back; they wait until it has room (mdb_github_deferred)");
            }
        }
        let released: Vec<Cap> = self
            .0
            .iter()
            .filter(|c| !deferred.contains_key(*c))
            .copied()
            .collect();
        for cap in released {
            self.0.remove(&cap);
            info!(
                cap = cap.setting(),
                "a GitHub cap no longer holds anything back"
            );
        }
    }
}

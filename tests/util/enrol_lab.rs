//! A DB repository and the fake GitHub with mdb's own filer doing one
//! reconcile pass per "sweep": the harness of the enrolment and attacker
//! suites (real pushes over file://, a real HTTP socket).
#![allow(dead_code)]

use std::time::Duration;

use git2::{Oid, Repository};
use mdb::{
    db::{validate, Snapshot, SourceFile},
    discover::sweep::SweepResult,
    github::{self, enrol::EnrolConfig, Filer},
    proto::{DiscoveredHost, HostState, UseKind},
    secret::Secret,
    serve::metrics::Metrics,
    sync,
};

use super::{
    fake_github::{FakeGithub, Issue, OWNER, REPO, TOKEN},
    TestRepo,
};

pub struct Lab {
    pub repo: TestRepo,
    pub gh: FakeGithub,
    pub work: tempfile::TempDir,
}

impl Lab {
    pub async fn new() -> Lab {
        let repo = TestRepo::with_demo();
        let gh = FakeGithub::start(std::net::TcpListener::bind("127.0.0.1:0").expect("bind"));
        gh.attach_git(&repo.path());
        Lab {
            repo,
            gh,
            work: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn config(&self, random_macs: bool) -> github::Config {
        github::Config {
            repo: format!("{OWNER}/{REPO}"),
            token: Secret::new(TOKEN),
            api_url: self.gh.url(),
            labels: vec!["mdb".into()],
            assignee: None,
            caps: github::Caps::default(),
            write_gap: Duration::from_millis(2),
            retry_base: Duration::from_millis(10),
            max_wait: Duration::from_secs(5),
            timeout: Duration::from_secs(5),
            enrol: Some(EnrolConfig {
                source: sync::Source {
                    url: self.repo.url(),
                    branch: "main".into(),
                    token: None,
                    checkout: self.work.path().join("checkout"),
                    fetch_timeout: Duration::from_secs(20),
                    limits: Default::default(),
                },
                work_dir: self.work.path().join("enrol.git"),
                labels: vec!["enrolment".into()],
                reviewers: vec!["lab-admin".into()],
                random_macs,
            }),
        }
    }

    pub fn filer(&self) -> Filer {
        Filer::new(self.config(false), Metrics::new().github.clone()).expect("filer")
    }

    /// The database as the server would serve it now.
    pub fn snapshot(&self) -> Snapshot {
        let head = self
            .repo
            .repo
            .refname_to_id("refs/heads/main")
            .expect("main");
        let files = files_at(&self.repo.repo, head);
        validate(&files, &head.to_string()).unwrap_or_else(|r| panic!("{r}"))
    }

    /// One sweep's worth of reconciling.
    pub async fn pass(&self, f: &mut Filer, hosts: Vec<DiscoveredHost>) -> github::Summary {
        self.pass_serving(f, hosts, &self.snapshot()).await
    }

    /// A pass while the server serves `snap` (its last good revision, when
    /// the DB branch's head does not validate).
    pub async fn pass_serving(
        &self,
        f: &mut Filer,
        hosts: Vec<DiscoveredHost>,
        snap: &Snapshot,
    ) -> github::Summary {
        let result = SweepResult {
            hosts,
            revision: "rev".into(),
            swept: vec![],
            at_unix: 1_790_000_000,
        };
        f.reconcile(&result, snap)
            .await
            .unwrap_or_else(|e| panic!("reconcile: {e}; rejected: {:?}", self.gh.rejected()))
    }

    /// Merges a pull request's branch into main (a fast-forward, as the
    /// branch sits on main) and marks it merged, as the merge button would.
    pub fn merge(&mut self, pr: &Issue) -> Oid {
        let head = &pr.pull.as_ref().expect("a pull request").head;
        let tip = self
            .repo
            .repo
            .refname_to_id(&format!("refs/heads/{head}"))
            .expect("branch");
        self.repo
            .repo
            .reference("refs/heads/main", tip, true, "merge")
            .expect("fast-forward");
        self.repo.head = Some(tip);
        self.gh.mark_merged(pr.number);
        tip
    }

    pub fn branch_tip(&self, name: &str) -> Option<Oid> {
        self.repo
            .repo
            .refname_to_id(&format!("refs/heads/{name}"))
            .ok()
    }
}

pub fn files_at(repo: &Repository, commit: Oid) -> Vec<SourceFile> {
    let tree = repo
        .find_commit(commit)
        .and_then(|c| c.tree())
        .expect("tree");
    let mut files = Vec::new();
    tree.walk(git2::TreeWalkMode::PreOrder, |dir, e| {
        let path = format!("{dir}{}", e.name().unwrap_or(""));
        if let Ok(blob) = repo.find_blob(e.id()) {
            if mdb::db::is_db_file(&path) {
                files.push(SourceFile {
                    path,
                    text: String::from_utf8_lossy(blob.content()).into_owned(),
                });
            }
        }
        git2::TreeWalkResult::Ok
    })
    .expect("walk");
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}

pub fn pi(ip: &str, mac: &str) -> DiscoveredHost {
    DiscoveredHost {
        ip: ip.into(),
        mac: mac.into(),
        vendor: "Raspberry Pi Trading Ltd".into(),
        state: HostState::New as i32,
        guessed_use: UseKind::Cluster as i32,
        detail: "not in the database".into(),
        open_ports: vec![22, 10250],
        first_seen_unix: 1_790_000_000,
        last_seen_unix: 1_790_000_000,
        ..Default::default()
    }
}

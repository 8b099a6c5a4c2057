//! The attacker suite: what mdb does when those it must not obey try to
//! steer it. Strangers on GitHub plant items that carry mdb's markers; a
//! device on the LAN answers with a hostile SSH banner and floods ARP with
//! new MACs; a DB line (or whoever answers the runner's Watch) tries to
//! reach an argv. Every case asserts the outcome, never a log line.

use crate::util;

use std::{collections::BTreeMap, path::Path};

use git2::Oid;
use mdb::{github::Trailer, proto::DiscoveredHost};
use util::{
    enrol_lab::{pi, Lab},
    fake_github::{Issue, PullInfo, LOGIN, OWNER, REPO},
};

const PI_MAC: &str = "dc:a6:32:77:00:01";
const STRANGER: &str = "mallory";

fn trailer(fp: &str, ip: Option<&str>, name: Option<&str>) -> String {
    Trailer {
        fingerprint: Some(fp.parse().expect("fingerprint")),
        ip: ip.map(String::from),
        name: name.map(String::from),
        reserved: None,
    }
    .write()
}

fn item(author: &str, state: &str, body: String, pull: Option<PullInfo>) -> Issue {
    Issue {
        number: 0,
        title: "Enrol something".into(),
        body: format!("Looks like mdb's own.\n\n{body}"),
        state: state.into(),
        labels: vec!["mdb".into(), "priority/high".into(), "new-device".into()],
        assignees: vec![],
        comments: vec![],
        pull,
        author: author.into(),
    }
}

fn pull(head: &str, head_repo: &str, merged: bool) -> Option<PullInfo> {
    Some(PullInfo {
        head: head.into(),
        head_repo: head_repo.into(),
        base: "main".into(),
        merged,
        reviewers: vec![],
    })
}

/// Every branch of the DB repository and its tip.
fn branches(lab: &Lab) -> BTreeMap<String, Oid> {
    let mut out = BTreeMap::new();
    for r in lab.repo.repo.references().expect("refs").flatten() {
        if let (Some(name), Some(oid)) = (r.name(), r.target()) {
            out.insert(name.to_string(), oid);
        }
    }
    out
}

/// Items planted by a stranger (and one by mdb's login from a fork), each
/// carrying mdb's markers: the old releases' and the trailer alike.
fn plant(lab: &Lab) -> Vec<u64> {
    let main = lab.repo.head.expect("main");
    for b in ["release", "release2", "mdb/enrol/planted"] {
        lab.repo
            .repo
            .reference(
                &format!("refs/heads/{b}"),
                main,
                true,
                "a stranger's branch",
            )
            .expect("branch");
    }
    let cp = "new-device:mac=dc:a6:32:10:00:11";
    let me = format!("new-device:mac={PI_MAC}");
    let own = format!("{OWNER}/{REPO}");
    let fork = format!("{STRANGER}/{REPO}");
    let planted = [
        // Head `release`, the fingerprint of a machine now in the DB: the
        // release before would comment, close and delete `release`.
        item(
            STRANGER,
            "open",
            trailer(cp, Some("198.18.10.11"), Some("alpha-cp-1")),
            pull("release", &own, false),
        ),
        item(
            STRANGER,
            "open",
            trailer(&me, Some("198.18.10.11"), Some("pi")),
            pull("main", &own, false),
        ),
        item(
            STRANGER,
            "open",
            trailer(&me, Some("198.18.10.11"), Some("pi")),
            pull("mdb/enrol/new-device-dca632770001", &fork, false),
        ),
        // Closed unmerged: would dismiss the Pi.
        item(
            STRANGER,
            "closed",
            trailer(&me, Some("198.18.10.12"), Some("pi")),
            pull("mdb/enrol/planted", &own, false),
        ),
        // Merged, naming a served machine: would delete `release2`.
        item(
            STRANGER,
            "closed",
            trailer(cp, Some("198.18.10.11"), Some("alpha-cp-1")),
            pull("release2", &own, true),
        ),
        // mdb's own login, but from a fork: not mdb's branch.
        item(
            LOGIN,
            "open",
            trailer(&me, Some("198.18.10.13"), Some("pi")),
            pull("mdb/enrol/new-device-dca632770001", &fork, false),
        ),
        // Issues with mdb's labels and markers: an open one would stand in
        // for the Pi's issue, a closed one would be reopened.
        item(
            STRANGER,
            "open",
            format!("<!-- mdb-fingerprint: {me} -->\n<!-- mdb-ip: 198.18.10.230 -->\n"),
            None,
        ),
        item(
            STRANGER,
            "closed",
            trailer(&me, Some("198.18.10.230"), None),
            None,
        ),
    ];
    planted.into_iter().map(|i| lab.gh.add_foreign(i)).collect()
}

#[tokio::test]
async fn strangers_items_are_never_touched_whatever_their_bodies_say() {
    let mut lab = Lab::new().await;
    let theirs = plant(&lab);
    let before = branches(&lab);
    let sweep = || vec![pi("198.18.10.230", PI_MAC)];

    // Three "restarts": a new filer each time, as a new process would be.
    for round in 0..3 {
        let mut f = lab.filer();
        let s = lab.pass(&mut f, sweep()).await;
        let (created, proposed) = if round == 0 { (1, 1) } else { (0, 0) };
        assert_eq!(
            (s.created, s.enrol.proposed),
            (created, proposed),
            "round {round}: {s:?}"
        );
        assert_eq!(
            (s.closed, s.enrol.closed, s.enrol.branches_deleted),
            (0, 0, 0),
            "{s:?}"
        );
    }
    let mine: Vec<Issue> = lab
        .gh
        .issues()
        .into_iter()
        .filter(|i| i.author == LOGIN && !theirs.contains(&i.number))
        .collect();
    assert_eq!(
        mine.len(),
        2,
        "one issue and one pull request of mdb's own: {mine:#?}"
    );
    for n in &theirs {
        assert!(
            lab.gh.writes_to(*n).is_empty(),
            "#{n} was written to: {:#?}",
            lab.gh.writes_to(*n)
        );
    }
    let after = branches(&lab);
    for (name, tip) in &before {
        assert_eq!(after.get(name), Some(tip), "{name} was moved or deleted");
    }

    // Merging mdb's own pull request: mdb closes its issue and deletes its
    // own branch, and still touches nothing of the stranger's.
    let own_pull = mine
        .iter()
        .find(|i| i.pull.is_some())
        .expect("mdb's pull request")
        .clone();
    lab.merge(&own_pull);
    let known = DiscoveredHost {
        state: mdb::proto::HostState::Known as i32,
        machine: Trailer::read(&own_pull.body).name.expect("a name"),
        ..pi("198.18.10.230", PI_MAC)
    };
    let mut f = lab.filer();
    let s = lab.pass(&mut f, vec![known]).await;
    assert_eq!((s.closed, s.enrol.branches_deleted), (1, 1), "{s:?}");
    for n in &theirs {
        assert!(
            lab.gh.writes_to(*n).is_empty(),
            "#{n} was written to after the merge"
        );
    }
    let after = branches(&lab);
    for (name, tip) in before
        .iter()
        .filter(|(n, _)| !n.starts_with("refs/heads/main"))
    {
        assert_eq!(
            after.get(name),
            Some(tip),
            "{name} was moved or deleted after the merge"
        );
    }
}

#[tokio::test]
async fn a_sweep_costs_a_few_requests_whatever_strangers_planted() {
    let lab = Lab::new().await;
    plant(&lab);
    for i in 0..100u8 {
        let fp = format!("new-device:mac=dc:a6:32:00:ff:{i:02x}");
        let body = trailer(&fp, Some("198.18.10.200"), Some("x"));
        let head = format!("mdb/enrol/stranger-{i}");
        let p = if i % 2 == 0 {
            pull(&head, &format!("{STRANGER}/{REPO}"), false)
        } else {
            None
        };
        lab.gh.add_foreign(item(STRANGER, "open", body, p));
    }
    let mut f = lab.filer();
    lab.pass(&mut f, vec![pi("198.18.10.230", PI_MAC)]).await;
    let before = lab.gh.requests().len();
    lab.pass(&mut f, vec![pi("198.18.10.230", PI_MAC)]).await;
    let per_sweep = lab.gh.requests().len() - before;
    println!("figure: GitHub API requests per sweep with 108 stranger items: {per_sweep}");
    assert!(
        per_sweep <= 2,
        "a steady sweep reads the pull requests and nothing else: {per_sweep}"
    );
}

// ---------------------------------------------------------------- the DB

fn symlink(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target, link).expect("symlink");
}

#[test]
fn hostile_db_lines_are_refused_by_validate_with_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pwned = dir.path().join("pwned");
    util::write_tree(
        dir.path(),
        &[
            (
                "machines/evil.yaml",
                &format!(
                    "machines:\n  - name: evil\n    ip: 198.18.10.77\n    use: {{ development: server }}\n    ssh: {{ user: \"-oProxyCommand=touch {} #\" }}\n    labels: {{ group: \"{{hosts}}\" }}\n",
                    pwned.display()
                ),
            ),
            (
                "mdb.yaml",
                "readiness:\n  device: [ { http: \"/ HTTP/1.0\\r\\nX-Injected: 1\", port: 80 } ]\n",
            ),
        ],
    );
    let outside = tempfile::tempdir().expect("tempdir");
    symlink(outside.path(), &dir.path().join("machines/enrol"));
    let run = util::mdb([Path::new("validate"), dir.path()]).code(1);
    for want in [
        "machines/evil.yaml:5:",
        "ssh.user: \"-oProxyCommand",
        "machines/evil.yaml:6:",
        "label \"group\"",
        "mdb.yaml:2:",
        "readiness.device[0].http",
        "machines/enrol:1:1: is a symbolic link",
    ] {
        assert!(run.stdout.contains(want), "{want:?} missing:{run}");
    }
    // mdb enrol into that checkout changes nothing, through the link least of all.
    let run = util::mdb([
        "enrol".as_ref(),
        "198.18.10.90".as_ref(),
        "--db".as_ref(),
        dir.path().as_os_str(),
    ]);
    assert_ne!(run.code, Some(0), "{run}");
    let leaked: Vec<_> = std::fs::read_dir(outside.path()).expect("dir").collect();
    assert!(leaked.is_empty(), "written through the link: {leaked:?}");
    assert!(!pwned.exists());
}

//! Enrolment by pull request against real parts: a bare git repository as
//! the DB remote (real pushes over file://) and the fake GitHub on a real
//! socket, with mdb's own filer doing a reconcile pass per "sweep".

use crate::util;

use std::path::Path;

use git2::Repository;
use mdb::{github::Filer, proto::HostState, serve::metrics::Metrics};
use util::{
    enrol_lab::{pi, Lab},
    fake_github::{Fault, Issue},
    TestRepo,
};

const PI_MAC: &str = "dc:a6:32:77:00:01";
const PI2_MAC: &str = "dc:a6:32:77:00:02";

/// The file a pull request's branch adds, and `mdb validate` on a checkout
/// of the branch.
fn check_branch(lab: &Lab, pr: &Issue) -> String {
    let head = &pr.pull.as_ref().expect("pull").head;
    let dir = tempfile::tempdir_in(lab.work.path())
        .expect("tempdir")
        .keep();
    git2::build::RepoBuilder::new()
        .branch(head)
        .clone(&lab.repo.url(), &dir)
        .expect("clone the branch");
    util::mdb([Path::new("validate"), &dir]).ok();
    let name = pr
        .body
        .split("<!-- mdb-name: ")
        .nth(1)
        .and_then(|r| r.split(" -->").next())
        .expect("name marker");
    std::fs::read_to_string(dir.join(format!("machines/enrol/{name}.yaml")))
        .expect("the entry file")
}

fn ip_of(entry: &str) -> std::net::Ipv4Addr {
    entry
        .lines()
        .find_map(|l| l.trim().strip_prefix("ip: "))
        .and_then(|ip| ip.parse().ok())
        .unwrap_or_else(|| panic!("no ip in {entry}"))
}

#[tokio::test]
async fn a_new_device_gets_one_issue_and_one_ready_pull_request() {
    let lab = Lab::new().await;
    let mut f = lab.filer();
    let s = lab.pass(&mut f, vec![pi("198.18.10.230", PI_MAC)]).await;
    assert_eq!((s.created, s.enrol.proposed), (1, 1), "{s:?}");
    let requests = lab.gh.requests();
    let writes = requests.iter().filter(|r| r.method != "GET").count();
    println!(
        "FIGURE GitHub requests for one new device (issue + pull request): {} ({writes} writes, {} reads)",
        requests.len(),
        requests.len() - writes
    );
    let (issues, pulls) = (lab.gh.plain_issues(), lab.gh.pulls());
    assert_eq!((issues.len(), pulls.len()), (1, 1));
    let pr = &pulls[0];
    assert_eq!(pr.pull.as_ref().map(|p| p.base.as_str()), Some("main"));
    assert_eq!(pr.labels, ["enrolment"]);
    assert_eq!(
        pr.pull.as_ref().map(|p| p.reviewers.clone()),
        Some(vec!["lab-admin".to_string()])
    );
    assert!(
        pr.title
            .starts_with("Enrol pi-dca632-0001 at 198.18.10.10 (Raspberry Pi"),
        "{}",
        pr.title
    );
    assert!(
        pr.body.contains(&format!("(issue #{})", issues[0].number)),
        "{}",
        pr.body
    );
    assert!(issues[0]
        .comments
        .iter()
        .any(|c| c.contains(&format!("Proposed in #{}", pr.number))));
    let entry = check_branch(&lab, pr);
    let ip = ip_of(&entry);
    assert!(
        (10..=199).contains(&ip.octets()[3]),
        "inside the static range, outside the pool: {ip}"
    );
    assert!(lab.snapshot().by_ip(ip.into()).is_none(), "free: {ip}");
    assert!(entry.contains("mac: dc:a6:32:77:00:01"), "{entry}");
    assert!(!entry.contains("CHANGE-ME"), "{entry}");
    // The issue's snippet proposes the same, valid entry.
    assert!(
        issues[0].body.contains("ip: 198.18.10.10"),
        "{}",
        issues[0].body
    );
    assert!(lab.gh.rejected().is_empty(), "{:?}", lab.gh.rejected());
}

#[tokio::test]
async fn restarts_and_a_lost_create_answer_leave_one_pull_request_each() {
    let lab = Lab::new().await;
    let hosts = vec![pi("198.18.10.230", PI_MAC)];
    for _ in 0..3 {
        let mut f = lab.filer();
        lab.pass(&mut f, hosts.clone()).await;
    }
    assert_eq!((lab.gh.plain_issues().len(), lab.gh.pulls().len()), (1, 1));
    assert_eq!((lab.gh.creates("issues"), lab.gh.creates("pulls")), (1, 1));
    // The next create is carried out but its answer is lost.
    lab.gh.fail_next(Fault {
        method: Some("POST"),
        status: 502,
        headers: vec![],
        apply: true,
    });
    let mut f = lab.filer();
    let hosts = vec![pi("198.18.10.230", PI_MAC), pi("198.18.10.231", PI2_MAC)];
    // The lost answer may hit the issue or the pull request create.
    lab.pass(&mut f, hosts.clone()).await;
    for _ in 0..2 {
        let mut f = lab.filer();
        lab.pass(&mut f, hosts.clone()).await;
    }
    let (issues, pulls) = (lab.gh.plain_issues(), lab.gh.pulls());
    assert_eq!(
        (issues.len(), pulls.len()),
        (2, 2),
        "{issues:#?}\n{pulls:#?}"
    );
    let ips: Vec<_> = pulls
        .iter()
        .map(|p| ip_of(&check_branch(&lab, p)))
        .collect();
    assert_ne!(ips[0], ips[1], "two devices, two addresses");

    // A third device whose issue exists already: the first POST of the
    // next pass is its pull request, and that answer is lost.
    let third = pi("198.18.10.233", "dc:a6:32:77:00:03");
    let mut issue_only = lab.config(false);
    issue_only.enrol = None;
    let mut f = Filer::new(issue_only, Metrics::new().github.clone()).expect("filer");
    let mut hosts = hosts;
    hosts.push(third);
    lab.pass(&mut f, hosts.clone()).await;
    assert_eq!(lab.gh.pulls().len(), 2);
    lab.gh.fail_next(Fault {
        method: Some("POST"),
        status: 502,
        headers: vec![],
        apply: true,
    });
    for _ in 0..3 {
        let mut f = lab.filer();
        lab.pass(&mut f, hosts.clone()).await;
    }
    let lost = lab
        .gh
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/pulls") && r.status == 502)
        .count();
    assert_eq!(lost, 1, "the pull request create's answer was lost");
    assert_eq!((lab.gh.plain_issues().len(), lab.gh.pulls().len()), (3, 3));
    // What mdb sent, not what the fake let through: one create per pull
    // request and per issue (a blind second create would be refused by
    // the fake's 422, and would still count here).
    assert_eq!(lab.gh.creates("pulls"), 3, "{:#?}", lab.gh.requests());
    assert_eq!(lab.gh.creates("issues"), 3);
}

#[tokio::test]
async fn merging_serves_the_machine_closes_the_issue_and_deletes_the_branch() {
    let mut lab = Lab::new().await;
    let mut f = lab.filer();
    lab.pass(&mut f, vec![pi("198.18.10.230", PI_MAC)]).await;
    let pr = lab.gh.pulls().remove(0);
    let head = pr.pull.clone().expect("pull").head;
    let merged = lab.merge(&pr);
    // The next sweep sees the device as the machine it now is.
    let name = lab
        .snapshot()
        .by_mac(PI_MAC.parse().expect("mac"))
        .expect("served")
        .name
        .clone();
    let mut known = pi("198.18.10.230", PI_MAC);
    known.state = HostState::Moved as i32;
    known.machine = name.clone();
    let s = lab.pass(&mut f, vec![known.clone()]).await;
    assert_eq!(s.closed, 1, "{s:?}");
    assert_eq!(s.enrol.branches_deleted, 1, "{s:?}");
    let issue = lab.gh.plain_issues().remove(0);
    assert_eq!(issue.state, "closed");
    assert!(
        issue
            .comments
            .iter()
            .any(|c| c.contains(&name) && c.contains(&merged.to_string())),
        "{:?}",
        issue.comments
    );
    assert_eq!(lab.branch_tip(&head), None, "branch deleted");
    for _ in 0..3 {
        let mut f = lab.filer();
        let s = lab.pass(&mut f, vec![known.clone()]).await;
        assert_eq!((s.created, s.enrol.proposed), (0, 0));
    }
    assert_eq!((lab.gh.plain_issues().len(), lab.gh.pulls().len()), (1, 1));
    assert!(lab.gh.rejected().is_empty(), "{:?}", lab.gh.rejected());
}

#[tokio::test]
async fn a_pull_request_closed_unmerged_dismisses_the_device() {
    let lab = Lab::new().await;
    let mut f = lab.filer();
    let hosts = vec![pi("198.18.10.230", PI_MAC)];
    lab.pass(&mut f, hosts.clone()).await;
    let pr = lab.gh.pulls().remove(0);
    lab.gh.close(pr.number);
    for _ in 0..3 {
        let mut f = lab.filer();
        lab.pass(&mut f, hosts.clone()).await;
    }
    let (issues, pulls) = (lab.gh.plain_issues(), lab.gh.pulls());
    assert_eq!((issues.len(), pulls.len()), (1, 1), "nothing new is filed");
    assert_eq!(issues[0].state, "closed");
    assert!(
        issues[0].comments.iter().any(|c| c.contains("dismissed")),
        "{:?}",
        issues[0].comments
    );
}

#[tokio::test]
async fn a_commit_taking_the_reserved_address_moves_the_branch_to_another() {
    let mut lab = Lab::new().await;
    let mut f = lab.filer();
    let hosts = vec![pi("198.18.10.230", PI_MAC)];
    lab.pass(&mut f, hosts.clone()).await;
    let pr = lab.gh.pulls().remove(0);
    let head = pr.pull.clone().expect("pull").head;
    let reserved = ip_of(&check_branch(&lab, &pr));
    // Someone records another machine at the reserved address.
    lab.repo.write(
        "machines/other.yaml",
        &format!("machines:\n  - name: other\n    ip: {reserved}\n    use: games\n"),
    );
    let main = lab.repo.commit("take the reserved address");
    let s = lab.pass(&mut f, hosts.clone()).await;
    assert_eq!(s.enrol.rebuilt, 1, "{s:?}");
    let tip = lab.branch_tip(&head).expect("branch");
    assert_eq!(
        lab.repo
            .repo
            .find_commit(tip)
            .expect("commit")
            .parent_id(0)
            .ok(),
        Some(main)
    );
    let pr = lab.gh.pulls().remove(0);
    let moved = ip_of(&check_branch(&lab, &pr));
    assert_ne!(moved, reserved);
    assert!(
        pr.comments.iter().any(|c| c.contains("now proposes")),
        "{:?}",
        pr.comments
    );
    // Nothing moved: nothing is pushed again.
    let s = lab.pass(&mut f, hosts.clone()).await;
    assert_eq!(s.enrol.rebuilt, 0);
    assert_eq!(lab.branch_tip(&head), Some(tip));
    // The DB branch moves on without touching it: the same file, rebased.
    lab.repo.write(
        "machines/third.yaml",
        "machines:\n  - name: third\n    ip: 198.18.10.150\n    use: games\n",
    );
    let main = lab.repo.commit("unrelated");
    let s = lab.pass(&mut f, hosts).await;
    assert_eq!(s.enrol.rebuilt, 1);
    let tip = lab.branch_tip(&head).expect("branch");
    assert_eq!(
        lab.repo
            .repo
            .find_commit(tip)
            .expect("commit")
            .parent_id(0)
            .ok(),
        Some(main)
    );
    assert_eq!(ip_of(&check_branch(&lab, &lab.gh.pulls()[0])), moved);
}

/// mdb never proposes a revision that does not validate: with the DB
/// branch's head invalid (the server keeps serving its last good revision)
/// the device gets its issue and no pull request, no branch is pushed, and
/// once the branch is fixed the proposal comes.
#[tokio::test]
async fn an_invalid_db_branch_gets_no_proposal() {
    let mut lab = Lab::new().await;
    let served = lab.snapshot();
    lab.repo.write(
        "machines/broken.yaml",
        "machines:\n  - name: Not A Label\n    use: games\n",
    );
    lab.repo.commit("a broken commit");
    let mut f = lab.filer();
    let hosts = vec![pi("198.18.10.230", PI_MAC)];
    let s = lab.pass_serving(&mut f, hosts.clone(), &served).await;
    assert_eq!((s.created, s.enrol.proposed), (1, 0), "{s:?}");
    assert_eq!(lab.gh.creates("pulls"), 0);
    let pushed: Vec<String> = lab
        .repo
        .repo
        .references()
        .expect("refs")
        .flatten()
        .filter_map(|r| r.name().map(String::from))
        .filter(|n| n.starts_with("refs/heads/mdb/"))
        .collect();
    assert!(pushed.is_empty(), "nothing pushed: {pushed:?}");
    lab.repo.remove("machines/broken.yaml");
    lab.repo.commit("fixed");
    let s = lab.pass(&mut f, hosts).await;
    assert_eq!(s.enrol.proposed, 1, "{s:?}");
}

/// When the DB branch moves on and no entry fits any more (its address was
/// taken and no static address is left), the pull request is left as it
/// is and says why once per revision of the DB branch.
#[tokio::test]
async fn when_no_entry_fits_the_pull_request_says_so_once_per_revision() {
    let mut lab = Lab::new().await;
    let mut f = lab.filer();
    let hosts = vec![pi("198.18.10.230", PI_MAC)];
    lab.pass(&mut f, hosts.clone()).await;
    let pr = lab.gh.pulls().remove(0);
    let head = pr.pull.clone().expect("pull").head;
    let reserved = ip_of(&check_branch(&lab, &pr));
    let tip = lab.branch_tip(&head);
    lab.repo.write(
        "machines/other.yaml",
        &format!("machines:\n  - name: other\n    ip: {reserved}\n    use: games\n"),
    );
    let full = mdb::demo::FILES
        .iter()
        .find(|(p, _)| *p == "mdb.yaml")
        .map(|(_, t)| {
            t.replace(
                "static: 198.18.10.10-198.18.10.199",
                "static: 198.18.10.11-198.18.10.13",
            )
        })
        .expect("demo mdb.yaml");
    lab.repo.write("mdb.yaml", &full);
    lab.repo.commit("take the address; no static address left");
    let says = |lab: &Lab| {
        lab.gh.pulls()[0]
            .comments
            .iter()
            .filter(|c| c.contains("no longer fits") && c.contains("no free static address"))
            .count()
    };
    for _ in 0..3 {
        let s = lab.pass(&mut f, hosts.clone()).await;
        assert_eq!(s.enrol.rebuilt, 0, "{s:?}");
    }
    assert_eq!(
        says(&lab),
        1,
        "once for this revision: {:?}",
        lab.gh.pulls()[0].comments
    );
    assert_eq!(lab.branch_tip(&head), tip, "the branch is left as it is");
    lab.repo.write(
        "machines/unrelated.yaml",
        "machines:\n  - name: unrelated\n    mac: 00:16:3e:55:00:01\n    use: games\n",
    );
    lab.repo.commit("the DB branch moves on again");
    lab.pass(&mut f, hosts).await;
    assert_eq!(says(&lab), 2, "once more for the new revision");
}

#[tokio::test]
async fn random_macs_are_enrolled_only_when_configured() {
    let lab = Lab::new().await;
    let random = pi("198.18.10.232", "da:a6:32:77:00:09");
    let mut f = lab.filer();
    lab.pass(&mut f, vec![random.clone()]).await;
    assert_eq!((lab.gh.plain_issues().len(), lab.gh.pulls().len()), (1, 0));
    let mut f = Filer::new(lab.config(true), Metrics::new().github.clone()).expect("filer");
    lab.pass(&mut f, vec![random]).await;
    let pulls = lab.gh.pulls();
    assert_eq!(pulls.len(), 1);
    let entry = check_branch(&lab, &pulls[0]);
    assert!(
        !entry.contains("mac:"),
        "a random MAC is no identity: {entry}"
    );
}

/// A git checkout of the demo database, as a person has on their laptop.
fn demo_checkout(dir: &Path) -> Repository {
    util::write_tree(dir, mdb::demo::FILES);
    let repo = Repository::init(dir).expect("init");
    let mut index = repo.index().expect("index");
    index
        .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
        .expect("add");
    index.write().expect("write");
    let tree = repo
        .find_tree(index.write_tree().expect("tree"))
        .expect("tree");
    let sig = git2::Signature::now("t", "t@localhost").expect("sig");
    repo.commit(Some("HEAD"), &sig, &sig, "demo", &tree, &[])
        .expect("commit");
    drop(tree);
    repo
}

fn tree_listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            if e.file_name() == ".git" {
                continue;
            }
            if e.path().is_dir() {
                pending.push(e.path());
            } else {
                out.push(format!(
                    "{}:{}",
                    e.path().display(),
                    std::fs::read_to_string(e.path()).unwrap_or_default().len()
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn mdb_enrol_writes_and_commits_an_entry_that_validates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = demo_checkout(dir.path());
    let db = dir.path().to_str().expect("path");
    let run = util::mdb([
        "enrol",
        "198.18.10.230",
        "--db",
        db,
        "--mac",
        "00:11:22:33:44:55",
        "--use",
        "device",
        "--commit",
    ])
    .ok();
    assert!(run.stdout.starts_with("wrote machines/enrol/"), "{run}");
    assert!(
        run.stdout.contains("ip: 198.18.10.10"),
        "a static address for a host in the pool:{run}"
    );
    util::mdb(["validate", db]).ok();
    let head = repo.head().expect("head").peel_to_commit().expect("commit");
    assert!(
        head.message().unwrap_or("").starts_with("Enrol "),
        "{:?}",
        head.message()
    );
    assert!(
        repo.statuses(None).expect("status").is_empty(),
        "everything committed"
    );
}

#[test]
fn mdb_enrol_refuses_bad_input_in_one_line_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    demo_checkout(dir.path());
    let db = dir.path().to_str().expect("path");
    let before = tree_listing(dir.path());
    for (args, expect) in [
        (
            vec!["198.18.99.5"],
            "198.18.99.5 is outside every subnet declared in mdb.yaml",
        ),
        (
            vec!["198.18.10.231", "--mac", "dc:a6:32:10:00:11"],
            "dc:a6:32:10:00:11 is already in the database as alpha-cp-1",
        ),
        (
            vec!["dc:a6:32:99:00:01"],
            "is a MAC; without --from-server give the IP address",
        ),
        (
            vec!["not-an-address"],
            "\"not-an-address\" is not an IP address",
        ),
        (
            vec!["198.18.10.232", "--name", "devbox"],
            "--name \"devbox\" is taken",
        ),
        (
            vec!["198.18.10.233", "--use", "toaster"],
            "--use \"toaster\" is not one of",
        ),
    ] {
        let mut all = vec!["enrol"];
        all.extend(args);
        all.extend(["--db", db]);
        let run = util::mdb(&all).code(1);
        assert_eq!(run.stderr.lines().count(), 1, "one line:{run}");
        assert!(run.stderr.contains(expect), "{expect:?}:{run}");
    }
    assert_eq!(tree_listing(dir.path()), before, "nothing changed");
}

#[tokio::test]
async fn mdb_enrol_from_a_server_needs_a_device_the_sweeps_found() {
    let repo = TestRepo::with_demo();
    let server = util::start_server(&repo.url(), "1h", "1h").await;
    server.wait_for_revision(repo.head.expect("head")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    demo_checkout(dir.path());
    let (db, addr) = (
        dir.path().to_str().expect("path").to_string(),
        server.grpc.to_string(),
    );
    let run = tokio::task::spawn_blocking(move || {
        util::mdb([
            "enrol",
            "198.18.10.240",
            "--db",
            &db,
            "--from-server",
            &addr,
        ])
    })
    .await
    .expect("run");
    let run = run.code(1);
    assert!(run.stderr.contains("no discovered host"), "{run}");
    server.stop().await;
}

#[tokio::test]
async fn a_reserved_address_is_never_one_a_live_host_answers_at() {
    let lab = Lab::new().await;
    let mut f = lab.filer();
    // An unknown device already answers at the lowest free static address.
    let squatter = pi("198.18.10.10", "da:a6:32:77:00:0a");
    lab.pass(&mut f, vec![pi("198.18.10.230", PI_MAC), squatter])
        .await;
    let pulls = lab.gh.pulls();
    assert_eq!(
        pulls.len(),
        1,
        "only the Pi is enrolled (the other MAC is random)"
    );
    let ip = ip_of(&check_branch(&lab, &pulls[0]));
    assert_ne!(
        ip.to_string(),
        "198.18.10.10",
        "a live host's address is not reserved"
    );
    // The squatter's own issue proposes the address it answers at.
    let issue = lab
        .gh
        .plain_issues()
        .into_iter()
        .find(|i| i.title.contains("198.18.10.10"))
        .expect("the squatter's issue");
    assert!(issue.body.contains("ip: 198.18.10.10\n"), "{}", issue.body);
}

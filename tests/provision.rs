//! The provisioning runner against real parts: namespace hosts with real
//! sshd and key authentication, real `ansible-playbook`, a bare git repo as
//! the DB remote, real `mdb serve` and `mdb provision` processes, and the
//! fake GitHub for the problems it files.

use crate::util;

use std::time::{Duration, Instant};

use util::{
    bench::{count, machine, Bench},
    fake_github::TOKEN,
};

#[test]
fn merged_machines_are_provisioned_and_clusters_rebuilt_through_restarts_and_faults() {
    let mut b = Bench::new(3);
    let cp = machine("cp", "198.18.0.11", "control-plane");
    let w1 = machine("w1", "198.18.0.12", "worker");
    let w2 = machine("w2", "198.18.0.13", "worker");
    b.commit(&[cp.clone(), w1.clone()], "cp and w1");
    b.start_server();
    let cfg = b.config("PLAYBOOK -i {inventory} --limit {hosts} SITE");
    b.start_runner(&cfg);
    b.wait("the first provisioning", 90, || {
        count(&b.runs(), "done cluster alpha") == 1
    });
    assert_eq!(
        count(&b.runs(), "start machine"),
        1,
        "one run for both machines: {:?}",
        b.runs()
    );

    // New worker: one machine run for w2 alone, one cluster run with it in it.
    let pushed = Instant::now();
    let rev = b.commit(&[cp.clone(), w1.clone(), w2.clone()], "w2 joins alpha");
    b.wait("w2's machine run", 60, || {
        b.runs().iter().any(|l| l.starts_with("start machine w2 "))
    });
    let to_start = pushed.elapsed();
    b.wait("alpha's rebuild", 60, || {
        count(&b.runs(), "done cluster alpha") == 2
    });
    let runs = b.runs();
    assert!(runs.contains(&format!("done machine w2 {rev}")), "{runs:?}");
    assert_eq!(
        count(&runs, "start machine"),
        2,
        "exactly once, only w2: {runs:?}"
    );
    assert!(
        b.marker("machine-w2").split_whitespace().nth(2) == Some("198.18.0.13"),
        "over SSH to w2: {:?}",
        b.marker("machine-w2")
    );
    assert!(
        b.marker("cluster-alpha").contains("w2 agent,k3s_cluster"),
        "{}",
        b.marker("cluster-alpha")
    );
    println!(
        "FIGURE git push to playbook start: {to_start:?} (server poll 100 ms, debounce 700 ms)"
    );

    // A burst of five commits: one run, on the last revision.
    let before = count(&b.runs(), "start machine w1");
    let mut last = String::new();
    for i in 0..5 {
        let w1 = w1.replace(
            "ssh: { user: root }",
            &format!("ssh: {{ user: root }}\n    labels: {{ burst: \"{i}\" }}"),
        );
        last = b.commit(&[cp.clone(), w1, w2.clone()], "burst");
        std::thread::sleep(Duration::from_millis(60));
    }
    b.wait("the burst's run", 60, || {
        b.runs()
            .iter()
            .any(|l| l == &format!("done machine w1 {last}"))
    });

    // Broken key: not ready, one issue with the reason; key back: closed.
    b.authorize(0, false);
    let cp_changed = cp.replace(
        "ssh: { user: root }",
        "ssh: { user: root }\n    labels: { rack: \"2\" }",
    );
    let w1_now = w1.replace(
        "ssh: { user: root }",
        "ssh: { user: root }\n    labels: { burst: \"4\" }",
    );
    b.commit(&[cp_changed.clone(), w1_now.clone(), w2.clone()], "move cp");
    b.wait("an issue for cp", 60, || {
        b.gh.plain_issues()
            .iter()
            .any(|i| i.title == "Cannot provision cp")
    });
    // The runner takes revisions in order: by the time it judged cp at the
    // next one, any further run of the burst would have been recorded.
    let burst = count(&b.runs(), "start machine w1") - before;
    assert_eq!(burst, 1, "{:?}", b.runs());
    println!("FIGURE runs per burst of 5 commits: {burst}");
    let st = b.status("cp").expect("status");
    assert_eq!(st["result"], "not ready", "{st}");
    assert!(
        st["reason"]
            .as_str()
            .unwrap_or("")
            .contains("ssh key authentication as root@198.18.0.11:22 failed"),
        "{st}"
    );
    let not_ready = || {
        b.runner_metric("mdb_provision_runs_total{kind=\"machine\",result=\"not_ready\"}")
            .unwrap_or(0.0)
    };
    let failures = not_ready();
    b.wait("three more failed readiness checks of cp", 60, || {
        not_ready() >= failures + 3.0
    });
    assert_eq!(
        b.gh.plain_issues().len(),
        1,
        "exactly one issue while it keeps failing"
    );
    b.authorize(0, true);
    b.wait("cp's issue to close", 60, || {
        b.gh.plain_issues().iter().all(|i| i.state == "closed")
    });
    assert!(b.gh.plain_issues()[0]
        .comments
        .iter()
        .any(|c| c.starts_with("Provisioned at revision")));

    // kill -9 during a run: the run's process group does not outlive the
    // runner's next start, and the run is redone, nothing skipped or repeated.
    b.kill_runner();
    let slow = b.config("sleep 8; PLAYBOOK -i {inventory} --limit {hosts} SITE");
    b.start_runner(&slow);
    let w2_moved = w2.replace(
        "ssh: { user: root }",
        "ssh: { user: root }\n    labels: { disk: ssd }",
    );
    let rev = b.commit(
        &[cp_changed.clone(), w1_now.clone(), w2_moved.clone()],
        "w2 disk",
    );
    b.wait("the slow run to start", 60, || {
        b.runs()
            .iter()
            .any(|l| l == &format!("start machine w2 {rev}"))
    });
    let ledger = b.dir.join("state/running.group");
    let pgid: i32 = std::fs::read_to_string(&ledger)
        .expect("the running command's group is recorded")
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a group");
    b.kill_runner();
    assert!(
        util::process::group_members(pgid) > 0,
        "the command's sleep outlives a kill -9 of the runner"
    );
    b.start_runner(&slow);
    b.wait("the old command group to be ended", 10, || {
        util::process::group_members(pgid) == 0
    });
    assert_eq!(
        count(&b.runs(), &format!("start machine w2 {rev}")),
        1,
        "ended before the redo starts"
    );
    b.wait("the interrupted run to be redone", 60, || {
        b.runs()
            .iter()
            .any(|l| l == &format!("done machine w2 {rev}"))
    });
    let runs = b.runs();
    assert_eq!(
        count(&runs, &format!("start machine w2 {rev}")),
        2,
        "interrupted, then redone: {runs:?}"
    );
    let done: Vec<&String> = runs.iter().filter(|l| l.starts_with("done ")).collect();
    let unique: std::collections::BTreeSet<&&String> = done.iter().collect();
    assert_eq!(
        done.len(),
        unique.len(),
        "no finished run is repeated: {runs:?}"
    );

    // The server restarts mid-stream: the runner reconnects and goes on.
    b.stop_server();
    std::thread::sleep(Duration::from_secs(1));
    b.start_server();
    let w1_later = w1_now.replace("burst: \"4\"", "burst: \"after-restart\"");
    let rev = b.commit(
        &[cp_changed, w1_later, w2_moved],
        "after the server restart",
    );
    b.wait("a run after the server restart", 90, || {
        b.runs()
            .iter()
            .any(|l| l == &format!("done machine w1 {rev}"))
    });
    assert!(b.gh.rejected().is_empty(), "{:?}", b.gh.rejected());
}

#[test]
fn bad_commands_failing_playbooks_and_hangs_are_statuses_and_retries() {
    let mut b = Bench::new(1);
    b.commit(&[machine("cp", "198.18.0.11", "control-plane")], "cp");
    b.start_server();
    let hook_listener = b.lan.listen_in_scanner();
    let hook_port = hook_listener.local_addr().expect("addr").port();
    let hook = util::receiver::receiver(hook_listener, false);
    for (runs, (command, expect)) in [
        ("/nonexistent/ansible-playbook {hosts}", "not found"),
        (
            "PLAYBOOK -i {inventory} --limit {hosts} /nonexistent/site.yml",
            "failed",
        ),
        ("sleep 60", "timeout"),
    ]
    .into_iter()
    .enumerate()
    {
        let _ = std::fs::remove_dir_all(b.dir.join("state"));
        let cfg = b.config(command);
        let cfg_text = std::fs::read_to_string(&cfg)
            .expect("config")
            .replace("timeout = \"20s\"", "timeout = \"2s\"")
            + &format!("\n[[notify]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{hook_port}/hook\"\nmin_gap = \"10ms\"\nevents = [\"provision_failed\", \"provision_recovered\"]\n");
        std::fs::write(&cfg, cfg_text).expect("config");
        b.start_runner(&cfg);
        // A third attempt ends after the first message had all the time it
        // needed, so a message per attempt would be here by then.
        b.wait("a failed status, three attempts", 90, || {
            b.status("cp").is_some_and(|s| {
                s["result"] == "failed" && s["attempts"].as_u64().unwrap_or(0) >= 3
            })
        });
        let st = b.status("cp").expect("status");
        let reason = st["reason"].as_str().unwrap_or("").to_lowercase();
        assert!(reason.contains(expect), "{expect:?} in {st}");
        // Told once per runner (its ledger went with its state), not per
        // attempt.
        assert_eq!(
            util::receiver::events(&hook, "provision_failed"),
            runs + 1,
            "{:#?}",
            hook.lock().expect("lock")
        );
        b.kill_runner();
    }
    assert_eq!(util::receiver::events(&hook, "provision_recovered"), 0);

    // A playbook that is not there yet fails; once it is, the next retry
    // provisions cp and says so, once.
    let _ = std::fs::remove_dir_all(b.dir.join("state"));
    let later = b.dir.join("later.yml");
    let cfg = b.config(&format!(
        "PLAYBOOK -i {{inventory}} --limit {{hosts}} {}",
        later.display()
    ));
    let cfg_text = std::fs::read_to_string(&cfg).expect("config")
        + &format!("\n[[notify]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{hook_port}/hook\"\nmin_gap = \"10ms\"\nevents = [\"provision_failed\", \"provision_recovered\"]\n");
    std::fs::write(&cfg, cfg_text).expect("config");
    b.start_runner(&cfg);
    b.wait("cp failing", 60, || {
        b.status("cp").is_some_and(|s| s["result"] == "failed")
    });
    std::fs::copy(b.dir.join("site.yml"), &later).expect("the playbook arrives");
    b.wait("cp provisioned", 90, || {
        b.status("cp").is_some_and(|s| s["result"] == "ok")
    });
    b.wait("provision_recovered told", 30, || {
        util::receiver::events(&hook, "provision_recovered") == 1
    });
    assert_eq!(util::receiver::events(&hook, "provision_failed"), 4);
    b.kill_runner();
    let log = std::fs::read_to_string(b.dir.join("provision.log")).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn dry_run_prints_what_would_run_and_changes_nothing() {
    let mut b = Bench::new(1);
    b.commit(&[machine("cp", "198.18.0.11", "control-plane")], "cp");
    b.start_server();
    let cfg = b.config("PLAYBOOK -i {inventory} --limit {hosts} SITE");
    b.wait_server_ready();
    let out = b
        .in_scanner()
        .args([
            "provision",
            "--config",
            cfg.to_str().expect("path"),
            "--dry-run",
        ])
        .env("MDB_GITHUB_TOKEN", TOKEN)
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("would check and provision cp (action machine):"),
        "{text}"
    );
    assert!(text.contains("would rebuild cluster alpha:"), "{text}");
    assert!(b.runs().is_empty(), "nothing ran");
    assert!(!b.dir.join("state/state.json").exists(), "no state changed");
}

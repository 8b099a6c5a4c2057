//! Whatever answers at a server's address is an impostor until what it
//! sends validates: a real tonic server (`util::impostor`) feeds the
//! provisioning runner, `mdb dhcp --follow` and the CLI's `--server`
//! commands hostile revisions, names with a line of their own, lagging
//! streams and half revisions. Nothing is run or written from any of it,
//! and no command learns one of mdb's secrets.

use crate::util;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use mdb::proto::{
    machine::Use, readiness_check::Check, ClusterUse, DevelopmentUse, HttpCheck, Machine,
    ReadinessCheck, Ssh, UseKind, WatchEvent,
};
use util::{
    impostor::Impostor,
    process::{free_port, Reaped},
};

/// A commit id, as a real server sends.
const REV: &str = "aaaa000000000000000000000000000000000001";

fn dev(name: &str, user: &str, ssh_port: u16) -> Machine {
    Machine {
        name: name.into(),
        ips: vec!["127.0.0.1".into()],
        r#use: Some(Use::Development(DevelopmentUse { kind: 1 })),
        ssh: Some(Ssh {
            user: user.into(),
            port: u32::from(ssh_port),
            ..Default::default()
        }),
        source: format!("machines/{name}.yaml:2"),
        ..Default::default()
    }
}

/// A machine with a DHCP reservation (a MAC and an IPv4 address).
fn reserved(name: &str, last: u8) -> Machine {
    Machine {
        name: name.into(),
        ips: vec![format!("198.18.0.{last}")],
        mac: format!("02:00:00:00:00:{last:02x}"),
        r#use: Some(Use::Games(Default::default())),
        source: format!("machines/{name}.yaml:2"),
        ..Default::default()
    }
}

fn wait(what: &str, secs: u64, cond: impl Fn() -> bool, log: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_sent_hostile_lines_acts_on_nothing_until_a_valid_revision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pwned = dir.path().join("pwned");
    let ran = dir.path().join("ran");
    // SSH on a loopback port nothing listens on: a valid machine is
    // "not ready", and no packet leaves the machine.
    let closed = free_port();
    let evil = Machine {
        labels: [("group".to_string(), "{hosts}".to_string())].into(),
        ..dev(
            "evil",
            &format!("-oProxyCommand=touch {} #", pwned.display()),
            closed,
        )
    };
    let crlf = ReadinessCheck {
        r#use: UseKind::Development as i32,
        check: Some(Check::Http(HttpCheck {
            port: u32::from(closed),
            path: "/ HTTP/1.0\r\nX-Injected: 1".into(),
            status: 200,
        })),
    };
    let impostor = Impostor::new(REV, vec![evil]);
    impostor.readiness.lock().expect("lock").checks = vec![crlf];
    let server = impostor.serve().await;
    let runner = format!("127.0.0.1:{}", free_port());
    let config = dir.path().join("provision.toml");
    std::fs::write(
        &config,
        format!(
            "[provision]\nserver = \"{server}\"\nstate_dir = \"{}\"\nmachine_command = [\"sh\", \"-c\", \"touch {}\"]\ndebounce = \"100ms\"\nssh_timeout = \"2s\"\nretry_base = \"200ms\"\ngrpc_listen = \"{runner}\"\nmetrics_listen = \"127.0.0.1:{}\"\n",
            dir.path().join("state").display(),
            ran.display(),
            free_port()
        ),
    )
    .expect("config");
    let _runner = Reaped(
        std::process::Command::new(util::bin())
            .args(["provision", "--config", config.to_str().expect("path")])
            .stderr(std::fs::File::create(dir.path().join("log")).expect("log"))
            .spawn()
            .expect("mdb provision"),
    );
    let log = || std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
    let status = || {
        let out = util::mdb(["provisioned", "--runner", &runner, "--json"]);
        (out.stderr.clone(), out.stdout.clone())
    };
    let refused_for = |wants: &[&str]| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (err, json) = status();
            if err.contains("refuses its revision") && wants.iter().all(|w| err.contains(w)) {
                assert_eq!(json.trim(), "[]", "no status: nothing was checked or run");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no refusal naming {wants:?} after 30 s:\n{err}\n{}",
                log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    refused_for(&["ssh.user", "labels", "readiness.development[0].http"]);
    assert!(!pwned.exists() && !ran.exists(), "nothing ran");

    // Valid machines, but a revision with a line of its own: refused too.
    impostor.readiness.lock().expect("lock").checks.clear();
    impostor.send(WatchEvent {
        revision: format!(
            "{REV}\n  x: {{ ansible_ssh_common_args: -o ProxyCommand=touch {} }}",
            pwned.display()
        ),
        changed: vec![dev("good", "admin", closed)],
        whole: true,
        ..Default::default()
    });
    refused_for(&["not a commit id"]);
    assert!(!pwned.exists() && !ran.exists(), "nothing ran");

    // A valid revision from the same server is acted on: the refusal goes
    // and the machine is checked (not ready: nothing answers its SSH port).
    impostor.send(WatchEvent {
        revision: REV.into(),
        changed: vec![dev("good", "admin", closed)],
        whole: true,
        ..Default::default()
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (err, json) = status();
        if json.contains("\"good\"") && json.contains("not ready") {
            assert!(!err.contains("refuses"), "{err}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the valid revision was not acted on:\n{err}\n{json}\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!pwned.exists() && !ran.exists());
}

/// `mdb ARGS` run on a blocking thread (the impostor serves on this runtime).
async fn mdb(args: Vec<String>) -> util::Run {
    tokio::task::spawn_blocking(move || util::mdb(args.iter().map(String::as_str)))
        .await
        .expect("mdb")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clis_server_commands_write_nothing_an_impostor_sends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cp = |name: &str| Machine {
        r#use: Some(Use::Cluster(ClusterUse {
            cluster: "alpha".into(),
            role: 1,
        })),
        ..reserved(name, 10)
    };
    let impostor = Impostor::new(REV, vec![cp("pi\ndhcp-script=/srv/x")]);
    let server = impostor.serve().await;
    let commands = |server: &str| -> Vec<Vec<String>> {
        [
            &["inventory", "--list", "--format", "yaml"][..],
            &["cluster", "alpha", "--format", "k3s"],
            &["dhcp", "--format", "dnsmasq"],
            &["dhcp", "--format", "isc"],
            &["get", "pi"],
        ]
        .iter()
        .map(|a| {
            a.iter()
                .map(|s| s.to_string())
                .chain(["--server".to_string(), server.to_string()])
                .collect()
        })
        .collect()
    };
    for args in commands(&server) {
        let run = mdb(args.clone()).await;
        assert_ne!(
            run.code,
            Some(0),
            "{args:?} accepted a name with a newline: {run}"
        );
        assert!(run.stdout.is_empty(), "{args:?} wrote: {run}");
        assert!(!run.stdout.contains("dhcp-script"), "{run}");
    }
    // Plain names, a revision holding a line of its own.
    impostor.set(&format!("{REV}\ndhcp-script=/srv/x"), vec![cp("pi")]);
    // (`get` prints one machine, which names no revision.)
    for args in commands(&server).into_iter().filter(|a| a[0] != "get") {
        let run = mdb(args.clone()).await;
        assert_ne!(run.code, Some(0), "{args:?}: {run}");
        assert!(run.stdout.is_empty(), "{args:?} wrote: {run}");
        assert!(run.stderr.contains("not a commit id"), "{args:?}: {run}");
    }
    // The same from a server that sends what validates: written, and
    // dnsmasq takes every line as its own option, none injected.
    impostor.set(REV, vec![cp("pi")]);
    let run = mdb(commands(&server)[2].clone()).await;
    assert_eq!(run.code, Some(0), "{run}");
    assert!(
        run.stdout
            .contains("dhcp-host=02:00:00:00:00:0a,198.18.0.10,pi"),
        "{run}"
    );
    let conf = dir.path().join("dnsmasq.conf");
    std::fs::write(&conf, &run.stdout).expect("conf");
    let test = std::process::Command::new("dnsmasq")
        .arg("--test")
        .arg(format!("--conf-file={}", conf.display()))
        .output()
        .expect("dnsmasq (.ci/run installs it)");
    assert!(test.status.success(), "{test:?}");
    let run = mdb(commands(&server)[0].clone()).await;
    assert_eq!(run.code, Some(0), "{run}");
    assert!(
        run.stdout.contains(&format!("from revision {REV};")),
        "{run}"
    );
}

/// The DHCP follower's /status.
async fn dhcp_status(port: u16) -> serde_json::Value {
    let (_, body) = util::http_get(([127, 0, 0, 1], port).into(), "/status").await;
    serde_json::from_str(&body).unwrap_or(serde_json::Value::Null)
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("mdb-"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_drop_what_a_whole_revision_lacks_wait_for_every_piece_and_pass_no_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let impostor = Impostor::new(REV, vec![reserved("m1", 11), reserved("m2", 12)]);
    // Nothing is dialled: the DB's policy leaves games machines alone.
    impostor
        .readiness
        .lock()
        .expect("lock")
        .policy_by_use
        .insert("games".into(), "none".into());
    let server = impostor.serve().await;
    let (runner, dhcp) = (free_port(), free_port());
    let hosts = d.join("hosts");
    std::fs::create_dir_all(&hosts).expect("hostsdir");
    std::fs::write(
        d.join("mdb.toml"),
        format!(
            "[provision]\nserver = \"{server}\"\nstate_dir = \"{}\"\nmachine_command = [\"true\"]\nremoval_command = [\"sh\", \"-c\", \"echo {{hosts}} >> {}; env > {}\"]\ndebounce = \"100ms\"\ngrpc_listen = \"127.0.0.1:{runner}\"\nmetrics_listen = \"127.0.0.1:{}\"\n\n[dhcp]\nserver = \"{server}\"\nhostsdir = \"{}\"\nhook = [\"sh\", \"-c\", \"env > {}\"]\nstate_dir = \"{}\"\ndebounce = \"100ms\"\nmetrics_listen = \"127.0.0.1:{dhcp}\"\n\n[[notify]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/hook\"\nsecret_env = \"HOOK_SECRET\"\n",
            d.join("state").display(),
            d.join("removed.log").display(),
            d.join("removal-env.txt").display(),
            free_port(),
            hosts.display(),
            d.join("hook-env.txt").display(),
            d.join("dhcp-state").display(),
        ),
    )
    .expect("config");
    let secrets = [
        ("MDB_GITHUB_TOKEN", "ghp_secret_github_token"),
        ("MDB_DB_TOKEN", "secret_db_token"),
        ("HOOK_SECRET", "secret_webhook_key"),
    ];
    let spawn = |args: &[&str], log: &str| {
        let mut c = std::process::Command::new(util::bin());
        c.args(args)
            .envs(secrets)
            .stderr(std::fs::File::create(d.join(log)).expect("log"));
        Reaped(c.spawn().expect("mdb"))
    };
    let config = d.join("mdb.toml").display().to_string();
    let _runner = spawn(&["provision", "--config", &config], "runner.log");
    let _dhcp = spawn(&["dhcp", "--follow", "--config", &config], "dhcp.log");
    let logs = || {
        format!(
            "runner:\n{}\ndhcp:\n{}",
            std::fs::read_to_string(d.join("runner.log")).unwrap_or_default(),
            std::fs::read_to_string(d.join("dhcp.log")).unwrap_or_default()
        )
    };
    let statuses = || {
        let out = util::mdb([
            "provisioned",
            "--runner",
            &format!("127.0.0.1:{runner}"),
            "--json",
        ]);
        serde_json::from_str::<Vec<serde_json::Value>>(&out.stdout).unwrap_or_default()
    };
    let removed = || std::fs::read_to_string(d.join("removed.log")).unwrap_or_default();
    let dhcp_files = || files(&hosts);
    // The test's own thread may block: the impostor serves on the workers.
    wait(
        "both followers to act on the first revision",
        60,
        || {
            dhcp_files() == ["mdb-m1", "mdb-m2"]
                && statuses()
                    .iter()
                    .filter(|s| s["result"] == "skipped")
                    .count()
                    == 2
        },
        logs,
    );

    // The follower fell behind and missed m2's removal: the server sends
    // the whole revision again, without m2.
    impostor.send(WatchEvent {
        revision: "aaaa000000000000000000000000000000000002".into(),
        changed: vec![reserved("m1", 11)],
        whole: true,
        ..Default::default()
    });
    wait(
        "m2's removal to reach both followers",
        60,
        || removed().lines().count() >= 1 && dhcp_files() == ["mdb-m1"],
        logs,
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(removed().lines().collect::<Vec<_>>(), ["m2"], "once");

    // Half a revision, then a pause longer than the debounce: nothing is
    // acted on until its last piece is in.
    impostor.send(WatchEvent {
        revision: "aaaa000000000000000000000000000000000003".into(),
        changed: vec![reserved("m3", 13)],
        more: true,
        ..Default::default()
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(dhcp_files(), ["mdb-m1"], "acted on half a revision");
    assert!(
        !statuses().iter().any(|s| s["target"] == "m3"),
        "the runner acted on half a revision: {:?}",
        statuses()
    );
    impostor.send(WatchEvent {
        revision: "aaaa000000000000000000000000000000000003".into(),
        changed: vec![reserved("m4", 14)],
        ..Default::default()
    });
    wait(
        "the whole revision",
        60,
        || {
            dhcp_files() == ["mdb-m1", "mdb-m3", "mdb-m4"]
                && statuses()
                    .iter()
                    .filter(|s| s["result"] == "skipped")
                    .count()
                    == 3
        },
        logs,
    );

    // Neither the removal command nor the hook saw a secret.
    for file in ["removal-env.txt", "hook-env.txt"] {
        let env = std::fs::read_to_string(d.join(file)).expect(file);
        assert!(env.contains("PATH="), "{file}: {env}");
        for (name, value) in secrets {
            assert!(
                !env.contains(value) && !env.contains(name),
                "{name} reached {file}:\n{env}"
            );
        }
    }
    let st = dhcp_status(dhcp).await;
    assert_eq!(st["revision_refused"], "", "{st}");
}

/// `mdb dhcp --follow` set up by `[dhcp]` of `--config` alone: its hook
/// runs after each change with `{file}` holding every reservation as
/// `MAC,IP,NAME`; a revision that does not validate (a name that would be
/// a path) is refused whole: no file written, no hook run, the refusal in
/// `/status` and `mdb_dhcp_revision_refused` until a valid one comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dhcp_follower_set_up_by_its_section_hooks_each_change_and_refuses_a_bad_revision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let impostor = Impostor::new(REV, vec![reserved("m1", 11), reserved("m2", 12)]);
    let server = impostor.serve().await;
    let port = free_port();
    let hosts = d.join("hosts");
    std::fs::create_dir_all(&hosts).expect("hostsdir");
    let runs = d.join("hook-runs");
    std::fs::create_dir_all(&runs).expect("runs");
    std::fs::write(
        d.join("mdb.toml"),
        format!(
            "[dhcp]\nserver = \"{server}\"\nhostsdir = \"{}\"\nhook = [\"sh\", \"-c\", \"cp \\\"$1\\\" {}/run-$(date +%s%N)\", \"hook\", \"{{file}}\"]\nstate_dir = \"{}\"\ndebounce = \"100ms\"\nmetrics_listen = \"127.0.0.1:{port}\"\n",
            hosts.display(),
            runs.display(),
            d.join("state").display(),
        ),
    )
    .expect("config");
    let config = d.join("mdb.toml").display().to_string();
    let _dhcp = Reaped(
        std::process::Command::new(util::bin())
            .args(["dhcp", "--follow", "--config", &config])
            .stderr(std::fs::File::create(d.join("dhcp.log")).expect("log"))
            .spawn()
            .expect("mdb dhcp --follow"),
    );
    let log = || std::fs::read_to_string(d.join("dhcp.log")).unwrap_or_default();
    let hook_runs = || {
        let mut all: Vec<String> = std::fs::read_dir(&runs)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().display().to_string())
            .collect();
        all.sort();
        all.iter()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect::<Vec<_>>()
    };
    let both = "02:00:00:00:00:0b,198.18.0.11,m1\n02:00:00:00:00:0c,198.18.0.12,m2\n";
    wait(
        "the hook with both reservations",
        60,
        || {
            files(&hosts) == ["mdb-m1", "mdb-m2"]
                && hook_runs().last().map(String::as_str) == Some(both)
        },
        log,
    );
    let refused = || async {
        let (_, metrics) = util::http_get(([127, 0, 0, 1], port).into(), "/metrics").await;
        util::metric(&metrics, "mdb_dhcp_revision_refused")
    };
    assert_eq!(refused().await, Some(0.0));

    // A whole revision with a machine named like a path: refused whole.
    let runs_before = hook_runs().len();
    let mut evil = reserved("x", 13);
    evil.name = "../../etc/cron.d/x".into();
    impostor.set(
        "aaaa000000000000000000000000000000000002",
        vec![reserved("m1", 11), evil],
    );
    impostor.send(WatchEvent {
        revision: "aaaa000000000000000000000000000000000002".into(),
        changed: vec![reserved("m1", 11), {
            let mut e = reserved("x", 13);
            e.name = "../../etc/cron.d/x".into();
            e
        }],
        whole: true,
        ..Default::default()
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let st = loop {
        let st = dhcp_status(port).await;
        if st["revision_refused"] != "" {
            break st;
        }
        assert!(Instant::now() < deadline, "{st}\n{}", log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        st["revision_refused"]
            .as_str()
            .unwrap_or_default()
            .contains("cron.d"),
        "{st}"
    );
    assert_eq!(refused().await, Some(1.0));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(files(&hosts), ["mdb-m1", "mdb-m2"], "nothing written");
    assert_eq!(hook_runs().len(), runs_before, "no hook run");

    // A valid revision: acted on, and the refusal is over.
    impostor.set(
        "aaaa000000000000000000000000000000000003",
        vec![reserved("m1", 11)],
    );
    impostor.send(WatchEvent {
        revision: "aaaa000000000000000000000000000000000003".into(),
        changed: vec![reserved("m1", 11)],
        whole: true,
        ..Default::default()
    });
    wait(
        "the valid revision",
        30,
        || {
            files(&hosts) == ["mdb-m1"]
                && hook_runs().last().map(String::as_str)
                    == Some("02:00:00:00:00:0b,198.18.0.11,m1\n")
        },
        log,
    );
    assert_eq!(refused().await, Some(0.0));
}

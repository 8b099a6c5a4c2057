//! Every port authenticates: a real `mdb serve` with token files answers a
//! gRPC call only with a token of the scope the method needs (health stays
//! open), `/metrics` only with the metrics token; the CLI sends its token
//! from a file or the environment; a client certificate signed by the
//! server's client CA is mdb's own part (mutual TLS); the runner's port
//! takes runner tokens only.

use crate::util;

use std::path::Path;

use mdb::proto::{
    machine_db_client::MachineDbClient, GetClusterRequest, GetDiscoveredRequest,
    GetHostHistoryRequest, GetMachineRequest, GetReadinessRequest, GetStatsRequest,
    ListClustersRequest, ListDiscoveredRequest, ListHostHistoryRequest, ListMachinesRequest,
    SuggestAddressRequest, WatchRequest,
};
use tonic::{transport::Channel, Code, Request};
use util::{
    pki::Pki,
    process::{http_get_with, ServeProcess},
    TestRepo,
};

const READ: &str = "read-token-0123456789abcdef";
const MIRROR: &str = "mirror-token-0123456789abcdef";
const METRICS: &str = "metrics-token-0123456789abcdef";

fn write_tokens(dir: &Path) -> String {
    for (name, token) in [("read", READ), ("mirror", MIRROR), ("metrics", METRICS)] {
        std::fs::write(dir.join(name), format!("{token}\n")).expect("token file");
    }
    format!(
        "[server.tokens]\nread = \"{}\"\nmirror = \"{}\"\nmetrics = \"{}\"\n",
        dir.join("read").display(),
        dir.join("mirror").display(),
        dir.join("metrics").display()
    )
}

fn with_token<T>(msg: T, token: Option<&str>) -> Request<T> {
    let mut r = Request::new(msg);
    if let Some(t) = token {
        r.metadata_mut().insert(
            "authorization",
            format!("Bearer {t}").parse().expect("ascii"),
        );
    }
    r
}

/// Every method of `MachineDb` called once with `token`: each one's code
/// (a call that got through answers Ok, NotFound or InvalidArgument).
async fn every_method(ch: Channel, token: Option<&str>) -> Vec<(&'static str, Code)> {
    let mut c = MachineDbClient::new(ch);
    let code = |r: Result<(), tonic::Status>| r.err().map_or(Code::Ok, |s| s.code());
    let t = token;
    vec![
        (
            "ListMachines",
            code(
                c.list_machines(with_token(ListMachinesRequest::default(), t))
                    .await
                    .map(|_| ()),
            ),
        ),
        (
            "GetMachine",
            code(
                c.get_machine(with_token(
                    GetMachineRequest {
                        key: "alpha-cp-1".into(),
                    },
                    t,
                ))
                .await
                .map(|_| ()),
            ),
        ),
        (
            "ListClusters",
            code(
                c.list_clusters(with_token(ListClustersRequest {}, t))
                    .await
                    .map(|_| ()),
            ),
        ),
        (
            "GetCluster",
            code(
                c.get_cluster(with_token(
                    GetClusterRequest {
                        name: "alpha".into(),
                    },
                    t,
                ))
                .await
                .map(|_| ()),
            ),
        ),
        (
            "GetStats",
            code(
                c.get_stats(with_token(GetStatsRequest {}, t))
                    .await
                    .map(|_| ()),
            ),
        ),
        (
            "ListDiscovered",
            code(
                c.list_discovered(with_token(ListDiscoveredRequest::default(), t))
                    .await
                    .map(|_| ()),
            ),
        ),
        (
            "GetDiscovered",
            code(
                c.get_discovered(with_token(
                    GetDiscoveredRequest {
                        key: "198.18.0.1".into(),
                    },
                    t,
                ))
                .await
                .map(|_| ()),
            ),
        ),
        (
            "SuggestAddress",
            code(
                c.suggest_address(with_token(
                    SuggestAddressRequest {
                        subnet: "lab".into(),
                    },
                    t,
                ))
                .await
                .map(|_| ()),
            ),
        ),
        (
            "Watch",
            code(
                c.watch(with_token(
                    WatchRequest {
                        initial_snapshot: true,
                        discovery: true,
                    },
                    t,
                ))
                .await
                .map(|_| ()),
            ),
        ),
        (
            "GetReadiness",
            code(
                c.get_readiness(with_token(GetReadinessRequest {}, t))
                    .await
                    .map(|_| ()),
            ),
        ),
        (
            "GetHostHistory",
            code(
                c.get_host_history(with_token(
                    GetHostHistoryRequest {
                        key: "mac:x".into(),
                    },
                    t,
                ))
                .await
                .map(|_| ()),
            ),
        ),
        (
            "ListHostHistory",
            code(
                c.list_host_history(with_token(ListHostHistoryRequest::default(), t))
                    .await
                    .map(|_| ()),
            ),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_needs_a_token_of_its_scope_and_health_stays_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = TestRepo::with_demo();
    let cfg = dir.path().join("mdb.toml");
    std::fs::write(&cfg, write_tokens(dir.path())).expect("config");
    let mut s = ServeProcess::for_repo(
        dir.path(),
        &repo.url(),
        &["--config", cfg.to_str().expect("path")],
    );
    s.wait_ready().await;
    assert!(
        !s.logs().contains("answers anyone"),
        "no open-ports warning with tokens:\n{}",
        s.logs()
    );
    let ch = Channel::from_shared(format!("http://{}", s.grpc))
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mirrored = ["Watch", "ListHostHistory", "GetHostHistory", "GetStats"];
    for (who, token) in [
        ("no token", None),
        ("a wrong token", Some("wrong-token-0123456789")),
    ] {
        for (method, code) in every_method(ch.clone(), token).await {
            assert_eq!(code, Code::Unauthenticated, "{method} with {who}");
        }
    }
    for (method, code) in every_method(ch.clone(), Some(MIRROR)).await {
        let through = code != Code::Unauthenticated;
        assert_eq!(
            through,
            mirrored.contains(&method),
            "{method} with the mirror token: {code:?}"
        );
    }
    for (method, code) in every_method(ch.clone(), Some(METRICS)).await {
        assert_eq!(
            code,
            Code::Unauthenticated,
            "{method} with the metrics token"
        );
    }
    for (method, code) in every_method(ch.clone(), Some(READ)).await {
        assert_ne!(code, Code::Unauthenticated, "{method} with the read token");
    }
    // Health is open: Kubernetes' probes carry no token.
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health without a token")
        .into_inner();
    assert_eq!(serving.status, 1, "SERVING");

    // /metrics needs the metrics token; health and readiness do not.
    let (code, _) = http_get_with(s.metrics, "/metrics", &[]).await;
    assert_eq!(code, 401);
    let (code, _) = http_get_with(
        s.metrics,
        "/metrics",
        &[("authorization", &format!("Bearer {READ}"))],
    )
    .await;
    assert_eq!(code, 401, "the read token is no metrics token");
    let (code, text) = http_get_with(
        s.metrics,
        "/metrics",
        &[("authorization", &format!("Bearer {METRICS}"))],
    )
    .await;
    assert_eq!(code, 200);
    for reason in ["missing", "invalid", "scope"] {
        let n = util::metric(
            &text,
            &format!("mdb_grpc_unauthenticated_total{{reason=\"{reason}\"}}"),
        )
        .unwrap_or(0.0);
        assert!(n >= 1.0, "{reason} counted: {n}");
    }
    assert_eq!(
        util::metric(&text, "mdb_http_unauthenticated_total{path=\"metrics\"}"),
        Some(2.0)
    );
    for open in ["/healthz", "/readyz"] {
        assert_eq!(http_get_with(s.metrics, open, &[]).await.0, 200, "{open}");
    }

    // The CLI: refused without a token, through with one from a file or
    // the environment; the token never in its output or the server's log.
    let server = s.grpc.to_string();
    let run = |envs: Vec<(&'static str, String)>, args: Vec<String>| async move {
        tokio::task::spawn_blocking(move || {
            let mut c = std::process::Command::new(util::bin());
            c.args(&args)
                .env_remove("MDB_TOKEN")
                .env_remove("MDB_TOKEN_FILE")
                .envs(envs);
            util::Run::of(c)
        })
        .await
        .expect("join")
    };
    let list = vec!["list".to_string(), "--server".into(), server.clone()];
    let refused = run(vec![], list.clone()).await;
    assert_ne!(refused.code, Some(0), "{refused}");
    assert!(refused.stderr.contains("token"), "{refused}");
    let token_file = dir.path().join("read").display().to_string();
    let by_file = run(
        vec![],
        [vec!["--token-file".to_string(), token_file], list.clone()].concat(),
    )
    .await;
    assert_eq!(by_file.code, Some(0), "{by_file}");
    assert!(by_file.stdout.contains("alpha-cp-1"), "{by_file}");
    let by_env = run(vec![("MDB_TOKEN", READ.to_string())], list).await;
    assert_eq!(by_env.code, Some(0), "{by_env}");
    for out in [
        &refused.stdout,
        &refused.stderr,
        &by_file.stderr,
        &by_env.stderr,
        &s.logs(),
    ] {
        for token in [READ, MIRROR, METRICS] {
            assert!(!out.contains(token), "a token was shown");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_of_the_client_ca_is_mdbs_own_part() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = TestRepo::with_demo();
    let server_pki = Pki::for_host("localhost").write(&dir.path().join("server"));
    let ours = Pki::for_host("runner").write(&dir.path().join("ours"));
    let stranger = Pki::for_host("runner").write(&dir.path().join("stranger"));
    let cfg = dir.path().join("mdb.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}[server.tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n",
            write_tokens(dir.path()),
            server_pki.join("cert.pem").display(),
            server_pki.join("key.pem").display(),
            ours.join("ca.pem").display()
        ),
    )
    .expect("config");
    let mut s = ServeProcess::for_repo(
        dir.path(),
        &repo.url(),
        &["--config", cfg.to_str().expect("path")],
    );
    s.wait_ready().await;
    let url = format!("https://localhost:{}", s.grpc.port());
    let ca = server_pki.join("ca.pem");
    let dial = |id: Option<&Path>| {
        let identity = id.map(|d| mdb::dial::ClientIdentity {
            cert: d.join("cert.pem"),
            key: d.join("key.pem"),
        });
        let endpoint = mdb::dial::endpoint(&url, Some(&ca), identity.as_ref()).expect("endpoint");
        async move { endpoint.connect().await }
    };
    // Our own part's certificate, no token: through.
    let ch = dial(Some(&ours))
        .await
        .expect("a certificate of the client CA");
    let codes = every_method(ch, None).await;
    assert!(
        codes.iter().all(|(_, c)| *c != Code::Unauthenticated),
        "{codes:?}"
    );
    // No certificate: a token is still asked for, and taken.
    let ch = dial(None).await.expect("TLS without a client certificate");
    assert!(every_method(ch.clone(), None)
        .await
        .iter()
        .all(|(_, c)| *c == Code::Unauthenticated));
    assert!(every_method(ch, Some(READ))
        .await
        .iter()
        .all(|(_, c)| *c != Code::Unauthenticated));
    // A certificate another CA signed: no connection at all.
    let refused = match dial(Some(&stranger)).await {
        Err(_) => true,
        Ok(ch) => every_method(ch, None)
            .await
            .iter()
            .all(|(_, c)| *c != Code::Ok),
    };
    assert!(refused, "a stranger's certificate was taken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_and_the_dhcp_follower_need_a_token_and_the_runners_port_its_own() {
    use util::process::{free_port, Reaped};
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let mut repo = TestRepo::new();
    // The DB's policy leaves the box alone: nothing is ever dialled.
    repo.write("mdb.yaml", "provision:\n  games: none\n");
    repo.write(
        "machines/box.yaml",
        "machines:\n  - name: box\n    ip: 192.0.2.10\n    mac: 02:00:00:00:00:10\n    use: games\n",
    );
    repo.commit("a box");
    let cfg = d.join("mdb.toml");
    std::fs::write(&cfg, write_tokens(d)).expect("config");
    let mut s = ServeProcess::for_repo(d, &repo.url(), &["--config", cfg.to_str().expect("path")]);
    s.wait_ready().await;
    let runner_token = "runner-token-0123456789abcdef";
    std::fs::write(d.join("runner"), runner_token).expect("runner token");
    let follower = |name: &str, token: bool| {
        let hosts = d.join(format!("hosts-{name}"));
        std::fs::create_dir_all(&hosts).expect("hostsdir");
        let (runner, metrics, http) = (free_port(), free_port(), free_port());
        let token_line = if token {
            format!("token_file = \"{}\"\n", d.join("read").display())
        } else {
            String::new()
        };
        let conf = d.join(format!("{name}.toml"));
        std::fs::write(
            &conf,
            format!(
                "[provision]\nserver = \"http://{grpc}\"\nstate_dir = \"{state}\"\nmachine_command = [\"true\"]\ndebounce = \"100ms\"\n{token_line}grpc_listen = \"127.0.0.1:{runner}\"\nmetrics_listen = \"127.0.0.1:{metrics}\"\n\n[provision.tokens]\nrunner = \"{rt}\"\n\n[dhcp]\nserver = \"http://{grpc}\"\nhostsdir = \"{hosts}\"\nstate_dir = \"{dstate}\"\ndebounce = \"100ms\"\n{token_line}metrics_listen = \"127.0.0.1:{http}\"\n",
                grpc = s.grpc,
                state = d.join(format!("state-{name}")).display(),
                rt = d.join("runner").display(),
                hosts = hosts.display(),
                dstate = d.join(format!("dstate-{name}")).display(),
            ),
        )
        .expect("config");
        let spawn = |what: &str| {
            let mut c = std::process::Command::new(util::bin());
            c.args(what.split(' ')).arg("--config").arg(&conf).stderr(
                std::fs::File::create(d.join(format!("{name}-{}.log", what.len()))).expect("log"),
            );
            Reaped(c.spawn().expect("mdb"))
        };
        (spawn("provision"), spawn("dhcp --follow"), hosts, runner)
    };
    let (_r1, _f1, with_hosts, with_runner) = follower("with", true);
    let (_r2, _f2, without_hosts, without_runner) = follower("without", false);
    let statuses = |runner: u16, token: Option<&str>| {
        let mut c = std::process::Command::new(util::bin());
        c.env_remove("MDB_TOKEN").env_remove("MDB_TOKEN_FILE");
        c.args([
            "provisioned",
            "--json",
            "--runner",
            &format!("127.0.0.1:{runner}"),
        ]);
        if let Some(t) = token {
            c.env("MDB_TOKEN", t);
        }
        util::Run::of(c)
    };
    let with_ok = tokio::task::spawn_blocking(move || {
        util::wait_for("the runner with a token to act", 30, || {
            let r = statuses(with_runner, Some(runner_token));
            r.stdout.contains("\"box\"").then_some(r)
        })
    })
    .await
    .expect("join");
    assert!(with_ok.stdout.contains("skipped"), "{with_ok}");
    let file = with_hosts.join("mdb-box");
    let seen = file.clone();
    tokio::task::spawn_blocking(move || {
        util::wait_for("the follower with a token to reserve", 30, || {
            seen.exists().then_some(())
        })
    })
    .await
    .expect("join");
    // Without a token neither acts; the runner's port refuses a caller
    // without the runner's token, and the read token is not one.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(
        !without_hosts.join("mdb-box").exists(),
        "followed without a token"
    );
    let none = tokio::task::spawn_blocking(move || statuses(without_runner, Some(runner_token)))
        .await
        .expect("join");
    assert_eq!(none.stdout.trim(), "[]", "{none}");
    for token in [None, Some(READ)] {
        let refused = tokio::task::spawn_blocking(move || statuses(with_runner, token))
            .await
            .expect("join");
        assert_ne!(refused.code, Some(0), "{refused}");
    }
}

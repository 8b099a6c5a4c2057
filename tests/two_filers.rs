//! Exactly one filer: a scanner with `[github]` told to follow another
//! scanner that files issues itself (`GetStats.files_github`) says so in
//! its log and leaves that scanner's segment out of its merge, so no
//! device is filed twice; its own segment it keeps.

use crate::util;

use util::{
    fake_github::{FakeGithub, OWNER, REPO, TOKEN},
    lan::{HostSpec, Lan},
    wait_for,
};

/// `mdb serve` in the scanner's namespace sweeping the LAN as `segment`,
/// filing to the fake GitHub, with `more` in its `[server]`.
fn filer(
    lan: &mut Lan,
    repo: &util::TestRepo,
    gh: &FakeGithub,
    segment: &str,
    port: u16,
    more: &str,
) {
    let cfg = lan.dir().join(format!("{segment}.toml"));
    std::fs::write(
        &cfg,
        format!(
            "[db]\nurl = \"{}\"\ncheckout = \"{}\"\npoll_interval = \"200ms\"\n\n[server]\ngrpc_listen = \"127.0.0.1:{port}\"\nmetrics_listen = \"127.0.0.1:{}\"\n{more}\n[scan]\nsegment = \"{segment}\"\nsubnets = [\"198.18.0.0/24\"]\ninterval = \"500ms\"\nreverse_dns = false\nmdns = false\n\n[github]\nrepo = \"{OWNER}/{REPO}\"\napi_url = \"{}\"\nwrite_gap = \"5ms\"\nretry_base = \"50ms\"\n",
            repo.url(),
            lan.dir().join(format!("checkout-{segment}")).display(),
            port + 1000,
            gh.url(),
        ),
    )
    .expect("config");
    lan.spawn_mdb(
        &["serve", "--config", cfg.to_str().expect("utf-8")],
        &[("MDB_GITHUB_TOKEN", TOKEN), ("MDB_LOG", "info")],
    );
}

#[test]
fn a_filer_refuses_to_follow_a_scanner_that_files_itself() {
    let mut lan = Lan::new(&[HostSpec {
        ip: "198.18.0.31",
        mac: "dc:a6:32:00:00:31",
        ..Default::default()
    }]);
    let mut repo = util::TestRepo::new();
    repo.write(
        "mdb.yaml",
        "subnets:\n  - name: lab\n    cidr: 198.18.0.0/24\n    static: 198.18.0.100-198.18.0.199\n",
    );
    repo.write(
        "machines/lab.yaml",
        "machines:\n  - name: scanner\n    ip: 198.18.0.1\n    use: discover\n",
    );
    repo.commit("lab");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let gh = rt.block_on(async { FakeGithub::start(lan.listen_in_scanner()) });
    gh.attach_git(&repo.path());
    // Two filers: iot files by itself; lab is told to follow it as well.
    filer(&mut lan, &repo, &gh, "iot", 50052, "");
    filer(
        &mut lan,
        &repo,
        &gh,
        "lab",
        50051,
        "scanners = [\"http://127.0.0.1:50052\"]\n",
    );
    // What the lab filer asks: GetStats over gRPC.
    let files = wait_for("iot's GetStats", 30, || {
        lan.run_in_scanner(|| {
            Box::pin(async {
                let mut c = mdb::proto::machine_db_client::MachineDbClient::connect(
                    "http://127.0.0.1:50052",
                )
                .await
                .ok()?;
                let s = c.get_stats(mdb::proto::GetStatsRequest {}).await.ok()?;
                Some(s.into_inner().files_github)
            })
        })
        .join()
        .expect("thread")
    });
    assert!(files, "iot says it files");
    wait_for("the refusal in lab's log", 30, || {
        lan.mdb_log()
            .contains("two filers would file every device of its segment twice")
            .then_some(())
    });
    // Lab keeps its own segment and has none of iot's, sweep after sweep.
    let sweeps = || {
        lan.metric_in_scanner("127.0.0.1:51051", "mdb_sweeps_total{result=\"ok\"}")
            .unwrap_or(0.0)
    };
    let start = sweeps();
    wait_for("four more sweeps of lab", 30, || {
        (sweeps() >= start + 4.0).then_some(())
    });
    let hosts = lan.discovered("http://127.0.0.1:50051");
    let pi = &hosts["198.18.0.31"];
    assert_eq!(pi["segments"], serde_json::json!(["lab"]), "{pi}");
    assert!(
        hosts.values().all(|h| !h["segments"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s == "iot")),
        "no host of iot's in lab's view: {hosts:?}"
    );
    lan.stop_mdb();
}

//! When a replica reads a scanner's whole history again, counted at the
//! scanner's end: a real `mdb serve --scanner` follows a gRPC server of
//! the test's (`util::impostor`) that plays a scanner's Watch stream. The
//! next sweep of the same run is applied in place; a skipped sweep, a
//! restarted scanner (a new epoch) and a sweep that changed over 1,000
//! hosts each cost one whole read (`ListHostHistory`), and so does the
//! age of the last one (`mirror_refresh`), however steadily sweeps come.

use crate::util;

use std::time::Duration;

use mdb::proto::{DiscoveredHost, HostHistory, HostState, Presence, SweepSummary, WatchEvent};
use util::{
    impostor::{self, Impostor},
    process::{free_port, Reaped},
};

fn host(last: u32, presence: Presence) -> HostHistory {
    let now = mdb::db::store::now_unix();
    let mac = format!("00:16:3e:00:{:02x}:{:02x}", last / 256, last % 256);
    let h = DiscoveredHost {
        ip: format!("198.18.{}.{}", last / 256, last % 256),
        key: format!("mac:{mac}"),
        mac,
        state: HostState::New as i32,
        presence: presence as i32,
        seen_by: "arp".into(),
        first_seen_unix: now - 60,
        last_seen_unix: now,
        ..Default::default()
    };
    impostor::history(h)
}

fn sweep(epoch: u64, seq: u64) -> SweepSummary {
    SweepSummary {
        at_unix: mdb::db::store::now_unix(),
        subnets: vec!["198.18.0.0/20".into()],
        epoch,
        seq,
        ..Default::default()
    }
}

struct Scanner {
    impostor: Impostor,
}

impl Scanner {
    /// Whole reads so far.
    fn reads(&self) -> usize {
        self.impostor
            .calls
            .lock()
            .expect("lock")
            .iter()
            .filter(|c| c.starts_with("ListHostHistory"))
            .count()
    }

    /// What a whole read answers from now on: `hosts`, newest sweep `at`.
    fn state(&self, hosts: Vec<HostHistory>, at: SweepSummary) {
        *self.impostor.histories.lock().expect("lock") = hosts;
        self.impostor.page.lock().expect("lock").sweeps = vec![at];
    }

    /// Waits (30 s at most) until `n` whole reads were made, and no more.
    async fn reads_reach(&self, n: usize, what: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while self.reads() < n {
            assert!(std::time::Instant::now() < deadline, "no whole read {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(self.reads(), n, "{what}");
    }

    fn sweep(&self, at: SweepSummary, histories: Vec<HostHistory>) {
        self.impostor.send(WatchEvent {
            sweep: Some(at),
            histories,
            histories_complete: true,
            ..Default::default()
        });
    }
}

/// `mdb discovered --json` of the replica: presence by address.
fn presence_of(replica: &str, ip: &str) -> Option<String> {
    let out = util::mdb(["discovered", "--json", "--server", replica]);
    let list: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
    list.as_array()?
        .iter()
        .find(|h| h["ip"] == ip)
        .and_then(|h| h["presence"].as_str().map(String::from))
}

fn wait(what: &str, cond: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits (30 s at most, off the runtime that serves the impostor) until
/// the replica shows the watched host with `presence`.
async fn replica_shows(replica: &str, presence: &'static str, what: &'static str) {
    let replica = replica.to_string();
    tokio::task::spawn_blocking(move || {
        wait(what, || {
            presence_of(&replica, "198.18.0.31").as_deref() == Some(presence)
        })
    })
    .await
    .expect("wait");
}

/// `mirror_refresh`: long enough that the steps before it end well inside.
const REFRESH_S: u64 = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_reads_everything_again_on_a_gap_a_new_run_a_huge_sweep_and_its_age_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scanner = Scanner {
        impostor: Impostor::new("", vec![]),
    };
    scanner.state(vec![host(31, Presence::Up)], sweep(7, 1));
    let url = scanner.impostor.serve().await;
    let mut repo = util::TestRepo::new();
    repo.write("machines/lab.yaml", "machines: []\n");
    repo.commit("empty");
    let grpc = format!("127.0.0.1:{}", free_port());
    let cfg = dir.path().join("replica.toml");
    std::fs::write(
        &cfg,
        format!(
            "[db]\nurl = \"{}\"\ncheckout = \"{}\"\npoll_interval = \"200ms\"\n\n[server]\ngrpc_listen = \"{grpc}\"\nmetrics_listen = \"127.0.0.1:{}\"\nscanner = \"{url}\"\nmirror_refresh = \"{REFRESH_S}s\"\n",
            repo.url(),
            dir.path().join("checkout").display(),
            free_port(),
        ),
    )
    .expect("config");
    let _replica = Reaped(
        std::process::Command::new(util::bin())
            .args(["serve", "--config", cfg.to_str().expect("utf-8")])
            .stderr(std::fs::File::create(dir.path().join("replica.log")).expect("log"))
            .spawn()
            .expect("mdb serve"),
    );
    let replica = format!("http://{grpc}");
    replica_shows(&replica, "up", "the first whole read").await;
    assert_eq!(scanner.reads(), 1);

    // The next sweep of the same run: applied in place.
    scanner.sweep(sweep(7, 2), vec![host(31, Presence::Down)]);
    replica_shows(&replica, "down", "the delta applied").await;
    assert_eq!(scanner.reads(), 1, "no whole read for the next sweep");

    // Sweep 3 never arrives: 4 is a gap, and everything is read again.
    scanner.state(vec![host(31, Presence::Up)], sweep(7, 4));
    scanner.sweep(sweep(7, 4), vec![host(31, Presence::Up)]);
    replica_shows(&replica, "up", "the read after a gap").await;
    scanner.reads_reach(2, "after a gap").await;

    // The scanner restarted: a new epoch, read whole, even where its
    // count happens to follow the old run's.
    scanner.state(vec![host(31, Presence::Down)], sweep(9, 5));
    scanner.sweep(sweep(9, 5), vec![host(31, Presence::Down)]);
    replica_shows(&replica, "down", "the read after a restart").await;
    scanner.reads_reach(3, "after a restart").await;

    // The next sweep changed 1,001 hosts: more than a delta carries.
    let many: Vec<HostHistory> = (0..1001).map(|i| host(256 + i, Presence::Up)).collect();
    scanner.state(
        [vec![host(31, Presence::Up)], many.clone()].concat(),
        sweep(9, 6),
    );
    scanner.sweep(sweep(9, 6), many);
    replica_shows(&replica, "up", "the read after a huge sweep").await;
    scanner.reads_reach(4, "after a huge sweep").await;
    assert_eq!(
        presence_of(&replica, "198.18.4.0").as_deref(),
        Some("up"),
        "the huge sweep's hosts are there"
    );

    // Sweeps in line every 500 ms: none is a reason to read, but the age
    // of the last read is, once it passes mirror_refresh.
    let read_at = std::time::Instant::now();
    let mut seq = 6;
    while scanner.reads() < 5 {
        assert!(
            read_at.elapsed() < Duration::from_secs(3 * REFRESH_S),
            "no whole read after {REFRESH_S} s of deltas"
        );
        seq += 1;
        scanner.state(vec![host(31, Presence::Up)], sweep(9, seq));
        scanner.sweep(sweep(9, seq), vec![]);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let after = read_at.elapsed();
    eprintln!("FIGURE whole read again after {after:?} of deltas (mirror_refresh {REFRESH_S} s)");
    assert!(
        after >= Duration::from_secs(REFRESH_S - 2),
        "read too early: {after:?}"
    );
}

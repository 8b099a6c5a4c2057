//! The history store under `kill -9` and on the disk, through the real
//! binary (`mdb history-bench`): nothing announced as committed is lost,
//! no repair walk, and every sweep synced (strace counts the syncs).

use crate::util;

#[test]
fn kill_9_while_writing_loses_at_most_the_sweep_being_written() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().expect("tempdir");
    let bench = |sweeps: &str| {
        let mut c = std::process::Command::new(util::bin());
        c.args(["history-bench", dir.path().to_str().expect("utf-8")])
            .args(["--hosts", "100", "--sweeps", sweeps, "--interval", "1m"]);
        c
    };
    let mut committed_total = 0;
    for round in 0..12u64 {
        let mut child = bench("100000")
            .arg("--announce")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("bench");
        // Read the announcements until a round's share of them, then kill.
        let mut lines = std::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
        let mut announced = 0i64;
        for _ in 0..(3 + round * 5) {
            match lines.next() {
                Some(Ok(l)) => {
                    announced = l.trim_start_matches("committed ").parse().expect("a time")
                }
                _ => break,
            }
        }
        child.kill().expect("kill -9");
        let _ = child.wait();
        let report = util::Run::of(bench("0")).ok().json();
        assert_eq!(report["undecodable"], 0, "{report}");
        let sweep = report["last_sweep_unix"].as_i64().unwrap_or_default();
        assert_eq!(
            Some(sweep),
            report["newest_last_seen_unix"].as_i64(),
            "hosts and the sweep summary commit together: {report}"
        );
        assert!(
            sweep >= announced,
            "round {round}: sweep {announced} was announced as committed, the store ends at {sweep}"
        );
        assert!(
            report["open_ms"].as_f64().unwrap_or(f64::MAX) < 1000.0,
            "no repair walk: {report}"
        );
        committed_total += 1;
    }
    assert_eq!(committed_total, 12);
}

/// What `kill -9` cannot show: a committed sweep is on the disk, not only
/// in the page cache. Every sweep's write syncs the file (strace counts
/// the fsync/fdatasync calls of 20 sweeps).
#[test]
fn every_sweep_is_synced_to_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new("strace")
        .args(["-f", "-c", "-e", "trace=fsync,fdatasync", "-o"])
        .arg(dir.path().join("counts"))
        .arg(util::bin())
        .args([
            "history-bench",
            dir.path().join("store").to_str().expect("utf-8"),
        ])
        .args(["--hosts", "50", "--sweeps", "20", "--interval", "1m"])
        .output()
        .expect("strace (.ci/run installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let counts = std::fs::read_to_string(dir.path().join("counts")).expect("counts");
    let syncs: u64 = counts
        .lines()
        .filter(|l| l.contains("fsync") || l.contains("fdatasync"))
        .filter_map(|l| {
            l.split_whitespace()
                .nth(3)
                .and_then(|n| n.parse::<u64>().ok())
        })
        .sum();
    assert!(
        syncs >= 20,
        "at least one sync per sweep written: {syncs}\n{counts}"
    );
}

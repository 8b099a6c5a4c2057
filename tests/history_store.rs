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
    let mut torn_cut = 0;
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
        if round % 2 == 1 {
            // A power cut tears the next sweep's frame (kill -9 cannot: a
            // small write is whole or not at all): half its bytes land.
            let end = report["written"].as_u64().expect("written");
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(dir.path().join("history.log"))
                .expect("the log");
            let mut torn = 2000u32.to_le_bytes().to_vec();
            torn.extend([0x5a; 1004]);
            std::os::unix::fs::FileExt::write_all_at(&f, &torn, end).expect("tear");
            drop(f);
            let after = util::Run::of(bench("0")).ok().json();
            assert_eq!(after["recovered"], true, "the torn frame is cut: {after}");
            assert_eq!(after["undecodable"], 0, "{after}");
            assert_eq!(after["written"], report["written"], "cut where it began");
            let on_disk = std::fs::metadata(dir.path().join("history.log"))
                .expect("the log")
                .len();
            assert_eq!(on_disk, end, "the torn bytes are gone from the file");
            assert_eq!(after["last_sweep_unix"], report["last_sweep_unix"]);
            torn_cut += 1;
        }
    }
    assert_eq!(torn_cut, 6, "six rounds tore a frame and had it cut");
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

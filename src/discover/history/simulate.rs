//! Simulated sweeps through the real fold and the real store, for the
//! figures (size and write time per sweep, start-up with months of
//! history) and for crash tests (`kill -9` while it writes). `hosts` hosts
//! in a /19: most stay, some answer every other sweep, some rotate a
//! random MAC each day, some leave for good halfway.

use std::{path::Path, time::Duration};

use ipnetwork::IpNetwork;
use prost::Message;

use crate::{
    db::mdb_yaml::MissingAfter,
    discover::{
        classify::{self, Classified},
        history::{store, History, Rules, Sweep, DEFAULT_RETENTION},
    },
    proto::{DiscoveredHost, HostState, SweepSummary},
};

/// The first simulated host's address, and how many fit in the /19.
const FIRST: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 18, 0, 10);
const MAX_SIMULATED: u32 = 8000;

pub struct Plan {
    pub hosts: u32,
    pub sweeps: u32,
    pub interval: Duration,
    /// Simulated time of the first sweep; later runs go on from the store's
    /// last sweep.
    pub start_unix: i64,
    /// Print `committed AT` on stderr once each sweep's write returned, for
    /// a test that kills the process to check nothing announced is lost.
    pub announce: bool,
}

#[derive(Debug, serde::Serialize)]
pub struct Report {
    pub open_ms: f64,
    pub records_at_open: usize,
    pub sweeps: u32,
    pub write_ms_p50: f64,
    pub write_ms_p99: f64,
    pub write_ms_max: f64,
    pub store_bytes: u64,
    /// Mean encoded size of one host's record after the last sweep.
    pub record_bytes_mean: u64,
    /// The newest sweep in the store and the newest `last_seen` of its
    /// hosts: equal when sweeps are written whole.
    pub last_sweep_unix: i64,
    pub newest_last_seen_unix: i64,
    pub undecodable: usize,
    /// Opening cut a torn last frame.
    pub recovered: bool,
    /// The end of the last whole frame (the file may hold zeros after it).
    pub written: u64,
}

pub fn run(dir: &Path, plan: &Plan) -> Result<Report, store::Error> {
    let opened = store::open(dir)?;
    let open_ms = opened.took.as_secs_f64() * 1000.0;
    let records_at_open = opened.records.len();
    let undecodable = opened.undecodable;
    let recovered = opened.recovered;
    let mut now = opened.sweeps.first().map_or(plan.start_unix, |s| {
        s.at_unix + plan.interval.as_secs() as i64
    });
    let disk = opened.store;
    let mut history = History::from_records(opened.records);
    let swept: Vec<IpNetwork> = vec!["198.18.0.0/19".parse().expect("a CIDR")];
    let rules = Rules {
        down_after: 3,
        missing_after: MissingAfter::Down(Duration::from_secs(3600)),
        retention: DEFAULT_RETENTION,
    };
    let mut times = Vec::with_capacity(plan.sweeps as usize);
    for k in 0..plan.sweeps {
        let seen = answering(plan, k, now);
        let fold = history.fold(
            Sweep {
                seen,
                unseen: &[],
                swept: &swept,
                in_db: &|_| false,
                now,
                stale_sources: &[],
                sources: &[],
                switches_failed: &[],
            },
            &rules,
        );
        let batch = store::Batch {
            records: fold
                .written
                .iter()
                .filter_map(|k| history.get(k).cloned())
                .collect(),
            removed: fold.removed,
            sweep: SweepSummary {
                at_unix: now,
                answered: fold.answered,
                changed: fold.changed.len() as u32,
                ..Default::default()
            },
            at_ms: now as u64 * 1000,
            keep_sweeps_since: now - rules.retention.as_secs() as i64,
        };
        times.push(disk.write(&batch)?.as_secs_f64() * 1000.0);
        if plan.announce {
            eprintln!("committed {now}");
        }
        now += plan.interval.as_secs() as i64;
    }
    let records = history.records();
    let record_bytes_mean = if records.is_empty() {
        0
    } else {
        records.iter().map(|r| r.encoded_len() as u64).sum::<u64>() / records.len() as u64
    };
    drop(history);
    disk.settle();
    let newest = disk.newest()?;
    times.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        times
            .get(((times.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    Ok(Report {
        open_ms,
        records_at_open,
        sweeps: plan.sweeps,
        write_ms_p50: pick(0.5),
        write_ms_p99: pick(0.99),
        write_ms_max: pick(1.0),
        store_bytes: disk.size(),
        record_bytes_mean,
        last_sweep_unix: newest.0,
        newest_last_seen_unix: newest.1,
        undecodable,
        recovered,
        written: disk.written(),
    })
}

/// Who answers sweep `k`: host i at 198.18.0.10 + i (a campus fills a /19).
fn answering(plan: &Plan, k: u32, now: i64) -> Vec<Classified> {
    let day = now / 86_400;
    (0..plan.hosts.min(MAX_SIMULATED))
        .filter(|i| match i % 20 {
            // one in ten answers every other sweep
            0 | 1 => k % 2 == 0,
            // one in twenty leaves halfway
            2 => k < plan.sweeps / 2,
            _ => true,
        })
        .map(|i| {
            let ip = std::net::Ipv4Addr::from(u32::from(FIRST) + i).to_string();
            // one in twenty rotates a random MAC daily
            let (mac, local) = if i % 20 == 3 {
                (
                    format!(
                        "02:{:02x}:00:{:02x}:{:02x}:{:02x}",
                        (i >> 8) & 0xff,
                        (day >> 8) & 0xff,
                        day & 0xff,
                        i & 0xff
                    ),
                    true,
                )
            } else {
                (
                    format!("00:16:3e:00:{:02x}:{:02x}", i >> 8, i & 0xff),
                    false,
                )
            };
            Classified {
                listed6: Vec::new(),
                key: classify::identity(ip.parse().ok(), mac.parse().ok()),
                host: DiscoveredHost {
                    ip,
                    mac,
                    mac_is_local: local,
                    vendor: "Simulated".into(),
                    open_ports: vec![22, 80],
                    ssh_banner: "SSH-2.0-OpenSSH_9.6".into(),
                    state: HostState::New as i32,
                    ..Default::default()
                },
            }
        })
        .collect()
}

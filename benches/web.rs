//! The web page's cost: server time to render the machines page for a
//! generated 10,000-machine database (unfiltered and filtered), and the
//! discovered-hosts list of a 5,000-device campus (first page, last page,
//! a search), with each page's weight. Bounded: 200 renders each.
//!
//! Run: cargo bench --bench web   (MDB_BENCH_MACHINES to change the size)

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

fn percentiles(mut v: Vec<Duration>) -> String {
    v.sort();
    let p = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)].as_secs_f64() * 1e3;
    format!(
        "p50 {:.2} ms  p99 {:.2} ms  (n={})",
        p(0.5),
        p(0.99),
        v.len()
    )
}

fn main() {
    let n: usize = std::env::var("MDB_BENCH_MACHINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let files = mdb::gen::database(n, 1000);
    let snap = mdb::db::validate(&mdb::gen::source_files(&files), "bench").expect("valid");
    for (what, query) in [
        ("all machines", HashMap::new()),
        (
            "use=cluster, sorted by IP",
            HashMap::from([
                ("use".to_string(), "cluster".to_string()),
                ("sort".to_string(), "ip".to_string()),
            ]),
        ),
        (
            "search q=m12",
            HashMap::from([("q".to_string(), "m12".to_string())]),
        ),
    ] {
        let mut times = Vec::with_capacity(200);
        let mut bytes = 0;
        for _ in 0..200 {
            let t = Instant::now();
            let list = mdb::serve::web::filter_machines(&snap, &query);
            let html = mdb::serve::web::machines_body(
                &snap,
                &list,
                &query,
                &mdb::serve::web::Around::default(),
            )
            .into_string();
            times.push(t.elapsed());
            bytes = html.len();
        }
        println!(
            "machines page, {n} machines, {what:<28} {}  weight {:.1} KiB",
            percentiles(times),
            bytes as f64 / 1024.0
        );
    }
    discovered_pages();
}

/// `/discovered` with 5,000 hosts: its list, a page at a time.
fn discovered_pages() {
    use mdb::proto::{DiscoveredHost, HostState, Presence};
    let hosts: Vec<DiscoveredHost> = (0..5000u32)
        .map(|i| {
            let ip =
                std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(198, 18, 0, 10)) + i);
            let mac = format!("dc:a6:32:00:{:02x}:{:02x}", i >> 8, i & 255);
            DiscoveredHost {
                ip: ip.to_string(),
                key: format!("mac:{mac}"),
                mac,
                vendor: "Raspberry Pi Trading Ltd".into(),
                state: HostState::New as i32,
                presence: Presence::Up as i32,
                detail: "not in the database".into(),
                ..Default::default()
            }
        })
        .collect();
    for (what, query) in [
        ("first page", HashMap::new()),
        (
            "last page",
            HashMap::from([("page".to_string(), "50".to_string())]),
        ),
        (
            "search q=dc:a6:32:00:13",
            HashMap::from([("q".to_string(), "dc:a6:32:00:13".to_string())]),
        ),
    ] {
        let mut times = Vec::with_capacity(200);
        let mut bytes = 0;
        for _ in 0..200 {
            let t = Instant::now();
            let html = mdb::serve::web::discovered_list(&hosts, &query).into_string();
            times.push(t.elapsed());
            bytes = html.len();
        }
        println!(
            "discovered page, 5000 hosts, {what:<24} {}  weight {:.1} KiB",
            percentiles(times),
            bytes as f64 / 1024.0
        );
    }
}

//! The filer's test bench: a fake GitHub on a real socket, the demo
//! database, and sweeps of made-up hosts.
#![allow(dead_code)]

use std::time::Duration;

use mdb::{
    db::{validate, Snapshot, SourceFile},
    discover::sweep::SweepResult,
    github,
    proto::{DiscoveredHost, HostState, UseKind},
    secret::Secret,
};

use super::fake_github::{FakeGithub, OWNER, REPO, TOKEN};

pub fn config(fake: &FakeGithub) -> github::Config {
    github::Config {
        repo: format!("{OWNER}/{REPO}"),
        token: Secret::new(TOKEN),
        api_url: fake.url(),
        labels: github::DEFAULT_LABELS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        assignee: Some("lab-admin".into()),
        caps: github::Caps::default(),
        write_gap: Duration::from_millis(5),
        retry_base: Duration::from_millis(20),
        max_wait: Duration::from_secs(10),
        timeout: Duration::from_secs(5),
        enrol: None,
    }
}

pub async fn fake() -> FakeGithub {
    FakeGithub::start(std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
}

pub fn demo(extra: &str) -> Snapshot {
    let mut files = mdb::demo::source_files();
    if !extra.is_empty() {
        files.push(SourceFile {
            path: "machines/extra.yaml".into(),
            text: extra.into(),
        });
    }
    validate(&files, "rev").unwrap_or_else(|r| panic!("{r}"))
}

pub fn host(ip: &str, mac: &str, state: HostState, machine: &str) -> DiscoveredHost {
    DiscoveredHost {
        ip: ip.into(),
        mac: mac.into(),
        vendor: if mac.starts_with("dc:a6:32") {
            "Raspberry Pi Trading Ltd".into()
        } else {
            String::new()
        },
        state: state as i32,
        machine: machine.into(),
        guessed_use: UseKind::Cluster as i32,
        detail: "not in the database".into(),
        open_ports: vec![22],
        first_seen_unix: 1_790_000_000,
        last_seen_unix: 1_790_000_000,
        ..Default::default()
    }
}

pub fn sweep(hosts: Vec<DiscoveredHost>) -> SweepResult {
    SweepResult {
        hosts,
        revision: "rev".into(),
        swept: vec![],
        at_unix: 1_790_000_000,
    }
}

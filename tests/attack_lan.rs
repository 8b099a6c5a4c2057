//! The attacker suite, on the LAN: a host of the namespace LAN answers SSH
//! with a hostile banner (forged markers, bare CRs, a team mention, a
//! closing keyword, an image) and floods ARP with a new MAC for every
//! request, over three restarts of `mdb serve` filing to the fake GitHub.

use crate::util;

use std::time::{Duration, Instant};

use mdb::github::Trailer;
use util::fake_github::{FakeGithub, Issue, LOGIN, OWNER, REPO, TOKEN};

/// Checks every body, comment and title mdb wrote for what a device's
/// words must not become: a raw CR, an HTML comment outside mdb's own
/// trailer, the banner's mention, reference or image. mdb's own references
/// ("Proposed in #3") are its words and stay. Returns how many bodies show
/// the banner (escaped), so the caller knows the words got that far.
fn assert_inert(gh: &FakeGithub) -> usize {
    let mut shown = 0;
    for i in gh.issues().into_iter().filter(|i| i.author == LOGIN) {
        let trailer_start = i
            .body
            .find("<!-- mdb-fingerprint: ")
            .unwrap_or(i.body.len());
        let (text, trailer) = i.body.split_at(trailer_start);
        shown += usize::from(text.contains("SSH\\-2\\.0\\-x"));
        for (what, t) in std::iter::once(("body", text.to_string()))
            .chain(i.comments.iter().map(|c| ("comment", c.clone())))
            .chain(std::iter::once(("title", i.title.clone())))
        {
            assert!(!t.contains('\r'), "#{} {what} holds a CR: {t:?}", i.number);
            assert!(
                !t.contains("<!--") && !t.contains("-->"),
                "#{} {what}: {t}",
                i.number
            );
            for live in ["![", "@lab", "#12", "](https"] {
                assert!(
                    !t.contains(live),
                    "#{} {what} has a live {live:?}: {t}",
                    i.number
                );
            }
        }
        assert!(
            Trailer::read(&i.body).fingerprint.is_some(),
            "#{} carries its own trailer: {trailer}",
            i.number
        );
    }
    shown
}

fn open_mdb(gh: &FakeGithub, pulls: bool) -> Vec<Issue> {
    gh.issues()
        .into_iter()
        .filter(|i| i.author == LOGIN && i.state == "open" && i.pull.is_some() == pulls)
        .collect()
}

fn gets_of_pulls(gh: &FakeGithub) -> usize {
    gh.requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/pulls"))
        .count()
}

/// Waits (at most 90 s) for `cond`, showing the GitHub state and mdb's log
/// on a timeout.
fn wait(lan: &util::lan::Lan, gh: &FakeGithub, what: &str, cond: &dyn Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; issues: {:#?}\n--- log ---\n{}",
            gh.issues()
                .iter()
                .map(|i| (i.number, i.author.clone(), i.state.clone(), i.title.clone()))
                .collect::<Vec<_>>(),
            lan.mdb_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until mdb has made `n` more reconcile passes: a positive signal
/// that time passed for mdb, instead of a sleep.
fn passes(lan: &util::lan::Lan, gh: &FakeGithub, n: usize) {
    let start = gets_of_pulls(gh);
    wait(lan, gh, &format!("{n} more passes"), &|| {
        gets_of_pulls(gh) >= start + n
    });
}

#[test]
fn a_hostile_banner_and_rotating_macs_neither_steer_nor_flood() {
    use util::lan::{HostSpec, Lan};
    let mut lan = Lan::new(&[
        HostSpec {
            ip: "198.18.0.23",
            mac: "dc:a6:32:00:00:23",
            ..Default::default()
        },
        HostSpec {
            ip: "198.18.0.66",
            mac: "00:16:3e:00:00:66",
            ..Default::default()
        },
    ]);
    let (python, banner) = Lan::python_script("hostile_banner.py");
    lan.spawn_ready(1, &[&python, &banner, "198.18.0.66", "240"]);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let gh = rt.block_on(async { FakeGithub::start(lan.listen_in_scanner()) });
    let mut repo = util::TestRepo::new();
    gh.attach_git(&repo.path());
    repo.write(
        "mdb.yaml",
        "subnets:\n  - name: lab\n    cidr: 198.18.0.0/24\n    static: 198.18.0.100-198.18.0.149\n    dynamic: 198.18.0.150-198.18.0.250\n",
    );
    repo.write(
        "machines/lab.yaml",
        "machines:\n  - name: scanner\n    ip: 198.18.0.1\n    use: discover\n",
    );
    repo.commit("lab");
    let cfg = lan.dir().join("mdb.toml");
    std::fs::write(
        &cfg,
        format!(
            "[db]\nurl = \"{}\"\ncheckout = \"{}\"\npoll_interval = \"200ms\"\n\n[server]\ngrpc_listen = \"127.0.0.1:50051\"\nmetrics_listen = \"127.0.0.1:9090\"\n\n[scan]\nsubnets = [\"198.18.0.0/24\"]\ninterval = \"300ms\"\nreverse_dns = false\nstate_dir = \"{}\"\n\n[github]\nrepo = \"{OWNER}/{REPO}\"\napi_url = \"{}\"\nwrite_gap = \"5ms\"\nretry_base = \"50ms\"\nmax_open_issues = 6\nmax_open_pulls = 3\nmax_reserved = 3\n",
            repo.url(),
            lan.dir().join("checkout").display(),
            lan.dir().join("state").display(),
            gh.url()
        ),
    )
    .expect("config");
    let args = ["serve", "--config", cfg.to_str().expect("path")];
    let env = [("MDB_GITHUB_TOKEN", TOKEN), ("MDB_LOG", "info")];
    lan.spawn_mdb(&args, &env);

    let banner_fp = "new-device:mac=00:16:3e:00:00:66";
    let pi_fp = "new-device:mac=dc:a6:32:00:00:23";
    let filed = |fp: &str| {
        gh.issues()
            .into_iter()
            .filter(|i| i.author == LOGIN && i.pull.is_none())
            .filter(|i| {
                Trailer::read(&i.body)
                    .fingerprint
                    .map(|f| f.to_string())
                    .as_deref()
                    == Some(fp)
            })
            .count()
    };
    wait(&lan, &gh, "the Pi's and the banner host's issues", &|| {
        filed(pi_fp) == 1 && filed(banner_fp) == 1 && !open_mdb(&gh, true).is_empty()
    });

    // The flood starts once both devices are known: 40 free addresses in
    // the DHCP pool answer ARP, each time with a new MAC, for 60 s at most.
    let (python, rotate) = Lan::python_script("arp_rotate.py");
    lan.spawn_ready(
        1,
        &[
            &python,
            &rotate,
            "eth0",
            "198.18.0.160",
            "40",
            "60",
            "20000",
        ],
    );
    wait(&lan, &gh, "the caps to fill", &|| {
        open_mdb(&gh, false).len() == 6 && open_mdb(&gh, true).len() == 3
    });
    for restart in 0..3 {
        passes(&lan, &gh, 4);
        assert!(
            open_mdb(&gh, false).len() <= 6,
            "max_open_issues holds (restart {restart})"
        );
        assert!(
            open_mdb(&gh, true).len() <= 3,
            "max_open_pulls holds (restart {restart})"
        );
        assert_eq!(
            filed(banner_fp),
            1,
            "one issue for the banner host (restart {restart})"
        );
        assert_eq!(filed(pi_fp), 1, "one issue for the Pi (restart {restart})");
        lan.stop_mdb();
        lan.spawn_mdb(&args, &env);
    }
    passes(&lan, &gh, 4);
    assert_eq!(filed(banner_fp), 1);
    assert!(open_mdb(&gh, false).len() <= 6 && open_mdb(&gh, true).len() <= 3);

    // The Pi, there before the flood, holds a pull request with a static
    // address, and a static address is still free for the next device.
    let pi_pull = open_mdb(&gh, true)
        .into_iter()
        .find(|p| {
            Trailer::read(&p.body)
                .fingerprint
                .map(|f| f.to_string())
                .as_deref()
                == Some(pi_fp)
        })
        .expect("the Pi's pull request survives the flood");
    let reserved = Trailer::read(&pi_pull.body).ip.expect("an address");
    assert!(reserved.starts_with("198.18.0.1"), "{reserved}");
    let next = lan.mdb(&["ip", "next", "lab", "--server", "127.0.0.1:50051"]);
    assert!(
        next.status.success(),
        "{}",
        String::from_utf8_lossy(&next.stderr)
    );
    let next = String::from_utf8_lossy(&next.stdout).trim().to_string();
    assert!(
        next.starts_with("198.18.0.1") && next != reserved,
        "a free address remains: {next}"
    );
    assert!(assert_inert(&gh) >= 1, "the banner reached a body, escaped");
}

//! Names and types from the LAN, end to end on a namespace LAN: Debian's
//! `avahi-daemon` announces host names and an `_ipp._tcp` service, Debian's
//! `dnsmasq` leases an address to a client that asks under its hostname,
//! and `mdb serve` names each host with its source, proposes the printer
//! under its announced name, and keeps a hostile announced name inert.

use crate::util;

use util::{
    fake_github::{FakeGithub, OWNER, REPO, TOKEN},
    lan::{HostSpec, Lan},
    wait_for,
};

const PRINTER: &str = "198.18.0.21";
const HOSTILE: &str = "198.18.0.22";
const PLAIN: &str = "198.18.0.24";
/// What the hostile host announces: markup, a mention, an image.
const HOSTILE_NAME: &str = "<img src=x onerror=alert(1)>@lab-admins ![](https://evil/p)";

fn names_of(h: &serde_json::Value) -> Vec<(String, String)> {
    h["names"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            (
                n["source"].as_str().unwrap_or_default().to_string(),
                n["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn mdns_and_dhcp_leases_name_hosts_and_the_printer_is_proposed_by_its_name() {
    let mut lan = Lan::new(&[
        HostSpec {
            ip: PRINTER,
            mac: "00:26:ab:00:00:21",
            ..Default::default()
        },
        HostSpec {
            ip: HOSTILE,
            mac: "00:16:3e:00:00:22",
            ..Default::default()
        },
        HostSpec {
            mac: "dc:a6:32:00:00:23",
            dhcp: true,
            ..Default::default()
        },
        HostSpec {
            ip: PLAIN,
            mac: "00:16:3e:00:00:24",
            ..Default::default()
        },
    ]);
    lan.start_avahi(0, "laser", &["_ipp._tcp"]);
    lan.start_avahi(1, HOSTILE_NAME, &[]);
    let leases = lan.dir().join("dnsmasq.leases");
    lan.spawn_in_scanner(
        &[
            "dnsmasq",
            "--no-daemon",
            "--conf-file=/dev/null",
            "--port=0",
            "--interface=br0",
            "--bind-interfaces",
            "--user=root",
            "--pid-file=",
            "--dhcp-range=198.18.0.100,198.18.0.199,255.255.255.0,10m",
            &format!("--dhcp-leasefile={}", leases.display()),
        ],
        &[],
        &lan.dir().join("dnsmasq.log"),
    );
    lan.start_dhcp_client(2, "kitchen-pi");
    let leased = wait_for("the Pi's lease", 30, || lan.address_of(2));
    // A second lease file that is cut mid-line and has junk: a warning,
    // not a crash, and the good file still names its host.
    let broken = lan.dir().join("broken.leases");
    std::fs::write(&broken, "not a lease\n1 dc:a6:32:00:00:99 198.18.0.1").expect("broken");

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let gh = rt.block_on(async { FakeGithub::start(lan.listen_in_scanner()) });
    let mut repo = util::TestRepo::new();
    gh.attach_git(&repo.path());
    repo.write(
        "mdb.yaml",
        "subnets:\n  - name: lab\n    cidr: 198.18.0.0/24\n    static: 198.18.0.10-198.18.0.99\n    dynamic: 198.18.0.100-198.18.0.199\nscan:\n  ports: [22, 631]\n",
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
            "[db]\nurl = \"{}\"\ncheckout = \"{}\"\npoll_interval = \"200ms\"\n\n[server]\ngrpc_listen = \"127.0.0.1:50051\"\nmetrics_listen = \"127.0.0.1:9090\"\n\n[scan]\nsubnets = [\"198.18.0.0/24\"]\ninterval = \"500ms\"\nleases = [\"{}\", \"{}\"]\n\n[github]\nrepo = \"{OWNER}/{REPO}\"\napi_url = \"{}\"\nwrite_gap = \"10ms\"\nretry_base = \"50ms\"\n",
            repo.url(),
            lan.dir().join("checkout").display(),
            leases.display(),
            broken.display(),
            gh.url()
        ),
    )
    .expect("config");
    lan.spawn_mdb(
        &["serve", "--config", cfg.to_str().expect("path")],
        &[("MDB_GITHUB_TOKEN", TOKEN), ("MDB_LOG", "info")],
    );

    let hosts = wait_for("every host named", 60, || {
        let d = lan.discovered("http://127.0.0.1:50051");
        let named = |ip: &str, source: &str| {
            d.get(ip)
                .is_some_and(|h| names_of(h).iter().any(|(s, _)| s == source))
        };
        (named(PRINTER, "mdns") && named(HOSTILE, "mdns") && named(&leased, "dhcp")).then_some(d)
    });
    let printer = &hosts[PRINTER];
    assert!(
        names_of(printer).contains(&("mdns".into(), "laser".into())),
        "{printer}"
    );
    assert_eq!(printer["services"], serde_json::json!(["_ipp._tcp"]));
    assert_eq!(printer["guessed_use"], "device", "{printer}");
    let pi = &hosts[&leased];
    assert!(
        names_of(pi).contains(&("dhcp".into(), "kitchen-pi".into())),
        "{pi}"
    );
    assert!(pi["lease_expires_unix"].as_i64().unwrap_or(0) > 0, "{pi}");
    let hostile = &hosts[HOSTILE];
    assert_eq!(
        names_of(hostile)
            .iter()
            .find(|(s, _)| s == "mdns")
            .map(|(_, n)| n.as_str()),
        Some(HOSTILE_NAME),
        "kept as data, shown escaped"
    );
    // The figure: devices named by each source, and by any, of the LAN's
    // devices (the scanner itself aside).
    let devices: Vec<&serde_json::Value> =
        hosts.values().filter(|h| h["ip"] != "198.18.0.1").collect();
    let by = |source: &str| {
        devices
            .iter()
            .filter(|h| names_of(h).iter().any(|(s, _)| s == source))
            .count()
    };
    let any = devices.iter().filter(|h| !names_of(h).is_empty()).count();
    eprintln!(
        "FIGURE named devices: {any} of {} with every source (mdns {}, dhcp {}); by reverse DNS alone {}",
        devices.len(),
        by("mdns"),
        by("dhcp"),
        by("rdns")
    );
    assert_eq!(any, devices.len(), "every device named");
    // Read every sweep, the broken file is warned about once.
    let sweeps = || {
        lan.metric_in_scanner("127.0.0.1:9090", "mdb_sweeps_total{result=\"ok\"}")
            .unwrap_or(0.0)
    };
    let start = sweeps();
    wait_for("four more sweeps", 30, || {
        (sweeps() >= start + 4.0).then_some(())
    });
    let warned = lan
        .mdb_log()
        .matches("broken.leases: 2 lines or blocks did not parse and were skipped")
        .count();
    assert_eq!(warned, 1, "{}", lan.mdb_log());

    // The printer's pull request proposes its announced name, as a printer.
    let pulls = wait_for("the printer's pull request", 60, || {
        let p = gh.pulls();
        p.iter().any(|p| p.body.contains(PRINTER)).then_some(p)
    });
    let pr = pulls.iter().find(|p| p.body.contains(PRINTER)).expect("pr");
    let branch = pr.pull.clone().expect("pull").head;
    let check = lan.dir().join("check");
    git2::build::RepoBuilder::new()
        .branch(&branch)
        .clone(&repo.url(), &check)
        .expect("clone the branch");
    util::mdb([std::path::Path::new("validate"), &check]).ok();
    let entry = std::fs::read_to_string(check.join("machines/enrol/laser.yaml"))
        .expect("the entry is named laser");
    assert!(entry.contains("name: laser\n"), "{entry}");
    assert!(entry.contains("device:"), "{entry}");
    assert!(entry.contains("printer"), "{entry}");

    // The hostile name: no entry takes it, and no issue body carries it live.
    let hostile_issue = wait_for("the hostile host's issue", 60, || {
        gh.plain_issues()
            .into_iter()
            .find(|i| i.body.contains(HOSTILE))
    });
    for item in gh.issues() {
        for live in [
            "<img",
            "@lab-admins",
            "](https://evil/",
            "onerror=alert(1)>",
        ] {
            assert!(!item.body.contains(live), "{live:?} live in {}", item.body);
        }
        assert!(!item.title.contains("<img"), "{}", item.title);
    }
    assert!(
        hostile_issue.body.contains("lab\\-admins") && hostile_issue.body.contains("\\(mdns\\)"),
        "the name is shown, inert: {}",
        hostile_issue.body
    );
    let (_, page) = lan.http_in_scanner(
        "GET",
        "127.0.0.1:9090".parse().expect("addr"),
        "/discovered",
        &[],
        "",
    );
    assert!(page.contains("laser (mdns)"), "{page}");
    assert!(page.contains("&lt;img src=x"), "escaped on the page");
    assert!(!page.contains("<img src=x"), "never live on the page");
    lan.stop_mdb();
}

#[test]
fn a_forged_mdns_answer_does_not_rename_a_neighbour() {
    // The forger's address is lower: it is asked first, and its forged
    // answers for the printer arrive before the printer's own would.
    const FORGER: &str = "198.18.0.20";
    const LASER: &str = "198.18.0.30";
    let mut lan = Lan::new(&[
        HostSpec {
            ip: FORGER,
            mac: "00:16:3e:00:00:20",
            ..Default::default()
        },
        HostSpec {
            ip: LASER,
            mac: "00:26:ab:00:00:30",
            ..Default::default()
        },
    ]);
    lan.start_avahi(1, "laser", &["_ipp._tcp"]);
    let count = lan.dir().join("forged");
    let (python, script) = Lan::python_script("mdns_forge.py");
    lan.spawn_ready(
        0,
        &[
            &python,
            &script,
            LASER,
            "evil",
            count.to_str().expect("path"),
        ],
    );
    for _ in 0..3 {
        let hosts = lan.scan_json(&["--no-rdns"]);
        let laser = &hosts[LASER];
        assert_eq!(
            names_of(laser),
            [("mdns".to_string(), "laser".to_string())],
            "{laser}"
        );
        assert_eq!(
            laser["services"],
            serde_json::json!(["_ipp._tcp"]),
            "{laser}"
        );
        let all = serde_json::to_string(&hosts).expect("json");
        assert!(!all.contains("evil"), "a forged name was taken: {all}");
    }
    let forged = std::fs::read_to_string(&count).unwrap_or_default();
    assert!(
        forged.lines().count() >= 3,
        "the forger answered every sweep's query to it: {forged:?}"
    );
}

/// Serve with a scanner sweeping `198.18.0.0/24` every 500 ms whose
/// database's `scan.refresh` is `refresh`; its discovered hosts read back.
fn serve_mdns(lan: &mut Lan, refresh: &str) -> util::TestRepo {
    let mut repo = util::TestRepo::new();
    repo.write(
        "mdb.yaml",
        &format!("subnets:\n  - name: lab\n    cidr: 198.18.0.0/24\nscan:\n  refresh: {refresh}\n"),
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
            "[db]\nurl = \"{}\"\ncheckout = \"{}\"\npoll_interval = \"200ms\"\n\n[server]\ngrpc_listen = \"127.0.0.1:50051\"\nmetrics_listen = \"127.0.0.1:9090\"\n\n[scan]\nsubnets = [\"198.18.0.0/24\"]\ninterval = \"500ms\"\nreverse_dns = false\n",
            repo.url(),
            lan.dir().join("checkout").display(),
        ),
    )
    .expect("config");
    lan.spawn_mdb(
        &["serve", "--config", cfg.to_str().expect("path")],
        &[("MDB_LOG", "info")],
    );
    repo
}

fn mdns_name(lan: &Lan, ip: &str) -> Option<String> {
    let d = lan.discovered("http://127.0.0.1:50051");
    d.get(ip).and_then(|h| {
        names_of(h)
            .into_iter()
            .find(|(s, _)| s == "mdns")
            .map(|(_, n)| n)
    })
}

fn sweeps(lan: &Lan) -> f64 {
    lan.metric_in_scanner("127.0.0.1:9090", "mdb_sweeps_total{result=\"ok\"}")
        .unwrap_or(0.0)
}

/// A named host is not asked again while its probe is fresh (the queries
/// reaching its port 5353 are counted); asked again after `scan.refresh`
/// with its answers lost on the way, it keeps the name it last announced.
#[test]
fn a_fresh_host_is_not_asked_again_and_a_lost_answer_keeps_its_name() {
    const LASER: &str = "198.18.0.30";
    let host = HostSpec {
        ip: LASER,
        mac: "00:26:ab:00:00:30",
        ..Default::default()
    };
    // Fresh for an hour: one question, however many sweeps.
    let mut lan = Lan::new(std::slice::from_ref(&host));
    lan.watch_udp(0, 5353);
    lan.start_avahi(0, "laser", &["_ipp._tcp"]);
    let _repo = serve_mdns(&mut lan, "1h");
    wait_for("laser named", 60, || {
        (mdns_name(&lan, LASER).as_deref() == Some("laser")).then_some(())
    });
    let asked = lan.udp_hits(0);
    let start = sweeps(&lan);
    wait_for("five more sweeps", 30, || {
        (sweeps(&lan) >= start + 5.0).then_some(())
    });
    assert!(asked >= 1);
    assert_eq!(lan.udp_hits(0), asked, "not asked again while fresh");
    lan.stop_mdb();
    drop(lan);

    // Fresh for 2 s: asked again, its answers lost; the name stays.
    let mut lan = Lan::new(&[host]);
    lan.watch_udp(0, 5353);
    lan.start_avahi(0, "laser", &["_ipp._tcp"]);
    let _repo = serve_mdns(&mut lan, "2s");
    wait_for("laser named", 60, || {
        (mdns_name(&lan, LASER).as_deref() == Some("laser")).then_some(())
    });
    lan.drop_udp(0, 5353);
    let asked = lan.udp_hits(0);
    wait_for("asked again after the refresh", 30, || {
        (lan.udp_hits(0) >= asked + 2).then_some(())
    });
    let start = sweeps(&lan);
    wait_for("two more sweeps", 30, || {
        (sweeps(&lan) >= start + 2.0).then_some(())
    });
    assert_eq!(
        mdns_name(&lan, LASER).as_deref(),
        Some("laser"),
        "the last announced name stays"
    );
    lan.stop_mdb();
}

/// Reverse DNS from the LAN's name server (Debian's dnsmasq in the scanner
/// namespace at 127.0.0.1:53, the namespace's resolv.conf): a host the
/// hosts file names keeps that name, one only the server knows gets the
/// server's, and one it has no name for gets none.
#[test]
fn reverse_dns_asks_the_name_server_after_the_hosts_file() {
    let mut lan = Lan::new(&[
        HostSpec::at("198.18.0.31", "00:16:3e:00:00:31"),
        HostSpec::at("198.18.0.32", "00:16:3e:00:00:32"),
        HostSpec::at("198.18.0.33", "00:16:3e:00:00:33"),
    ]);
    let etc = std::path::Path::new("/etc/netns").join(&lan.scanner);
    std::fs::write(
        etc.join("hosts"),
        "127.0.0.1 localhost\n198.18.0.31 desk.hosts.test\n",
    )
    .expect("hosts");
    let log = lan.dir().join("dnsmasq.log");
    lan.spawn_in_scanner(
        &[
            "dnsmasq",
            "--no-daemon",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--port=53",
            "--user=root",
            "--pid-file=",
            "--log-queries",
            "--host-record=desk.dns.test,198.18.0.31",
            "--host-record=shelf.dns.test,198.18.0.32",
        ],
        &[],
        &log,
    );
    let name = |hosts: &std::collections::BTreeMap<String, serde_json::Value>, ip: &str| {
        hosts[ip]["dns_name"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let hosts = wait_for("a name from dnsmasq", 20, || {
        let hosts = lan.scan_json(&["--no-ports", "--no-mdns", "--no-ipv6"]);
        (name(&hosts, "198.18.0.32") == "shelf.dns.test").then_some(hosts)
    });
    assert_eq!(
        name(&hosts, "198.18.0.31"),
        "desk.hosts.test",
        "the hosts file first"
    );
    assert_eq!(
        name(&hosts, "198.18.0.33"),
        "",
        "no name where the server has none"
    );
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        said.contains("query[PTR] 32.0.18.198.in-addr.arpa"),
        "{said}"
    );
    assert!(
        said.contains("query[PTR] 33.0.18.198.in-addr.arpa"),
        "{said}"
    );
    assert!(
        !said.contains("query[PTR] 31.0.18.198.in-addr.arpa"),
        "a name from the hosts file is not asked for: {said}"
    );
}

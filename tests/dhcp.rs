//! Reservations that take effect, against real DHCP servers: Debian's
//! dnsmasq (with --dhcp-hostsdir) and Kea (its control socket) serve the
//! namespace LAN, devices get their addresses with Debian's udhcpc, and
//! `mdb dhcp --follow` applies what the database reserves.

use crate::util;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use serde_json::Value;
use util::{
    bench::{machine, Bench},
    fake_github::{OWNER, REPO, TOKEN},
    lan::HostSpec,
    process::{free_port, Reaped, ServeProcess},
};

const PI_MAC: &str = "dc:a6:32:00:00:23";

const LAB: &str = "subnets:\n  - name: lab\n    cidr: 198.18.0.0/24\n    static: 198.18.0.10-198.18.0.99\n    dynamic: 198.18.0.100-198.18.0.199\nscan:\n  ports: [22]\n  rules:\n    - { mac_prefix: dc:a6:32, subnet: lab, join: { cluster: alpha, role: worker } }\n";

fn wait_for(what: &str, secs: u64, b: &Bench, cond: &dyn Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\nstatuses: {:#?}\nissues: {:#?}",
            b.statuses(),
            b.gh.issues()
                .iter()
                .map(|i| (
                    i.number,
                    i.title.clone(),
                    i.state.clone(),
                    i.comments.clone()
                ))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_device_from_the_dhcp_pool_is_provisioned_and_ends_at_its_reservation() {
    let mut b = Bench::with(&[
        HostSpec {
            ip: "198.18.0.11",
            mac: "00:16:3e:00:01:11",
            sshd: true,
            ..Default::default()
        },
        HostSpec {
            mac: PI_MAC,
            sshd: true,
            dhcp: true,
            ..Default::default()
        },
    ]);
    b.gh.attach_git(&b.repo.path());
    let hosts = b.dir.join("hosts");
    std::fs::create_dir_all(&hosts).expect("hostsdir");
    let leases = b.dir.join("dnsmasq.leases");
    b.lan.spawn_in_scanner(
        &[
            "dnsmasq",
            "--no-daemon",
            "--conf-file=/dev/null",
            "--port=0",
            "--interface=br0",
            "--bind-interfaces",
            "--user=root",
            "--pid-file=",
            "--log-dhcp",
            "--dhcp-range=198.18.0.100,198.18.0.199,255.255.255.0,10m",
            &format!("--dhcp-hostsdir={}", hosts.display()),
            &format!("--dhcp-leasefile={}", leases.display()),
        ],
        &[],
        &b.dir.join("dnsmasq.log"),
    );
    let cp = "  - name: scanner\n    ip: 198.18.0.1\n    use: discover\n".to_string()
        + &machine("cp", "198.18.0.11", "control-plane");
    b.commit_with(LAB, std::slice::from_ref(&cp), "alpha");
    let plugged = Instant::now();
    b.lan.start_dhcp_client(1, "raspberrypi");
    wait_for("the Pi's lease", 30, &b, &|| b.lan.address_of(1).is_some());
    let lease = b.lan.address_of(1).expect("a lease");
    assert!(lease.starts_with("198.18.0.1"), "from the pool: {lease}");

    let serve = b.dir.join("serve.toml");
    std::fs::write(
        &serve,
        format!(
            "[db]\nurl = \"{}\"\ncheckout = \"{}\"\npoll_interval = \"100ms\"\n\n[server]\ngrpc_listen = \"127.0.0.1:50051\"\nmetrics_listen = \"127.0.0.1:9090\"\n\n[scan]\nsubnets = [\"198.18.0.0/24\"]\ninterval = \"300ms\"\nreverse_dns = false\n\n[github]\nrepo = \"{OWNER}/{REPO}\"\napi_url = \"{}\"\nwrite_gap = \"5ms\"\nretry_base = \"50ms\"\n",
            b.repo.url(),
            b.dir.join("checkout").display(),
            b.gh.url()
        ),
    )
    .expect("serve config");
    b.start_server_with(
        &["serve", "--config", serve.to_str().expect("path")],
        &[("MDB_GITHUB_TOKEN", TOKEN)],
    );
    let cfg = b.config("PLAYBOOK -i {inventory} --limit {hosts} SITE");
    b.start_runner(&cfg);
    let follow_port = b.start_dhcp_follower(&[
        "--hostsdir",
        hosts.to_str().expect("path"),
        "--leases",
        leases.to_str().expect("path"),
    ]);

    wait_for("the Pi's pull request", 60, &b, &|| {
        !b.gh.pulls().is_empty()
    });
    let to_pull = plugged.elapsed();
    let pr = b.gh.pulls().remove(0);
    let trailer = mdb::github::Trailer::read(&pr.body);
    let (name, reserved) = (
        trailer.name.expect("name"),
        trailer.ip.expect("reserved address"),
    );
    assert!(
        reserved.starts_with("198.18.0.") && reserved != lease,
        "a static address: {reserved}"
    );
    assert!(
        !hosts.join(format!("mdb-{name}")).exists(),
        "not reserved before the merge"
    );

    let merged = Instant::now();
    let (code, answer) = b.lan.http_in_scanner(
        "PUT",
        b.gh.addr,
        &format!("/repos/{OWNER}/{REPO}/pulls/{}/merge", pr.number),
        &[
            ("Authorization", &format!("Bearer {TOKEN}")),
            ("User-Agent", "the-test"),
            ("Content-Type", "application/json"),
        ],
        "{}",
    );
    assert_eq!(code, 200, "{answer}");

    // The DHCP server learns the reservation.
    let file = hosts.join(format!("mdb-{name}"));
    wait_for("the reservation file", 60, &b, &|| file.exists());
    let to_file = merged.elapsed();
    assert_eq!(
        std::fs::read_to_string(&file).expect("file"),
        format!("{PI_MAC},{reserved},{name}\n")
    );

    // Provisioned where it is, with the status saying so.
    wait_for("the Pi provisioned at its lease", 90, &b, &|| {
        b.status(&name).is_some_and(|s| s["result"] == "ok")
    });
    let to_provisioned = merged.elapsed();
    let st = b.status(&name).expect("status");
    assert_eq!(
        st["reason"].as_str().unwrap_or_default(),
        format!(
            "provisioned at its current lease {lease}; reserved {reserved} takes effect at renewal"
        ),
        "{st}"
    );
    assert_eq!(
        b.marker(&format!("machine-{name}"))
            .split_whitespace()
            .nth(2),
        Some(lease.as_str()),
        "over SSH at the lease"
    );
    let issue =
        b.gh.plain_issues()
            .into_iter()
            .find(|i| i.title.contains(PI_MAC))
            .expect("the Pi's issue");
    wait_for("the waiting comment", 60, &b, &|| {
        b.gh.plain_issues().iter().any(|i| {
            i.number == issue.number
                && i.comments.iter().any(|c| {
                    c.starts_with(&format!("Merged: reserved {reserved}, still at {lease}"))
                })
        })
    });
    assert!(
        b.gh.plain_issues()
            .iter()
            .any(|i| i.number == issue.number && i.state == "open"),
        "not closed while it is elsewhere"
    );
    // Away from its reservation: counted, shown on its page (headless
    // Chromium), and the inventory keeps the database's address.
    wait_for(
        "the machine counted away from its reservation",
        30,
        &b,
        &|| {
            b.lan
                .metric_in_scanner("127.0.0.1:9090", "mdb_machines_away_from_reservation")
                == Some(1.0)
        },
    );
    let (python, script) = util::lan::Lan::python_script("page_text.py");
    let page = std::process::Command::new("ip")
        .args(["netns", "exec", &b.lan.scanner, &python, &script])
        .arg(format!("http://127.0.0.1:9090/machines/{name}"))
        .arg(format!("reserved {reserved}, seen at {lease}"))
        .output()
        .expect("python with selenium (.ci/run installs it)");
    assert!(
        page.status.success(),
        "{}{}",
        String::from_utf8_lossy(&page.stdout),
        String::from_utf8_lossy(&page.stderr)
    );
    let out = b
        .lan
        .mdb(&["inventory", "--list", "--server", "http://127.0.0.1:50051"]);
    let inventory: Value = serde_json::from_slice(&out.stdout).expect("inventory");
    assert_eq!(
        inventory["_meta"]["hostvars"][&name]["ansible_host"],
        reserved.as_str(),
        "{inventory}"
    );

    // Its renewal time comes: dnsmasq refuses the old lease (a static one
    // is available), and the Pi comes back at its reservation.
    b.lan.renew(1);
    wait_for("the Pi at its reservation", 60, &b, &|| {
        b.lan.address_of(1).as_deref() == Some(reserved.as_str())
    });
    wait_for("the issue to close", 60, &b, &|| {
        b.gh.plain_issues()
            .iter()
            .any(|i| i.number == issue.number && i.state == "closed")
    });
    let to_reserved = merged.elapsed();
    let comments =
        b.gh.plain_issues()
            .into_iter()
            .find(|i| i.number == issue.number)
            .expect("issue")
            .comments;
    assert_eq!(
        comments
            .iter()
            .filter(|c| c.starts_with("Merged: reserved"))
            .count(),
        1,
        "said once: {comments:?}"
    );
    let follow = b.dhcp_status(follow_port);
    assert_eq!(follow["targets"]["hostsdir"]["ok"], true, "{follow}");

    // The machine leaves the database: its reservation goes.
    let head = b.repo.repo.refname_to_id("refs/heads/main").expect("main");
    b.repo.head = Some(head);
    b.commit_with(LAB, &[cp], "the Pi leaves");
    wait_for("the reservation to go", 60, &b, &|| !file.exists());
    println!(
        "FIGURE plug to pull request: {to_pull:.1?}; merge to reservation file: {to_file:.1?}; merge to provisioned at the lease: {to_provisioned:.1?}; merge to answering at the reservation after a renewal: {to_reserved:.1?}"
    );
}

/// Kea with the reservations file its configuration includes: started
/// without any, it hands out the reserved address only after `mdb dhcp`
/// wrote the file and told it to reload through its control socket.
#[test]
fn kea_takes_reservations_through_its_control_socket() {
    let mut b = Bench::with(&[HostSpec {
        mac: PI_MAC,
        dhcp: true,
        ..Default::default()
    }]);
    let reservations = b.dir.join("kea-reservations.json");
    std::fs::write(&reservations, "[]\n").expect("empty reservations");
    let socket = b.dir.join("kea.sock");
    b.start_kea(&format!(
        "\"control-socket\": {{\"socket-type\": \"unix\", \"socket-name\": \"{}\"}},\n \"reservations-global\": true,\n \"reservations-in-subnet\": false,\n \"reservations\": <?include \"{}\"?>,",
        socket.display(),
        reservations.display()
    ));
    wait_for("Kea's control socket", 30, &b, &|| socket.exists());
    b.commit_with(
        util::bench::MDB_YAML,
        &[format!(
            "  - name: pi\n    ip: 198.18.0.23\n    mac: {PI_MAC}\n    use: discover\n"
        )],
        "the Pi's reservation",
    );
    b.start_server();
    let started = Instant::now();
    let follow_port = b.start_dhcp_follower(&[
        "--kea-reservations",
        reservations.to_str().expect("path"),
        "--kea-socket",
        socket.to_str().expect("path"),
    ]);
    wait_for("Kea to take the reservation", 60, &b, &|| {
        b.dhcp_status(follow_port)["targets"]["kea"]["ok"] == true
    });
    let to_kea = started.elapsed();
    let kept: Value =
        serde_json::from_str(&std::fs::read_to_string(&reservations).expect("file")).expect("json");
    assert_eq!(kept[0]["ip-address"], "198.18.0.23", "{kept}");
    b.lan.start_dhcp_client(0, "pi");
    wait_for("the Pi's reserved lease", 60, &b, &|| {
        b.lan.address_of(0).as_deref() == Some("198.18.0.23")
    });
    println!("FIGURE follower start to Kea reloaded with the reservation: {to_kea:.1?}");
}

/// A read-only mount of the hosts directory, undone when the test ends.
struct ReadOnly<'a>(&'a Path);

impl<'a> ReadOnly<'a> {
    fn new(dir: &'a Path) -> ReadOnly<'a> {
        let d = dir.to_str().expect("path");
        util::run_ok({
            let mut c = std::process::Command::new("mount");
            c.args(["--bind", d, d]);
            c
        });
        util::run_ok({
            let mut c = std::process::Command::new("mount");
            c.args(["-o", "remount,bind,ro", d]);
            c
        });
        ReadOnly(dir)
    }
}

impl Drop for ReadOnly<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.0).status();
    }
}

fn reserve(name: &str, ip: &str, mac: &str) -> String {
    format!("machines:\n  - name: {name}\n    ip: {ip}\n    mac: {mac}\n    use: discover\n")
}

#[tokio::test]
async fn failures_keep_the_last_good_reservations_and_say_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut repo = util::TestRepo::new();
    repo.write("machines/pi.yaml", &reserve("pi", "198.18.0.23", PI_MAC));
    repo.write(
        "machines/nas.yaml",
        &reserve("nas", "198.18.0.24", "00:11:32:00:00:24"),
    );
    repo.commit("two reservations");
    let mut server = ServeProcess::for_repo(dir.path(), &repo.url(), &["--poll-interval", "100ms"]);
    server.wait_ready().await;
    let hosts = dir.path().join("hosts");
    std::fs::create_dir_all(&hosts).expect("hostsdir");
    // A live lease gives .24 to another MAC: the nas's reservation waits.
    let leases = dir.path().join("dnsmasq.leases");
    std::fs::write(
        &leases,
        format!(
            "{} 02:00:00:00:00:99 198.18.0.24 phone *\n",
            mdb::db::store::now_unix() + 3600
        ),
    )
    .expect("leases");
    // A Kea control socket that takes the connection and never answers.
    let socket = dir.path().join("kea.sock");
    let silent = tokio::net::UnixListener::bind(&socket).expect("socket");
    let held = tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            kept.push(s);
        }
    });
    let port = free_port();
    let _follower = Reaped(
        std::process::Command::new(util::bin())
            .args(["dhcp", "--follow", "--server", &server.grpc.to_string()])
            .arg("--hostsdir")
            .arg(&hosts)
            .arg("--leases")
            .arg(&leases)
            .arg("--kea-reservations")
            .arg(dir.path().join("kea.json"))
            .arg("--kea-socket")
            .arg(&socket)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .args(["--metrics-listen", &format!("127.0.0.1:{port}")])
            .stderr(std::fs::File::create(dir.path().join("dhcp.log")).expect("log"))
            .spawn()
            .expect("mdb dhcp --follow"),
    );
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let status = || async move {
        util::process::try_get(addr, "/status")
            .await
            .ok()
            .and_then(|(_, body)| serde_json::from_str::<Value>(&body).ok())
            .unwrap_or(Value::Null)
    };
    let deadline = Instant::now() + Duration::from_secs(40);
    let first = loop {
        let s = status().await;
        if s["targets"]["hostsdir"]["ok"] == true && s["targets"]["kea"]["ok"] == false {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "{s}\n{}",
            std::fs::read_to_string(dir.path().join("dhcp.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        first["targets"]["kea"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("no answer within"),
        "{first}"
    );
    assert_eq!(first["refused"][0]["name"], "nas", "{first}");
    assert!(
        first["refused"][0]["why"]
            .as_str()
            .unwrap_or_default()
            .contains("leased to 02:00:00:00:00:99"),
        "{first}"
    );
    assert!(hosts.join("mdb-pi").exists() && !hosts.join("mdb-nas").exists());

    // The hosts directory turns read-only, and the database moves on: the
    // failure is a status and a metric, and the Pi's reservation stays.
    let before = std::fs::read_to_string(hosts.join("mdb-pi")).expect("pi");
    let ro = ReadOnly::new(&hosts);
    repo.write("machines/pi.yaml", &reserve("pi", "198.18.0.25", PI_MAC));
    repo.commit("the Pi moves to .25");
    let deadline = Instant::now() + Duration::from_secs(40);
    let failed = loop {
        let s = status().await;
        if s["targets"]["hostsdir"]["ok"] == false {
            break s;
        }
        assert!(Instant::now() < deadline, "{s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        failed["targets"]["hostsdir"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("Read-only"),
        "{failed}"
    );
    assert_eq!(
        std::fs::read_to_string(hosts.join("mdb-pi")).expect("pi"),
        before,
        "the last good reservation stays"
    );
    let (_, metrics) = util::http_get(addr, "/metrics").await;
    let io_failures = metrics
        .lines()
        .find(|l| {
            l.starts_with("mdb_dhcp_apply_failures_total{")
                && l.contains("target=\"hostsdir\"")
                && l.contains("kind=\"io\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok());
    assert!(io_failures.unwrap_or(0.0) >= 1.0, "{metrics}");
    assert_eq!(
        util::metric(&metrics, "mdb_dhcp_refused_reservations"),
        Some(1.0)
    );
    drop(ro);
    held.abort();
}

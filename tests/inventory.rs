//! The inventory as the real Ansible sees it (`ansible-inventory` and
//! `ansible-playbook` from PyPI's ansible-core), and the DHCP leases as
//! dnsmasq sees them.

use crate::util;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

fn ansible(tool: &str) -> Command {
    let mut c = util::venv_tool(tool);
    c.env("ANSIBLE_LOCALHOST_WARNING", "false")
        .env("ANSIBLE_NOCOLOR", "1");
    c
}

/// An executable inventory script that runs `mdb inventory` on a checkout.
fn script(dir: &Path, db: &Path) -> PathBuf {
    let path = dir.join("mdb-inventory");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nexec {} inventory --db {} \"$@\"\n",
            util::bin(),
            db.display()
        ),
    )
    .expect("script");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

fn demo_db(dir: &Path) -> PathBuf {
    let db = dir.join("db");
    let files: Vec<(&str, &str)> = mdb::demo::FILES.to_vec();
    util::write_tree(&db, &files);
    db
}

fn list(inventory: &Path) -> Value {
    let mut c = ansible("ansible-inventory");
    c.arg("-i").arg(inventory).arg("--list");
    serde_json::from_str(&util::run_ok(c)).expect("ansible-inventory json")
}

fn hosts(v: &Value, group: &str) -> Vec<String> {
    let mut h: Vec<String> = v[group]["hosts"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    h.sort();
    h
}

#[test]
fn ansible_reads_groups_children_and_hostvars_of_the_demo() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inv = script(dir.path(), &demo_db(dir.path()));
    let v = list(&inv);
    assert_eq!(
        v["cluster_alpha"]["children"],
        serde_json::json!(["cluster_alpha_control_plane", "cluster_alpha_workers"])
    );
    assert_eq!(
        hosts(&v, "cluster_alpha_workers"),
        ["alpha-w-1", "alpha-w-2"]
    );
    assert_eq!(hosts(&v, "cluster_beta_control_plane"), ["beta-cp-1"]);
    assert_eq!(hosts(&v, "provisioner_primary"), ["devbox"]);
    assert_eq!(hosts(&v, "provisioner_secondary"), ["studio"]);
    assert_eq!(hosts(&v, "games"), ["gaming-pc"]);
    assert_eq!(hosts(&v, "label_rack_shelf_2"), ["beta-cp-1", "beta-w-1"]);
    let hv = &v["_meta"]["hostvars"];
    assert_eq!(hv["alpha-cp-1"]["ansible_host"], "198.18.10.11");
    assert_eq!(hv["alpha-cp-1"]["ansible_user"], "pi");
    assert_eq!(hv["alpha-cp-1"]["role"], "control-plane");
    assert_eq!(hv["devbox"]["ansible_port"], 22);
    assert_eq!(hv["receipt-printer"]["device"], "receipt printer");
    assert_eq!(hv["alpha-w-1"]["labels"]["arch"], "arm64");

    let mut c = ansible("ansible-inventory");
    c.arg("-i").arg(&inv).arg("--graph");
    let graph = util::run_ok(c);
    assert!(graph.contains("@cluster_alpha:"), "{graph}");
    assert!(graph.contains("@cluster_alpha_workers:"), "{graph}");
    assert!(graph.contains("|--alpha-w-2"), "{graph}");

    // --host answers for a single host, as the protocol wants.
    let db = dir.path().join("db");
    let h = util::mdb([
        "inventory",
        "--host",
        "studio",
        "--db",
        db.to_str().expect("path"),
    ])
    .ok()
    .json();
    assert_eq!(h["development_kind"], "visual");
}

#[test]
fn static_yaml_inventory_matches_the_dynamic_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = demo_db(dir.path());
    let dynamic = list(&script(dir.path(), &db));
    let run = util::mdb([
        "inventory",
        "--format",
        "yaml",
        "--db",
        db.to_str().expect("path"),
    ])
    .ok();
    let file = dir.path().join("inventory.yaml");
    std::fs::write(&file, &run.stdout).expect("write");
    let stat = list(&file);
    for g in [
        "cluster",
        "cluster_alpha_workers",
        "cluster_beta_control_plane",
        "provisioner_primary",
        "label_room_office",
        "device",
    ] {
        assert_eq!(hosts(&stat, g), hosts(&dynamic, g), "group {g}");
    }
    assert_eq!(
        stat["_meta"]["hostvars"]["alpha-w-2"],
        dynamic["_meta"]["hostvars"]["alpha-w-2"]
    );
}

#[test]
fn a_thousand_machines_load_in_ansible() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db");
    let files = mdb::gen::database(1000, 250);
    let list_: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    util::write_tree(&db, &list_);
    let v = list(&script(dir.path(), &db));
    assert_eq!(
        v["_meta"]["hostvars"].as_object().map(|o| o.len()),
        Some(1000)
    );
    assert_eq!(hosts(&v, "cluster_c7_control_plane"), ["m000140"]);
    assert_eq!(hosts(&v, "cluster_c7_workers").len(), 9);
    assert_eq!(hosts(&v, "cluster").len(), 500);
}

#[test]
fn a_playbook_runs_against_a_cluster_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inv = script(dir.path(), &demo_db(dir.path()));
    let play = dir.path().join("play.yml");
    std::fs::write(
        &play,
        "- hosts: cluster_alpha\n  connection: local\n  gather_facts: false\n  tasks:\n    - debug:\n        msg: \"{{ inventory_hostname }} at {{ ansible_host }} is a {{ role }}\"\n",
    )
    .expect("play");
    let mut c = ansible("ansible-playbook");
    c.arg("-i")
        .arg(&inv)
        .arg(&play)
        .env("ANSIBLE_HOME", dir.path());
    let out = util::run_ok(c);
    for h in ["alpha-cp-1", "alpha-w-1", "alpha-w-2"] {
        assert!(out.contains(&format!("ok: [{h}]")), "{out}");
    }
    assert!(
        out.contains("alpha-cp-1 at 198.18.10.11 is a control-plane"),
        "{out}"
    );
    assert!(!out.contains("beta-"), "{out}");
    assert!(out.contains("ok=1") && !out.contains("failed=1"), "{out}");
}

#[test]
fn cluster_exports_load_as_k3s_and_kubespray_inventories() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = demo_db(dir.path());
    let export = |format: &str| {
        let mut c = Command::new(util::bin());
        c.args(["cluster", "alpha", "--format", format, "--db"])
            .arg(&db);
        let out = util::run_ok(c);
        let file = dir.path().join(format!("{format}.yaml"));
        std::fs::write(&file, &out).expect("write");
        list(&file)
    };
    let k3s = export("k3s");
    assert_eq!(hosts(&k3s, "server"), ["alpha-cp-1"]);
    assert_eq!(hosts(&k3s, "agent"), ["alpha-w-1", "alpha-w-2"]);
    let ks = export("kubespray");
    assert_eq!(hosts(&ks, "kube_control_plane"), ["alpha-cp-1"]);
    assert_eq!(hosts(&ks, "etcd"), ["alpha-cp-1"]);
    assert_eq!(
        hosts(&ks, "kube_node"),
        ["alpha-cp-1", "alpha-w-1", "alpha-w-2"]
    );
    assert_eq!(
        ks["k8s_cluster"]["children"],
        serde_json::json!(["kube_control_plane", "kube_node"])
    );
    assert_eq!(ks["_meta"]["hostvars"]["alpha-w-1"]["ip"], "198.18.10.12");
}

#[test]
fn dhcp_leases_pass_dnsmasq_and_parse_as_isc_and_kea() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = demo_db(dir.path());
    let render = |format: &str| {
        let mut c = Command::new(util::bin());
        c.args(["dhcp", "--format", format, "--db"]).arg(&db);
        util::run_ok(c)
    };
    let conf = dir.path().join("leases.conf");
    let dnsmasq = render("dnsmasq");
    assert_eq!(
        dnsmasq
            .lines()
            .filter(|l| l.starts_with("dhcp-host="))
            .count(),
        9
    );
    assert!(dnsmasq.contains("dhcp-host=00:26:ab:10:00:50,198.18.10.50,receipt-printer"));
    std::fs::write(&conf, &dnsmasq).expect("write");
    let out = Command::new("dnsmasq")
        .arg("--test")
        .arg(format!("--conf-file={}", conf.display()))
        .output()
        .expect("dnsmasq must be installed (dnsmasq-base)");
    assert!(
        out.status.success(),
        "dnsmasq --test: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And dnsmasq does reject a broken line, so the check can fail.
    std::fs::write(&conf, "dhcp-host=zz:zz,not-an-ip,\ndhcp-range=nonsense\n").expect("write");
    let out = Command::new("dnsmasq")
        .arg("--test")
        .arg(format!("--conf-file={}", conf.display()))
        .output()
        .expect("dnsmasq");
    assert!(!out.status.success());

    let kea: Value = serde_json::from_str(&render("kea")).expect("kea json");
    let r = kea["Dhcp4"]["reservations"]
        .as_array()
        .expect("reservations");
    assert_eq!(r.len(), 9);
    assert!(r.iter().any(|x| x["hw-address"] == "dc:a6:32:10:00:11"
        && x["ip-address"] == "198.18.10.11"
        && x["hostname"] == "alpha-cp-1"));

    let isc = render("isc");
    let blocks: Vec<&str> = isc.split("host ").skip(1).collect();
    assert_eq!(blocks.len(), 9);
    for b in blocks {
        assert!(
            b.contains("hardware ethernet ")
                && b.contains("fixed-address 198.18.10.")
                && b.trim_end().ends_with('}'),
            "{b}"
        );
    }
}

#[test]
fn ip_next_skips_used_excluded_and_pooled_addresses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db");
    util::write_tree(
        &db,
        &[
            ("mdb.yaml", "subnets:\n  - name: lab\n    cidr: 198.18.0.0/24\n    static: 198.18.0.10-198.18.0.20\n    exclude: [198.18.0.11]\n"),
            ("machines/a.yaml", "machines:\n  - name: a\n    ip: 198.18.0.10\n    use: games\n  - name: b\n    ip: 198.18.0.12\n    use: games\n"),
        ],
    );
    let db = db.to_str().expect("path");
    let run = util::mdb(["ip", "next", "lab", "--db", db]).ok();
    assert_eq!(run.stdout.trim(), "198.18.0.13", "{run}");
    util::mdb(["ip", "next", "nope", "--db", db]).code(1);
}

/// The inventory and IP suggestions read from a running server match the
/// checkout's.
#[tokio::test]
async fn inventory_and_ip_next_over_grpc_match_the_checkout() {
    let repo = util::TestRepo::with_demo();
    let server = util::start_server(&repo.url(), "1s", "1h").await;
    server.wait_for_revision(repo.head.expect("head")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = demo_db(dir.path());
    let addr = server.grpc.to_string();
    let (from_server, from_db, ip) = tokio::task::spawn_blocking(move || {
        let inv = |src: &[&str]| {
            util::mdb(["inventory", "--list"].iter().chain(src))
                .ok()
                .json()
        };
        let ip = Command::new(util::bin())
            .args(["ip", "next", "lab", "--server", &addr])
            .output()
            .expect("run");
        (
            inv(&["--server", &addr]),
            inv(&["--db", db.to_str().expect("path")]),
            String::from_utf8_lossy(&ip.stdout).trim().to_string(),
        )
    })
    .await
    .expect("join");
    assert_eq!(from_server, from_db);
    assert_eq!(ip, "198.18.10.10");
    server.stop().await;
}

#[test]
fn groups_nest_once_and_k3s_ansible_groups_are_on_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = demo_db(dir.path());
    let yaml = std::fs::read_to_string(db.join("mdb.yaml")).expect("mdb.yaml");
    std::fs::write(
        db.join("mdb.yaml"),
        format!("{yaml}inventory:\n  k3s_groups: alpha\n"),
    )
    .expect("write");
    let inv = script(dir.path(), &db);
    let v = list(&inv);
    let all: Vec<String> = v["all"]["children"]
        .as_array()
        .expect("all")
        .iter()
        .filter_map(|c| c.as_str().map(String::from))
        .collect();
    assert!(
        !all.contains(&"cluster_alpha".to_string()),
        "nested groups are not repeated under all: {all:?}"
    );
    assert!(
        !all.contains(&"cluster_alpha_workers".to_string()),
        "{all:?}"
    );
    assert!(!all.contains(&"server".to_string()), "{all:?}");
    assert_eq!(
        v["cluster"]["children"],
        serde_json::json!(["cluster_alpha", "cluster_beta"])
    );
    assert_eq!(
        v["k3s_cluster"]["children"],
        serde_json::json!(["server", "agent"])
    );
    assert_eq!(hosts(&v, "server"), ["alpha-cp-1"]);
    assert_eq!(hosts(&v, "agent"), ["alpha-w-1", "alpha-w-2"]);
    let mut c = ansible("ansible-inventory");
    c.arg("-i").arg(&inv).arg("--graph");
    let graph = util::run_ok(c);
    assert_eq!(
        graph.matches("@cluster_alpha_workers:").count(),
        1,
        "{graph}"
    );
    assert_eq!(graph.matches("@k3s_cluster:").count(), 1, "{graph}");
}

#[test]
fn group_by_keyed_groups_and_compose_shape_the_inventory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = demo_db(dir.path());
    let yaml = std::fs::read_to_string(db.join("mdb.yaml")).expect("mdb.yaml");
    std::fs::write(
        db.join("mdb.yaml"),
        format!(
            "{yaml}inventory:\n  group_by: [use, role]\n  keyed_groups:\n    \
             - {{ key: labels.rack, prefix: rack }}\n    \
             - {{ key: labels.arch, prefix: arch, separator: \"-\" }}\n  \
             compose:\n    site_rack: labels.rack\n    ansible_host: hostname\n"
        ),
    )
    .expect("write");
    let inv = script(dir.path(), &db);
    let v = list(&inv);
    // Only the groupings asked for: no cluster_NAME, provisioner or label groups.
    assert!(v.get("cluster_alpha").is_none(), "{v}");
    assert!(v.get("label_rack_shelf_1").is_none(), "{v}");
    assert_eq!(hosts(&v, "role_control_plane"), ["alpha-cp-1", "beta-cp-1"]);
    assert_eq!(
        hosts(&v, "rack_shelf_1"),
        ["alpha-cp-1", "alpha-w-1", "alpha-w-2"]
    );
    assert_eq!(hosts(&v, "arch_arm64").len(), 5);
    let cp = &v["_meta"]["hostvars"]["alpha-cp-1"];
    assert_eq!(cp["site_rack"], "shelf-1");
    // compose replaces a variable, as Ansible's `constructed` does.
    assert_eq!(cp["ansible_host"], "alpha-cp-1.lab.example");
    let w = &v["_meta"]["hostvars"]["alpha-w-1"];
    assert_eq!(w["ansible_host"], "198.18.10.12", "no hostname: left alone");
    let mut c = ansible("ansible-inventory");
    c.arg("-i").arg(&inv).arg("--graph").arg("rack_shelf_2");
    let graph = util::run_ok(c);
    assert!(graph.contains("|--beta-w-1"), "{graph}");

    // A typo is named with its file, line and a suggestion.
    std::fs::write(
        db.join("mdb.yaml"),
        format!("{yaml}inventory:\n  group_by: [use, rol]\n  compose:\n    1bad: labels.rack\n"),
    )
    .expect("write");
    let out = util::mdb(["validate", db.to_str().expect("path")]).code(1);
    let line = yaml.lines().count() + 2;
    assert!(
        out.stdout.contains(&format!(
            "mdb.yaml:{line}:19: inventory.group_by: \"rol\" is unknown; did you mean `role`? \
             expected some of: use, cluster, provisioner, labels, role, development-kind"
        )),
        "{out}"
    );
    assert!(
        out.stdout
            .contains("inventory.compose.1bad: not a valid Ansible variable name"),
        "{out}"
    );
}

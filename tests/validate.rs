//! Every validation problem names its file, line and field, and all
//! problems of a revision are reported together.

use crate::util;

use std::path::Path;

use mdb::db::{validate, SourceFile};

fn files(list: &[(&str, &str)]) -> Vec<SourceFile> {
    list.iter()
        .map(|(p, t)| SourceFile {
            path: p.to_string(),
            text: t.to_string(),
        })
        .collect()
}

/// The problems of a database that must not validate, as display lines.
fn problems(list: &[(&str, &str)]) -> Vec<String> {
    match validate(&files(list), "test") {
        Ok(_) => panic!("expected problems"),
        Err(r) => r.0.iter().map(|p| p.to_string()).collect(),
    }
}

fn one(list: &[(&str, &str)]) -> String {
    let p = problems(list);
    assert_eq!(p.len(), 1, "{p:#?}");
    p[0].clone()
}

const A: &str = "machines/a.yaml";
const B: &str = "machines/b.yaml";

#[test]
fn yaml_syntax_error_names_file_and_line() {
    let p = one(&[(
        A,
        "machines:\n  - name: a\n    ip: [198.18.0.1\n  - name: b\n",
    )]);
    assert!(p.starts_with("machines/a.yaml:"), "{p}");
    assert!(p.contains("YAML syntax"), "{p}");
}

#[test]
fn unknown_field_is_reported_at_its_key() {
    let p = one(&[(
        A,
        "machines:\n  - name: a\n    ip: 198.18.0.1\n    use: games\n    colour: red\n",
    )]);
    assert!(
        p.starts_with("machines/a.yaml:5:5: colour: unknown field"),
        "{p}"
    );
}

#[test]
fn bad_ip_and_bad_mac_point_at_the_value() {
    let p = problems(&[(A, "machines:\n  - name: a\n    ip: 198.18.0.300\n    mac: zz:00:00:00:00:01\n    use: games\n")]);
    assert_eq!(p.len(), 2, "{p:#?}");
    assert!(
        p[0].starts_with("machines/a.yaml:3:9: ip: \"198.18.0.300\" is not an IPv4/IPv6 address"),
        "{p:?}"
    );
    assert!(p[1].starts_with("machines/a.yaml:4:10: mac: "), "{p:?}");
}

#[test]
fn duplicate_names_ips_and_macs_are_reported_together_across_files() {
    let a = "machines:\n  - name: twin\n    ip: 198.18.0.1\n    mac: 02:00:00:00:00:01\n    use: games\n";
    let b = "machines:\n  - name: other\n    ip: 198.18.0.9\n    use: games\n  - name: twin\n    ip: 198.18.0.1\n    mac: 02:00:00:00:00:01\n    use: games\n";
    let p = problems(&[(A, a), (B, b)]);
    assert_eq!(p.len(), 3, "{p:#?}");
    let name = p
        .iter()
        .find(|l| l.contains("duplicate name twin"))
        .expect("name problem");
    assert!(
        name.contains("(machines/a.yaml:2)") && name.contains("(machines/b.yaml:5)"),
        "{name}"
    );
    let ip = p
        .iter()
        .find(|l| l.contains("duplicate ip 198.18.0.1"))
        .expect("ip problem");
    assert!(
        ip.starts_with("machines/a.yaml:3:9: ip:") && ip.contains("machines/b.yaml:6"),
        "{ip}"
    );
    let mac = p
        .iter()
        .find(|l| l.contains("duplicate mac 02:00:00:00:00:01"))
        .expect("mac problem");
    assert!(
        mac.contains("machines/a.yaml:4") && mac.contains("machines/b.yaml:7"),
        "{mac}"
    );
}

#[test]
fn cluster_without_control_plane_is_reported() {
    let a = "machines:\n  - name: w1\n    ip: 198.18.0.1\n    use:\n      cluster: { name: lonely, role: worker }\n";
    let p = one(&[(A, a)]);
    assert!(
        p.starts_with(
            "machines/a.yaml:2:5: use.cluster: cluster \"lonely\" has no control-plane node"
        ),
        "{p}"
    );
}

#[test]
fn second_primary_provisioner_is_reported_with_both() {
    let a = "machines:\n  - name: p1\n    ip: 198.18.0.1\n    use: games\n    features: { provisioner: primary }\n  - name: p2\n    ip: 198.18.0.2\n    use: games\n    features: { provisioner: primary }\n";
    let p = one(&[(A, a)]);
    assert!(
        p.starts_with(
            "machines/a.yaml:6:5: features.provisioner: more than one primary provisioner"
        ),
        "{p}"
    );
    assert!(
        p.contains("p1 (machines/a.yaml:2)") && p.contains("p2 (machines/a.yaml:6)"),
        "{p}"
    );
}

#[test]
fn missing_use_and_bad_role_are_reported() {
    let a = "machines:\n  - name: a\n    ip: 198.18.0.1\n  - name: b\n    ip: 198.18.0.2\n    use:\n      cluster: { name: c, role: boss }\n";
    let p = problems(&[(A, a)]);
    assert_eq!(p.len(), 2, "{p:#?}");
    assert!(
        p[0].starts_with("machines/a.yaml:2:5: use: required field is missing"),
        "{p:?}"
    );
    assert!(
        p[1].starts_with("machines/a.yaml:7:33: use.cluster.role: \"boss\" is not one of"),
        "{p:?}"
    );
}

#[test]
fn address_outside_subnets_or_in_dhcp_pool_is_reported() {
    let settings = "subnets:\n  - name: lab\n    cidr: 198.18.0.0/24\n    dynamic: 198.18.0.200-198.18.0.250\n";
    let a = "machines:\n  - name: a\n    ip: 198.18.1.5\n    use: games\n  - name: b\n    ip: 198.18.0.210\n    use: games\n";
    let p = problems(&[("mdb.yaml", settings), (A, a)]);
    assert_eq!(p.len(), 2, "{p:#?}");
    assert!(
        p[0].starts_with("machines/a.yaml:3:9: ip: 198.18.1.5 is outside every subnet"),
        "{p:?}"
    );
    assert!(
        p[1].starts_with("machines/a.yaml:6:9: ip: 198.18.0.210 is inside the dynamic (DHCP) pool"),
        "{p:?}"
    );
}

#[test]
fn bad_settings_file_names_its_line() {
    let p = one(&[("mdb.yaml", "subnets:\n  - cidr: 198.18.0.0/33\n")]);
    assert!(p.starts_with("mdb.yaml:2:11: subnets[0].cidr:"), "{p}");
}

#[test]
fn every_problem_of_a_revision_is_reported_at_once() {
    let a = "machines:\n  - name: Bad_Name\n    ip: nope\n    use: games\n  - name: ok\n    mac: nope\n    use: sideways\n";
    let p = problems(&[(A, a), (B, "machines: {}\n")]);
    assert_eq!(p.len(), 5, "{p:#?}");
}

#[test]
fn validate_command_exits_1_with_problems_and_0_when_clean() {
    let dir = tempfile::tempdir().expect("tempdir");
    util::write_tree(
        dir.path(),
        &[(
            A,
            "machines:\n  - name: a\n    ip: 198.18.0.300\n    use: games\n",
        )],
    );
    let run = util::mdb([Path::new("validate"), dir.path()]).code(1);
    assert!(run.stdout.starts_with("machines/a.yaml:3:9: ip:"), "{run}");

    util::write_tree(
        dir.path(),
        &[(
            A,
            "machines:\n  - name: a\n    ip: 198.18.0.3\n    use: games\n",
        )],
    );
    util::mdb([Path::new("validate"), dir.path()]).ok();
    util::mdb([Path::new("validate"), &dir.path().join("absent")]).code(2);
}

#[test]
fn readiness_checks_parse_and_bad_ones_name_their_line() {
    let good = "readiness:\n  cluster: [ { tcp: 10250 } ]\n  device:\n    - { http: /, port: 80, status: 200 }\n    - { http: /status }\n";
    let snap = validate(&files(&[("mdb.yaml", good)]), "t").unwrap_or_else(|r| panic!("{r}"));
    assert_eq!(snap.mdb_yaml.readiness.len(), 3);
    assert_eq!(
        snap.mdb_yaml.readiness[2].check,
        mdb::db::mdb_yaml::Check::Http {
            port: 80,
            path: "/status".into(),
            status: 200
        }
    );
    let p = one(&[(
        "mdb.yaml",
        "readiness:\n  device:\n    - { tcp: 80, http: / }\n",
    )]);
    assert!(p.starts_with("mdb.yaml:3:"), "{p}");
    assert!(p.contains("either `tcp: PORT` or `http: PATH`"), "{p}");
    let p = one(&[("mdb.yaml", "readiness:\n  toaster: [ { tcp: 80 } ]\n")]);
    assert!(p.starts_with("mdb.yaml:2:3: readiness.toaster"), "{p}");
    let p = one(&[("mdb.yaml", "readiness:\n  cluster: [ { http: healthz } ]\n")]);
    assert!(p.contains("a path like / or /healthz"), "{p}");
}

#[test]
fn typos_and_shapes_get_a_hint_that_fixes_them() {
    let p = one(&[(
        A,
        "machines:\n  - name: a\n    ip: 198.18.0.1\n    use: games\n    lables: { x: y }\n",
    )]);
    assert!(
        p.contains("lables: unknown field; did you mean `labels`?"),
        "{p}"
    );
    let p = one(&[(
        A,
        "machines:\n  - name: a\n    ip: 198.18.0.1\n    use: device\n",
    )]);
    assert!(
        p.ends_with("\"device\" needs details, e.g. `use: {device: receipt printer}`"),
        "{p}"
    );
    let p = one(&[(
        A,
        "machines:\n  - name: a\n    ip: 198.18.0.1\n    use: development\n",
    )]);
    assert!(p.contains("`use: {development: server}`"), "{p}");
    let p = one(&[(A, "- name: a\n  ip: 198.18.0.1\n  use: games\n")]);
    assert_eq!(p, "machines/a.yaml:1:1: a bare list of machines; nest it under `machines:` (machines:\n  - name: ...)");
}

#[test]
fn validate_refuses_a_path_that_is_not_a_checkout_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    util::write_tree(
        dir.path(),
        &[(
            A,
            "machines:\n  - name: a\n    ip: 198.18.0.3\n    use: games\n",
        )],
    );
    let run = util::mdb([Path::new("validate"), &dir.path().join("machines")]).code(2);
    assert_eq!(
        run.stderr.trim(),
        format!(
            "mdb: {} has no machines/ folder: give the root of a DB repository checkout",
            dir.path().join("machines").display()
        )
    );
}

#[test]
fn version_completions_and_man_page() {
    let run = util::mdb(["--version"]).ok();
    let v = run.stdout.trim();
    assert!(
        v.starts_with(&format!("mdb {} (", env!("CARGO_PKG_VERSION"))) && v.ends_with(')'),
        "{v}"
    );
    assert!(util::mdb(["completions", "bash"])
        .ok()
        .stdout
        .contains("_mdb()"));
    assert!(util::mdb(["completions", "zsh"])
        .ok()
        .stdout
        .contains("#compdef mdb"));
    assert!(util::mdb(["man"]).ok().stdout.contains(".TH mdb 1"));
}

#[test]
fn validate_speaks_github_annotations() {
    let dir = tempfile::tempdir().expect("tempdir");
    util::write_tree(
        dir.path(),
        &[(
            A,
            "machines:\n  - name: a\n    ip: 198.18.0.300\n    use: games\n",
        )],
    );
    let run = util::mdb([
        Path::new("validate"),
        dir.path(),
        Path::new("--format"),
        Path::new("github"),
    ])
    .code(1);
    assert_eq!(
        run.stdout,
        "::error file=machines/a.yaml,line=3,col=9,title=mdb validate%3A ip::\"198.18.0.300\" is not an IPv4/IPv6 address\n"
    );
}

#[test]
fn presence_settings_parse_and_bad_ones_name_their_line() {
    use mdb::db::mdb_yaml::MissingAfter;
    let good = "scan:\n  down_after: 4\n  missing_after: 2h\n  file_missing: { uses: [cluster], machines: [printer] }\n";
    let snap = validate(&files(&[("mdb.yaml", good)]), "t").unwrap_or_else(|r| panic!("{r}"));
    let scan = &snap.mdb_yaml.scan;
    assert_eq!(scan.down_after, 4);
    assert_eq!(
        scan.missing_after,
        MissingAfter::Down(std::time::Duration::from_secs(7200))
    );
    assert_eq!(scan.file_missing.machines, ["printer"]);
    let legacy = validate(&files(&[("mdb.yaml", "scan:\n  missing_after: 3\n")]), "t")
        .unwrap_or_else(|r| panic!("{r}"));
    assert_eq!(legacy.mdb_yaml.scan.missing_after, MissingAfter::Sweeps(3));
    let p = one(&[("mdb.yaml", "scan:\n  missing_after: soon\n")]);
    assert!(p.starts_with("mdb.yaml:2:"), "{p}");
    assert!(
        p.contains("a number of sweeps or a duration like 2h"),
        "{p}"
    );
    let p = one(&[("mdb.yaml", "scan:\n  file_missing:\n    uses: [gamez]\n")]);
    assert!(p.starts_with("mdb.yaml:3:"), "{p}");
    assert!(p.contains("\"gamez\" is not one of: cluster"), "{p}");
}

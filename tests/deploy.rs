//! deploy/ checked by the real tools: kustomize (kubectl) renders it,
//! kubernetes-validate checks every object against the Kubernetes schemas,
//! promtool checks and unit-tests the alert rules, the dashboard's metrics
//! exist in a real scrape, and the shipped configs resolve. Flux lives in
//! tests/flux.rs, the image and binaries in tests/image.rs.

use crate::util;

use std::{path::Path, process::Command};

use serde_json::Value;
use util::kube::{
    find, flux_substitute, mdb_config, render, root, validate, with_secrets, yaml_docs,
};

#[test]
fn kustomize_renders_objects_that_pass_the_kubernetes_schemas() {
    for dir in ["deploy/base", "deploy/overlays/example"] {
        let text = render(dir);
        validate(&text).unwrap_or_else(|e| panic!("{dir}: {e}"));
        let docs = yaml_docs(&text);
        let api = find(&docs, "Deployment", "mdb-api");
        assert!(
            api["spec"]["replicas"].as_i64().unwrap_or(0) >= 2,
            "{dir}: API replicas"
        );
        let c = &api["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(
            c["securityContext"]["capabilities"]["drop"],
            serde_json::json!(["ALL"])
        );
        assert!(
            c["securityContext"]["capabilities"]["add"].is_null(),
            "the API adds no capability"
        );
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
        let scanner = find(&docs, "Deployment", "mdb-scanner");
        assert_eq!(scanner["spec"]["replicas"], 1);
        assert_eq!(scanner["spec"]["strategy"]["type"], "Recreate");
        assert_eq!(scanner["spec"]["template"]["spec"]["hostNetwork"], true);
        let sc = &scanner["spec"]["template"]["spec"]["containers"][0]["securityContext"];
        assert_eq!(sc["capabilities"]["add"], serde_json::json!(["NET_RAW"]));
        let pvc = find(&docs, "PersistentVolumeClaim", "mdb-scanner-state");
        assert_eq!(
            pvc["spec"]["accessModes"],
            serde_json::json!(["ReadWriteOnce"])
        );
        let volumes = &scanner["spec"]["template"]["spec"]["volumes"];
        assert!(
            volumes
                .as_array()
                .into_iter()
                .flatten()
                .any(|v| v["persistentVolumeClaim"]["claimName"] == "mdb-scanner-state"),
            "{dir}: the history lives on the claim"
        );
        let web = find(&docs, "Ingress", "mdb-web");
        assert_eq!(
            web["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"]["name"],
            "metrics"
        );
        if dir.ends_with("example") {
            let p = find(&docs, "Deployment", "mdb-provisioner");
            assert_eq!(p["spec"]["replicas"], 1);
            assert_eq!(p["spec"]["strategy"]["type"], "Recreate");
            find(&docs, "PersistentVolumeClaim", "mdb-provision-state");
        }
        let dash = find(&docs, "ConfigMap", "mdb-grafana-dashboard");
        assert_eq!(dash["metadata"]["labels"]["grafana_dashboard"], "1");
        assert!(dash["data"]["mdb.json"]
            .as_str()
            .is_some_and(|j| j.contains("mdb_machines_by_use")));
        let cfg = mdb_config(&docs);
        // The shipped configuration is one the binary accepts.
        let toml_text = cfg["data"]["scanner.toml"].as_str().expect("scanner.toml");
        let raw: mdb::config::RawConfig = toml::from_str(toml_text).expect("scanner.toml parses");
        let resolved = mdb::config::resolve(raw, &Default::default(), &Default::default());
        assert!(
            resolved.is_err_and(|e| e.0.contains("token file")),
            "only the secret is missing"
        );
        let api: mdb::config::RawConfig =
            toml::from_str(cfg["data"]["api.toml"].as_str().expect("api.toml")).expect("api.toml");
        assert_eq!(
            api.server.scanner.as_deref(),
            Some("https://mdb-scanner:50052"),
            "{dir}: replicas mirror the scanner's discovery, over TLS"
        );
        // The scanner's ports are bound to the node's own address.
        let env = &scanner["spec"]["template"]["spec"]["containers"][0]["env"];
        let value = |name: &str| {
            env.as_array()
                .into_iter()
                .flatten()
                .find(|e| e["name"] == name)
                .map(|e| e["value"].as_str().unwrap_or_default().to_string())
        };
        assert_eq!(
            value("MDB_GRPC_LISTEN").as_deref(),
            Some("$(MDB_NODE_IP):50052")
        );
        assert_eq!(
            value("MDB_METRICS_LISTEN").as_deref(),
            Some("$(MDB_NODE_IP):9091")
        );
        for name in ["mdb-ca", "mdb-api-tls", "mdb-scanner-tls"] {
            let cert = find(&docs, "Certificate", name);
            assert_eq!(cert["spec"]["secretName"], name, "{dir}");
        }
    }
    // The validator does reject a bad object, so this test can fail.
    assert!(validate(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: two}\n"
    )
    .is_err());
}

#[test]
fn the_monitoring_component_renders_with_the_plain_rules() {
    let text = render("deploy/components/monitoring");
    let docs = yaml_docs(&text);
    let rule = find(&docs, "PrometheusRule", "mdb");
    let plain = yaml_docs(
        &std::fs::read_to_string(root().join("deploy/prometheus/mdb-rules.yaml")).expect("rules"),
    );
    assert_eq!(
        rule["spec"], plain[0],
        "PrometheusRule and mdb-rules.yaml must say the same"
    );
    find(&docs, "ServiceMonitor", "mdb");
}

#[test]
fn alert_rules_pass_promtool_and_the_stale_sync_alert_fires() {
    let mut c = Command::new("promtool");
    c.args(["check", "rules"])
        .arg(root().join("deploy/prometheus/mdb-rules.yaml"));
    util::run_ok(c);
    let mut c = Command::new("promtool");
    c.args(["test", "rules", "mdb-rules.test.yaml"])
        .current_dir(root().join("deploy/prometheus"));
    let out = util::run_ok(c);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[tokio::test]
async fn every_dashboard_metric_exists_in_a_real_scrape() {
    let repo = util::TestRepo::with_demo();
    let server = util::start_server(&repo.url(), "1s", "1h").await;
    server.wait_for_revision(repo.head.expect("head")).await;
    // A host of a segment, as a scanner would serve it.
    server.publish_hosts(
        vec![mdb::proto::HostHistory {
            host: Some(mdb::proto::DiscoveredHost {
                key: "mac:dc:a6:32:00:00:01".into(),
                ip: "198.18.0.5".into(),
                segments: vec!["lab".into()],
                ..Default::default()
            }),
            ..Default::default()
        }],
        vec![],
    );
    let mut scrape = server.metrics_text().await;
    // The runner's metrics, as `mdb provision` serves them.
    let registry = mdb::metrics::registry();
    let provision = mdb::provision::metrics::ProvisionMetrics::register(&registry);
    provision.cluster("alpha", true, 1);
    // A scanner's notification sinks, as `[[notify]]` makes them.
    mdb::notify::deliver::NotifyMetrics::register(&registry, &["hooks"]);
    // A scanner's routers and switches, as `[[scan.snmp]]` makes them.
    let sweeps = mdb::discover::SweepMetrics::register(&registry);
    sweeps.source_read("snmp:gw", true, "ok", Some(2), 0.01);
    sweeps.source_read("snmp:gw", false, "ok", Some(3), 0.01);
    let mut buf = Vec::new();
    prometheus::Encoder::encode(
        &prometheus::TextEncoder::new(),
        &registry.gather(),
        &mut buf,
    )
    .expect("encode");
    scrape.push_str(&String::from_utf8_lossy(&buf));
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("deploy/grafana/mdb.json")).expect("dashboard"),
    )
    .expect("json");
    let rules =
        std::fs::read_to_string(root().join("deploy/prometheus/mdb-rules.yaml")).expect("rules");
    let mut exprs: Vec<String> = dash["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(String::from))
        .collect();
    exprs.push(rules);
    let mut names = std::collections::BTreeSet::new();
    for e in &exprs {
        let mut rest = e.as_str();
        while let Some(i) = rest.find("mdb_") {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            names.insert(tail[..end].to_string());
            rest = &tail[end..];
        }
    }
    assert!(names.len() >= 10, "{names:?}");
    for n in &names {
        assert!(
            scrape
                .lines()
                .any(|l| l.starts_with(n.as_str()) && l[n.len()..].starts_with(['{', ' '])),
            "dashboard or rules use {n}, which /metrics does not export"
        );
    }
    server.stop().await;
}

/// Every `kubectl kustomize PATH` the README shows renders and validates.
#[test]
fn every_kustomize_command_in_the_readme_renders_and_validates() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README");
    let paths: Vec<&str> = readme
        .split("kubectl kustomize ")
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next())
        .map(|p| p.trim_end_matches(['`', ')', ',', '.']))
        .collect();
    assert!(paths.len() >= 4, "{paths:?}");
    for path in paths {
        let text = render(path);
        let text = if path.contains("overlays/flux") {
            let k =
                yaml_docs(&std::fs::read_to_string(root().join("flux/mdb.yaml")).expect("flux"));
            flux_substitute(
                &text,
                k[0]["spec"]["postBuild"]["substitute"]
                    .as_object()
                    .expect("vars"),
            )
        } else {
            text
        };
        validate(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
}

/// The environment of a config that reads its tokens from files in `dir`.
fn token_env(dir: &Path) -> std::collections::HashMap<String, String> {
    let token = dir.join("token");
    std::fs::write(&token, "ghp_example\n").expect("token");
    [
        mdb::config::ENV_DB_TOKEN_FILE,
        mdb::config::ENV_GITHUB_TOKEN_FILE,
    ]
    .iter()
    .map(|k| (k.to_string(), token.display().to_string()))
    .collect()
}

#[test]
fn every_shipped_config_authenticates_every_port_and_follows_over_tls_only() {
    use mdb::auth::web::Login;
    let dir = tempfile::tempdir().expect("tempdir");
    let env = Default::default();
    let mut servers = 0;
    for path in [
        "deploy/base/api.toml",
        "deploy/base/scanner.toml",
        "deploy/overlays/example/api.toml",
        "deploy/overlays/example/scanner.toml",
        "deploy/overlays/flux/api.toml",
        "deploy/overlays/flux/scanner.toml",
        "deploy/components/segment-iot/api.toml",
        "deploy/components/segment-iot/scanner.toml",
        "deploy/components/segment-iot/scanner-iot.toml",
    ] {
        let text = with_secrets(&std::fs::read_to_string(path).expect(path), dir.path())
            .replace("${MDB_DB_URL}", "https://github.com/example/lab-db.git");
        let raw: mdb::config::RawConfig = toml::from_str(&text).expect(path);
        let cfg = mdb::config::resolve(raw, &env, &Default::default())
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(!cfg.auth.is_open(), "{path}: open ports");
        assert!(!cfg.auth.tokens.is_empty(), "{path}: no tokens");
        assert!(cfg.auth.tls.is_some(), "{path}: plaintext gRPC");
        assert!(
            matches!(cfg.auth.login, Login::Basic { .. }),
            "{path}: the page has no login"
        );
        for s in &cfg.scanners {
            assert!(
                s.starts_with("https://"),
                "{path}: follows {s} in plaintext"
            );
            assert!(
                cfg.scanner_creds.token.is_some(),
                "{path}: follows {s} without a token"
            );
        }
        servers += 1;
    }
    assert_eq!(servers, 9);
    let text = with_secrets(
        &std::fs::read_to_string("deploy/components/provisioner/provision.toml")
            .expect("provision.toml"),
        dir.path(),
    );
    let raw: mdb::config::RawConfig = toml::from_str(&text).expect("provision.toml");
    let runner = mdb::config::resolve_provision(raw, &env, &Default::default())
        .unwrap_or_else(|e| panic!("provision.toml: {e}"));
    assert!(
        runner.server.addr.starts_with("https://mdb:"),
        "{}",
        runner.server.addr
    );
    assert!(
        runner.server.creds.token.is_some(),
        "the runner reads with a token"
    );
    assert!(runner.auth.tls.is_some() && !runner.auth.tokens.is_empty());
}

#[test]
fn the_shipped_scanner_configs_file_issues_and_enrolment_pull_requests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = token_env(dir.path());
    for path in [
        "deploy/base/scanner.toml",
        "deploy/overlays/example/scanner.toml",
    ] {
        let text = with_secrets(&std::fs::read_to_string(path).expect(path), dir.path());
        let raw: mdb::config::RawConfig = toml::from_str(&text).expect("parses");
        let cfg = mdb::config::resolve(raw, &env, &Default::default())
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let gh = cfg.github.unwrap_or_else(|| panic!("{path}: no [github]"));
        let enrol = gh
            .enrol
            .unwrap_or_else(|| panic!("{path}: enrolment is off"));
        assert_eq!(
            enrol.work_dir,
            std::path::Path::new("/var/lib/mdb/db.enrol")
        );
        let scan = cfg.scan.unwrap_or_else(|| panic!("{path}: no [scan]"));
        assert_eq!(
            scan.state_dir.as_deref(),
            Some(std::path::Path::new("/var/lib/mdb/state")),
            "{path}: the history is kept on the claim"
        );
    }
}

#[test]
fn the_two_vlan_overlay_has_one_filer_following_the_other_segment() {
    let docs = yaml_docs(&render("deploy/overlays/two-vlans"));
    let cm = docs
        .iter()
        .find(|d| {
            d["kind"] == "ConfigMap"
                && d["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("mdb-config"))
        })
        .expect("the config map");
    let dir = tempfile::tempdir().expect("tempdir");
    let env = token_env(dir.path());
    let resolve = |file: &str| {
        let text = cm["data"][file]
            .as_str()
            .unwrap_or_else(|| panic!("{file} in the config map"));
        let text = with_secrets(text, dir.path());
        let raw: mdb::config::RawConfig = toml::from_str(&text).expect(file);
        mdb::config::resolve(raw, &env, &Default::default())
            .unwrap_or_else(|e| panic!("{file}: {e}"))
    };
    let lab = resolve("scanner.toml");
    assert!(lab.github.is_some(), "the lab scanner is the filer");
    assert_eq!(lab.scanners, ["https://mdb-scanner-iot:50052"]);
    assert_eq!(lab.scan.expect("lab sweeps").segment, "lab");
    let iot = resolve("scanner-iot.toml");
    assert!(
        iot.github.is_none() && iot.scanners.is_empty(),
        "one filer only"
    );
    assert_eq!(iot.scan.expect("iot sweeps").segment, "iot");
    let api = resolve("api.toml");
    assert!(api.scan.is_none());
    assert_eq!(api.scanners.len(), 2);
    let selectors: Vec<String> = ["mdb-scanner", "mdb-scanner-iot"]
        .iter()
        .map(|n| {
            find(&docs, "Deployment", n)["spec"]["template"]["spec"]["nodeSelector"]
                ["mdb.lab/segment"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(selectors, ["lab", "iot"]);
}

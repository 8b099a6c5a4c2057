//! Shipping checked by the real tools: kustomize (kubectl) renders
//! deploy/, kubernetes-validate checks every object against the Kubernetes
//! schemas, promtool checks and unit-tests the alert rules, hadolint lints
//! the Dockerfile, and the dashboard's metrics exist in a real scrape.

mod util;

use std::{path::Path, process::Command};

use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> Command {
    Command::new(std::env::var("MDB_PYTHON").unwrap_or_else(|_| "python3".into()))
}

/// Every document of a YAML text as JSON (PyYAML, which ansible-core brings).
fn yaml_docs(text: &str) -> Vec<Value> {
    let mut c = python();
    c.args(["-c", "import json,sys,yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d is not None]))"]);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = c.spawn().expect("python");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python");
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).expect("json")
}

fn render(dir: &str) -> String {
    let mut c = util::venv_tool("kubectl");
    c.arg("kustomize").arg(root().join(dir));
    util::run_ok(c)
}

fn validate(text: &str) -> Result<(), String> {
    let file = tempfile::NamedTempFile::new().expect("tempfile");
    std::fs::write(file.path(), text).expect("write");
    let mut c = util::venv_tool("kubernetes-validate");
    c.args(["--strict", "--quiet"]).arg(file.path());
    let out = c
        .output()
        .expect("kubernetes-validate (.ci/run installs it)");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} rendered"))
}

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
        assert_eq!(c["readinessProbe"]["grpc"]["port"], 50051);
        let scanner = find(&docs, "Deployment", "mdb-scanner");
        assert_eq!(scanner["spec"]["replicas"], 1);
        assert_eq!(scanner["spec"]["strategy"]["type"], "Recreate");
        assert_eq!(scanner["spec"]["template"]["spec"]["hostNetwork"], true);
        let sc = &scanner["spec"]["template"]["spec"]["containers"][0]["securityContext"];
        assert_eq!(sc["capabilities"]["add"], serde_json::json!(["NET_RAW"]));
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
        let cfg = docs
            .iter()
            .find(|d| {
                d["kind"] == "ConfigMap"
                    && d["metadata"]["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("mdb-config"))
            })
            .expect("config");
        // The shipped configuration is one the binary accepts.
        let toml_text = cfg["data"]["scanner.toml"].as_str().expect("scanner.toml");
        let raw: mdb::config::RawConfig = toml::from_str(toml_text).expect("scanner.toml parses");
        let resolved = mdb::config::resolve(raw, &Default::default(), &Default::default());
        assert!(
            resolved.is_err_and(|e| e.0.contains("token file")),
            "only the secret is missing"
        );
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
    let mut scrape = server.metrics_text().await;
    // The runner's metrics, as `mdb provision` serves them.
    let registry = mdb::metrics::registry();
    let provision = mdb::provision::metrics::ProvisionMetrics::register(&registry);
    provision.cluster("alpha", true, 1);
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

#[test]
fn dockerfile_passes_hadolint_and_builds_as_ci_does() {
    let mut c = util::venv_tool("hadolint");
    c.arg(root().join("Dockerfile")).current_dir(root());
    util::run_ok(c);
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    assert!(dockerfile.contains("cargo build --release --locked"));
    let ci = std::fs::read_to_string(root().join("scripts/test.sh")).expect("test script");
    assert!(
        ci.contains("cargo build --release --locked"),
        "CI builds what the image builds"
    );
    assert!(dockerfile.contains("USER 10001"));
}

#[test]
fn flux_applies_a_path_that_renders_and_checks_deployments_it_has() {
    let source =
        yaml_docs(&std::fs::read_to_string(root().join("flux/mdb-source.yaml")).expect("source"));
    let ks = yaml_docs(
        &std::fs::read_to_string(root().join("flux/mdb-kustomization.yaml"))
            .expect("kustomization"),
    );
    let (src, k) = (&source[0], &ks[0]);
    assert_eq!(src["kind"], "GitRepository");
    assert_eq!(k["kind"], "Kustomization");
    assert_eq!(k["spec"]["sourceRef"]["name"], src["metadata"]["name"]);
    let path = k["spec"]["path"]
        .as_str()
        .expect("path")
        .trim_start_matches("./");
    let docs = yaml_docs(&render(path));
    for check in k["spec"]["healthChecks"].as_array().expect("health checks") {
        find(
            &docs,
            check["kind"].as_str().expect("kind"),
            check["name"].as_str().expect("name"),
        );
    }
}

#[test]
fn the_shipped_scanner_configs_file_issues_and_enrolment_pull_requests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("token");
    std::fs::write(&token, "ghp_example\n").expect("token");
    let env: std::collections::HashMap<String, String> = [
        (
            mdb::config::ENV_DB_TOKEN_FILE,
            token.to_str().expect("path"),
        ),
        (
            mdb::config::ENV_GITHUB_TOKEN_FILE,
            token.to_str().expect("path"),
        ),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for path in [
        "deploy/base/scanner.toml",
        "deploy/overlays/example/scanner.toml",
    ] {
        let raw = mdb::config::read_file(std::path::Path::new(path)).expect("parses");
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
    }
}

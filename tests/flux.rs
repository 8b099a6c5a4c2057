//! Flux and the deploy variants checked by the real tools: the Flux example
//! renders with its variables substituted and its SOPS secret, the ingress
//! and public-DB variants render and validate, and the image is named in one
//! place.

use crate::util;

use serde_json::Value;
use util::kube::{
    find, flux_substitute, images, mdb_config, render, render_variant, root, validate,
    with_secrets, yaml_docs,
};

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
    let text = with_secrets(
        cfg["data"]["scanner.toml"].as_str().expect("scanner.toml"),
        dir.path(),
    );
    let raw: mdb::config::RawConfig = toml::from_str(&text).expect("toml");
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
    // And the tokens and the page's users, with every key a pod mounts.
    for (name, secret) in [("mdb-tokens", "tokens"), ("mdb-web", "web-users")] {
        let s = find(&secret_docs, "Secret", name);
        assert_eq!(s["metadata"]["namespace"], "mdb");
        let volume = api["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .find(|v| v["name"] == secret)
            .unwrap_or_else(|| panic!("{secret} volume"));
        assert_eq!(volume["secret"]["secretName"], name);
        assert!(volume["secret"]["optional"].is_null(), "{name} is required");
        for item in volume["secret"]["items"].as_array().into_iter().flatten() {
            let key = item["key"].as_str().expect("key");
            assert!(s["stringData"][key].is_string(), "{name}: {key}");
        }
    }
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
        "https"
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
        "GRPCS"
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
    let dir = tempfile::tempdir().expect("tempdir");
    let api_toml = with_secrets(
        &std::fs::read_to_string(root().join("deploy/base/api.toml")).expect("api.toml"),
        dir.path(),
    );
    let raw: mdb::config::RawConfig = toml::from_str(&api_toml).expect("toml");
    let env = [(mdb::config::ENV_DB_TOKEN_FILE.to_string(), String::new())].into();
    let cfg = mdb::config::resolve(raw, &env, &Default::default()).expect("resolves");
    assert!(cfg.source.token.is_none());
    // Without the component a missing Secret file names itself.
    let db_token = dir.path().join("var/run/secrets/mdb/db-token");
    std::fs::remove_file(&db_token).expect("remove");
    let raw: mdb::config::RawConfig = toml::from_str(&api_toml).expect("toml");
    let e = mdb::config::resolve(raw, &Default::default(), &Default::default())
        .expect_err("token file absent");
    assert_eq!(
        e.0,
        format!(
            "token file {} does not exist (create its Secret, or leave token_file out for a public repository)",
            db_token.display()
        )
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

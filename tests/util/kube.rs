//! Helpers for the shipping tests: the repository's root, kustomize
//! renders through the venv's kubectl, kubernetes-validate, YAML read as JSON
//! by PyYAML, and Flux's variable substitution as kustomize-controller does it.

use std::{path::Path, process::Command};

use serde_json::Value;

use super::{run_ok, venv_tool};

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn python() -> Command {
    Command::new(std::env::var("MDB_PYTHON").unwrap_or_else(|_| "python3".into()))
}

/// Every document of a YAML text as JSON (PyYAML, which ansible-core brings).
pub fn yaml_docs(text: &str) -> Vec<Value> {
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

pub fn render(dir: &str) -> String {
    let mut c = venv_tool("kubectl");
    c.arg("kustomize").arg(root().join(dir));
    run_ok(c)
}

pub fn validate(text: &str) -> Result<(), String> {
    let file = tempfile::NamedTempFile::new().expect("tempfile");
    std::fs::write(file.path(), text).expect("write");
    let mut c = venv_tool("kubernetes-validate");
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
pub fn mdb_config(docs: &[Value]) -> &Value {
    docs.iter()
        .find(|d| {
            d["kind"] == "ConfigMap"
                && d["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("mdb-config"))
        })
        .expect("config")
}

pub fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} rendered"))
}

/// Flux's postBuild substitution as kustomize-controller does it: `${VAR}`
/// becomes its value (unset: empty), except in objects that opt out.
pub fn flux_substitute(rendered: &str, vars: &serde_json::Map<String, Value>) -> String {
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
pub fn render_variant(name: &str, kustomization: &str) -> String {
    let dir = root().join("deploy/overlays").join(format!(".test-{name}"));
    std::fs::create_dir_all(&dir).expect("variant dir");
    std::fs::write(dir.join("kustomization.yaml"), kustomization).expect("write");
    let text = render(&format!("deploy/overlays/.test-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    text
}

pub fn images(docs: &[Value]) -> Vec<String> {
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

/// `text` with every `/var/run/secrets/...` path moved under `dir`, where
/// each file is made as its Secret would hold it: tokens, mdb's CA and a
/// certificate of it, a bcrypt password file, the GitHub token.
pub fn with_secrets(text: &str, dir: &Path) -> String {
    let pki = super::pki::Pki::for_host("mdb").write(&dir.join("pki"));
    let mut out = text.to_string();
    let mut paths: Vec<&str> = text
        .split('"')
        .filter(|s| s.starts_with("/var/run/secrets/"))
        .collect();
    paths.sort();
    paths.dedup();
    for path in paths {
        let file = dir.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let content = match name {
            "tls.crt" => std::fs::read_to_string(pki.join("cert.pem")).expect("cert"),
            "tls.key" => std::fs::read_to_string(pki.join("key.pem")).expect("key"),
            "ca.crt" => std::fs::read_to_string(pki.join("ca.pem")).expect("ca"),
            "htpasswd" => format!("alice:{}\n", bcrypt::hash("pw", 4).expect("bcrypt")),
            "db-token" | "issues-token" => "github_pat_example\n".into(),
            _ => format!("{name}-token-0123456789abcdef\n"),
        };
        std::fs::write(&file, content).expect("secret file");
        out = out.replace(&format!("\"{path}\""), &format!("\"{}\"", file.display()));
    }
    out
}

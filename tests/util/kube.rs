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

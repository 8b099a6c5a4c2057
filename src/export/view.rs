//! A machine in words and as JSON, as the CLI, the web page and exports
//! show it: one place, so they never disagree.

use serde_json::{json, Value};

use crate::{
    db::{
        self,
        words::{development_kind_name, provisioner_name, role_name},
    },
    proto::{machine::Use, Machine},
};

/// The use in a few words: "cluster alpha (worker)", "device: receipt printer".
pub fn use_detail(m: &Machine) -> String {
    match &m.r#use {
        Some(Use::Cluster(c)) => format!("cluster {} ({})", c.cluster, role_name(c.role)),
        Some(Use::Development(d)) => format!("development ({})", development_kind_name(d.kind)),
        Some(Use::Device(d)) if !d.description.is_empty() => format!("device: {}", d.description),
        other => db::use_name(other.as_ref()).to_string(),
    }
}

/// A machine as JSON, field names as in the YAML format.
pub fn machine_json(m: &Machine) -> Value {
    let mut use_ = json!({ "kind": db::use_name(m.r#use.as_ref()) });
    match &m.r#use {
        Some(Use::Cluster(c)) => {
            use_["cluster"] = json!(c.cluster);
            use_["role"] = json!(role_name(c.role));
        }
        Some(Use::Development(d)) => use_["development"] = json!(development_kind_name(d.kind)),
        Some(Use::Device(d)) => use_["description"] = json!(d.description),
        _ => {}
    }
    json!({
        "name": m.name,
        "ips": m.ips,
        "mac": m.mac,
        "hostname": m.hostname,
        "use": use_,
        "provisioner": provisioner_name(m),
        "ssh": m.ssh.as_ref().map(|s| json!({"user": s.user, "port": if s.port == 0 { 22 } else { s.port }})),
        "labels": m.labels.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "notes": m.notes,
        "source": m.source,
    })
}

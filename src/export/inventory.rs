//! Ansible inventories from a snapshot: the dynamic-inventory JSON
//! (`--list` with `_meta.hostvars`, so Ansible never calls `--host` per
//! host), a static YAML inventory, and per-cluster exports in the shapes
//! k3s-ansible and kubespray take.
//!
//! Ansible group and variable names must be identifiers; `group_name`
//! lower-cases and turns every other character into `_`.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::plain::Unplain;
use crate::{
    db::mdb_yaml::KeyedGroup,
    db::words::{development_kind_name, provisioner_name, role_name, GroupBy},
    db::{self, Snapshot},
    proto::{machine::Use, Machine, Role},
};

/// A valid Ansible group name: `[a-z0-9_]`, not starting with a digit.
pub fn group_name(parts: &[&str]) -> String {
    let joined = parts.join("_");
    let mut out: String = joined
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) || out.is_empty() {
        out.insert(0, '_');
    }
    out
}

/// The variables Ansible sees for one host.
pub fn hostvars(m: &Machine) -> Value {
    let mut v = Map::new();
    if let Some(ip) = m.ips.first() {
        v.insert("ansible_host".into(), json!(ip));
    }
    if let Some(ssh) = &m.ssh {
        if !ssh.user.is_empty() {
            v.insert("ansible_user".into(), json!(ssh.user));
        }
        if ssh.port != 0 {
            v.insert("ansible_port".into(), json!(ssh.port));
        }
    }
    if !m.mac.is_empty() {
        v.insert("mac".into(), json!(m.mac));
    }
    if !m.hostname.is_empty() {
        v.insert("hostname".into(), json!(m.hostname));
    }
    v.insert("ips".into(), json!(m.ips));
    v.insert("use".into(), json!(db::use_name(m.r#use.as_ref())));
    match &m.r#use {
        Some(Use::Cluster(c)) => {
            v.insert("cluster".into(), json!(c.cluster));
            v.insert("role".into(), json!(role_name(c.role)));
        }
        Some(Use::Development(d)) => {
            v.insert(
                "development_kind".into(),
                json!(development_kind_name(d.kind)),
            );
        }
        Some(Use::Device(d)) => {
            v.insert("device".into(), json!(d.description));
        }
        _ => {}
    }
    let p = provisioner_name(m);
    if !p.is_empty() {
        v.insert("provisioner".into(), json!(p));
    }
    let labels: Map<String, Value> = m
        .labels
        .iter()
        .map(|(k, val)| (k.clone(), json!(val)))
        .collect();
    v.insert("labels".into(), Value::Object(labels));
    Value::Object(v)
}

#[derive(Default)]
struct Group {
    hosts: Vec<String>,
    children: Vec<String>,
}

/// A host's variables with `inventory.compose` applied: each composed
/// variable copies the value at its path (absent paths set nothing).
pub fn vars(snap: &Snapshot, m: &Machine) -> Value {
    vars_with(snap, m, &no_more)
}

/// Variables a caller adds to every host (the runner's connection
/// settings); they win over the database's.
pub type More<'a> = dyn Fn(&Machine) -> Map<String, Value> + 'a;

fn no_more(_: &Machine) -> Map<String, Value> {
    Map::new()
}

fn vars_with(snap: &Snapshot, m: &Machine, more: &More) -> Value {
    let mut v = hostvars(m);
    for (name, path) in &snap.mdb_yaml.inventory.compose {
        if let Some(value) = lookup(&v, path).cloned() {
            v[name.as_str()] = value;
        }
    }
    if let Value::Object(o) = &mut v {
        o.extend(more(m));
    }
    v
}

/// The value at a dotted path (`labels.rack`) in a host's variables.
fn lookup<'v>(vars: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(vars, |v, part| v.get(part))
}

/// Group name → members, every group of the inventory.
fn groups(snap: &Snapshot) -> BTreeMap<String, Group> {
    let inv = &snap.mdb_yaml.inventory;
    let mut g: BTreeMap<String, Group> = BTreeMap::new();
    for by in &inv.group_by {
        group_by(snap, *by, &mut g);
    }
    for keyed in &inv.keyed_groups {
        keyed_groups(snap, keyed, &mut g);
    }
    if let Some(c) = &inv.k3s_groups {
        k3s_groups(snap, c, &mut g);
    }
    g
}

fn add(g: &mut BTreeMap<String, Group>, group: String, host: &str) {
    g.entry(group).or_default().hosts.push(host.to_string());
}

/// One built-in grouping (`inventory.group_by`).
fn group_by(snap: &Snapshot, by: GroupBy, g: &mut BTreeMap<String, Group>) {
    if by == GroupBy::Use {
        for u in db::USE_NAMES {
            g.entry(u.to_string()).or_default();
        }
    }
    for m in &snap.machines {
        let name = m.name.as_str();
        match (by, &m.r#use) {
            (GroupBy::Use, u) => add(g, db::use_name(u.as_ref()).to_string(), name),
            (GroupBy::Cluster, Some(Use::Cluster(c))) => {
                let part = if c.role == Role::ControlPlane as i32 {
                    "control_plane"
                } else {
                    "workers"
                };
                add(g, group_name(&["cluster", &c.cluster, part]), name);
            }
            (GroupBy::Role, Some(Use::Cluster(c))) => {
                add(g, group_name(&["role", role_name(c.role)]), name)
            }
            (GroupBy::DevelopmentKind, Some(Use::Development(d))) => add(
                g,
                group_name(&["development", development_kind_name(d.kind)]),
                name,
            ),
            (GroupBy::Provisioner, _) if !provisioner_name(m).is_empty() => {
                add(g, group_name(&["provisioner", provisioner_name(m)]), name)
            }
            (GroupBy::Labels, _) => {
                for (k, v) in &m.labels {
                    add(g, group_name(&["label", k, v]), name);
                }
            }
            _ => {}
        }
    }
    if by == GroupBy::Cluster {
        cluster_parents(snap, g);
    }
}

/// `cluster_NAME` with its two role groups, and `cluster` (every cluster
/// node) as the parent of each `cluster_NAME`.
fn cluster_parents(snap: &Snapshot, g: &mut BTreeMap<String, Group>) {
    let mut clusters = Vec::new();
    for c in snap.cluster_names() {
        clusters.push(group_name(&["cluster", c]));
        let parent = g.entry(group_name(&["cluster", c])).or_default();
        parent.children = vec![
            group_name(&["cluster", c, "control_plane"]),
            group_name(&["cluster", c, "workers"]),
        ];
        for child in parent.children.clone() {
            g.entry(child).or_default();
        }
    }
    g.entry("cluster".into()).or_default().children = clusters;
}

/// A variable's value as part of a group name; nothing for empty values,
/// maps and lists.
fn group_value(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// One group per value of a variable (each element of a list).
fn keyed_groups(snap: &Snapshot, keyed: &KeyedGroup, g: &mut BTreeMap<String, Group>) {
    for m in &snap.machines {
        let vars = vars(snap, m);
        let values: Vec<&Value> = match lookup(&vars, &keyed.key) {
            Some(Value::Array(items)) => items.iter().collect(),
            Some(v) => vec![v],
            None => continue,
        };
        for value in values.into_iter().filter_map(group_value) {
            let joined = if keyed.prefix.is_empty() {
                value
            } else {
                format!("{}{}{value}", keyed.prefix, keyed.separator)
            };
            add(g, group_name(&[&joined]), &m.name);
        }
    }
}

/// k3s-ansible's groups for one cluster: `k3s_cluster` with `server` and `agent`.
fn k3s_groups(snap: &Snapshot, cluster: &str, g: &mut BTreeMap<String, Group>) {
    let Some((cp, w)) = snap.cluster(cluster) else {
        return;
    };
    g.entry("server".into()).or_default().hosts = cp.iter().map(|m| m.name.clone()).collect();
    g.entry("agent".into()).or_default().hosts = w.iter().map(|m| m.name.clone()).collect();
    g.entry("k3s_cluster".into()).or_default().children = vec!["server".into(), "agent".into()];
}

/// One group of the static inventory with its children nested inside.
fn render_group(name: &str, groups: &BTreeMap<String, Group>, depth: usize) -> Value {
    let mut v = Map::new();
    let Some(g) = groups.get(name) else {
        return Value::Object(v);
    };
    if !g.hosts.is_empty() {
        v.insert(
            "hosts".into(),
            Value::Object(g.hosts.iter().map(|h| (h.clone(), Value::Null)).collect()),
        );
    }
    // Groups nest a few levels at most; the bound keeps a cycle harmless.
    if !g.children.is_empty() && depth < 8 {
        let kids = g
            .children
            .iter()
            .map(|c| (c.clone(), render_group(c, groups, depth + 1)))
            .collect();
        v.insert("children".into(), Value::Object(kids));
    }
    Value::Object(v)
}

/// Groups that are no other group's child: the only ones `all` lists.
fn top_level(groups: &BTreeMap<String, Group>) -> Vec<String> {
    let nested: std::collections::BTreeSet<&String> =
        groups.values().flat_map(|g| g.children.iter()).collect();
    groups
        .keys()
        .filter(|k| !nested.contains(k))
        .cloned()
        .collect()
}

/// `--list`: every group with hosts and children, and all hostvars.
pub fn list(snap: &Snapshot) -> Value {
    let mut out = Map::new();
    let groups = groups(snap);
    let mut all_children = top_level(&groups);
    all_children.push("ungrouped".into());
    for (name, g) in groups {
        let mut v = Map::new();
        v.insert("hosts".into(), json!(g.hosts));
        if !g.children.is_empty() {
            v.insert("children".into(), json!(g.children));
        }
        out.insert(name, Value::Object(v));
    }
    out.insert("all".into(), json!({ "children": all_children }));
    let hostvars: Map<String, Value> = snap
        .machines
        .iter()
        .map(|m| (m.name.clone(), vars(snap, m)))
        .collect();
    out.insert("_meta".into(), json!({ "hostvars": hostvars }));
    Value::Object(out)
}

/// `--host NAME`: that host's variables (`{}` for an unknown host, as the
/// inventory-script protocol wants).
pub fn host(snap: &Snapshot, name: &str) -> Value {
    snap.by_name(name)
        .map(|m| vars(snap, m))
        .unwrap_or_else(|| json!({}))
}

/// A static inventory in Ansible's YAML inventory format; refused when a
/// value is not plain (see `export::plain`).
pub fn static_yaml(snap: &Snapshot) -> Result<String, Unplain> {
    static_yaml_with(snap, &no_more)
}

/// [`static_yaml`] with `more` variables on every host.
pub fn static_yaml_with(snap: &Snapshot, more: &More) -> Result<String, Unplain> {
    super::plain::check(snap)?;
    let groups = groups(snap);
    // Groups that are children of another group are listed only there.
    let children: Map<String, Value> = top_level(&groups)
        .into_iter()
        .map(|name| {
            let v = render_group(&name, &groups, 0);
            (name, v)
        })
        .collect();
    let hosts: Map<String, Value> = snap
        .machines
        .iter()
        .map(|m| (m.name.clone(), vars_with(snap, m, more)))
        .collect();
    let doc = json!({ "all": { "hosts": hosts, "children": children } });
    Ok(format!(
        "# Generated by mdb from revision {}; do not edit.\n{}",
        snap.revision,
        to_yaml(&doc)
    ))
}

/// A cluster for k3s-ansible: `k3s_cluster` with `server` and `agent`;
/// `None` when there is no such cluster.
pub fn k3s(snap: &Snapshot, cluster: &str) -> Result<Option<String>, Unplain> {
    k3s_with(snap, cluster, &no_more)
}

/// [`k3s`] with `more` variables on every host.
pub fn k3s_with(snap: &Snapshot, cluster: &str, more: &More) -> Result<Option<String>, Unplain> {
    super::plain::check(snap)?;
    let Some((cp, w)) = snap.cluster(cluster) else {
        return Ok(None);
    };
    let hosts = |ms: &[&Machine]| -> Value {
        Value::Object(
            ms.iter()
                .map(|m| (m.name.clone(), vars_with(snap, m, more)))
                .collect(),
        )
    };
    let doc = json!({ "k3s_cluster": { "children": {
        "server": { "hosts": hosts(&cp) },
        "agent": { "hosts": hosts(&w) },
    }}});
    Ok(Some(format!(
        "# k3s-ansible inventory for cluster {cluster}, from mdb revision {}\n{}",
        snap.revision,
        to_yaml(&doc)
    )))
}

/// A cluster for kubespray: control plane and etcd on the control-plane
/// nodes, every node in `kube_node`.
pub fn kubespray(snap: &Snapshot, cluster: &str) -> Result<Option<String>, Unplain> {
    kubespray_with(snap, cluster, &no_more)
}

/// [`kubespray`] with `more` variables on every host.
pub fn kubespray_with(
    snap: &Snapshot,
    cluster: &str,
    more: &More,
) -> Result<Option<String>, Unplain> {
    super::plain::check(snap)?;
    let Some((cp, w)) = snap.cluster(cluster) else {
        return Ok(None);
    };
    let mut all_hosts = Map::new();
    for m in cp.iter().chain(w.iter()) {
        let mut v = vars_with(snap, m, more);
        if let (Some(obj), Some(ip)) = (v.as_object_mut(), m.ips.first()) {
            obj.insert("ip".into(), json!(ip));
            obj.insert("access_ip".into(), json!(ip));
        }
        all_hosts.insert(m.name.clone(), v);
    }
    let names = |ms: &[&Machine]| -> Value {
        Value::Object(ms.iter().map(|m| (m.name.clone(), Value::Null)).collect())
    };
    let every: Vec<&Machine> = cp.iter().chain(w.iter()).copied().collect();
    let doc = json!({ "all": {
        "hosts": all_hosts,
        "children": {
            "kube_control_plane": { "hosts": names(&cp) },
            "etcd": { "hosts": names(&cp) },
            "kube_node": { "hosts": names(&every) },
            "k8s_cluster": { "children": { "kube_control_plane": null, "kube_node": null } },
        }
    }});
    Ok(Some(format!(
        "# kubespray inventory for cluster {cluster}, from mdb revision {}\n{}",
        snap.revision,
        to_yaml(&doc)
    )))
}

/// Block-style YAML for a JSON value. Strings are written as JSON strings,
/// which YAML reads as double-quoted scalars, so no escaping rule is missed.
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    emit(v, 0, &mut out);
    out
}

/// Plain when unambiguous (host and group names), quoted otherwise.
fn yaml_key(k: &str) -> String {
    let plain = k
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !matches!(
            k.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
        );
    if plain {
        k.to_string()
    } else {
        serde_json::to_string(k).unwrap_or_default()
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some(String::new()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(serde_json::to_string(s).unwrap_or_default()),
        Value::Array(a) if a.is_empty() => Some("[]".into()),
        Value::Object(o) if o.is_empty() => Some("{}".into()),
        _ => None,
    }
}

fn emit(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(o) => {
            for (k, val) in o {
                let key = yaml_key(k);
                match scalar(val) {
                    Some(s) if s.is_empty() => out.push_str(&format!("{pad}{key}:\n")),
                    Some(s) => out.push_str(&format!("{pad}{key}: {s}\n")),
                    None => {
                        out.push_str(&format!("{pad}{key}:\n"));
                        emit(val, indent + 2, out);
                    }
                }
            }
        }
        Value::Array(a) => {
            for val in a {
                match scalar(val) {
                    Some(s) => out.push_str(&format!("{pad}- {s}\n")),
                    None => {
                        out.push_str(&format!("{pad}-\n"));
                        emit(val, indent + 2, out);
                    }
                }
            }
        }
        other => {
            if let Some(s) = scalar(other) {
                out.push_str(&format!("{pad}{s}\n"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_are_identifiers() {
        assert_eq!(group_name(&["cluster", "my-lab.1"]), "cluster_my_lab_1");
        assert_eq!(group_name(&["9lives"]), "_9lives");
    }

    #[test]
    fn yaml_round_trips_through_the_db_parser() {
        let v = json!({"a": {"b": ["x: y", "#z", 3], "c": null, "d": {}}, "e": "multi\nline"});
        let text = to_yaml(&v);
        let node = crate::db::yaml::parse(&text).unwrap().unwrap();
        assert!(
            matches!(node.value, crate::db::yaml::Value::Map(_)),
            "{text}"
        );
        assert!(text.contains("\"x: y\""), "{text}");
    }
}

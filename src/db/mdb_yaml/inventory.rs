//! `mdb.yaml`'s `inventory:` section, in the spirit of NetBox's
//! `nb_inventory` and Ansible's `constructed` plugin, without a template
//! language: groups come from built-in groupings (`group_by`) and from the
//! value of a host variable (`keyed_groups`); `compose` sets a variable from
//! another. A variable is named by a dotted path into the host's variables,
//! such as `labels.rack` or `role`.

use crate::db::{
    fields::Fields,
    problem::Problem,
    words::{GroupBy, DEFAULT_GROUP_BY, GROUP_BY},
    yaml::{self, Value},
};

use super::FILE;
/// Bounds on what one settings file can ask the inventory to build.
const MAX_KEYED_GROUPS: usize = 64;
const MAX_COMPOSE: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inventory {
    /// The cluster whose nodes also form k3s-ansible's `k3s_cluster`,
    /// `server` and `agent` groups.
    pub k3s_groups: Option<String>,
    pub group_by: Vec<GroupBy>,
    pub keyed_groups: Vec<KeyedGroup>,
    /// Variable name → the dotted path of the variable it copies.
    pub compose: Vec<(String, String)>,
}

impl Default for Inventory {
    fn default() -> Self {
        Inventory {
            k3s_groups: None,
            group_by: DEFAULT_GROUP_BY.to_vec(),
            keyed_groups: Vec::new(),
            compose: Vec::new(),
        }
    }
}

/// One group per value of `key` (each element, for a list), named
/// `prefix` + `separator` + value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyedGroup {
    pub key: String,
    pub prefix: String,
    pub separator: String,
}

pub fn parse(node: &yaml::Node, problems: &mut Vec<Problem>) -> Inventory {
    let mut out = Inventory::default();
    let allowed = ["k3s_groups", "group_by", "keyed_groups", "compose"];
    let Some(f) = Fields::of(FILE, node, "inventory", &allowed, problems) else {
        return out;
    };
    out.k3s_groups = f.str("k3s_groups", problems).map(String::from);
    if f.get("group_by").is_some() {
        out.group_by = group_by(&f, problems);
    }
    if let Some(list) = f.get("keyed_groups") {
        out.keyed_groups = keyed_groups(&f, list, problems);
    }
    if let Some(map) = f.get("compose") {
        out.compose = compose(map, problems);
    }
    out
}

fn group_by(f: &Fields, problems: &mut Vec<Problem>) -> Vec<GroupBy> {
    let words: Vec<&str> = GROUP_BY.iter().map(|(w, _)| *w).collect();
    let mut out = Vec::new();
    for node in f.strs("group_by", problems) {
        let text = node.as_str().unwrap_or_default();
        match crate::db::fields::choose(text, GROUP_BY) {
            Some(g) if !out.contains(&g) => out.push(g),
            Some(_) => problems.push(f.problem(node, "group_by", format!("{text:?} given twice"))),
            None => {
                let hint = crate::db::fields::closest(&text.replace('_', "-"), &words)
                    .map(|w| format!("did you mean `{w}`? "))
                    .unwrap_or_default();
                problems.push(f.problem(
                    node,
                    "group_by",
                    format!(
                        "{text:?} is unknown; {hint}expected some of: {}",
                        words.join(", ")
                    ),
                ));
            }
        }
    }
    out
}

fn keyed_groups(f: &Fields, list: &yaml::Node, problems: &mut Vec<Problem>) -> Vec<KeyedGroup> {
    let Value::Seq(items) = &list.value else {
        problems.push(f.problem(list, "keyed_groups", "expected a list of {key, prefix}"));
        return Vec::new();
    };
    if items.len() > MAX_KEYED_GROUPS {
        problems.push(f.problem(
            list,
            "keyed_groups",
            format!("at most {MAX_KEYED_GROUPS} entries"),
        ));
        return Vec::new();
    }
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("inventory.keyed_groups[{i}]");
        let Some(g) = Fields::of(FILE, item, &path, &["key", "prefix", "separator"], problems)
        else {
            continue;
        };
        let key = g.required_str("key", problems).map(str::to_string);
        let prefix = g.str("prefix", problems).unwrap_or_default().to_string();
        let separator = g.str("separator", problems).unwrap_or("_").to_string();
        if let Some(key) = key.filter(|k| variable_path_ok(&g, "key", k, problems)) {
            out.push(KeyedGroup {
                key,
                prefix,
                separator,
            });
        }
    }
    out
}

fn compose(map: &yaml::Node, problems: &mut Vec<Problem>) -> Vec<(String, String)> {
    let Value::Map(entries) = &map.value else {
        problems.push(Problem::new(
            FILE,
            map.pos,
            "inventory.compose",
            "expected a mapping of variable: source.path",
        ));
        return Vec::new();
    };
    let names: Vec<&str> = entries.iter().filter_map(|(k, _)| k.as_str()).collect();
    let Some(f) = Fields::of(FILE, map, "inventory.compose", &names, problems) else {
        return Vec::new();
    };
    if names.len() > MAX_COMPOSE {
        problems.push(Problem::new(
            FILE,
            map.pos,
            "inventory.compose",
            format!("at most {MAX_COMPOSE} variables"),
        ));
        return Vec::new();
    }
    let mut out = Vec::new();
    for name in names {
        let Some(node) = f.key(name) else { continue };
        if !is_identifier(name) {
            problems.push(f.problem(node, name, "not a valid Ansible variable name"));
            continue;
        }
        if let Some(source) = f.str(name, problems) {
            if variable_path_ok(&f, name, source, problems) {
                out.push((name.to_string(), source.to_string()));
            }
        }
    }
    out
}

fn variable_path_ok(f: &Fields, key: &str, path: &str, problems: &mut Vec<Problem>) -> bool {
    let ok = !path.is_empty() && path.split('.').all(|p| !p.is_empty() && p.len() <= 128);
    if !ok {
        let at = f.get(key).unwrap_or(f.node);
        problems.push(f.problem(
            at,
            key,
            format!("{path:?} is not a variable path like `labels.rack`"),
        ));
    }
    ok
}

fn is_identifier(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

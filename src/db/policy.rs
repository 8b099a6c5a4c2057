//! `mdb.yaml`'s `provision:` section: what the provisioning runner does
//! with the machines of each use, with a per-machine override. Which
//! machines get provisioned is a fact about the lab, so it lives with the
//! data; the runner's own configuration only maps action names to commands.
//!
//! ```yaml
//! provision:
//!   cluster: machine        # run the runner's action "machine"
//!   development: machine
//!   device: readiness       # judged by its readiness checks, never SSH'd
//!   games: none             # nothing: no checks, no runs, no issues
//!   machines: { studio: none }
//!   wake: [development, games]  # woken by Wake-on-LAN when not ready
//! ```

use std::collections::{BTreeMap, BTreeSet};

use super::{
    fields::Fields,
    load::check_dns_label,
    problem::Problem,
    words::USE_KINDS,
    yaml::{self, Value},
};
use crate::proto::{Machine, UseKind};

const FILE: &str = "mdb.yaml";
/// The action a machine is provisioned with when nothing names another.
pub const DEFAULT_ACTION: &str = "machine";
/// Per-machine overrides at most.
const MAX_MACHINES: usize = 10_000;

/// What the runner does with one machine.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Treatment {
    /// Nothing: no checks, no runs, no issues.
    None,
    /// Its readiness checks say whether it is ready; it is never SSH'd.
    Readiness,
    /// SSH and readiness checks, then the runner's command of this name.
    Action(String),
}

impl Treatment {
    /// The word `mdb.yaml` uses.
    pub fn word(&self) -> &str {
        match self {
            Treatment::None => "none",
            Treatment::Readiness => "readiness",
            Treatment::Action(a) => a,
        }
    }

    /// `none`, `readiness`, or an action name (a DNS label).
    pub fn parse(text: &str) -> Result<Treatment, String> {
        match text.trim() {
            "none" => Ok(Treatment::None),
            "readiness" => Ok(Treatment::Readiness),
            action => check_dns_label(action)
                .map(|()| Treatment::Action(action.to_string()))
                .map_err(|why| {
                    format!("{action:?} is not none, readiness or an action name (an action name {why})")
                }),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// By use; every use has one.
    pub uses: BTreeMap<UseKind, Treatment>,
    /// By machine name, over its use's.
    pub machines: BTreeMap<String, Treatment>,
    /// Where each override is written, for a problem about it.
    pub written_at: BTreeMap<String, yaml::Pos>,
    /// Uses whose machines are woken (Wake-on-LAN) when not ready, as a
    /// machine's own `wake: true` is.
    pub wake: BTreeSet<UseKind>,
}

impl Default for Policy {
    /// Clusters and development boxes are provisioned, devices are judged
    /// by their readiness checks, games PCs and spares are left alone.
    fn default() -> Policy {
        let action = Treatment::Action(DEFAULT_ACTION.into());
        Policy {
            uses: BTreeMap::from([
                (UseKind::Cluster, action.clone()),
                (UseKind::Development, action),
                (UseKind::Device, Treatment::Readiness),
                (UseKind::Games, Treatment::None),
                (UseKind::Discover, Treatment::None),
            ]),
            machines: BTreeMap::new(),
            written_at: BTreeMap::new(),
            wake: BTreeSet::new(),
        }
    }
}

impl Policy {
    /// Overrides that name no machine of `known`: a typo would silently do
    /// nothing.
    pub fn unknown_machines(&self, known: &dyn Fn(&str) -> bool, problems: &mut Vec<Problem>) {
        for (name, pos) in &self.written_at {
            if !known(name) {
                problems.push(Problem::new(
                    FILE,
                    *pos,
                    &format!("provision.machines.{name}"),
                    format!("no machine is named {name:?}"),
                ));
            }
        }
    }

    /// Whether `m` is woken when it is not ready: its own `wake: true`,
    /// or its use's.
    pub fn wakes(&self, m: &Machine) -> bool {
        m.wake || self.wake.contains(&super::use_kind(m.r#use.as_ref()))
    }

    /// What the runner does with `m`.
    pub fn of(&self, m: &Machine) -> &Treatment {
        if let Some(t) = self.machines.get(&m.name) {
            return t;
        }
        let kind = super::use_kind(m.r#use.as_ref());
        self.uses.get(&kind).unwrap_or(&Treatment::None)
    }
}

/// The policy as `GetReadiness` carries it (words by use word and by
/// machine name); unknown words are left out, for validation to name.
pub fn from_words(
    by_use: &std::collections::HashMap<String, String>,
    by_machine: &std::collections::HashMap<String, String>,
    wake: &[String],
) -> Policy {
    let mut out = Policy {
        wake: USE_KINDS
            .iter()
            .filter(|(w, _)| wake.iter().any(|x| x == w))
            .map(|(_, k)| *k)
            .collect(),
        ..Policy::default()
    };
    for (word, kind) in USE_KINDS {
        if let Some(t) = by_use.get(*word).and_then(|w| Treatment::parse(w).ok()) {
            out.uses.insert(*kind, t);
        }
    }
    for (name, word) in by_machine {
        if let Ok(t) = Treatment::parse(word) {
            out.machines.insert(name.clone(), t);
        }
    }
    out
}

/// Parses `provision:`; what is not given keeps the default.
pub fn parse(node: &yaml::Node, problems: &mut Vec<Problem>) -> Policy {
    let mut out = Policy::default();
    let mut allowed: Vec<&str> = USE_KINDS.iter().map(|(w, _)| *w).collect();
    allowed.push("machines");
    allowed.push("wake");
    let Some(f) = Fields::of(FILE, node, "provision", &allowed, problems) else {
        return out;
    };
    for (word, kind) in USE_KINDS {
        if let Some(t) = treatment(&f, f.get(word), word, problems) {
            out.uses.insert(*kind, t);
        }
    }
    for n in f.strs("wake", problems) {
        let word = n.as_str().unwrap_or_default();
        match USE_KINDS.iter().find(|(w, _)| *w == word) {
            Some((_, kind)) => {
                out.wake.insert(*kind);
            }
            None => problems.push(f.problem(
                n,
                "wake",
                format!("{word:?} is no use (cluster, discover, development, games or device)"),
            )),
        }
    }
    if let Some(n) = f.get("wake") {
        for kind in out
            .wake
            .iter()
            .filter(|k| out.uses.get(k) == Some(&Treatment::None))
        {
            let word = super::kind_name(*kind as i32);
            problems.push(f.problem(
                n,
                "wake",
                format!("{word} machines are left alone (provision: {word}: none), so waking them does nothing"),
            ));
        }
    }
    let Some(list) = f.get("machines") else {
        return out;
    };
    let Value::Map(entries) = &list.value else {
        problems.push(f.problem(
            list,
            "machines",
            "expected a mapping of machine names to none, readiness or an action",
        ));
        return out;
    };
    if entries.len() > MAX_MACHINES {
        problems.push(f.problem(
            list,
            "machines",
            format!("more than {MAX_MACHINES} overrides"),
        ));
        return out;
    }
    for (k, v) in entries {
        let name = k.as_str().unwrap_or_default();
        let field = format!("machines.{name}");
        if let Some(t) = treatment(&f, Some(v), &field, problems) {
            out.machines.insert(name.to_string(), t);
            out.written_at.insert(name.to_string(), k.pos);
        }
    }
    out
}

fn treatment(
    f: &Fields,
    node: Option<&yaml::Node>,
    field: &str,
    problems: &mut Vec<Problem>,
) -> Option<Treatment> {
    let node = node?;
    let Some(text) = node.as_str() else {
        problems.push(f.problem(
            node,
            field,
            format!(
                "expected none, readiness or an action name, found {}",
                node.kind()
            ),
        ));
        return None;
    };
    Treatment::parse(text)
        .map_err(|why| problems.push(f.problem(node, field, why)))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{machine::Use, DeviceUse, GamesUse};

    fn policy(text: &str) -> (Policy, Vec<Problem>) {
        let mut problems = Vec::new();
        let root = yaml::parse(text).unwrap().unwrap();
        let p = parse(&root, &mut problems);
        (p, problems)
    }

    #[test]
    fn a_use_can_be_woken_and_its_words_travel_to_the_runner() {
        let (p, problems) = policy("games: pc-setup\nwake: [games, development]\n");
        assert!(problems.is_empty(), "{problems:?}");
        let pc = Machine {
            name: "pc".into(),
            r#use: Some(Use::Games(GamesUse::default())),
            ..Default::default()
        };
        let printer = Machine {
            name: "printer".into(),
            r#use: Some(Use::Device(DeviceUse::default())),
            ..Default::default()
        };
        assert!(p.wakes(&pc) && !p.wakes(&printer));
        assert!(p.wakes(&Machine {
            wake: true,
            ..printer.clone()
        }));
        let words = ["games".to_string(), "nonsense".to_string()];
        let back = from_words(&Default::default(), &Default::default(), &words);
        assert!(back.wakes(&pc) && back.wake.len() == 1);
        let (_, problems) = policy("wake: [gmaes]\n");
        assert!(
            problems[0].to_string().contains("\"gmaes\" is no use"),
            "{problems:?}"
        );
        let (_, problems) = policy("wake: [games]\n");
        assert!(
            problems[0].to_string().contains("waking them does nothing"),
            "{problems:?}"
        );
    }

    #[test]
    fn uses_and_machines_choose_what_the_runner_does() {
        let (p, problems) =
            policy("device: none\ngames: pc-setup\nmachines: { printer: readiness }\n");
        assert!(problems.is_empty(), "{problems:?}");
        let printer = Machine {
            name: "printer".into(),
            r#use: Some(Use::Device(DeviceUse::default())),
            ..Default::default()
        };
        let pc = Machine {
            name: "pc".into(),
            r#use: Some(Use::Games(GamesUse {})),
            ..Default::default()
        };
        assert_eq!(p.of(&printer), &Treatment::Readiness);
        assert_eq!(p.of(&pc), &Treatment::Action("pc-setup".into()));
        assert_eq!(
            Policy::default().of(&pc),
            &Treatment::None,
            "a games PC is left alone by default"
        );
    }

    #[test]
    fn bad_words_name_their_line() {
        let (_, problems) = policy("cluster: Ansible Site\nmachines: { x: [1] }\nfoo: none\n");
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(problems.len(), 3, "{text:?}");
        assert!(
            text.iter().any(|t| t.starts_with("mdb.yaml:1:10: provision.cluster: \"Ansible Site\" is not")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|t| t.contains("provision.machines.x")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.contains("provision.foo: unknown field")),
            "{text:?}"
        );
    }
}

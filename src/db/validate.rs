//! `validate`: all files of one revision → a [`Snapshot`] or every problem.
//! `mdb validate`, the sync task and the tests all call this one function.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use super::{
    load::{self, Entry},
    mdb_yaml::{self, MdbYaml},
    problem::{Problem, Report},
    snapshot::Snapshot,
    yaml::Pos,
    SourceFile,
};
use crate::proto::{machine::Use, Provisioner, Role};

pub fn validate(files: &[SourceFile], revision: &str) -> Result<Snapshot, Report> {
    validate_with(files, Vec::new(), revision)
}

/// [`validate`] with problems found before parsing (files refused by
/// [`super::Intake`]), so that they are reported together with the rest.
pub fn validate_with(
    files: &[SourceFile],
    refused: Vec<Problem>,
    revision: &str,
) -> Result<Snapshot, Report> {
    let mut problems = refused;
    let mut settings = MdbYaml::default();
    let mut entries: Vec<Entry> = Vec::new();
    let mut machine_files = Vec::new();
    for f in files {
        if f.path == mdb_yaml::FILE {
            settings = mdb_yaml::parse(&f.text, &mut problems);
        } else {
            machine_files.push(f);
        }
    }
    for (e, p) in load_parallel(&machine_files) {
        entries.extend(e);
        problems.extend(p);
    }
    duplicates(&entries, &mut problems);
    clusters(&entries, &mut problems);
    provisioners(&entries, &mut problems);
    addresses(&entries, &settings, &mut problems);
    let names: std::collections::HashSet<&str> =
        entries.iter().map(|e| e.machine.name.as_str()).collect();
    settings
        .provision
        .unknown_machines(&|n| names.contains(n), &mut problems);
    joins(&entries, &settings, &mut problems);
    if !problems.is_empty() {
        problems.sort_by(|a, b| (&a.file, a.line, a.col).cmp(&(&b.file, b.line, b.col)));
        problems.dedup();
        return Err(Report(problems));
    }
    Ok(Snapshot::new(
        revision.to_string(),
        entries.into_iter().map(|e| e.machine).collect(),
        settings,
    ))
}

/// The revision `base` makes with `path` added (or replaced by `text`),
/// validated: what an enrolment would make of the database.
pub fn with_file(base: &[SourceFile], path: &str, text: &str) -> Result<Snapshot, Report> {
    let mut files: Vec<SourceFile> = base.iter().filter(|f| f.path != path).cloned().collect();
    files.push(SourceFile {
        path: path.to_string(),
        text: text.to_string(),
    });
    files.sort_by(|a, b| a.path.cmp(&b.path));
    validate(&files, "proposed")
}

/// Parses machine files on every core (in file order), since parsing is
/// most of a load; small databases stay on one thread.
fn load_parallel(files: &[&SourceFile]) -> Vec<(Vec<Entry>, Vec<Problem>)> {
    let parse = |batch: &[&SourceFile]| {
        batch
            .iter()
            .map(|f| {
                let mut problems = Vec::new();
                let entries = load::machines_file(&f.path, &f.text, &mut problems);
                (entries, problems)
            })
            .collect::<Vec<_>>()
    };
    let bytes: usize = files.iter().map(|f| f.text.len()).sum();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(files.len())
        .min(8);
    if threads <= 1 || bytes < (1 << 20) {
        return parse(files);
    }
    let per = files.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(per)
            .map(|batch| scope.spawn(move || parse(batch)))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// A rule that joins new devices to a cluster must name one that exists
/// (one with a control-plane node), or every entry it proposes would fail.
fn joins(entries: &[Entry], settings: &MdbYaml, problems: &mut Vec<Problem>) {
    let with_control_plane: std::collections::HashSet<&str> = entries
        .iter()
        .filter_map(|e| match &e.machine.r#use {
            Some(Use::Cluster(c)) if c.role == Role::ControlPlane as i32 => {
                Some(c.cluster.as_str())
            }
            _ => None,
        })
        .collect();
    for (i, r) in settings.scan.rules.iter().enumerate() {
        let Some(j) = &r.join else { continue };
        if !with_control_plane.contains(j.cluster.as_str()) {
            problems.push(Problem::new(
                mdb_yaml::FILE,
                j.at,
                &format!("scan.rules[{i}].join.cluster"),
                format!(
                    "no cluster {:?} with a control-plane node in the database",
                    j.cluster
                ),
            ));
        }
    }
}

/// Each duplicated value is one problem naming every place it occurs.
fn duplicates(entries: &[Entry], problems: &mut Vec<Problem>) {
    fn report<K: std::fmt::Display + Eq + std::hash::Hash>(
        what: &str,
        places: Vec<(K, &Entry, Pos)>,
        problems: &mut Vec<Problem>,
    ) {
        let mut by: HashMap<&K, Vec<(&Entry, Pos)>> = HashMap::new();
        for (k, e, p) in &places {
            by.entry(k).or_default().push((e, *p));
        }
        for (k, list) in by {
            if list.len() < 2 {
                continue;
            }
            let (first, pos) = list[0];
            let all: Vec<String> = list
                .iter()
                .map(|(e, p)| format!("{} ({})", e.machine.name, Problem::at(&e.file, *p)))
                .collect();
            problems.push(Problem::new(
                &first.file,
                pos,
                what,
                format!(
                    "duplicate {what} {k} used by {} machines: {}",
                    list.len(),
                    all.join(", ")
                ),
            ));
        }
    }
    report(
        "name",
        entries
            .iter()
            .map(|e| (e.machine.name.clone(), e, e.pos))
            .collect(),
        problems,
    );
    report(
        "ip",
        entries
            .iter()
            .flat_map(|e| e.ip_pos.iter().map(move |(ip, p)| (*ip, e, *p)))
            .collect(),
        problems,
    );
    report(
        "mac",
        entries
            .iter()
            .filter_map(|e| e.mac.map(|(m, p)| (m, e, p)))
            .collect(),
        problems,
    );
}

fn clusters(entries: &[Entry], problems: &mut Vec<Problem>) {
    let mut by: BTreeMap<&str, (bool, &Entry)> = BTreeMap::new();
    for e in entries {
        if let Some(Use::Cluster(c)) = &e.machine.r#use {
            let cp = c.role == Role::ControlPlane as i32;
            by.entry(&c.cluster)
                .and_modify(|v| v.0 |= cp)
                .or_insert((cp, e));
        }
    }
    for (name, (has_cp, first)) in by {
        if !has_cp {
            problems.push(Problem::new(
                &first.file,
                first.pos,
                "use.cluster",
                format!(
                    "cluster {name:?} has no control-plane node (first node: {})",
                    first.machine.name
                ),
            ));
        }
    }
}

fn provisioners(entries: &[Entry], problems: &mut Vec<Problem>) {
    let primaries: Vec<&Entry> = entries
        .iter()
        .filter(|e| {
            e.machine
                .features
                .as_ref()
                .is_some_and(|f| f.provisioner == Provisioner::Primary as i32)
        })
        .collect();
    if primaries.len() > 1 {
        let all: Vec<String> = primaries
            .iter()
            .map(|e| format!("{} ({})", e.machine.name, Problem::at(&e.file, e.pos)))
            .collect();
        problems.push(Problem::new(
            &primaries[1].file,
            primaries[1].pos,
            "features.provisioner",
            format!("more than one primary provisioner: {}", all.join(", ")),
        ));
    }
}

/// With subnets declared, every fixed address must be in one of them and
/// outside its DHCP pools.
fn addresses(entries: &[Entry], settings: &MdbYaml, problems: &mut Vec<Problem>) {
    if settings.subnets.is_empty() {
        return;
    }
    for e in entries {
        for (ip, pos) in &e.ip_pos {
            let ip: IpAddr = *ip;
            match settings.subnets.iter().find(|s| s.contains(ip)) {
                None => problems.push(Problem::new(
                    &e.file,
                    *pos,
                    "ip",
                    format!("{ip} is outside every subnet declared in mdb.yaml"),
                )),
                Some(s) => {
                    if let Some(pool) = s.dynamic.iter().find(|r| r.contains(ip)) {
                        problems.push(Problem::new(
                            &e.file,
                            *pos,
                            "ip",
                            format!(
                                "{ip} is inside the dynamic (DHCP) pool {pool} of subnet {}",
                                s.name
                            ),
                        ));
                    }
                }
            }
        }
    }
}

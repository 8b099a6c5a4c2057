//! The embedded demo database, so `mdb demo` works on a fresh machine with
//! no GitHub account: the example files are committed to a local git
//! repository that the server then syncs from like any remote.

use std::{collections::BTreeMap, path::Path};

use git2::{Oid, Repository, Signature};

pub const FILES: &[(&str, &str)] = &[
    ("mdb.yaml", include_str!("../examples/demo-db/mdb.yaml")),
    (
        "machines/clusters.yaml",
        include_str!("../examples/demo-db/machines/clusters.yaml"),
    ),
    (
        "machines/desk.yaml",
        include_str!("../examples/demo-db/machines/desk.yaml"),
    ),
];

/// The demo files as `SourceFile`s, for code that needs no git.
pub fn source_files() -> Vec<crate::db::SourceFile> {
    FILES
        .iter()
        .map(|(p, t)| crate::db::SourceFile {
            path: p.to_string(),
            text: t.to_string(),
        })
        .collect()
}

/// Commits `files` (the whole tree) on `branch`, on top of `parent` or of
/// nothing. Works on bare repositories too, which is how tests "push".
pub fn commit_files(
    repo: &Repository,
    branch: &str,
    files: &BTreeMap<String, String>,
    parent: Option<Oid>,
    message: &str,
) -> Result<Oid, git2::Error> {
    let tree = write_tree(repo, files, "")?;
    let tree = repo.find_tree(tree)?;
    let sig = Signature::now("mdb", "mdb@localhost")?;
    let parents = match parent {
        Some(p) => vec![repo.find_commit(p)?],
        None => Vec::new(),
    };
    let parent_refs: Vec<&git2::Commit> = parents.iter().collect();
    let oid = repo.commit(None, &sig, &sig, message, &tree, &parent_refs)?;
    repo.reference(&format!("refs/heads/{branch}"), oid, true, message)?;
    Ok(oid)
}

/// Builds nested trees from `dir/file` paths.
fn write_tree(
    repo: &Repository,
    files: &BTreeMap<String, String>,
    prefix: &str,
) -> Result<Oid, git2::Error> {
    let mut builder = repo.treebuilder(None)?;
    let mut subdirs: BTreeMap<&str, ()> = BTreeMap::new();
    for (path, text) in files.range(prefix.to_string()..) {
        let Some(rest) = path.strip_prefix(prefix) else {
            break;
        };
        match rest.split_once('/') {
            None => {
                let blob = repo.blob(text.as_bytes())?;
                builder.insert(rest, blob, 0o100644)?;
            }
            Some((dir, _)) => {
                subdirs.insert(dir, ());
            }
        }
    }
    for dir in subdirs.keys() {
        let sub = write_tree(repo, files, &format!("{prefix}{dir}/"))?;
        builder.insert(dir, sub, 0o040000)?;
    }
    builder.write()
}

/// Creates a bare repository at `dir` holding the demo database on `main`.
pub fn create_repo(dir: &Path) -> Result<Oid, git2::Error> {
    let repo = Repository::init_bare(dir)?;
    let files = FILES
        .iter()
        .map(|(p, t)| (p.to_string(), t.to_string()))
        .collect();
    commit_files(&repo, "main", &files, None, "demo database")
}

#[cfg(test)]
mod tests {
    #[test]
    fn demo_database_is_valid() {
        let snap = crate::db::validate(&super::source_files(), "demo").unwrap();
        assert_eq!(snap.machines.len(), 11);
        assert_eq!(snap.cluster_names().collect::<Vec<_>>(), ["alpha", "beta"]);
    }
}

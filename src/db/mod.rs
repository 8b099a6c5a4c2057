//! The machine database: YAML files in a git repository, validated into an
//! immutable [`Snapshot`] that readers share through the [`Store`].
//!
//! Nothing here touches git or the network; `sync` feeds files in.

pub mod fields;
pub mod load;
pub mod problem;
pub mod settings;
pub mod snapshot;
pub mod store;
pub mod validate;
pub mod yaml;

use std::path::Path;

pub use problem::{Problem, Report};
pub use settings::Settings;
pub use snapshot::Snapshot;
pub use store::Store;
pub use validate::validate;

/// One file of the DB repository, by its path inside the repository.
#[derive(Clone, Debug)]
pub struct SourceFile {
    pub path: String,
    pub text: String,
}

/// Whether a repository path is part of the database: `mdb.yaml` and
/// `machines/**/*.yaml`. Everything else (README, CI config) is ignored.
pub fn is_db_file(path: &str) -> bool {
    path == settings::FILE
        || (path.starts_with("machines/") && (path.ends_with(".yaml") || path.ends_with(".yml")))
}

/// Reads the database files of a checkout on disk, in path order.
pub fn read_dir(root: &Path) -> std::io::Result<Vec<SourceFile>> {
    let mut out = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_name() == ".git" {
                continue;
            }
            if entry.file_type()?.is_dir() {
                pending.push(path);
                continue;
            }
            let Ok(rel) = path.strip_prefix(root) else {
                continue;
            };
            let rel = rel.to_string_lossy().replace('\\', "/");
            if is_db_file(&rel) {
                out.push(SourceFile {
                    text: std::fs::read_to_string(&path)?,
                    path: rel,
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// The lower-case word for a use, as labels, metrics and groups spell it.
pub fn use_name(u: Option<&crate::proto::machine::Use>) -> &'static str {
    match use_kind(u) {
        crate::proto::UseKind::Unspecified => "unspecified",
        k => kind_name(k as i32),
    }
}

/// The word for a `UseKind` number; empty for unspecified or unknown.
pub fn kind_name(kind: i32) -> &'static str {
    settings::USE_KINDS
        .iter()
        .find(|(_, k)| *k as i32 == kind)
        .map_or("", |(name, _)| name)
}

pub fn use_kind(u: Option<&crate::proto::machine::Use>) -> crate::proto::UseKind {
    use crate::proto::{machine::Use, UseKind};
    match u {
        Some(Use::Cluster(_)) => UseKind::Cluster,
        Some(Use::Discover(_)) => UseKind::Discover,
        Some(Use::Development(_)) => UseKind::Development,
        Some(Use::Games(_)) => UseKind::Games,
        Some(Use::Device(_)) => UseKind::Device,
        None => UseKind::Unspecified,
    }
}

pub const USE_NAMES: &[&str] = &["cluster", "discover", "development", "games", "device"];

//! The machine database: YAML files in a git repository, validated into an
//! immutable [`Snapshot`] that readers share through the [`Store`].
//!
//! Nothing here touches git or the network; `sync` feeds files in.

pub mod emit;
pub mod fields;
pub mod load;
pub mod mdb_yaml;
pub mod policy;
pub mod problem;
pub mod received;
pub mod rules;
pub mod snapshot;
pub mod store;
pub mod validate;
pub mod words;
pub mod yaml;

use std::path::Path;

pub use mdb_yaml::MdbYaml;
pub use problem::{Problem, Report};
pub use snapshot::Snapshot;
pub use store::Store;
pub use validate::{validate, validate_with};
pub use words::{kind_name, use_kind, use_name, USE_NAMES};

/// One file of the DB repository, by its path inside the repository.
#[derive(Clone, Debug)]
pub struct SourceFile {
    pub path: String,
    pub text: String,
}

/// Whether a repository path is inside the machines folder (or is it), where
/// no symbolic link is allowed, to a file or to a folder.
pub fn in_machines(path: &str) -> bool {
    path == "machines" || path.starts_with("machines/")
}

/// Whether a repository path is part of the database: `mdb.yaml` and
/// `machines/**/*.yaml`. Everything else (README, CI config) is ignored.
pub fn is_db_file(path: &str) -> bool {
    path == mdb_yaml::FILE
        || (path.starts_with("machines/") && (path.ends_with(".yaml") || path.ends_with(".yml")))
}

/// Bounds on what one revision may make mdb read, so that a commit cannot
/// exhaust the memory of every replica that syncs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest single database file, in bytes.
    pub file_bytes: u64,
    /// Largest total of all database files of one revision, in bytes.
    pub repo_bytes: u64,
}

pub const DEFAULT_MAX_FILE_BYTES: u64 = 16 << 20;
pub const DEFAULT_MAX_REPO_BYTES: u64 = 128 << 20;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            file_bytes: DEFAULT_MAX_FILE_BYTES,
            repo_bytes: DEFAULT_MAX_REPO_BYTES,
        }
    }
}

/// The database files of one revision as read so far, and a problem for
/// every file refused before parsing (too large, not text, a link). A
/// checkout on disk and a commit in git are read through the same rules,
/// so `mdb validate` and the server agree.
#[derive(Debug, Default)]
pub struct Intake {
    pub files: Vec<SourceFile>,
    pub refused: Vec<Problem>,
    limits: Limits,
    bytes: u64,
}

impl Intake {
    pub fn new(limits: Limits) -> Intake {
        Intake {
            limits,
            ..Intake::default()
        }
    }

    fn refuse(&mut self, path: &str, message: String) {
        self.refused.push(Problem::new(
            path,
            yaml::Pos { line: 1, col: 1 },
            "",
            message,
        ));
    }

    /// Whether a file of `size` bytes may be read; refuses it otherwise.
    pub fn admit(&mut self, path: &str, size: u64) -> bool {
        if size > self.limits.file_bytes {
            self.refuse(
                path,
                format!(
                    "file is {size} bytes, over the limit of {} (max_file_size)",
                    self.limits.file_bytes
                ),
            );
            return false;
        }
        if self.bytes.saturating_add(size) > self.limits.repo_bytes {
            self.refuse(
                path,
                format!(
                    "the database files reach {} bytes here, over the limit of {} (max_repo_size)",
                    self.bytes.saturating_add(size),
                    self.limits.repo_bytes
                ),
            );
            return false;
        }
        self.bytes += size;
        true
    }

    /// Takes an admitted file's content; binary content is refused.
    pub fn add(&mut self, path: String, bytes: Vec<u8>) {
        if bytes.contains(&0) {
            self.refuse(
                &path,
                "file is binary (it holds NUL bytes), not YAML".into(),
            );
            return;
        }
        match String::from_utf8(bytes) {
            Ok(text) => self.files.push(SourceFile { path, text }),
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                self.refuse(
                    &path,
                    format!("file is not UTF-8 text (bad byte at offset {at})"),
                );
            }
        }
    }

    /// A symbolic link is never followed: in a checkout it could point out
    /// of the repository, and in git it is only a path.
    pub fn refuse_link(&mut self, path: &str) {
        self.refuse(
            path,
            "is a symbolic link; links are not followed, commit the file itself".into(),
        );
    }

    /// Validates what was read; refused files are problems like any other.
    pub fn validate(mut self, revision: &str) -> Result<Snapshot, Report> {
        self.files.sort_by(|a, b| a.path.cmp(&b.path));
        validate::validate_with(&self.files, self.refused, revision)
    }
}

/// Reads the database files of a checkout on disk, within `limits`.
pub fn read_dir(root: &Path, limits: Limits) -> std::io::Result<Intake> {
    let mut intake = Intake::new(limits);
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let mut entries = std::fs::read_dir(&dir)?.collect::<Result<Vec<_>, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            if entry.file_name() == ".git" {
                continue;
            }
            // file_type() does not follow links.
            let kind = entry.file_type()?;
            let Ok(rel) = path.strip_prefix(root) else {
                continue;
            };
            let rel = rel.to_string_lossy().replace('\\', "/");
            if kind.is_symlink() {
                if is_db_file(&rel) || in_machines(&rel) {
                    intake.refuse_link(&rel);
                }
            } else if kind.is_dir() {
                pending.push(path);
            } else if !is_db_file(&rel) {
                continue;
            } else if intake.admit(&rel, entry.metadata()?.len()) {
                intake.add(rel, std::fs::read(&path)?);
            }
        }
    }
    Ok(intake)
}

//! The runner's state file: what was applied and the last revision it
//! finished, written atomically (temporary file, fsync, rename) after every
//! target, so a restart neither skips work nor repeats finished work.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use super::plan::Applied;

/// Largest state file read back; a home lab's state is kilobytes.
const MAX_STATE_BYTES: u64 = 16 << 20;

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct State {
    /// Format of this file.
    pub version: u32,
    /// The last revision whose work all finished.
    pub revision: String,
    pub applied: Applied,
}

pub const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("state file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "state file {path} is not a state file mdb wrote: {message}; move it aside to start over"
    )]
    Corrupt { path: String, message: String },
    #[error("state file {path} has format {found}, newer than this mdb's {VERSION}")]
    Newer { path: String, found: u32 },
}

pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn new(path: PathBuf) -> StateFile {
        StateFile { path }
    }

    fn shown(&self) -> String {
        self.path.display().to_string()
    }

    /// The saved state; an absent file is a fresh start.
    pub fn load(&self) -> Result<State, Error> {
        let io = |source| Error::Io {
            path: self.shown(),
            source,
        };
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(State {
                    version: VERSION,
                    ..State::default()
                })
            }
            Err(e) => return Err(io(e)),
        };
        if meta.len() > MAX_STATE_BYTES {
            return Err(Error::Corrupt {
                path: self.shown(),
                message: format!("{} bytes is more than a state file holds", meta.len()),
            });
        }
        let text = std::fs::read_to_string(&self.path).map_err(io)?;
        let state: State = serde_json::from_str(&text).map_err(|e| Error::Corrupt {
            path: self.shown(),
            message: e.to_string(),
        })?;
        if state.version > VERSION {
            return Err(Error::Newer {
                path: self.shown(),
                found: state.version,
            });
        }
        Ok(state)
    }

    /// Replaces the file with `state`, atomically.
    pub fn save(&self, state: &State) -> Result<(), Error> {
        let io = |source| Error::Io {
            path: self.shown(),
            source,
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        let tmp = self.path.with_extension("tmp");
        let text = serde_json::to_string_pretty(state).map_err(|e| Error::Corrupt {
            path: self.shown(),
            message: e.to_string(),
        })?;
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_survives_a_round_trip_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::new(dir.path().join("state.json"));
        assert_eq!(f.load().unwrap().revision, "");
        let mut s = f.load().unwrap();
        s.revision = "abc".into();
        s.applied.machines.insert("w1".into(), "sig".into());
        f.save(&s).unwrap();
        assert_eq!(f.load().unwrap(), s);
        std::fs::write(dir.path().join("state.json"), "{not json").unwrap();
        assert!(matches!(f.load(), Err(Error::Corrupt { .. })));
        std::fs::write(
            dir.path().join("state.json"),
            r#"{"version": 99, "revision": "", "applied": {"machines": {}, "clusters": {}}}"#,
        )
        .unwrap();
        assert!(matches!(f.load(), Err(Error::Newer { found: 99, .. })));
    }
}

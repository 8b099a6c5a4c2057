//! A credential that cannot be printed by accident. It owns only the type;
//! where a token comes from (file or environment) is the config's business.

use std::{fmt, path::Path, sync::Arc};

/// A credential. Shown as `***` by Debug and Display, so it cannot leak
/// into logs or errors by accident.
#[derive(Clone)]
pub struct Secret(Arc<str>);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Most often a Secret that was not created, or not mounted.
    #[error("token file {path} does not exist (create its Secret, or leave token_file out for a public repository)")]
    Missing { path: String },
    #[error("token file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("token file {path} is empty")]
    Empty { path: String },
}

impl Secret {
    pub fn new(s: impl Into<Arc<str>>) -> Secret {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Reads a token file; surrounding white space is not part of the token.
    pub fn from_file(path: &Path) -> Result<Secret, Error> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => Error::Missing {
                path: shown.clone(),
            },
            _ => Error::Read {
                path: shown.clone(),
                source,
            },
        })?;
        let t = text.trim();
        if t.is_empty() {
            return Err(Error::Empty { path: shown });
        }
        Ok(Secret::new(t))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

//! One setting as the layers give it (flag > environment > file), and the
//! one-line error that names a bad one. Below every subsystem, so each
//! keeps its own settings beside it (`github::settings`,
//! `provision::settings`, `discover::settings`, `sync::settings`) and
//! `config` only layers them.

use std::{collections::HashMap, time::Duration};

use crate::units::{parse_duration, parse_size};

/// Below Kubernetes' default 30 s termination grace period.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// A configuration problem, as one line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Error(pub String);

/// The environment as a map, so tests pass one instead of setting variables.
pub type Env = HashMap<String, String>;

/// flag > environment > file; an empty value counts as unset.
pub fn pick(flag: &Option<String>, env: &Env, var: &str, file: &Option<String>) -> Option<String> {
    flag.clone()
        .or_else(|| env.get(var).cloned())
        .or_else(|| file.clone())
        .filter(|s| !s.trim().is_empty())
}

/// A size setting: `default` when unset, an error naming it when bad.
pub fn size(name: &str, v: Option<String>, default: u64) -> Result<u64, Error> {
    match v {
        None => Ok(default),
        Some(s) => parse_size(&s)
            .filter(|n| *n > 0)
            .ok_or_else(|| Error(format!("{name}: {s:?} is not a size like 16MiB or 512KiB"))),
    }
}

/// A duration setting: `default` when unset, an error naming it when bad.
pub fn duration(name: &str, v: Option<String>, default: Duration) -> Result<Duration, Error> {
    match v {
        None => Ok(default),
        Some(s) => parse_duration(&s).filter(|d| !d.is_zero()).ok_or_else(|| {
            Error(format!(
                "{name}: {s:?} is not a duration like 90s, 5m or 1h"
            ))
        }),
    }
}

//! `[db]` and its flags: where the database comes from (URL, branch,
//! token, checkout), its limits and its timing, resolved into a
//! [`super::Source`] and [`super::Timing`].

use std::path::PathBuf;

use serde::Deserialize;

use super::{Source, Timing};
use crate::{
    secret::Secret,
    settings::{duration, pick, size, Env, Error},
};

pub const ENV_DB_URL: &str = "MDB_DB_URL";
pub const ENV_DB_BRANCH: &str = "MDB_DB_BRANCH";
pub const ENV_DB_TOKEN: &str = "MDB_DB_TOKEN";
pub const ENV_DB_TOKEN_FILE: &str = "MDB_DB_TOKEN_FILE";
pub const ENV_CHECKOUT: &str = "MDB_CHECKOUT_DIR";
pub const ENV_POLL: &str = "MDB_POLL_INTERVAL";
pub const ENV_RESYNC: &str = "MDB_RESYNC_INTERVAL";

pub const DEFAULT_BRANCH: &str = "main";
pub const DEFAULT_CHECKOUT: &str = "/var/lib/mdb/db";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDb {
    pub url: Option<String>,
    pub branch: Option<String>,
    pub token_file: Option<PathBuf>,
    pub checkout: Option<PathBuf>,
    pub poll_interval: Option<String>,
    pub resync_interval: Option<String>,
    pub fetch_timeout: Option<String>,
    /// Largest database file, e.g. "16MiB".
    pub max_file_size: Option<String>,
    /// Largest total of a revision's database files, e.g. "128MiB".
    pub max_repo_size: Option<String>,
}

/// The flags of `mdb serve` about the database; each over the
/// environment and the file.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct DbFlags {
    /// DB repository URL (https://, file:// or a path).
    #[arg(long)]
    pub db_url: Option<String>,
    #[arg(long)]
    pub branch: Option<String>,
    /// File holding the GitHub token for the DB repository.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Where the local checkout lives.
    #[arg(long)]
    pub checkout: Option<PathBuf>,
    /// How often to ask the remote for changes, e.g. 2m.
    #[arg(long)]
    pub poll_interval: Option<String>,
    /// How often to hard-reset the checkout to the remote, e.g. 1h.
    #[arg(long)]
    pub resync_interval: Option<String>,
}

/// Refuses a URL that carries a user or password: git would store it in
/// the checkout's logs and config in clear text.
fn refuse_credentials(url: &str) -> Result<(), Error> {
    let authority = url
        .split_once("://")
        .map(|(_, rest)| rest.split('/').next().unwrap_or(""))
        .unwrap_or("");
    if authority.contains('@') {
        return Err(Error(format!(
            "db.url: {} carries credentials; put the token in a file and name it with [db] token_file or {ENV_DB_TOKEN_FILE} (or set {ENV_DB_TOKEN})",
            super::redact_url(url)
        )));
    }
    Ok(())
}

/// Where the database comes from, with its token and limits.
pub fn source(db: &RawDb, env: &Env, flags: &DbFlags) -> Result<Source, Error> {
    let url = pick(&flags.db_url, env, ENV_DB_URL, &db.url).ok_or_else(|| {
        Error(format!(
            "no DB repository: set [db] url, {ENV_DB_URL} or --db-url"
        ))
    })?;
    refuse_credentials(&url)?;
    let token_file = flags
        .token_file
        .clone()
        .or_else(|| env.get(ENV_DB_TOKEN_FILE).map(PathBuf::from))
        .or(db.token_file.clone());
    let token = match token_file {
        // An empty name says "no token" over a layer below: a public
        // repository under a shared configuration.
        Some(p) if p.as_os_str().is_empty() => None,
        Some(p) => Some(Secret::from_file(&p).map_err(|e| Error(e.to_string()))?),
        None => env
            .get(ENV_DB_TOKEN)
            .filter(|t| !t.trim().is_empty())
            .map(|t| Secret::new(t.trim())),
    };
    Ok(Source {
        url,
        branch: pick(&flags.branch, env, ENV_DB_BRANCH, &db.branch)
            .unwrap_or_else(|| DEFAULT_BRANCH.into()),
        token,
        checkout: flags
            .checkout
            .clone()
            .or_else(|| env.get(ENV_CHECKOUT).map(PathBuf::from))
            .or(db.checkout.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CHECKOUT)),
        fetch_timeout: duration(
            "fetch_timeout",
            db.fetch_timeout.clone(),
            super::DEFAULT_FETCH_TIMEOUT,
        )?,
        limits: crate::db::Limits {
            file_bytes: size(
                "db.max_file_size",
                db.max_file_size.clone(),
                crate::db::DEFAULT_MAX_FILE_BYTES,
            )?,
            repo_bytes: size(
                "db.max_repo_size",
                db.max_repo_size.clone(),
                crate::db::DEFAULT_MAX_REPO_BYTES,
            )?,
        },
    })
}

/// How often the database is fetched and hard-reset.
pub fn timing(db: &RawDb, env: &Env, flags: &DbFlags) -> Result<Timing, Error> {
    Ok(Timing {
        poll: duration(
            "poll_interval",
            pick(&flags.poll_interval, env, ENV_POLL, &db.poll_interval),
            super::DEFAULT_POLL,
        )?,
        resync: duration(
            "resync_interval",
            pick(&flags.resync_interval, env, ENV_RESYNC, &db.resync_interval),
            super::DEFAULT_RESYNC,
        )?,
    })
}

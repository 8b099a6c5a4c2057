//! `[github]`: where issues and enrolment pull requests go, and their
//! bounds, resolved from the file and the environment into a
//! [`crate::github::Config`].

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

use crate::{
    secret::Secret,
    settings::{duration, Env, Error},
    sync,
};

pub const ENV_GITHUB_TOKEN: &str = "MDB_GITHUB_TOKEN";
pub const ENV_GITHUB_TOKEN_FILE: &str = "MDB_GITHUB_TOKEN_FILE";

/// Where new and unprovisionable hosts are filed as issues.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGithub {
    /// owner/name; by default the DB repository's, when that is on github.com.
    #[serde(default)]
    pub repo: String,
    pub token_file: Option<PathBuf>,
    pub api_url: Option<String>,
    pub labels: Option<Vec<String>>,
    pub assignee: Option<String>,
    pub max_new_per_sweep: Option<usize>,
    /// mdb's issues open at once at most.
    pub max_open_issues: Option<usize>,
    /// mdb's enrolment pull requests open at once at most.
    pub max_open_pulls: Option<usize>,
    /// Addresses open enrolment pull requests hold at once at most.
    pub max_reserved: Option<usize>,
    pub write_gap: Option<String>,
    pub retry_base: Option<String>,
    pub max_wait: Option<String>,
    pub timeout: Option<String>,
    /// "pull-request" (the default) or "issue-only".
    pub enrol: Option<String>,
    /// Labels of enrolment pull requests.
    pub pull_request_labels: Option<Vec<String>>,
    /// People asked to review enrolment pull requests.
    pub reviewers: Option<Vec<String>>,
    /// Enrol devices whose MAC is locally administered (random) too.
    pub enrol_random_macs: Option<bool>,
}

/// `owner/name` of a github.com repository URL (`.git` optional).
fn github_repo_of(url: &str) -> Option<String> {
    let path = url.strip_prefix("https://github.com/")?;
    let path = path.trim_end_matches('/').trim_end_matches(".git");
    let mut parts = path.split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(owner), Some(name), None) if !owner.is_empty() && !name.is_empty() => {
            Some(format!("{owner}/{name}"))
        }
        _ => None,
    }
}

pub fn resolve(
    g: &RawGithub,
    env: &Env,
    source: Option<&sync::Source>,
) -> Result<crate::github::Config, Error> {
    use crate::github as gh;
    let repo = match (g.repo.is_empty(), source) {
        (true, Some(s)) => github_repo_of(&s.url).ok_or_else(|| {
            Error(format!(
                "github.repo: not given, and db.url {:?} is not a github.com repository",
                s.url
            ))
        })?,
        _ => g.repo.clone(),
    };
    if repo.split('/').filter(|p| !p.is_empty()).count() != 2 {
        return Err(Error(format!("github.repo: {repo:?} is not owner/name")));
    }
    let token_file = env
        .get(ENV_GITHUB_TOKEN_FILE)
        .map(PathBuf::from)
        .or(g.token_file.clone());
    let token = match token_file {
        Some(p) => Secret::from_file(&p).map_err(|e| Error(e.to_string()))?,
        None => env
            .get(ENV_GITHUB_TOKEN)
            .filter(|t| !t.trim().is_empty())
            .map(|t| Secret::new(t.trim()))
            .ok_or_else(|| Error(format!("github: no token; set github.token_file, {ENV_GITHUB_TOKEN_FILE} or {ENV_GITHUB_TOKEN}")))?,
    };
    let api_url = g
        .api_url
        .clone()
        .unwrap_or_else(|| gh::DEFAULT_API_URL.into());
    // The same parse octocrab's base_uri makes, so the client cannot fail
    // on it later, after the ports are bound.
    let parsed = api_url.parse::<http::Uri>().ok();
    if !(api_url.starts_with("https://") || api_url.starts_with("http://"))
        || parsed.and_then(|u| u.host().map(str::to_owned)).is_none()
    {
        return Err(Error(format!(
            "github.api_url: {api_url:?} is not an http(s) URL"
        )));
    }
    let cfg = gh::Config {
        repo,
        token,
        api_url,
        labels: g
            .labels
            .clone()
            .unwrap_or_else(|| gh::DEFAULT_LABELS.iter().map(|s| s.to_string()).collect()),
        assignee: g.assignee.clone(),
        caps: caps(g)?,
        write_gap: duration(
            "github.write_gap",
            g.write_gap.clone(),
            gh::DEFAULT_WRITE_GAP,
        )?,
        retry_base: duration(
            "github.retry_base",
            g.retry_base.clone(),
            gh::DEFAULT_RETRY_BASE,
        )?,
        max_wait: duration("github.max_wait", g.max_wait.clone(), gh::DEFAULT_MAX_WAIT)?,
        timeout: duration("github.timeout", g.timeout.clone(), Duration::from_secs(30))?,
        enrol: match source {
            Some(s) => resolve_enrol(g, s)?,
            None => None,
        },
    };
    Ok(cfg)
}

/// The bounds of `[github]`; each at least 1 (0 would silently file nothing).
fn caps(g: &RawGithub) -> Result<crate::github::Caps, Error> {
    use crate::github as gh;
    let cap = |name: &str, v: Option<usize>, default: usize| {
        match v {
        Some(0) => Err(Error(format!(
            "github.{name}: must be at least 1 (use enrol = \"issue-only\" or leave [github] out to file less)"
        ))),
        Some(n) => Ok(n),
        None => Ok(default),
    }
    };
    Ok(gh::Caps {
        new_per_sweep: cap(
            "max_new_per_sweep",
            g.max_new_per_sweep,
            gh::DEFAULT_MAX_NEW_PER_SWEEP,
        )?,
        open_issues: cap(
            "max_open_issues",
            g.max_open_issues,
            gh::DEFAULT_MAX_OPEN_ISSUES,
        )?,
        open_pulls: cap(
            "max_open_pulls",
            g.max_open_pulls,
            gh::DEFAULT_MAX_OPEN_PULLS,
        )?,
        reserved: cap("max_reserved", g.max_reserved, gh::DEFAULT_MAX_RESERVED)?,
    })
}

/// Enrolment pull requests go to the DB repository itself, through the
/// remote sync uses, from a bare repository beside the checkout.
fn resolve_enrol(
    g: &RawGithub,
    source: &sync::Source,
) -> Result<Option<crate::github::enrol::EnrolConfig>, Error> {
    match g.enrol.as_deref().unwrap_or(ENROL_PULL_REQUEST) {
        ENROL_ISSUE_ONLY => return Ok(None),
        ENROL_PULL_REQUEST => {}
        other => {
            return Err(Error(format!(
                "github.enrol: {other:?} is not {ENROL_PULL_REQUEST:?} or {ENROL_ISSUE_ONLY:?}"
            )))
        }
    }
    let mut work_dir = source.checkout.clone().into_os_string();
    work_dir.push(".enrol");
    Ok(Some(crate::github::enrol::EnrolConfig {
        source: source.clone(),
        work_dir: PathBuf::from(work_dir),
        labels: g
            .pull_request_labels
            .clone()
            .unwrap_or_else(|| vec!["mdb".into(), "enrolment".into()]),
        reviewers: g.reviewers.clone().unwrap_or_default(),
        random_macs: g.enrol_random_macs.unwrap_or(false),
    }))
}

pub const ENROL_PULL_REQUEST: &str = "pull-request";
pub const ENROL_ISSUE_ONLY: &str = "issue-only";

//! Enrolment pull requests on GitHub's REST API: find mdb's own again by
//! the fingerprint in their body, open one (looking before sending again
//! when an answer was lost), edit, comment, and delete a merged branch.
//! All through the one request path of `http`.

use std::{collections::HashMap, net::IpAddr};

use serde_json::{json, Value};
use tracing::info;

use crate::github::{
    fingerprint::Fingerprint,
    http::{Error, Http, Method, MAX_ATTEMPTS},
    trust::{is_enrol_branch, Owner, Trailer},
    MAX_PAGES,
};

/// What mdb knows of one enrolment pull request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pull {
    pub number: u64,
    pub open: bool,
    pub merged: bool,
    /// The branch it proposes, without `refs/heads/`.
    pub head: String,
    /// The address it reserves.
    pub ip: Option<IpAddr>,
    /// The machine name it proposes.
    pub name: String,
}

fn pulls_path(repo: &str) -> String {
    format!("/repos/{repo}/pulls")
}

/// Every enrolment pull request of the repository, by fingerprint. Should
/// there be several for one fingerprint, an open one wins, then the newest.
pub async fn list(http: &mut Http, repo: &str) -> Result<HashMap<Fingerprint, Pull>, Error> {
    let owner = Owner {
        login: http.login().await?,
        repo: repo.to_string(),
    };
    let mut found: HashMap<Fingerprint, Pull> = HashMap::new();
    for page in 1..=MAX_PAGES {
        let path = format!(
            "{}?state=all&per_page=100&page={page}&sort=created&direction=asc",
            pulls_path(repo)
        );
        let v = http.request(Method::Get, &path, None, true).await?;
        let items = v.as_array().ok_or_else(|| Error::Decode {
            what: "pull request list".into(),
            message: "not a list".into(),
        })?;
        for item in items.iter().filter(|i| owner.owns_pull(i)) {
            if let Some((fp, pull)) = read(item) {
                let keep = match found.get(&fp) {
                    Some(old) => {
                        (pull.open && !old.open)
                            || (pull.open == old.open && pull.number > old.number)
                    }
                    None => true,
                };
                if keep {
                    found.insert(fp, pull);
                }
            }
        }
        if items.len() < 100 {
            break;
        }
    }
    Ok(found)
}

/// One of mdb's own pull requests as the API shows it (the caller checked
/// it is mdb's), if its trailer carries a fingerprint.
fn read(item: &Value) -> Option<(Fingerprint, Pull)> {
    let t = Trailer::read(item["body"].as_str().unwrap_or_default());
    Some((
        t.fingerprint?,
        Pull {
            number: item["number"].as_u64()?,
            open: item["state"] == "open",
            merged: !item["merged_at"].is_null() || item["merged"] == true,
            head: item["head"]["ref"].as_str().unwrap_or_default().to_string(),
            ip: t.ip.and_then(|s| s.parse().ok()),
            name: t.name.unwrap_or_default(),
        },
    ))
}

/// What a new pull request says.
pub struct Proposal<'a> {
    pub fingerprint: &'a Fingerprint,
    pub head: &'a str,
    pub base: &'a str,
    pub title: String,
    pub body: String,
}

/// Opens a pull request. A create whose answer was lost is looked for
/// (by fingerprint) before it is sent again, as is one GitHub says exists.
pub async fn create(http: &mut Http, repo: &str, p: &Proposal<'_>) -> Result<u64, Error> {
    let body =
        json!({ "title": p.title, "head": p.head, "base": p.base, "body": p.body, "draft": false });
    for attempt in 1..=MAX_ATTEMPTS {
        match http
            .request(Method::Post, &pulls_path(repo), Some(body.clone()), false)
            .await
        {
            Ok(v) => {
                return v["number"].as_u64().ok_or_else(|| Error::Decode {
                    what: "created pull request".into(),
                    message: "no number".into(),
                })
            }
            Err(e @ (Error::Transient { .. } | Error::Status { status: 422, .. })) => {
                tokio::time::sleep(http.retry_base * 2u32.pow(attempt - 1)).await;
                let existing = list(http, repo).await?;
                if let Some(pull) = existing.get(p.fingerprint).filter(|pull| pull.open) {
                    info!(pull = pull.number, fingerprint = %p.fingerprint, "pull request exists although GitHub's answer was lost");
                    return Ok(pull.number);
                }
                if matches!(e, Error::Status { .. }) || attempt == MAX_ATTEMPTS {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Err(Error::Transient {
        what: format!("POST {}", pulls_path(repo)),
        message: "gave up".into(),
    })
}

pub async fn edit(http: &mut Http, repo: &str, number: u64, fields: Value) -> Result<(), Error> {
    let path = format!("{}/{number}", pulls_path(repo));
    http.request(Method::Patch, &path, Some(fields), true)
        .await?;
    Ok(())
}

/// A comment on an issue or a pull request (they share numbers).
pub async fn comment(http: &mut Http, repo: &str, number: u64, text: &str) -> Result<(), Error> {
    let path = format!("/repos/{repo}/issues/{number}/comments");
    http.request(Method::Post, &path, Some(json!({ "body": text })), true)
        .await?;
    Ok(())
}

pub async fn add_labels(
    http: &mut Http,
    repo: &str,
    number: u64,
    labels: &[String],
) -> Result<(), Error> {
    if labels.is_empty() {
        return Ok(());
    }
    let path = format!("/repos/{repo}/issues/{number}/labels");
    http.request(Method::Post, &path, Some(json!({ "labels": labels })), true)
        .await?;
    Ok(())
}

pub async fn request_reviewers(
    http: &mut Http,
    repo: &str,
    number: u64,
    reviewers: &[String],
) -> Result<(), Error> {
    if reviewers.is_empty() {
        return Ok(());
    }
    let path = format!("{}/{number}/requested_reviewers", pulls_path(repo));
    http.request(
        Method::Post,
        &path,
        Some(json!({ "reviewers": reviewers })),
        true,
    )
    .await?;
    Ok(())
}

/// Deletes one of mdb's enrolment branches; one that is gone already is
/// no error, and any other branch is refused before a request is made.
pub async fn delete_branch(http: &mut Http, repo: &str, branch: &str) -> Result<(), Error> {
    if !is_enrol_branch(branch) {
        return Err(Error::Git(format!(
            "refusing to delete {branch:?}: not an mdb enrolment branch"
        )));
    }
    let path = format!("/repos/{repo}/git/refs/heads/{branch}");
    match http.request(Method::Delete, &path, None, true).await {
        Ok(_)
        | Err(Error::Status {
            status: 404 | 422, ..
        }) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pull_request_reads_back_from_its_body() {
        let fp: Fingerprint = "new-device:mac=dc:a6:32:00:00:60".parse().unwrap();
        let body = format!(
            "x\n{}",
            Trailer {
                fingerprint: Some(fp.clone()),
                ip: Some("198.18.10.11".into()),
                name: Some("pi-dca632-0060".into()),
                reserved: None,
            }
            .write()
        );
        let item = json!({ "number": 7, "state": "closed", "merged_at": "2026-11-26T00:00:00Z", "head": {"ref": "mdb/enrol/x"}, "body": body });
        let (got, pull) = read(&item).unwrap();
        assert_eq!(got, fp);
        assert_eq!(pull.number, 7);
        assert!(pull.merged && !pull.open);
        assert_eq!(pull.ip, Some("198.18.10.11".parse().unwrap()));
        assert_eq!(pull.name, "pi-dca632-0060");
        assert!(read(&json!({ "number": 8, "body": "a person's pull request" })).is_none());
    }
}

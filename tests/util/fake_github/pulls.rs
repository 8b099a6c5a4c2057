//! The fake's pull requests: listing, opening (a head must be a real
//! branch, one open pull request per head), editing, reviewers, the merge
//! button (a real merge in the attached bare repository) and branch
//! deletion.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use super::{
    error, issue_mut, list_query, only, strings, Issue, PullInfo, State, LOGIN, OWNER, REPO,
};

pub(super) fn pull_json(i: &Issue, base: &str) -> Value {
    let p = i.pull.clone().unwrap_or_default();
    let head_repo = if p.head_repo.is_empty() {
        format!("{OWNER}/{REPO}")
    } else {
        p.head_repo.clone()
    };
    json!({
        "id": 5000 + i.number,
        "node_id": format!("PR_{}", i.number),
        "number": i.number,
        "title": i.title,
        "body": i.body,
        "state": i.state,
        "draft": false,
        "merged": p.merged,
        "merged_at": if p.merged { json!("2026-11-26T00:00:00Z") } else { Value::Null },
        "head": {
            "ref": p.head,
            "label": format!("{}:{}", head_repo.split('/').next().unwrap_or(OWNER), p.head),
            "repo": {"full_name": head_repo, "fork": head_repo != format!("{OWNER}/{REPO}")},
        },
        "base": {
            "ref": p.base,
            "label": format!("{OWNER}:{}", p.base),
            "repo": {"full_name": format!("{OWNER}/{REPO}"), "fork": false},
        },
        "labels": i.labels.iter().map(|l| json!({"name": l})).collect::<Vec<_>>(),
        "requested_reviewers": p.reviewers.iter().map(|r| json!({"login": r})).collect::<Vec<_>>(),
        "url": format!("{base}/repos/{OWNER}/{REPO}/pulls/{}", i.number),
        "html_url": format!("https://github.com/{OWNER}/{REPO}/pull/{}", i.number),
        "user": {"login": i.author},
        "created_at": "2026-11-26T00:00:00Z",
        "updated_at": "2026-11-26T00:00:00Z",
    })
}

/// Whether `branch` exists in the attached bare repository (or none is attached).
fn branch_exists(s: &State, branch: &str) -> bool {
    match &s.git {
        None => true,
        Some(path) => git2::Repository::open_bare(path)
            .ok()
            .is_some_and(|r| r.find_reference(&format!("refs/heads/{branch}")).is_ok()),
    }
}

pub(super) fn pulls_route(
    s: &mut State,
    method: &Method,
    rest: &str,
    query: &str,
    body: &Value,
) -> (StatusCode, Value) {
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    let base = "http://fake";
    match (method.clone(), parts.as_slice()) {
        (Method::GET, []) => {
            let sorts = ["created", "updated", "popularity", "long-running"];
            let q = match list_query(query, &sorts, &["head", "base"]) {
                Ok(q) => q,
                Err(e) => return e,
            };
            let list = s
                .issues
                .iter()
                .filter(|i| i.pull.is_some() && (q.state == "all" || i.state == q.state));
            (StatusCode::OK, q.page(list, |i| pull_json(i, base)))
        }
        (Method::POST, []) => {
            if let Err(e) = only(
                body,
                &[
                    "title",
                    "head",
                    "base",
                    "body",
                    "draft",
                    "maintainer_can_modify",
                    "issue",
                    "head_repo",
                ],
            ) {
                return error(StatusCode::UNPROCESSABLE_ENTITY, &e);
            }
            let (Some(title), Some(head), Some(base_ref)) = (
                body["title"].as_str().filter(|t| !t.is_empty()),
                body["head"].as_str(),
                body["base"].as_str(),
            ) else {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Validation Failed: title, head and base are required",
                );
            };
            if !branch_exists(s, head) || !branch_exists(s, base_ref) {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Validation Failed: head or base is not a branch",
                );
            }
            // GitHub keys this by owner:branch: a fork's branch of the
            // same name is another head.
            let own_head = |p: &PullInfo| {
                p.head == head
                    && (p.head_repo.is_empty() || p.head_repo == format!("{OWNER}/{REPO}"))
            };
            if s.issues
                .iter()
                .any(|i| i.state == "open" && i.pull.as_ref().is_some_and(own_head))
            {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &format!("A pull request already exists for {OWNER}:{head}."),
                );
            }
            let issue = Issue {
                number: s.issues.len() as u64 + 1,
                title: title.to_string(),
                body: body["body"].as_str().unwrap_or_default().to_string(),
                state: "open".into(),
                labels: vec![],
                assignees: vec![],
                comments: vec![],
                pull: Some(PullInfo {
                    head: head.to_string(),
                    base: base_ref.to_string(),
                    ..Default::default()
                }),
                author: LOGIN.into(),
            };
            let v = pull_json(&issue, base);
            s.issues.push(issue);
            (StatusCode::CREATED, v)
        }
        (Method::GET, [n]) => match issue_mut(s, n).filter(|i| i.pull.is_some()) {
            Some(i) => (StatusCode::OK, pull_json(i, base)),
            None => error(StatusCode::NOT_FOUND, "Not Found"),
        },
        (Method::PATCH, [n]) => {
            if let Err(e) = only(
                body,
                &["title", "body", "state", "base", "maintainer_can_modify"],
            ) {
                return error(StatusCode::UNPROCESSABLE_ENTITY, &e);
            }
            let Some(pr) = issue_mut(s, n).filter(|i| i.pull.is_some()) else {
                return error(StatusCode::NOT_FOUND, "Not Found");
            };
            if let Some(st) = body.get("state") {
                match st.as_str() {
                    Some(v @ ("open" | "closed")) => pr.state = v.into(),
                    _ => {
                        return error(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "state must be open or closed",
                        )
                    }
                }
            }
            if let Some(t) = body["title"].as_str() {
                pr.title = t.into();
            }
            if let Some(b) = body["body"].as_str() {
                pr.body = b.into();
            }
            (StatusCode::OK, pull_json(pr, base))
        }
        (Method::PUT, [n, "merge"]) => merge(s, n, body),
        (Method::POST, [n, "requested_reviewers"]) => {
            if let Err(e) = only(body, &["reviewers", "team_reviewers"]) {
                return error(StatusCode::UNPROCESSABLE_ENTITY, &e);
            }
            let Some(reviewers) = strings(&body["reviewers"]) else {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "reviewers must be a list of strings",
                );
            };
            let Some(pr) = issue_mut(s, n).filter(|i| i.pull.is_some()) else {
                return error(StatusCode::NOT_FOUND, "Not Found");
            };
            if let Some(p) = pr.pull.as_mut() {
                p.reviewers.extend(reviewers);
            }
            (StatusCode::CREATED, pull_json(pr, base))
        }
        _ => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// `PUT /repos/O/R/pulls/N/merge`: merges the head branch into the base
/// branch of the attached bare repository (a fast-forward when the head
/// sits on the base, else a merge commit), as the merge button would.
fn merge(s: &mut State, n: &str, body: &Value) -> (StatusCode, Value) {
    if let Err(e) = only(
        body,
        &["commit_title", "commit_message", "sha", "merge_method"],
    ) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, &e);
    }
    let Some(git) = s.git.clone() else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "no repository attached");
    };
    let Some(pr) = issue_mut(s, n).filter(|i| i.pull.is_some()) else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    let p = pr.pull.clone().unwrap_or_default();
    if pr.state != "open" {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "Pull Request is not mergeable",
        );
    }
    let merged = (|| -> Result<git2::Oid, git2::Error> {
        let repo = git2::Repository::open_bare(&git)?;
        let head = repo.refname_to_id(&format!("refs/heads/{}", p.head))?;
        let base_ref = format!("refs/heads/{}", p.base);
        let base = repo.refname_to_id(&base_ref)?;
        let oid = if repo.graph_descendant_of(head, base)? {
            head
        } else {
            let (ours, theirs) = (repo.find_commit(base)?, repo.find_commit(head)?);
            let mut index = repo.merge_commits(&ours, &theirs, None)?;
            if index.has_conflicts() {
                return Err(git2::Error::from_str("merge conflict"));
            }
            let tree = repo.find_tree(index.write_tree_to(&repo)?)?;
            let sig = git2::Signature::now("GitHub", "noreply@github.com")?;
            let message = format!("Merge pull request #{n} from {OWNER}/{}", p.head);
            repo.commit(None, &sig, &sig, &message, &tree, &[&ours, &theirs])?
        };
        repo.reference(&base_ref, oid, true, "merge")?;
        Ok(oid)
    })();
    match merged {
        Ok(oid) => {
            pr.state = "closed".into();
            if let Some(p) = pr.pull.as_mut() {
                p.merged = true;
            }
            (
                StatusCode::OK,
                json!({"sha": oid.to_string(), "merged": true, "message": "Pull Request successfully merged"}),
            )
        }
        Err(e) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("Pull Request is not mergeable: {e}"),
        ),
    }
}

pub(super) fn delete_ref(s: &mut State, method: &Method, branch: &str) -> (StatusCode, Value) {
    if *method != Method::DELETE {
        return error(StatusCode::NOT_FOUND, "Not Found");
    }
    if let Some(path) = &s.git {
        let Ok(repo) = git2::Repository::open_bare(path) else {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "no repository");
        };
        let found = repo.find_reference(&format!("refs/heads/{branch}"));
        let deleted = match found {
            Ok(mut r) => r.delete().is_ok(),
            Err(_) => return error(StatusCode::UNPROCESSABLE_ENTITY, "Reference does not exist"),
        };
        if !deleted {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "cannot delete");
        }
    }
    (StatusCode::NO_CONTENT, Value::Null)
}

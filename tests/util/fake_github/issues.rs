//! The fake's issues: listing, opening, editing (state, title, body),
//! labels and comments, each held to what GitHub accepts.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use super::{error, issue_json, issue_mut, list_query, only, strings, Issue, State, LOGIN};

pub(super) fn issues_route(
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
            let issue_params = [
                "milestone",
                "assignee",
                "type",
                "creator",
                "mentioned",
                "labels",
                "since",
            ];
            let q = match list_query(query, &["created", "updated", "comments"], &issue_params) {
                Ok(q) => q,
                Err(e) => return e,
            };
            let list = s
                .issues
                .iter()
                .filter(|i| q.state == "all" || i.state == q.state);
            (StatusCode::OK, q.page(list, |i| issue_json(i, base)))
        }
        (Method::POST, []) => {
            if let Err(e) = only(
                body,
                &[
                    "title",
                    "body",
                    "assignee",
                    "milestone",
                    "labels",
                    "assignees",
                    "type",
                ],
            ) {
                return error(StatusCode::UNPROCESSABLE_ENTITY, &e);
            }
            let Some(title) = body["title"].as_str().filter(|t| !t.is_empty()) else {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Validation Failed: title is missing",
                );
            };
            let labels = if body["labels"].is_null() {
                Some(vec![])
            } else {
                strings(&body["labels"])
            };
            let assignees = if body["assignees"].is_null() {
                Some(vec![])
            } else {
                strings(&body["assignees"])
            };
            let (Some(labels), Some(assignees)) = (labels, assignees) else {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "labels and assignees must be lists of strings",
                );
            };
            let issue = Issue {
                number: s.issues.len() as u64 + 1,
                title: title.to_string(),
                body: body["body"].as_str().unwrap_or_default().to_string(),
                state: "open".into(),
                labels,
                assignees,
                comments: vec![],
                pull: None,
                author: LOGIN.into(),
            };
            let v = issue_json(&issue, base);
            s.issues.push(issue);
            (StatusCode::CREATED, v)
        }
        (Method::PATCH, [n]) => {
            if let Err(e) = only(
                body,
                &[
                    "title",
                    "body",
                    "assignee",
                    "state",
                    "state_reason",
                    "milestone",
                    "labels",
                    "assignees",
                    "type",
                ],
            ) {
                return error(StatusCode::UNPROCESSABLE_ENTITY, &e);
            }
            let Some(issue) = issue_mut(s, n) else {
                return error(StatusCode::NOT_FOUND, "Not Found");
            };
            if let Some(st) = body.get("state") {
                match st.as_str() {
                    Some(v @ ("open" | "closed")) => issue.state = v.into(),
                    _ => {
                        return error(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "state must be open or closed",
                        )
                    }
                }
            }
            if let Some(r) = body.get("state_reason") {
                if !(r.is_null()
                    || matches!(
                        r.as_str(),
                        Some("completed" | "not_planned" | "reopened" | "duplicate")
                    ))
                {
                    return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid state_reason");
                }
            }
            if let Some(t) = body["title"].as_str() {
                issue.title = t.into();
            }
            if let Some(b) = body["body"].as_str() {
                issue.body = b.into();
            }
            (StatusCode::OK, issue_json(issue, base))
        }
        (Method::POST, [n, "labels"]) => {
            if let Err(e) = only(body, &["labels"]) {
                return error(StatusCode::UNPROCESSABLE_ENTITY, &e);
            }
            let Some(labels) = strings(&body["labels"]) else {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "labels must be a list of strings",
                );
            };
            let Some(issue) = issue_mut(s, n) else {
                return error(StatusCode::NOT_FOUND, "Not Found");
            };
            for l in labels {
                if !issue.labels.contains(&l) {
                    issue.labels.push(l);
                }
            }
            let v: Vec<Value> = issue.labels.iter().map(|l| json!({"name": l})).collect();
            (StatusCode::OK, Value::Array(v))
        }
        (Method::POST, [n, "comments"]) => {
            if let Err(e) = only(body, &["body"]) {
                return error(StatusCode::UNPROCESSABLE_ENTITY, &e);
            }
            let Some(text) = body["body"].as_str() else {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Validation Failed: body is missing",
                );
            };
            let Some(issue) = issue_mut(s, n) else {
                return error(StatusCode::NOT_FOUND, "Not Found");
            };
            issue.comments.push(text.to_string());
            (
                StatusCode::CREATED,
                json!({"id": issue.comments.len(), "body": text}),
            )
        }
        _ => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

//! The comment endpoints of the fakes: GitHub issue comments and GitLab merge request notes
//! (create, edit, paginated list), over one store shared by both flavours.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{FakeComment, Inner, Shared, not_found, page_params};

pub(super) fn add_comment(i: &mut Inner, repo: &str, pull: i64, body: &str) -> u64 {
    i.next_comment_id += 1;
    let id = i.next_comment_id;
    i.comments.push(FakeComment {
        id,
        repo: repo.to_string(),
        pull,
        body: body.to_string(),
        edits: 0,
    });
    id
}

/// Replaces a comment's body; `None` when there is no such comment on `repo`.
fn edit_comment(i: &mut Inner, repo: &str, id: u64, body: &str) -> Option<FakeComment> {
    let c = i
        .comments
        .iter_mut()
        .find(|c| c.id == id && c.repo == repo)?;
    c.body = body.to_string();
    c.edits += 1;
    Some(c.clone())
}

/// One page of a pull's comments, oldest first, and whether more follow.
fn comment_page(i: &Inner, repo: &str, pull: i64, per: usize, page: usize) -> (Vec<Value>, usize) {
    let all: Vec<&FakeComment> = i
        .comments
        .iter()
        .filter(|c| c.repo == repo && c.pull == pull)
        .collect();
    let last = all.len().div_ceil(per).max(1);
    let chunk = all
        .iter()
        .skip((page - 1) * per)
        .take(per)
        .map(|c| json!({"id": c.id, "body": c.body, "user": {"login": "bot"}}))
        .collect();
    (chunk, last)
}

pub(super) async fn gh_comment(
    State(s): State<Shared>,
    Path((owner, repo, n)): Path<(String, String, i64)>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let text = body["body"].as_str().unwrap_or_default().to_string();
    let id = add_comment(
        &mut s.inner.lock().unwrap(),
        &format!("{owner}/{repo}"),
        n,
        &text,
    );
    (
        StatusCode::CREATED,
        axum::Json(json!({"id": id, "body": text})),
    )
        .into_response()
}

pub(super) async fn gh_edit_comment(
    State(s): State<Shared>,
    Path((owner, repo, id)): Path<(String, String, u64)>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let text = body["body"].as_str().unwrap_or_default();
    let mut i = s.inner.lock().unwrap();
    match edit_comment(&mut i, &format!("{owner}/{repo}"), id, text) {
        None => not_found("Not Found"),
        Some(c) => axum::Json(json!({"id": c.id, "body": c.body})).into_response(),
    }
}

pub(super) async fn gh_list_comments(
    State(s): State<Shared>,
    Path((owner, repo, n)): Path<(String, String, i64)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let i = s.inner.lock().unwrap();
    let (per, page) = page_params(&q, i.page_size);
    let (chunk, last) = comment_page(&i, &format!("{owner}/{repo}"), n, per, page);
    let mut resp = axum::Json(chunk).into_response();
    if page < last {
        let link = format!(
            "<http://{}/api/v3/repos/{owner}/{repo}/issues/{n}/comments?per_page={per}&page={}>; rel=\"next\"",
            s.addr,
            page + 1
        );
        resp.headers_mut()
            .insert("link", HeaderValue::from_str(&link).unwrap());
    }
    resp
}

pub(super) async fn gl_note(
    State(s): State<Shared>,
    Path((id, iid)): Path<(String, i64)>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let text = body["body"].as_str().unwrap_or_default().to_string();
    let note = add_comment(&mut s.inner.lock().unwrap(), &id, iid, &text);
    (
        StatusCode::CREATED,
        axum::Json(json!({"id": note, "body": text, "noteable_iid": iid})),
    )
        .into_response()
}

pub(super) async fn gl_edit_note(
    State(s): State<Shared>,
    Path((id, iid, note)): Path<(String, i64, u64)>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let text = body["body"].as_str().unwrap_or_default();
    let mut i = s.inner.lock().unwrap();
    if !i.comments.iter().any(|c| c.id == note && c.pull == iid) {
        return not_found("404 Not found");
    }
    match edit_comment(&mut i, &id, note, text) {
        None => not_found("404 Not found"),
        Some(c) => axum::Json(json!({"id": c.id, "body": c.body})).into_response(),
    }
}

pub(super) async fn gl_list_notes(
    State(s): State<Shared>,
    Path((id, iid)): Path<(String, i64)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let i = s.inner.lock().unwrap();
    let (per, page) = page_params(&q, i.page_size);
    let (chunk, last) = comment_page(&i, &id, iid, per, page);
    let mut headers = HeaderMap::new();
    let next = if page < last {
        (page + 1).to_string()
    } else {
        String::new()
    };
    headers.insert("x-next-page", HeaderValue::from_str(&next).unwrap());
    (headers, axum::Json(chunk)).into_response()
}

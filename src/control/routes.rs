//! Control channel routes.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{ClientAddr, ControlState};
use crate::auth::outcome::Outcome;
use crate::auth::Attempt;

/// Target size of one chunk of a streamed pull.
const CHUNK_BYTES: usize = 64 * 1024;

/// Request bodies are small; a sign-in never needs more.
const MAX_BODY: usize = 16 * 1024;

pub fn router(state: Arc<ControlState>) -> Router {
    Router::new()
        .route("/v1/authenticate", post(authenticate))
        .route("/v1/sync/full", get(sync_full))
        .route("/v1/sync/changes", get(sync_changes))
        .route("/v1/verify", post(verify))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthenticateBody {
    login: String,
    password: String,
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// Wrong or missing token: 401 and nothing else.
fn unauthorized() -> Response {
    StatusCode::UNAUTHORIZED.into_response()
}

/// `POST /v1/verify`: the checks of `ldapgate verify` as JSON; 200 when
/// none failed, 503 otherwise (the report says which and why).
async fn verify(State(state): State<Arc<ControlState>>, headers: HeaderMap) -> Response {
    if !state.token_ok(bearer(&headers)) {
        return unauthorized();
    }
    match crate::verify::verify(&state.config).await {
        Ok(report) if report.ok => (StatusCode::OK, Json(report)).into_response(),
        Ok(report) => (StatusCode::SERVICE_UNAVAILABLE, Json(report)).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "error": "verify_failed", "detail": e.to_string() })),
        )
            .into_response(),
    }
}

/// The HTTP status for an outcome.
pub fn status_for(outcome: Outcome) -> StatusCode {
    match outcome {
        Outcome::Success => StatusCode::OK,
        Outcome::InvalidCredentials | Outcome::AmbiguousLogin => StatusCode::UNAUTHORIZED,
        Outcome::AccountLocked
        | Outcome::AccountDisabled
        | Outcome::AccountExpired
        | Outcome::PasswordExpired
        | Outcome::PasswordMustChange
        | Outcome::LogonNotPermitted => StatusCode::FORBIDDEN,
        Outcome::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        Outcome::DirectoryUnavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

async fn authenticate(
    State(state): State<Arc<ControlState>>,
    Extension(ClientAddr(peer)): Extension<ClientAddr>,
    headers: HeaderMap,
    body: Result<Json<AuthenticateBody>, JsonRejection>,
) -> Response {
    if !state.token_ok(bearer(&headers)) {
        return unauthorized();
    }
    let Json(body) = match body {
        Ok(b) => b,
        Err(rejection) => {
            // serde names the missing or mistyped field; the body text is
            // never echoed (it may hold a password).
            let detail = match &rejection {
                JsonRejection::JsonDataError(e) => e.body_text(),
                JsonRejection::JsonSyntaxError(_) => "body is not valid JSON".to_owned(),
                JsonRejection::MissingJsonContentType(_) => {
                    "Content-Type must be application/json".to_owned()
                }
                other => other.body_text(),
            };
            let detail = detail
                .split("at line")
                .next()
                .unwrap_or(&detail)
                .trim()
                .to_owned();
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": "bad_request", "detail": detail })),
            )
                .into_response();
        }
    };
    let verdict = state
        .authenticator
        .authenticate(&Attempt {
            login: &body.login,
            password: &body.password,
            client: peer.ip(),
            channel: "control",
        })
        .await;
    let mut response = (status_for(verdict.outcome), Json(&verdict)).into_response();
    if let Some(after) = verdict.retry_after {
        let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    response
}

/// `GET /v1/sync/full`: NDJSON, streamed as pages arrive. A refusal found
/// before the first line (the base DN moved) is a 409; a failure after it is
/// the last line, `{"type":"error",...}`, in place of `{"type":"end",...}`.
async fn sync_full(State(state): State<Arc<ControlState>>, headers: HeaderMap) -> Response {
    use crate::sync::export::{end_line, error_line, SyncError};
    if !state.token_ok(bearer(&headers)) {
        return unauthorized();
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(256);
    let exporter = state.exporter.clone();
    let task = tokio::spawn(async move { exporter.full(&tx).await });
    let first = rx.recv().await;
    if first.is_none() {
        // Finished before a single line: either an empty directory or a
        // refusal, which gets a status of its own.
        let result = task.await;
        return match result {
            Ok(Ok((counts, cookie))) => ndjson(futures_util::stream::iter([Ok::<
                _,
                std::convert::Infallible,
            >(
                end_line(counts, &cookie) + "\n",
            )])),
            Ok(Err(e @ SyncError::BaseDnMoved { .. })) => (
                StatusCode::CONFLICT,
                Json(json!({ "error": "base_dn_moved", "detail": e.to_string() })),
            )
                .into_response(),
            Ok(Err(e)) => (
                StatusCode::BAD_GATEWAY,
                Json(json!({ "error": e.code(), "detail": e.to_string() })),
            )
                .into_response(),
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        };
    }
    let stream = futures_util::stream::unfold(
        (first, rx, Some(task)),
        |(first, mut rx, task)| async move {
            if let Some(line) = first {
                let chunk = batch(line, &mut rx);
                return Some((Ok::<_, std::convert::Infallible>(chunk), (None, rx, task)));
            }
            if let Some(line) = rx.recv().await {
                let chunk = batch(line, &mut rx);
                return Some((Ok(chunk), (None, rx, task)));
            }
            let last = match task?.await {
                Ok(Ok((counts, cookie))) => end_line(counts, &cookie),
                Ok(Err(e)) => error_line(&e),
                Err(_) => json!({ "type": "error", "error": "internal" }).to_string(),
            };
            Some((Ok(last + "\n"), (None, rx, None)))
        },
    );
    ndjson(stream)
}

/// `line` and the lines already waiting behind it, newline-terminated, up
/// to about [`CHUNK_BYTES`]: one HTTP chunk (and TLS record) per batch
/// rather than per line.
fn batch(line: String, rx: &mut tokio::sync::mpsc::Receiver<String>) -> String {
    let mut chunk = line;
    chunk.push('\n');
    while chunk.len() < CHUNK_BYTES {
        match rx.try_recv() {
            Ok(next) => {
                chunk.push_str(&next);
                chunk.push('\n');
            }
            Err(_) => break,
        }
    }
    chunk
}

fn ndjson<S>(stream: S) -> Response
where
    S: futures_util::Stream<Item = Result<String, std::convert::Infallible>> + Send + 'static,
{
    let mut response = axum::body::Body::from_stream(stream).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    response
}

#[derive(Deserialize)]
struct ChangesQuery {
    cookie: String,
    approve: Option<String>,
}

/// `GET /v1/sync/changes?cookie=C[&approve=T]`: the change set, or 409 when
/// sync protection holds it back, the base DN moved, or the cookie is gone.
async fn sync_changes(
    State(state): State<Arc<ControlState>>,
    headers: HeaderMap,
    query: Result<axum::extract::Query<ChangesQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    use crate::sync::changes::changes;
    use crate::sync::export::SyncError;
    if !state.token_ok(bearer(&headers)) {
        return unauthorized();
    }
    let Ok(axum::extract::Query(q)) = query else {
        return (
            StatusCode::BAD_REQUEST,
            Json(
                json!({ "error": "bad_request", "detail": "query parameter `cookie` is required" }),
            ),
        )
            .into_response();
    };
    match changes(&state.exporter, &q.cookie, q.approve.as_deref()).await {
        Ok(set) => {
            let mut body = set.lines.join("\n");
            if !body.is_empty() {
                body.push('\n');
            }
            body.push_str(&set.end_line());
            body.push('\n');
            ndjson(futures_util::stream::iter([Ok::<
                _,
                std::convert::Infallible,
            >(body)]))
        }
        Err(
            e @ (SyncError::Protection { .. }
            | SyncError::BaseDnMoved { .. }
            | SyncError::UnknownCookie(_)),
        ) => (StatusCode::CONFLICT, Json(e.to_json())).into_response(),
        Err(e) => (StatusCode::BAD_GATEWAY, Json(e.to_json())).into_response(),
    }
}

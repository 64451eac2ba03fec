//! Control channel routes.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::scope::Scoped;
use super::{ClientAddr, ControlState};
use crate::auth::outcome::Outcome;
use crate::auth::Attempt;
use crate::http_server::{read_body, Admission};

/// Target size of one chunk of a streamed pull.
const CHUNK_BYTES: usize = 64 * 1024;

/// Request bodies are small; a sign-in never needs more.
pub const MAX_BODY: usize = 16 * 1024;

/// Every route, behind [`authorize`] (every path, unknown ones included,
/// answers 401 to a caller without a valid token). The routes of one
/// directory are served under `/v1/directories/{name}/` and, for the only
/// directory, under `/v1/` ([`super::scope`]).
pub fn router(state: Arc<ControlState>) -> Router {
    let mut router = Router::new()
        .route("/v1/directories", get(list_directories))
        .route("/v1/fingerprint", get(fingerprint));
    for prefix in ["/v1", "/v1/directories/{name}"] {
        router = router
            .route(&format!("{prefix}/authenticate"), post(authenticate))
            .route(&format!("{prefix}/sync/full"), get(sync_full))
            .route(&format!("{prefix}/sync/changes"), get(sync_changes))
            .route(&format!("{prefix}/verify"), post(verify));
    }
    router
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .with_state(state)
}

/// `GET /v1/directories`: each configured directory, in file order, with
/// its readiness and its servers' health.
async fn list_directories(State(state): State<Arc<ControlState>>) -> Response {
    let list: Vec<serde_json::Value> = state
        .directories
        .iter()
        .map(|d| {
            let servers: Vec<serde_json::Value> = d
                .pool
                .servers()
                .iter()
                .map(|s| json!({ "url": s.endpoint.to_string(), "up": s.is_up() }))
                .collect();
            json!({
                "name": d.name(),
                "kind": d.config.directory.kind.name(),
                "base_dn": d.config.directory.base_dn.to_string(),
                "ready": d.ready(),
                "servers": servers,
            })
        })
        .collect();
    Json(json!({ "directories": list })).into_response()
}

/// `server=URL[&starttls=BOOL]`: the target, and whether a `HOST:PORT`
/// speaks plain LDAP first. Each at most once; nothing else. Errors name
/// the parameter, never its value.
fn fingerprint_query(query: Option<&str>) -> Result<(String, bool), String> {
    let mut server = None;
    let mut starttls = None;
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let slot = match key.as_ref() {
            "server" => &mut server,
            "starttls" => &mut starttls,
            _ => {
                return Err(
                    "unknown query parameter: only `server` and `starttls` are taken".into(),
                )
            }
        };
        if slot.replace(value.into_owned()).is_some() {
            return Err(format!("query parameter `{key}` is given twice"));
        }
    }
    let server = server
        .ok_or("query parameter `server` is required (HOST:PORT or an ldap:// / ldaps:// URL)")?;
    if server.is_empty() || !server.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("query parameter `server` must be HOST:PORT or an ldap:// / ldaps:// URL, printable ASCII".into());
    }
    let starttls = match starttls.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("false" | "0" | "no") => false,
        Some("true" | "1" | "yes") => true,
        Some(_) => return Err("query parameter `starttls` must be true or false".into()),
    };
    Ok((server, starttls))
}

/// How long `GET /v1/fingerprint` waits for connect, StartTLS and
/// handshake, as `ldapgate fingerprint` does by default.
const FINGERPRINT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `GET /v1/fingerprint?server=URL[&starttls=true]`: the certificate a
/// directory server presents, as `ldapgate fingerprint` reports it, so the
/// console can pin it in one step. 200 when it was read and ldapgate can
/// connect; 422 when read but unusable (the reason says why); 400 for a
/// target that is not `HOST:PORT` or an `ldap://`/`ldaps://` URL; 502 when
/// the server could not be reached.
async fn fingerprint(uri: axum::http::Uri) -> Response {
    use crate::fingerprint::{fetch, parse_target};
    let bad = |detail: String| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "bad_request", "detail": detail })),
        )
            .into_response()
    };
    let (server, starttls) = match fingerprint_query(uri.query()) {
        Ok(q) => q,
        Err(detail) => return bad(detail),
    };
    let (endpoint, starttls) = match parse_target(&server, starttls) {
        Ok(t) => t,
        Err(_) => return bad(
            "query parameter `server` is not HOST:PORT or an ldap:// / ldaps:// URL with a host"
                .into(),
        ),
    };
    match fetch(endpoint, starttls, FINGERPRINT_TIMEOUT).await {
        Ok(certs) if certs.unusable.is_some() => {
            (StatusCode::UNPROCESSABLE_ENTITY, Json(certs.to_json())).into_response()
        }
        Ok(certs) => (StatusCode::OK, Json(certs.to_json())).into_response(),
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            Json(json!({ "error": "unreachable", "detail": e.to_string() })),
        )
            .into_response(),
    }
}

/// Checks the bearer token from the header alone, before a byte of the body
/// is read: a caller without a valid token gets 401 (and the connection is
/// closed, its body unread). Then reads the body, at most [`MAX_BODY`] bytes
/// within `control.body_timeout`, and admits the connection: a complete,
/// authenticated request keeps it from being closed to make room.
async fn authorize(State(state): State<Arc<ControlState>>, req: Request, next: Next) -> Response {
    if !state.token_ok(bearer(req.headers())) {
        return (StatusCode::UNAUTHORIZED, [(header::CONNECTION, "close")]).into_response();
    }
    let (parts, body) = req.into_parts();
    let body = match read_body(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    if let Some(admission) = parts.extensions.get::<Admission>() {
        admission.admit();
    }
    next.run(Request::from_parts(parts, Body::from(body))).await
}

/// The token of an `Authorization: Bearer <token>` field (RFC 6750 §2.1).
/// The scheme is matched case-insensitively (RFC 9110 §11.1), the spaces
/// after it may be several (RFC 9110 §11.4: `1*SP`; tabs are taken as
/// spaces), and whitespace around the field value is not part of the token.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let value = value.trim_matches([' ', '\t']);
    let (scheme, token) = value.split_once([' ', '\t'])?;
    if !scheme.eq_ignore_ascii_case("Bearer") {
        return None;
    }
    let token = token.trim_start_matches([' ', '\t']);
    (!token.is_empty()).then_some(token)
}

struct AuthenticateBody {
    login: String,
    password: String,
}

/// Why a request body was refused: names the field and what was expected,
/// never a value (or a key) from the request, which may hold a password.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
enum BadBody {
    #[error("Content-Type must be application/json")]
    ContentType,
    #[error("body is not valid JSON")]
    NotJson,
    #[error("body must be a JSON object with `login` and `password`")]
    NotObject,
    #[error("missing field `{0}` (a string)")]
    Missing(&'static str),
    #[error("field `{0}` must be a string")]
    NotString(&'static str),
    #[error("unknown field: the body holds only `login` and `password`")]
    UnknownField,
}

impl IntoResponse for BadBody {
    fn into_response(self) -> Response {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "bad_request", "detail": self.to_string() })),
        )
            .into_response()
    }
}

/// `{"login": "...", "password": "..."}` and nothing else.
fn authenticate_body(headers: &HeaderMap, body: &[u8]) -> Result<AuthenticateBody, BadBody> {
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            let v = v.trim();
            v.eq_ignore_ascii_case("application/json")
                || (v.len() > 5 && v[v.len() - 5..].eq_ignore_ascii_case("+json"))
        });
    if !json_type {
        return Err(BadBody::ContentType);
    }
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|_| BadBody::NotJson)?;
    let serde_json::Value::Object(mut map) = value else {
        return Err(BadBody::NotObject);
    };
    let mut field = |name: &'static str| match map.remove(name) {
        Some(serde_json::Value::String(s)) => Ok(s),
        Some(_) => Err(BadBody::NotString(name)),
        None => Err(BadBody::Missing(name)),
    };
    let login = field("login")?;
    let password = field("password")?;
    if !map.is_empty() {
        return Err(BadBody::UnknownField);
    }
    Ok(AuthenticateBody { login, password })
}

/// `POST /v1/verify`: the checks of `ldapgate verify` as JSON; 200 when
/// none failed, 503 otherwise (the report says which and why).
async fn verify(Scoped(directory): Scoped) -> Response {
    let report =
        crate::verify::verify_with_store(&directory.config, directory.cluster.clone()).await;
    match report {
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
    Scoped(directory): Scoped,
    Extension(ClientAddr(peer)): Extension<ClientAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = match authenticate_body(&headers, &body) {
        Ok(b) => b,
        Err(bad) => return bad.into_response(),
    };
    let verdict = directory
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
async fn sync_full(Scoped(directory): Scoped) -> Response {
    use crate::sync::export::{end_line, error_line, SyncError};
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(256);
    let exporter = directory.exporter.clone();
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
            Ok(Err(e @ SyncError::Store(_))) => {
                (StatusCode::SERVICE_UNAVAILABLE, Json(e.to_json())).into_response()
            }
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
    Scoped(directory): Scoped,
    query: Result<axum::extract::Query<ChangesQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    use crate::sync::changes::changes;
    use crate::sync::export::SyncError;
    let Ok(axum::extract::Query(q)) = query else {
        return (
            StatusCode::BAD_REQUEST,
            Json(
                json!({ "error": "bad_request", "detail": "query parameter `cookie` is required" }),
            ),
        )
            .into_response();
    };
    match changes(&directory.exporter, &q.cookie, q.approve.as_deref()).await {
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
        Err(e @ SyncError::Store(_)) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(e.to_json())).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, Json(e.to_json())).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_spaces_may_be_several() {
        for (field, token) in [
            ("Bearer abc", Some("abc")),
            ("bearer abc", Some("abc")),
            ("BEARER abc", Some("abc")),
            ("bEaReR abc", Some("abc")),
            ("Bearer  abc", Some("abc")),
            ("Bearer\tabc", Some("abc")),
            ("Bearer abc ", Some("abc")),
            ("Bearer", None),
            ("Bearer ", None),
            ("Bearerabc", None),
            ("Basic abc", None),
            ("Bearers abc", None),
        ] {
            assert_eq!(
                bearer(&with(header::AUTHORIZATION, field)),
                token,
                "{field:?}"
            );
        }
        assert_eq!(bearer(&HeaderMap::new()), None);
    }

    #[test]
    fn fingerprint_queries_take_a_server_once_and_quote_nothing() {
        assert_eq!(
            fingerprint_query(Some("server=ldaps%3A%2F%2Fdc1%3A636")),
            Ok(("ldaps://dc1:636".into(), false))
        );
        assert_eq!(
            fingerprint_query(Some("server=dc1:389&starttls=TRUE")),
            Ok(("dc1:389".into(), true))
        );
        assert_eq!(
            fingerprint_query(Some("server=dc1:389&starttls=0")),
            Ok(("dc1:389".into(), false))
        );
        for (query, says) in [
            (None, "required"),
            (Some("starttls=1"), "required"),
            (Some("server=a:1&server=b:2"), "twice"),
            (Some("server=a:1&starttls=maybe"), "true or false"),
            (Some("server=a:1&x=1"), "unknown"),
            (Some("server=a%3A1%0d%0aX-Injected%3A%201"), "printable"),
            (Some("server=a%3A1%00"), "printable"),
            (Some("server="), "printable"),
        ] {
            let err = fingerprint_query(query).unwrap_err();
            assert!(err.contains(says), "{query:?}: {err}");
            assert!(!err.contains("Injected") && !err.contains("maybe"), "{err}");
        }
    }

    #[test]
    fn bad_bodies_name_the_field_and_quote_nothing() {
        let json = with(header::CONTENT_TYPE, "application/json; charset=utf-8");
        let refuse = |body: &str| authenticate_body(&json, body.as_bytes()).err();
        assert_eq!(
            refuse(r#"{"login":"a"}"#),
            Some(BadBody::Missing("password"))
        );
        assert_eq!(
            refuse(r#"{"login":1,"password":"x"}"#),
            Some(BadBody::NotString("login"))
        );
        assert_eq!(
            refuse(r#"{"login":"a","password":"b","secret-key":1}"#),
            Some(BadBody::UnknownField)
        );
        assert_eq!(refuse(r#"["a","b"]"#), Some(BadBody::NotObject));
        assert_eq!(refuse("{\"login\":\"a\""), Some(BadBody::NotJson));
        assert!(authenticate_body(&json, br#"{"login":"a","password":"b"}"#).is_ok());
        let text = with(header::CONTENT_TYPE, "text/plain");
        assert_eq!(
            authenticate_body(&text, br#"{"login":"a","password":"b"}"#).err(),
            Some(BadBody::ContentType)
        );
        let problem = with(header::CONTENT_TYPE, "application/problem+json");
        assert!(authenticate_body(&problem, br#"{"login":"a","password":"b"}"#).is_ok());
    }
}

//! Control channel routes.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{ClientAddr, ControlState};
use crate::auth::outcome::Outcome;
use crate::auth::Attempt;

/// Request bodies are small; a sign-in never needs more.
const MAX_BODY: usize = 16 * 1024;

pub fn router(state: Arc<ControlState>) -> Router {
    Router::new()
        .route("/v1/authenticate", post(authenticate))
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

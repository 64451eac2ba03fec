//! Which directory a control request is for: the `{name}` of
//! `/v1/directories/{name}/...`, or, on the unscoped `/v1/...` paths, the
//! only configured directory. With several directories an unscoped path is
//! a 400 that names the choices; an unknown name is a 404 that names them.

use std::sync::Arc;

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::ControlState;
use crate::config::{choose, is_directory_name, DirectoryChoice};
use crate::directory::{Directories, Directory};

/// The directory a request is for.
pub struct Scoped(pub Arc<Directory>);

/// Why a request names no configured directory, as an HTTP answer.
fn refusal(choice: DirectoryChoice) -> Response {
    match choice {
        DirectoryChoice::Ambiguous(directories) => (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "error": "directory_required",
                "detail": format!(
                    "several directories are configured: use /v1/directories/{{name}}/... with one of {}",
                    directories.join(", ")
                ),
                "directories": directories,
            })),
        )
            .into_response(),
        DirectoryChoice::Unknown { name, configured } => {
            // A name that could be configured is safe to repeat; any
            // other text from the path is not.
            let which = if is_directory_name(&name) {
                format!("no directory is named `{name}`")
            } else {
                "no directory has that name (names are lowercase letters, digits and `-`)"
                    .to_owned()
            };
            (
                StatusCode::NOT_FOUND,
                Json(json!({
                    "error": "unknown_directory",
                    "detail": format!("{which}; configured: {}", configured.join(", ")),
                    "directories": configured,
                })),
            )
                .into_response()
        }
    }
}

/// The directory `name` names, or the only one when `name` is None.
pub fn resolve(
    directories: &Directories,
    name: Option<&str>,
) -> Result<Arc<Directory>, DirectoryChoice> {
    choose(directories.as_slice(), |d| d.name(), name).cloned()
}

impl FromRequestParts<Arc<ControlState>> for Scoped {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ControlState>,
    ) -> Result<Self, Self::Rejection> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let name = params
            .iter()
            .find(|(key, _)| *key == "name")
            .map(|(_, value)| value.to_owned());
        resolve(&state.directories, name.as_deref())
            .map(Scoped)
            .map_err(refusal)
    }
}

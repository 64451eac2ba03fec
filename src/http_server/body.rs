//! Request bodies under a deadline and a size limit.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use serde_json::json;
use tokio::time::Sleep;

/// A request body that fails once `body_timeout` has passed since its
/// header section was complete, however the bytes trickle in: a deadline
/// for the whole body, not a timer reset by each byte.
pub struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<Sleep>>,
    timeout: Duration,
}

impl DeadlineBody {
    /// `inner` must be read within `timeout` from now.
    pub fn new(inner: Incoming, timeout: Duration) -> Self {
        DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            timeout,
        }
    }
}

/// Why reading a request body failed.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the request body did not arrive within {} of its header (body_timeout)", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("reading the request body failed: {0}")]
    Read(String),
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        // The body is checked first: bytes that are already here are not
        // refused for arriving on the deadline's tick.
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                Poll::Ready(frame.map(|f| f.map_err(|e| BodyError::Read(e.to_string()))))
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(BodyError::Timeout(self.timeout)))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The whole body, at most `limit` bytes. A `Content-Length` over the limit
/// is refused before a byte of the body is read.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let declared = usize::try_from(body.size_hint().lower()).unwrap_or(usize::MAX);
    if declared > limit {
        return Err(BodyError::TooLarge(limit));
    }
    let mut out = Vec::with_capacity(declared);
    let mut frames = body.into_data_stream();
    while let Some(chunk) = frames.next().await {
        let chunk = chunk.map_err(classify)?;
        if out.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(limit));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(out))
}

/// The [`BodyError`] behind an error from a body stream (axum boxes the
/// body's own error).
fn classify(e: axum::Error) -> BodyError {
    let inner = e.into_inner();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(inner.as_ref());
    while let Some(err) = source {
        if let Some(body) = err.downcast_ref::<BodyError>() {
            return match body {
                BodyError::Timeout(d) => BodyError::Timeout(*d),
                BodyError::TooLarge(n) => BodyError::TooLarge(*n),
                BodyError::Read(m) => BodyError::Read(m.clone()),
            };
        }
        source = err.source();
    }
    BodyError::Read(inner.to_string())
}

impl IntoResponse for BodyError {
    /// 408 or 413 with a detail naming the bound, 400 for a body that broke
    /// off; none quotes the request.
    fn into_response(self) -> Response {
        let (status, error) = match self {
            BodyError::Timeout(_) => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            BodyError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            BodyError::Read(_) => (StatusCode::BAD_REQUEST, "bad_request"),
        };
        let detail = match &self {
            // hyper's message says what broke (a closed connection, bad
            // chunk framing), not what the client sent.
            BodyError::Read(_) => "the request body could not be read".to_owned(),
            other => other.to_string(),
        };
        (
            status,
            [(axum::http::header::CONNECTION, "close")],
            Json(json!({ "error": error, "detail": detail })),
        )
            .into_response()
    }
}

//! The metrics endpoint: plain HTTP on `[metrics].listen`, meant for a
//! loopback or management address. `/metrics` (Prometheus text format),
//! `/healthz` (the process answers) and `/readyz` (listeners bound and at
//! least one directory server up).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::info;

use super::metrics;
use crate::upstream::UpstreamPool;

/// The content type of the Prometheus text exposition format.
const EXPOSITION: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What `/readyz` and `/metrics` read from the running daemon. The
/// endpoint starts only once every listener is bound, and stops with them,
/// so readiness is the directory's.
pub struct Readiness {
    /// The pool of the configuration in force (replaced on reload).
    pub pool: watch::Receiver<Arc<UpstreamPool>>,
}

impl Readiness {
    /// Ok, or why not ready.
    fn check(&self) -> Result<(), &'static str> {
        if !self.pool.borrow().any_up() {
            return Err("no directory server is up");
        }
        Ok(())
    }
}

/// A metrics listener that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} (metrics): {source}")]
pub struct MetricsBindError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// A bound metrics listener.
pub struct MetricsServer {
    listener: TcpListener,
    pub addr: SocketAddr,
}

impl MetricsServer {
    pub async fn bind(addr: SocketAddr) -> Result<Self, MetricsBindError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| MetricsBindError { addr, source })?;
        let addr = listener.local_addr().unwrap_or(addr);
        Ok(MetricsServer { listener, addr })
    }

    /// Serves until `stop` turns true.
    pub async fn serve(self, readiness: Arc<Readiness>, mut stop: watch::Receiver<bool>) {
        info!(addr = %self.addr, "metrics listening (HTTP)");
        let router = Router::new()
            .route("/metrics", get(scrape))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(ready))
            .with_state(readiness);
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(self.listener, router)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::warn!(error = %e, "metrics endpoint stopped");
        }
    }
}

async fn scrape(State(readiness): State<Arc<Readiness>>) -> impl IntoResponse {
    let pool = readiness.pool.borrow().clone();
    (
        [(header::CONTENT_TYPE, EXPOSITION)],
        metrics().render(Some(&pool)),
    )
}

async fn ready(State(readiness): State<Arc<Readiness>>) -> impl IntoResponse {
    match readiness.check() {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

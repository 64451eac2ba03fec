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
use tokio::sync::watch;

use super::metrics;
use crate::config::HttpLimits;
use crate::http_server::{self, HttpListener};
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
    http: HttpListener,
    limits: HttpLimits,
    pub addr: SocketAddr,
}

impl MetricsServer {
    pub async fn bind(addr: SocketAddr, limits: HttpLimits) -> Result<Self, MetricsBindError> {
        let http = HttpListener::bind(addr, "metrics", &limits)
            .await
            .map_err(|source| MetricsBindError { addr, source })?;
        Ok(MetricsServer {
            addr: http.addr,
            http,
            limits,
        })
    }

    /// Serves until `stop` turns true. Nothing here authenticates, so no
    /// connection is ever admitted: a full listener closes its oldest
    /// connection for each new one (a scrape takes milliseconds).
    pub async fn serve(self, readiness: Arc<Readiness>, stop: watch::Receiver<bool>) {
        let router = Router::new()
            .route("/metrics", get(scrape))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(ready))
            .with_state(readiness);
        let limits = self.limits;
        let connection_stop = stop.clone();
        self.http
            .serve(stop, move |tcp, peer, admission| {
                let router = router.clone();
                let stop = connection_stop.clone();
                async move {
                    http_server::serve_connection(tcp, router, peer, admission, &limits, stop)
                        .await;
                }
            })
            .await;
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

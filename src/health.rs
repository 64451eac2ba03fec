//! The metrics endpoint: plain HTTP on `[metrics].listen`, meant for a
//! loopback or management address. `/metrics` (Prometheus text format),
//! `/healthz` (the process answers) and `/readyz` (listeners bound and at
//! least one directory with a server up; the body says it of each
//! directory, one line each: `corp-ad: ready`, `ldap: not ready: ...`).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;

use crate::cluster::ClusterStore;
use crate::config::HttpLimits;
use crate::directory::Directories;
use crate::http_server::{self, HttpListener};
use crate::metrics::metrics;

/// The content type of the Prometheus text exposition format.
const EXPOSITION: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What `/readyz` and `/metrics` read from the running daemon. The
/// endpoint starts only once every listener is bound, and stops with them,
/// so readiness is the directories'.
pub struct Readiness {
    /// The directories of the configuration in force (replaced on reload).
    pub directories: watch::Receiver<Arc<Directories>>,
    /// The shared store of `[cluster]`: a warning line while it is down
    /// (not a reason to be unready: sign-in goes on without it).
    pub cluster: Option<Arc<ClusterStore>>,
}

impl Readiness {
    /// Whether any directory is ready, and one line per directory.
    fn check(&self) -> (bool, String) {
        let directories = self.directories.borrow().clone();
        let mut any = false;
        let mut lines = String::new();
        for d in directories.iter() {
            let ready = d.ready();
            any |= ready;
            lines.push_str(d.name());
            lines.push_str(if ready {
                ": ready\n"
            } else {
                ": not ready: no directory server is up\n"
            });
        }
        if let Some(store) = &self.cluster {
            lines.push_str(&format!("cluster store {}: ", store.address()));
            if store.is_up() {
                lines.push_str("up\n");
            } else {
                let reason = store
                    .down_reason()
                    .unwrap_or_else(|| "no answer yet".into());
                lines.push_str(&format!(
                    "down: {reason} (warning: lockout counted per instance, sync pulls refused \
                     until it returns)\n"
                ));
            }
        }
        (any, lines)
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
    let directories = readiness.directories.borrow().clone();
    let m = metrics();
    m.reset_upstream();
    for d in directories.iter() {
        d.observe_pool();
    }
    ([(header::CONTENT_TYPE, EXPOSITION)], m.render())
}

/// 200 `ready` while any directory is ready, 503 `not ready` when none is;
/// then a line per directory.
async fn ready(State(readiness): State<Arc<Readiness>>) -> impl IntoResponse {
    match readiness.check() {
        (true, each) => (StatusCode::OK, format!("ready\n{each}")),
        (false, each) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: no directory server is up\n{each}"),
        ),
    }
}

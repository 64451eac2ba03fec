//! The control channel: a small HTTPS API for the cloud side. Callers are
//! authenticated by bearer token (its SHA-256 compared in constant time
//! against `control.token_sha256`) and/or by client certificate.
//!
//! Routes live in [`routes`]; this module serves them over rustls.

pub mod routes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use tracing::{debug, info, warn};

use crate::auth::Authenticator;
use crate::config::{Config, ControlConfig};
use crate::sync::export::Exporter;
use crate::tls::{self, TlsFileError};

/// How long a request's headers may take to arrive.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The client address of a request, put there by the server.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// What handlers share.
pub struct ControlState {
    pub authenticator: Arc<Authenticator>,
    pub exporter: Arc<Exporter>,
    /// The configuration in force, for `/v1/verify`.
    pub config: Arc<Config>,
    token_sha256: Vec<[u8; 32]>,
}

impl ControlState {
    pub fn new(
        authenticator: Arc<Authenticator>,
        exporter: Arc<Exporter>,
        config: Arc<Config>,
    ) -> Self {
        ControlState {
            authenticator,
            exporter,
            token_sha256: config
                .control
                .as_ref()
                .map(|c| c.token_sha256.clone())
                .unwrap_or_default(),
            config,
        }
    }

    /// True when `token` hashes to a configured value. Every configured
    /// hash is compared, in constant time, whatever matches first. With no
    /// tokens configured, callers are authenticated by certificate alone.
    pub fn token_ok(&self, token: Option<&str>) -> bool {
        if self.token_sha256.is_empty() {
            return true;
        }
        let Some(token) = token else { return false };
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.token_sha256
            .iter()
            .fold(subtle::Choice::from(0), |acc, h| acc | h.ct_eq(&presented))
            .into()
    }
}

/// Why the control channel could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control.client_ca_file: {0}")]
    ClientCa(#[from] TlsFileError),
    #[error("control TLS setup: {0}")]
    Tls(String),
    #[error("cannot listen on {addr} (control): {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// What the control listener serves with: its TLS settings and routes,
/// both built from one configuration and replaced together on reload.
pub struct ControlServing {
    acceptor: TlsAcceptor,
    router: Router,
}

impl ControlServing {
    pub fn new(config: &ControlConfig, state: Arc<ControlState>) -> Result<Self, ControlError> {
        let server_config = match &config.client_ca_file {
            None => config.tls.config.clone(),
            Some(ca) => {
                let roots = Arc::new(tls::load_roots(ca)?);
                let verifier = WebPkiClientVerifier::builder_with_provider(roots, tls::provider())
                    .build()
                    .map_err(|e| ControlError::Tls(e.to_string()))?;
                let chain = tls::load_certs(&config.tls.cert)?;
                let key = tls::load_key(&config.tls.key)?;
                let built = ServerConfig::builder_with_provider(tls::provider())
                    .with_safe_default_protocol_versions()
                    .map_err(|e| ControlError::Tls(e.to_string()))?
                    .with_client_cert_verifier(verifier)
                    .with_single_cert(chain, key)
                    .map_err(|e| ControlError::Tls(e.to_string()))?;
                Arc::new(built)
            }
        };
        Ok(ControlServing {
            acceptor: TlsAcceptor::from(server_config),
            router: routes::router(state),
        })
    }
}

/// A bound control listener.
pub struct ControlServer {
    listener: TcpListener,
    pub addr: SocketAddr,
    /// One permit per open connection (`control.max_connections`).
    connections: Arc<Semaphore>,
}

impl ControlServer {
    pub async fn bind(listen: SocketAddr, max_connections: usize) -> Result<Self, ControlError> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| ControlError::Bind {
                addr: listen,
                source,
            })?;
        let addr = listener.local_addr().unwrap_or(listen);
        Ok(ControlServer {
            listener,
            addr,
            connections: Arc::new(Semaphore::new(max_connections)),
        })
    }

    /// Serves until `stop` turns true; each connection with what `serving`
    /// holds when it is accepted.
    pub async fn serve(
        self,
        serving: watch::Receiver<Arc<ControlServing>>,
        mut stop: watch::Receiver<bool>,
    ) {
        info!(addr = %self.addr, "control channel listening (HTTPS)");
        loop {
            let (tcp, peer) = tokio::select! {
                a = self.listener.accept() => match a {
                    Ok(a) => a,
                    Err(e) => {
                        warn!(error = %e, "control accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                // The guard wait_for returns is not Send; drop it inside.
                _ = async { let _ = stop.wait_for(|s| *s).await; } => break,
            };
            // A flood of connections (or of slow handshakes) is cut at the
            // cap rather than exhausting file descriptors.
            let Ok(permit) = self.connections.clone().try_acquire_owned() else {
                debug!(%peer, "control.max_connections reached; connection closed");
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, router) = {
                let now = serving.borrow();
                (now.acceptor.clone(), now.router.clone())
            };
            tokio::spawn(async move {
                let _permit = permit;
                let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
                    .await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        debug!(%peer, error = %e, "control TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
                let service = router.map_request(
                    move |mut req: axum::http::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(ClientAddr(peer));
                        req.map(axum::body::Body::new)
                    },
                );
                let mut builder = auto::Builder::new(TokioExecutor::new());
                // A client that trickles its headers is cut off.
                builder
                    .http1()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT);
                let served = builder
                    .serve_connection(TokioIo::new(tls), TowerToHyperService::new(service))
                    .await;
                if let Err(e) = served {
                    debug!(%peer, error = %e, "control connection ended with an error");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_by_hash() {
        let (authenticator, exporter, config) = unreachable_directory();
        let state = ControlState {
            authenticator,
            exporter,
            config,
            token_sha256: vec![Sha256::digest(b"s3cret").into(), [0u8; 32]],
        };
        assert!(state.token_ok(Some("s3cret")));
        assert!(!state.token_ok(Some("s3cret ")));
        assert!(!state.token_ok(Some("")));
        assert!(!state.token_ok(None));
    }

    fn unreachable_directory() -> (Arc<Authenticator>, Arc<Exporter>, Arc<Config>) {
        let text = "[directory]\nservers = [\"ldaps://127.0.0.1:1\"]\nbase_dn = \"dc=x\"\n";
        let config = crate::config::Config::parse(text, std::path::Path::new("t.toml")).unwrap();
        let pool = crate::upstream::UpstreamPool::new(&config.directory).unwrap();
        let limiter = crate::ratelimit::BindLimiter::new(&config.ratelimit);
        let service = Arc::new(crate::upstream::service::ServiceConnections::new(
            pool.clone(),
            None,
        ));
        (
            Arc::new(Authenticator::new(&config, pool, limiter)),
            Arc::new(Exporter::new(&config, service)),
            Arc::new(config),
        )
    }
}

//! The control channel: a small HTTPS API for the cloud side. Callers are
//! authenticated by bearer token (its SHA-256 compared in constant time
//! against `control.token_sha256`) and/or by client certificate.
//!
//! Routes live in [`routes`] (those of one directory resolve it through
//! [`scope`]); this module serves them over rustls.

pub mod routes;
pub mod scope;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::debug;

use crate::config::{ControlConfig, HttpLimits};
use crate::directory::Directories;
use crate::http_server::{self, HttpListener};
use crate::tls::{self, TlsFileError};

/// How long a client has from its TCP connection to the end of the TLS
/// handshake. The handshake's buffers are rustls' own, bounded by its record
/// size; a connection still handshaking is one the listener may close to
/// make room (see [`crate::http_server`]).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub use crate::http_server::ClientAddr;

/// What handlers share.
pub struct ControlState {
    /// The directories of the configuration in force.
    pub directories: Arc<Directories>,
    token_sha256: Vec<[u8; 32]>,
}

impl ControlState {
    pub fn new(directories: Arc<Directories>, control: &ControlConfig) -> Self {
        ControlState {
            directories,
            token_sha256: control.token_sha256.clone(),
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
    http: HttpListener,
    limits: HttpLimits,
    pub addr: SocketAddr,
}

impl ControlServer {
    pub async fn bind(listen: SocketAddr, limits: HttpLimits) -> Result<Self, ControlError> {
        let http = HttpListener::bind(listen, "control", &limits)
            .await
            .map_err(|source| ControlError::Bind {
                addr: listen,
                source,
            })?;
        Ok(ControlServer {
            addr: http.addr,
            http,
            limits,
        })
    }

    /// Serves until `stop` turns true; each connection with what `serving`
    /// holds when it is accepted.
    pub async fn serve(
        self,
        serving: watch::Receiver<Arc<ControlServing>>,
        stop: watch::Receiver<bool>,
    ) {
        let limits = self.limits;
        let connection_stop = stop.clone();
        self.http
            .serve(stop, move |tcp, peer, admission| {
                let (acceptor, router) = {
                    let now = serving.borrow();
                    (now.acceptor.clone(), now.router.clone())
                };
                let stop = connection_stop.clone();
                async move {
                    let tls =
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(tls)) => tls,
                            Ok(Err(e)) => {
                                debug!(%peer, error = %e, "control TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                debug!(%peer, "control TLS handshake timed out");
                                return;
                            }
                        };
                    http_server::serve_connection(tls, router, peer, admission, &limits, stop)
                        .await;
                }
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_by_hash() {
        let state = ControlState {
            directories: Arc::new(Directories::default()),
            token_sha256: vec![Sha256::digest(b"s3cret").into(), [0u8; 32]],
        };
        assert!(state.token_ok(Some("s3cret")));
        assert!(!state.token_ok(Some("s3cret ")));
        assert!(!state.token_ok(Some("")));
        assert!(!state.token_ok(None));
    }
}

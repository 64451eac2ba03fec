//! `ldapgate run`: wires configuration, upstream pool, listeners and
//! shutdown together.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::auth::Authenticator;
use crate::config::Config;
use crate::control::{ControlError, ControlServer, ControlState};
use crate::listener::{Admission, BindError, BoundListener, ListenerKind};
use crate::ratelimit::BindLimiter;
use crate::session::policy::Policy;
use crate::session::{SessionContext, SessionLimits};
use crate::sync::export::Exporter;
use crate::sync::verify;
use crate::upstream::pool::PoolSetupError;
use crate::upstream::service::ServiceConnections;
use crate::upstream::UpstreamPool;

/// How long a TLS handshake from a client may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often rate-limiter state that has gone stale is dropped.
const LIMITER_HOUSEKEEPING: Duration = Duration::from_secs(10);
/// How long SIGTERM waits for open sessions before exiting anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Pool(#[from] PoolSetupError),
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error(transparent)]
    Control(#[from] ControlError),
}

/// A started daemon: its bound addresses and the handle that stops it.
pub struct Running {
    pub ldap_addrs: Vec<SocketAddr>,
    pub ldaps_addrs: Vec<SocketAddr>,
    pub control_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    listeners: TaskTracker,
    sessions: TaskTracker,
    pool: Arc<UpstreamPool>,
}

impl Running {
    /// Stops accepting, waits up to the drain timeout for open sessions.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.listeners.close();
        self.listeners.wait().await;
        self.sessions.close();
        let open = self.sessions.len();
        if open > 0 {
            info!(open, "waiting for open sessions to finish");
        }
        if tokio::time::timeout(DRAIN_TIMEOUT, self.sessions.wait())
            .await
            .is_err()
        {
            warn!(
                open = self.sessions.len(),
                "sessions still open after the drain timeout; exiting"
            );
        }
        drop(self.pool);
    }
}

/// Binds every listener and starts serving.
pub async fn start(config: &Config) -> Result<Running, StartError> {
    let pool = UpstreamPool::new(&config.directory)?;
    // One health pass before serving: the log says at once whether the
    // directory is reachable, and the pool starts warm.
    pool.check_health().await;
    for server in pool.servers() {
        if !server.is_up() {
            warn!(server = %server.endpoint, "directory server is not reachable at start-up");
        }
    }
    pool.spawn_health_checks(config.directory.health_check_interval);
    let limiter = BindLimiter::new(&config.ratelimit);
    limiter.spawn_housekeeping(LIMITER_HOUSEKEEPING);
    let authenticator = Arc::new(Authenticator::new(config, pool.clone(), limiter));

    let tls_acceptor = config
        .server
        .tls
        .as_ref()
        .map(|t| TlsAcceptor::from(t.config.clone()));
    let ctx = Arc::new(SessionContext {
        policy: Policy::from_config(config),
        pool: pool.clone(),
        authenticator: config
            .signin
            .rewrite_ldap_binds
            .then(|| authenticator.clone()),
        starttls: tls_acceptor.clone(),
        limits: SessionLimits {
            client_max_message: config.server.max_message_bytes,
            upstream_max_message: config.directory.max_message_bytes,
            idle_timeout: config.server.idle_timeout,
            operation_timeout: config.directory.operation_timeout,
            tls_handshake_timeout: TLS_HANDSHAKE_TIMEOUT,
        },
    });
    let admission = Arc::new(Admission {
        allowed_clients: config.server.allowed_clients.clone(),
        connections: Arc::new(Semaphore::new(config.server.max_connections)),
        tls_handshake_timeout: TLS_HANDSHAKE_TIMEOUT,
    });

    let mut bound = Vec::new();
    for addr in &config.server.ldap_listen {
        bound.push(BoundListener::bind(ListenerKind::Ldap, *addr).await?);
    }
    for addr in &config.server.ldaps_listen {
        bound.push(BoundListener::bind(ListenerKind::Ldaps, *addr).await?);
    }

    let (stop, stop_rx) = watch::channel(false);
    let listeners = TaskTracker::new();
    let sessions = TaskTracker::new();
    let mut ldap_addrs = Vec::new();
    let mut ldaps_addrs = Vec::new();
    for listener in bound {
        match listener.kind {
            ListenerKind::Ldap => ldap_addrs.push(listener.addr),
            ListenerKind::Ldaps => ldaps_addrs.push(listener.addr),
        }
        listeners.spawn(listener.serve(
            ctx.clone(),
            tls_acceptor.clone(),
            admission.clone(),
            sessions.clone(),
            stop_rx.clone(),
        ));
    }
    let service = Arc::new(ServiceConnections::new(
        pool.clone(),
        config.directory.service_account.clone(),
    ));
    let exporter = Arc::new(Exporter::new(config, service));
    if !config.sync.verify_interval.is_zero() {
        verify::spawn_scheduled(
            exporter.clone(),
            config.signin.attributes.clone(),
            config.sync.verify_interval,
        );
    }
    let mut control_addr = None;
    if let Some(control) = &config.control {
        let state = Arc::new(ControlState::new(authenticator.clone(), exporter, control));
        let server = ControlServer::bind(control, state).await?;
        control_addr = Some(server.addr);
        listeners.spawn(server.serve(stop_rx.clone()));
    }
    Ok(Running {
        ldap_addrs,
        ldaps_addrs,
        control_addr,
        stop,
        listeners,
        sessions,
        pool,
    })
}

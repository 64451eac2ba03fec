//! The upstream pool: warm connections to the directory servers of one
//! directory, lent out per purpose ([`Purpose`]) and checked in through one
//! rule ([`super::checkin`]) when the lease ends. Client sessions get
//! anonymous connections, reset between sessions, so clients that connect,
//! bind and unbind per request cost no TCP or TLS handshake upstream;
//! sign-in binds and the service account keep connections of their own.
//!
//! Servers are tried in configured order, healthy ones first; a server that
//! fails to connect is marked down and the next one tried. Only connection
//! establishment fails over: a request that was sent is never re-sent
//! elsewhere, so an answered bind is never retried on another server.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use tracing::debug;

use super::checkin::{self, CheckIn, Purpose};
use super::connection::UpstreamConn;
use super::server::UpstreamServer;
use super::stash::ConnStash;
use super::{NoServerAvailable, PoolSettings, UpstreamError};
use crate::config::{DirectoryConfig, ServiceAccount};
use crate::ldap::url::EndpointError;
use crate::metrics::DirectoryMetrics;
use crate::tls::{self, verifier::Trust, DirectoryTls, TlsFileError};

/// Idle connections kept for sign-in binds. Binds in progress are capped
/// by `ratelimit.max_concurrent_binds`, so no more are ever in use at once.
const MAX_IDLE_SIGN_IN: usize = 64;

/// Idle service-account connections kept.
const MAX_IDLE_SERVICE: usize = 8;

/// Connections to the directory servers of one directory.
pub struct UpstreamPool {
    servers: Vec<UpstreamServer>,
    settings: PoolSettings,
    /// The directory's metrics, shared with everything built on the pool.
    metrics: DirectoryMetrics,
    /// Connections that carry nothing but sign-in binds, so they need no
    /// reset between sign-ins and never hold the service account's identity.
    sign_in: ConnStash,
    /// Connections bound as the service account.
    service: ConnStash,
    /// Whom ldapgate's own searches bind as; anonymous when None.
    account: Option<ServiceAccount>,
}

/// Why the pool could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum PoolSetupError {
    #[error("directory.ca_file: {0}")]
    CaFile(#[from] TlsFileError),
    #[error("directory TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    #[error("directory.servers: {0}")]
    ServerName(#[from] EndpointError),
}

/// A connection lent for one purpose. It dereferences to the connection;
/// when dropped, the connection is checked in by the rule of
/// [`checkin::check_in`]: kept, reset, or closed.
pub struct Lease {
    /// Some until the lease is dropped.
    conn: Option<UpstreamConn>,
    purpose: Purpose,
    pool: Arc<UpstreamPool>,
}

impl Lease {
    /// What the connection is lent for.
    pub fn purpose(&self) -> Purpose {
        self.purpose
    }

    /// The lease, now for a client session: a sign-in's connection that a
    /// session carries on with, bound as the user. It is reset when the
    /// session ends.
    pub fn into_session(self) -> Lease {
        self.for_purpose(Purpose::Session)
    }

    /// The same connection, lent for the service account's requests.
    pub(super) fn for_service(self) -> Lease {
        self.for_purpose(Purpose::Service)
    }

    /// The same connection, lent for `purpose` instead.
    fn for_purpose(mut self, purpose: Purpose) -> Lease {
        self.purpose = purpose;
        self
    }
}

impl Deref for Lease {
    type Target = UpstreamConn;

    fn deref(&self) -> &UpstreamConn {
        // Taken only in drop.
        self.conn.as_ref().expect("a lease holds its connection")
    }
}

impl DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut UpstreamConn {
        // Taken only in drop.
        self.conn.as_mut().expect("a lease holds its connection")
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.check_in(self.purpose, conn);
        }
    }
}

impl UpstreamPool {
    /// Builds the pool; no connection is made until needed. What its
    /// servers' connections meet is recorded in `metrics`.
    pub fn new(
        cfg: &DirectoryConfig,
        metrics: DirectoryMetrics,
    ) -> Result<Arc<Self>, PoolSetupError> {
        let roots = cfg.ca_file.as_deref().map(tls::load_roots).transpose()?;
        let trust = match (roots, cfg.pins.is_empty()) {
            (Some(roots), true) => Trust::Roots(roots),
            (Some(roots), false) => Trust::RootsAndPins(roots, cfg.pins.clone()),
            (None, false) => Trust::Pins(cfg.pins.clone()),
            (None, true) => Trust::Roots(tls::native_roots()),
        };
        let directory_tls = DirectoryTls::new(trust)?;
        let servers = cfg
            .servers
            .iter()
            .map(|endpoint| {
                UpstreamServer::new(
                    endpoint.clone(),
                    cfg.starttls,
                    directory_tls.clone(),
                    cfg.pool_size,
                    Some(metrics.clone()),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new(UpstreamPool {
            metrics,
            servers,
            settings: PoolSettings {
                connect_timeout: cfg.connect_timeout,
                operation_timeout: cfg.operation_timeout,
                max_idle_per_server: cfg.pool_size,
                max_message_bytes: cfg.max_message_bytes,
            },
            sign_in: ConnStash::new(MAX_IDLE_SIGN_IN),
            service: ConnStash::new(MAX_IDLE_SERVICE),
            account: cfg.service_account.clone(),
        }))
    }

    /// The directory's metrics: what the pool, and what is built on it,
    /// record.
    pub fn metrics(&self) -> &DirectoryMetrics {
        &self.metrics
    }

    pub fn settings(&self) -> PoolSettings {
        self.settings
    }

    pub fn servers(&self) -> &[UpstreamServer] {
        &self.servers
    }

    /// True when at least one server is up.
    pub fn any_up(&self) -> bool {
        self.servers.iter().any(UpstreamServer::is_up)
    }

    /// The service account ldapgate's own searches bind as.
    pub(super) fn account(&self) -> Option<&ServiceAccount> {
        self.account.as_ref()
    }

    /// A connection for one client session: an idle pooled one when there
    /// is one, else a new one, trying servers in order (up ones first).
    pub async fn session_lease(self: &Arc<Self>) -> Result<Lease, NoServerAvailable> {
        let mut order: Vec<usize> = (0..self.servers.len()).collect();
        order.sort_by_key(|i| !self.servers[*i].is_up());
        let mut errors = Vec::new();
        for i in order {
            if let Some(conn) = self.servers[i].idle.take() {
                return Ok(self.lend(Purpose::Session, conn));
            }
            match self.connect(i).await {
                Ok(conn) => return Ok(self.lend(Purpose::Session, conn)),
                Err(e) => {
                    debug!(error = %e, "directory connect failed; trying the next server");
                    errors.push(e);
                }
            }
        }
        Err(NoServerAvailable(errors))
    }

    /// A connection for sign-in binds: one kept from an earlier sign-in,
    /// else one as a client session would get it.
    pub async fn sign_in_lease(self: &Arc<Self>) -> Result<Lease, NoServerAvailable> {
        match self.sign_in.take() {
            Some(conn) => Ok(self.lend(Purpose::SignIn, conn)),
            None => Ok(self.session_lease().await?.for_purpose(Purpose::SignIn)),
        }
    }

    /// An idle service-account connection, if one is kept.
    pub(super) fn idle_service(self: &Arc<Self>) -> Option<Lease> {
        self.service
            .take()
            .map(|conn| self.lend(Purpose::Service, conn))
    }

    fn lend(self: &Arc<Self>, purpose: Purpose, conn: UpstreamConn) -> Lease {
        Lease {
            conn: Some(conn),
            purpose,
            pool: Arc::clone(self),
        }
    }

    async fn connect(&self, i: usize) -> Result<UpstreamConn, UpstreamError> {
        let server = &self.servers[i];
        let result = server.connect(i, &self.settings).await;
        match &result {
            Ok(_) => server.set_up(true, None),
            Err(e) => server.set_up(false, Some(e)),
        }
        result
    }

    /// The idle connections of `purpose` that `conn` would join.
    fn stash(&self, purpose: Purpose, conn: &UpstreamConn) -> Option<&ConnStash> {
        match purpose {
            Purpose::Session => self.servers.get(conn.server_index()).map(|s| &s.idle),
            Purpose::SignIn => Some(&self.sign_in),
            Purpose::Service => Some(&self.service),
        }
    }

    /// Takes a connection back from a lease for `purpose`: kept, reset
    /// (in the background, so that nobody waits for it) and then checked in
    /// again, or closed, as [`checkin::check_in`] decides.
    fn check_in(self: &Arc<Self>, purpose: Purpose, conn: UpstreamConn) {
        let Some(stash) = self.stash(purpose, &conn) else {
            return;
        };
        let state = conn.state();
        let mut verdict = CheckIn::Close;
        let offered = stash.offer(conn, |room| {
            verdict = checkin::check_in(purpose, state, room);
            verdict == CheckIn::Keep
        });
        // Kept, or closed as it drops here, unless it is to be reset.
        let (CheckIn::Reset, Some(mut conn)) = (verdict, offered) else {
            return;
        };
        // Dropped outside a runtime (at exit), it is closed instead.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let pool = Arc::clone(self);
        runtime.spawn(async move {
            match conn.reset().await {
                Ok(()) => pool.check_in(purpose, conn),
                Err(e) => debug!(error = %e, "dropping an upstream connection that did not reset"),
            }
        });
    }

    /// Checks every server once: connect, TLS and pin, and an anonymous
    /// bind. A healthy check's connection warms the pool.
    pub async fn check_health(self: &Arc<Self>) {
        for i in 0..self.servers.len() {
            let result = match self.connect(i).await {
                Ok(mut conn) => conn.reset().await.map(|()| conn),
                Err(e) => Err(e),
            };
            match result {
                Ok(conn) => {
                    self.servers[i].set_up(true, None);
                    self.check_in(Purpose::Session, conn);
                }
                Err(e) => self.servers[i].set_up(false, Some(&e)),
            }
        }
    }

    /// Runs [`Self::check_health`] every `interval` until the pool is dropped.
    pub fn spawn_health_checks(
        self: &Arc<Self>,
        interval: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(pool) = weak.upgrade() else { return };
                pool.check_health().await;
            }
        })
    }
}

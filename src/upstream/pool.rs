//! The upstream pool: warm connections to the directory servers, handed to
//! one client session at a time and reset to anonymous between sessions, so
//! clients that connect, bind and unbind per request cost no TCP or TLS
//! handshake upstream.
//!
//! Servers are tried in configured order, healthy ones first; a server that
//! fails to connect is marked down and the next one tried. Only connection
//! establishment fails over: a request that was sent is never re-sent
//! elsewhere, so an answered bind is never retried on another server.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls_pki_types::ServerName;
use tracing::{debug, info, warn};

use super::connection::UpstreamConn;
use super::{NoServerAvailable, UpstreamError};
use crate::config::DirectoryConfig;
use crate::ldap::url::Endpoint;
use crate::metrics::DirectoryMetrics;
use crate::tls::{self, verifier::Trust, DirectoryTls, TlsFileError};

/// How long an idle pooled connection is kept. Directories drop idle
/// connections on their own schedule (AD after 15 minutes by default); a
/// short bound keeps the pool from handing out connections about to close.
const MAX_IDLE: Duration = Duration::from_secs(60);

/// Idle connections set aside for one purpose (service-account searches,
/// user binds), never handed to client sessions.
pub struct ConnStash {
    max: usize,
    conns: Mutex<Vec<UpstreamConn>>,
}

impl ConnStash {
    pub fn new(max: usize) -> Self {
        ConnStash {
            max,
            conns: Mutex::new(Vec::new()),
        }
    }

    /// An idle connection that is still alive and not too old, if any.
    pub fn take(&self) -> Option<UpstreamConn> {
        let mut conns = self.conns.lock().ok()?;
        while let Some(mut conn) = conns.pop() {
            if conn.idle_since.elapsed() < MAX_IDLE && conn.is_alive() {
                return Some(conn);
            }
        }
        None
    }

    /// Idle connections held now.
    pub fn len(&self) -> usize {
        self.conns.lock().map(|v| v.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps `conn` for later, up to the stash's size.
    pub fn put(&self, mut conn: UpstreamConn) {
        if let Ok(mut conns) = self.conns.lock() {
            if conns.len() < self.max {
                conn.idle_since = Instant::now();
                conns.push(conn);
            }
        }
    }
}

/// One configured directory server and its idle connections.
pub struct UpstreamServer {
    pub endpoint: Endpoint,
    pub starttls: bool,
    pub tls: DirectoryTls,
    pub server_name: ServerName<'static>,
    /// Where its pin failures and certificate expiry are recorded; None for
    /// a server that is no configured directory's (a fingerprint probe),
    /// whose URL must not become a label.
    pub metrics: Option<DirectoryMetrics>,
    up: AtomicBool,
    idle: ConnStash,
    /// Connections to this server open now, idle or in use.
    pub(super) open: Arc<AtomicUsize>,
}

impl UpstreamServer {
    /// A server reached through `tls` when its leg is encrypted.
    pub fn new(
        endpoint: Endpoint,
        starttls: bool,
        tls: DirectoryTls,
        max_idle: usize,
        metrics: Option<DirectoryMetrics>,
    ) -> Result<Self, crate::ldap::url::EndpointError> {
        Ok(UpstreamServer {
            server_name: endpoint.server_name()?,
            metrics,
            endpoint,
            starttls,
            tls,
            // Optimistic until proven otherwise, so the first client is not
            // refused before the first health check.
            up: AtomicBool::new(true),
            idle: ConnStash::new(max_idle),
            open: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// True when the last connection attempt or health check succeeded.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Connections open now: (idle in the pool, in use).
    pub fn occupancy(&self) -> (usize, usize) {
        let idle = self.idle.len();
        (idle, self.open.load(Ordering::Relaxed).saturating_sub(idle))
    }

    fn set_up(&self, up: bool, why: Option<&UpstreamError>) {
        let was = self.up.swap(up, Ordering::Relaxed);
        match (was, up, why) {
            (false, true, _) => info!(server = %self.endpoint, "directory server is up"),
            (true, false, Some(e)) => {
                warn!(server = %self.endpoint, error = %e, "directory server is down")
            }
            _ => {}
        }
    }
}

/// Timeouts and limits every upstream connection obeys.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    pub connect_timeout: Duration,
    pub operation_timeout: Duration,
    pub max_idle_per_server: usize,
    pub max_message_bytes: usize,
}

/// Connections to the directory servers of one directory.
pub struct UpstreamPool {
    servers: Vec<UpstreamServer>,
    settings: PoolSettings,
}

/// Why the pool could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum PoolSetupError {
    #[error("directory.ca_file: {0}")]
    CaFile(#[from] TlsFileError),
    #[error("directory TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    #[error("directory.servers: {0}")]
    ServerName(#[from] crate::ldap::url::EndpointError),
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
                Ok(UpstreamServer::new(
                    endpoint.clone(),
                    cfg.starttls,
                    directory_tls.clone(),
                    cfg.pool_size,
                    Some(metrics.clone()),
                )?)
            })
            .collect::<Result<Vec<_>, PoolSetupError>>()?;
        Ok(Arc::new(UpstreamPool {
            servers,
            settings: PoolSettings {
                connect_timeout: cfg.connect_timeout,
                operation_timeout: cfg.operation_timeout,
                max_idle_per_server: cfg.pool_size,
                max_message_bytes: cfg.max_message_bytes,
            },
        }))
    }

    pub fn settings(&self) -> PoolSettings {
        self.settings
    }

    pub fn servers(&self) -> &[UpstreamServer] {
        &self.servers
    }

    /// The URL of server `index`, for messages.
    pub fn server_name(&self, index: usize) -> String {
        self.servers
            .get(index)
            .map_or_else(|| format!("server #{index}"), |s| s.endpoint.to_string())
    }

    /// True when at least one server is up.
    pub fn any_up(&self) -> bool {
        self.servers.iter().any(UpstreamServer::is_up)
    }

    /// A connection for one client session: an idle pooled one when there
    /// is one, else a new one, trying servers in order (up ones first).
    pub async fn checkout(&self) -> Result<UpstreamConn, NoServerAvailable> {
        let mut order: Vec<usize> = (0..self.servers.len()).collect();
        order.sort_by_key(|i| !self.servers[*i].is_up());
        let mut errors = Vec::new();
        for i in order {
            if let Some(conn) = self.servers[i].idle.take() {
                return Ok(conn);
            }
            match self.connect(i).await {
                Ok(conn) => return Ok(conn),
                Err(e) => {
                    debug!(error = %e, "directory connect failed; trying the next server");
                    errors.push(e);
                }
            }
        }
        Err(NoServerAvailable(errors))
    }

    async fn connect(&self, i: usize) -> Result<UpstreamConn, UpstreamError> {
        let server = &self.servers[i];
        let s = self.settings;
        let result = UpstreamConn::connect(
            server,
            i,
            s.connect_timeout,
            s.operation_timeout,
            s.max_message_bytes,
        )
        .await;
        match &result {
            Ok(_) => server.set_up(true, None),
            Err(e) => server.set_up(false, Some(e)),
        }
        result
    }

    /// Takes a connection back after a client session. With `needs_reset`
    /// (the session bound, or abandoned an operation) it is first reset with
    /// an anonymous bind, in the background so the client does not wait.
    pub fn checkin(self: &Arc<Self>, mut conn: UpstreamConn, needs_reset: bool) {
        if self.servers[conn.server].idle.len() >= self.settings.max_idle_per_server {
            return;
        }
        if !needs_reset {
            self.park(conn);
            return;
        }
        let pool = Arc::clone(self);
        tokio::spawn(async move {
            let name = pool.servers[conn.server].endpoint.to_string();
            let s = pool.settings;
            match conn
                .reset(&name, s.operation_timeout, s.max_message_bytes)
                .await
            {
                Ok(()) => {
                    conn.idle_since = Instant::now();
                    pool.park(conn);
                }
                Err(e) => debug!(error = %e, "dropping an upstream connection that did not reset"),
            }
        });
    }

    fn park(&self, conn: UpstreamConn) {
        self.servers[conn.server].idle.put(conn);
    }

    /// Checks every server once: connect, TLS and pin, and an anonymous
    /// bind. A healthy check's connection warms the pool.
    pub async fn check_health(&self) {
        for i in 0..self.servers.len() {
            let result = match self.connect(i).await {
                Ok(mut conn) => {
                    let name = self.servers[i].endpoint.to_string();
                    let s = self.settings;
                    match conn
                        .reset(&name, s.operation_timeout, s.max_message_bytes)
                        .await
                    {
                        Ok(()) => Ok(conn),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(conn) => {
                    self.servers[i].set_up(true, None);
                    self.park(conn);
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

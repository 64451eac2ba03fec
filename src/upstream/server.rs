//! One configured directory server: its address, how its leg is secured,
//! whether it is up, and its connections (idle ones kept for client
//! sessions, and a count of all open ones).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use rustls_pki_types::ServerName;
use tracing::{info, warn};

use super::stash::ConnStash;
use super::UpstreamError;
use crate::ldap::url::{Endpoint, EndpointError};
use crate::metrics::DirectoryMetrics;
use crate::tls::DirectoryTls;

/// One configured directory server.
pub struct UpstreamServer {
    pub endpoint: Endpoint,
    pub starttls: bool,
    pub tls: DirectoryTls,
    pub server_name: ServerName<'static>,
    /// Where its pin failures and certificate expiry are recorded; None for
    /// a server that is no configured directory's (a fingerprint probe),
    /// whose URL must not become a label.
    pub metrics: Option<DirectoryMetrics>,
    /// The URL, as messages and metrics name the server.
    name: Arc<str>,
    up: AtomicBool,
    /// Idle connections for client sessions.
    pub(super) idle: ConnStash,
    /// Connections to this server open now, idle or in use.
    pub(super) open: Arc<AtomicUsize>,
}

impl UpstreamServer {
    /// A server reached through `tls` when its leg is encrypted, keeping at
    /// most `max_idle` idle connections for client sessions; what its
    /// connections meet is recorded in `metrics`.
    pub fn new(
        endpoint: Endpoint,
        starttls: bool,
        tls: DirectoryTls,
        max_idle: usize,
        metrics: Option<DirectoryMetrics>,
    ) -> Result<Self, EndpointError> {
        Ok(UpstreamServer {
            server_name: endpoint.server_name()?,
            metrics,
            name: endpoint.to_string().into(),
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

    /// The server's URL.
    pub fn name(&self) -> &Arc<str> {
        &self.name
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

    pub(super) fn set_up(&self, up: bool, why: Option<&UpstreamError>) {
        let was = self.up.swap(up, Ordering::Relaxed);
        let directory = self.metrics.as_ref().map_or("", |m| m.directory());
        match (was, up, why) {
            (false, true, _) => {
                info!(%directory, server = %self.endpoint, "directory server is up")
            }
            (true, false, Some(e)) => {
                warn!(%directory, server = %self.endpoint, error = %e, "directory server is down")
            }
            _ => {}
        }
    }
}

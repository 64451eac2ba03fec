//! Accepting client connections: plain LDAP (StartTLS offered when a
//! certificate is configured) and LDAPS, the client allowlist and the
//! connection cap.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use ldap3_proto::proto::LdapResultCode;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::ldap::response;
use prometheus::IntGauge;

use crate::metrics::DirectoryMetrics;
use crate::session::{self, SessionContext};
use crate::stream::LdapStream;

/// Which protocol a listener speaks from the first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// Plain LDAP; StartTLS when the context offers it.
    Ldap,
    /// TLS from the first byte.
    Ldaps,
}

impl ListenerKind {
    pub fn name(self) -> &'static str {
        match self {
            ListenerKind::Ldap => "ldap",
            ListenerKind::Ldaps => "ldaps",
        }
    }
}

/// Who a directory's accept loops let in.
pub struct Admission {
    pub allowed_clients: Vec<IpNet>,
    /// One permit per open client connection of every directory
    /// (`server.max_connections`).
    pub connections: Arc<Semaphore>,
    /// One permit per open client connection of this directory, when it
    /// has a limit of its own (its `max_connections`).
    pub directory_connections: Option<Arc<Semaphore>>,
    pub tls_handshake_timeout: Duration,
}

impl Admission {
    fn allows(&self, peer: &SocketAddr) -> bool {
        let ip = peer.ip().to_canonical();
        self.allowed_clients.is_empty() || self.allowed_clients.iter().any(|n| n.contains(&ip))
    }
}

/// What listeners hand new connections: built from one configuration and
/// replaced on reload, while sessions keep the one they started with.
pub struct Serving {
    pub ctx: Arc<SessionContext>,
    /// The LDAPS (and StartTLS) certificate.
    pub ldaps: Option<TlsAcceptor>,
    pub admission: Arc<Admission>,
}

/// A bound listener, ready to accept.
pub struct BoundListener {
    pub kind: ListenerKind,
    pub addr: SocketAddr,
    listener: TcpListener,
}

/// A listener address that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} ({kind}): {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    pub kind: &'static str,
    pub source: std::io::Error,
}

impl BoundListener {
    pub async fn bind(kind: ListenerKind, addr: SocketAddr) -> Result<Self, BindError> {
        let listener = TcpListener::bind(addr).await.map_err(|source| BindError {
            addr,
            kind: kind.name(),
            source,
        })?;
        let addr = listener.local_addr().unwrap_or(addr);
        Ok(BoundListener {
            kind,
            addr,
            listener,
        })
    }

    /// Accepts until `stop` turns true (the daemon stops, or the
    /// listener's directory is removed); sessions run in `sessions`, each
    /// with what `serving` holds when it is accepted, and hear `shutdown`
    /// (the daemon stops) whatever becomes of the listener.
    pub async fn serve(
        self,
        serving: watch::Receiver<Arc<Serving>>,
        sessions: TaskTracker,
        mut stop: watch::Receiver<bool>,
        shutdown: watch::Receiver<bool>,
    ) {
        let directory = serving.borrow().ctx.metrics.directory().to_owned();
        info!(%directory, addr = %self.addr, listener = self.kind.name(), "listening");
        loop {
            let accepted = tokio::select! {
                a = self.listener.accept() => a,
                _ = stop.wait_for(|s| *s) => break,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly
                    // rather than spin.
                    warn!(addr = %self.addr, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Serving {
                ctx,
                ldaps,
                admission,
            } = &**serving.borrow();
            let (ctx, ldaps, admission) = (ctx.clone(), ldaps.clone(), admission.clone());
            if !admission.allows(&peer) {
                debug!(%peer, "client not in allowed_clients; closed");
                continue;
            }
            let _ = tcp.set_nodelay(true);
            crate::stream::keep_alive(&tcp);
            crate::stream::cap_send_buffer(&tcp);
            let Ok(permit) = admission.connections.clone().try_acquire_owned() else {
                tokio::spawn(refuse_busy(
                    tcp,
                    "too many connections (server.max_connections)",
                ));
                continue;
            };
            let own_permit = match &admission.directory_connections {
                None => None,
                Some(own) => match own.clone().try_acquire_owned() {
                    Ok(p) => Some(p),
                    Err(_) => {
                        let why = "too many connections to this directory (its max_connections)";
                        tokio::spawn(refuse_busy(tcp, why));
                        continue;
                    }
                },
            };
            let ldaps = if self.kind == ListenerKind::Ldaps {
                ldaps
            } else {
                None
            };
            let handshake_timeout = admission.tls_handshake_timeout;
            let active = ActiveConnection::open(self.kind, &ctx.metrics);
            let shutdown = shutdown.clone();
            sessions.spawn(async move {
                let _active = active;
                let stream = match ldaps {
                    None => LdapStream::Plain(tcp),
                    Some(acceptor) => {
                        match timeout(handshake_timeout, acceptor.accept(tcp)).await {
                            Ok(Ok(tls)) => LdapStream::ServerTls(Box::new(tls)),
                            Ok(Err(e)) => {
                                debug!(%peer, error = %e, "LDAPS handshake failed");
                                return;
                            }
                            Err(_) => {
                                debug!(%peer, "LDAPS handshake timed out");
                                return;
                            }
                        }
                    }
                };
                session::serve(ctx, stream, peer, shutdown).await;
                drop((permit, own_permit));
            });
        }
        info!(%directory, addr = %self.addr, "stopped accepting");
    }
}

/// One accepted client connection in its directory's metrics, until it
/// closes.
struct ActiveConnection(Option<IntGauge>);

impl ActiveConnection {
    fn open(kind: ListenerKind, metrics: &DirectoryMetrics) -> Self {
        ActiveConnection(metrics.connection_opened(kind.name()))
    }
}

impl Drop for ActiveConnection {
    fn drop(&mut self) {
        if let Some(active) = &self.0 {
            active.dec();
        }
    }
}

/// Over a `max_connections`: say which, and close.
async fn refuse_busy(mut tcp: TcpStream, why: &str) {
    let notice = response::notice_of_disconnection(LdapResultCode::Busy, why);
    let _ = timeout(Duration::from_secs(1), tcp.write_all(&notice)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_matches_v4_mapped_v6_peers() {
        let a = Admission {
            allowed_clients: vec!["10.0.0.0/8".parse().unwrap()],
            directory_connections: None,
            connections: Arc::new(Semaphore::new(1)),
            tls_handshake_timeout: Duration::from_secs(1),
        };
        assert!(a.allows(&"10.1.2.3:5000".parse().unwrap()));
        assert!(a.allows(&"[::ffff:10.1.2.3]:5000".parse().unwrap()));
        assert!(!a.allows(&"192.168.0.1:5000".parse().unwrap()));
        let open = Admission {
            allowed_clients: vec![],
            ..a
        };
        assert!(open.allows(&"192.168.0.1:5000".parse().unwrap()));
    }
}

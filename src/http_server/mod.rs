//! Bounded HTTP/1.1 serving, shared by the control channel (over TLS) and
//! the metrics endpoint (plain): everything a client that has not made an
//! authenticated request can hold has a limit.
//!
//! - Connections: at most `max_connections`; a full listener closes its
//!   oldest connection that has not completed an authenticated request to
//!   make room ([`slots`]), so stalled peers are reclaimed as soon as the
//!   slot is wanted rather than when their timer runs out.
//! - Time: hyper's header timer runs from the moment a connection waits for
//!   a request (end of the TLS handshake, end of the previous response) to
//!   the end of its header section (`header_timeout`: the wait for the first
//!   byte, keep-alive idle time and slow headers); the body must be complete
//!   `body_timeout` after the header ([`body::DeadlineBody`]).
//! - Memory: a header section is at most [`MAX_HEADER_BYTES`] with at most
//!   [`MAX_HEADERS`] fields (hyper answers 431 beyond); bodies are read with
//!   a byte limit by [`read_body`].
//! - HTTP/1.1 only: a connection that opens with the HTTP/2 preface (prior
//!   knowledge, RFC 9113 §3.3) is closed by hyper without an answer, and TLS
//!   offers no ALPN, so no client negotiates h2 (RFC 7301). HTTP/2 would need
//!   bounds of its own (streams, flow-control windows, HPACK tables) for no
//!   gain on a channel that carries a few small requests.

pub mod body;
pub mod slots;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt;
use tracing::{debug, info, warn};

pub use body::{read_body, BodyError};
pub use slots::Admission;

use crate::config::HttpLimits;
use crate::metrics::metrics;
use slots::{Acquired, Slots};

/// The largest request header section (request line and fields), in bytes:
/// hyper's read buffer is capped at this (its minimum, 8 KiB, is below) and a
/// longer header is answered 431 (RFC 6585 §5).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Header fields per request at most; hyper answers 431 beyond.
pub const MAX_HEADERS: usize = 64;

/// The client address of a request, put in its extensions by the server.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// A bound HTTP listener and its connection slots.
pub struct HttpListener {
    listener: TcpListener,
    pub addr: SocketAddr,
    /// `control` or `metrics`: the `listener` label and the log's name.
    name: &'static str,
    slots: Arc<Slots>,
}

impl HttpListener {
    pub async fn bind(
        addr: SocketAddr,
        name: &'static str,
        limits: &HttpLimits,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr().unwrap_or(addr);
        Ok(HttpListener {
            listener,
            addr,
            name,
            slots: Slots::new(limits.max_connections),
        })
    }

    /// Accepts until `stop` turns true. Each connection takes a slot and
    /// runs `connection(tcp, peer, admission)` until it ends or its slot is
    /// taken for a newer connection (which closes the socket).
    pub async fn serve<F, Fut>(self, mut stop: watch::Receiver<bool>, mut connection: F)
    where
        F: FnMut(TcpStream, SocketAddr, Admission) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let name = self.name;
        info!(addr = %self.addr, listener = name, "HTTP listener ready");
        loop {
            let (tcp, peer) = tokio::select! {
                a = self.listener.accept() => match a {
                    Ok(a) => a,
                    Err(e) => {
                        warn!(listener = name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                // The guard wait_for returns is not Send; drop it inside.
                _ = async { let _ = stop.wait_for(|s| *s).await; } => break,
            };
            let m = metrics();
            let Some((slot, acquired)) = self.slots.acquire() else {
                m.connection_slots_full_total
                    .with_label_values(&[name, "new"])
                    .inc();
                debug!(%peer, listener = name, "max_connections reached and every connection has completed an authenticated request; new connection closed");
                continue;
            };
            if acquired == Acquired::Evicted {
                m.connection_slots_full_total
                    .with_label_values(&[name, "oldest"])
                    .inc();
                debug!(%peer, listener = name, "max_connections reached: the oldest connection without an authenticated request was closed");
            }
            let _ = tcp.set_nodelay(true);
            crate::stream::cap_send_buffer(&tcp);
            // No directory's: the label is empty (absent, to Prometheus).
            m.connections_total.with_label_values(&["", name]).inc();
            let active = m.connections_active.with_label_values(&["", name]);
            active.inc();
            let served = connection(tcp, peer, slot.admission());
            tokio::spawn(async move {
                tokio::select! {
                    () = slot.evicted() => debug!(%peer, listener = name, "connection closed to make room"),
                    () = served => {}
                }
                active.dec();
                drop(slot);
            });
        }
    }
}

/// Serves HTTP/1.1 requests from `peer` on `io` with `router` until the
/// client closes, a limit of `limits` is hit, or `stop` turns true (then an
/// idle connection closes at once and a busy one after its response).
/// Every request carries [`ClientAddr`] and the connection's [`Admission`],
/// and its body is a [`body::DeadlineBody`].
pub async fn serve_connection<I>(
    io: I,
    router: Router,
    peer: SocketAddr,
    admission: Admission,
    limits: &HttpLimits,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let body_timeout = limits.body_timeout;
    let service = router.map_request(move |mut req: axum::http::Request<Incoming>| {
        req.extensions_mut().insert(ClientAddr(peer));
        req.extensions_mut().insert(admission.clone());
        req.map(|b| axum::body::Body::new(body::DeadlineBody::new(b, body_timeout)))
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS);
    let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
    tokio::pin!(conn);
    let served = tokio::select! {
        r = conn.as_mut() => r,
        _ = async { let _ = stop.wait_for(|s| *s).await; } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = served {
        debug!(%peer, error = %e, "HTTP connection ended with an error");
    }
}

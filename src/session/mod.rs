//! One client connection, from its first PDU to its last.
//!
//! The session frames client PDUs, asks [`policy`] what to do with each,
//! and forwards the allowed ones byte-for-byte on an upstream connection it
//! holds for its lifetime (so message IDs need no rewriting); responses
//! stream back PDU by PDU as they arrive. The connection is a lease of the
//! pool's: the session notes on it what it may carry over (a bind, abandoned
//! operations, an unknown state), and the pool's check-in rule decides at
//! the end whether it is kept, reset or closed.

mod binds;
pub mod budget;
mod deadline;
mod dispatch;
mod forward;
pub mod policy;
pub mod responses;
mod root_dse;
mod signin;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use ldap3_proto::proto::LdapResultCode;
use tokio::sync::watch;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_rustls::TlsAcceptor;
use tracing::debug;

use crate::auth::{Authenticator, BindTicket};
use crate::ber::{self, FrameError};
use crate::ldap::response;
use crate::metrics::DirectoryMetrics;
use crate::stream::duplex::{Outbox, Step, MAX_QUEUED};
use crate::stream::{Framed, LdapStream};
use crate::upstream::{Lease, UpstreamPool};
use budget::{PduBudget, Reservation};
use policy::Policy;
use responses::{InFlight, Piece, StreamEnd};
use root_dse::Served;

/// Everything sessions of one listener share.
pub struct SessionContext {
    /// The directory's metrics, where every operation is counted.
    pub metrics: DirectoryMetrics,
    pub policy: Policy,
    pub pool: Arc<UpstreamPool>,
    /// Resolves sign-in IDs in bind names (when `rewrite_ldap_binds`) and
    /// limits binds by DN: one identity whatever name reaches it.
    pub authenticator: Arc<Authenticator>,
    /// Offered through StartTLS when set.
    pub starttls: Option<TlsAcceptor>,
    pub limits: SessionLimits,
    /// Shared by every session of the daemon: what unfinished large PDUs
    /// may hold in all.
    pub budget: PduBudget,
}

/// Sizes and timeouts a session enforces.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// Largest PDU from a client that has bound (bytes).
    pub client_max_message: usize,
    /// Largest PDU from a client that has not bound successfully (bytes).
    pub before_bind_max_message: usize,
    /// How long one PDU may take to arrive once its first byte has.
    pub pdu_timeout: Duration,
    /// How long answers may wait with none taken by the client.
    pub send_timeout: Duration,
    pub upstream_max_message: usize,
    pub idle_timeout: Duration,
    pub operation_timeout: Duration,
    pub tls_handshake_timeout: Duration,
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    Unbind,
    ClientClosed,
    ClientError(String),
    /// The client broke the protocol; it was told why.
    ProtocolViolation(String),
    IdleTimeout,
    /// ldapgate is stopping; the client was told.
    Shutdown,
    /// A PDU was not completed within `pdu_timeout`.
    PduTimeout,
    UpstreamTimeout,
    UpstreamClosed,
    UpstreamError(String),
    /// Data was pipelined behind a StartTLS request.
    StartTlsInjection,
    TlsHandshakeFailed(String),
}

enum Flow {
    Continue,
    StartTls,
    End(SessionEnd),
}

/// Read buffer of a client connection, bytes; a large PDU grows it once
/// its length is known ([`budget`]).
const CLIENT_READ_BUFFER: usize = 8 * 1024;

/// At most this long is spent handing the client what is queued for it
/// (a Notice of Disconnection among it) when a session ends.
const FAREWELL_LIMIT: Duration = Duration::from_secs(5);

/// Serves one client connection to its end.
///
/// When `shutdown` turns true the session reads no more requests, lets
/// what is in flight finish (persistent searches excepted: they never
/// would), then tells the client in a Notice of Disconnection (RFC 4511
/// §4.4.1) and closes.
pub async fn serve(
    ctx: Arc<SessionContext>,
    stream: LdapStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) -> SessionEnd {
    // StartTLS upgrades a plain connection only.
    let plain = matches!(stream, LdapStream::Plain(_));
    let mut session = Session::new(ctx, peer, plain, shutdown);
    let mut client = Framed::new(stream, CLIENT_READ_BUFFER);
    let end = loop {
        match session.run(&mut client).await {
            Flow::End(end) => break end,
            Flow::Continue => continue,
            Flow::StartTls => {
                let (Some(LdapStream::Plain(tcp)), Some(acceptor)) =
                    (client.into_stream(), session.ctx.starttls.clone())
                else {
                    // run() only asks for an upgrade of a plain stream when
                    // StartTLS is configured, and with nothing buffered.
                    break SessionEnd::TlsHandshakeFailed("no plaintext stream to upgrade".into());
                };
                let limit = session.ctx.limits.tls_handshake_timeout;
                match timeout(limit, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        client =
                            Framed::new(LdapStream::ServerTls(Box::new(tls)), CLIENT_READ_BUFFER)
                    }
                    Ok(Err(e)) => break SessionEnd::TlsHandshakeFailed(e.to_string()),
                    Err(_) => break SessionEnd::TlsHandshakeFailed("handshake timed out".into()),
                }
            }
        }
    };
    debug!(%peer, ?end, "session ended");
    session.replace_upstream(None);
    end
}

struct Session {
    ctx: Arc<SessionContext>,
    peer: SocketAddr,
    /// Responses waiting for the client to take them.
    to_client: Outbox,
    /// Requests waiting for the directory to take them.
    to_upstream: Outbox,
    /// The directory connection, opened on the first request forwarded.
    upstream: Option<Lease>,
    inflight: InFlight,
    last_client_activity: Instant,
    last_upstream_progress: Instant,
    /// A bind on its way to the directory. Until its response arrives the
    /// client's next requests wait (RFC 4511 §4.2.1), so that a pipelined
    /// burst of binds meets the lockout its first answers cause.
    bind_pending: Option<(i32, Option<BindTicket>)>,
    /// The upstream connection may be bound as someone (a named bind
    /// succeeded, or its outcome is not known yet): a refused bind must
    /// then make it anonymous. A failed bind leaves it anonymous already.
    upstream_bound: bool,
    /// Binds by DN whose result came and whose counting is due: the
    /// ticket, the result code and the diagnostic.
    settling: Vec<(BindTicket, i64, String)>,
    /// A named bind succeeded and no bind failed since: the client may
    /// send PDUs up to `client_max_message` instead of
    /// `before_bind_max_message`.
    authenticated: bool,
    /// When the first byte of the PDU still arriving came.
    unfinished_since: Option<Instant>,
    /// The budget held for the large PDU still arriving.
    reservation: Option<Reservation>,
    /// Turns true when ldapgate stops.
    shutdown: watch::Receiver<bool>,
    /// ldapgate is stopping: no more requests are read, and the session
    /// ends once nothing it must wait for is in flight.
    draining: bool,
}

impl Session {
    fn new(
        ctx: Arc<SessionContext>,
        peer: SocketAddr,
        plain: bool,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let now = Instant::now();
        let served = Served {
            starttls: plain && ctx.starttls.is_some(),
            read_only: ctx.policy.read_only,
        };
        Session {
            ctx,
            peer,
            to_client: Outbox::default(),
            to_upstream: Outbox::default(),
            upstream: None,
            inflight: InFlight::new(served),
            last_client_activity: now,
            last_upstream_progress: now,
            bind_pending: None,
            upstream_bound: false,
            settling: Vec::new(),
            authenticated: false,
            unfinished_since: None,
            reservation: None,
            shutdown,
            draining: false,
        }
    }

    /// Gives the upstream connection back to the pool, or puts `next` (a
    /// sign-in's connection) in its place: one with operations of this
    /// session still in flight, or requests not yet sent, is unsettled.
    fn replace_upstream(&mut self, next: Option<Lease>) {
        if let Some(mut old) = std::mem::replace(&mut self.upstream, next) {
            if !self.inflight.is_idle() || !self.to_upstream.is_settled() {
                old.note_unsettled();
            }
        }
    }

    /// Operations on the upstream connection were abandoned: their late
    /// results may still come.
    fn upstream_abandoned(&mut self) {
        if let Some(conn) = self.upstream.as_mut() {
            conn.note_abandoned();
        }
    }

    /// The upstream connection is in a state no other client may inherit.
    fn upstream_unsettled(&mut self) {
        if let Some(conn) = self.upstream.as_mut() {
            conn.note_unsettled();
        }
    }

    /// Runs until the session ends or asks for a TLS upgrade. What is
    /// queued for the client when it ends (a Notice of Disconnection among
    /// it) goes out first, within [`FAREWELL_LIMIT`].
    async fn run(&mut self, client: &mut Framed) -> Flow {
        let flow = self.exchange(client).await;
        match &flow {
            Flow::End(_) => {
                let limit = FAREWELL_LIMIT.min(self.ctx.limits.idle_timeout);
                let _ = client.drain(&mut self.to_client, limit).await;
            }
            Flow::StartTls => {
                // The StartTLS response goes out in the clear, before the
                // handshake.
                let limit = self.ctx.limits.tls_handshake_timeout;
                if let Err(e) = client.drain(&mut self.to_client, limit).await {
                    return Flow::End(SessionEnd::ClientError(e.to_string()));
                }
            }
            Flow::Continue => {}
        }
        flow
    }

    /// Moves PDUs both ways, both legs full-duplex ([`crate::stream::duplex`]), until the
    /// session ends or asks for a TLS upgrade.
    async fn exchange(&mut self, client: &mut Framed) -> Flow {
        loop {
            match self.drain_client(client).await {
                Flow::Continue => {}
                other => return other,
            }
            if self.draining && !self.inflight.awaits_answer() {
                self.notify(LdapResultCode::Unavailable, "ldapgate is shutting down");
                return Flow::End(SessionEnd::Shutdown);
            }
            // Backpressure: a peer that does not take what is queued for it
            // stops the reading that would add to it, never the reading of
            // the other direction (an Abandon must get through).
            let may_read_client = !self.draining
                && self.bind_pending.is_none()
                && self.to_upstream.len() < MAX_QUEUED
                && self.to_client.len() < 2 * MAX_QUEUED;
            // A large PDU is read on only once the budget holds its length,
            // asked for only while the client is being read.
            let unreserved = self.unreserved_pdu(client).filter(|_| may_read_client);
            let read_client = may_read_client && unreserved.is_none();
            let read_upstream = self.to_client.len() < MAX_QUEUED;
            let deadline = self.deadline();
            self.make_room_for_client(client);
            if let Some(conn) = self.upstream.as_mut() {
                conn.reserve_for_read();
            }
            let budget = self.ctx.budget.clone();
            let draining = self.draining;
            let Session {
                upstream,
                to_client,
                to_upstream,
                shutdown,
                ..
            } = self;
            let client_busy = read_client || !to_client.is_settled();
            let upstream_busy = read_upstream || !to_upstream.is_settled();
            tokio::select! {
                step = client.step(read_client, to_client), if client_busy => match step {
                    Step::Read(Ok(0)) => return Flow::End(SessionEnd::ClientClosed),
                    // Activity is a whole PDU (drain_client): bytes alone do
                    // not keep a connection open.
                    Step::Read(Ok(_)) => {}
                    Step::Wrote(Ok(())) => {
                        if !read_upstream {
                            // The directory waited on the client, not the
                            // other way round: its clock restarts.
                            self.last_upstream_progress = Instant::now();
                        }
                    }
                    Step::Read(Err(e)) | Step::Wrote(Err(e)) => {
                        return Flow::End(SessionEnd::ClientError(e.to_string()))
                    }
                },
                step = upstream_step(upstream, read_upstream, to_upstream), if upstream_busy => match step {
                    Step::Read(Ok(0)) => {
                        self.upstream_unsettled();
                        if let Flow::End(end) = self.forward_responses() {
                            return Flow::End(end);
                        }
                        self.notify(LdapResultCode::Unavailable, "the directory closed the connection");
                        return Flow::End(SessionEnd::UpstreamClosed);
                    }
                    Step::Read(Ok(_)) => {
                        self.last_upstream_progress = Instant::now();
                        if let Flow::End(end) = self.forward_responses() {
                            return Flow::End(end);
                        }
                        self.settle_binds().await;
                    }
                    Step::Wrote(Ok(())) => {}
                    Step::Read(Err(e)) | Step::Wrote(Err(e)) => {
                        self.upstream_unsettled();
                        self.notify(LdapResultCode::Unavailable, "lost the connection to the directory");
                        return Flow::End(SessionEnd::UpstreamError(e.to_string()));
                    }
                },
                // The guard wait_for returns is not Send: dropped inside.
                _ = async { let _ = shutdown.wait_for(|stop| *stop).await; }, if !draining => {
                    self.draining = true;
                }
                reserved = async { budget.reserve(unreserved.unwrap_or(0)).await }, if unreserved.is_some() => {
                    // Never None: the limits keep a PDU under 4 GiB.
                    self.reservation = reserved;
                }
                _ = sleep_until(deadline.map_or_else(Instant::now, |(at, _)| at)), if deadline.is_some() => {
                    if let Some(flow) = deadline.and_then(|(_, why)| self.expire(why)) {
                        return flow;
                    }
                }
            }
        }
    }

    /// Handles every complete PDU the client has sent.
    async fn drain_client(&mut self, client: &mut Framed) -> Flow {
        let client_tls = client.get_ref().is_tls();
        let timed_before = self.inflight.awaits_answer();
        let mut to_upstream = BytesMut::new();
        let mut to_client = Vec::new();
        let flow = loop {
            if self.bind_pending.is_some() {
                break Flow::Continue;
            }
            let header = match client.peek_pdu(self.pdu_limit()) {
                Ok(h) => h,
                Err(FrameError::Incomplete) => break Flow::Continue,
                Err(e) => {
                    let (code, key) = match e {
                        FrameError::TooLarge { .. } if self.authenticated => (
                            LdapResultCode::AdminLimitExceeded,
                            " (server.max_message_bytes)",
                        ),
                        FrameError::TooLarge { .. } => (
                            LdapResultCode::AdminLimitExceeded,
                            " before a successful bind (server.max_message_bytes_before_bind)",
                        ),
                        _ => (LdapResultCode::ProtocolError, ""),
                    };
                    let reason = format!("{e}{key}");
                    to_client.extend(response::notice_of_disconnection(code, &reason));
                    break Flow::End(SessionEnd::ProtocolViolation(reason));
                }
            };
            let pdu = client.take(header.len);
            self.pdu_arrived(client, header.len);
            match self
                .handle_request(
                    &pdu,
                    header.msgid,
                    header.op_tag,
                    client_tls,
                    &mut to_upstream,
                    &mut to_client,
                )
                .await
            {
                Flow::Continue => {}
                other => break other,
            }
        };
        if !to_upstream.is_empty() && self.upstream.is_some() {
            self.to_upstream.push(&to_upstream);
            if !timed_before && self.inflight.awaits_answer() {
                // The operation timer starts when the first request the
                // directory must answer goes out (a quiet persistent search
                // beside it is no sign of a dead directory).
                self.last_upstream_progress = Instant::now();
            }
        }
        self.to_client.push(&to_client);
        let unfinished = ber::unfinished_tail(client.buffered());
        self.unfinished_since = match (unfinished, self.unfinished_since) {
            (false, _) => None,
            (true, since) => Some(since.unwrap_or_else(Instant::now)),
        };
        if let Flow::StartTls = flow {
            if client.has_unread() {
                // The client sent more after StartTLS, before the handshake:
                // those bytes would be taken as plaintext commands from
                // before TLS (the STARTTLS injection class). Close.
                return Flow::End(SessionEnd::StartTlsInjection);
            }
        }
        flow
    }

    /// Queues for the client every complete PDU the directory has sent,
    /// unchanged except where a substitute response is due.
    fn forward_responses(&mut self) -> Flow {
        let limit = self.ctx.limits.upstream_max_message;
        let Some(conn) = self.upstream.as_mut() else {
            return Flow::Continue;
        };
        // Only searches that dereference aliases have their entries checked:
        // the scope is fetched for them alone, not on every read.
        let scope = (!self.inflight.scoped.is_empty()).then(|| self.ctx.policy.dn_scope.current());
        let in_scope = |dn: &[u8]| scope.as_ref().is_some_and(|s| s.holds(dn));
        let routing = responses::route(conn.buffered(), limit, &mut self.inflight, &in_scope);
        for done in &routing.finished {
            // A response whose code cannot be read is forwarded as it is;
            // it counts as "other".
            let code = done.code.unwrap_or(-1);
            self.ctx
                .metrics
                .operation(done.started.op, code, done.started.at.elapsed());
            if self
                .bind_pending
                .as_ref()
                .is_some_and(|(id, _)| *id == done.msgid)
            {
                if let Some((_, ticket)) = self.bind_pending.take() {
                    // RFC 4511 §4.2.1: a failed bind leaves the connection anonymous.
                    self.upstream_bound = code == 0 && ticket.is_some();
                    self.authenticated = self.upstream_bound;
                    if let Some(ticket) = ticket {
                        self.settling.push((ticket, code, done.diagnostic.clone()));
                    }
                }
            }
        }
        for piece in routing.pieces {
            match piece {
                Piece::Forward(n) => {
                    self.to_client.push(&conn.buffered()[..n]);
                    conn.skip(n);
                }
                Piece::Skip(n) => conn.skip(n),
                Piece::Own(bytes) => self.to_client.push(&bytes),
            }
        }
        match routing.end {
            None => Flow::Continue,
            Some(StreamEnd::Unsolicited) => {
                conn.note_unsettled();
                Flow::End(SessionEnd::UpstreamClosed)
            }
            Some(StreamEnd::Malformed(reason)) => {
                conn.note_unsettled();
                self.notify(LdapResultCode::Unavailable, &reason);
                Flow::End(SessionEnd::UpstreamError(reason))
            }
        }
    }

    /// Counts the binds by DN whose results came, before the client's next
    /// request is read.
    async fn settle_binds(&mut self) {
        for (ticket, code, diagnostic) in std::mem::take(&mut self.settling) {
            self.ctx
                .authenticator
                .settle_dn_bind(ticket, code, &diagnostic)
                .await;
        }
    }

    /// Queues a Notice of Disconnection telling the client why the
    /// connection is closing.
    fn notify(&mut self, code: LdapResultCode, message: &str) {
        self.to_client
            .push(&response::notice_of_disconnection(code, message));
    }
}

/// Records an operation ldapgate answered itself.
fn record(metrics: &DirectoryMetrics, op: &str, code: &LdapResultCode, received: Instant) {
    metrics.operation(op, code.clone() as i64, received.elapsed());
}

fn bind_response(msgid: i32, code: LdapResultCode, message: &str) -> Vec<u8> {
    response::result_for(crate::ldap::tag::BIND_REQUEST, msgid, code, message).unwrap_or_default()
}

fn violation(to_client: &mut Vec<u8>, reason: String) -> Flow {
    to_client.extend(response::notice_of_disconnection(
        LdapResultCode::ProtocolError,
        &reason,
    ));
    Flow::End(SessionEnd::ProtocolViolation(reason))
}

/// One I/O step on the upstream connection, or never when there is none.
async fn upstream_step(upstream: &mut Option<Lease>, read: bool, out: &mut Outbox) -> Step {
    match upstream {
        Some(conn) => conn.step(read, out).await,
        None => std::future::pending().await,
    }
}

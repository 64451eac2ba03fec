//! One client connection, from its first PDU to its last.
//!
//! The session frames client PDUs, asks [`policy`] what to do with each,
//! and forwards the allowed ones byte-for-byte on an upstream connection it
//! holds for its lifetime (so message IDs need no rewriting); responses
//! stream back PDU by PDU as they arrive. At the end the upstream connection
//! returns to the pool if it is clean.

mod binds;
pub mod policy;
pub mod responses;
mod root_dse;
mod signin;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use ldap3_proto::proto::LdapResultCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{sleep_until, timeout, Instant};
use tokio_rustls::TlsAcceptor;
use tracing::debug;

use crate::auth::{Authenticator, BindTicket};
use crate::ber::{self, FrameError};
use crate::ldap::request::{self, Request, Scope};
use crate::ldap::{oid, response};
use crate::metrics::metrics;
use crate::stream::LdapStream;
use crate::upstream::{UpstreamConn, UpstreamPool};
use policy::{Policy, Verdict};
use responses::{InFlight, Piece, StreamEnd};
use root_dse::Served;

/// Everything sessions of one listener share.
pub struct SessionContext {
    pub policy: Policy,
    pub pool: Arc<UpstreamPool>,
    /// Resolves sign-in IDs in bind names (when `rewrite_ldap_binds`) and
    /// limits binds by DN: one identity whatever name reaches it.
    pub authenticator: Arc<Authenticator>,
    /// Offered through StartTLS when set.
    pub starttls: Option<TlsAcceptor>,
    pub limits: SessionLimits,
}

/// Sizes and timeouts a session enforces.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    pub client_max_message: usize,
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

/// Serves one client connection to its end.
pub async fn serve(ctx: Arc<SessionContext>, stream: LdapStream, peer: SocketAddr) -> SessionEnd {
    // StartTLS upgrades a plain connection only.
    let plain = matches!(stream, LdapStream::Plain(_));
    let mut session = Session::new(ctx, peer, plain);
    let mut client = stream;
    let end = loop {
        match session.run(&mut client).await {
            Flow::End(end) => break end,
            Flow::Continue => continue,
            Flow::StartTls => {
                let (LdapStream::Plain(tcp), Some(acceptor)) =
                    (client, session.ctx.starttls.clone())
                else {
                    // run() only asks for an upgrade of a plain stream when
                    // StartTLS is configured.
                    break SessionEnd::TlsHandshakeFailed("no plaintext stream to upgrade".into());
                };
                let limit = session.ctx.limits.tls_handshake_timeout;
                match timeout(limit, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => client = LdapStream::ServerTls(Box::new(tls)),
                    Ok(Err(e)) => break SessionEnd::TlsHandshakeFailed(e.to_string()),
                    Err(_) => break SessionEnd::TlsHandshakeFailed("handshake timed out".into()),
                }
            }
        }
    };
    debug!(%peer, ?end, "session ended");
    session.release();
    end
}

struct Session {
    ctx: Arc<SessionContext>,
    peer: SocketAddr,
    /// Bytes from the client not yet framed.
    cbuf: BytesMut,
    upstream: Option<UpstreamConn>,
    inflight: InFlight,
    /// The upstream connection must be reset before another client uses it:
    /// a non-anonymous bind went up (its identity must not leak), or an
    /// abandoned operation may still send late results (the reset bind is a
    /// barrier that waits them out).
    needs_reset: bool,
    /// False once the upstream connection carries state another client must
    /// not inherit, or is in an unknown state.
    reusable: bool,
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
}

impl Session {
    fn new(ctx: Arc<SessionContext>, peer: SocketAddr, plain: bool) -> Self {
        let now = Instant::now();
        let served = Served {
            starttls: plain && ctx.starttls.is_some(),
            read_only: ctx.policy.read_only,
        };
        Session {
            ctx,
            peer,
            cbuf: BytesMut::with_capacity(8 * 1024),
            upstream: None,
            inflight: InFlight::new(served),
            needs_reset: false,
            reusable: true,
            last_client_activity: now,
            last_upstream_progress: now,
            bind_pending: None,
            upstream_bound: false,
        }
    }

    /// Returns the upstream connection to the pool when nothing of this
    /// session is still in flight on it.
    fn release(&mut self) {
        if let Some(conn) = self.upstream.take() {
            if self.reusable && self.inflight.is_idle() && conn.buf.is_empty() {
                self.ctx.pool.checkin(conn, self.needs_reset);
            }
        }
    }

    /// Runs until the session ends or asks for a TLS upgrade.
    async fn run(&mut self, client: &mut LdapStream) -> Flow {
        loop {
            match self.drain_client(client).await {
                Flow::Continue => {}
                other => return other,
            }
            // A persistent search alone is quiet by design: no deadline;
            // TCP keepalive finds a vanished peer on either leg.
            let deadline = if self.inflight.outstanding.is_empty() {
                Some(self.last_client_activity + self.ctx.limits.idle_timeout)
            } else if self.inflight.awaits_answer() {
                Some(self.last_upstream_progress + self.ctx.limits.operation_timeout)
            } else {
                None
            };
            let until = deadline.unwrap_or_else(Instant::now);
            reserve_for_read(&mut self.cbuf);
            if let Some(conn) = self.upstream.as_mut() {
                reserve_for_read(&mut conn.buf);
            }
            let paused = self.bind_pending.is_some();
            let Session { cbuf, upstream, .. } = self;
            tokio::select! {
                read = client.read_buf(cbuf), if !paused => match read {
                    Ok(0) => return Flow::End(SessionEnd::ClientClosed),
                    Ok(_) => self.last_client_activity = Instant::now(),
                    Err(e) => return Flow::End(SessionEnd::ClientError(e.to_string())),
                },
                read = read_upstream(upstream) => match read {
                    Ok(0) => {
                        self.reusable = false;
                        let flow = self.forward_responses(client).await;
                        if !matches!(flow, Flow::Continue) {
                            return flow;
                        }
                        self.notify(client, LdapResultCode::Unavailable, "the directory closed the connection").await;
                        return Flow::End(SessionEnd::UpstreamClosed);
                    }
                    Ok(_) => {
                        self.last_upstream_progress = Instant::now();
                        match self.forward_responses(client).await {
                            Flow::Continue => {}
                            other => return other,
                        }
                    }
                    Err(e) => {
                        self.reusable = false;
                        self.notify(client, LdapResultCode::Unavailable, "lost the connection to the directory").await;
                        return Flow::End(SessionEnd::UpstreamError(e.to_string()));
                    }
                },
                _ = sleep_until(until), if deadline.is_some() => {
                    if self.inflight.outstanding.is_empty() {
                        self.notify(client, LdapResultCode::Unavailable, "idle timeout").await;
                        return Flow::End(SessionEnd::IdleTimeout);
                    }
                    self.reusable = false;
                    self.notify(client, LdapResultCode::Unavailable, "the directory did not answer within operation_timeout").await;
                    return Flow::End(SessionEnd::UpstreamTimeout);
                }
            }
        }
    }

    /// Handles every complete PDU the client has sent.
    async fn drain_client(&mut self, client: &mut LdapStream) -> Flow {
        let mut to_upstream = BytesMut::new();
        let mut to_client = Vec::new();
        let flow = loop {
            if self.bind_pending.is_some() {
                break Flow::Continue;
            }
            let header = match ber::peek_pdu(&self.cbuf, self.ctx.limits.client_max_message) {
                Ok(h) => h,
                Err(FrameError::Incomplete) => break Flow::Continue,
                Err(e) => {
                    let code = match e {
                        FrameError::TooLarge { .. } => LdapResultCode::AdminLimitExceeded,
                        _ => LdapResultCode::ProtocolError,
                    };
                    let reason = e.to_string();
                    to_client.extend(response::notice_of_disconnection(code, &reason));
                    break Flow::End(SessionEnd::ProtocolViolation(reason));
                }
            };
            let pdu = self.cbuf.split_to(header.len).freeze();
            match self
                .handle_request(
                    &pdu,
                    header.msgid,
                    header.op_tag,
                    client.is_tls(),
                    &mut to_upstream,
                    &mut to_client,
                )
                .await
            {
                Flow::Continue => {}
                other => break other,
            }
        };
        if !to_upstream.is_empty() {
            if let Some(conn) = self.upstream.as_mut() {
                let sent = async {
                    conn.stream.write_all(&to_upstream).await?;
                    conn.stream.flush().await
                };
                if let Err(e) = sent.await {
                    self.reusable = false;
                    to_client.extend(response::notice_of_disconnection(
                        LdapResultCode::Unavailable,
                        "lost the connection to the directory",
                    ));
                    let _ = write_client(client, &to_client).await;
                    return Flow::End(SessionEnd::UpstreamError(e.to_string()));
                }
                if self.inflight.outstanding.len() == 1 {
                    // The operation timer starts when the first request goes out.
                    self.last_upstream_progress = Instant::now();
                }
            }
        }
        if !to_client.is_empty() {
            if let Err(e) = write_client(client, &to_client).await {
                return Flow::End(SessionEnd::ClientError(e.to_string()));
            }
        }
        if let Flow::StartTls = flow {
            if !self.cbuf.is_empty() {
                // The client sent more after StartTLS, before the handshake:
                // those bytes would be taken as plaintext commands from
                // before TLS (the STARTTLS injection class). Close.
                return Flow::End(SessionEnd::StartTlsInjection);
            }
        }
        flow
    }

    #[allow(clippy::too_many_arguments)]
    async fn handle_request(
        &mut self,
        pdu: &[u8],
        msgid: i32,
        op_tag: u8,
        client_tls: bool,
        to_upstream: &mut BytesMut,
        to_client: &mut Vec<u8>,
    ) -> Flow {
        let received = Instant::now();
        let req = match request::parse(pdu) {
            Ok(req) if msgid != 0 => req,
            Ok(_) => return violation(to_client, "message ID 0 is reserved for the server".into()),
            Err(e) => return violation(to_client, format!("malformed request: {e}")),
        };
        let op = req.name();
        match self.ctx.policy.decide(&req, client_tls) {
            Verdict::Unbind => Flow::End(SessionEnd::Unbind),
            Verdict::StartTls => {
                let refusal = if client_tls {
                    Some((
                        LdapResultCode::OperationsError,
                        "TLS is already established",
                    ))
                } else if self.ctx.starttls.is_none() {
                    Some((
                        LdapResultCode::ProtocolError,
                        "StartTLS is not configured (server.tls_cert)",
                    ))
                } else if !self.inflight.outstanding.is_empty() {
                    // RFC 4511 §4.14.1: no StartTLS while operations are outstanding.
                    Some((
                        LdapResultCode::OperationsError,
                        "operations are outstanding",
                    ))
                } else {
                    None
                };
                let code = refusal
                    .as_ref()
                    .map_or(LdapResultCode::Success, |(code, _)| code.clone());
                record(op, &code, received);
                match refusal {
                    Some((code, message)) => {
                        to_client.extend(response::start_tls_response(msgid, code, message));
                        Flow::Continue
                    }
                    None => {
                        to_client.extend(response::start_tls_response(
                            msgid,
                            LdapResultCode::Success,
                            "",
                        ));
                        Flow::StartTls
                    }
                }
            }
            Verdict::Refuse { code, message } => {
                debug!(peer = %self.peer, op, ?code, %message, "refused");
                record(op, &code, received);
                to_client.extend(
                    response::result_for(op_tag, msgid, code, &message).unwrap_or_default(),
                );
                Flow::Continue
            }
            Verdict::ResolveBind => {
                if let Some(oid) = request::first_critical_control(pdu) {
                    // ldapgate performs this bind itself and implements no
                    // bind control (RFC 4511 §4.1.11).
                    let code = LdapResultCode::UnavailableCriticalExtension;
                    let message = format!(
                        "critical control {} is not supported on a bind by sign-in ID",
                        String::from_utf8_lossy(oid)
                    );
                    record(op, &code, received);
                    self.refuse_bind(msgid, code, &message, to_upstream, to_client);
                    return Flow::Continue;
                }
                let answer = self.sign_in(&req, msgid, pdu).await;
                metrics().operation(op, answer.code, received.elapsed());
                if answer.bound {
                    to_client.extend(answer.response);
                } else {
                    self.answer_failed_bind(msgid, answer.response, to_upstream, to_client);
                }
                Flow::Continue
            }
            Verdict::RefuseBind { code, message } => {
                debug!(peer = %self.peer, ?code, %message, "bind refused");
                record(op, &code, received);
                self.refuse_bind(msgid, code, &message, to_upstream, to_client);
                Flow::Continue
            }
            Verdict::Forward => {
                if self.upstream.is_none() {
                    if let Request::Abandon { .. } = req {
                        // Nothing to abandon on a connection never opened.
                        return Flow::Continue;
                    }
                    match self.ctx.pool.checkout().await {
                        Ok(conn) => self.upstream = Some(conn),
                        Err(e) => {
                            debug!(peer = %self.peer, error = %e, "no directory server");
                            record(op, &LdapResultCode::Unavailable, received);
                            let reply = response::result_for(
                                op_tag,
                                msgid,
                                LdapResultCode::Unavailable,
                                &e.to_string(),
                            );
                            to_client.extend(reply.unwrap_or_default());
                            return Flow::Continue;
                        }
                    }
                }
                match req {
                    Request::Abandon { msgid: target } => {
                        if let Ok(target) = i32::try_from(target) {
                            self.inflight.abandon(target);
                        }
                        self.needs_reset = true;
                    }
                    Request::Bind(b) => {
                        if let Err((code, message)) = self.send_bind(msgid, &b).await {
                            debug!(peer = %self.peer, ?code, %message, "bind refused");
                            record(op, &code, received);
                            self.refuse_bind(msgid, code, &message, to_upstream, to_client);
                            return Flow::Continue;
                        }
                    }
                    Request::Extended { oid: o, .. } => {
                        // An extended operation ldapgate does not know may
                        // leave state on the connection; do not reuse it.
                        if ![oid::WHO_AM_I, oid::PASSWORD_MODIFY, oid::CANCEL]
                            .iter()
                            .any(|known| known.as_bytes() == o)
                        {
                            self.reusable = false;
                        }
                        self.inflight.start(msgid, op);
                    }
                    Request::Search { base, scope } => {
                        if base.is_empty() && scope == Scope::Base {
                            self.inflight.root_dse.insert(msgid);
                        }
                        let persistent = request::is_persistent_search(pdu);
                        self.inflight.start_as(msgid, op, persistent);
                    }
                    _ => {
                        self.inflight.start(msgid, op);
                    }
                }
                to_upstream.extend_from_slice(pdu);
                Flow::Continue
            }
        }
    }

    /// Forwards every complete PDU the directory has sent, unchanged except
    /// where a substitute response is due.
    async fn forward_responses(&mut self, client: &mut LdapStream) -> Flow {
        let limit = self.ctx.limits.upstream_max_message;
        let Some(conn) = self.upstream.as_mut() else {
            return Flow::Continue;
        };
        let routing = responses::route(&conn.buf, limit, &mut self.inflight);
        for done in &routing.finished {
            // A response whose code cannot be read is forwarded as it is;
            // it counts as "other".
            let code = done.code.unwrap_or(-1);
            metrics().operation(done.started.op, code, done.started.at.elapsed());
            if self
                .bind_pending
                .as_ref()
                .is_some_and(|(id, _)| *id == done.msgid)
            {
                if let Some((_, ticket)) = self.bind_pending.take() {
                    // RFC 4511 §4.2.1: a failed bind leaves the connection anonymous.
                    self.upstream_bound = code == 0 && ticket.is_some();
                    if let Some(ticket) = ticket {
                        self.ctx
                            .authenticator
                            .settle_dn_bind(ticket, code, &done.diagnostic)
                            .await;
                    }
                }
            }
        }
        // A client that stops reading would otherwise hold this session and
        // its upstream connection forever.
        let write_limit = self.ctx.limits.idle_timeout;
        let pieces = routing.pieces;
        let written = timeout(write_limit, async {
            for piece in pieces {
                match piece {
                    Piece::Forward(n) => {
                        let bytes = conn.buf.split_to(n);
                        client.write_all(&bytes).await?;
                    }
                    Piece::Skip(n) => conn.buf.advance(n),
                    Piece::Own(bytes) => client.write_all(&bytes).await?,
                }
            }
            Ok::<(), std::io::Error>(())
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Flow::End(SessionEnd::ClientError(e.to_string())),
            Err(_) => {
                self.reusable = false;
                return Flow::End(SessionEnd::ClientError(
                    "client stopped reading responses (idle_timeout)".into(),
                ));
            }
        }
        let flow = match routing.end {
            None => Flow::Continue,
            Some(StreamEnd::Unsolicited) => {
                self.reusable = false;
                Flow::End(SessionEnd::UpstreamClosed)
            }
            Some(StreamEnd::Malformed(reason)) => {
                self.reusable = false;
                let notice =
                    response::notice_of_disconnection(LdapResultCode::Unavailable, &reason);
                if let Err(e) = client.write_all(&notice).await {
                    return Flow::End(SessionEnd::ClientError(e.to_string()));
                }
                Flow::End(SessionEnd::UpstreamError(reason))
            }
        };
        if let Err(e) = client.flush().await {
            return Flow::End(SessionEnd::ClientError(e.to_string()));
        }
        flow
    }

    /// Tells the client why the connection is closing.
    async fn notify(&self, client: &mut LdapStream, code: LdapResultCode, message: &str) {
        let notice = response::notice_of_disconnection(code, message);
        let _ = write_client(client, &notice).await;
    }
}

/// Records an operation ldapgate answered itself.
fn record(op: &str, code: &LdapResultCode, received: Instant) {
    metrics().operation(op, code.clone() as i64, received.elapsed());
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

async fn write_client(client: &mut LdapStream, bytes: &[u8]) -> std::io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    client.write_all(bytes).await?;
    client.flush().await
}

/// Makes room for a read of useful size; `read_buf` alone would grow a
/// full buffer 64 bytes at a time.
fn reserve_for_read(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(16 * 1024);
    }
}

/// Reads from the upstream connection, or waits forever when there is none.
async fn read_upstream(upstream: &mut Option<UpstreamConn>) -> std::io::Result<usize> {
    match upstream {
        Some(conn) => conn.stream.read_buf(&mut conn.buf).await,
        None => std::future::pending().await,
    }
}

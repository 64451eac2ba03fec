//! One connection to a directory server: establishing it (TCP, then LDAPS or
//! StartTLS), returning it to the anonymous state, and telling whether an
//! idle one is still alive.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::pool::UpstreamServer;
use super::UpstreamError;
use crate::ber::{self, FrameError};
use crate::ldap::response::{self, ResultSummary};
use crate::ldap::tag;
use crate::ldap::url::Scheme;
use crate::stream::LdapStream;
use crate::tls::{probe, suites, ChainExpiry, Incompatibility, PinMismatch};

/// Message ID ldapgate uses for its own requests on an upstream connection.
/// They are only sent while no client operation is outstanding, so any ID
/// would do; a distinctive one makes packet captures easier to read.
const OWN_MSGID: i32 = 0x4c47; // "LG"

/// An established connection to one directory server.
pub struct UpstreamConn {
    pub stream: LdapStream,
    /// Bytes received from the server and not yet consumed.
    pub buf: BytesMut,
    /// Index of the server in the pool.
    pub server: usize,
    pub idle_since: Instant,
    /// When the certificate chain the server presented stops verifying
    /// (None on a plain leg, or when a certificate does not parse).
    pub chain_expiry: Option<ChainExpiry>,
    /// Counts this connection among its server's open ones while it lives.
    _open: OpenCount,
}

/// One open connection in a server's count; the count drops with it.
struct OpenCount(Arc<AtomicUsize>);

impl OpenCount {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        OpenCount(count.clone())
    }
}

impl Drop for OpenCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl UpstreamConn {
    /// True when the leg to the directory is encrypted.
    pub fn encrypted(&self) -> bool {
        self.stream.is_tls()
    }

    /// Connects to `server`: TCP (within `connect_timeout`), then TLS from the
    /// first byte for `ldaps://`, or a StartTLS exchange for `ldap://` when
    /// configured; the TLS handshake has its own `connect_timeout`. A
    /// handshake the server refuses is diagnosed (see [`handshake_refused`]).
    pub async fn connect(
        server: &UpstreamServer,
        index: usize,
        connect_timeout: Duration,
        operation_timeout: Duration,
        max_message_bytes: usize,
    ) -> Result<UpstreamConn, UpstreamError> {
        let limits = Limits {
            connect_timeout,
            operation_timeout,
            max_message_bytes,
        };
        let name = server.endpoint.to_string();
        let (tcp, buf, tls) = open(server, limits).await?;
        let mut chain_expiry = None;
        let stream = if tls {
            let handshake = server
                .tls
                .connector
                .connect(server.server_name.clone(), tcp);
            match timeout(connect_timeout, handshake).await {
                Ok(Ok(s)) => {
                    chain_expiry = expiry_in_force(server, &s);
                    if let (Some(expiry), Some(metrics)) = (&chain_expiry, &server.metrics) {
                        metrics.certificate_expiry(&name, expiry.not_after_unix);
                    }
                    LdapStream::ClientTls(Box::new(s))
                }
                Ok(Err(e)) => return Err(handshake_refused(server, limits, e).await),
                Err(_) => {
                    return Err(UpstreamError::Timeout {
                        server: name,
                        stage: "TLS handshake",
                        after: connect_timeout,
                    })
                }
            }
        } else {
            LdapStream::Plain(tcp)
        };
        Ok(UpstreamConn {
            stream,
            buf,
            server: index,
            idle_since: Instant::now(),
            chain_expiry,
            _open: OpenCount::new(&server.open),
        })
    }

    /// Returns the connection to the anonymous state with an anonymous bind.
    /// A bind also waits for every outstanding operation to finish or be
    /// abandoned (RFC 4511 §4.2.1), so after its response the connection
    /// carries nothing of the previous session.
    pub async fn reset(
        &mut self,
        name: &str,
        operation_timeout: Duration,
        max_message_bytes: usize,
    ) -> Result<(), UpstreamError> {
        let request = response::anonymous_bind_request(OWN_MSGID);
        let reply = exchange(
            &mut self.stream,
            &mut self.buf,
            &request,
            OWN_MSGID,
            operation_timeout,
            max_message_bytes,
        )
        .await
        .map_err(|e| e.at(name, "anonymous bind"))?;
        if reply.code != 0 || reply.op_tag != tag::BIND_RESPONSE {
            return Err(UpstreamError::Protocol {
                server: name.to_owned(),
                what: format!(
                    "anonymous bind answered result {} {}",
                    reply.code, reply.diagnostic
                ),
            });
        }
        self.buf.clear();
        Ok(())
    }

    /// True when an idle connection can still be used: the server has not
    /// closed it and has sent nothing unasked (such as a Notice of
    /// Disconnection). Never waits.
    pub fn is_alive(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        match self.stream.read(&mut probe).now_or_never() {
            None => true,
            Some(Ok(_)) | Some(Err(_)) => false,
        }
    }
}

/// Timeouts and limits of one connection attempt.
#[derive(Debug, Clone, Copy)]
struct Limits {
    connect_timeout: Duration,
    operation_timeout: Duration,
    max_message_bytes: usize,
}

/// TCP to `server` (within `connect_timeout`), then the StartTLS exchange
/// when configured: the stream, the bytes read on it, and whether a TLS
/// handshake comes next.
async fn open(
    server: &UpstreamServer,
    limits: Limits,
) -> Result<(TcpStream, BytesMut, bool), UpstreamError> {
    let name = server.endpoint.to_string();
    let authority = server.endpoint.authority();
    let mut tcp = match timeout(limits.connect_timeout, TcpStream::connect(&authority)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(source)) => {
            return Err(UpstreamError::Connect {
                server: name,
                source,
            })
        }
        Err(_) => {
            return Err(UpstreamError::Timeout {
                server: name,
                stage: "TCP connect",
                after: limits.connect_timeout,
            })
        }
    };
    // Without TCP_NODELAY each small request waits for a delayed ACK.
    tcp.set_nodelay(true).map_err(|source| UpstreamError::Io {
        server: name.clone(),
        stage: "setting TCP_NODELAY",
        source,
    })?;
    crate::stream::keep_alive(&tcp);
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let tls = match server.endpoint.scheme {
        Scheme::Ldaps => true,
        Scheme::Ldap if server.starttls => {
            let request = response::start_tls_request(OWN_MSGID);
            let reply = exchange(
                &mut tcp,
                &mut buf,
                &request,
                OWN_MSGID,
                limits.operation_timeout,
                limits.max_message_bytes,
            )
            .await
            .map_err(|e| e.at(&name, "StartTLS"))?;
            if reply.code != 0 {
                return Err(UpstreamError::StartTlsRefused {
                    server: name,
                    code: reply.code,
                    diagnostic: reply.diagnostic,
                });
            }
            if !buf.is_empty() {
                // Plaintext after the StartTLS response must not be read
                // as if it had come over TLS.
                return Err(UpstreamError::Protocol {
                    server: name,
                    what: "data after the StartTLS response, before the TLS handshake".into(),
                });
            }
            true
        }
        Scheme::Ldap => false,
    };
    Ok((tcp, buf, tls))
}

/// The error for a TLS handshake with `server` that failed with `e`. When
/// the server refused it (a handshake_failure-like alert, or a closed
/// connection, which is how SChannel says it), diagnostic ClientHellos on
/// new connections ask which suites it accepts instead, so that the error
/// names the cause (no suite in common, an old TLS version) and carries the
/// certificate the server presents.
async fn handshake_refused(
    server: &UpstreamServer,
    limits: Limits,
    e: std::io::Error,
) -> UpstreamError {
    let name = server.endpoint.to_string();
    let Some(refusal) = refusal(&e) else {
        return tls_error(server, e);
    };
    let host = match &server.server_name {
        rustls_pki_types::ServerName::DnsName(dns) => Some(dns.as_ref()),
        _ => None,
    };
    let reopen = || async move {
        open(server, limits)
            .await
            .map(|(tcp, _, _)| tcp)
            .map_err(|e| e.to_string())
    };
    let survey = suites::survey(reopen, host, limits.connect_timeout).await;
    let last = survey.last.clone().unwrap_or_default();
    match Incompatibility::diagnose(refusal, survey) {
        Some(found) => UpstreamError::TlsIncompatible {
            server: name,
            found: Box::new(found),
        },
        None => UpstreamError::Tls {
            server: name,
            reason: format!(
                "{e}; offered older cipher suites and TLS 1.2 in a diagnostic ClientHello, \
                 the server refused that too ({last})"
            ),
        },
    }
}

/// How the server refused a handshake, when that may be for want of a
/// common cipher suite or TLS version; None for other failures.
fn refusal(e: &std::io::Error) -> Option<String> {
    use rustls::AlertDescription::{
        HandshakeFailure, IllegalParameter, InsufficientSecurity, ProtocolVersion,
    };
    let tls = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls {
        Some(rustls::Error::AlertReceived(alert)) => {
            let refused = matches!(
                alert,
                HandshakeFailure | InsufficientSecurity | ProtocolVersion | IllegalParameter
            );
            return refused
                .then(|| format!("it answered ldapgate's ClientHello with alert {alert:?}"));
        }
        // It answered with what rustls will not speak (an old version).
        Some(rustls::Error::PeerIncompatible(why)) => {
            return Some(format!("its answer is incompatible with rustls: {why:?}"));
        }
        _ => {}
    }
    (tls.is_none() && probe::is_reset(e))
        .then(|| "it closed the connection on ldapgate's ClientHello".to_owned())
}

/// The earliest expiry of the chain `server`'s verifier relied on to accept
/// the certificate of the handshake `tls` just completed.
fn expiry_in_force(
    server: &UpstreamServer,
    tls: &tokio_rustls::client::TlsStream<TcpStream>,
) -> Option<ChainExpiry> {
    let served = tls.get_ref().1.peer_certificates()?;
    let chain = server
        .tls
        .verifier
        .chain_in_force(served, rustls_pki_types::UnixTime::now());
    match ChainExpiry::of(&chain) {
        Ok(expiry) => expiry,
        Err(e) => {
            // Unreachable in practice: the verifier parsed these to accept
            // them. Pins alone do not parse intermediates, though.
            tracing::debug!(server = %server.endpoint, error = %e, "certificate expiry unknown");
            None
        }
    }
}

fn tls_error(upstream: &UpstreamServer, e: std::io::Error) -> UpstreamError {
    let server = upstream.endpoint.to_string();
    let mismatch = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .and_then(PinMismatch::from_tls_error)
        .cloned()
        .map(Box::new);
    match mismatch {
        Some(mismatch) => {
            if let Some(metrics) = &upstream.metrics {
                metrics.pin_failure(&server);
            }
            UpstreamError::PinMismatch { server, mismatch }
        }
        None => UpstreamError::Tls {
            server,
            reason: e.to_string(),
        },
    }
}

/// A failed request of ldapgate's own, before it is attributed to a server
/// and a stage.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("I/O error: {0}")]
    Io(std::io::Error),
    #[error("no answer within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error("connection closed or answered out of turn")]
    Closed,
    #[error("bad response: {0}")]
    Frame(FrameError),
}

impl ExchangeError {
    pub fn at(self, server: &str, stage: &'static str) -> UpstreamError {
        let server = server.to_owned();
        match self {
            ExchangeError::Io(source) => UpstreamError::Io {
                server,
                stage,
                source,
            },
            ExchangeError::Timeout(after) => UpstreamError::Timeout {
                server,
                stage,
                after,
            },
            ExchangeError::Closed => UpstreamError::Protocol {
                server,
                what: format!("connection closed during {stage}"),
            },
            ExchangeError::Frame(e) => UpstreamError::Protocol {
                server,
                what: format!("bad response to {stage}: {e}"),
            },
        }
    }
}

/// Sends one request of ldapgate's own and reads until its response, within
/// `limit`. Other PDUs that arrive first (late results of operations a
/// client abandoned) are discarded.
pub async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    request: &[u8],
    msgid: i32,
    limit: Duration,
    max_message_bytes: usize,
) -> Result<ResultSummary, ExchangeError> {
    let work = async {
        stream.write_all(request).await.map_err(ExchangeError::Io)?;
        stream.flush().await.map_err(ExchangeError::Io)?;
        loop {
            let pdu = read_pdu(stream, buf, max_message_bytes).await?;
            let header = ber::peek_pdu(&pdu, max_message_bytes).map_err(ExchangeError::Frame)?;
            if header.msgid == msgid && tag::is_final_response(header.op_tag) {
                return response::read_result(&pdu).map_err(ExchangeError::Frame);
            }
        }
    };
    timeout(limit, work)
        .await
        .map_err(|_| ExchangeError::Timeout(limit))?
}

/// Reads one complete PDU.
pub async fn read_pdu<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    max_message_bytes: usize,
) -> Result<Bytes, ExchangeError> {
    loop {
        match ber::peek_pdu(buf, max_message_bytes) {
            Ok(h) => return Ok(buf.split_to(h.len).freeze()),
            Err(FrameError::Incomplete) => {}
            Err(e) => return Err(ExchangeError::Frame(e)),
        }
        if stream.read_buf(buf).await.map_err(ExchangeError::Io)? == 0 {
            return Err(ExchangeError::Closed);
        }
    }
}

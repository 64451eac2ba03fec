//! Establishing a connection to a directory server: TCP, then TLS from the
//! first byte (`ldaps://`) or after a StartTLS exchange (`ldap://` with
//! `starttls`), verified by CA and/or pins; a handshake the server refuses
//! is diagnosed.

use tokio::net::TcpStream;
use tokio::time::timeout;

use super::connection::{exchange, ExchangeError, Limit, Strays, UpstreamConn, OWN_MSGID};
use super::server::UpstreamServer;
use super::{PoolSettings, UpstreamError};
use crate::ldap::response;
use crate::ldap::url::Scheme;
use crate::stream::{Framed, LdapStream};
use crate::tls::{probe, suites, ChainExpiry, Incompatibility, PinMismatch};

/// Read buffer of a directory connection, bytes.
const READ_BUFFER: usize = 16 * 1024;

impl UpstreamServer {
    /// Connects to this server, number `index` in its pool: TCP (within
    /// `connect_timeout`), then TLS from the first byte for `ldaps://`, or a
    /// StartTLS exchange for `ldap://` when configured; the TLS handshake has
    /// its own `connect_timeout`. A handshake the server refuses is
    /// diagnosed: which suites and versions it accepts instead.
    pub async fn connect(
        &self,
        index: usize,
        settings: &PoolSettings,
    ) -> Result<UpstreamConn, UpstreamError> {
        let name = self.name();
        let (tcp, tls) = open(self, settings).await?;
        let mut chain_expiry = None;
        let stream = if tls {
            let handshake = self.tls.connector.connect(self.server_name.clone(), tcp);
            match timeout(settings.connect_timeout, handshake).await {
                Ok(Ok(s)) => {
                    chain_expiry = expiry_in_force(self, &s);
                    if let (Some(expiry), Some(metrics)) = (&chain_expiry, &self.metrics) {
                        metrics.certificate_expiry(name, expiry.not_after_unix);
                    }
                    LdapStream::ClientTls(Box::new(s))
                }
                Ok(Err(e)) => return Err(handshake_refused(self, settings, e).await),
                Err(_) => {
                    return Err(UpstreamError::Timeout {
                        server: name.to_string(),
                        stage: "TLS handshake",
                        after: settings.connect_timeout,
                    })
                }
            }
        } else {
            LdapStream::Plain(tcp)
        };
        Ok(UpstreamConn::new(
            Framed::new(stream, READ_BUFFER),
            index,
            name.clone(),
            *settings,
            chain_expiry,
            &self.open,
        ))
    }
}

/// TCP to `server` (within `connect_timeout`), then the StartTLS exchange
/// when configured: the stream, the bytes read on it, and whether a TLS
/// handshake comes next.
async fn open(
    server: &UpstreamServer,
    settings: &PoolSettings,
) -> Result<(TcpStream, bool), UpstreamError> {
    let name = server.endpoint.to_string();
    let authority = server.endpoint.authority();
    let mut tcp = match timeout(settings.connect_timeout, TcpStream::connect(&authority)).await {
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
                after: settings.connect_timeout,
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
    let tls = match server.endpoint.scheme {
        Scheme::Ldaps => true,
        Scheme::Ldap if server.starttls => {
            let mut framed = Framed::new(tcp, 1024);
            let request = response::start_tls_request(OWN_MSGID);
            let limit = Limit::Whole(settings.operation_timeout);
            let max = settings.max_message_bytes;
            let reply = exchange(&mut framed, &request, limit, max, Strays::Skip, |_, _| {
                Ok(())
            })
            .await
            .and_then(|pdu| response::read_result(&pdu).map_err(ExchangeError::Frame))
            .map_err(|e| e.at(&name, "StartTLS"))?;
            if reply.code != 0 {
                return Err(UpstreamError::StartTlsRefused {
                    server: name,
                    code: reply.code,
                    diagnostic: reply.diagnostic,
                });
            }
            // Plaintext after the StartTLS response must not be read as if
            // it had come over TLS.
            let Some(plain) = framed.into_stream() else {
                return Err(UpstreamError::Protocol {
                    server: name,
                    what: "data after the StartTLS response, before the TLS handshake".into(),
                });
            };
            tcp = plain;
            true
        }
        Scheme::Ldap => false,
    };
    Ok((tcp, tls))
}

/// The error for a TLS handshake with `server` that failed with `e`. When
/// the server refused it (a handshake_failure-like alert, or a closed
/// connection, which is how SChannel says it), diagnostic ClientHellos on
/// new connections ask which suites it accepts instead, so that the error
/// names the cause (no suite in common, an old TLS version) and carries the
/// certificate the server presents.
async fn handshake_refused(
    server: &UpstreamServer,
    settings: &PoolSettings,
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
        open(server, settings)
            .await
            .map(|(tcp, _)| tcp)
            .map_err(|e| e.to_string())
    };
    let survey = suites::survey(reopen, host, settings.connect_timeout).await;
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

//! The byte stream under an LDAP connection, either leg: plain TCP or TLS
//! ([`LdapStream`]), framed into PDUs ([`framed`]) and moved both ways at
//! once ([`duplex`]).

pub mod duplex;
pub mod framed;

pub use framed::Framed;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// After this long without traffic, TCP probes the peer.
const KEEPALIVE_IDLE: std::time::Duration = std::time::Duration::from_secs(30);
/// Between probes.
const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);
/// Unanswered probes before the connection is declared dead.
const KEEPALIVE_PROBES: u32 = 3;

/// Turns on TCP keepalive for `tcp`: a peer that vanished (host down,
/// network cut) is found within about a minute of silence, so that
/// operations that are quiet by design (persistent searches) need no
/// timeout of their own to detect a dead directory or client. Best effort:
/// a socket that refuses keeps working without it.
pub fn keep_alive(tcp: &TcpStream) {
    let probes = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_PROBES);
    if let Err(e) = socket2::SockRef::from(tcp).set_tcp_keepalive(&probes) {
        tracing::debug!(error = %e, "TCP keepalive could not be set");
    }
}

/// Bytes the kernel may hold unsent for one client connection (it doubles
/// the figure for its bookkeeping). Without a cap Linux grows a socket's
/// send buffer to 4 MiB for a client that reads slowly; with it, what a
/// slot can pin in the kernel is bounded, and the session learns that a
/// slow reader is still reading (the socket turns writable each time a
/// third of the buffer drains) well within `idle_timeout`. 256 KiB
/// carries 500 MB/s at a LAN round trip of half a millisecond.
pub const CLIENT_SEND_BUFFER: usize = 256 * 1024;

/// Caps the kernel's send buffer of the client connection `tcp`
/// ([`CLIENT_SEND_BUFFER`]). Best effort, like [`keep_alive`].
pub fn cap_send_buffer(tcp: &TcpStream) {
    if let Err(e) = socket2::SockRef::from(tcp).set_send_buffer_size(CLIENT_SEND_BUFFER) {
        tracing::debug!(error = %e, "the send buffer could not be capped");
    }
}

/// A connection that may or may not be encrypted.
pub enum LdapStream {
    Plain(TcpStream),
    /// A client connection we accepted TLS on (LDAPS or after StartTLS).
    ServerTls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// A directory connection we started TLS on.
    ClientTls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl LdapStream {
    /// True when the bytes on the wire are encrypted.
    pub fn is_tls(&self) -> bool {
        !matches!(self, LdapStream::Plain(_))
    }

    /// The certificate chain a server presented, leaf first, on
    /// ldapgate's side of a client TLS connection.
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        match self {
            LdapStream::ClientTls(s) => s.get_ref().1.peer_certificates(),
            _ => None,
        }
    }

    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            LdapStream::Plain(s) => s,
            LdapStream::ServerTls(s) => s.get_ref().0,
            LdapStream::ClientTls(s) => s.get_ref().0,
        }
    }
}

impl AsyncRead for LdapStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            LdapStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            LdapStream::ServerTls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            LdapStream::ClientTls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for LdapStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            LdapStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            LdapStream::ServerTls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            LdapStream::ClientTls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            LdapStream::Plain(s) => Pin::new(s).poll_flush(cx),
            LdapStream::ServerTls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            LdapStream::ClientTls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            LdapStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            LdapStream::ServerTls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            LdapStream::ClientTls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

//! One connection to a directory server: the framed stream, the server it
//! goes to and the limits it obeys, and what it could carry over to its next
//! user ([`ConnState`]). Requests of ldapgate's own ([`super::requests`])
//! keep that state and name the server in every error; a client session
//! moves bytes on it with [`UpstreamConn::step`] and notes what it leaves.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::timeout;

use super::checkin::{ConnState, Identity};
use super::{PoolSettings, UpstreamError};
use crate::ber::FrameError;
use crate::ldap::response;
use crate::ldap::tag;
use crate::stream::duplex::{Outbox, Step};
use crate::stream::framed::{Framed, ReadError};
use crate::stream::LdapStream;
use crate::tls::ChainExpiry;

/// Message ID of ldapgate's own requests on a directory connection. They
/// are sent one at a time and only while no client operation is
/// outstanding, so any ID would do; a distinctive one makes packet
/// captures easier to read.
pub(super) const OWN_MSGID: i32 = 0x4c47; // "LG"

/// An established connection to one directory server.
pub struct UpstreamConn {
    framed: Framed<LdapStream>,
    /// Index of the server in the pool.
    server: usize,
    /// The server's URL, for errors.
    name: Arc<str>,
    settings: PoolSettings,
    /// When the certificate chain the server presented stops verifying
    /// (None on a plain leg, or when a certificate does not parse).
    chain_expiry: Option<ChainExpiry>,
    state: ConnState,
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

/// How long a request of ldapgate's own may take.
#[derive(Debug, Clone, Copy)]
pub(super) enum Limit {
    /// The whole request, from sending it to its final response.
    Whole(Duration),
    /// Each response: a long search stays alive while the server keeps
    /// answering.
    Silence(Duration),
}

/// What an exchange does with a PDU of another message ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Strays {
    /// Skips it: late results of operations a client abandoned.
    Skip,
    /// Fails: a Notice of Disconnection, or a stray on a connection that
    /// carries nothing but ldapgate's requests.
    Fail,
}

impl UpstreamConn {
    /// A connection to server `server` (its URL `name`) over `framed`,
    /// counted in `open` while it lives.
    pub(super) fn new(
        framed: Framed<LdapStream>,
        server: usize,
        name: Arc<str>,
        settings: PoolSettings,
        chain_expiry: Option<ChainExpiry>,
        open: &Arc<AtomicUsize>,
    ) -> Self {
        UpstreamConn {
            framed,
            server,
            name,
            settings,
            chain_expiry,
            state: ConnState::FRESH,
            _open: OpenCount::new(open),
        }
    }

    /// Index of the server in the pool.
    pub fn server_index(&self) -> usize {
        self.server
    }

    /// The server's URL.
    pub fn server_name(&self) -> &str {
        &self.name
    }

    /// True when the leg to the directory is encrypted.
    pub fn encrypted(&self) -> bool {
        self.framed.get_ref().is_tls()
    }

    /// The certificate chain the server presented, leaf first; None on a
    /// plain leg.
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.framed.get_ref().peer_certificates()
    }

    /// When the chain the server presented stops verifying.
    pub fn chain_expiry(&self) -> Option<&ChainExpiry> {
        self.chain_expiry.as_ref()
    }

    /// The limits this connection obeys.
    pub fn settings(&self) -> &PoolSettings {
        &self.settings
    }

    /// What the connection could carry over to its next user now.
    pub fn state(&self) -> ConnState {
        ConnState {
            unsettled: self.state.unsettled || self.framed.has_unread(),
            ..self.state
        }
    }

    /// A bind other than ldapgate's own went up (a client's, or a user's
    /// sign-in): the connection may be bound as someone from now on.
    pub fn note_bind(&mut self) {
        self.state.identity = Identity::Someone;
    }

    /// Operations were abandoned: late results may still come.
    pub fn note_abandoned(&mut self) {
        self.state.late_results = true;
    }

    /// The connection's protocol state is no longer known (see
    /// [`ConnState::unsettled`]).
    pub fn note_unsettled(&mut self) {
        self.state.unsettled = true;
    }

    pub(super) fn set_identity(&mut self, identity: Identity) {
        self.state.identity = identity;
    }

    pub(super) fn set_open_cursor(&mut self, open: bool) {
        self.state.open_cursor = open;
    }

    /// Returns the connection to the anonymous state with an anonymous
    /// bind. A bind also waits for every outstanding operation to finish or
    /// be abandoned (RFC 4511 §4.2.1), so after its response the connection
    /// carries nothing of its last user.
    pub(super) async fn reset(&mut self) -> Result<(), UpstreamError> {
        let request = response::anonymous_bind_request(OWN_MSGID);
        let limit = Limit::Whole(self.settings.operation_timeout);
        let pdu = self
            .request(&request, "anonymous bind", limit, Strays::Skip, |_, _| {
                Ok(())
            })
            .await?;
        let reply =
            response::read_result(&pdu).map_err(|e| self.bad_response("anonymous bind", e))?;
        if reply.code != 0 || reply.op_tag != tag::BIND_RESPONSE {
            self.state.unsettled = true;
            return Err(UpstreamError::Protocol {
                server: self.name.to_string(),
                what: format!(
                    "anonymous bind answered result {} {}",
                    reply.code, reply.diagnostic
                ),
            });
        }
        self.state = ConnState::FRESH;
        Ok(())
    }

    /// True when an idle connection can still be used: the server has not
    /// closed it and has sent nothing unasked (such as a Notice of
    /// Disconnection). Never waits.
    pub fn is_alive(&mut self) -> bool {
        self.framed.is_quiet()
    }

    /// Sends `request` (message ID [`OWN_MSGID`]) and reads until its final
    /// response, which it returns; the responses before it go to
    /// `on_response` (with their operation tag) as they arrive. Until the
    /// final response is read the connection counts as unsettled, so one
    /// that fails or is dropped midway is never reused.
    pub(super) async fn request(
        &mut self,
        request: &[u8],
        stage: &'static str,
        limit: Limit,
        strays: Strays,
        on_response: impl FnMut(u8, &[u8]) -> Result<(), FrameError>,
    ) -> Result<Bytes, UpstreamError> {
        self.state.unsettled = true;
        let max = self.settings.max_message_bytes;
        let done = exchange(&mut self.framed, request, limit, max, strays, on_response)
            .await
            .map_err(|e| e.at(&self.name, stage))?;
        self.state.unsettled = false;
        Ok(done)
    }

    /// The error for a response to `stage` that does not decode.
    pub fn bad_response(&self, stage: &'static str, e: FrameError) -> UpstreamError {
        ExchangeError::Frame(e).at(&self.name, stage)
    }

    /// Bytes read from the directory and not yet taken.
    pub fn buffered(&self) -> &[u8] {
        self.framed.buffered()
    }

    /// Drops the first `len` buffered bytes (handed on, or dropped).
    pub fn skip(&mut self, len: usize) {
        self.framed.skip(len);
    }

    /// Room for a read of useful size.
    pub fn reserve_for_read(&mut self) {
        self.framed.reserve_for_read();
    }

    /// One full-duplex step on the connection ([`Framed::step`]).
    pub fn step<'a>(
        &'a mut self,
        read: bool,
        out: &'a mut Outbox,
    ) -> impl Future<Output = Step> + 'a {
        self.framed.step(read, out)
    }
}

/// A failed request of ldapgate's own, before it is attributed to a server
/// and a stage.
#[derive(Debug, thiserror::Error)]
pub(super) enum ExchangeError {
    #[error("I/O error: {0}")]
    Io(std::io::Error),
    #[error("no answer within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error("connection closed or answered out of turn")]
    Closed,
    #[error("bad response: {0}")]
    Frame(FrameError),
}

impl From<ReadError> for ExchangeError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Io(e) => ExchangeError::Io(e),
            ReadError::Closed => ExchangeError::Closed,
            ReadError::Frame(e) => ExchangeError::Frame(e),
        }
    }
}

impl ExchangeError {
    /// The error, naming the server and the stage it failed in.
    pub(super) fn at(self, server: &str, stage: &'static str) -> UpstreamError {
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

/// Sends `request` on `framed` and reads until the final response with
/// message ID [`OWN_MSGID`], within `limit`; PDUs of at most `max` bytes.
pub(super) async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    framed: &mut Framed<S>,
    request: &[u8],
    limit: Limit,
    max: usize,
    strays: Strays,
    mut on_response: impl FnMut(u8, &[u8]) -> Result<(), FrameError>,
) -> Result<Bytes, ExchangeError> {
    let silence = match limit {
        Limit::Silence(d) => Some(d),
        Limit::Whole(_) => None,
    };
    let work = async {
        framed.write_pdu(request).await.map_err(ExchangeError::Io)?;
        loop {
            let read = framed.read_pdu(max);
            let (header, pdu) = match silence {
                Some(d) => timeout(d, read)
                    .await
                    .map_err(|_| ExchangeError::Timeout(d))??,
                None => read.await?,
            };
            if header.msgid != OWN_MSGID {
                match strays {
                    Strays::Skip => continue,
                    Strays::Fail => return Err(ExchangeError::Closed),
                }
            }
            if tag::is_final_response(header.op_tag) {
                return Ok(pdu);
            }
            on_response(header.op_tag, &pdu).map_err(ExchangeError::Frame)?;
        }
    };
    match limit {
        Limit::Whole(d) => timeout(d, work)
            .await
            .map_err(|_| ExchangeError::Timeout(d))?,
        Limit::Silence(_) => work.await,
    }
}

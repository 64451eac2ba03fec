//! A byte stream framed into LDAP PDUs: the stream and the bytes read from
//! it but not yet taken, in one value, for either leg. Whole PDUs are read
//! with a size limit through [`crate::ber`]; a session also moves bytes both
//! ways at once ([`Framed::step`]) and takes PDUs out of the buffer as its
//! routing decides, without copying them.

use std::future::Future;
use std::io;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::duplex::{self, Outbox, Step};
use super::LdapStream;
use crate::ber::{self, FrameError, PduHeader};

/// Free room below which a read first grows the buffer: `read_buf` alone
/// would grow a full buffer 64 bytes at a time.
const MIN_READ_ROOM: usize = 4096;

/// How much a buffer grows by when it is short of room.
const READ_GROWTH: usize = 16 * 1024;

/// One connection's stream and read buffer.
#[derive(Debug)]
pub struct Framed<S = LdapStream> {
    stream: S,
    /// Bytes received from the peer and not yet taken as PDUs.
    buf: BytesMut,
}

/// Why no whole PDU could be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("connection closed")]
    Closed,
    #[error("bad PDU: {0}")]
    Frame(FrameError),
}

impl<S> Framed<S> {
    /// `stream` with an empty read buffer of `capacity` bytes.
    pub fn new(stream: S, capacity: usize) -> Self {
        Framed {
            stream,
            buf: BytesMut::with_capacity(capacity),
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The stream, once nothing read from it is waiting to be taken (a
    /// StartTLS upgrade); None, and the connection dropped, otherwise:
    /// bytes read in the clear must never pass for bytes read over TLS.
    pub fn into_stream(self) -> Option<S> {
        self.buf.is_empty().then_some(self.stream)
    }

    /// Bytes read and not yet taken.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// True when bytes were read that no PDU taken so far accounts for.
    pub fn has_unread(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The header of the first buffered PDU; [`FrameError::Incomplete`]
    /// while it has not all arrived, `TooLarge` beyond `limit` bytes.
    pub fn peek_pdu(&self, limit: usize) -> Result<PduHeader, FrameError> {
        ber::peek_pdu(&self.buf, limit)
    }

    /// Takes the first `len` buffered bytes (a PDU [`Self::peek_pdu`] found,
    /// or several), without copying.
    pub fn take(&mut self, len: usize) -> Bytes {
        self.buf.split_to(len).freeze()
    }

    /// Drops the first `len` buffered bytes.
    pub fn skip(&mut self, len: usize) {
        self.buf.advance(len);
    }

    /// Room for `additional` more bytes in one allocation (the rest of a
    /// large PDU whose length is known).
    pub fn reserve(&mut self, additional: usize) {
        self.buf.reserve(additional);
    }

    /// Room for a read of useful size.
    pub fn reserve_for_read(&mut self) {
        if self.buf.capacity() - self.buf.len() < MIN_READ_ROOM {
            self.buf.reserve(READ_GROWTH);
        }
    }

    /// Moves what is buffered to an allocation of its own, so that a large
    /// PDU taken from the buffer frees its memory when it goes.
    pub fn compact(&mut self) {
        self.buf = BytesMut::from(&self.buf[..]);
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Framed<S> {
    /// Reads until one whole PDU of at most `limit` bytes is buffered, and
    /// takes it: its header and its bytes.
    pub async fn read_pdu(&mut self, limit: usize) -> Result<(PduHeader, Bytes), ReadError> {
        loop {
            match ber::peek_pdu(&self.buf, limit) {
                Ok(h) => return Ok((h, self.take(h.len))),
                Err(FrameError::Incomplete) => {}
                Err(e) => return Err(ReadError::Frame(e)),
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(ReadError::Closed);
            }
        }
    }

    /// Writes `pdu` and flushes it.
    pub async fn write_pdu(&mut self, pdu: &[u8]) -> io::Result<()> {
        self.stream.write_all(pdu).await?;
        self.stream.flush().await
    }

    /// One full-duplex step ([`duplex::step`]): part of `out` written, or
    /// a read into the buffer when `read`. The future is `duplex::step`'s
    /// own: the hot path polls no wrapper.
    pub fn step<'a>(
        &'a mut self,
        read: bool,
        out: &'a mut Outbox,
    ) -> impl Future<Output = Step> + 'a {
        duplex::step(&mut self.stream, &mut self.buf, read, out)
    }

    /// Writes and flushes everything `out` holds, within `limit`.
    pub fn drain<'a>(
        &'a mut self,
        out: &'a mut Outbox,
        limit: std::time::Duration,
    ) -> impl Future<Output = io::Result<()>> + 'a {
        out.drain(&mut self.stream, limit)
    }

    /// True when the peer has sent nothing since and not closed: an idle
    /// connection still fit for use. Never waits.
    pub fn is_quiet(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        self.stream.read(&mut probe).now_or_never().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    #[tokio::test]
    async fn reads_whole_pdus_within_the_limit() {
        let (near, mut far) = duplex(64);
        let mut framed = Framed::new(near, 16);
        // A whole PDU and the start of the next; the rest comes later.
        // UnbindRequests: SEQUENCE { messageID, [APPLICATION 2] NULL }.
        let unbind = [0x30, 0x05, 0x02, 0x01, 0x07, 0x42, 0x00];
        far.write_all(&unbind).await.unwrap();
        far.write_all(&[0x30, 0x05]).await.unwrap();
        let (header, first) = framed.read_pdu(100).await.unwrap();
        assert_eq!(&first[..], &unbind);
        assert_eq!((header.len, header.msgid), (7, 7));
        assert!(framed.has_unread());
        far.write_all(&[0x02, 0x01, 0x08, 0x42, 0x00])
            .await
            .unwrap();
        assert_eq!(framed.read_pdu(100).await.unwrap().0.msgid, 8);
        // Over the limit: refused by its declared length, before its body.
        far.write_all(&[0x30, 0x64]).await.unwrap();
        assert!(matches!(
            framed.read_pdu(50).await,
            Err(ReadError::Frame(FrameError::TooLarge { .. }))
        ));
        framed.skip(2);
        assert!(framed.into_stream().is_some());
    }

    #[tokio::test]
    async fn a_closed_peer_or_pending_bytes_are_not_quiet() {
        let (near, mut far) = duplex(64);
        let mut framed = Framed::new(near, 16);
        assert!(framed.is_quiet());
        far.write_all(&[0x30]).await.unwrap();
        assert!(!framed.is_quiet(), "the peer sent something unasked");
        let (near, far) = duplex(64);
        drop(far);
        assert!(!Framed::new(near, 16).is_quiet(), "the peer closed");
    }

    #[test]
    fn a_stream_with_bytes_pending_is_not_handed_over() {
        let mut framed = Framed::new((), 16);
        framed.buf.extend_from_slice(b"injected");
        assert!(framed.into_stream().is_none());
    }
}

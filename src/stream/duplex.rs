//! Full-duplex I/O on one leg of a session: what is queued for a peer goes
//! out as the peer takes it, while what the peer sends keeps being read.
//! A client that writes (an Abandon, a Cancel, a second request) while a
//! large result streams to it is read at once, not after the stream ends;
//! a peer that stops reading holds at most [`MAX_QUEUED`] bytes of ours.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::{timeout, Instant};

/// Bytes queued for a peer beyond which the session stops reading what
/// would add to them (responses for a client, requests for a directory).
pub const MAX_QUEUED: usize = 32 * 1024;

/// Bytes waiting to be written to one peer.
#[derive(Debug)]
pub struct Outbox {
    bytes: BytesMut,
    /// Written but not yet flushed (TLS records may sit in rustls).
    unflushed: bool,
    /// When the peer last took bytes, or when bytes were queued for an idle
    /// peer: how long it has kept us waiting.
    progress: Instant,
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox {
            bytes: BytesMut::new(),
            unflushed: false,
            progress: Instant::now(),
        }
    }
}

impl Outbox {
    /// Queues `bytes` after what is queued.
    pub fn push(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.bytes.is_empty() {
            self.progress = Instant::now();
        }
        self.bytes.extend_from_slice(bytes);
    }

    /// Bytes queued, not yet written.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Everything queued is written and flushed.
    pub fn is_settled(&self) -> bool {
        self.bytes.is_empty() && !self.unflushed
    }

    /// When the peer last took bytes (or bytes were queued for it idle).
    pub fn last_progress(&self) -> Instant {
        self.progress
    }

    /// Since when the peer has taken none of the queued bytes; None when
    /// nothing waits for it.
    pub fn stalled_since(&self) -> Option<Instant> {
        (!self.bytes.is_empty()).then_some(self.progress)
    }

    /// Writes and flushes everything queued, within `limit`.
    pub async fn drain<S: AsyncWrite + Unpin>(
        &mut self,
        stream: &mut S,
        limit: Duration,
    ) -> io::Result<()> {
        let work = async {
            stream.write_all(&self.bytes).await?;
            self.bytes.clear();
            stream.flush().await?;
            self.unflushed = false;
            Ok(())
        };
        timeout(limit, work)
            .await
            .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
    }
}

/// What one step of a leg's I/O did.
#[derive(Debug)]
pub enum Step {
    /// Bytes were read into the buffer; 0 is the peer's end of stream.
    Read(io::Result<usize>),
    /// Some queued bytes were written, or the written ones flushed.
    Wrote(io::Result<()>),
}

/// Waits for the first of: part of `out` written (or flushed), or a read
/// into `inbuf` when `read`. Writing is tried first so that a peer sending
/// without pause cannot keep its answers from going out. Never ready when
/// `out` is settled and `read` is false: the caller does not ask then.
pub async fn step<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    inbuf: &mut BytesMut,
    read: bool,
    out: &mut Outbox,
) -> Step {
    poll_fn(|cx| {
        if !out.bytes.is_empty() {
            if let Poll::Ready(written) = Pin::new(&mut *stream).poll_write(cx, &out.bytes) {
                return Poll::Ready(Step::Wrote(match written {
                    Ok(0) => Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        out.bytes.advance(n);
                        out.unflushed = true;
                        out.progress = Instant::now();
                        Ok(())
                    }
                    Err(e) => Err(e),
                }));
            }
        } else if out.unflushed {
            if let Poll::Ready(flushed) = Pin::new(&mut *stream).poll_flush(cx) {
                out.unflushed = flushed.is_err();
                return Poll::Ready(Step::Wrote(flushed));
            }
        }
        if read {
            if let Poll::Ready(got) =
                tokio_util::io::poll_read_buf(Pin::new(&mut *stream), cx, inbuf)
            {
                return Poll::Ready(Step::Read(got));
            }
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{duplex, AsyncReadExt};

    #[tokio::test]
    async fn a_peer_that_does_not_read_is_still_read_from() {
        // A pipe with room for 64 bytes each way.
        let (mut near, mut far) = duplex(64);
        let mut out = Outbox::default();
        out.push(&[7; 1000]);
        far.write_all(b"abandon").await.unwrap();
        let mut inbuf = BytesMut::with_capacity(64);
        // The first step writes what fits; then the far end's bytes are
        // read although it has read nothing of ours.
        let mut read = None;
        for _ in 0..4 {
            match step(&mut near, &mut inbuf, true, &mut out).await {
                Step::Read(got) => {
                    read = Some(got.unwrap());
                    break;
                }
                Step::Wrote(w) => w.unwrap(),
            }
        }
        assert_eq!(read, Some(7));
        assert_eq!(&inbuf[..], b"abandon");
        assert!(out.len() < 1000 && out.stalled_since().is_some());
        // The far end reads: the rest goes out.
        let reader = tokio::spawn(async move {
            let mut got = vec![0; 1000];
            far.read_exact(&mut got).await.map(|_| got)
        });
        out.drain(&mut near, Duration::from_secs(5)).await.unwrap();
        assert!(out.is_settled() && out.stalled_since().is_none());
        assert_eq!(reader.await.unwrap().unwrap(), vec![7; 1000]);
    }

    #[test]
    fn queuing_nothing_is_no_progress() {
        let mut out = Outbox::default();
        let since = out.last_progress();
        std::thread::sleep(Duration::from_millis(5));
        out.push(&[]);
        assert_eq!(out.last_progress(), since, "an empty push is no activity");
        assert!(out.is_settled());
        out.push(b"x");
        assert!(out.last_progress() > since);
    }

    #[tokio::test]
    async fn draining_to_a_peer_that_never_reads_times_out() {
        let (mut near, _far) = duplex(16);
        let mut out = Outbox::default();
        out.push(&[1; 100]);
        let err = out
            .drain(&mut near, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}

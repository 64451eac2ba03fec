//! The budget for unfinished client PDUs: bytes that PDUs still arriving
//! may hold across all connections together (`server.unfinished_pdu_budget`).
//!
//! Every session reads into a buffer of [`READ_ALLOWANCE`] bytes without
//! asking anyone. A PDU whose declared length is larger must first reserve
//! that length from the budget; until it can, the session reads nothing
//! more from that client (its other operations go on), and
//! `server.pdu_timeout` still runs. So what clients that send large PDUs
//! slowly (or never finish them) can pin is the budget, not
//! `max_connections` × `max_message_bytes`.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Session;
use crate::ber;
use crate::stream::Framed;

/// Bytes of an unfinished PDU a session buffers without a reservation.
pub const READ_ALLOWANCE: usize = 16 * 1024;

/// The budget shared by every session of the daemon (across reloads).
#[derive(Debug, Clone)]
pub struct PduBudget {
    bytes: Arc<Semaphore>,
}

/// Bytes of the budget held for one unfinished PDU, returned when dropped.
#[derive(Debug)]
pub struct Reservation {
    _permit: OwnedSemaphorePermit,
    /// The PDU's whole length, reserved.
    pub bytes: usize,
}

impl PduBudget {
    /// A budget of `total` bytes.
    pub fn new(total: usize) -> PduBudget {
        PduBudget {
            bytes: Arc::new(Semaphore::new(total.min(Semaphore::MAX_PERMITS))),
        }
    }

    /// Waits until `bytes` can be held, first come first served. None when
    /// `bytes` is beyond what one reservation can hold (4 GiB), which the
    /// configured limits never allow.
    pub async fn reserve(&self, bytes: usize) -> Option<Reservation> {
        let permits = u32::try_from(bytes).ok()?;
        let permit = self.bytes.clone().acquire_many_owned(permits).await.ok()?;
        Some(Reservation {
            _permit: permit,
            bytes,
        })
    }

    /// Bytes not held by any reservation now.
    pub fn available(&self) -> usize {
        self.bytes.available_permits()
    }
}

impl Session {
    /// The largest PDU this client may send now.
    pub(super) fn pdu_limit(&self) -> usize {
        if self.authenticated {
            self.ctx.limits.client_max_message
        } else {
            self.ctx.limits.before_bind_max_message
        }
    }

    /// The whole length of a large PDU that is arriving without the budget
    /// holding it yet. A PDU over the limit is left to the framing, which
    /// refuses it.
    pub(super) fn unreserved_pdu(&self, client: &Framed) -> Option<usize> {
        let buffered = client.buffered();
        let len = ber::declared_len(buffered)?;
        let reserved = self.reservation.as_ref().map_or(0, |r| r.bytes);
        (len > READ_ALLOWANCE && len > buffered.len() && len <= self.pdu_limit() && reserved < len)
            .then_some(len)
    }

    /// Room in the client's buffer for the next read: the rest of a large
    /// PDU the budget holds, in one allocation, or a read buffer's worth.
    pub(super) fn make_room_for_client(&self, client: &mut Framed) {
        let reserved = self.reservation.as_ref().map_or(0, |r| r.bytes);
        let buffered = client.buffered().len();
        match ber::declared_len(client.buffered()) {
            Some(len) if len > buffered && len <= reserved => client.reserve(len - buffered),
            _ => client.reserve_for_read(),
        }
    }

    /// A PDU of `len` bytes has been taken from the client's buffer: the
    /// budget it held is returned, and so is its memory.
    pub(super) fn pdu_arrived(&mut self, client: &mut Framed, len: usize) {
        self.last_client_activity = tokio::time::Instant::now();
        self.unfinished_since = None;
        if len > READ_ALLOWANCE {
            self.reservation = None;
            // The buffer shares the large allocation with the PDU taken
            // from it; what follows moves to a buffer of its own so that
            // the allocation goes when the PDU does.
            client.compact();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn reservations_wait_for_room_and_return_it() {
        let budget = PduBudget::new(100);
        let first = budget.reserve(60).await.unwrap();
        assert_eq!((first.bytes, budget.available()), (60, 40));
        let waiting = tokio::time::timeout(Duration::from_millis(50), budget.reserve(50)).await;
        assert!(waiting.is_err(), "no room for 50 more");
        drop(first);
        assert_eq!(budget.available(), 100);
        let second = budget.reserve(50).await.unwrap();
        assert_eq!(budget.available(), 50);
        drop(second);
        assert!(budget.reserve(usize::MAX).await.is_none());
    }
}

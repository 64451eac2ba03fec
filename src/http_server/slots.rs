//! Connection slots of one HTTP listener. A full listener makes room for a
//! newcomer by closing its oldest connection that has not completed an
//! authenticated request, so peers that connect and stall cannot keep an
//! authenticated caller out: to shut one out they must open more than
//! `max_connections` connections during the milliseconds its handshake and
//! request take, and keep doing so.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio_util::sync::CancellationToken;

/// The open connections of one listener, by order of arrival.
pub struct Slots {
    capacity: usize,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    /// Arrival number of the next connection; ids only grow, so the first
    /// entry of `open` is the oldest connection.
    next_id: u64,
    open: BTreeMap<u64, Entry>,
}

struct Entry {
    admitted: Arc<AtomicBool>,
    evict: CancellationToken,
}

/// What [`Slots::acquire`] did to find room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquired {
    /// A slot was free.
    Free,
    /// The oldest connection without an admitted request was told to close.
    Evicted,
}

impl Slots {
    /// A listener's slots, `capacity` of them (at least one).
    pub fn new(capacity: usize) -> Arc<Slots> {
        Arc::new(Slots {
            capacity: capacity.max(1),
            table: Mutex::new(Table::default()),
        })
    }

    /// A slot for a new connection: a free one, or the slot of the oldest
    /// connection not yet [admitted](Admission::admit), which is told to
    /// close. None when every open connection has been admitted: the newcomer
    /// is refused.
    pub fn acquire(self: &Arc<Self>) -> Option<(Slot, Acquired)> {
        // The lock is held for a map operation and, when full, a scan of at
        // most `capacity` flags; never across an await.
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let mut acquired = Acquired::Free;
        if table.open.len() >= self.capacity {
            let oldest = table
                .open
                .iter()
                .find(|(_, e)| !e.admitted.load(Ordering::Acquire))
                .map(|(&id, _)| id)?;
            if let Some(entry) = table.open.remove(&oldest) {
                entry.evict.cancel();
            }
            acquired = Acquired::Evicted;
        }
        let id = table.next_id;
        table.next_id += 1;
        let admitted = Arc::new(AtomicBool::new(false));
        let evict = CancellationToken::new();
        table.open.insert(
            id,
            Entry {
                admitted: admitted.clone(),
                evict: evict.clone(),
            },
        );
        let slot = Slot {
            slots: self.clone(),
            id,
            admission: Admission(admitted),
            evict,
        };
        Some((slot, acquired))
    }

    /// Connections holding a slot now.
    pub fn open(&self) -> usize {
        let table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        table.open.len()
    }

    fn release(&self, id: u64) {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        table.open.remove(&id);
    }
}

/// One connection's slot, held by its task; dropping it frees the slot.
pub struct Slot {
    slots: Arc<Slots>,
    id: u64,
    admission: Admission,
    evict: CancellationToken,
}

impl Slot {
    /// The handle a request handler marks the connection admitted with.
    pub fn admission(&self) -> Admission {
        self.admission.clone()
    }

    /// Completes when the listener took this slot for a newer connection.
    pub async fn evicted(&self) {
        self.evict.cancelled().await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.release(self.id);
    }
}

/// Marks a connection as having completed an authenticated request (token
/// checked, body read), so it is no longer closed to make room. Put in every
/// request's extensions.
#[derive(Clone, Debug)]
pub struct Admission(Arc<AtomicBool>);

impl Admission {
    pub fn admit(&self) {
        self.0.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_slots_evict_the_oldest_not_admitted() {
        let slots = Slots::new(3);
        let (a, how) = slots.acquire().unwrap();
        assert_eq!(how, Acquired::Free);
        let (b, _) = slots.acquire().unwrap();
        let (c, _) = slots.acquire().unwrap();
        a.admission().admit();
        let (d, how) = slots.acquire().unwrap();
        assert_eq!(how, Acquired::Evicted);
        assert!(!a.evict.is_cancelled(), "admitted connections are kept");
        assert!(b.evict.is_cancelled(), "the oldest not admitted goes");
        assert!(!c.evict.is_cancelled());
        assert_eq!(slots.open(), 3);
        drop(b);
        assert_eq!(slots.open(), 3, "an evicted slot is already counted free");
        c.admission().admit();
        d.admission().admit();
        assert!(slots.acquire().is_none(), "all admitted: refused");
        drop(d);
        assert_eq!(slots.acquire().unwrap().1, Acquired::Free);
    }
}

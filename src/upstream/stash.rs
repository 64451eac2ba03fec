//! Idle connections kept for one purpose, newest last.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::connection::UpstreamConn;

/// How long an idle connection is kept. Directories drop idle connections
/// on their own schedule (AD after 15 minutes by default); a short bound
/// keeps the pool from handing out connections about to close.
const MAX_IDLE: Duration = Duration::from_secs(60);

/// Up to `max` idle connections.
pub(super) struct ConnStash {
    max: usize,
    conns: Mutex<Vec<(UpstreamConn, Instant)>>,
}

impl ConnStash {
    pub(super) fn new(max: usize) -> Self {
        ConnStash {
            max,
            conns: Mutex::new(Vec::new()),
        }
    }

    /// An idle connection that is still alive and not too old, if any.
    pub(super) fn take(&self) -> Option<UpstreamConn> {
        let mut conns = self.conns.lock().ok()?;
        while let Some((mut conn, since)) = conns.pop() {
            if since.elapsed() < MAX_IDLE && conn.is_alive() {
                return Some(conn);
            }
        }
        None
    }

    /// Idle connections held now.
    pub(super) fn len(&self) -> usize {
        self.conns.lock().map(|v| v.len()).unwrap_or(0)
    }

    /// Offers `conn` back: `keep` says, given whether the stash has room
    /// for one more, whether it is kept as it is (true), under the one
    /// lock. A connection not kept is returned, for the caller to reset
    /// or drop.
    pub(super) fn offer(
        &self,
        conn: UpstreamConn,
        keep: impl FnOnce(bool) -> bool,
    ) -> Option<UpstreamConn> {
        let Ok(mut conns) = self.conns.lock() else {
            return Some(conn);
        };
        if keep(conns.len() < self.max) {
            conns.push((conn, Instant::now()));
            return None;
        }
        Some(conn)
    }
}

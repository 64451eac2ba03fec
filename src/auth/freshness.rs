//! When a cached resolution may still decide nothing new: the directory's
//! change marker.
//!
//! Cached sign-in resolutions (login → entry) and bind identities (DN →
//! entry) are stamped with a generation taken *before* the directory was
//! asked. A background task reads the directory's change marker every
//! `[signin] change_check_interval` and starts a new generation whenever it
//! moved: every stamp taken before then stops being valid. The marker is
//! `contextCSN` of the naming context holding `base_dn` on OpenLDAP (kept by
//! the syncprov overlay) and `highestCommittedUSN` of the root DSE on Active
//! Directory. Where the directory has none, or it cannot be read, every
//! check starts a new generation, so a cached entry lives at most one
//! interval. A stamp is also invalid when no check completed lately (the
//! task stopped or the directory is unreachable).
//!
//! The remaining window: a change is noticed by the first check that starts
//! after it, so for at most `change_check_interval` plus one round trip a
//! cached resolution may still be used. A wrong password on a cached
//! resolution is re-checked against the directory before it counts (see
//! [`super::Authenticator`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ldap3_proto::proto::LdapFilter;
use tokio::sync::OnceCell;
use tracing::debug;

use crate::config::DirectoryKind;
use crate::ldap::dn::Dn;
use crate::upstream::UpstreamPool;

/// The change generation of one directory.
#[derive(Debug)]
pub struct ChangeWatch {
    generation: AtomicU64,
    /// Milliseconds since `epoch` when the last check completed; 0: never.
    checked_ms: AtomicU64,
    epoch: Instant,
    interval: Duration,
}

impl ChangeWatch {
    pub fn new(interval: Duration) -> Arc<ChangeWatch> {
        Arc::new(ChangeWatch {
            generation: AtomicU64::new(1),
            checked_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            interval,
        })
    }

    /// The stamp for a resolution about to be looked up.
    pub fn stamp(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether a resolution stamped with `stamp` may be used now: nothing
    /// changed since, as far as a recent check could tell.
    pub fn still_valid(&self, stamp: u64) -> bool {
        if stamp != self.generation.load(Ordering::Acquire) {
            return false;
        }
        let checked = self.checked_ms.load(Ordering::Acquire);
        if checked == 0 {
            return false;
        }
        let age = (self.epoch.elapsed().as_millis() as u64).saturating_sub(checked);
        // Two intervals and a second: one check may be slow, not missing.
        age <= (self.interval * 2 + Duration::from_secs(1)).as_millis() as u64
    }

    /// Records a completed check; `moved` starts a new generation.
    fn checked(&self, moved: bool) {
        if moved {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        let now = (self.epoch.elapsed().as_millis() as u64).max(1);
        self.checked_ms.store(now, Ordering::Release);
    }

    /// Reads the marker every interval until the watch is dropped.
    pub fn spawn(self: &Arc<Self>, marker: ChangeMarker) {
        let weak = Arc::downgrade(self);
        let every = self.interval;
        tokio::spawn(async move {
            let mut last: Option<Vec<Vec<u8>>> = None;
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if weak.strong_count() == 0 {
                    return;
                }
                let read = marker.read().await;
                let Some(watch) = weak.upgrade() else {
                    return;
                };
                let moved = match (&read, &last) {
                    (Some(now), Some(before)) => now != before,
                    // No marker (or none readable): nothing can be proved
                    // unchanged.
                    _ => true,
                };
                watch.checked(moved);
                last = read;
            }
        });
    }
}

/// Reads a directory's change marker.
pub struct ChangeMarker {
    pool: Arc<UpstreamPool>,
    kind: DirectoryKind,
    base_dn: Dn,
    /// The naming context holding `base_dn`, read once it can be.
    context: OnceCell<String>,
}

impl ChangeMarker {
    pub fn new(pool: Arc<UpstreamPool>, kind: DirectoryKind, base_dn: Dn) -> ChangeMarker {
        ChangeMarker {
            pool,
            kind,
            base_dn,
            context: OnceCell::new(),
        }
    }

    /// The marker's values, sorted; None when the directory has none or it
    /// could not be read.
    pub async fn read(&self) -> Option<Vec<Vec<u8>>> {
        let (dn, attr) = match self.kind {
            DirectoryKind::ActiveDirectory => (String::new(), "highestCommittedUSN"),
            _ => {
                let context = self
                    .context
                    .get_or_try_init(|| async { self.naming_context().await.ok_or(()) })
                    .await
                    .ok()?;
                (context.clone(), "contextCSN")
            }
        };
        let values = self.read_values(&dn, attr).await;
        if values.is_none() {
            debug!(
                attr,
                "no change marker: cached resolutions last one interval"
            );
        }
        values
    }

    async fn read_values(&self, dn: &str, attr: &str) -> Option<Vec<Vec<u8>>> {
        let reply = self
            .pool
            .read_base(
                dn,
                LdapFilter::Present("objectClass".into()),
                vec![attr.to_owned()],
            )
            .await
            .ok()?;
        let mut values: Vec<Vec<u8>> = reply
            .entries
            .first()?
            .attributes
            .iter()
            .filter(|a| a.atype.eq_ignore_ascii_case(attr))
            .flat_map(|a| a.vals.iter().cloned())
            .collect();
        if values.is_empty() {
            return None;
        }
        values.sort();
        Some(values)
    }

    /// The root DSE's naming context that holds `base_dn` (the longest, for
    /// nested contexts).
    async fn naming_context(&self) -> Option<String> {
        let contexts = self.read_values("", "namingContexts").await?;
        contexts
            .iter()
            .filter_map(|v| Dn::from_bytes(v).ok())
            .filter(|nc| self.base_dn.is_within(nc))
            .max_by_key(Dn::depth)
            .map(|nc| nc.as_str().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_is_valid_until_the_marker_moves() {
        let w = ChangeWatch::new(Duration::from_secs(1));
        let s = w.stamp();
        assert!(!w.still_valid(s), "no check has completed yet");
        w.checked(false);
        assert!(w.still_valid(s));
        w.checked(false);
        assert!(w.still_valid(s));
        w.checked(true);
        assert!(!w.still_valid(s));
        assert!(w.still_valid(w.stamp()));
    }

    #[test]
    fn a_watch_that_stopped_checking_validates_nothing() {
        let w = ChangeWatch::new(Duration::from_millis(1));
        w.checked(false);
        let s = w.stamp();
        std::thread::sleep(Duration::from_millis(1100));
        assert!(!w.still_valid(s));
    }
}

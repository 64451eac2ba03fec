//! Objects a directory's change tracking cannot report, found by scheduled
//! verification. syncprov reports what changed after a cookie's CSN; an
//! entry restored from a backup (slapadd while slapd was stopped) keeps its
//! old entryCSN, and after a clean restart syncprov answers from its saved
//! contextCSN or its session log, without a present phase: the entry is
//! reported by no change, and a consumer that saw it deleted never gets it
//! back. Verification walks the directory anyway; it compares the objects
//! there with the newest snapshot and what the tracker reports since that
//! snapshot's cursor. Objects neither explains are drift: the next changes
//! pull compares the whole directory, and says why.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::export::{Exporter, SyncError};
use super::snapshot;
use super::state::{StateDir, StateError};
use crate::ldap::dn::Dn;

/// The state file that records drift until a whole comparison (or a full
/// pull) delivered it.
const DRIFT: &str = "tracking_drift.json";

/// What verification found the change tracking blind to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    /// Objects in the directory the tracker does not report (restored), or
    /// missing from it that the tracker still counts.
    pub untracked: usize,
    /// One of them, for the message.
    pub example: String,
}

impl Drift {
    /// Why a changes pull compares the whole directory.
    pub fn reason(&self) -> String {
        format!(
            "scheduled verification found {} object(s) that the directory's change tracking \
             does not report (for example {}: restored from a backup with its old entryCSN?); \
             this pull compares the whole directory",
            self.untracked, self.example
        )
    }
}

/// The drift recorded by the last verification, if no pull delivered it yet.
pub fn recorded(state: &StateDir) -> Result<Option<Drift>, StateError> {
    state.read_json(DRIFT)
}

/// Records `drift` for the next changes pull.
pub fn record(state: &StateDir, drift: &Drift) -> Result<(), StateError> {
    state.write_json(DRIFT, drift)
}

/// Forgets the drift: a whole comparison or a full pull delivered it.
pub fn clear(state: &StateDir) -> Result<(), StateError> {
    state.remove(DRIFT).map(|_| ())
}

impl Exporter {
    /// The drift between `now` (the DN of every object by id, from a walk
    /// that just ended) and the newest snapshot with what the tracker
    /// reports since its cursor. None when the snapshot has no cursor or
    /// the tracker cannot answer from it (the next pull compares the whole
    /// directory anyway), or nothing drifted.
    pub async fn find_drift(
        &self,
        now: &HashMap<String, String>,
    ) -> Result<Option<Drift>, SyncError> {
        let Some(before) = snapshot::newest(self.state())? else {
            return Ok(None);
        };
        let Some(cursor) = &before.cursor else {
            return Ok(None);
        };
        let mut conn = self.connection().await?;
        let delta = self.tracker().since(self, &mut conn, cursor).await?;
        self.release(conn);
        let Ok(delta) = delta else {
            return Ok(None);
        };
        let mut reported: HashSet<String> = delta.deleted;
        reported.extend(delta.changed.iter().filter_map(|e| self.id_of(e)));
        // What lies below a reported entry moved with it: explained.
        let reported_now: Vec<Dn> = delta
            .changed
            .iter()
            .filter_map(|e| Dn::parse(&e.dn).ok())
            .collect();
        let reported_before: Vec<Dn> = reported
            .iter()
            .filter_map(|id| {
                before
                    .objects
                    .get(id)
                    .map(|o| o.dn.as_str())
                    .or_else(|| before.containers.get(id).map(String::as_str))
            })
            .filter_map(|dn| Dn::parse(dn).ok())
            .collect();
        let below = |dn: &str, reported: &[Dn]| {
            Dn::parse(dn).is_ok_and(|dn| reported.iter().any(|r| dn.is_within(r) && dn != *r))
        };
        let present = delta.present.as_ref();
        // Here, unknown to the snapshot, and reported by nothing (a present
        // phase that names it reports it: the pull looks such ids up).
        let restored = now.iter().filter(|(id, dn)| {
            !before.objects.contains_key(*id)
                && !reported.contains(*id)
                && present.is_none_or(|p| !p.contains(*id))
                && !below(dn, &reported_now)
        });
        // Gone, held by the snapshot, and reported by nothing (a present
        // phase that does not name it reports it gone).
        let vanished = before.objects.iter().filter(|(id, o)| {
            !now.contains_key(*id)
                && !reported.contains(*id)
                && present.is_none_or(|p| p.contains(*id))
                && !below(&o.dn, &reported_before)
        });
        let drifted: Vec<&String> = restored
            .map(|(id, _)| id)
            .chain(vanished.map(|(id, _)| id))
            .collect();
        Ok(drifted.first().map(|example| Drift {
            untracked: drifted.len(),
            example: (*example).clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_is_kept_until_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        assert_eq!(recorded(&state).unwrap(), None);
        let drift = Drift {
            untracked: 2,
            example: "5d2f0a1c-1111-4222-8333-944455556666".into(),
        };
        record(&state, &drift).unwrap();
        assert_eq!(recorded(&state).unwrap(), Some(drift.clone()));
        assert!(drift.reason().contains("2 object(s)"));
        clear(&state).unwrap();
        assert_eq!(recorded(&state).unwrap(), None);
        clear(&state).unwrap();
    }
}

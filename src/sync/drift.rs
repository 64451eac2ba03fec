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

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::export::{Exporter, SyncError};
use super::snapshot::{self, Containers, SnapObject};
use super::state::{StateDir, StateError};
use super::tracking::Cursor;
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

/// One drift check, fed by a verification's walk: the newest snapshot's
/// objects (sorted by id, with a seen mark each) and the objects it lacks.
/// Memory: the snapshot and one bit per object, not a second map of the
/// directory.
pub struct DriftCheck {
    before: Vec<(String, SnapObject)>,
    seen: Vec<bool>,
    /// Objects the snapshot lacks, (id, DN).
    fresh: Vec<(String, String)>,
    containers: Containers,
    cursor: Cursor,
}

impl DriftCheck {
    /// Takes one object of the walk.
    pub fn see(&mut self, id: String, dn: String) {
        match self
            .before
            .binary_search_by(|(known, _)| known.as_str().cmp(&id))
        {
            Ok(at) => self.seen[at] = true,
            Err(_) => self.fresh.push((id, dn)),
        }
    }

    /// The drift, once the walk ended: objects the snapshot lacks, and
    /// objects it has that the walk did not see, that the tracker does not
    /// report since the snapshot's cursor (objects below a reported entry
    /// moved with it). None when nothing drifted or the tracker cannot
    /// answer from the cursor (the next pull compares the whole directory
    /// anyway).
    pub async fn finish(self, exporter: &Exporter) -> Result<Option<Drift>, SyncError> {
        let mut conn = exporter.connection().await?;
        let delta = exporter
            .tracker()
            .since(exporter, &mut conn, &self.cursor)
            .await?;
        exporter.release(conn);
        let Ok(delta) = delta else {
            return Ok(None);
        };
        let mut reported: HashSet<String> = delta.deleted;
        reported.extend(delta.changed.iter().filter_map(|e| exporter.id_of(e)));
        let parse = |dns: Vec<&str>| -> Vec<Dn> {
            dns.into_iter()
                .filter_map(|dn| Dn::parse(dn).ok())
                .collect()
        };
        let reported_now = parse(delta.changed.iter().map(|e| e.dn.as_str()).collect());
        let reported_before = parse(
            self.before
                .iter()
                .filter(|(id, _)| reported.contains(id))
                .map(|(_, o)| o.dn.as_str())
                .chain(
                    self.containers
                        .iter()
                        .filter(|(id, _)| reported.contains(*id))
                        .map(|(_, dn)| dn.as_str()),
                )
                .collect(),
        );
        let below = |dn: &str, reported: &[Dn]| {
            Dn::parse(dn).is_ok_and(|dn| reported.iter().any(|r| dn.is_within(r) && dn != *r))
        };
        let present = delta.present.as_ref();
        // Here, unknown to the snapshot, and reported by nothing (a present
        // phase that names it reports it: the pull looks such ids up).
        let restored = self.fresh.iter().filter(|(id, dn)| {
            !reported.contains(id)
                && present.is_none_or(|p| !p.contains(id))
                && !below(dn, &reported_now)
        });
        // Gone, held by the snapshot, and reported by nothing (a present
        // phase that does not name it reports it gone).
        let vanished = self
            .before
            .iter()
            .zip(&self.seen)
            .filter(|(_, seen)| !**seen)
            .map(|(object, _)| object)
            .filter(|(id, o)| {
                !reported.contains(id)
                    && present.is_none_or(|p| p.contains(id))
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

impl Exporter {
    /// A drift check against the newest snapshot; None when there is none
    /// or it has no cursor (no tracker to be blind).
    pub fn drift_check(&self) -> Result<Option<DriftCheck>, SyncError> {
        let Some(snapshot) = snapshot::newest(self.state())? else {
            return Ok(None);
        };
        let Some(cursor) = snapshot.cursor else {
            return Ok(None);
        };
        // A BTreeMap iterates in key order: sorted for the binary search.
        let before: Vec<(String, SnapObject)> = snapshot.objects.into_iter().collect();
        Ok(Some(DriftCheck {
            seen: vec![false; before.len()],
            before,
            fresh: Vec::new(),
            containers: snapshot.containers,
            cursor,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_walk_marks_what_the_snapshot_holds_and_keeps_what_it_lacks() {
        let object = |dn: &str| SnapObject {
            kind: crate::sync::snapshot::Kind::Account,
            hash: 0,
            depth: 3,
            dn: dn.into(),
        };
        let before: Vec<(String, SnapObject)> = [("a", "uid=a,dc=x"), ("c", "uid=c,dc=x")]
            .into_iter()
            .map(|(id, dn)| (id.to_owned(), object(dn)))
            .collect();
        let mut check = DriftCheck {
            seen: vec![false; before.len()],
            before,
            fresh: Vec::new(),
            containers: Containers::new(),
            cursor: Cursor::Syncrepl {
                cookie: String::new(),
            },
        };
        check.see("c".into(), "uid=c,dc=x".into());
        check.see("b".into(), "uid=b,dc=x".into());
        assert_eq!(check.seen, vec![false, true]);
        assert_eq!(check.fresh, vec![("b".to_owned(), "uid=b,dc=x".to_owned())]);
    }

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

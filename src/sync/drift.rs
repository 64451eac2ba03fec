//! Objects a directory's change tracking cannot report, found by scheduled
//! verification. syncprov reports what changed after a cookie's CSN; an
//! entry restored from a backup (slapadd while slapd was stopped) keeps its
//! old entryCSN, and after a clean restart syncprov answers from its saved
//! contextCSN or its session log, without a present phase: the entry is
//! reported by no change, and a consumer that saw it deleted (or changed)
//! never gets it back.
//!
//! Verification walks the directory anyway. For every snapshot kept (each
//! a consumer's possible cookie) it compares the objects and their lines
//! with the snapshot and what the tracker reports since its cursor.
//! Objects neither explains are drift: the snapshot is marked, and every
//! changes pull from it compares the whole directory, and says why.

use std::collections::{HashMap, HashSet};

use super::error::SyncError;
use super::export::Exporter;
use super::snapshot::Snapshot;
use crate::ldap::dn::Dn;

/// The objects a walk found: the hash of each one's line, by id (8 bytes
/// and the id each; DNs are looked up for the few that need them).
pub type Walked = HashMap<String, u64>;

/// What the tracker reports since a snapshot's cursor, as drift needs it.
struct Reported {
    ids: HashSet<String>,
    /// Where the reported entries are now, and were in the snapshot: what
    /// lies below them moved with them.
    now: Vec<Dn>,
    before: Vec<Dn>,
    /// The ids a present phase named, if it ran.
    present: Option<HashSet<String>>,
}

impl Reported {
    fn below(dn: &str, entries: &[Dn]) -> bool {
        Dn::parse(dn).is_ok_and(|dn| entries.iter().any(|r| dn.is_within(r) && dn != *r))
    }

    /// The ids of `walked` the snapshot lacks or holds with another line,
    /// that this report does not name: drift, unless they lie below a
    /// reported entry (see [`Self::moved_with`]).
    fn unnamed(&self, walked: &Walked, before: &Snapshot) -> Vec<String> {
        walked
            .iter()
            .filter(|(id, hash)| {
                let held = before.objects.get(*id);
                let differs = held.is_none_or(|o| o.hash != **hash);
                // A present phase that names an id the snapshot lacks makes
                // the pull look it up; one it names unchanged, it does not.
                let looked_up =
                    held.is_none() && self.present.as_ref().is_some_and(|p| p.contains(*id));
                differs && !looked_up && !self.ids.contains(*id)
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Whether the object now at `dn` lies below a reported entry (moved
    /// with it).
    fn moved_with(&self, dn: &str) -> bool {
        Self::below(dn, &self.now)
    }

    /// The snapshot's objects gone from `walked` that this report does not
    /// explain.
    fn vanished(&self, walked: &Walked, before: &Snapshot) -> Vec<String> {
        before
            .objects
            .iter()
            .filter(|(id, o)| {
                // A present phase that does not name it reports it gone.
                !walked.contains_key(*id)
                    && !self.ids.contains(*id)
                    && self.present.as_ref().is_none_or(|p| p.contains(*id))
                    && !Self::below(&o.dn, &self.before)
            })
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// Why a snapshot is marked.
fn reason(drifted: &[String]) -> String {
    format!(
        "scheduled verification found {} object(s) that the directory's change tracking \
         does not report (for example {}: restored from a backup with its old entryCSN?); \
         this pull compares the whole directory",
        drifted.len(),
        drifted.first().map_or("", String::as_str)
    )
}

impl Exporter {
    /// Checks every kept snapshot against `walked` (every object of a walk
    /// that just ended) and what the tracker reports since its cursor,
    /// marking the ones that drifted. Snapshots are loaded one at a time.
    /// Returns the most objects one snapshot missed.
    pub async fn check_drift(&self, walked: &Walked) -> Result<usize, SyncError> {
        let reader = self.reader();
        let watched = self.objects().watched();
        let mut most = 0;
        for cookie in self.store().kept().await? {
            let Some(before) = self.store().load(&cookie).await? else {
                continue;
            };
            let (Some(cursor), None) = (&before.cursor, &before.drift) else {
                continue;
            };
            let mut conn = reader.connection().await?;
            let delta = self
                .tracker()
                .since(reader, &watched, &mut conn, cursor)
                .await?;
            // A tracker that cannot answer makes the pull compare anyway.
            let Ok(delta) = delta else {
                continue;
            };
            let mut ids = delta.deleted;
            ids.extend(delta.changed.iter().filter_map(|e| reader.id_of(e)));
            let at = |id: &String| {
                before
                    .objects
                    .get(id)
                    .map(|o| o.dn.as_str())
                    .or_else(|| before.containers.get(id).map(String::as_str))
            };
            let reported = Reported {
                now: delta
                    .changed
                    .iter()
                    .filter_map(|e| Dn::parse(&e.dn).ok())
                    .collect(),
                before: ids
                    .iter()
                    .filter_map(at)
                    .filter_map(|dn| Dn::parse(dn).ok())
                    .collect(),
                ids,
                present: delta.present,
            };
            let mut drifted = reported.unnamed(walked, &before);
            if !drifted.is_empty() && !reported.now.is_empty() {
                let now = self.objects().objects_by_id(&mut conn, &drifted).await?;
                let moved: HashSet<String> = now
                    .iter()
                    .filter(|e| reported.moved_with(&e.dn))
                    .filter_map(|e| reader.id_of(e))
                    .collect();
                drifted.retain(|id| !moved.contains(id));
            }
            drifted.extend(reported.vanished(walked, &before));
            drifted.sort();
            drop(conn);
            if !drifted.is_empty() {
                self.store().mark_drift(&cookie, &reason(&drifted)).await?;
                most = most.max(drifted.len());
            }
        }
        Ok(most)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::snapshot::{Containers, Kind, Objects, SnapObject};

    fn snapshot(objects: &[(&str, u64, &str)]) -> Snapshot {
        Snapshot {
            cookie: "00".into(),
            objects: objects
                .iter()
                .map(|(id, hash, dn)| {
                    let o = SnapObject {
                        kind: Kind::Account,
                        hash: *hash,
                        depth: 3,
                        dn: (*dn).into(),
                    };
                    ((*id).to_owned(), o)
                })
                .collect::<Objects>(),
            containers: Containers::new(),
            cursor: None,
            drift: None,
        }
    }

    fn walked(objects: &[(&str, u64)]) -> Walked {
        objects
            .iter()
            .map(|(id, hash)| ((*id).to_owned(), *hash))
            .collect()
    }

    fn report(ids: &[&str], now: &[&str], present: Option<&[&str]>) -> Reported {
        Reported {
            ids: ids.iter().map(|s| (*s).to_owned()).collect(),
            now: now.iter().map(|d| Dn::parse(d).unwrap()).collect(),
            before: vec![Dn::parse("ou=left,dc=t").unwrap()],
            present: present.map(|p| p.iter().map(|s| (*s).to_owned()).collect()),
        }
    }

    fn sorted(mut ids: Vec<String>) -> Vec<String> {
        ids.sort();
        ids
    }

    #[test]
    fn what_the_tracker_names_is_explained_and_lines_are_compared() {
        let before = snapshot(&[("a", 1, "uid=a,ou=x,dc=t"), ("b", 2, "uid=b,ou=x,dc=t")]);
        let now = walked(&[("a", 1), ("b", 9), ("d", 4)]);
        // b changed and is reported; d was restored.
        let r = report(&["b"], &["ou=y,dc=t"], None);
        assert_eq!(sorted(r.unnamed(&now, &before)), vec!["d"]);
        // A restored older version: a line the tracker does not report.
        let r = report(&[], &[], None);
        assert_eq!(sorted(r.unnamed(&now, &before)), vec!["b", "d"]);
        // Below a reported entry: moved with it.
        let r = report(&[], &["ou=y,dc=t"], None);
        assert!(r.moved_with("uid=c,ou=y,dc=t"));
        assert!(!r.moved_with("ou=y,dc=t"));
        assert!(!r.moved_with("uid=d,ou=x,dc=t"));
    }

    #[test]
    fn a_present_phase_explains_only_what_the_pull_looks_up() {
        let before = snapshot(&[
            ("a", 1, "uid=a,dc=t"),
            ("gone", 5, "uid=gone,dc=t"),
            ("moved", 6, "uid=moved,ou=left,dc=t"),
        ]);
        let now = walked(&[("a", 7), ("new", 3)]);
        // Named present: `new` is looked up; `a` (held, other line) is not
        // re-read; `gone`, not named, is reported gone.
        let r = report(&[], &[], Some(&["a", "new", "moved"]));
        assert_eq!(sorted(r.unnamed(&now, &before)), vec!["a"]);
        // `moved` went with a reported entry: explained.
        assert!(r.vanished(&now, &before).is_empty());
        // Without a present phase, `gone` vanished unreported.
        let r = report(&[], &[], None);
        assert_eq!(sorted(r.unnamed(&now, &before)), vec!["a", "new"]);
        assert_eq!(r.vanished(&now, &before), vec!["gone"]);
    }
}

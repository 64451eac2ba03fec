//! From what the directory reports changed (a [`Delta`]) to what the
//! consumer gets: upserts of objects whose export line changed, deletes of
//! objects it has that are gone, and the snapshot after both.
//!
//! Four things the directory does not report are worked out here.
//! - Moving or renaming an entry changes the DN of everything below it,
//!   but only the entry itself is reported (an organization, or a
//!   container that is no object: `cn=staging`); so does an entry becoming
//!   or ceasing to be an organization, for the parent ids below it. Below
//!   such an entry the subtree is read again; the objects the snapshot had
//!   below an entry that moved or left and that were not found there are
//!   looked up by id: moved elsewhere in scope, or gone. A rename in case
//!   or spacing only counts: the export line carries the DN as written.
//! - An object restored from a backup keeps its old entryCSN, so no change
//!   reports it; a present phase names it, and ids the snapshot lacks are
//!   looked up.
//! - An export line names the parent organization's id, which a report of
//!   one entry does not carry: parents are looked up by DN, once per pull.
//! - A deletion the tracker reports is checked before it is delivered: an
//!   object that still exists in scope is never deleted at the consumer.
//!   Such a report is a disagreement between the tracker and the
//!   directory: the pull falls back to comparing the whole directory, and
//!   says why.

use std::collections::{BTreeMap, HashMap, HashSet};

use ldap3_proto::proto::LdapSearchResultEntry;

use super::error::SyncError;
use super::objects::ObjectReader;
use super::reader::first_text;
use super::render::Item;
use super::snapshot::{Containers, Kind, Objects};
use super::tracking::{Delta, Fallback};
use crate::ldap::dn::Dn;
use crate::upstream::UpstreamConn;

/// What a change set delivers, and the snapshot it leaves.
#[derive(Debug, Default)]
pub struct Computed {
    pub upserts: Vec<Item>,
    /// (kind, id, depth) of each object gone.
    pub deletes: Vec<(Kind, String, u16)>,
    pub now: Objects,
    /// The containers whose ids still hold (not reported moved or gone);
    /// the snapshot's containers are worked out from these.
    pub containers: Containers,
    /// False when no object came, went or moved and no container was
    /// reported: `containers` then still holds exactly, and is kept as it
    /// is rather than worked out again from every object's DN.
    pub layout_changed: bool,
}

/// Organization ids by DN key: learnt from the objects of the pull, or
/// read from the directory.
struct ParentIds {
    known: HashMap<String, Option<String>>,
}

impl ParentIds {
    fn new(base: &Dn, base_id: &str) -> ParentIds {
        ParentIds {
            known: HashMap::from([(base.key(), Some(base_id.to_owned()))]),
        }
    }

    fn learn(&mut self, org: &Dn, id: &str) {
        self.known.insert(org.key(), Some(id.to_owned()));
    }

    /// The id of the organization directly above `dn` (or of the base
    /// entry); None when the parent is something else, as in a full pull.
    async fn of(
        &mut self,
        objects: &ObjectReader,
        conn: &mut UpstreamConn,
        dn: &Dn,
    ) -> Result<Option<String>, SyncError> {
        let Some(parent) = dn.parent() else {
            return Ok(None);
        };
        let key = parent.key();
        if let Some(known) = self.known.get(&key) {
            return Ok(known.clone());
        }
        let found = objects.org_id_at(conn, &parent).await?;
        self.known.insert(key, found.clone());
        Ok(found)
    }
}

/// An object found in scope during the pull.
struct Found {
    kind: Kind,
    dn: Dn,
    id: String,
    entry: LdapSearchResultEntry,
}

/// Whether an entry may have objects below it: hasSubordinates where the
/// directory gives it (OpenLDAP), else anything but an account (AD has no
/// such attribute, and its accounts hold no accounts).
fn may_hold_objects(entry: &LdapSearchResultEntry, kind: Option<Kind>) -> bool {
    match first_text(&entry.attributes, "hasSubordinates") {
        Some(value) => value.eq_ignore_ascii_case("TRUE"),
        None => kind != Some(Kind::Account),
    }
}

/// The highest of `dns`: those within none of the others.
fn highest(mut dns: Vec<Dn>) -> Vec<Dn> {
    dns.sort_by_key(Dn::depth);
    let mut roots: Vec<Dn> = Vec::new();
    for dn in dns {
        if !roots.iter().any(|r| dn.is_within(r)) {
            roots.push(dn);
        }
    }
    roots
}

/// What the tracker's report says, read against the snapshot.
#[derive(Default)]
struct Report {
    /// Objects in scope now, by id.
    found: Vec<Found>,
    /// Ids the tracker reports gone (deleted, left the scope, no longer an
    /// object, or not named in a present phase).
    gone: HashSet<String>,
    /// Entries in scope, new there or at a new DN, that may hold objects:
    /// their subtrees are read.
    arrived: Vec<Dn>,
    /// The old DNs of entries that moved or left: the snapshot's objects
    /// below them moved with them.
    left: Vec<Dn>,
    /// Every id the tracker named as changed.
    changed: HashSet<String>,
    /// Ids a present phase named that the snapshot has not.
    unheld: Vec<String>,
}

/// Where an id was: its DN as the snapshot has it.
fn was_at<'a>(before: &'a Objects, containers: &'a Containers, id: &str) -> Option<&'a str> {
    before
        .get(id)
        .map(|o| o.dn.as_str())
        .or_else(|| containers.get(id).map(String::as_str))
}

impl Report {
    async fn read(
        objects: &ObjectReader,
        conn: &mut UpstreamConn,
        base_id: &str,
        before: &Objects,
        containers: &Containers,
        delta: &mut Delta,
    ) -> Result<Report, SyncError> {
        let mut report = Report {
            gone: std::mem::take(&mut delta.deleted),
            ..Report::default()
        };
        for entry in std::mem::take(&mut delta.changed) {
            report
                .take_changed(objects, conn, before, containers, entry)
                .await?;
        }
        if let Some(present) = &delta.present {
            report.take_present(present, base_id, before, containers);
        }
        for id in &report.gone {
            if let Some(old) = was_at(before, containers, id).and_then(|o| Dn::parse(o).ok()) {
                report.left.push(old);
            }
        }
        Ok(report)
    }

    /// One entry the tracker reports changed, as it is now.
    async fn take_changed(
        &mut self,
        objects: &ObjectReader,
        conn: &mut UpstreamConn,
        before: &Objects,
        containers: &Containers,
        entry: LdapSearchResultEntry,
    ) -> Result<(), SyncError> {
        let base = objects.reader().base_dn();
        let (Ok(dn), Some(id)) = (Dn::parse(&entry.dn), objects.reader().id_of(&entry)) else {
            return Ok(());
        };
        self.changed.insert(id.clone());
        if dn == *base {
            // Renamed in case or spacing only (base_dn still matches):
            // every line's DN text changed.
            if before.values().any(|o| !o.dn.ends_with(entry.dn.as_str())) {
                self.arrived.push(dn);
            }
            return Ok(());
        }
        let old = was_at(before, containers, &id);
        // The DN as written: a change of case or spacing is a change of
        // every line below.
        let moved = old.is_some_and(|old| old != entry.dn);
        if let Some(old) = old.filter(|_| moved).and_then(|o| Dn::parse(o).ok()) {
            self.left.push(old);
        }
        let in_scope = dn.is_within(base);
        let kind = if in_scope {
            objects.classify(conn, &entry).await?
        } else {
            None
        };
        // New here, moved, or of another kind (an organization no more, or
        // one now): what lies below has new DNs or parents.
        let reshaped = moved || old.is_none() || before.get(&id).map(|o| o.kind) != kind;
        if in_scope && reshaped && may_hold_objects(&entry, kind) {
            self.arrived.push(dn.clone());
        }
        match kind {
            Some(kind) => self.found.push(Found {
                kind,
                dn,
                id,
                entry,
            }),
            // Moved out of base_dn, or no longer an organization or an
            // account: gone, for the consumer.
            None => {
                self.gone.insert(id);
            }
        }
        Ok(())
    }

    /// A present phase: whatever the directory did not name is gone; what
    /// it names that the snapshot lacks may be an object restored from a
    /// backup with its old entryCSN (reported by no change): looked up.
    fn take_present(
        &mut self,
        present: &HashSet<String>,
        base_id: &str,
        before: &Objects,
        containers: &Containers,
    ) {
        let unnamed: Vec<String> = before
            .keys()
            .chain(containers.keys())
            .filter(|id| !present.contains(*id) && !self.changed.contains(*id))
            .cloned()
            .collect();
        self.gone.extend(unnamed);
        self.unheld = present
            .iter()
            .filter(|id| {
                !before.contains_key(*id)
                    && !containers.contains_key(*id)
                    && !self.changed.contains(*id)
                    && *id != base_id
            })
            .cloned()
            .collect();
    }
}

/// The directory contradicts its tracker's report: why, and the snapshot's
/// objects, untouched, for the whole comparison that follows.
#[derive(Debug)]
pub struct Contradicted {
    pub reason: Fallback,
    pub before: Objects,
}

/// Works out the change set from `delta` against the snapshot `before` and
/// its `containers`.
pub async fn apply(
    objects: &ObjectReader,
    conn: &mut UpstreamConn,
    base_id: &str,
    before: Objects,
    mut containers: Containers,
    mut delta: Delta,
) -> Result<Result<Computed, Contradicted>, SyncError> {
    let reader = objects.reader();
    let mut parents = ParentIds::new(reader.base_dn(), base_id);
    let report = Report::read(objects, conn, base_id, &before, &containers, &mut delta).await?;
    let known = containers.len();
    containers.retain(|id, _| !report.changed.contains(id) && !report.gone.contains(id));
    let containers_dropped = containers.len() != known;
    let Report {
        mut found,
        gone: reported_gone,
        arrived,
        left,
        unheld,
        ..
    } = report;

    // Below an entry that arrived every DN is new: read the subtree again
    // (once, from the highest such entry).
    let mut seen: HashSet<String> = found.iter().map(|f| f.id.clone()).collect();
    let (filter, attrs) = (
        objects.classifier().object_filter(),
        objects.renderer().object_attrs(),
    );
    for root in highest(arrived) {
        let entries = reader
            .search_all(conn, root.as_str(), &filter, &attrs, &[])
            .await?;
        found.extend(classified(objects, conn, entries, &mut seen).await?);
    }

    let entries = objects.objects_by_id(conn, &unheld).await?;
    found.extend(classified(objects, conn, entries, &mut seen).await?);

    // The snapshot's objects below an entry that moved or left, not seen
    // at a new place: where are they now?
    let candidates = below(&before, &left, |id| {
        !seen.contains(id) && !reported_gone.contains(id)
    });
    let entries = objects.objects_by_id(conn, &candidates).await?;
    found.extend(classified(objects, conn, entries, &mut seen).await?);
    let mut gone: HashSet<String> = candidates
        .into_iter()
        .filter(|id| !seen.contains(id))
        .collect();

    // A deletion is delivered only once the directory confirms it.
    let claimed: Vec<String> = reported_gone
        .iter()
        .filter(|id| before.contains_key(*id) && !seen.contains(*id))
        .cloned()
        .collect();
    let alive = objects.objects_by_id(conn, &claimed).await?;
    if let Some(first) = alive.first() {
        let id = reader.id_of(first).unwrap_or_default();
        let reason = Fallback(format!(
            "the directory's change tracking reported {} object(s) deleted that still exist \
             under base_dn (for example {id} at {}); none is delivered as deleted: this pull \
             compares the whole directory instead",
            alive.len(),
            first.dn
        ));
        return Ok(Err(Contradicted { reason, before }));
    }
    gone.extend(claimed);

    let items = items_of(objects, conn, &mut parents, found).await?;
    let mut computed = settle(before, items, gone);
    computed.containers = containers;
    computed.layout_changed |= containers_dropped;
    Ok(Ok(computed))
}

/// The ids of the objects of `before` strictly below one of `left` that
/// `wanted` accepts.
fn below(before: &Objects, left: &[Dn], wanted: impl Fn(&str) -> bool) -> Vec<String> {
    if left.is_empty() {
        return Vec::new();
    }
    before
        .iter()
        .filter(|(id, _)| wanted(id))
        .filter(|(_, o)| {
            Dn::parse(&o.dn).is_ok_and(|dn| left.iter().any(|l| dn.is_within(l) && dn != *l))
        })
        .map(|(id, _)| id.clone())
        .collect()
}

/// The change set: `items` whose line changed are upserts, `gone` objects
/// of `before` that were not found again deletes; `before` becomes the new
/// snapshot.
fn settle(
    mut before: Objects,
    items: BTreeMap<String, Item>,
    mut gone: HashSet<String>,
) -> Computed {
    gone.retain(|id| !items.contains_key(id));
    let deletes: Vec<_> = gone
        .into_iter()
        .filter_map(|id| before.remove(&id).map(|o| (o.kind, id, o.depth)))
        .collect();
    let mut layout_changed = !deletes.is_empty();
    let mut upserts = Vec::new();
    for (id, item) in items {
        let snap = item.snap();
        let hash = snap.hash;
        let previous = before.insert(id, snap);
        layout_changed |= previous.as_ref().is_none_or(|o| o.dn != item.dn);
        if previous.map(|o| o.hash) != Some(hash) {
            upserts.push(item);
        }
    }
    Computed {
        upserts,
        deletes,
        now: before,
        containers: Containers::new(),
        layout_changed,
    }
}

/// The objects among `entries` not `seen` yet, classified as a full pull
/// does; their ids join `seen`.
async fn classified(
    objects: &ObjectReader,
    conn: &mut UpstreamConn,
    entries: Vec<LdapSearchResultEntry>,
    seen: &mut HashSet<String>,
) -> Result<Vec<Found>, SyncError> {
    let reader = objects.reader();
    let mut found = Vec::new();
    for entry in entries {
        let (Ok(dn), Some(id)) = (Dn::parse(&entry.dn), reader.id_of(&entry)) else {
            continue;
        };
        // base_dn's entry is the parent of everything, never an object.
        if seen.contains(&id) || dn == *reader.base_dn() {
            continue;
        }
        if let Some(kind) = objects.classify(conn, &entry).await? {
            seen.insert(id.clone());
            found.push(Found {
                kind,
                dn,
                id,
                entry,
            });
        }
    }
    Ok(found)
}

/// The export lines of `found`, by id, parents learnt before children.
async fn items_of(
    objects: &ObjectReader,
    conn: &mut UpstreamConn,
    parents: &mut ParentIds,
    mut found: Vec<Found>,
) -> Result<BTreeMap<String, Item>, SyncError> {
    found.sort_by_key(|f| f.dn.depth());
    for f in found.iter().filter(|f| f.kind == Kind::Org) {
        parents.learn(&f.dn, &f.id);
    }
    let mut items = BTreeMap::new();
    for f in found {
        let parent = parents.of(objects, conn, &f.dn).await?;
        let item =
            objects
                .renderer()
                .item(f.kind, &f.dn, &f.entry, f.id.clone(), parent.as_deref());
        items.insert(f.id, item);
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_highest_of_nested_dns_are_read() {
        let dns = [
            "ou=a,ou=b,dc=x",
            "ou=b,dc=x",
            "cn=c,dc=x",
            "uid=d,cn=c,dc=x",
        ]
        .map(|d| Dn::parse(d).unwrap())
        .to_vec();
        let mut roots: Vec<String> = highest(dns).iter().map(Dn::key).collect();
        roots.sort();
        let mut want = vec![
            Dn::parse("cn=c,dc=x").unwrap().key(),
            Dn::parse("ou=b,dc=x").unwrap().key(),
        ];
        want.sort();
        assert_eq!(roots, want);
    }

    #[test]
    fn has_subordinates_decides_where_the_directory_gives_it() {
        let entry = |attrs: Vec<(&str, &str)>| LdapSearchResultEntry {
            dn: "cn=x,dc=x".into(),
            attributes: attrs
                .into_iter()
                .map(|(a, v)| ldap3_proto::proto::LdapPartialAttribute {
                    atype: a.into(),
                    vals: vec![v.as_bytes().to_vec()],
                })
                .collect(),
        };
        let leaf = entry(vec![("hasSubordinates", "FALSE")]);
        assert!(!may_hold_objects(&leaf, Some(Kind::Org)));
        let inner = entry(vec![("hassubordinates", "TRUE")]);
        assert!(may_hold_objects(&inner, Some(Kind::Account)));
        assert!(may_hold_objects(&entry(vec![]), None));
        assert!(may_hold_objects(&entry(vec![]), Some(Kind::Org)));
        assert!(!may_hold_objects(&entry(vec![]), Some(Kind::Account)));
    }
}

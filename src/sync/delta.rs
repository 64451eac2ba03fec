//! From what the directory reports changed (a [`Delta`]) to what the
//! consumer gets: upserts of objects whose export line changed, deletes of
//! objects it has that are gone, and the snapshot after both.
//!
//! Two things the directory does not report are worked out here. Renaming
//! or moving an organization changes the DN of everything below it, but
//! only the organization itself is reported changed: its subtree is read
//! again. And an export line names the parent organization's id, which a
//! report of one entry does not carry: parents are looked up by DN, once
//! per pull.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::export::{Exporter, Item, SyncError};
use super::snapshot::{line_hash, Kind, Objects};
use super::tracking::Delta;
use crate::ldap::dn::Dn;
use crate::upstream::UpstreamConn;

/// What a change set delivers, and the snapshot it leaves.
#[derive(Debug, Default)]
pub struct Computed {
    pub upserts: Vec<Item>,
    /// (kind, id, depth) of each object gone.
    pub deletes: Vec<(Kind, String, u16)>,
    pub now: Objects,
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
        exporter: &Exporter,
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
        let found = exporter.org_id_at(conn, &parent).await?;
        self.known.insert(key, found.clone());
        Ok(found)
    }
}

/// An entry of the delta that lies within `base_dn`.
struct InScope {
    kind: Kind,
    dn: Dn,
    id: String,
    entry: ldap3_proto::proto::LdapSearchResultEntry,
}

/// Works out the change set from `delta` against the snapshot `before`.
pub async fn apply(
    exporter: &Exporter,
    conn: &mut UpstreamConn,
    base_id: &str,
    mut before: Objects,
    delta: Delta,
) -> Result<Computed, SyncError> {
    let base = exporter.base_dn().clone();
    let base_key = base.key();
    let mut parents = ParentIds::new(&base, base_id);
    let mut gone: HashSet<String> = delta.deleted;
    let mut reported = HashSet::new();
    let mut in_scope = Vec::new();
    for entry in delta.changed {
        let (Ok(dn), Some(id)) = (Dn::parse(&entry.dn), exporter.id_of(&entry)) else {
            continue;
        };
        reported.insert(id.clone());
        if dn.key() == base_key {
            continue;
        }
        let kind = if dn.is_within(&base) {
            exporter.classify(conn, &entry).await?
        } else {
            None
        };
        match kind {
            Some(kind) => {
                if kind == Kind::Org {
                    parents.learn(&dn, &id);
                }
                in_scope.push(InScope {
                    kind,
                    dn,
                    id,
                    entry,
                });
            }
            // Moved out of base_dn, or no longer an organization or an
            // account: gone, for the consumer.
            _ => {
                gone.insert(id);
            }
        }
    }

    let mut items: BTreeMap<String, Item> = BTreeMap::new();
    let mut renamed_orgs: Vec<Dn> = Vec::new();
    in_scope.sort_by_key(|o| o.dn.depth());
    for o in in_scope {
        let parent = parents.of(exporter, conn, &o.dn).await?;
        let item = exporter.item(o.kind, &o.dn, &o.entry, o.id.clone(), parent.as_deref());
        let was = before.get(&o.id).map(|s| s.hash);
        if o.kind == Kind::Org && was.is_some_and(|h| h != line_hash(&item.line)) {
            renamed_orgs.push(o.dn);
        }
        items.insert(o.id, item);
    }

    // Below a renamed or moved organization every DN changed: read the
    // subtree again (once, from the highest such organization).
    let mut roots: Vec<Dn> = Vec::new();
    for org in renamed_orgs {
        if !roots.iter().any(|r| org.is_within(r)) {
            roots.push(org);
        }
    }
    for root in roots {
        let entries = exporter
            .search_all(
                conn,
                root.as_str(),
                &exporter.object_filter(),
                &exporter.object_attrs(),
                &[],
            )
            .await?;
        let mut below: Vec<(Kind, Dn, String, _)> = Vec::with_capacity(entries.len());
        for e in entries {
            let (Ok(dn), Some(id)) = (Dn::parse(&e.dn), exporter.id_of(&e)) else {
                continue;
            };
            if let Some(kind) = exporter.classify(conn, &e).await? {
                below.push((kind, dn, id, e));
            }
        }
        below.sort_by_key(|(_, dn, ..)| dn.depth());
        for (kind, dn, id, _) in &below {
            if *kind == Kind::Org {
                parents.learn(dn, id);
            }
        }
        for (kind, dn, id, entry) in below {
            if items.contains_key(&id) {
                continue;
            }
            let parent = parents.of(exporter, conn, &dn).await?;
            let item = exporter.item(kind, &dn, &entry, id.clone(), parent.as_deref());
            items.insert(id, item);
        }
    }

    // After a present phase, whatever the directory did not name is gone.
    if let Some(present) = &delta.present {
        gone.extend(
            before
                .keys()
                .filter(|id| !present.contains(*id) && !reported.contains(*id))
                .cloned(),
        );
    }
    gone.retain(|id| !items.contains_key(id));

    let deletes = gone
        .into_iter()
        .filter_map(|id| before.remove(&id).map(|o| (o.kind, id, o.depth)))
        .collect();
    let mut upserts = Vec::new();
    for (id, item) in items {
        let snap = item.snap();
        let previous = before.insert(id, snap);
        if previous.map(|o| o.hash) != Some(snap.hash) {
            upserts.push(item);
        }
    }
    Ok(Computed {
        upserts,
        deletes,
        now: before,
    })
}

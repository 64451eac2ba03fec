//! Incremental pulls. What changed since the snapshot a cookie names comes
//! from the directory's own change tracking where it has one
//! ([`super::tracking`]), else from comparing the whole directory with the
//! snapshot: new or changed objects are upserts (a rename or move keeps
//! its id, so it is an upsert, never a delete and an add), vanished ones
//! deletes. A change set deleting more than `max_account_deletes` accounts
//! or `max_org_deletes` organizations is held back until it is approved
//! with the token bound to exactly that change set. Nothing advances on an
//! error: the new snapshot (and cookie) is written only for a delivered
//! change set.

use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::containers::containers_of;
use super::delta::{self, Computed, Contradicted};
use super::error::{record_run, SyncError};
use super::export::Exporter;
use super::render::Item;
use super::snapshot::{line_hash, Kind, Objects, Snapshot};
use super::tracking::{Cursor, Fallback, Method};
use crate::upstream::UpstreamConn;

/// What a changes pull delivers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ChangeCounts {
    pub upserts: usize,
    pub account_deletes: usize,
    pub org_deletes: usize,
}

/// A delivered change set: its lines, in applying order, and the new cookie.
#[derive(Debug)]
pub struct ChangeSet {
    pub lines: Vec<String>,
    pub cookie: String,
    pub counts: ChangeCounts,
    /// How the changes were found.
    pub method: Method,
    /// Why the directory's own change tracking could not be used, when it
    /// could not.
    pub resync_reason: Option<String>,
}

impl ChangeSet {
    pub fn end_line(&self) -> String {
        let mut end = json!({
            "type": "end",
            "cookie": self.cookie,
            "counts": self.counts,
            "method": self.method,
        });
        if let Some(reason) = &self.resync_reason {
            end["resync_reason"] = json!(reason);
        }
        end.to_string()
    }
}

/// The token that approves exactly this change set, from this snapshot.
fn approval_token(
    key: &str,
    cookie: &str,
    deletes: &[(Kind, String, u16)],
    upserts: &[Item],
) -> String {
    let mut h = Sha256::new();
    h.update(key.as_bytes());
    h.update(b"\n");
    h.update(cookie.as_bytes());
    let mut parts: Vec<String> = deletes.iter().map(|(_, id, _)| format!("-{id}")).collect();
    parts.extend(
        upserts
            .iter()
            .map(|i| format!("+{}:{:016x}", i.id, line_hash(&i.line))),
    );
    parts.sort();
    for p in parts {
        h.update(b"\n");
        h.update(p.as_bytes());
    }
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The changes since the snapshot `cookie` names.
pub async fn changes(
    exporter: &Exporter,
    cookie: &str,
    approve: Option<&str>,
) -> Result<ChangeSet, SyncError> {
    let result = change_set(exporter, cookie, approve).await;
    record_run(exporter.metrics(), "changes", &result);
    result
}

async fn change_set(
    exporter: &Exporter,
    cookie: &str,
    approve: Option<&str>,
) -> Result<ChangeSet, SyncError> {
    let store = exporter.store();
    let reader = exporter.reader();
    let before = store
        .load(cookie)
        .await?
        .ok_or_else(|| SyncError::UnknownCookie(cookie.to_owned()))?;

    let mut conn = reader.connection().await?;
    let (computed, cursor, method, resync_reason) =
        find_changes(exporter, &mut conn, before).await?;
    let Computed {
        mut upserts,
        mut deletes,
        now,
        containers,
        layout_changed,
    } = computed;
    let containers = if layout_changed {
        containers_of(reader, &mut conn, &now, &containers).await?
    } else {
        containers
    };
    drop(conn);

    let account_deletes = deletes.iter().filter(|(k, ..)| *k == Kind::Account).count();
    let org_deletes = deletes.len() - account_deletes;
    let (max_accounts, max_orgs) = exporter.protection_limits();
    if account_deletes > max_accounts || org_deletes > max_orgs {
        let approval = approval_token(&store.approval_key()?, cookie, &deletes, &upserts);
        if approve != Some(approval.as_str()) {
            return Err(SyncError::Protection {
                account_deletes,
                org_deletes,
                approval,
            });
        }
    }

    // Applying order (README, "Control channel"): account deletions first (a new
    // account may take a deleted one's name); organization upserts, parents
    // first (accounts may move into them); account upserts; organization
    // deletions, children first (their accounts have left or gone by then).
    upserts.sort_by_key(|i| (i.kind != Kind::Org, i.depth));
    deletes.sort_by_key(|(kind, _, depth)| (*kind == Kind::Org, std::cmp::Reverse(*depth)));
    let delete_line = |(kind, id, _): &(Kind, String, u16)| {
        json!({ "op": "delete", "type": kind.as_str(), "id": id }).to_string()
    };
    // An export line is a JSON object we wrote: `{"type":...`.
    let upsert_line = |item: &Item| format!("{{\"op\":\"upsert\",{}", &item.line[1..]);
    let (account_gone, org_gone): (Vec<_>, Vec<_>) = deletes
        .iter()
        .partition(|(kind, ..)| *kind == Kind::Account);
    let (org_up, account_up): (Vec<_>, Vec<_>) =
        upserts.iter().partition(|item| item.kind == Kind::Org);
    let lines: Vec<String> = account_gone
        .into_iter()
        .map(delete_line)
        .chain(org_up.into_iter().map(upsert_line))
        .chain(account_up.into_iter().map(upsert_line))
        .chain(org_gone.into_iter().map(delete_line))
        .collect();
    let counts = ChangeCounts {
        upserts: upserts.len(),
        account_deletes,
        org_deletes,
    };
    let cookie = store.save(now, containers, cursor).await?;
    Ok(ChangeSet {
        lines,
        cookie,
        counts,
        method,
        resync_reason,
    })
}

/// The change set against `before`, the cursor for the next pull, how the
/// changes were found and why not natively, if so.
async fn find_changes(
    exporter: &Exporter,
    conn: &mut UpstreamConn,
    before: Snapshot,
) -> Result<(Computed, Option<Cursor>, Method, Option<String>), SyncError> {
    let tracker = exporter.tracker();
    let reader = exporter.reader();
    let base_id = exporter.check_base(conn).await?;
    let native = match &before.cursor {
        // Verification found objects the tracker does not report.
        Some(_) if before.drift.is_some() => before.drift.clone().map(|d| Err(Fallback(d))),
        // Written by a version that kept no DNs: moves cannot be followed
        // from it.
        Some(_) if !before.has_dns() => Some(Err(Fallback(
            "the snapshot was written by an earlier version of ldapgate, without the DNs \
             that moves are followed by; the next changes pull uses the directory's change \
             tracking again"
                .into(),
        ))),
        Some(cursor) => {
            let watched = exporter.objects().watched();
            Some(tracker.since(reader, &watched, conn, cursor).await?)
        }
        // A snapshot without a cursor: made when the directory offered no
        // tracking (or before it did); this pull records one if it can.
        None => None,
    };
    let Snapshot {
        objects: mut before,
        containers,
        ..
    } = before;
    let reason = match native {
        Some(Ok(delta)) => {
            let next = delta.cursor.clone();
            let objects = exporter.objects();
            let applied = delta::apply(objects, conn, &base_id, before, containers, delta);
            match applied.await? {
                Ok(computed) => return Ok((computed, Some(next), tracker.method(), None)),
                Err(Contradicted {
                    reason,
                    before: kept,
                }) => {
                    tracing::error!(reason = %reason.0, "the directory contradicts its change tracking");
                    exporter.metrics().tracking_mismatch();
                    before = kept;
                    Some(reason.0)
                }
            }
        }
        Some(Err(Fallback(reason))) => {
            tracing::warn!(%reason, "this changes pull compares the whole directory");
            Some(reason)
        }
        None => None,
    };
    let next = tracker.begin(reader, conn).await?;
    let computed = by_difference(exporter, conn, before).await?;
    Ok((computed, next, Method::Snapshot, reason))
}

/// The change set by walking the whole directory and comparing it with
/// `before`.
async fn by_difference(
    exporter: &Exporter,
    conn: &mut UpstreamConn,
    before: Objects,
) -> Result<Computed, SyncError> {
    // Items are compared as they arrive: only the changed ones are kept,
    // not every line of the directory.
    let (tx, mut rx) = mpsc::channel::<Item>(256);
    let compare = async move {
        let mut now = Objects::new();
        let mut upserts = Vec::new();
        while let Some(item) = rx.recv().await {
            let snap = item.snap();
            if before.get(&item.id).map(|o| o.hash) != Some(snap.hash) {
                now.insert(item.id.clone(), snap);
                upserts.push(item);
            } else {
                now.insert(item.id, snap);
            }
        }
        (before, now, upserts)
    };
    let walk = async move {
        // The sender goes with this future, so that the comparison ends.
        let tx = tx;
        exporter.walk_on(conn, &tx).await
    };
    let (walked, (before, now, upserts)) = tokio::join!(walk, compare);
    walked?;
    let deletes = before
        .into_iter()
        .filter(|(id, _)| !now.contains_key(id))
        .map(|(id, o)| (o.kind, id, o.depth))
        .collect();
    // Container ids are read again: a difference cannot tell a container
    // that moved away from another that took its DN.
    Ok(Computed {
        upserts,
        deletes,
        now,
        containers: Default::default(),
        layout_changed: true,
    })
}

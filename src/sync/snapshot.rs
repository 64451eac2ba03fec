//! Snapshots for incremental pulls by difference: after each successful
//! pull, the id, kind and a hash of every object's line are kept in
//! `state_dir` under a fresh cookie. A changes pull compares the directory
//! with the snapshot its cookie names. The last few snapshots are kept, so
//! a consumer that lost a response can repeat the pull with its old cookie.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::state::{StateDir, StateError};
use super::tracking::Cursor;
use crate::auth::resolver::canonical_id;

/// Snapshots kept besides the newest.
pub const KEEP: usize = 3;
const INDEX: &str = "snapshots.json";

/// What an object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Org,
    Account,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Org => "org",
            Kind::Account => "account",
        }
    }
}

/// One object as a snapshot remembers it (kept small: a snapshot of a
/// large directory is held in memory during a pull).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapObject {
    #[serde(rename = "k")]
    pub kind: Kind,
    /// The first 8 bytes of the SHA-256 of the object's export line.
    #[serde(rename = "h")]
    pub hash: u64,
    /// Depth of its DN, to delete children before parents.
    #[serde(rename = "d")]
    pub depth: u16,
    /// Its DN as the directory gave it: what lies below an entry that moves
    /// is found by it. Empty in snapshots written before DNs were kept.
    #[serde(rename = "n", default)]
    pub dn: String,
}

/// The objects a pull delivered, by id.
pub type Objects = BTreeMap<String, SnapObject>;

/// The entries in scope that hold objects but are none themselves
/// (`cn=Users`, a `cn=staging` of class organizationalRole): their DNs by
/// canonical id. A change tracker names such an entry by id when it moves
/// or leaves the scope; its old DN tells which objects went with it.
pub type Containers = BTreeMap<String, String>;

/// What a pull left behind for the next changes pull.
#[derive(Debug, Serialize, Deserialize)]
pub struct Snapshot {
    pub cookie: String,
    pub objects: Objects,
    #[serde(default)]
    pub containers: Containers,
    /// Where the directory's own change tracking stood when the pull
    /// began; none when the directory has none (or it was off).
    #[serde(default)]
    pub cursor: Option<Cursor>,
    /// Set by verification when the directory holds objects, or object
    /// contents, that this snapshot lacks and the tracker does not report
    /// since `cursor` (entries restored from a backup): why. Every changes
    /// pull from this snapshot then compares the whole directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<String>,
}

/// The hash of an export line.
pub fn line_hash(line: &str) -> u64 {
    let digest = Sha256::digest(line.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

fn file(cookie: &str) -> String {
    format!("snapshot-{cookie}.json")
}

/// True for a cookie this module could have made (hex only), so a cookie
/// from a request can never name another file.
pub fn well_formed(cookie: &str) -> bool {
    !cookie.is_empty() && cookie.len() <= 64 && cookie.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Stores `objects`, `containers` and the change-tracking `cursor` under a
/// new cookie and returns it.
pub fn save(
    state: &StateDir,
    objects: Objects,
    containers: Containers,
    cursor: Option<Cursor>,
) -> Result<String, StateError> {
    let cookie = crate::random::hex(16);
    state.write_json(
        &file(&cookie),
        &Snapshot {
            cookie: cookie.clone(),
            objects,
            containers,
            cursor,
            drift: None,
        },
    )?;
    let mut index: Vec<String> = state.read_json(INDEX)?.unwrap_or_default();
    index.push(cookie.clone());
    while index.len() > KEEP + 1 {
        let old = index.remove(0);
        state.remove(&file(&old))?;
    }
    state.write_json(INDEX, &index)?;
    Ok(cookie)
}

/// The cookies of the snapshots kept, oldest first.
pub fn kept(state: &StateDir) -> Result<Vec<String>, StateError> {
    Ok(state.read_json(INDEX)?.unwrap_or_default())
}

/// Marks the snapshot `cookie` names as drifted (see [`Snapshot::drift`]),
/// if it is still kept.
pub fn mark_drift(state: &StateDir, cookie: &str, reason: &str) -> Result<(), StateError> {
    // A snapshot dropped meanwhile is not written again (it would stay).
    if !kept(state)?.iter().any(|c| c == cookie) {
        return Ok(());
    }
    if let Some(mut snapshot) = load(state, cookie)? {
        snapshot.drift = Some(reason.to_owned());
        state.write_json(&file(cookie), &snapshot)?;
    }
    Ok(())
}

/// The snapshot `cookie` names, if it is still kept. Ids are read in their
/// canonical form: snapshots written before ids were canonical may hold an
/// entryUUID as the directory stored it (upper case).
pub fn load(state: &StateDir, cookie: &str) -> Result<Option<Snapshot>, StateError> {
    if !well_formed(cookie) {
        return Ok(None);
    }
    let snapshot = state.read_json::<Snapshot>(&file(cookie))?;
    Ok(snapshot.map(canonical))
}

/// `snapshot` with its ids in their canonical form.
pub fn canonical(mut snapshot: Snapshot) -> Snapshot {
    snapshot.objects = std::mem::take(&mut snapshot.objects)
        .into_iter()
        .map(|(id, object)| (canonical_id(&id), object))
        .collect();
    snapshot
}

impl Snapshot {
    /// True when every object's DN is kept: snapshots of earlier versions
    /// lack them, and a change tracker's report cannot be followed through
    /// moves without them.
    pub fn has_dns(&self) -> bool {
        self.objects.values().all(|o| !o.dn.is_empty())
    }
}

/// The key that signs approval tokens, created on first use.
pub fn approval_key(state: &StateDir) -> Result<String, StateError> {
    const KEY: &str = "approval.key";
    if let Some(key) = state.read(KEY)? {
        return Ok(String::from_utf8_lossy(&key).trim().to_owned());
    }
    let key = crate::random::hex(32);
    state.write(KEY, key.as_bytes())?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_older_snapshots_are_read_in_their_canonical_form() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        // As an earlier version wrote it: the entryUUID as slapd stored it.
        let cookie = "00ff";
        std::fs::write(
            dir.path().join(file(cookie)),
            r#"{"cookie":"00ff","objects":{"5D2F0A1C-1111-4222-8333-944455556666":{"k":"account","h":7,"d":4}}}"#,
        )
        .unwrap();
        let snapshot = load(&state, cookie).unwrap().unwrap();
        let ids: Vec<&String> = snapshot.objects.keys().collect();
        assert_eq!(ids, vec!["5d2f0a1c-1111-4222-8333-944455556666"]);
        assert!(!snapshot.has_dns(), "moves cannot be followed from it");
    }

    #[test]
    fn keeps_the_last_few_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let mut cookies = Vec::new();
        for i in 0..6 {
            let mut objects = Objects::new();
            objects.insert(
                format!("id{i}"),
                SnapObject {
                    kind: Kind::Account,
                    hash: line_hash("x"),
                    depth: 4,
                    dn: format!("uid=u{i},dc=example,dc=com"),
                },
            );
            cookies.push(save(&state, objects, Containers::new(), None).unwrap());
        }
        assert!(load(&state, &cookies[0]).unwrap().is_none());
        assert!(load(&state, &cookies[1]).unwrap().is_none());
        for c in &cookies[2..] {
            assert!(load(&state, c).unwrap().is_some());
        }
        assert!(load(&state, "../../etc/passwd").unwrap().is_none());
        assert_eq!(approval_key(&state).unwrap(), approval_key(&state).unwrap());
    }
}

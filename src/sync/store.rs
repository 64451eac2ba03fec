//! Where a directory's sync state lives: snapshots (what a changes pull
//! compares against), the base-DN fingerprint and the key of approval
//! tokens. Alone, in `sync.state_dir` ([`super::state`]); with
//! `[cluster]`, in the shared store, so that a cookie or approval token
//! issued by one instance is honoured by every instance of the tenant, and
//! a base DN blocked on one is blocked on all.
//!
//! While the shared store is down, pulls fail with `store_unavailable`
//! before any line is sent: never a cookie the other instances cannot
//! honour, never a short export.

use std::sync::Arc;

use redis::AsyncCommands;

use super::error::SyncError;
use super::snapshot::{self, Containers, Objects, Snapshot, KEEP};
use super::state::{BaseFingerprint, StateDir, BASE_FINGERPRINT};
use super::tracking::Cursor;
use crate::cluster::{ClusterStore, StoreError};

/// A directory's sync state.
pub enum SyncStore {
    /// Files in `sync.state_dir`.
    Local(StateDir),
    /// The shared store.
    Shared(SharedSync),
}

/// Sync state in the shared store, under `ldapgate:<directory>:sync:`.
pub struct SharedSync {
    store: Arc<ClusterStore>,
    directory: String,
    prefix: String,
    /// The state directory: it keeps a copy of the base-DN fingerprint,
    /// carried into the store when the store has none (it lost its data,
    /// or the fingerprint was recorded before `[cluster]`).
    local: StateDir,
    /// Pushes a cookie on the index and drops what falls off it.
    push: redis::Script,
}

impl SyncStore {
    /// The state of `directory`: in `store` when given, else in `state`.
    pub fn new(directory: &str, state: StateDir, store: Option<Arc<ClusterStore>>) -> SyncStore {
        match store {
            None => SyncStore::Local(state),
            Some(store) => SyncStore::Shared(SharedSync {
                prefix: format!("{}sync:", store.namespace(directory)),
                directory: directory.to_owned(),
                store,
                local: state,
                push: redis::Script::new(PUSH),
            }),
        }
    }

    /// Keeps `objects`, `containers` and `cursor` as a snapshot under a new
    /// cookie, and returns the cookie.
    pub async fn save(
        &self,
        objects: Objects,
        containers: Containers,
        cursor: Option<Cursor>,
    ) -> Result<String, SyncError> {
        match self {
            SyncStore::Local(state) => Ok(snapshot::save(state, objects, containers, cursor)?),
            SyncStore::Shared(shared) => shared.save(objects, containers, cursor).await,
        }
    }

    /// The snapshot `cookie` names, if it is still kept.
    pub async fn load(&self, cookie: &str) -> Result<Option<Snapshot>, SyncError> {
        match self {
            SyncStore::Local(state) => Ok(snapshot::load(state, cookie)?),
            SyncStore::Shared(shared) => shared.load(cookie).await,
        }
    }

    /// The cookies of the snapshots kept, oldest first.
    pub async fn kept(&self) -> Result<Vec<String>, SyncError> {
        match self {
            SyncStore::Local(state) => Ok(snapshot::kept(state)?),
            SyncStore::Shared(shared) => shared.kept().await,
        }
    }

    /// Marks the snapshot `cookie` names as drifted, if it is still kept.
    pub async fn mark_drift(&self, cookie: &str, reason: &str) -> Result<(), SyncError> {
        match self {
            SyncStore::Local(state) => Ok(snapshot::mark_drift(state, cookie, reason)?),
            SyncStore::Shared(shared) => {
                if !shared.kept().await?.iter().any(|c| c == cookie) {
                    return Ok(());
                }
                if let Some(mut s) = shared.load(cookie).await? {
                    s.drift = Some(reason.to_owned());
                    shared.put(cookie, &s).await?;
                }
                Ok(())
            }
        }
    }

    /// The key approval tokens are signed with: the same on every instance
    /// of the tenant with `[cluster]` (derived from its key), else one kept
    /// in `state_dir`.
    pub fn approval_key(&self) -> Result<String, SyncError> {
        match self {
            SyncStore::Local(state) => Ok(snapshot::approval_key(state)?),
            SyncStore::Shared(shared) => Ok(shared
                .store
                .sign(&[b"approval", shared.directory.as_bytes()])?
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()),
        }
    }

    /// The recorded base-DN fingerprint, if any.
    pub async fn base_fingerprint(&self) -> Result<Option<BaseFingerprint>, SyncError> {
        match self {
            SyncStore::Local(state) => Ok(state.read_json(BASE_FINGERPRINT)?),
            SyncStore::Shared(shared) => shared.base_fingerprint().await,
        }
    }

    /// Records `fingerprint` as the base DN's.
    pub async fn record_base(&self, fingerprint: &BaseFingerprint) -> Result<(), SyncError> {
        match self {
            SyncStore::Local(state) => Ok(state.write_json(BASE_FINGERPRINT, fingerprint)?),
            SyncStore::Shared(shared) => {
                let text = to_json(&StoredBase::Recorded(fingerprint.clone()))?;
                let key = shared.key("base");
                shared
                    .store
                    .bulk(|mut c| async move { c.set::<_, _, ()>(key, text).await })
                    .await?;
                // A copy here, for a store that loses its data.
                Ok(shared.local.write_json(BASE_FINGERPRINT, fingerprint)?)
            }
        }
    }

    /// Forgets the base-DN fingerprint (`ldapgate sync rearm`); false when
    /// none was recorded.
    pub async fn rearm(&self) -> Result<bool, SyncError> {
        match self {
            SyncStore::Local(state) => Ok(state.remove(BASE_FINGERPRINT)?),
            SyncStore::Shared(shared) => {
                let recorded = shared.base_fingerprint().await?.is_some();
                // Not deleted but marked: the other instances' copies are
                // then dropped rather than carried back into the store.
                let rearmed_at = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let text = to_json(&StoredBase::Rearmed { rearmed_at })?;
                let key = shared.key("base");
                shared
                    .store
                    .bulk(|mut c| async move { c.set::<_, _, ()>(key, text).await })
                    .await?;
                shared.local.remove(BASE_FINGERPRINT)?;
                Ok(recorded)
            }
        }
    }
}

/// The purpose snapshots are sealed under (see [`ClusterStore::seal`]):
/// they hold every object's DN and hashes of its export line.
const SNAPSHOT: &[u8] = b"sync snapshot";

/// The base-DN fingerprint as the store holds it: recorded, or re-armed
/// (`ldapgate sync rearm`), so that no instance's copy brings it back.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum StoredBase {
    Recorded(BaseFingerprint),
    Rearmed { rearmed_at: u64 },
}

/// KEYS[1]: the index. ARGV: the new cookie, how many to keep, the prefix
/// of snapshot keys. Drops the snapshots that fall off the index.
const PUSH: &str = r"
redis.call('RPUSH', KEYS[1], ARGV[1])
while redis.call('LLEN', KEYS[1]) > tonumber(ARGV[2]) do
  local old = redis.call('LPOP', KEYS[1])
  redis.call('DEL', ARGV[3] .. old)
end
return 0
";

fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, SyncError> {
    serde_json::to_vec(value).map_err(|e| {
        SyncError::State(super::state::StateError::Corrupt {
            path: "shared store".into(),
            reason: e.to_string(),
        })
    })
}

impl SharedSync {
    fn key(&self, part: &str) -> String {
        format!("{}{part}", self.prefix)
    }

    /// What a snapshot is sealed to: its directory and cookie, so that no
    /// snapshot can stand for another.
    fn context(&self, cookie: &str) -> Vec<u8> {
        format!("{}\n{cookie}", self.directory).into_bytes()
    }

    fn corrupt(&self, what: &str, e: serde_json::Error) -> SyncError {
        SyncError::Store(StoreError::Corrupt {
            store: self.store.address().to_string(),
            what: what.to_owned(),
            reason: e.to_string(),
        })
    }

    async fn put(&self, cookie: &str, snapshot: &Snapshot) -> Result<(), SyncError> {
        let bytes = self
            .store
            .seal(SNAPSHOT, &self.context(cookie), to_json(snapshot)?)?;
        let key = self.key(&format!("snapshot:{cookie}"));
        self.store
            .bulk(|mut c| async move { c.set::<_, _, ()>(key, bytes).await })
            .await?;
        Ok(())
    }

    async fn save(
        &self,
        objects: Objects,
        containers: Containers,
        cursor: Option<Cursor>,
    ) -> Result<String, SyncError> {
        let cookie = crate::random::hex(16);
        let snapshot = Snapshot {
            cookie: cookie.clone(),
            objects,
            containers,
            cursor,
            drift: None,
        };
        self.put(&cookie, &snapshot).await?;
        let mut push = self.push.prepare_invoke();
        push.key(self.key("snapshots"))
            .arg(&cookie)
            .arg(KEEP + 1)
            .arg(self.key("snapshot:"));
        self.store
            .bulk(|mut c| async move { push.invoke_async::<i64>(&mut c).await })
            .await?;
        Ok(cookie)
    }

    async fn load(&self, cookie: &str) -> Result<Option<Snapshot>, SyncError> {
        if !snapshot::well_formed(cookie) {
            return Ok(None);
        }
        let key = self.key(&format!("snapshot:{cookie}"));
        let bytes: Option<Vec<u8>> = self
            .store
            .bulk(|mut c| async move { c.get(key).await })
            .await?;
        let Some(sealed) = bytes else {
            return Ok(None);
        };
        let bytes = self.store.open(SNAPSHOT, &self.context(cookie), &sealed)?;
        let snapshot: Snapshot =
            serde_json::from_slice(&bytes).map_err(|e| self.corrupt("a snapshot", e))?;
        Ok(Some(snapshot::canonical(snapshot)))
    }

    async fn kept(&self) -> Result<Vec<String>, SyncError> {
        let key = self.key("snapshots");
        Ok(self
            .store
            .bulk(|mut c| async move { c.lrange(key, 0, -1).await })
            .await?)
    }

    async fn base_fingerprint(&self) -> Result<Option<BaseFingerprint>, SyncError> {
        let key = self.key("base");
        let read = key.clone();
        let bytes: Option<Vec<u8>> = self
            .store
            .bulk(|mut c| async move { c.get(read).await })
            .await?;
        let local = self.local.read_json::<BaseFingerprint>(BASE_FINGERPRINT)?;
        match bytes.map(|b| serde_json::from_slice::<StoredBase>(&b)) {
            Some(Ok(StoredBase::Recorded(recorded))) => {
                // Kept here too, so that a store that loses its data does
                // not lose the reference.
                if local.as_ref() != Some(&recorded) {
                    self.local.write_json(BASE_FINGERPRINT, &recorded)?;
                }
                Ok(Some(recorded))
            }
            Some(Ok(StoredBase::Rearmed { .. })) => {
                if local.is_some() {
                    self.local.remove(BASE_FINGERPRINT)?;
                }
                Ok(None)
            }
            Some(Err(e)) => Err(self.corrupt("the base-DN fingerprint", e)),
            // Nothing in the store (it lost its data, or the fingerprint
            // was recorded here before `[cluster]`): the copy here is the
            // reference again, for every instance (the first to say wins).
            None => {
                let Some(local) = local else {
                    return Ok(None);
                };
                let text = to_json(&StoredBase::Recorded(local.clone()))?;
                let written: bool = self
                    .store
                    .bulk(|mut c| async move { c.set_nx(key, text).await })
                    .await?;
                if written {
                    return Ok(Some(local));
                }
                Box::pin(self.base_fingerprint()).await
            }
        }
    }
}

//! The base-DN fingerprint: the first pull records the stable id of the
//! entry `base_dn` names; when the same DN later names another entry
//! (deleted and recreated, or another domain), every pull is refused until
//! an operator re-arms it.

use std::time::SystemTime;

use super::error::SyncError;
use super::reader::DirectoryReader;
use super::state::BaseFingerprint;
use super::store::SyncStore;
use crate::ldap::dn::Dn;
use crate::upstream::UpstreamConn;

/// noSuchObject.
const NO_SUCH_OBJECT: i64 = 32;

/// The stable id of the base entry, as the directory has it now.
pub async fn base_id(
    reader: &DirectoryReader,
    conn: &mut UpstreamConn,
) -> Result<String, SyncError> {
    let base_dn = reader.base_dn();
    let reply = reader
        .read_entry(conn, base_dn.as_str(), vec![reader.id_attr().to_owned()])
        .await?;
    if reply.done.code == NO_SUCH_OBJECT {
        return Err(SyncError::BaseMissing(base_dn.to_string()));
    }
    reply
        .entries
        .first()
        .and_then(|e| reader.id_of(e))
        .ok_or_else(|| SyncError::BaseMissing(base_dn.to_string()))
}

/// The base entry's id recorded by the first pull, if one was recorded for
/// `base_dn`.
pub async fn recorded_base_id(
    store: &SyncStore,
    base_dn: &Dn,
) -> Result<Option<String>, SyncError> {
    Ok(store
        .base_fingerprint()
        .await?
        .filter(|r| names(&r.base_dn, base_dn))
        .map(|r| r.id))
}

/// Reads the base entry's id and checks it against the recorded
/// fingerprint in `store`, recording it on the first pull.
pub async fn check_base(
    reader: &DirectoryReader,
    store: &SyncStore,
    conn: &mut UpstreamConn,
) -> Result<String, SyncError> {
    let id = base_id(reader, conn).await?;
    let base_dn = reader.base_dn();
    let recorded = store.base_fingerprint().await?;
    if to_record(recorded, base_dn, &id)? {
        let recorded_at = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        store
            .record_base(&BaseFingerprint {
                base_dn: base_dn.key(),
                id: id.clone(),
                recorded_at,
            })
            .await?;
    }
    Ok(id)
}

/// Whether the base entry's id `found` is to be recorded as `base_dn`'s
/// fingerprint, given what is `recorded`; an error when the fingerprint
/// recorded for `base_dn` names another entry.
fn to_record(
    recorded: Option<BaseFingerprint>,
    base_dn: &Dn,
    found: &str,
) -> Result<bool, SyncError> {
    match recorded {
        Some(recorded) if names(&recorded.base_dn, base_dn) => {
            if recorded.id != found {
                return Err(SyncError::BaseDnMoved {
                    base_dn: base_dn.to_string(),
                    recorded: recorded.id,
                    found: found.to_owned(),
                });
            }
            Ok(false)
        }
        // None yet, or recorded for another base DN: the operator has
        // (re)configured it, so this one is the reference from now on.
        _ => Ok(true),
    }
}

/// Whether a recorded DN key names `base_dn`: parsed again, so that a key
/// recorded before a spelling counted as the same (an alias of an
/// attribute type) still does.
fn names(recorded: &str, base_dn: &Dn) -> bool {
    Dn::parse(recorded).is_ok_and(|dn| dn == *base_dn)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(base_dn: &str, id: &str) -> Option<BaseFingerprint> {
        Some(BaseFingerprint {
            base_dn: base_dn.into(),
            id: id.into(),
            recorded_at: 1,
        })
    }

    #[test]
    fn the_first_pull_and_a_new_base_dn_record_the_id() {
        let base = Dn::parse("ou=Tenant,dc=example,dc=com").unwrap();
        assert!(to_record(None, &base, "a").unwrap());
        assert!(to_record(recorded("ou=other,dc=example,dc=com", "b"), &base, "a").unwrap());
        assert!(to_record(recorded("not a dn", "b"), &base, "a").unwrap());
    }

    #[test]
    fn another_entry_at_the_recorded_base_dn_blocks_the_pull() {
        let base = Dn::parse("ou=Tenant,dc=example,dc=com").unwrap();
        let same = recorded("ou=tenant,dc=example,dc=com", "a");
        assert!(!to_record(same.clone(), &base, "a").unwrap());
        match to_record(same, &base, "b") {
            Err(SyncError::BaseDnMoved {
                base_dn,
                recorded,
                found,
            }) => {
                assert_eq!(base_dn, "ou=Tenant,dc=example,dc=com");
                assert_eq!((recorded.as_str(), found.as_str()), ("a", "b"));
            }
            other => panic!("{other:?}"),
        }
    }
}

//! The base-DN fingerprint: the first pull records the stable id of the
//! entry `base_dn` names; when the same DN later names another entry
//! (deleted and recreated, or another domain), every pull is refused until
//! an operator re-arms it.

use std::time::SystemTime;

use super::export::{Exporter, SyncError};
use super::state::{BaseFingerprint, BASE_FINGERPRINT};
use crate::ldap::dn::Dn;
use crate::upstream::UpstreamConn;

impl Exporter {
    /// The stable id of the base entry, as the directory has it now.
    pub async fn base_id(&self, conn: &mut UpstreamConn) -> Result<String, SyncError> {
        let reply = self
            .read_entry(conn, self.base_dn.as_str(), vec![self.id_attr.to_owned()])
            .await?;
        if reply.done.code == 32 {
            return Err(SyncError::BaseMissing(self.base_dn.to_string()));
        }
        reply
            .entries
            .first()
            .and_then(|e| self.id_of(e))
            .ok_or_else(|| SyncError::BaseMissing(self.base_dn.to_string()))
    }

    /// The base entry's id recorded by the first pull, if one was recorded
    /// for this base DN.
    pub fn recorded_base_id(&self) -> Result<Option<String>, SyncError> {
        Ok(self
            .state
            .read_json::<BaseFingerprint>(BASE_FINGERPRINT)?
            .filter(|r| self.is_base(&r.base_dn))
            .map(|r| r.id))
    }

    /// Whether a recorded DN key names `base_dn`: parsed again, so that a
    /// key recorded before a spelling counted as the same (an alias of an
    /// attribute type) still does.
    fn is_base(&self, recorded: &str) -> bool {
        Dn::parse(recorded).is_ok_and(|dn| dn == self.base_dn)
    }

    /// Reads the base entry's id and checks it against the recorded
    /// fingerprint, recording it on the first pull.
    pub async fn check_base(&self, conn: &mut UpstreamConn) -> Result<String, SyncError> {
        let id = self.base_id(conn).await?;
        let key = self.base_dn.key();
        match self.state.read_json::<BaseFingerprint>(BASE_FINGERPRINT)? {
            Some(recorded) if self.is_base(&recorded.base_dn) => {
                if recorded.id != id {
                    return Err(SyncError::BaseDnMoved {
                        base_dn: self.base_dn.to_string(),
                        recorded: recorded.id,
                        found: id,
                    });
                }
            }
            // None yet, or recorded for another base DN: the operator has
            // (re)configured it, so this one is the reference from now on.
            _ => {
                let recorded_at = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                self.state.write_json(
                    BASE_FINGERPRINT,
                    &BaseFingerprint {
                        base_dn: key,
                        id: id.clone(),
                        recorded_at,
                    },
                )?;
            }
        }
        Ok(id)
    }

    /// Forgets the recorded base-DN fingerprint (`ldapgate sync rearm`).
    pub fn rearm(&self) -> Result<bool, SyncError> {
        Ok(self.state.remove(BASE_FINGERPRINT)?)
    }
}

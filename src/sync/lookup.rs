//! Objects found by their ids: whether an object a change tracker calls
//! deleted still exists, and where an object below a moved entry went.

use ldap3_proto::proto::{LdapFilter, LdapSearchResultEntry};

use super::export::{Exporter, SyncError};
use crate::config::DirectoryKind;
use crate::ldap::dn::Dn;
use crate::upstream::UpstreamConn;

/// Ids asked for in one search (an OR filter of equality assertions):
/// small enough for any server's filter limits.
const IDS_PER_SEARCH: usize = 50;

/// noSuchObject: an AD `<GUID=...>` base that names no object.
const NO_SUCH_OBJECT: i64 = 32;

impl Exporter {
    /// The organizations and accounts under `base_dn` whose id is one of
    /// `ids` (canonical form), read with [`Self::object_attrs`]. Entries
    /// that exist but are no object (their class changed) or lie outside
    /// `base_dn` are not returned.
    ///
    /// On Active Directory each id is one base-scope search of
    /// `<GUID=...>` (objectGUID is binary and cannot be written into a
    /// filter here); elsewhere ids go [`IDS_PER_SEARCH`] to an OR filter of
    /// the id attribute, whose equality rule (UUIDMatch for entryUUID)
    /// ignores the case the directory stored.
    pub async fn objects_by_id(
        &self,
        conn: &mut UpstreamConn,
        ids: &[String],
    ) -> Result<Vec<LdapSearchResultEntry>, SyncError> {
        let mut found = Vec::new();
        if self.kind == DirectoryKind::ActiveDirectory {
            for id in ids {
                let base = format!("<GUID={id}>");
                let reply = self
                    .search_base(conn, &base, self.object_filter(), self.object_attrs())
                    .await?;
                match reply.done.code {
                    0 | NO_SUCH_OBJECT => found.extend(reply.entries),
                    code => {
                        return Err(SyncError::Search {
                            base,
                            code,
                            diagnostic: reply.done.diagnostic,
                        })
                    }
                }
            }
        } else {
            for batch in ids.chunks(IDS_PER_SEARCH) {
                let wanted = batch
                    .iter()
                    .map(|id| LdapFilter::Equality(self.id_attr.to_owned(), id.clone()))
                    .collect();
                let filter = LdapFilter::And(vec![self.object_filter(), LdapFilter::Or(wanted)]);
                found.extend(
                    self.search_all(
                        conn,
                        self.base_dn.as_str(),
                        &filter,
                        &self.object_attrs(),
                        &[],
                    )
                    .await?,
                );
            }
        }
        found.retain(|e| {
            Dn::parse(&e.dn).is_ok_and(|dn| dn.is_within(&self.base_dn) && dn != self.base_dn)
        });
        Ok(found)
    }
}

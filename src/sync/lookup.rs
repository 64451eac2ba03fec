//! Objects found by their ids: whether an object a change tracker calls
//! deleted still exists, and where an object below a moved entry went.

use ldap3_proto::proto::{LdapFilter, LdapSearchResultEntry};

use super::error::SyncError;
use super::objects::ObjectReader;
use crate::config::DirectoryKind;
use crate::ldap::dn::Dn;
use crate::upstream::UpstreamConn;

/// Ids asked for in one search (an OR filter of equality assertions):
/// small enough for any server's filter limits.
const IDS_PER_SEARCH: usize = 50;

/// noSuchObject: an AD `<GUID=...>` base that names no object.
const NO_SUCH_OBJECT: i64 = 32;

impl ObjectReader {
    /// The organizations and accounts under `base_dn` whose id is one of
    /// `ids` (canonical form), read with the attributes of any object
    /// ([`super::render::Renderer::object_attrs`]). Entries that exist but
    /// are no object (their class changed) or lie outside `base_dn` are not
    /// returned.
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
        let reader = self.reader();
        let filter = self.classifier().object_filter();
        let attrs = self.renderer().object_attrs();
        let mut found = Vec::new();
        if reader.kind() == DirectoryKind::ActiveDirectory {
            for id in ids {
                let base = format!("<GUID={id}>");
                let reply = reader
                    .search_base(conn, &base, filter.clone(), attrs.clone())
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
                    .map(|id| LdapFilter::Equality(reader.id_attr().to_owned(), id.clone()))
                    .collect();
                let filter = LdapFilter::And(vec![filter.clone(), LdapFilter::Or(wanted)]);
                let base = reader.base_dn().as_str();
                found.extend(reader.search_all(conn, base, &filter, &attrs, &[]).await?);
            }
        }
        let base = reader.base_dn();
        found.retain(|e| Dn::parse(&e.dn).is_ok_and(|dn| dn.is_within(base) && dn != *base));
        Ok(found)
    }
}

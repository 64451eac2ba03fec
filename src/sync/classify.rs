//! Whether an object is an account, an organization or neither, decided
//! for entries a change tracker reports exactly as a full pull decides it;
//! and what a change tracker watches.

use ldap3_proto::proto::{LdapFilter, LdapSearchResultEntry};

use super::export::{Exporter, SyncError};
use super::snapshot::Kind;
use crate::auth::accounts::has_class;
use crate::config::DirectoryKind;
use crate::upstream::UpstreamConn;

impl Exporter {
    /// What an entry read with [`Self::object_attrs`] is, by the class
    /// names it lists: an account when it has a user class (as in a full
    /// pull, where an entry of both kinds ends up an account), else an
    /// organization, else neither. A fast answer that may miss a subclass;
    /// [`Self::classify`] is the directory's.
    pub fn kind_of(&self, entry: &LdapSearchResultEntry) -> Option<Kind> {
        if self.accounts.holds(entry) {
            Some(Kind::Account)
        } else if has_class(entry, &self.org_classes) {
            Some(Kind::Org)
        } else {
            None
        }
    }

    /// What an entry is, decided as a full pull decides it: by the
    /// directory, with the same filters, so that its schema (an entry of a
    /// subclass of a configured class) and AD's exclusions apply alike to
    /// entries a change tracker reports. The listed class names answer when
    /// they can only agree with the directory (an account by a listed class,
    /// off AD); otherwise the entry is read again with the account filter,
    /// then with the organization filter.
    pub async fn classify(
        &self,
        conn: &mut UpstreamConn,
        entry: &LdapSearchResultEntry,
    ) -> Result<Option<Kind>, SyncError> {
        let listed = self.kind_of(entry);
        if listed == Some(Kind::Account) && self.kind != DirectoryKind::ActiveDirectory {
            return Ok(listed);
        }
        if self.matches(conn, &entry.dn, self.account_filter()).await? {
            return Ok(Some(Kind::Account));
        }
        if listed == Some(Kind::Org) || self.matches(conn, &entry.dn, self.org_filter()).await? {
            return Ok(Some(Kind::Org));
        }
        Ok(None)
    }

    /// What a change tracker watches: the objects, and the entries that
    /// may hold them, so that moving a container (`cn=staging`, not an
    /// organization) is reported too. OpenLDAP evaluates hasSubordinates
    /// in filters, syncprov's included; AD has no such attribute, and
    /// holds objects in containers and organizational units.
    pub fn tracked_filter(&self) -> LdapFilter {
        let holders = if self.kind == DirectoryKind::ActiveDirectory {
            ["container", "organizationalUnit"]
                .map(|c| LdapFilter::Equality("objectClass".into(), c.into()))
                .to_vec()
        } else {
            vec![LdapFilter::Equality(
                "hasSubordinates".into(),
                "TRUE".into(),
            )]
        };
        let mut any = vec![self.object_filter()];
        any.extend(holders);
        LdapFilter::Or(any)
    }

    /// The attributes a change tracker reads: an object's, and
    /// hasSubordinates where the directory has it.
    pub fn tracked_attrs(&self) -> Vec<String> {
        let mut attrs = self.object_attrs();
        if self.kind != DirectoryKind::ActiveDirectory {
            attrs.push("hasSubordinates".into());
        }
        attrs
    }

    /// Whether the entry at `dn` matches `filter`, asked of the directory.
    async fn matches(
        &self,
        conn: &mut UpstreamConn,
        dn: &str,
        filter: LdapFilter,
    ) -> Result<bool, SyncError> {
        let reply = self
            .search_base(conn, dn, filter, vec!["1.1".into()])
            .await?;
        Ok(!reply.entries.is_empty())
    }
}

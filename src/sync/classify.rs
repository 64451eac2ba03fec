//! Which entries are sync objects: accounts (entries of a user class, as
//! sign-in and verification decide it) and organizations (entries of an
//! organization class that are no account). Entries a change tracker
//! reports are decided exactly as a full pull decides them.

use ldap3_proto::proto::{LdapFilter, LdapSearchResultEntry};

use super::error::SyncError;
use super::reader::DirectoryReader;
use super::snapshot::Kind;
use crate::auth::accounts::{class_filter, has_class, AccountClasses};
use crate::config::DirectoryKind;
use crate::upstream::UpstreamConn;

/// What makes an entry an organization or an account, in one directory.
#[derive(Debug, Clone)]
pub struct Classifier {
    kind: DirectoryKind,
    /// What an account is; the same for sign-in and verification.
    accounts: AccountClasses,
    /// `[signin] org_object_classes`.
    org_classes: Vec<String>,
}

impl Classifier {
    /// The classifier of a directory of `kind`: accounts as `accounts`
    /// says, organizations of one of `org_classes`.
    pub fn new(kind: DirectoryKind, accounts: AccountClasses, org_classes: Vec<String>) -> Self {
        Classifier {
            kind,
            accounts,
            org_classes,
        }
    }

    /// The filter that matches accounts.
    pub fn account_filter(&self) -> LdapFilter {
        self.accounts.filter()
    }

    /// The filter that matches organizations: entries of an organization
    /// class that are no account (an entry of both kinds is an account).
    pub fn org_filter(&self) -> LdapFilter {
        LdapFilter::And(vec![
            class_filter(&self.org_classes),
            LdapFilter::Not(Box::new(self.account_filter())),
        ])
    }

    /// The filter that matches organizations and accounts.
    pub fn object_filter(&self) -> LdapFilter {
        LdapFilter::Or(vec![class_filter(&self.org_classes), self.account_filter()])
    }

    /// What an entry read with its objectClass values is, by the class
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
        reader: &DirectoryReader,
        conn: &mut UpstreamConn,
        entry: &LdapSearchResultEntry,
    ) -> Result<Option<Kind>, SyncError> {
        let listed = self.kind_of(entry);
        if listed == Some(Kind::Account) && self.kind != DirectoryKind::ActiveDirectory {
            return Ok(listed);
        }
        if matches(reader, conn, &entry.dn, self.account_filter()).await? {
            return Ok(Some(Kind::Account));
        }
        if listed == Some(Kind::Org) || matches(reader, conn, &entry.dn, self.org_filter()).await? {
            return Ok(Some(Kind::Org));
        }
        Ok(None)
    }
}

/// Whether the entry at `dn` matches `filter`, asked of the directory.
async fn matches(
    reader: &DirectoryReader,
    conn: &mut UpstreamConn,
    dn: &str,
    filter: LdapFilter,
) -> Result<bool, SyncError> {
    let reply = reader
        .search_base(conn, dn, filter, vec!["1.1".into()])
        .await?;
    Ok(!reply.entries.is_empty())
}

#[cfg(test)]
mod tests {
    use ldap3_proto::proto::LdapPartialAttribute;

    use super::*;

    fn entry(classes: &[&str]) -> LdapSearchResultEntry {
        LdapSearchResultEntry {
            dn: "cn=x,dc=example,dc=com".into(),
            attributes: vec![LdapPartialAttribute {
                atype: "objectClass".into(),
                vals: classes.iter().map(|c| c.as_bytes().to_vec()).collect(),
            }],
        }
    }

    fn classifier(kind: DirectoryKind, user: &str) -> Classifier {
        Classifier::new(
            kind,
            AccountClasses::new(kind, vec![user.into()]),
            vec!["organizationalUnit".into()],
        )
    }

    #[test]
    fn an_entry_of_both_kinds_is_an_account_and_others_are_nothing() {
        let c = classifier(DirectoryKind::OpenLdap, "inetOrgPerson");
        assert_eq!(
            c.kind_of(&entry(&["top", "inetOrgPerson"])),
            Some(Kind::Account)
        );
        assert_eq!(
            c.kind_of(&entry(&["organizationalUnit", "inetOrgPerson"])),
            Some(Kind::Account)
        );
        assert_eq!(c.kind_of(&entry(&["organizationalunit"])), Some(Kind::Org));
        assert_eq!(c.kind_of(&entry(&["organizationalRole"])), None);
    }

    #[test]
    fn computers_are_no_accounts_on_active_directory() {
        let c = classifier(DirectoryKind::ActiveDirectory, "user");
        assert_eq!(c.kind_of(&entry(&["user"])), Some(Kind::Account));
        assert_eq!(c.kind_of(&entry(&["user", "computer"])), None);
    }

    #[test]
    fn organizations_exclude_accounts_and_objects_are_either() {
        let c = classifier(DirectoryKind::OpenLdap, "inetOrgPerson");
        let ou = LdapFilter::Or(vec![LdapFilter::Equality(
            "objectClass".into(),
            "organizationalUnit".into(),
        )]);
        let person = LdapFilter::Or(vec![LdapFilter::Equality(
            "objectClass".into(),
            "inetOrgPerson".into(),
        )]);
        assert_eq!(c.account_filter(), person);
        assert_eq!(
            c.org_filter(),
            LdapFilter::And(vec![ou.clone(), LdapFilter::Not(Box::new(person.clone()))])
        );
        assert_eq!(c.object_filter(), LdapFilter::Or(vec![ou, person]));
    }
}

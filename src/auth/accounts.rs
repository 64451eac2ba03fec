//! What counts as an account (a person who signs in and is synced), decided
//! once for sign-in, sync and verification alike.
//!
//! The decision is a filter the directory evaluates, so it follows the
//! directory's own schema: `(objectClass=person)` matches an entry whose
//! only class is `inetOrgPerson`, a subclass. On Active Directory, objects
//! of class `user` that are not people are excluded: computers (and the
//! managed service accounts derived from `computer`), and interdomain trust
//! accounts (userAccountControl bit 0x800, INTERDOMAIN_TRUST_ACCOUNT).

use ldap3_proto::proto::{LdapFilter, LdapMatchingRuleAssertion, LdapSearchResultEntry};

use crate::config::{DirectoryKind, TenantDirectory};

/// AD's bitwise-AND matching rule (LDAP_MATCHING_RULE_BIT_AND).
const AD_BIT_AND: &str = "1.2.840.113556.1.4.803";
/// userAccountControl's INTERDOMAIN_TRUST_ACCOUNT flag.
const AD_INTERDOMAIN_TRUST_ACCOUNT: &str = "2048";

/// The account classes of one directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountClasses {
    /// `[signin] user_object_classes`: an account has one of them.
    user: Vec<String>,
    /// An entry with one of these classes is never an account.
    excluded: Vec<String>,
    /// AD: leave out interdomain trust accounts too.
    exclude_trust_accounts: bool,
}

/// `(|(objectClass=c1)(objectClass=c2)..)`.
pub fn class_filter(classes: &[String]) -> LdapFilter {
    LdapFilter::Or(
        classes
            .iter()
            .map(|c| LdapFilter::Equality("objectClass".into(), c.clone()))
            .collect(),
    )
}

impl AccountClasses {
    pub fn from_config(config: &TenantDirectory) -> AccountClasses {
        AccountClasses::new(
            config.directory.kind,
            config.signin.user_object_classes.clone(),
        )
    }

    pub fn new(kind: DirectoryKind, user: Vec<String>) -> AccountClasses {
        let ad = kind == DirectoryKind::ActiveDirectory;
        AccountClasses {
            user,
            excluded: if ad {
                vec!["computer".into()]
            } else {
                Vec::new()
            },
            exclude_trust_accounts: ad,
        }
    }

    /// The filter that matches accounts, e.g. on AD
    /// `(&(|(objectClass=user))(!(objectClass=computer))
    /// (!(userAccountControl:1.2.840.113556.1.4.803:=2048)))`.
    pub fn filter(&self) -> LdapFilter {
        let mut parts = vec![class_filter(&self.user)];
        if !self.excluded.is_empty() {
            parts.push(LdapFilter::Not(Box::new(class_filter(&self.excluded))));
        }
        if self.exclude_trust_accounts {
            parts.push(LdapFilter::Not(Box::new(LdapFilter::Extensible(
                LdapMatchingRuleAssertion {
                    matching_rule: Some(AD_BIT_AND.into()),
                    type_: Some("userAccountControl".into()),
                    match_value: AD_INTERDOMAIN_TRUST_ACCOUNT.into(),
                    dn_attributes: false,
                },
            ))));
        }
        if parts.len() == 1 {
            return parts.remove(0);
        }
        LdapFilter::And(parts)
    }

    /// Whether an entry read with its objectClass values is an account, by
    /// class names as the entry lists them. The directory lists every
    /// superclass of an entry's classes in objectClass (RFC 4512 §2.4.1),
    /// so a configured superclass is found; prefer [`Self::filter`] where
    /// the directory can be asked.
    pub fn holds(&self, entry: &LdapSearchResultEntry) -> bool {
        has_class(entry, &self.user) && !has_class(entry, &self.excluded)
    }
}

/// Whether `entry` lists one of `classes` in objectClass.
pub fn has_class(entry: &LdapSearchResultEntry, classes: &[String]) -> bool {
    entry
        .attributes
        .iter()
        .filter(|a| a.atype.eq_ignore_ascii_case("objectClass"))
        .flat_map(|a| a.vals.iter())
        .any(|v| classes.iter().any(|c| c.as_bytes().eq_ignore_ascii_case(v)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ldap3_proto::proto::LdapPartialAttribute;

    fn entry(classes: &[&str]) -> LdapSearchResultEntry {
        LdapSearchResultEntry {
            dn: "cn=x".into(),
            attributes: vec![LdapPartialAttribute {
                atype: "objectClass".into(),
                vals: classes.iter().map(|c| c.as_bytes().to_vec()).collect(),
            }],
        }
    }

    #[test]
    fn openldap_accounts_are_the_user_classes() {
        let a = AccountClasses::new(DirectoryKind::OpenLdap, vec!["inetOrgPerson".into()]);
        assert_eq!(
            a.filter(),
            LdapFilter::Or(vec![LdapFilter::Equality(
                "objectClass".into(),
                "inetOrgPerson".into()
            )])
        );
        assert!(a.holds(&entry(&["top", "person", "InetOrgPerson"])));
        assert!(!a.holds(&entry(&["organizationalUnit"])));
    }

    #[test]
    fn on_ad_computers_and_trust_accounts_are_not_accounts() {
        let a = AccountClasses::new(DirectoryKind::ActiveDirectory, vec!["user".into()]);
        let LdapFilter::And(parts) = a.filter() else {
            panic!("not an AND: {:?}", a.filter())
        };
        assert_eq!(parts.len(), 3);
        assert_eq!(
            parts[1],
            LdapFilter::Not(Box::new(LdapFilter::Or(vec![LdapFilter::Equality(
                "objectClass".into(),
                "computer".into()
            )])))
        );
        let LdapFilter::Not(trust) = &parts[2] else {
            panic!("not a NOT")
        };
        let LdapFilter::Extensible(rule) = trust.as_ref() else {
            panic!("not an extensible match")
        };
        assert_eq!(rule.matching_rule.as_deref(), Some(AD_BIT_AND));
        assert_eq!(rule.match_value, "2048");
        assert!(a.holds(&entry(&["top", "person", "user"])));
        assert!(!a.holds(&entry(&["top", "person", "user", "computer"])));
        assert!(!a.holds(&entry(&[
            "top",
            "user",
            "computer",
            "msDS-GroupManagedServiceAccount"
        ])));
    }
}

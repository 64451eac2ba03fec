//! Resolving a sign-in ID (uid, mobile, mail, employee number, ...) to
//! exactly one directory entry.
//!
//! The filter is built from typed parts, `(&(|(objectClass=..))(|(a1=login)
//! (a2=login)..))`, and sent as BER, where a value is an octet string: no
//! character of a login can change the filter's structure. Entries are told
//! apart by their stable id (entryUUID, objectGUID, nsUniqueId), not by DN
//! strings; none is "not found", more than one is ambiguous, never "take the
//! first".
//!
//! A cached resolution is used only while the directory's change marker
//! has not moved since it was looked up ([`super::freshness`]); it saves a
//! search and never decides an answer on its own.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ldap3_proto::proto::{
    LdapDerefAliases, LdapFilter, LdapSearchRequest, LdapSearchResultEntry, LdapSearchScope,
};
use serde::Serialize;

use super::accounts::AccountClasses;
use super::freshness::ChangeWatch;
use crate::config::{DirectoryKind, TenantDirectory};
use crate::upstream::service::ServiceError;
use crate::upstream::UpstreamPool;

/// How many entries a resolution asks for: two would prove ambiguity, a few
/// more let the audit line say which attributes collided.
const SIZE_LIMIT: i32 = 10;

/// The entry a login resolved to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedEntry {
    pub dn: String,
    /// The stable id: entryUUID, objectGUID (as a GUID string) or nsUniqueId.
    pub id: String,
    pub attributes: BTreeMap<String, Vec<String>>,
}

/// The result of resolving a login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    Found(Arc<ResolvedEntry>),
    NotFound,
    /// More than one distinct entry; `collided` names the attributes whose
    /// values matched the login.
    Ambiguous {
        entries: usize,
        collided: Vec<String>,
    },
}

/// Why resolution could not be done.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("sign-in search failed with result {code}: {diagnostic}")]
    Search { code: i64, diagnostic: String },
}

/// Resolves logins for one directory.
pub struct SignInResolver {
    pool: Arc<UpstreamPool>,
    base_dn: String,
    attributes: Vec<String>,
    accounts: AccountClasses,
    id_attribute: &'static str,
    kind: DirectoryKind,
    watch: Arc<ChangeWatch>,
    /// Login → entry, with the [`ChangeWatch`] stamp taken before the search.
    cache: Option<moka::sync::Cache<String, (Arc<ResolvedEntry>, u64)>>,
}

impl SignInResolver {
    pub fn new(
        config: &TenantDirectory,
        pool: Arc<UpstreamPool>,
        watch: Arc<ChangeWatch>,
    ) -> SignInResolver {
        let kind = config.directory.kind;
        let cache = (!config.signin.cache_ttl.is_zero()).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(config.signin.cache_ttl)
                .build()
        });
        SignInResolver {
            pool,
            base_dn: config.directory.base_dn.to_string(),
            attributes: config.signin.attributes.clone(),
            accounts: AccountClasses::from_config(config),
            id_attribute: id_attribute(kind),
            kind,
            watch,
            cache,
        }
    }

    /// Forgets a cached resolution (after a failed bind: the entry may have
    /// moved).
    pub fn forget(&self, login: &str) {
        if let Some(cache) = &self.cache {
            cache.invalidate(login);
        }
    }

    /// Resolves `login` to one entry, from the cache when `use_cache` and
    /// nothing changed in the directory since it was cached. The bool says
    /// whether it came from the cache.
    pub async fn resolve(
        &self,
        login: &str,
        use_cache: bool,
    ) -> Result<(Resolution, bool), ResolveError> {
        if let Some((hit, stamp)) = self
            .cache
            .as_ref()
            .filter(|_| use_cache)
            .and_then(|c| c.get(login))
        {
            if self.watch.still_valid(stamp) {
                return Ok((Resolution::Found(hit), true));
            }
        }
        // Taken before the search: a change that lands while it runs makes
        // the result stale at once.
        let stamp = self.watch.stamp();
        let mut conn = self.pool.service_lease().await?;
        let limit = conn.settings().operation_timeout;
        let mut attrs = self.attributes.clone();
        attrs.extend([
            "cn".to_owned(),
            "displayName".to_owned(),
            self.id_attribute.to_owned(),
        ]);
        let request = LdapSearchRequest {
            base: self.base_dn.clone(),
            scope: LdapSearchScope::Subtree,
            aliases: LdapDerefAliases::Never,
            sizelimit: SIZE_LIMIT,
            timelimit: i32::try_from(limit.as_secs()).unwrap_or(i32::MAX),
            typesonly: false,
            filter: signin_filter(&self.accounts, &self.attributes, login),
            attrs,
        };
        let reply = conn.search(request).await.map_err(ServiceError::from)?;
        drop(conn);
        // sizeLimitExceeded (4) still carries the entries: ambiguous.
        if reply.done.code != 0 && reply.done.code != 4 {
            return Err(ResolveError::Search {
                code: reply.done.code,
                diagnostic: reply.done.diagnostic,
            });
        }
        let mut found: BTreeMap<String, ResolvedEntry> = BTreeMap::new();
        let mut collided = BTreeSet::new();
        for entry in reply.entries {
            let attributes = text_attributes(&entry.attributes, self.id_attribute);
            for (name, values) in &attributes {
                if self.attributes.iter().any(|a| a.eq_ignore_ascii_case(name))
                    && values.iter().any(|v| v.eq_ignore_ascii_case(login))
                {
                    collided.insert(name.clone());
                }
            }
            let id = entry_id(self.kind, &entry)
                .unwrap_or_else(|| format!("dn:{}", entry.dn.to_lowercase()));
            found.entry(id.clone()).or_insert(ResolvedEntry {
                dn: entry.dn,
                id,
                attributes,
            });
        }
        let resolution = match found.len() {
            0 => Resolution::NotFound,
            1 if reply.done.code == 0 => {
                let Some((_, entry)) = found.pop_first() else {
                    return Ok((Resolution::NotFound, false));
                };
                let entry = Arc::new(entry);
                if let Some(cache) = &self.cache {
                    cache.insert(login.to_owned(), (entry.clone(), stamp));
                }
                Resolution::Found(entry)
            }
            n => Resolution::Ambiguous {
                entries: n,
                collided: collided.into_iter().collect(),
            },
        };
        Ok((resolution, false))
    }
}

/// `(&<accounts>(|(a1=login)(a2=login)..))`, from typed parts; `<accounts>`
/// is [`AccountClasses::filter`], the same for sync and verification.
pub fn signin_filter(accounts: &AccountClasses, attributes: &[String], login: &str) -> LdapFilter {
    LdapFilter::And(vec![
        accounts.filter(),
        LdapFilter::Or(
            attributes
                .iter()
                .map(|a| LdapFilter::Equality(a.clone(), login.to_owned()))
                .collect(),
        ),
    ])
}

/// The attribute holding an entry's stable id.
pub fn id_attribute(kind: DirectoryKind) -> &'static str {
    match kind {
        DirectoryKind::ActiveDirectory => "objectGUID",
        DirectoryKind::Ds389 => "nsUniqueId",
        DirectoryKind::OpenLdap | DirectoryKind::Generic => "entryUUID",
    }
}

/// The stable id of an entry read with the id attribute of `kind`, as text.
pub fn entry_id(kind: DirectoryKind, entry: &LdapSearchResultEntry) -> Option<String> {
    let attr = id_attribute(kind);
    entry
        .attributes
        .iter()
        .find(|a| a.atype.eq_ignore_ascii_case(attr))
        .and_then(|a| a.vals.first())
        .map(|v| format_id(kind, v))
}

/// An id value in its one canonical text form, whichever path read it: AD's
/// binary objectGUID in the usual GUID form (the first three groups
/// little-endian), others (entryUUID, nsUniqueId) in lower case, as RFC 4122
/// prints a UUID and as syncrepl's binary entryUUID comes out; directories
/// and imports may store them in upper case.
pub fn format_id(kind: DirectoryKind, value: &[u8]) -> String {
    if kind == DirectoryKind::ActiveDirectory && value.len() == 16 {
        let v = value;
        return format!(
            "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            v[3], v[2], v[1], v[0], v[5], v[4], v[7], v[6], v[8], v[9], v[10], v[11], v[12], v[13], v[14], v[15]
        );
    }
    canonical_id(&String::from_utf8_lossy(value))
}

/// An id given as text in its canonical form: lower case.
pub fn canonical_id(text: &str) -> String {
    text.to_ascii_lowercase()
}

/// The text-valued attributes of an entry, for the caller; the id attribute
/// and binary values are left out.
fn text_attributes(
    attrs: &[ldap3_proto::proto::LdapPartialAttribute],
    id_attribute: &str,
) -> BTreeMap<String, Vec<String>> {
    attrs
        .iter()
        .filter(|a| !a.atype.eq_ignore_ascii_case(id_attribute))
        .filter_map(|a| {
            let values: Option<Vec<String>> = a
                .vals
                .iter()
                .map(|v| String::from_utf8(v.clone()).ok())
                .collect();
            values.map(|v| (a.atype.clone(), v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_logins_stay_values() {
        let classes = AccountClasses::new(DirectoryKind::OpenLdap, vec!["inetOrgPerson".into()]);
        let attrs = vec!["uid".to_owned(), "mail".to_owned()];
        let login = "*)(uid=*))(|(uid=*\\\0";
        let f = signin_filter(&classes, &attrs, login);
        let LdapFilter::And(parts) = f else {
            panic!("not an AND")
        };
        let LdapFilter::Or(alts) = &parts[1] else {
            panic!("not an OR")
        };
        assert_eq!(
            alts,
            &vec![
                LdapFilter::Equality("uid".into(), login.into()),
                LdapFilter::Equality("mail".into(), login.into()),
            ]
        );
    }

    #[test]
    fn object_guid_is_shown_mixed_endian() {
        let raw = [
            0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ];
        assert_eq!(
            format_id(DirectoryKind::ActiveDirectory, &raw),
            "00112233-4455-6677-8899-aabbccddeeff"
        );
        assert_eq!(format_id(DirectoryKind::OpenLdap, b"abc-123"), "abc-123");
        assert_eq!(
            format_id(
                DirectoryKind::OpenLdap,
                b"5D2F0A1C-1111-4222-8333-944455556666"
            ),
            "5d2f0a1c-1111-4222-8333-944455556666"
        );
        assert_eq!(
            format_id(DirectoryKind::Ds389, b"A1B2C3D4-E5F60718-293A4B5C-6D7E8F90"),
            "a1b2c3d4-e5f60718-293a4b5c-6d7e8f90"
        );
    }

    #[test]
    fn text_attributes_skip_binary_and_the_id() {
        use ldap3_proto::proto::LdapPartialAttribute as A;
        let attrs = vec![
            A {
                atype: "uid".into(),
                vals: vec![b"alice".to_vec()],
            },
            A {
                atype: "jpegPhoto".into(),
                vals: vec![vec![0xff, 0xfe]],
            },
            A {
                atype: "entryUUID".into(),
                vals: vec![b"x".to_vec()],
            },
        ];
        let t = text_attributes(&attrs, "entryUUID");
        assert_eq!(t.len(), 1);
        assert_eq!(t["uid"], vec!["alice"]);
    }
}

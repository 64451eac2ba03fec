//! One account, one identity: which directory entry a bind name reaches.
//!
//! Limits and lockout are kept per identity, the entry's stable id
//! (entryUUID, objectGUID, nsUniqueId), never per name: a sign-in ID, any
//! spelling of the entry's DN (case, spaces, escapes, attribute OIDs) and
//! every channel reach the same counters. A DN is mapped to its entry by
//! asking the directory (a base-scope read), so the directory's own DN
//! matching decides which spellings are equal. The answer is cached under
//! the DN as written, stamped by the [`ChangeWatch`].

use std::sync::Arc;
use std::time::Duration;

use ldap3_proto::proto::LdapFilter;

use super::accounts::AccountClasses;
use super::freshness::ChangeWatch;
use super::resolver::{entry_id, ResolveError};
use crate::config::DirectoryKind;
use crate::upstream::UpstreamPool;

/// What the cache of DN identities may hold, in bytes of DN and id text
/// (plus a per-entry allowance): bounded by size, not count, since a client
/// chooses the DNs.
const MAX_CACHED_BYTES: u64 = 32 * 1024 * 1024;

/// Bytes an entry costs besides its texts.
const ENTRY_OVERHEAD: usize = 128;

/// Whom a bind name reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// An account (an entry of the account classes), by its stable id.
    Account(String),
    /// Another entry (a service account, an administrator), by its id.
    Service(String),
    /// No entry the service account can see.
    Unknown,
}

/// The key an account's rate and lockout count under, whatever name or
/// channel reached it.
pub fn account_key(id: &str) -> String {
    format!("id:{id}")
}

/// Maps bind DNs to identities for one directory.
pub struct IdentityIndex {
    pool: Arc<UpstreamPool>,
    accounts: AccountClasses,
    id_attribute: &'static str,
    kind: DirectoryKind,
    watch: Arc<ChangeWatch>,
    cache: Option<moka::sync::Cache<String, (Identity, u64)>>,
}

impl IdentityIndex {
    pub fn new(
        pool: Arc<UpstreamPool>,
        accounts: AccountClasses,
        kind: DirectoryKind,
        watch: Arc<ChangeWatch>,
        cache_ttl: Duration,
    ) -> IdentityIndex {
        let cache = (!cache_ttl.is_zero()).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(MAX_CACHED_BYTES)
                .weigher(|dn: &String, (identity, _): &(Identity, u64)| {
                    let id = match identity {
                        Identity::Account(id) | Identity::Service(id) => id.len(),
                        Identity::Unknown => 0,
                    };
                    u32::try_from(dn.len() + id + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
                })
                .time_to_live(cache_ttl)
                .build()
        });
        IdentityIndex {
            pool,
            accounts,
            id_attribute: super::resolver::id_attribute(kind),
            kind,
            watch,
            cache,
        }
    }

    /// The identity `dn` reaches, and whether it came from the cache.
    ///
    /// Errors when the directory could not be asked; the caller then
    /// refuses the bind (a name that cannot be mapped cannot be limited).
    pub async fn of_dn(&self, dn: &str) -> Result<(Identity, bool), ResolveError> {
        if let Some((identity, stamp)) = self.cache.as_ref().and_then(|c| c.get(dn)) {
            if self.watch.still_valid(stamp) {
                return Ok((identity, true));
            }
        }
        let stamp = self.watch.stamp();
        let identity = self.look_up(dn).await?;
        // Names that reach no entry share one budget per address whatever
        // they are: nothing to remember them for.
        if let (Some(cache), false) = (&self.cache, identity == Identity::Unknown) {
            cache.insert(dn.to_owned(), (identity.clone(), stamp));
        }
        Ok((identity, false))
    }

    /// Drops what is cached for `dn`.
    pub fn forget(&self, dn: &str) {
        if let Some(cache) = &self.cache {
            cache.invalidate(dn);
        }
    }

    /// Asks the directory: first as an account (the account filter, so the
    /// directory's schema decides), then as any entry.
    async fn look_up(&self, dn: &str) -> Result<Identity, ResolveError> {
        let attrs = vec![self.id_attribute.to_owned()];
        let reply = self
            .pool
            .read_base(dn, self.accounts.filter(), attrs.clone())
            .await?;
        if let Some(id) = reply.entries.first().and_then(|e| entry_id(self.kind, e)) {
            return Ok(Identity::Account(id));
        }
        if reply.done.code == 0 {
            let any = LdapFilter::Present("objectClass".into());
            let reply = self.pool.read_base(dn, any, attrs).await?;
            if let Some(id) = reply.entries.first().and_then(|e| entry_id(self.kind, e)) {
                return Ok(Identity::Service(id));
            }
        }
        // noSuchObject, invalidDNSyntax, an entry hidden by access control:
        // the bind goes on and the directory answers it, within the shared
        // budget of unmapped names.
        Ok(Identity::Unknown)
    }
}

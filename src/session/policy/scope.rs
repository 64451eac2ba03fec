//! The DNs policy compares request DNs with (`base_dn`, the service
//! account), normalised by the same [`DnSchema`] that normalises the
//! request's DNs: the directory's once its subschema has been read, the
//! built-in table until then (and when it cannot be read).

use std::sync::{Arc, RwLock, Weak};

use crate::ldap::dn::{Dn, DnError};
use crate::ldap::dn_schema::{DnSchema, DnSchemaSource};

/// `base_dn` and the service account's DN under one DN schema.
#[derive(Debug)]
pub struct DnScope {
    schema: DnSchema,
    base_dn: Dn,
    service_dn: Option<Dn>,
}

impl DnScope {
    /// The configured DNs (parsed by [`Dn::parse`]) under the built-in table.
    pub fn built_in(base_dn: Dn, service_dn: Option<Dn>) -> DnScope {
        DnScope {
            schema: DnSchema::built_in(),
            base_dn,
            service_dn,
        }
    }

    /// The same DNs under `schema`.
    pub fn with_schema(&self, schema: DnSchema) -> Result<DnScope, DnError> {
        let base_dn = schema.renormalise(&self.base_dn)?;
        let service_dn = match &self.service_dn {
            Some(dn) => Some(schema.renormalise(dn)?),
            None => None,
        };
        Ok(DnScope {
            schema,
            base_dn,
            service_dn,
        })
    }

    /// A request's DN, normalised as the scope's DNs are.
    pub fn parse(&self, bytes: &[u8]) -> Result<Dn, DnError> {
        self.schema.from_bytes(bytes)
    }

    pub fn base_dn(&self) -> &Dn {
        &self.base_dn
    }

    /// True when `dn` (from [`Self::parse`]) is `base_dn` or below it.
    pub fn contains(&self, dn: &Dn) -> bool {
        dn.is_within(&self.base_dn)
    }

    /// True when the DN an entry of the directory's answer names (its
    /// objectName, as the directory wrote it) is `base_dn` or below it.
    /// The directory writes its own DNs consistently, so the common case
    /// is the configured text at the end, after a separator; anything else
    /// is parsed and compared by the schema.
    pub fn holds(&self, dn: &[u8]) -> bool {
        let base = self.base_dn.as_str().as_bytes();
        if let Some(head) = dn.strip_suffix(base) {
            // The configured text exactly, after an unescaped comma: a
            // comma is a separator when an even number of backslashes
            // precede it.
            let separated = head.strip_suffix(b",").is_some_and(|before| {
                before.iter().rev().take_while(|b| **b == b'\\').count() % 2 == 0
            });
            if head.is_empty() || separated {
                return true;
            }
        }
        self.parse(dn).is_ok_and(|dn| self.contains(&dn))
    }

    /// True when `dn` (from [`Self::parse`]) names the service account.
    pub fn is_service_account(&self, dn: &Dn) -> bool {
        self.service_dn.as_ref() == Some(dn)
    }

    pub fn source(&self) -> DnSchemaSource {
        self.schema.source()
    }
}

/// The scope every session of one configuration reads, replaced whole when
/// the directory's schema is read. A `std` lock around an `Arc`: readers
/// hold it only to clone the `Arc` (never across an `.await`), the writer
/// takes it a few times an hour; `arc-swap` would spare even that, but is
/// not worth a dependency here.
#[derive(Debug, Clone)]
pub struct SharedDnScope(Arc<RwLock<Arc<DnScope>>>);

/// A [`SharedDnScope`] that does not keep the sessions' policy alive: a task
/// that refreshes it ends when the configuration it served is replaced.
#[derive(Debug, Clone)]
pub struct WeakDnScope(Weak<RwLock<Arc<DnScope>>>);

impl SharedDnScope {
    pub fn new(scope: DnScope) -> SharedDnScope {
        SharedDnScope(Arc::new(RwLock::new(Arc::new(scope))))
    }

    /// The scope in force now.
    pub fn current(&self) -> Arc<DnScope> {
        // A panic while holding the lock cannot leave the value half
        // written (it is replaced whole), so a poisoned lock is still good.
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Normalises the scope's DNs by `schema` from now on; on error (not
    /// expected: the DNs parsed before) nothing changes.
    pub fn set_schema(&self, schema: DnSchema) -> Result<(), DnError> {
        let next = Arc::new(self.current().with_schema(schema)?);
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = next;
        Ok(())
    }

    pub fn downgrade(&self) -> WeakDnScope {
        WeakDnScope(Arc::downgrade(&self.0))
    }
}

impl WeakDnScope {
    /// The shared scope, while a policy still holds it.
    pub fn upgrade(&self) -> Option<SharedDnScope> {
        self.0.upgrade().map(SharedDnScope)
    }
}

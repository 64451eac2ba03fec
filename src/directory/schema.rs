//! The DN schema a directory's sessions compare DNs by, kept current from
//! the directory's subschema.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tracing::{info, warn};

use crate::config::DirectoryConfig;
use crate::ldap::dn_schema::DnSchema;
use crate::session::policy::{SharedDnScope, WeakDnScope};
use crate::upstream::UpstreamPool;

/// How often the directory's subschema is read again once it has been
/// read: schemas change rarely, and a change is seen within this long.
const DN_SCHEMA_REFRESH: Duration = Duration::from_secs(600);

/// Keeps the sessions' DN comparison on the directory's schema
/// ([`DnSchema`]): reads its subschema at start, again every
/// [`DN_SCHEMA_REFRESH`], and every health-check interval while it cannot
/// be read (the directory down, or its subschema hidden from the service
/// account). Until the first read succeeds DNs compare by the built-in
/// table; a failed re-read keeps the schema read before.
pub(super) struct DnSchemaReader {
    pool: Weak<UpstreamPool>,
    scope: WeakDnScope,
    retry: Duration,
    /// What the last read gave: the number of attribute types, or None
    /// after a failure; logged only when it changes.
    last: Option<Option<usize>>,
}

impl DnSchemaReader {
    pub(super) fn new(
        pool: &Arc<UpstreamPool>,
        scope: &SharedDnScope,
        directory: &DirectoryConfig,
    ) -> DnSchemaReader {
        DnSchemaReader {
            pool: Arc::downgrade(pool),
            scope: scope.downgrade(),
            retry: directory.health_check_interval,
            last: None,
        }
    }

    /// Reads once now when `reachable` (the first sessions then compare by
    /// the directory's schema; with no server up the read could only wait
    /// for connect timeouts, and the directory's listeners for it), then
    /// keeps reading in a task that ends when the configuration is replaced
    /// (its policy or pool gone).
    pub(super) async fn start(mut self, reachable: bool) {
        let mut wait = if reachable {
            match self.read().await {
                Some(wait) => wait,
                None => return,
            }
        } else {
            warn!(
                retry = %humantime::format_duration(self.retry),
                "cannot read the directory's subschema: no directory server answered yet; \
                 DNs compare by the built-in table of naming types until it can be read"
            );
            self.last = Some(None);
            self.retry
        };
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(wait).await;
                match self.read().await {
                    Some(next) => wait = next,
                    None => return,
                }
            }
        });
    }

    /// One read; how long until the next, or None when nobody needs it.
    async fn read(&mut self) -> Option<Duration> {
        let pool = self.pool.upgrade()?;
        let scope = self.scope.upgrade()?;
        let read = pool.read_schema().await;
        let applied = read.map(|schema| {
            let types = schema.len();
            scope
                .set_schema(DnSchema::from_schema(&schema))
                .map(|()| types)
        });
        match applied {
            Ok(Ok(types)) => {
                if self.last != Some(Some(types)) {
                    info!(
                        types,
                        "DNs compare by the directory's schema: attribute type names, \
                         aliases and OIDs, and each type's equality rule"
                    );
                }
                self.last = Some(Some(types));
                Some(DN_SCHEMA_REFRESH)
            }
            Ok(Err(e)) => {
                warn!(error = %e, "the directory's schema does not parse base_dn; DNs compare as before");
                self.last = Some(None);
                Some(DN_SCHEMA_REFRESH)
            }
            Err(e) => {
                if self.last != Some(None) {
                    warn!(
                        error = %e,
                        retry = %humantime::format_duration(self.retry),
                        "cannot read the directory's subschema: DNs compare by the schema read \
                         before, or the built-in table of naming types (values case-insensitive)"
                    );
                }
                self.last = Some(None);
                Some(self.retry)
            }
        }
    }
}

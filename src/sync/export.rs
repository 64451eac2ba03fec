//! The pulls of one directory ([`Exporter`]), and the full pull: every
//! organization and account under `base_dn`, as NDJSON lines streamed page
//! by page (RFC 2696), with a stable id per object and its parent
//! organization's id.
//!
//! The pulls are built on the [`DirectoryReader`] (through the
//! [`ObjectReader`] of organizations and accounts); the changes pull and
//! verification have modules of their own, which use this one. A size
//! limit, a failed page or a server that drops paging is an error for the
//! whole pull: the consumer only trusts a pull that ends with an `end`
//! line.

use std::sync::Arc;

use ldap3_proto::proto::LdapSearchResultEntry;
use tokio::sync::mpsc;

use super::base;
use super::classify::Classifier;
use super::containers::containers_of;
use super::error::record_run;
pub use super::error::SyncError;
use super::objects::ObjectReader;
use super::reader::DirectoryReader;
use super::render::Renderer;
pub use super::render::{end_line, error_line, Counts, Item};
use super::snapshot::{Containers, Objects};
use super::state::StateDir;
use super::store::SyncStore;
use super::tracking::Tracker;
use crate::auth::accounts::AccountClasses;
use crate::cluster::ClusterStore;
use crate::config::TenantDirectory;
use crate::ldap::dn::Dn;
use crate::metrics::DirectoryMetrics;
use crate::upstream::UpstreamConn;
use crate::upstream::UpstreamPool;

/// Pulls for one directory: full and changes pulls and verification, over
/// what they read the directory with and the state they keep.
pub struct Exporter {
    objects: ObjectReader,
    store: SyncStore,
    tracker: Tracker,
    /// Sync protection: the most accounts a change set may delete unapproved.
    max_account_deletes: usize,
    /// Sync protection: the most organizations a change set may delete
    /// unapproved.
    max_org_deletes: usize,
    /// The directory's metrics: runs and their results.
    metrics: DirectoryMetrics,
}

impl Exporter {
    /// The pulls of the directory `config` describes, read over the
    /// service account's connections of `pool`; their state is kept in
    /// `cluster` when given (every instance of the tenant shares it), else
    /// in `sync.state_dir`.
    pub fn new(
        config: &TenantDirectory,
        pool: Arc<UpstreamPool>,
        cluster: Option<Arc<ClusterStore>>,
    ) -> Exporter {
        let metrics = pool.metrics().clone();
        let kind = config.directory.kind;
        let reader = DirectoryReader::new(
            pool,
            config.directory.base_dn.clone(),
            kind,
            config.sync.page_size,
        );
        let classifier = Classifier::new(
            kind,
            AccountClasses::from_config(config),
            config.signin.org_object_classes.clone(),
        );
        let renderer = Renderer::new(config.sync.fields.clone(), reader.id_attr());
        Exporter {
            objects: ObjectReader::new(reader, classifier, renderer),
            store: SyncStore::new(&config.name, StateDir::new(&config.sync.state_dir), cluster),
            tracker: Tracker::new(kind, config.sync.change_tracking),
            max_account_deletes: config.sync.max_account_deletes,
            max_org_deletes: config.sync.max_org_deletes,
            metrics,
        }
    }

    /// Where this directory's sync runs are counted.
    pub fn metrics(&self) -> &DirectoryMetrics {
        &self.metrics
    }

    /// The DN every pull is scoped to.
    pub fn base_dn(&self) -> &Dn {
        self.reader().base_dn()
    }

    /// What reads the directory.
    pub fn reader(&self) -> &DirectoryReader {
        self.objects.reader()
    }

    /// What reads organizations and accounts.
    pub fn objects(&self) -> &ObjectReader {
        &self.objects
    }

    /// The directory's own change tracking, as configured.
    pub fn tracker(&self) -> Tracker {
        self.tracker
    }

    /// Where snapshots and the base-DN fingerprint are kept.
    pub fn store(&self) -> &SyncStore {
        &self.store
    }

    /// (max_account_deletes, max_org_deletes) of sync protection.
    pub fn protection_limits(&self) -> (usize, usize) {
        (self.max_account_deletes, self.max_org_deletes)
    }

    /// The stable id of the base entry, as the directory has it now.
    pub async fn base_id(&self, conn: &mut UpstreamConn) -> Result<String, SyncError> {
        base::base_id(self.reader(), conn).await
    }

    /// The base entry's id recorded by the first pull, if one was recorded
    /// for this base DN.
    pub async fn recorded_base_id(&self) -> Result<Option<String>, SyncError> {
        base::recorded_base_id(&self.store, self.base_dn()).await
    }

    /// Reads the base entry's id and checks it against the recorded
    /// fingerprint, recording it on the first pull.
    pub async fn check_base(&self, conn: &mut UpstreamConn) -> Result<String, SyncError> {
        base::check_base(self.reader(), &self.store, conn).await
    }

    /// Forgets the recorded base-DN fingerprint (`ldapgate sync rearm`).
    pub async fn rearm(&self) -> Result<bool, SyncError> {
        self.store.rearm().await
    }

    /// Visits every account with `attrs`, page by page, after checking the
    /// base DN's fingerprint.
    pub async fn scan_accounts(
        &self,
        attrs: &[String],
        mut visit: impl FnMut(&LdapSearchResultEntry),
    ) -> Result<(), SyncError> {
        let reader = self.reader();
        let mut conn = reader.connection().await?;
        self.check_base(&mut conn).await?;
        let filter = self.objects.classifier().account_filter();
        let mut pages = reader.pages(reader.base_dn().as_str(), &filter, attrs, &[]);
        while let Some(page) = pages.next(&mut conn).await? {
            page.iter().for_each(&mut visit);
        }
        Ok(())
    }

    /// The full export, one line at a time into `out`. On success the
    /// objects delivered are kept as a snapshot; returns the counts and the
    /// cookie for the `end` line.
    pub async fn full(&self, out: &mpsc::Sender<String>) -> Result<(Counts, String), SyncError> {
        let result = self.full_pull(out).await;
        record_run(&self.metrics, "full", &result);
        result
    }

    async fn full_pull(&self, out: &mpsc::Sender<String>) -> Result<(Counts, String), SyncError> {
        let reader = self.reader();
        // Where the directory's change tracking stands, before the walk: a
        // change made during it is reported again next time, never lost.
        let mut conn = reader.connection().await?;
        let cursor = self.tracker.begin(reader, &mut conn).await?;
        drop(conn);
        let (tx, mut rx) = mpsc::channel::<Item>(256);
        let forward = async move {
            let mut objects = Objects::new();
            while let Some(item) = rx.recv().await {
                let snap = item.snap();
                objects.insert(item.id, snap);
                // A consumer that left ends the walk: its sends then fail.
                out.send(item.line)
                    .await
                    .map_err(|_| SyncError::ConsumerGone)?;
            }
            Ok::<_, SyncError>(objects)
        };
        let (walked, objects) = tokio::join!(self.walk(tx), forward);
        let counts = walked?;
        let objects = objects?;
        let mut conn = reader.connection().await?;
        let containers = containers_of(reader, &mut conn, &objects, &Containers::new()).await?;
        drop(conn);
        let cookie = self.store.save(objects, containers, cursor).await?;
        Ok((counts, cookie))
    }

    /// Every organization and account as an [`Item`], organizations first
    /// and parents before children, after checking the base DN's
    /// fingerprint.
    pub async fn walk(&self, out: mpsc::Sender<Item>) -> Result<Counts, SyncError> {
        let reader = self.reader();
        let mut conn = reader.connection().await?;
        self.walk_on(&mut conn, &out).await
    }

    /// [`Self::walk`] on a connection of the caller's.
    pub async fn walk_on(
        &self,
        conn: &mut UpstreamConn,
        out: &mpsc::Sender<Item>,
    ) -> Result<Counts, SyncError> {
        let base_id = self.check_base(conn).await?;
        self.objects.walk_on(conn, &base_id, out).await
    }
}

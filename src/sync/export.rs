//! Full export: every organization and account under `base_dn`, as NDJSON
//! lines streamed page by page (RFC 2696), with a stable id per object and
//! its parent organization's id.
//!
//! Organizations come first (all of them, so that each line can name its
//! parent's id; there are few compared with accounts), then accounts a page
//! at a time: memory grows with the page size, not with the directory. A
//! size limit, a failed page or a server that drops paging is an error for
//! the whole pull: the consumer only trusts a pull that ends with an `end`
//! line.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use ldap3_proto::control::LdapControl;
use ldap3_proto::proto::{
    LdapDerefAliases, LdapFilter, LdapPartialAttribute, LdapSearchRequest, LdapSearchResultEntry,
    LdapSearchScope,
};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::error::record_run;
pub use super::error::SyncError;
use super::snapshot::{self, line_hash, Containers, Kind, Objects, SnapObject};
use super::state::StateDir;
use super::tracking::Tracker;
use crate::auth::accounts::{class_filter, AccountClasses};
use crate::auth::resolver::{entry_id, id_attribute};
use crate::config::{DirectoryKind, TenantDirectory};
use crate::ldap::dn::Dn;
use crate::metrics::DirectoryMetrics;
use crate::upstream::connection::ExchangeError;
use crate::upstream::requests::{Page, SearchReply};
use crate::upstream::service::ServiceConnections;
use crate::upstream::UpstreamConn;

/// How many objects a pull delivered.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub orgs: usize,
    pub accounts: usize,
}

/// One object of a walk: its export line and what a snapshot keeps of it.
#[derive(Debug, Clone)]
pub struct Item {
    pub kind: Kind,
    pub id: String,
    /// Depth of its DN, to order creations parents first.
    pub depth: u16,
    /// Its DN as the directory wrote it (the line's `dn`).
    pub dn: String,
    pub line: String,
}

impl Item {
    /// What the snapshot keeps of this object.
    pub fn snap(&self) -> SnapObject {
        SnapObject {
            kind: self.kind,
            hash: line_hash(&self.line),
            depth: self.depth,
            dn: self.dn.clone(),
        }
    }
}

/// One NDJSON line of a pull.
#[derive(Debug, Serialize)]
struct Record<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    dn: &'a str,
    parent_id: Option<&'a str>,
    fields: BTreeMap<&'a str, Value>,
}

/// Pulls for one directory.
pub struct Exporter {
    pub(super) service: Arc<ServiceConnections>,
    pub(super) state: StateDir,
    pub(super) base_dn: Dn,
    pub(super) kind: DirectoryKind,
    pub(super) id_attr: &'static str,
    /// What an account is; the same for sign-in and verification.
    pub(super) accounts: AccountClasses,
    pub(super) org_classes: Vec<String>,
    fields: Vec<(String, String)>,
    page_size: i64,
    pub(super) limit: Duration,
    pub(super) max_message: usize,
    max_account_deletes: usize,
    max_org_deletes: usize,
    tracker: Tracker,
    /// The directory's metrics: runs and their results.
    metrics: DirectoryMetrics,
}

/// The first value of attribute `name` as text (any case of the name).
pub(super) fn first_text<'a>(attrs: &'a [LdapPartialAttribute], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|a| a.atype.eq_ignore_ascii_case(name))
        .and_then(|a| a.vals.first())
        .and_then(|v| std::str::from_utf8(v).ok())
}

impl Exporter {
    pub fn new(config: &TenantDirectory, service: Arc<ServiceConnections>) -> Exporter {
        let kind = config.directory.kind;
        Exporter {
            service,
            state: StateDir::new(&config.sync.state_dir),
            base_dn: config.directory.base_dn.clone(),
            kind,
            id_attr: id_attribute(kind),
            accounts: AccountClasses::from_config(config),
            org_classes: config.signin.org_object_classes.clone(),
            fields: config.sync.fields.clone(),
            page_size: i64::from(config.sync.page_size),
            limit: config.directory.operation_timeout,
            max_message: config.directory.max_message_bytes,
            max_account_deletes: config.sync.max_account_deletes,
            max_org_deletes: config.sync.max_org_deletes,
            tracker: Tracker::new(kind, config.sync.change_tracking),
            metrics: DirectoryMetrics::new(&config.name),
        }
    }

    /// Where this directory's sync runs are counted.
    pub fn metrics(&self) -> &DirectoryMetrics {
        &self.metrics
    }

    pub fn base_dn(&self) -> &Dn {
        &self.base_dn
    }

    /// How long one request (or, for long searches, one response) may take.
    pub fn operation_timeout(&self) -> Duration {
        self.limit
    }

    /// The largest PDU accepted from the directory.
    pub fn max_message(&self) -> usize {
        self.max_message
    }

    /// The directory's own change tracking, as configured.
    pub fn tracker(&self) -> Tracker {
        self.tracker
    }

    /// A service-account connection, for [`Self::release`] after a
    /// successful pull (a failed one may have left it mid-answer).
    pub async fn connection(&self) -> Result<UpstreamConn, SyncError> {
        Ok(self.service.get(self.limit, self.max_message).await?)
    }

    pub fn release(&self, conn: UpstreamConn) {
        self.service.put(conn);
    }

    /// The stable id of an entry read with the id attribute.
    pub fn id_of(&self, entry: &LdapSearchResultEntry) -> Option<String> {
        entry_id(self.kind, entry)
    }

    pub fn exchange_err(&self, conn: &UpstreamConn, source: ExchangeError) -> SyncError {
        SyncError::Exchange {
            server: self.service.pool().server_name(conn.server),
            source,
        }
    }

    pub fn state(&self) -> &StateDir {
        &self.state
    }

    /// (max_account_deletes, max_org_deletes) of sync protection.
    pub fn protection_limits(&self) -> (usize, usize) {
        (self.max_account_deletes, self.max_org_deletes)
    }

    /// One checked page of the subtree search under `base` for `filter`.
    pub async fn page(
        &self,
        conn: &mut UpstreamConn,
        base: &str,
        filter: &LdapFilter,
        attrs: &[String],
        cookie: Vec<u8>,
    ) -> Result<Page, SyncError> {
        self.page_with(conn, base, filter, attrs, cookie, &[]).await
    }

    /// [`Self::page`] with more request controls.
    pub async fn page_with(
        &self,
        conn: &mut UpstreamConn,
        base: &str,
        filter: &LdapFilter,
        attrs: &[String],
        cookie: Vec<u8>,
        controls: &[LdapControl],
    ) -> Result<Page, SyncError> {
        let request = LdapSearchRequest {
            base: base.to_owned(),
            scope: LdapSearchScope::Subtree,
            aliases: LdapDerefAliases::Never,
            sizelimit: 0,
            timelimit: 0,
            typesonly: false,
            filter: filter.clone(),
            attrs: attrs.to_vec(),
        };
        let page = conn
            .search_page(
                request,
                self.page_size,
                cookie,
                controls,
                self.limit,
                self.max_message,
            )
            .await
            .map_err(|e| self.exchange_err(conn, e))?;
        if page.done.code != 0 {
            // sizeLimitExceeded, adminLimitExceeded, busy...: never a short
            // export.
            return Err(SyncError::Search {
                base: base.to_owned(),
                code: page.done.code,
                diagnostic: page.done.diagnostic,
            });
        }
        Ok(page)
    }

    /// Visits every account with `attrs`, page by page, after checking the
    /// base DN's fingerprint.
    pub async fn scan_accounts(
        &self,
        attrs: &[String],
        mut visit: impl FnMut(&LdapSearchResultEntry),
    ) -> Result<(), SyncError> {
        let mut conn = self.service.get(self.limit, self.max_message).await?;
        self.check_base(&mut conn).await?;
        let filter = self.account_filter();
        let mut cookie = Vec::new();
        loop {
            let page = self
                .page(&mut conn, self.base_dn.as_str(), &filter, attrs, cookie)
                .await?;
            page.entries.iter().for_each(&mut visit);
            if page.cookie.is_empty() {
                break;
            }
            cookie = page.cookie;
        }
        self.service.put(conn);
        Ok(())
    }

    fn account_fields<'a>(&'a self, entry: &'a LdapSearchResultEntry) -> BTreeMap<&'a str, Value> {
        let mut fields = BTreeMap::new();
        for (field, attr) in &self.fields {
            let Some(a) = entry
                .attributes
                .iter()
                .find(|a| a.atype.eq_ignore_ascii_case(attr))
            else {
                continue;
            };
            let values: Vec<&str> = a
                .vals
                .iter()
                .filter_map(|v| std::str::from_utf8(v).ok())
                .collect();
            let value = match values.as_slice() {
                [] => continue,
                [one] => json!(one),
                many => json!(many),
            };
            fields.insert(field.as_str(), value);
        }
        fields
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
        // Where the directory's change tracking stands, before the walk: a
        // change made during it is reported again next time, never lost.
        let mut conn = self.connection().await?;
        let cursor = self.tracker.begin(self, &mut conn).await?;
        self.release(conn);
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
        let mut conn = self.connection().await?;
        let containers = self
            .containers_of(&mut conn, &objects, &Containers::new())
            .await?;
        self.release(conn);
        let cookie = snapshot::save(&self.state, objects, containers, cursor)?;
        Ok((counts, cookie))
    }

    /// Every organization and account as an [`Item`], organizations first
    /// and parents before children.
    pub async fn walk(&self, out: mpsc::Sender<Item>) -> Result<Counts, SyncError> {
        let mut conn = self.service.get(self.limit, self.max_message).await?;
        let result = self.walk_on(&mut conn, &out).await;
        if result.is_ok() {
            self.service.put(conn);
        }
        result
    }

    /// [`Self::walk`] on a connection of the caller's.
    pub async fn walk_on(
        &self,
        conn: &mut UpstreamConn,
        out: &mpsc::Sender<Item>,
    ) -> Result<Counts, SyncError> {
        let base_id = self.check_base(conn).await?;
        let base_key = self.base_dn.key();
        let mut counts = Counts::default();

        // Organizations: all of them, then emitted parents first.
        let mut orgs: Vec<(Dn, LdapSearchResultEntry, String)> = Vec::new();
        let org_filter = self.org_filter();
        let org_attrs = self.org_attrs();
        let mut cookie = Vec::new();
        loop {
            let page = self
                .page(conn, self.base_dn.as_str(), &org_filter, &org_attrs, cookie)
                .await?;
            for e in page.entries {
                let Ok(dn) = Dn::parse(&e.dn) else { continue };
                if dn.key() == base_key {
                    continue;
                }
                let Some(id) = self.id_of(&e) else { continue };
                orgs.push((dn, e, id));
            }
            if page.cookie.is_empty() {
                break;
            }
            cookie = page.cookie;
        }
        orgs.sort_by_key(|(dn, ..)| dn.depth());
        let org_ids: HashMap<String, String> = orgs
            .iter()
            .map(|(dn, _, id)| (dn.key(), id.clone()))
            .collect();
        let parent_of = |dn: &Dn| -> Option<String> {
            let parent = dn.parent()?.key();
            if parent == base_key {
                return Some(base_id.clone());
            }
            org_ids.get(&parent).cloned()
        };
        for (dn, entry, id) in &orgs {
            let item = self.item(Kind::Org, dn, entry, id.clone(), parent_of(dn).as_deref());
            out.send(item).await.map_err(|_| SyncError::ConsumerGone)?;
            counts.orgs += 1;
        }

        // Accounts, a page at a time: each page is sent before the next is
        // asked for, so memory follows the page size, not the directory.
        let account_filter = self.account_filter();
        let attrs = self.account_attrs();
        let mut cookie = Vec::new();
        loop {
            let page = self
                .page(conn, self.base_dn.as_str(), &account_filter, &attrs, cookie)
                .await?;
            for e in &page.entries {
                let (Ok(dn), Some(id)) = (Dn::parse(&e.dn), self.id_of(e)) else {
                    continue;
                };
                let item = self.item(Kind::Account, &dn, e, id, parent_of(&dn).as_deref());
                out.send(item).await.map_err(|_| SyncError::ConsumerGone)?;
                counts.accounts += 1;
            }
            if page.cookie.is_empty() {
                break;
            }
            cookie = page.cookie;
        }
        Ok(counts)
    }

    /// The attributes organizations are read with.
    fn org_attrs(&self) -> Vec<String> {
        let mut attrs = vec![self.id_attr.to_owned()];
        attrs.extend(ORG_NAME_ATTRS.iter().map(|a| (*a).to_owned()));
        attrs
    }

    /// The attributes accounts are read with.
    fn account_attrs(&self) -> Vec<String> {
        let mut attrs: Vec<String> = self.fields.iter().map(|(_, a)| a.clone()).collect();
        attrs.push(self.id_attr.to_owned());
        attrs
    }

    /// The attributes any object is read with, when its kind is not known
    /// beforehand: both kinds' and objectClass.
    pub fn object_attrs(&self) -> Vec<String> {
        let mut attrs = self.account_attrs();
        attrs.extend(ORG_NAME_ATTRS.iter().map(|a| (*a).to_owned()));
        attrs.push("objectClass".into());
        attrs
    }

    /// The filter that matches accounts.
    pub(super) fn account_filter(&self) -> LdapFilter {
        self.accounts.filter()
    }

    /// The filter that matches organizations: entries of an organization
    /// class that are no account (an entry of both kinds is an account).
    pub(super) fn org_filter(&self) -> LdapFilter {
        LdapFilter::And(vec![
            class_filter(&self.org_classes),
            LdapFilter::Not(Box::new(self.account_filter())),
        ])
    }

    /// The filter that matches organizations and accounts.
    pub fn object_filter(&self) -> LdapFilter {
        LdapFilter::Or(vec![class_filter(&self.org_classes), self.account_filter()])
    }

    /// Reads the one entry at `dn` (a base-scope search) with `attrs`.
    pub async fn read_entry(
        &self,
        conn: &mut UpstreamConn,
        dn: &str,
        attrs: Vec<String>,
    ) -> Result<SearchReply, SyncError> {
        self.search_base(conn, dn, LdapFilter::Present("objectClass".into()), attrs)
            .await
    }

    /// A base-scope search of `dn` for `filter`.
    pub(super) async fn search_base(
        &self,
        conn: &mut UpstreamConn,
        dn: &str,
        filter: LdapFilter,
        attrs: Vec<String>,
    ) -> Result<SearchReply, SyncError> {
        conn.read_base(dn, filter, attrs, self.limit, self.max_message)
            .await
            .map_err(|e| self.exchange_err(conn, e))
    }

    /// The id of the organization at `dn`, as the directory's filter
    /// decides; None when the entry is missing or no organization.
    pub async fn org_id_at(
        &self,
        conn: &mut UpstreamConn,
        dn: &Dn,
    ) -> Result<Option<String>, SyncError> {
        let reply = self
            .search_base(
                conn,
                dn.as_str(),
                self.org_filter(),
                vec![self.id_attr.to_owned()],
            )
            .await?;
        Ok(reply.entries.first().and_then(|e| self.id_of(e)))
    }

    /// Every entry of a paged subtree search under `base`.
    pub async fn search_all(
        &self,
        conn: &mut UpstreamConn,
        base: &str,
        filter: &LdapFilter,
        attrs: &[String],
        controls: &[LdapControl],
    ) -> Result<Vec<LdapSearchResultEntry>, SyncError> {
        let mut entries = Vec::new();
        let mut cookie = Vec::new();
        loop {
            let page = self
                .page_with(conn, base, filter, attrs, cookie, controls)
                .await?;
            entries.extend(page.entries);
            if page.cookie.is_empty() {
                return Ok(entries);
            }
            cookie = page.cookie;
        }
    }

    /// The export line of one object, as an [`Item`].
    pub fn item(
        &self,
        kind: Kind,
        dn: &Dn,
        entry: &LdapSearchResultEntry,
        id: String,
        parent_id: Option<&str>,
    ) -> Item {
        let fields = match kind {
            Kind::Org => {
                // An organization of a class without ou, o or name (a
                // dcObject container) is named by its RDN.
                let name = ORG_NAME_ATTRS
                    .iter()
                    .find_map(|a| first_text(&entry.attributes, a))
                    .or_else(|| dn.leaf_text())
                    .unwrap_or_default();
                BTreeMap::from([("name", json!(name))])
            }
            Kind::Account => self.account_fields(entry),
        };
        let line = record_line(kind.as_str(), &id, &entry.dn, parent_id, fields);
        Item {
            kind,
            id,
            depth: depth_of(dn),
            dn: entry.dn.clone(),
            line,
        }
    }
}

/// Where an organization's name comes from, in order.
const ORG_NAME_ATTRS: [&str; 3] = ["ou", "o", "name"];

/// True when the entry has one of `classes` among its objectClass values.
fn depth_of(dn: &Dn) -> u16 {
    u16::try_from(dn.depth()).unwrap_or(u16::MAX)
}

fn record_line(
    kind: &'static str,
    id: &str,
    dn: &str,
    parent_id: Option<&str>,
    fields: BTreeMap<&str, Value>,
) -> String {
    let record = Record {
        kind,
        id,
        dn,
        parent_id,
        fields,
    };
    // Serialising strings and JSON values into a String cannot fail.
    serde_json::to_string(&record).unwrap_or_default()
}

/// The line that ends a successful pull.
pub fn end_line(counts: Counts, cookie: &str) -> String {
    json!({ "type": "end", "cookie": cookie, "counts": counts }).to_string()
}

/// The line that ends a failed pull.
pub fn error_line(err: &SyncError) -> String {
    let mut v = err.to_json();
    v["type"] = json!("error");
    v.to_string()
}

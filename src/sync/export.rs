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
use std::time::{Duration, SystemTime};

use ldap3_proto::proto::{
    LdapDerefAliases, LdapFilter, LdapPartialAttribute, LdapSearchRequest, LdapSearchResultEntry,
    LdapSearchScope,
};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::snapshot::{self, line_hash, Kind, Objects, SnapObject};
use super::state::{BaseFingerprint, StateDir, StateError, BASE_FINGERPRINT};
use crate::auth::resolver::{format_id, id_attribute};
use crate::config::{Config, DirectoryKind};
use crate::ldap::dn::Dn;
use crate::upstream::connection::ExchangeError;
use crate::upstream::requests::Page;
use crate::upstream::service::{ServiceConnections, ServiceError};
use crate::upstream::UpstreamConn;

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("{server}: {source}")]
    Exchange {
        server: String,
        source: ExchangeError,
    },
    #[error("search under {base} failed with result {code}: {diagnostic}")]
    Search {
        base: String,
        code: i64,
        diagnostic: String,
    },
    #[error("base DN {0} does not exist")]
    BaseMissing(String),
    #[error(
        "base DN {base_dn} now resolves to entry {found}, not the recorded {recorded}; \
         sync is blocked until an operator checks the configuration and runs `ldapgate sync rearm`"
    )]
    BaseDnMoved {
        base_dn: String,
        recorded: String,
        found: String,
    },
    #[error(transparent)]
    State(#[from] StateError),
    #[error("the consumer went away")]
    ConsumerGone,
    #[error("cookie {0:?} names no kept snapshot; run a full pull")]
    UnknownCookie(String),
    #[error(
        "sync protection: the change set deletes {account_deletes} accounts and {org_deletes} \
         organizations, over the configured limits; review it and pull again with approve={approval}"
    )]
    Protection {
        account_deletes: usize,
        org_deletes: usize,
        approval: String,
    },
}

impl SyncError {
    /// The `error` value of the JSON error line.
    pub fn code(&self) -> &'static str {
        match self {
            SyncError::BaseDnMoved { .. } => "base_dn_moved",
            SyncError::Service(_) | SyncError::Exchange { .. } => "directory_unavailable",
            SyncError::Search { .. } | SyncError::BaseMissing(_) => "directory_error",
            SyncError::State(_) => "state_error",
            SyncError::ConsumerGone => "consumer_gone",
            SyncError::UnknownCookie(_) => "cookie_unknown",
            SyncError::Protection { .. } => "sync_protection",
        }
    }

    /// The JSON body or error line that reports this error.
    pub fn to_json(&self) -> Value {
        let mut v = json!({ "error": self.code(), "detail": self.to_string() });
        if let SyncError::Protection {
            account_deletes,
            org_deletes,
            approval,
        } = self
        {
            v["account_deletes"] = json!(account_deletes);
            v["org_deletes"] = json!(org_deletes);
            v["approval"] = json!(approval);
        }
        v
    }
}

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
    pub line: String,
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
    service: Arc<ServiceConnections>,
    state: StateDir,
    base_dn: Dn,
    kind: DirectoryKind,
    id_attr: &'static str,
    user_classes: Vec<String>,
    org_classes: Vec<String>,
    fields: Vec<(String, String)>,
    page_size: i64,
    limit: Duration,
    max_message: usize,
    max_account_deletes: usize,
    max_org_deletes: usize,
}

fn class_filter(classes: &[String]) -> LdapFilter {
    LdapFilter::Or(
        classes
            .iter()
            .map(|c| LdapFilter::Equality("objectClass".into(), c.clone()))
            .collect(),
    )
}

fn first_text<'a>(attrs: &'a [LdapPartialAttribute], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|a| a.atype.eq_ignore_ascii_case(name))
        .and_then(|a| a.vals.first())
        .and_then(|v| std::str::from_utf8(v).ok())
}

impl Exporter {
    pub fn new(config: &Config, service: Arc<ServiceConnections>) -> Exporter {
        let kind = config.directory.kind;
        Exporter {
            service,
            state: StateDir::new(&config.sync.state_dir),
            base_dn: config.directory.base_dn.clone(),
            kind,
            id_attr: id_attribute(kind),
            user_classes: config.signin.user_object_classes.clone(),
            org_classes: config.signin.org_object_classes.clone(),
            fields: config.sync.fields.clone(),
            page_size: i64::from(config.sync.page_size),
            limit: config.directory.operation_timeout,
            max_message: config.directory.max_message_bytes,
            max_account_deletes: config.sync.max_account_deletes,
            max_org_deletes: config.sync.max_org_deletes,
        }
    }

    fn id_of(&self, entry: &LdapSearchResultEntry) -> Option<String> {
        entry
            .attributes
            .iter()
            .find(|a| a.atype.eq_ignore_ascii_case(self.id_attr))
            .and_then(|a| a.vals.first())
            .map(|v| format_id(self.kind, v))
    }

    fn exchange_err(&self, conn: &UpstreamConn, source: ExchangeError) -> SyncError {
        SyncError::Exchange {
            server: self.service.pool().server_name(conn.server),
            source,
        }
    }

    /// Reads the base entry's id and checks it against the recorded
    /// fingerprint, recording it on the first pull.
    pub async fn check_base(&self, conn: &mut UpstreamConn) -> Result<String, SyncError> {
        let request = LdapSearchRequest {
            base: self.base_dn.to_string(),
            scope: LdapSearchScope::Base,
            aliases: LdapDerefAliases::Never,
            sizelimit: 1,
            timelimit: 0,
            typesonly: false,
            filter: LdapFilter::Present("objectClass".into()),
            attrs: vec![self.id_attr.to_owned()],
        };
        let reply = conn
            .search(request, self.limit, self.max_message)
            .await
            .map_err(|e| self.exchange_err(conn, e))?;
        if reply.done.code == 32 {
            return Err(SyncError::BaseMissing(self.base_dn.to_string()));
        }
        let id = reply
            .entries
            .first()
            .and_then(|e| self.id_of(e))
            .ok_or_else(|| SyncError::BaseMissing(self.base_dn.to_string()))?;
        let key = self.base_dn.key();
        match self.state.read_json::<BaseFingerprint>(BASE_FINGERPRINT)? {
            Some(recorded) if recorded.base_dn == key => {
                if recorded.id != id {
                    return Err(SyncError::BaseDnMoved {
                        base_dn: self.base_dn.to_string(),
                        recorded: recorded.id,
                        found: id,
                    });
                }
            }
            // None yet, or recorded for another base DN: the operator has
            // (re)configured it, so this one is the reference from now on.
            _ => {
                let recorded_at = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                self.state.write_json(
                    BASE_FINGERPRINT,
                    &BaseFingerprint {
                        base_dn: key,
                        id: id.clone(),
                        recorded_at,
                    },
                )?;
            }
        }
        Ok(id)
    }

    pub fn state(&self) -> &StateDir {
        &self.state
    }

    /// (max_account_deletes, max_org_deletes) of sync protection.
    pub fn protection_limits(&self) -> (usize, usize) {
        (self.max_account_deletes, self.max_org_deletes)
    }

    /// Forgets the recorded base-DN fingerprint (`ldapgate sync rearm`).
    pub fn rearm(&self) -> Result<bool, SyncError> {
        Ok(self.state.remove(BASE_FINGERPRINT)?)
    }

    /// One checked page of the subtree search for `filter`.
    async fn page(
        &self,
        conn: &mut UpstreamConn,
        filter: &LdapFilter,
        attrs: &[String],
        cookie: Vec<u8>,
    ) -> Result<Page, SyncError> {
        let request = LdapSearchRequest {
            base: self.base_dn.to_string(),
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
                self.limit,
                self.max_message,
            )
            .await
            .map_err(|e| self.exchange_err(conn, e))?;
        if page.done.code != 0 {
            // sizeLimitExceeded, adminLimitExceeded, busy...: never a short
            // export.
            return Err(SyncError::Search {
                base: self.base_dn.to_string(),
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
        let filter = class_filter(&self.user_classes);
        let mut cookie = Vec::new();
        loop {
            let page = self.page(&mut conn, &filter, attrs, cookie).await?;
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
        let (tx, mut rx) = mpsc::channel::<Item>(256);
        let forward = async move {
            let mut objects = Objects::new();
            while let Some(item) = rx.recv().await {
                objects.insert(
                    item.id,
                    SnapObject {
                        kind: item.kind,
                        hash: line_hash(&item.line),
                        depth: item.depth,
                    },
                );
                // A consumer that left ends the walk: its sends then fail.
                out.send(item.line)
                    .await
                    .map_err(|_| SyncError::ConsumerGone)?;
            }
            Ok::<_, SyncError>(objects)
        };
        let (walked, objects) = tokio::join!(self.walk(tx), forward);
        let counts = walked?;
        let cookie = snapshot::save(&self.state, objects?)?;
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

    async fn walk_on(
        &self,
        conn: &mut UpstreamConn,
        out: &mpsc::Sender<Item>,
    ) -> Result<Counts, SyncError> {
        let base_id = self.check_base(conn).await?;
        let base_key = self.base_dn.key();
        let mut counts = Counts::default();

        // Organizations: all of them, then emitted parents first.
        let mut orgs: Vec<(Dn, String, String, String)> = Vec::new();
        let org_filter = class_filter(&self.org_classes);
        let org_attrs = vec![
            self.id_attr.to_owned(),
            "ou".into(),
            "o".into(),
            "name".into(),
        ];
        let mut cookie = Vec::new();
        loop {
            let page = self.page(conn, &org_filter, &org_attrs, cookie).await?;
            for e in page.entries {
                let Ok(dn) = Dn::parse(&e.dn) else { continue };
                if dn.key() == base_key {
                    continue;
                }
                let Some(id) = self.id_of(&e) else { continue };
                let name = ["ou", "o", "name"]
                    .iter()
                    .find_map(|a| first_text(&e.attributes, a))
                    .unwrap_or_default()
                    .to_owned();
                orgs.push((dn, e.dn, id, name));
            }
            if page.cookie.is_empty() {
                break;
            }
            cookie = page.cookie;
        }
        orgs.sort_by_key(|(dn, ..)| dn.depth());
        let org_ids: HashMap<String, String> = orgs
            .iter()
            .map(|(dn, _, id, _)| (dn.key(), id.clone()))
            .collect();
        let parent_of = |dn: &Dn| -> Option<String> {
            let parent = dn.parent()?.key();
            if parent == base_key {
                return Some(base_id.clone());
            }
            org_ids.get(&parent).cloned()
        };
        for (dn, text, id, name) in &orgs {
            let mut fields = BTreeMap::new();
            fields.insert("name", json!(name));
            let line = record_line("org", id, text, parent_of(dn).as_deref(), fields);
            let item = Item {
                kind: Kind::Org,
                id: id.clone(),
                depth: depth_of(dn),
                line,
            };
            out.send(item).await.map_err(|_| SyncError::ConsumerGone)?;
            counts.orgs += 1;
        }

        // Accounts, a page at a time: each page is sent before the next is
        // asked for, so memory follows the page size, not the directory.
        let account_filter = class_filter(&self.user_classes);
        let mut attrs: Vec<String> = self.fields.iter().map(|(_, a)| a.clone()).collect();
        attrs.push(self.id_attr.to_owned());
        let mut cookie = Vec::new();
        loop {
            let page = self.page(conn, &account_filter, &attrs, cookie).await?;
            for e in &page.entries {
                let (Ok(dn), Some(id)) = (Dn::parse(&e.dn), self.id_of(e)) else {
                    continue;
                };
                let line = record_line(
                    "account",
                    &id,
                    &e.dn,
                    parent_of(&dn).as_deref(),
                    self.account_fields(e),
                );
                let item = Item {
                    kind: Kind::Account,
                    id,
                    depth: depth_of(&dn),
                    line,
                };
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
}

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

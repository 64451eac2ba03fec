//! Sync objects read from the directory: entries under `base_dn` that the
//! [`Classifier`] calls organizations or accounts, rendered by the
//! [`Renderer`], each with its stable id and its parent organization's id.
//!
//! A walk reads organizations first (all of them, so that each line can
//! name its parent's id; there are few compared with accounts), then
//! accounts a page at a time (RFC 2696): memory grows with the page size,
//! not with the directory.

use std::collections::HashMap;

use ldap3_proto::proto::LdapSearchResultEntry;
use tokio::sync::mpsc;

use super::classify::Classifier;
use super::error::SyncError;
use super::reader::DirectoryReader;
use super::render::{Counts, Item, Renderer};
use super::snapshot::Kind;
use super::tracking::Watched;
use crate::ldap::dn::Dn;
use crate::upstream::UpstreamConn;

/// Reads organizations and accounts: the directory reader, what makes an
/// entry an object, and how an object becomes a line.
pub struct ObjectReader {
    reader: DirectoryReader,
    classifier: Classifier,
    renderer: Renderer,
}

impl ObjectReader {
    /// Objects read through `reader`, told apart by `classifier` and
    /// rendered by `renderer`.
    pub fn new(reader: DirectoryReader, classifier: Classifier, renderer: Renderer) -> Self {
        ObjectReader {
            reader,
            classifier,
            renderer,
        }
    }

    /// What reads the directory.
    pub fn reader(&self) -> &DirectoryReader {
        &self.reader
    }

    /// What makes an entry an organization or an account.
    pub fn classifier(&self) -> &Classifier {
        &self.classifier
    }

    /// What turns an object into its line.
    pub fn renderer(&self) -> &Renderer {
        &self.renderer
    }

    /// What a change tracker watches for these objects.
    pub fn watched(&self) -> Watched {
        Watched::new(
            self.reader.kind(),
            self.classifier.object_filter(),
            self.renderer.object_attrs(),
        )
    }

    /// What `entry` is, as a full pull decides it (see
    /// [`Classifier::classify`]).
    pub async fn classify(
        &self,
        conn: &mut UpstreamConn,
        entry: &LdapSearchResultEntry,
    ) -> Result<Option<Kind>, SyncError> {
        self.classifier.classify(&self.reader, conn, entry).await
    }

    /// The id of the organization at `dn`, as the directory's filter
    /// decides; None when the entry is missing or no organization.
    pub async fn org_id_at(
        &self,
        conn: &mut UpstreamConn,
        dn: &Dn,
    ) -> Result<Option<String>, SyncError> {
        let reply = self
            .reader
            .search_base(
                conn,
                dn.as_str(),
                self.classifier.org_filter(),
                vec![self.reader.id_attr().to_owned()],
            )
            .await?;
        Ok(reply.entries.first().and_then(|e| self.reader.id_of(e)))
    }

    /// Every organization and account as an [`Item`] into `out`,
    /// organizations first and parents before children; `base_id` is the
    /// id of the base entry, the parent of what lies directly below it.
    pub async fn walk_on(
        &self,
        conn: &mut UpstreamConn,
        base_id: &str,
        out: &mpsc::Sender<Item>,
    ) -> Result<Counts, SyncError> {
        let base_dn = self.reader.base_dn();
        let base_key = base_dn.key();
        let mut counts = Counts::default();

        // Organizations: all of them, then emitted parents first.
        let orgs = self.orgs(conn, &base_key).await?;
        let org_ids: HashMap<String, String> = orgs
            .iter()
            .map(|(dn, _, id)| (dn.key(), id.clone()))
            .collect();
        let parent_of = |dn: &Dn| -> Option<String> {
            let parent = dn.parent()?.key();
            if parent == base_key {
                return Some(base_id.to_owned());
            }
            org_ids.get(&parent).cloned()
        };
        for (dn, entry, id) in &orgs {
            let parent = parent_of(dn);
            let item = self
                .renderer
                .item(Kind::Org, dn, entry, id.clone(), parent.as_deref());
            out.send(item).await.map_err(|_| SyncError::ConsumerGone)?;
            counts.orgs += 1;
        }

        // Accounts, a page at a time: each page is sent before the next is
        // asked for, so memory follows the page size, not the directory.
        let filter = self.classifier.account_filter();
        let attrs = self.renderer.account_attrs();
        let mut pages = self.reader.pages(base_dn.as_str(), &filter, &attrs, &[]);
        while let Some(page) = pages.next(conn).await? {
            for e in &page {
                let (Ok(dn), Some(id)) = (Dn::parse(&e.dn), self.reader.id_of(e)) else {
                    continue;
                };
                let parent = parent_of(&dn);
                let item = self
                    .renderer
                    .item(Kind::Account, &dn, e, id, parent.as_deref());
                out.send(item).await.map_err(|_| SyncError::ConsumerGone)?;
                counts.accounts += 1;
            }
        }
        Ok(counts)
    }

    /// Every organization below the base entry (whose DN key is
    /// `base_key`) with its DN and id, parents before children.
    async fn orgs(
        &self,
        conn: &mut UpstreamConn,
        base_key: &str,
    ) -> Result<Vec<(Dn, LdapSearchResultEntry, String)>, SyncError> {
        let mut orgs = Vec::new();
        let filter = self.classifier.org_filter();
        let attrs = self.renderer.org_attrs();
        let base = self.reader.base_dn().as_str();
        let mut pages = self.reader.pages(base, &filter, &attrs, &[]);
        while let Some(page) = pages.next(conn).await? {
            for e in page {
                let Ok(dn) = Dn::parse(&e.dn) else { continue };
                if dn.key() == base_key {
                    continue;
                }
                let Some(id) = self.reader.id_of(&e) else {
                    continue;
                };
                orgs.push((dn, e, id));
            }
        }
        orgs.sort_by_key(|(dn, ..)| dn.depth());
        Ok(orgs)
    }
}

//! Reading the directory for sync, over the service account's connections:
//! paged subtree searches (RFC 2696), base-scope reads of one entry, and
//! the stable id of each entry read with the directory's id attribute.
//!
//! A short answer is never taken for a complete one: a page that ends in
//! anything but success (sizeLimitExceeded, adminLimitExceeded, busy...) is
//! an error for the whole search.

use std::sync::Arc;

use ldap3_proto::control::LdapControl;
use ldap3_proto::proto::{
    LdapDerefAliases, LdapFilter, LdapPartialAttribute, LdapSearchRequest, LdapSearchResultEntry,
    LdapSearchScope,
};

use super::error::SyncError;
use crate::auth::resolver::{entry_id, id_attribute};
use crate::config::DirectoryKind;
use crate::ldap::dn::Dn;
use crate::ldap::schema::Schema;
use crate::upstream::requests::{Page, SearchReply};
use crate::upstream::schema::SubschemaError;
use crate::upstream::{Lease, UpstreamConn, UpstreamPool};

/// Reads one directory for sync: what is under `base_dn`, page by page.
pub struct DirectoryReader {
    /// Lends the service account's connections; its settings bound every
    /// request.
    pool: Arc<UpstreamPool>,
    base_dn: Dn,
    kind: DirectoryKind,
    /// Entries asked for per page (the RFC 2696 size).
    page_size: i64,
}

impl DirectoryReader {
    /// A reader of the directory of `kind` under `base_dn`, over the
    /// service account's connections of `pool`; `page_size` entries per
    /// page.
    pub fn new(
        pool: Arc<UpstreamPool>,
        base_dn: Dn,
        kind: DirectoryKind,
        page_size: u32,
    ) -> DirectoryReader {
        DirectoryReader {
            pool,
            base_dn,
            kind,
            page_size: i64::from(page_size),
        }
    }

    /// The DN every pull is scoped to.
    pub fn base_dn(&self) -> &Dn {
        &self.base_dn
    }

    /// The kind of directory, which decides the id attribute and its form.
    pub fn kind(&self) -> DirectoryKind {
        self.kind
    }

    /// The attribute that holds an entry's stable id (entryUUID,
    /// objectGUID, nsUniqueId).
    pub fn id_attr(&self) -> &'static str {
        id_attribute(self.kind)
    }

    /// A service-account connection; the pool takes it back when the
    /// lease is dropped, unless a failed read left it mid-answer.
    pub async fn connection(&self) -> Result<Lease, SyncError> {
        Ok(self.pool.service_lease().await?)
    }

    /// The stable id of an entry read with [`Self::id_attr`], in its
    /// canonical text form.
    pub fn id_of(&self, entry: &LdapSearchResultEntry) -> Option<String> {
        entry_id(self.kind, entry)
    }

    /// The directory's subschema, read on a service connection.
    pub async fn read_schema(&self) -> Result<Schema, SubschemaError> {
        self.pool.read_schema().await
    }

    /// A paged subtree search under `base` for `filter`, with `attrs` and
    /// more request `controls`; nothing is asked before [`Pages::next`].
    pub fn pages<'a>(
        &'a self,
        base: &'a str,
        filter: &'a LdapFilter,
        attrs: &'a [String],
        controls: &'a [LdapControl],
    ) -> Pages<'a> {
        Pages {
            reader: self,
            base,
            filter,
            attrs,
            controls,
            cookie: Some(Vec::new()),
        }
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
        let mut pages = self.pages(base, filter, attrs, controls);
        while let Some(page) = pages.next(conn).await? {
            entries.extend(page);
        }
        Ok(entries)
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
    pub async fn search_base(
        &self,
        conn: &mut UpstreamConn,
        dn: &str,
        filter: LdapFilter,
        attrs: Vec<String>,
    ) -> Result<SearchReply, SyncError> {
        Ok(conn.read_base(dn, filter, attrs).await?)
    }

    /// One checked page of the subtree search under `base` for `filter`.
    async fn page(
        &self,
        conn: &mut UpstreamConn,
        search: &Pages<'_>,
        cookie: Vec<u8>,
    ) -> Result<Page, SyncError> {
        let request = LdapSearchRequest {
            base: search.base.to_owned(),
            scope: LdapSearchScope::Subtree,
            aliases: LdapDerefAliases::Never,
            sizelimit: 0,
            timelimit: 0,
            typesonly: false,
            filter: search.filter.clone(),
            attrs: search.attrs.to_vec(),
        };
        let page = conn
            .search_page(request, self.page_size, cookie, search.controls)
            .await?;
        if page.done.code != 0 {
            // sizeLimitExceeded, adminLimitExceeded, busy...: never a short
            // export.
            return Err(SyncError::Search {
                base: search.base.to_owned(),
                code: page.done.code,
                diagnostic: page.done.diagnostic,
            });
        }
        Ok(page)
    }
}

/// A paged subtree search in progress (RFC 2696): each [`Self::next`] asks
/// for one page with the cookie the previous one returned, until the
/// directory returns an empty cookie.
pub struct Pages<'a> {
    reader: &'a DirectoryReader,
    base: &'a str,
    filter: &'a LdapFilter,
    attrs: &'a [String],
    controls: &'a [LdapControl],
    /// The cookie for the next page; None once the last page was read.
    cookie: Option<Vec<u8>>,
}

impl Pages<'_> {
    /// The entries of the next page, on `conn`; None after the last page.
    /// Each page is asked for only when the caller wants it, so a caller
    /// that hands every page on before the next holds one page at a time.
    pub async fn next(
        &mut self,
        conn: &mut UpstreamConn,
    ) -> Result<Option<Vec<LdapSearchResultEntry>>, SyncError> {
        let Some(cookie) = self.cookie.take() else {
            return Ok(None);
        };
        let page = self.reader.page(conn, self, cookie).await?;
        if !page.cookie.is_empty() {
            self.cookie = Some(page.cookie);
        }
        Ok(Some(page.entries))
    }
}

/// The first value of attribute `name` (any case of the name).
pub fn first_value<'a>(attrs: &'a [LdapPartialAttribute], name: &str) -> Option<&'a [u8]> {
    attrs
        .iter()
        .find(|a| a.atype.eq_ignore_ascii_case(name))
        .and_then(|a| a.vals.first())
        .map(Vec::as_slice)
}

/// The first value of attribute `name` as text (any case of the name);
/// None when it is missing or not UTF-8.
pub fn first_text<'a>(attrs: &'a [LdapPartialAttribute], name: &str) -> Option<&'a str> {
    first_value(attrs, name).and_then(|v| std::str::from_utf8(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(name: &str, vals: &[&[u8]]) -> LdapPartialAttribute {
        LdapPartialAttribute {
            atype: name.into(),
            vals: vals.iter().map(|v| v.to_vec()).collect(),
        }
    }

    #[test]
    fn the_first_value_is_found_under_any_case_of_the_name() {
        let attrs = [
            attr("objectClass", &[b"top", b"person"]),
            attr("hasSubordinates", &[b"TRUE"]),
            attr("photo", &[&[0xff, 0xfe]]),
            attr("empty", &[]),
        ];
        assert_eq!(first_text(&attrs, "OBJECTCLASS"), Some("top"));
        assert_eq!(first_text(&attrs, "hassubordinates"), Some("TRUE"));
        assert_eq!(first_value(&attrs, "photo"), Some(&[0xff, 0xfe][..]));
        // Binary values have no text.
        assert_eq!(first_text(&attrs, "photo"), None);
        assert_eq!(first_value(&attrs, "empty"), None);
        assert_eq!(first_value(&attrs, "missing"), None);
    }
}

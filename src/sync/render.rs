//! The NDJSON lines of a pull (README, "Control channel"): one
//! `{"type":"org"|"account","id","dn","parent_id","fields":{...}}` line per
//! object, and the `end` or `error` line that closes a pull. The bytes are
//! the contract: a line's hash decides whether a changes pull delivers an
//! object again.

use std::collections::BTreeMap;

use ldap3_proto::proto::LdapSearchResultEntry;
use serde::Serialize;
use serde_json::{json, Value};

use super::error::SyncError;
use super::reader::first_text;
use super::snapshot::{line_hash, Kind, SnapObject};
use crate::ldap::dn::Dn;

/// Where an organization's name comes from, in order.
const ORG_NAME_ATTRS: [&str; 3] = ["ou", "o", "name"];

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

/// Renders directory entries as the lines of a pull: organizations by
/// name, accounts by the `[sync.fields]` mapping.
#[derive(Debug, Clone)]
pub struct Renderer {
    /// (IDaaS field, LDAP attribute), in field order.
    fields: Vec<(String, String)>,
    /// The attribute of the stable id, read with every object.
    id_attr: &'static str,
}

impl Renderer {
    /// A renderer of `fields` ((IDaaS field, LDAP attribute) pairs) for
    /// entries whose stable id is in `id_attr`.
    pub fn new(fields: Vec<(String, String)>, id_attr: &'static str) -> Renderer {
        Renderer { fields, id_attr }
    }

    /// The attributes organizations are read with.
    pub fn org_attrs(&self) -> Vec<String> {
        let mut attrs = vec![self.id_attr.to_owned()];
        attrs.extend(ORG_NAME_ATTRS.iter().map(|a| (*a).to_owned()));
        attrs
    }

    /// The attributes accounts are read with.
    pub fn account_attrs(&self) -> Vec<String> {
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

    /// The `fields` of an account's line: each mapped attribute's text
    /// values, one as a string, several as an array; fields without a text
    /// value are left out.
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
}

/// The depth of `dn`, saturated to what a snapshot keeps.
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

#[cfg(test)]
mod tests {
    use ldap3_proto::proto::LdapPartialAttribute;

    use super::*;

    fn entry(dn: &str, attrs: &[(&str, &[&[u8]])]) -> LdapSearchResultEntry {
        LdapSearchResultEntry {
            dn: dn.into(),
            attributes: attrs
                .iter()
                .map(|(name, vals)| LdapPartialAttribute {
                    atype: (*name).into(),
                    vals: vals.iter().map(|v| v.to_vec()).collect(),
                })
                .collect(),
        }
    }

    fn renderer() -> Renderer {
        let fields = [
            ("username", "uid"),
            ("email", "mail"),
            ("display_name", "cn"),
        ];
        Renderer::new(
            fields
                .iter()
                .map(|(f, a)| ((*f).to_owned(), (*a).to_owned()))
                .collect(),
            "entryUUID",
        )
    }

    #[test]
    fn an_account_line_has_its_fields_in_name_order() {
        let dn = "uid=ann,ou=Sales,dc=example,dc=com";
        let ann = entry(
            dn,
            &[
                ("UID", &[b"ann"]),
                ("mail", &[b"ann@example.com", b"a@example.com", &[0xff]]),
                ("cn", &[&[0xc3]]),
            ],
        );
        let item = renderer().item(
            Kind::Account,
            &Dn::parse(dn).unwrap(),
            &ann,
            "id-1".into(),
            Some("id-0"),
        );
        assert_eq!(
            item.line,
            r#"{"type":"account","id":"id-1","dn":"uid=ann,ou=Sales,dc=example,dc=com","parent_id":"id-0","fields":{"email":["ann@example.com","a@example.com"],"username":"ann"}}"#
        );
        assert_eq!(
            (item.kind, item.depth, item.dn.as_str()),
            (Kind::Account, 4, dn)
        );
        assert_eq!(item.snap().hash, line_hash(&item.line));
    }

    #[test]
    fn an_organization_is_named_by_ou_o_name_or_its_rdn() {
        let r = renderer();
        let line = |e: &LdapSearchResultEntry, parent: Option<&str>| {
            r.item(
                Kind::Org,
                &Dn::parse(&e.dn).unwrap(),
                e,
                "o1".into(),
                parent,
            )
            .line
        };
        let both = entry("ou=Sales,dc=x", &[("o", &[b"Org"]), ("ou", &[b"Sales"])]);
        assert_eq!(
            line(&both, Some("b")),
            r#"{"type":"org","id":"o1","dn":"ou=Sales,dc=x","parent_id":"b","fields":{"name":"Sales"}}"#
        );
        let bare = entry("dc=eu,dc=x", &[]);
        assert_eq!(
            line(&bare, None),
            r#"{"type":"org","id":"o1","dn":"dc=eu,dc=x","parent_id":null,"fields":{"name":"eu"}}"#
        );
    }

    #[test]
    fn objects_are_read_with_what_their_lines_and_kinds_need() {
        let r = renderer();
        assert_eq!(r.org_attrs(), ["entryUUID", "ou", "o", "name"]);
        assert_eq!(r.account_attrs(), ["uid", "mail", "cn", "entryUUID"]);
        assert_eq!(
            r.object_attrs(),
            [
                "uid",
                "mail",
                "cn",
                "entryUUID",
                "ou",
                "o",
                "name",
                "objectClass"
            ]
        );
    }

    #[test]
    fn end_and_error_lines() {
        let counts = Counts {
            orgs: 2,
            accounts: 5,
        };
        assert_eq!(
            end_line(counts, "c0ffee"),
            r#"{"cookie":"c0ffee","counts":{"accounts":5,"orgs":2},"type":"end"}"#
        );
        assert_eq!(
            error_line(&SyncError::ConsumerGone),
            r#"{"detail":"the consumer went away","error":"consumer_gone","type":"error"}"#
        );
    }
}

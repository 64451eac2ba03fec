//! Reading the directory's subschema (RFC 4512 §4.2, §5.1): the root DSE
//! names the subschema entry (`subschemaSubentry`: slapd's `cn=Subschema`,
//! AD's `CN=Aggregate,CN=Schema,CN=Configuration,...`), whose
//! `attributeTypes` describe every attribute type. Sign-in verification
//! takes the equality rules of the sign-in attributes from it, and sessions
//! the DN comparison ([`crate::ldap::dn_schema`]).

use std::sync::Arc;

use ldap3_proto::proto::LdapFilter;
use tracing::warn;

use super::requests::SearchReply;
use super::service::ServiceError;
use super::UpstreamPool;
use crate::ldap::schema::Schema;

/// Why the subschema could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SubschemaError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("the root DSE names no subschemaSubentry")]
    NoSubentry,
    #[error("the subschema entry {0} could not be read or has no attributeTypes")]
    NoAttributeTypes(String),
}

impl UpstreamPool {
    /// The attribute types of the directory's subschema, read as the
    /// service account (anonymously without one). Descriptions that do not
    /// parse are skipped with a warning; the rest are used.
    pub async fn read_schema(self: &Arc<Self>) -> Result<Schema, SubschemaError> {
        let read = |dn: &str, attr: &str| {
            let (dn, attrs) = (dn.to_owned(), vec![attr.to_owned()]);
            async move {
                let any = LdapFilter::Present("objectClass".into());
                self.read_base(&dn, any, attrs).await
            }
        };
        let root = read("", "subschemaSubentry").await?;
        let subentry = values(&root, "subschemaSubentry")
            .next()
            .map(str::to_owned)
            .ok_or(SubschemaError::NoSubentry)?;
        let reply = read(&subentry, "attributeTypes").await?;
        let descriptions: Vec<&str> = values(&reply, "attributeTypes").collect();
        if descriptions.is_empty() {
            return Err(SubschemaError::NoAttributeTypes(subentry));
        }
        let (schema, errors) = Schema::parse(descriptions);
        for e in errors {
            warn!(error = %e, "skipping an attribute type of the directory's schema");
        }
        Ok(schema)
    }
}

/// The text values of attribute `name` (any case) in the first entry.
fn values<'a>(reply: &'a SearchReply, name: &'a str) -> impl Iterator<Item = &'a str> {
    reply
        .entries
        .first()
        .into_iter()
        .flat_map(|e| e.attributes.iter())
        .filter(move |a| a.atype.eq_ignore_ascii_case(name))
        .flat_map(|a| a.vals.iter())
        .filter_map(|v| std::str::from_utf8(v).ok())
}

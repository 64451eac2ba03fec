//! DNs compared by the directory's own schema.
//!
//! A directory decides whether two DNs are equal with
//! `distinguishedNameMatch` (RFC 4517 §4.2.15): RDN by RDN, each attribute
//! type taken as the type its schema defines (any NAME alias or the OID
//! stands for it, RFC 4512 §2.5 and §4.1.2), each value compared by that
//! type's EQUALITY rule. So under one schema `gateTeam=Blue` and
//! `gateTeam=blue` name two entries (caseExactMatch), and `unit=1234` and
//! `unit=12 34` one (numericStringMatch). [`DnSchema`] normalises DNs that
//! way from the attribute types of the directory's subschema; where the
//! subschema could not be read, or lacks a type, it falls back to
//! [`Dn::parse`]'s built-in table and case-insensitive values.

use std::collections::HashMap;

use super::dn::{bare_type, canonical_type, normalise_value, Dn, DnError};
use super::matching::Matching;
use super::schema::Schema;

/// How RDNs of one attribute type are normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DnType {
    /// What every name and the OID of the type become: the built-in short
    /// name when the built-in table knows the OID (so `cn` stays `cn`),
    /// else the OID.
    key: String,
    /// The type's equality rule (own, inherited, or implied by its syntax).
    matching: Matching,
}

/// Where a [`DnSchema`]'s attribute types come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnSchemaSource {
    /// The built-in table only: the directory's schema was not read (yet).
    BuiltIn,
    /// The directory's subschema, with this many attribute types.
    Directory { types: usize },
}

/// Normalises DNs as one directory's schema compares them. Two [`Dn`]s
/// compare meaningfully only when the same `DnSchema` (or both
/// [`Dn::parse`]) produced them.
#[derive(Debug, Clone)]
pub struct DnSchema {
    /// Lower-cased NAME or OID to its type.
    types: HashMap<String, DnType>,
    source: DnSchemaSource,
}

impl Default for DnSchema {
    fn default() -> Self {
        DnSchema::built_in()
    }
}

impl DnSchema {
    /// No schema read: parses exactly as [`Dn::parse`] does.
    pub fn built_in() -> DnSchema {
        DnSchema {
            types: HashMap::new(),
            source: DnSchemaSource::BuiltIn,
        }
    }

    /// The DN comparison `schema` defines: every NAME and the OID of a type
    /// map to one key, and its values normalise by its equality rule.
    pub fn from_schema(schema: &Schema) -> DnSchema {
        let types = schema
            .names()
            .map(|(name, at)| {
                let dn_type = DnType {
                    key: canonical_type(&at.oid),
                    matching: schema.matching(&at.oid).unwrap_or(Matching::CaseIgnore),
                };
                (name.to_owned(), dn_type)
            })
            .collect();
        DnSchema {
            types,
            source: DnSchemaSource::Directory {
                types: schema.len(),
            },
        }
    }

    /// Where the attribute types come from.
    pub fn source(&self) -> DnSchemaSource {
        self.source
    }

    /// Parses and normalises a DN string (RFC 4514).
    pub fn parse(&self, s: &str) -> Result<Dn, DnError> {
        if self.types.is_empty() {
            return Dn::parse(s);
        }
        Dn::parse_with(s, &|attr, value| self.normalise(attr, value))
    }

    /// Parses and normalises the bytes of an LDAPDN.
    pub fn from_bytes(&self, bytes: &[u8]) -> Result<Dn, DnError> {
        let s = std::str::from_utf8(bytes).map_err(|_| DnError::NotUtf8)?;
        self.parse(s)
    }

    /// `dn` (parsed by any schema) normalised by this one.
    pub fn renormalise(&self, dn: &Dn) -> Result<Dn, DnError> {
        self.parse(dn.as_str())
    }

    /// One attribute-value assertion: the type's key and the value's normal
    /// form under its rule; a type the schema lacks as [`Dn::parse`] has it.
    fn normalise(&self, attr: &str, value: &str) -> (String, String) {
        match self.types.get(&bare_type(attr)) {
            Some(t) => (t.key.clone(), t.matching.normalize(value)),
            None => (canonical_type(attr), normalise_value(value)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// slapd's core types, and two the built-in table does not know, as a
    /// site schema defines them.
    fn schema() -> DnSchema {
        let (schema, errors) = Schema::parse([
            "( 2.5.4.41 NAME 'name' EQUALITY caseIgnoreMatch \
             SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{32768} )",
            "( 2.5.4.3 NAME ( 'cn' 'commonName' ) SUP name )",
            "( 2.5.4.11 NAME ( 'ou' 'organizationalUnitName' ) SUP name )",
            "( 0.9.2342.19200300.100.1.25 NAME ( 'dc' 'domainComponent' ) \
             EQUALITY caseIgnoreIA5Match SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 SINGLE-VALUE )",
            "( 0.9.2342.19200300.100.1.1 NAME ( 'uid' 'userid' ) EQUALITY caseIgnoreMatch \
             SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{256} )",
            "( 1.3.6.1.4.1.32473.1.1 NAME ( 'gateTeam' 'gateTeamName' ) \
             EQUALITY caseExactMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )",
            "( 1.3.6.1.4.1.32473.1.2 NAME ( 'gateUnit' 'gateUnitNumber' ) \
             EQUALITY numericStringMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.36 )",
            "( 1.3.6.1.4.1.32473.1.3 NAME 'gateSub' SUP gateTeam )",
        ]);
        assert!(errors.is_empty(), "{errors:?}");
        DnSchema::from_schema(&schema)
    }

    fn dn(schema: &DnSchema, s: &str) -> Dn {
        schema.parse(s).unwrap()
    }

    #[test]
    fn every_name_and_the_oid_of_a_type_are_one_type() {
        let s = schema();
        let want = dn(&s, "gateTeam=Blue,dc=example,dc=com");
        for spelling in [
            "gateTeamName=Blue,dc=example,dc=com",
            "GATETEAMNAME=Blue,domainComponent=example,dc=com",
            "1.3.6.1.4.1.32473.1.1=Blue,dc=example,dc=com",
            "OID.1.3.6.1.4.1.32473.1.1=Blue, DC=Example,0.9.2342.19200300.100.1.25=COM",
        ] {
            assert_eq!(dn(&s, spelling), want, "{spelling}");
        }
        // Without the schema the alias is another type.
        assert_ne!(
            DnSchema::built_in()
                .parse("gateTeamName=Blue,dc=example,dc=com")
                .unwrap(),
            DnSchema::built_in()
                .parse("gateTeam=Blue,dc=example,dc=com")
                .unwrap()
        );
    }

    #[test]
    fn values_compare_by_the_types_equality_rule() {
        let s = schema();
        // caseExactMatch: case matters, space runs do not.
        assert_ne!(dn(&s, "gateTeam=Blue,dc=x"), dn(&s, "gateTeam=blue,dc=x"));
        assert_eq!(
            dn(&s, "gateTeam=Blue  Sky,dc=x"),
            dn(&s, "gateTeamName=Blue Sky,DC=X")
        );
        let base = dn(&s, "gateTeam=Blue,dc=example,dc=com");
        assert!(dn(&s, "uid=Erin,gateTeam=Blue,dc=Example,dc=com").is_within(&base));
        assert!(!dn(&s, "uid=erin,gateTeam=blue,dc=example,dc=com").is_within(&base));
        // An inherited rule counts: gateSub is caseExact through SUP.
        assert_ne!(dn(&s, "gateSub=A,dc=x"), dn(&s, "gateSub=a,dc=x"));
        // numericStringMatch: every space is insignificant.
        let unit = dn(&s, "gateUnit=1234,dc=example,dc=com");
        assert_eq!(dn(&s, "gateUnitNumber=12 34,dc=example,dc=com"), unit);
        assert_eq!(dn(&s, "gateUnit=1\\ 2 3 4,dc=example,dc=com"), unit);
        assert!(dn(&s, "uid=frank,gateUnit=1 234,dc=example,dc=com").is_within(&unit));
        assert_ne!(dn(&s, "gateUnit=12345,dc=example,dc=com"), unit);
        // Types the table knows keep their case-insensitive values.
        assert_eq!(
            dn(&s, "CN=Alice,OU=People"),
            dn(&s, "commonName=alice,ou=people")
        );
    }

    #[test]
    fn types_the_schema_lacks_fall_back_to_the_built_in_table() {
        let (empty, _) = Schema::parse(["( 1.1 NAME 'x' )"]);
        let s = DnSchema::from_schema(&empty);
        assert_eq!(s.source(), DnSchemaSource::Directory { types: 1 });
        assert_eq!(
            dn(&s, "userid=Alice,domainComponent=example"),
            dn(&s, "uid=alice,dc=EXAMPLE")
        );
        assert_ne!(dn(&s, "x=1,dc=a"), dn(&s, "y=1,dc=a"));
    }

    #[test]
    fn the_built_in_schema_parses_as_dn_parse() {
        let s = DnSchema::built_in();
        assert_eq!(s.source(), DnSchemaSource::BuiltIn);
        for text in [
            "uid=alice,ou=people,domainComponent=example,dc=com",
            "cn=Smith\\, John,dc=x",
            "",
        ] {
            assert_eq!(s.parse(text).unwrap().key(), Dn::parse(text).unwrap().key());
        }
        assert!(s.from_bytes(&[0xff]).is_err());
    }

    #[test]
    fn a_dn_is_renormalised_from_its_text() {
        let s = schema();
        let configured = Dn::parse("gateTeamName=Blue,dc=example,dc=com").unwrap();
        let base = s.renormalise(&configured).unwrap();
        assert_eq!(base, dn(&s, "gateTeam=Blue,dc=example,dc=com"));
        assert_eq!(base.as_str(), configured.as_str());
    }

    #[test]
    fn subschema_entry_names_still_read_as_cn() {
        let s = schema();
        assert!(dn(&s, "commonName=Subschema").leaf_is("cn", "subschema"));
    }
}

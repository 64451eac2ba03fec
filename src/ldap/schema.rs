//! Attribute type descriptions from a directory's subschema (RFC 4512
//! §4.1.2), as slapd and Active Directory print them in `attributeTypes`,
//! reduced to what sign-in needs: each type's names and OID, its SUP, and
//! the EQUALITY rule or SYNTAX it compares values with.

use std::collections::HashMap;

use super::matching::Matching;

/// Why an `attributeTypes` value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("attribute type description does not start with '(' and an OID: {0:?}")]
    NoOid(String),
    #[error("unterminated quoted string in attribute type description: {0:?}")]
    Unterminated(String),
}

/// One attribute type description.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttributeType {
    pub oid: String,
    /// NAME, every alias (`NAME ( 'mail' 'rfc822Mailbox' )`).
    pub names: Vec<String>,
    pub sup: Option<String>,
    pub equality: Option<String>,
    /// SYNTAX without its `{length}` bound.
    pub syntax: Option<String>,
}

#[derive(Debug, PartialEq)]
enum Token<'a> {
    Open,
    Close,
    /// A bare word (keyword, OID, descriptor) or a quoted string's content.
    Word(&'a str),
}

fn tokens(text: &str) -> Result<Vec<Token<'_>>, SchemaError> {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start();
        let Some(c) = rest.chars().next() else {
            return Ok(out);
        };
        match c {
            '(' => {
                out.push(Token::Open);
                rest = &rest[1..];
            }
            ')' => {
                out.push(Token::Close);
                rest = &rest[1..];
            }
            '\'' => {
                // A qdstring escapes a quote as \27, so the next quote ends it.
                let body = &rest[1..];
                let end = body
                    .find('\'')
                    .ok_or_else(|| SchemaError::Unterminated(text.to_owned()))?;
                out.push(Token::Word(&body[..end]));
                rest = &body[end + 1..];
            }
            _ => {
                let end = rest
                    .find(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == '\'')
                    .unwrap_or(rest.len());
                out.push(Token::Word(&rest[..end]));
                rest = &rest[end..];
            }
        }
    }
}

/// Keywords that take no value.
const FLAGS: [&str; 4] = [
    "OBSOLETE",
    "SINGLE-VALUE",
    "COLLECTIVE",
    "NO-USER-MODIFICATION",
];

impl AttributeType {
    /// Parses one `attributeTypes` value. Unknown keywords (X-ORIGIN,
    /// USAGE, ...) are skipped with their value.
    pub fn parse(text: &str) -> Result<AttributeType, SchemaError> {
        let tokens = tokens(text)?;
        let mut it = tokens.into_iter().peekable();
        let (Some(Token::Open), Some(Token::Word(oid))) = (it.next(), it.next()) else {
            return Err(SchemaError::NoOid(text.to_owned()));
        };
        let mut at = AttributeType {
            oid: oid.to_owned(),
            ..AttributeType::default()
        };
        while let Some(token) = it.next() {
            let Token::Word(keyword) = token else {
                continue; // the closing parenthesis, or stray ones
            };
            if FLAGS.iter().any(|f| f.eq_ignore_ascii_case(keyword)) {
                continue;
            }
            // The value: one word, or a parenthesised list of words.
            let mut values = Vec::new();
            match it.peek() {
                Some(Token::Open) => {
                    it.next();
                    for t in it.by_ref() {
                        match t {
                            Token::Word(w) if w != "$" => values.push(w),
                            Token::Close => break,
                            _ => {}
                        }
                    }
                }
                Some(Token::Word(_)) => {
                    if let Some(Token::Word(w)) = it.next() {
                        values.push(w);
                    }
                }
                _ => {}
            }
            let first = values.first().map(|v| (*v).to_owned());
            match keyword.to_ascii_uppercase().as_str() {
                "NAME" => at.names = values.iter().map(|v| (*v).to_owned()).collect(),
                "SUP" => at.sup = first,
                "EQUALITY" => at.equality = first,
                "SYNTAX" => {
                    at.syntax = first.map(|s| s.split('{').next().unwrap_or_default().to_owned())
                }
                _ => {}
            }
        }
        Ok(at)
    }
}

/// The attribute types of a subschema, looked up by any name or OID.
#[derive(Debug, Default)]
pub struct Schema {
    types: Vec<AttributeType>,
    /// Lowercased name or OID to index in `types`.
    index: HashMap<String, usize>,
}

/// How far SUP chains are followed: real ones are two or three deep, and a
/// cycle in a broken schema must not loop.
const MAX_SUP_DEPTH: usize = 16;

impl Schema {
    /// Reads every description; the ones that do not parse are returned
    /// beside the schema (the rest are still usable).
    pub fn parse<'a>(
        descriptions: impl IntoIterator<Item = &'a str>,
    ) -> (Schema, Vec<SchemaError>) {
        let mut schema = Schema::default();
        let mut errors = Vec::new();
        for text in descriptions {
            match AttributeType::parse(text) {
                Ok(at) => schema.add(at),
                Err(e) => errors.push(e),
            }
        }
        (schema, errors)
    }

    fn add(&mut self, at: AttributeType) {
        let i = self.types.len();
        for key in std::iter::once(&at.oid).chain(&at.names) {
            self.index.entry(key.to_ascii_lowercase()).or_insert(i);
        }
        self.types.push(at);
    }

    /// Every name and OID the schema knows (lower-cased), with its type.
    pub fn names(&self) -> impl Iterator<Item = (&str, &AttributeType)> {
        self.index
            .iter()
            .filter_map(|(name, i)| Some((name.as_str(), self.types.get(*i)?)))
    }

    /// The number of attribute types read.
    pub fn len(&self) -> usize {
        self.types.len()
    }

    /// True when no attribute type was read.
    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    /// The attribute type named `name` (a NAME alias or the OID, any case).
    pub fn get(&self, name: &str) -> Option<&AttributeType> {
        let found = self.index.get(&name.to_ascii_lowercase())?;
        self.types.get(*found)
    }

    /// The equality rule of attribute `name`: its EQUALITY, else the
    /// nearest one up its SUP chain, else (as on AD, whose types name
    /// none) the rule its SYNTAX implies, own or inherited. None when the
    /// schema has no such attribute.
    pub fn matching(&self, name: &str) -> Option<Matching> {
        let mut at = self.get(name)?;
        let mut syntax = at.syntax.clone();
        for _ in 0..MAX_SUP_DEPTH {
            if let Some(rule) = &at.equality {
                return Some(Matching::from_rule(rule));
            }
            let Some(sup) = at.sup.as_deref().and_then(|s| self.get(s)) else {
                break;
            };
            at = sup;
            if syntax.is_none() {
                syntax.clone_from(&at.syntax);
            }
        }
        Some(syntax.map_or(Matching::CaseIgnore, |s| Matching::from_syntax(&s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Matching::*;

    /// As slapd 2.5 prints them (core, cosine and inetorgperson schema).
    const SLAPD: [&str; 7] = [
        "( 2.5.4.41 NAME 'name' DESC 'RFC4519: common supertype of name attributes' \
         EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch \
         SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{32768} )",
        "( 2.5.4.3 NAME ( 'cn' 'commonName' ) DESC 'RFC4519: common name(s) for which \
         the entity is known by' SUP name )",
        "( 0.9.2342.19200300.100.1.1 NAME ( 'uid' 'userid' ) DESC 'RFC4519: user identifier' \
         EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch \
         SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{256} )",
        "( 0.9.2342.19200300.100.1.3 NAME ( 'mail' 'rfc822Mailbox' ) \
         DESC 'RFC1274: RFC822 Mailbox' EQUALITY caseIgnoreIA5Match \
         SUBSTR caseIgnoreIA5SubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.26{256} )",
        "( 0.9.2342.19200300.100.1.41 NAME ( 'mobile' 'mobileTelephoneNumber' ) \
         DESC 'RFC1274: mobile telephone number' EQUALITY telephoneNumberMatch \
         SUBSTR telephoneNumberSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.50 )",
        "( 2.16.840.1.113730.3.1.3 NAME 'employeeNumber' DESC 'RFC2798: identifies an \
         employee within an organization' EQUALITY caseIgnoreMatch \
         SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )",
        "( 1.3.6.1.1.16.4 NAME 'entryUUID' DESC 'UUID of the entry' EQUALITY UUIDMatch \
         ORDERING UUIDOrderingMatch SYNTAX 1.3.6.1.1.16.1 SINGLE-VALUE NO-USER-MODIFICATION \
         USAGE directoryOperation )",
    ];

    /// As Active Directory (and Samba AD) print them in CN=Aggregate: no
    /// EQUALITY, quoted SYNTAX.
    const AD: [&str; 5] = [
        "( 1.2.840.113556.1.4.221 NAME 'sAMAccountName' \
         SYNTAX '1.3.6.1.4.1.1466.115.121.1.15' SINGLE-VALUE )",
        "( 0.9.2342.19200300.100.1.41 NAME 'mobile' \
         SYNTAX '1.3.6.1.4.1.1466.115.121.1.15' SINGLE-VALUE )",
        "( 2.5.4.20 NAME 'telephoneNumber' SYNTAX '1.3.6.1.4.1.1466.115.121.1.50' SINGLE-VALUE )",
        "( 1.2.840.113556.1.4.656 NAME 'userPrincipalName' \
         SYNTAX '1.3.6.1.4.1.1466.115.121.1.15' SINGLE-VALUE )",
        "( 2.5.4.5 NAME 'serialNumber' SYNTAX '1.3.6.1.4.1.1466.115.121.1.44' )",
    ];

    #[test]
    fn parses_slapd_descriptions_with_aliases_and_bounds() {
        let mail = AttributeType::parse(SLAPD[3]).unwrap();
        assert_eq!(mail.oid, "0.9.2342.19200300.100.1.3");
        assert_eq!(mail.names, ["mail", "rfc822Mailbox"]);
        assert_eq!(mail.equality.as_deref(), Some("caseIgnoreIA5Match"));
        assert_eq!(
            mail.syntax.as_deref(),
            Some("1.3.6.1.4.1.1466.115.121.1.26")
        );
        let cn = AttributeType::parse(SLAPD[1]).unwrap();
        assert_eq!(cn.names, ["cn", "commonName"]);
        assert_eq!(cn.sup.as_deref(), Some("name"));
        assert_eq!(cn.equality, None);
        let uuid = AttributeType::parse(SLAPD[6]).unwrap();
        assert_eq!(uuid.equality.as_deref(), Some("UUIDMatch"));
    }

    #[test]
    fn parses_ad_descriptions_with_quoted_syntax() {
        let sam = AttributeType::parse(AD[0]).unwrap();
        assert_eq!(sam.names, ["sAMAccountName"]);
        assert_eq!(sam.equality, None);
        assert_eq!(sam.syntax.as_deref(), Some("1.3.6.1.4.1.1466.115.121.1.15"));
    }

    #[test]
    fn skips_extensions_and_parentheses_inside_quotes() {
        let at = AttributeType::parse(
            "( 1.2.3.4 NAME 'x' DESC 'has ( parens ) and \\27quotes\\27' \
             X-ORIGIN ( 'a' 'b' ) EQUALITY caseExactMatch X-NDS 'y' )",
        )
        .unwrap();
        assert_eq!(at.names, ["x"]);
        assert_eq!(at.equality.as_deref(), Some("caseExactMatch"));
        // No space before the closing parenthesis, lowercase keywords.
        let at = AttributeType::parse("(1.2.3.5 name 'y' equality numericStringMatch)").unwrap();
        assert_eq!(at.names, ["y"]);
        assert_eq!(at.equality.as_deref(), Some("numericStringMatch"));
    }

    #[test]
    fn rejects_what_is_not_a_description() {
        assert!(matches!(
            AttributeType::parse("NAME 'x'"),
            Err(SchemaError::NoOid(_))
        ));
        assert!(matches!(
            AttributeType::parse("( 1.2.3 NAME 'x"),
            Err(SchemaError::Unterminated(_))
        ));
    }

    #[test]
    fn slapd_rules_by_name_alias_oid_and_sup() {
        let (schema, errors) = Schema::parse(SLAPD);
        assert!(errors.is_empty(), "{errors:?}");
        // cn names no EQUALITY: it inherits name's.
        for (name, want) in [
            ("mobile", Some(Telephone)),
            ("MobileTelephoneNumber", Some(Telephone)),
            ("0.9.2342.19200300.100.1.41", Some(Telephone)),
            ("uid", Some(CaseIgnore)),
            ("RFC822MAILBOX", Some(CaseIgnore)),
            ("employeeNumber", Some(CaseIgnore)),
            ("commonName", Some(CaseIgnore)),
            ("entryUUID", Some(Exact)),
            ("nosuchattribute", None),
        ] {
            assert_eq!(schema.matching(name), want, "{name}");
        }
    }

    #[test]
    fn inherited_equality_wins_over_the_syntax() {
        let (schema, _) = Schema::parse([
            "( 1.1 NAME 'base' EQUALITY telephoneNumberMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )",
            "( 1.2 NAME 'mid' SUP base )",
            "( 1.3 NAME 'leaf' SUP mid SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )",
            "( 1.4 NAME 'bysyntax' SUP 1.5 )",
            "( 1.5 NAME 'top' SYNTAX 1.3.6.1.4.1.1466.115.121.1.36 )",
        ]);
        assert_eq!(schema.matching("leaf"), Some(Telephone));
        assert_eq!(schema.matching("bysyntax"), Some(Numeric));
    }

    #[test]
    fn a_sup_cycle_ends() {
        let (schema, _) = Schema::parse(["( 1.1 NAME 'a' SUP b )", "( 1.2 NAME 'b' SUP a )"]);
        assert_eq!(schema.matching("a"), Some(CaseIgnore));
    }

    #[test]
    fn ad_rules_come_from_the_syntax() {
        let (schema, errors) = Schema::parse(AD);
        assert!(errors.is_empty(), "{errors:?}");
        for (name, want) in [
            ("sAMAccountName", CaseIgnore),
            ("mobile", CaseIgnore),
            ("telephonenumber", Telephone),
            ("userPrincipalName", CaseIgnore),
            ("serialNumber", CaseIgnore),
        ] {
            assert_eq!(schema.matching(name), Some(want), "{name}");
        }
    }

    #[test]
    fn bad_descriptions_are_reported_and_the_rest_kept() {
        let (schema, errors) = Schema::parse(["garbage", SLAPD[4]]);
        assert_eq!(errors.len(), 1);
        assert_eq!(schema.matching("mobile"), Some(Telephone));
    }
}

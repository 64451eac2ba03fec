//! Distinguished names (RFC 4514), parsed only far enough to decide whether
//! one entry lies under another.
//!
//! Comparison is what a directory's `distinguishedNameMatch` (RFC 4517
//! §4.2.15) does: escapes are resolved, insignificant spaces ignored, the
//! names, aliases and OIDs of one attribute type are one type, and each RDN
//! value is compared by its type's equality rule. [`Dn::parse`] knows the
//! usual naming types (a built-in table) and compares every value
//! case-insensitively; [`super::dn_schema::DnSchema`] parses by the
//! directory's own subschema instead. Two DNs compare meaningfully only when
//! the same one normalised both.

use std::fmt;
use thiserror::Error;

/// Why a string is not a DN.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DnError {
    #[error("DN is not valid UTF-8")]
    NotUtf8,
    #[error("RDN `{0}` has no `=`")]
    MissingEquals(String),
    #[error("RDN `{0}` has an empty attribute type")]
    EmptyType(String),
    #[error("attribute type `{0}` is not a name or an OID")]
    BadType(String),
    #[error("bad escape sequence in `{0}`")]
    BadEscape(String),
    #[error("empty RDN")]
    EmptyRdn,
}

/// One attribute-value assertion of an RDN, normalised for comparison.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Ava {
    attr: String,
    value: String,
}

/// A parsed DN; `rdns[0]` is the leftmost (most specific) RDN. Equality is
/// on the normalised form; the text is kept as written, for messages.
#[derive(Clone)]
pub struct Dn {
    rdns: Vec<Vec<Ava>>,
    text: String,
}

impl PartialEq for Dn {
    fn eq(&self, other: &Self) -> bool {
        self.rdns == other.rdns
    }
}

impl Eq for Dn {}

impl fmt::Debug for Dn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dn({:?})", self.text)
    }
}

impl fmt::Display for Dn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Dn {
    /// Parses a DN from the bytes of an LDAPDN.
    pub fn from_bytes(bytes: &[u8]) -> Result<Dn, DnError> {
        let s = std::str::from_utf8(bytes).map_err(|_| DnError::NotUtf8)?;
        Dn::parse(s)
    }

    /// Parses a DN string; the empty string is the root DSE. Attribute
    /// types are resolved by the built-in table of naming types and values
    /// compare case-insensitively: the comparison sync keys are made with.
    pub fn parse(s: &str) -> Result<Dn, DnError> {
        Dn::parse_with(s, &|attr, value| {
            (canonical_type(attr), normalise_value(value))
        })
    }

    /// Parses a DN string, normalising each attribute-value assertion with
    /// `normalise(type as written, unescaped value)`, which returns the
    /// canonical type and the value's normal form.
    pub(super) fn parse_with(
        s: &str,
        normalise: &dyn Fn(&str, &str) -> (String, String),
    ) -> Result<Dn, DnError> {
        let text = s.to_owned();
        if s.trim().is_empty() {
            return Ok(Dn {
                rdns: Vec::new(),
                text,
            });
        }
        let mut rdns = Vec::new();
        for rdn in split_unescaped(s, &[',', ';']) {
            if rdn.trim().is_empty() {
                return Err(DnError::EmptyRdn);
            }
            let mut avas = Vec::new();
            for ava in split_unescaped(rdn, &['+']) {
                avas.push(parse_ava(ava, normalise)?);
            }
            avas.sort();
            rdns.push(avas);
        }
        Ok(Dn { rdns, text })
    }

    /// The DN as it was written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True for the empty DN (the root DSE).
    pub fn is_root(&self) -> bool {
        self.rdns.is_empty()
    }

    /// True when `self` is `base` or an entry below it.
    pub fn is_within(&self, base: &Dn) -> bool {
        self.rdns.len() >= base.rdns.len()
            && self.rdns[self.rdns.len() - base.rdns.len()..] == base.rdns[..]
    }

    /// The DN of the parent entry, or None for the root DSE.
    pub fn parent(&self) -> Option<Dn> {
        if self.rdns.is_empty() {
            return None;
        }
        let text = match split_unescaped(&self.text, &[',', ';']).get(1..) {
            Some(rest) => rest.join(","),
            None => String::new(),
        };
        Some(Dn {
            rdns: self.rdns[1..].to_vec(),
            text,
        })
    }

    /// True when the first RDN is `attr=value` (compared normalised).
    pub fn leaf_is(&self, attr: &str, value: &str) -> bool {
        match self.rdns.first() {
            Some(rdn) => {
                rdn.len() == 1
                    && rdn[0].attr == attr.to_ascii_lowercase()
                    && rdn[0].value == normalise_value(value)
            }
            None => false,
        }
    }

    /// The normalised form as a string, for use as a map key.
    pub fn key(&self) -> String {
        self.rdns
            .iter()
            .map(|rdn| {
                rdn.iter()
                    .map(|a| {
                        let mut value = String::with_capacity(a.value.len());
                        for (i, c) in a.value.chars().enumerate() {
                            // A leading quote would open an RFC 1779 quoted
                            // value when the key is read back.
                            if matches!(c, '\\' | ',' | '+' | '=') || (i == 0 && c == '"') {
                                value.push('\\');
                            }
                            value.push(c);
                        }
                        format!("{}={value}", a.attr)
                    })
                    .collect::<Vec<_>>()
                    .join("+")
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The value of the leftmost RDN as written (escapes kept), for a
    /// display name; None for the root DSE or a multi-valued RDN.
    pub fn leaf_text(&self) -> Option<&str> {
        let first = split_unescaped(&self.text, &[',', ';'])
            .into_iter()
            .next()?;
        if split_unescaped(first, &['+']).len() != 1 {
            return None;
        }
        first.split_once('=').map(|(_, value)| value.trim())
    }

    /// Number of RDNs.
    pub fn depth(&self) -> usize {
        self.rdns.len()
    }

    /// The DN with its first `n` RDNs removed.
    pub fn ancestor(&self, n: usize) -> Option<Dn> {
        let mut dn = self.clone();
        for _ in 0..n {
            dn = dn.parent()?;
        }
        Some(dn)
    }
}

/// The byte offsets and characters of the separators in `s` (any of
/// `seps`) that are not escaped with a backslash.
fn unescaped<'a>(s: &'a str, seps: &'a [char]) -> impl Iterator<Item = (usize, char)> + 'a {
    let mut escaped = false;
    // RFC 1779 (LDAPv2) quoted values, which directories still accept:
    // `cn="Smith, J"`. A quote opens one only where a value starts;
    // separators inside are part of the value.
    let mut quoted = false;
    let mut in_value = false;
    let mut value_start = false;
    s.char_indices().filter(move |(_, c)| {
        let c = *c;
        let separates = !escaped && !quoted && seps.contains(&c);
        if !escaped {
            if quoted {
                quoted = c != '"';
            } else if value_start && c == '"' {
                quoted = true;
            } else if [',', ';', '+'].contains(&c) {
                in_value = false;
            } else if c == '=' && !in_value {
                in_value = true;
                value_start = true;
                escaped = false;
                return separates;
            }
        }
        if c != ' ' {
            value_start = false;
        }
        escaped = !escaped && c == '\\';
        separates
    })
}

/// The text of the parent of the DN written `dn`, without parsing it: what
/// follows the first unescaped separator. None for a single RDN or the
/// root DSE. For walking many DNs that share a few parents.
pub fn parent_text(dn: &str) -> Option<&str> {
    let (at, sep) = unescaped(dn, &[',', ';']).next()?;
    Some(dn[at + sep.len_utf8()..].trim_start())
}

/// Splits at separator characters that are not escaped with a backslash.
fn split_unescaped<'a>(s: &'a str, seps: &[char]) -> Vec<&'a str> {
    let mut parts = Vec::new();
    let mut start = 0;
    for (i, c) in unescaped(s, seps) {
        parts.push(&s[start..i]);
        start = i + c.len_utf8();
    }
    parts.push(&s[start..]);
    parts
}

fn parse_ava(
    ava: &str,
    normalise: &dyn Fn(&str, &str) -> (String, String),
) -> Result<Ava, DnError> {
    let eq = ava
        .find('=')
        .ok_or_else(|| DnError::MissingEquals(ava.to_owned()))?;
    let attr = ava[..eq].trim();
    if attr.is_empty() {
        if ava.trim().is_empty() {
            return Err(DnError::EmptyRdn);
        }
        return Err(DnError::EmptyType(ava.to_owned()));
    }
    let is_name = attr.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && attr.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    let numeric = attr
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case("oid."))
        .map_or(attr, |_| &attr[4..]);
    let is_oid = !numeric.is_empty() && numeric.chars().all(|c| c.is_ascii_digit() || c == '.');
    if !is_name && !is_oid {
        return Err(DnError::BadType(attr.to_owned()));
    }
    let value = unescape(&ava[eq + 1..]).ok_or_else(|| DnError::BadEscape(ava.to_owned()))?;
    let (attr, value) = normalise(attr, &value);
    Ok(Ava { attr, value })
}

/// Attribute types that name entries, by their usual short name, with the
/// other names and the OID a directory takes for them (RFC 4519, RFC 4524,
/// RFC 2798). `ou=people,domainComponent=example,dc=com` is then the DN
/// `ou=people,dc=example,dc=com`, as the directory's schema makes it.
const TYPE_NAMES: [(&str, &[&str]); 20] = [
    ("cn", &["commonname", "2.5.4.3"]),
    ("sn", &["surname", "2.5.4.4"]),
    ("serialnumber", &["2.5.4.5"]),
    ("c", &["countryname", "2.5.4.6"]),
    ("l", &["localityname", "2.5.4.7"]),
    ("st", &["stateorprovincename", "2.5.4.8"]),
    ("street", &["streetaddress", "2.5.4.9"]),
    ("o", &["organizationname", "2.5.4.10"]),
    ("ou", &["organizationalunitname", "2.5.4.11"]),
    ("title", &["2.5.4.12"]),
    ("description", &["2.5.4.13"]),
    ("name", &["2.5.4.41"]),
    ("givenname", &["gn", "2.5.4.42"]),
    ("initials", &["2.5.4.43"]),
    ("uid", &["userid", "0.9.2342.19200300.100.1.1"]),
    ("mail", &["rfc822mailbox", "0.9.2342.19200300.100.1.3"]),
    ("dc", &["domaincomponent", "0.9.2342.19200300.100.1.25"]),
    ("employeenumber", &["2.16.840.1.113730.3.1.3"]),
    ("displayname", &["2.16.840.1.113730.3.1.241"]),
    ("telephonenumber", &["2.5.4.20"]),
];

/// An attribute type as DNs compare it: lower case, an `OID.` prefix
/// (RFC 2253's legacy form) dropped, and a known alias or OID replaced by
/// the usual name ([`TYPE_NAMES`]).
pub(super) fn canonical_type(attr: &str) -> String {
    let bare = bare_type(attr);
    TYPE_NAMES
        .iter()
        .find(|(name, others)| *name == bare || others.contains(&bare.as_str()))
        .map_or(bare, |(name, _)| (*name).to_owned())
}

/// An attribute type lower-cased, without the `OID.` prefix of RFC 2253:
/// how a name or OID is looked up.
pub(super) fn bare_type(attr: &str) -> String {
    let lower = attr.to_ascii_lowercase();
    match lower.strip_prefix("oid.") {
        Some(oid) => oid.to_owned(),
        None => lower,
    }
}

/// Resolves RFC 4514 escapes; unescaped spaces at either end are dropped,
/// escaped ones kept.
fn unescape(raw: &str) -> Option<String> {
    let trimmed = raw.trim_matches(' ');
    if let Some(inner) = trimmed
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .filter(|inner| inner.bytes().rev().take_while(|b| *b == b'\\').count() % 2 == 0)
    {
        // A quoted value (RFC 1779 §2.3): everything between the quotes
        // counts, spaces included; backslash escapes still apply.
        return unescape_bytes(inner, false);
    }
    unescape_bytes(raw, true)
}

/// Resolves backslash escapes; with `trim`, unescaped spaces at either end
/// are dropped.
fn unescape_bytes(raw: &str, trim: bool) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out: Vec<(u8, bool)> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            let next = *bytes.get(i + 1)?;
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(next), bytes.get(i + 2).and_then(|b| hex(*b))) {
                // Two hex digits always fit in a byte.
                out.push(((h * 16 + l) as u8, true));
                i += 3;
            } else {
                out.push((next, true));
                i += 2;
            }
        } else {
            out.push((bytes[i], false));
            i += 1;
        }
    }
    let start = out
        .iter()
        .position(|(b, esc)| !trim || *esc || *b != b' ')
        .unwrap_or(out.len());
    let end = out
        .iter()
        .rposition(|(b, esc)| !trim || *esc || *b != b' ')
        .map_or(start, |p| p + 1);
    let raw: Vec<u8> = out[start..end.max(start)].iter().map(|(b, _)| *b).collect();
    String::from_utf8(raw).ok()
}

/// caseIgnoreMatch-style: lower case, runs of spaces collapsed. (Kept
/// apart from [`super::matching::Matching::normalize`], which also applies
/// RFC 4518's character mapping, so that the keys sync stores stay what
/// they were.)
pub(super) fn normalise_value(v: &str) -> String {
    let lower = v.to_lowercase();
    let mut out = String::with_capacity(lower.len());
    let mut last_space = false;
    for c in lower.trim().chars() {
        if c == ' ' {
            if !last_space {
                out.push(c);
            }
            last_space = true;
        } else {
            out.push(c);
            last_space = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dn(s: &str) -> Dn {
        Dn::parse(s).unwrap()
    }

    #[test]
    fn quoted_values_are_values() {
        assert_eq!(
            dn("ou=people,dc=\"example\",dc=com"),
            dn("ou=people,dc=example,dc=com")
        );
        assert_eq!(dn("cn=\"Smith, J\",dc=com"), dn("cn=Smith\\, J,dc=com"));
        assert_eq!(dn("cn=\"Smith, J\",dc=com").depth(), 2);
        assert_eq!(dn("cn=\"a+b;c\",dc=com"), dn("cn=a\\+b\\;c,dc=com"));
        assert_eq!(
            dn("cn=\"say \\\"hi\\\"\",dc=com"),
            dn("cn=say \\\"hi\\\",dc=com")
        );
        assert_eq!(parent_text("cn=\"a,b\",dc=com"), Some("dc=com"));
        // A quote inside a value is a character, not the start of one.
        assert_eq!(dn("cn=a\"b,dc=com").depth(), 2);
        assert_eq!(dn("cn=a=\"b,dc=com").depth(), 2);
        let quote_first = dn("cn=\\\"a,dc=com");
        assert_eq!(Dn::parse(&quote_first.key()).unwrap(), quote_first);
        // Found by the dn fuzz target: a value ending in an escaped quote.
        let found = dn("OID.25.4.3=a\\2?cb\\\",domainComponn=\u{5f20}\u{4e08}");
        assert_eq!(Dn::parse(&found.key()).unwrap(), found);
    }

    #[test]
    fn scope_checks_ignore_case_and_spaces() {
        let base = dn("dc=example,dc=com");
        assert!(dn("uid=alice,ou=People,DC=Example,DC=com").is_within(&base));
        assert!(dn("uid=alice, ou=people , dc=example,  dc=com").is_within(&base));
        assert!(dn("DC=EXAMPLE,DC=COM").is_within(&base));
        assert!(!dn("dc=com").is_within(&base));
        assert!(!dn("dc=example,dc=org").is_within(&base));
        assert!(!dn("").is_within(&base));
        assert!(dn("").is_root());
    }

    #[test]
    fn suffix_match_is_per_rdn_not_per_character() {
        let base = dn("dc=example,dc=com");
        assert!(!dn("dc=badexample,dc=com").is_within(&base));
        assert!(!dn("cn=x,dc=example\\,dc=com").is_within(&base));
    }

    #[test]
    fn escapes_are_resolved_before_comparing() {
        assert_eq!(dn("cn=Smith\\, John,dc=x"), dn("cn=smith\\2c john,dc=x"));
        assert!(dn("cn=a\\+b,dc=x").is_within(&dn("dc=x")));
        assert_eq!(dn("cn=a\\ ,dc=x").rdns[0][0].value, "a");
        assert_ne!(dn("cn=a\\2b,dc=x").rdns[0].len(), 2);
    }

    #[test]
    fn multi_valued_rdns_compare_in_any_order() {
        assert_eq!(dn("cn=a+sn=b,dc=x"), dn("SN=B+CN=A,dc=x"));
    }

    #[test]
    fn parent_and_leaf() {
        let d = dn("cn=Subschema");
        assert!(d.leaf_is("CN", "subschema"));
        assert!(d.parent().unwrap().is_root());
        let p = dn("uid=a,ou=people,dc=example,dc=com").parent().unwrap();
        assert_eq!(p, dn("ou=people,dc=example,dc=com"));
        assert_eq!(p.to_string(), "ou=people,dc=example,dc=com");
        assert!(dn("").parent().is_none());
    }

    #[test]
    fn rejects_what_is_not_a_dn() {
        assert!(matches!(Dn::parse("alice"), Err(DnError::MissingEquals(_))));
        assert!(matches!(Dn::parse("=x,dc=com"), Err(DnError::EmptyType(_))));
        assert!(matches!(Dn::parse("cn=a,,dc=com"), Err(DnError::EmptyRdn)));
        assert!(matches!(Dn::parse("c n=a"), Err(DnError::BadType(_))));
        assert!(matches!(
            Dn::parse("alice@example.com"),
            Err(DnError::MissingEquals(_))
        ));
        assert!(matches!(
            Dn::parse("EXAMPLE\\alice"),
            Err(DnError::MissingEquals(_))
        ));
        assert!(matches!(Dn::parse("cn=a\\"), Err(DnError::BadEscape(_))));
        assert_eq!(Dn::from_bytes(&[0xff]), Err(DnError::NotUtf8));
    }

    #[test]
    fn keys_are_normalised_and_unambiguous() {
        assert_eq!(dn("OU=A B, DC=x").key(), dn("ou=a  b,dc=X").key());
        assert_ne!(dn("cn=a\\,b,dc=x").key(), dn("cn=a,cn=b,dc=x").key());
    }

    #[test]
    fn oid_attribute_types_parse() {
        assert!(dn("2.5.4.3=alice,dc=x").is_within(&dn("dc=x")));
    }

    #[test]
    fn parent_text_skips_escaped_separators() {
        assert_eq!(
            parent_text(r"cn=Smith\, John,ou=a\;b;dc=x"),
            Some(r"ou=a\;b;dc=x")
        );
        assert_eq!(parent_text("uid=a, ou=people,dc=x"), Some("ou=people,dc=x"));
        assert_eq!(parent_text("dc=com"), None);
        assert_eq!(parent_text(""), None);
    }

    #[test]
    fn leaf_text_is_the_first_value_as_written() {
        let dn = Dn::parse("dc=Staging Area,ou=tenant,dc=x").unwrap();
        assert_eq!(dn.leaf_text(), Some("Staging Area"));
        assert_eq!(Dn::parse("cn=a+sn=b,dc=x").unwrap().leaf_text(), None);
        assert_eq!(Dn::parse("").unwrap().leaf_text(), None);
    }

    #[test]
    fn type_names_aliases_and_oids_are_one_type() {
        let want = Dn::parse("uid=alice,ou=people,dc=example,dc=com").unwrap();
        for spelling in [
            "uid=alice,ou=people,domainComponent=example,dc=com",
            "userid=alice,organizationalUnitName=people,DC=example,dc=com",
            "0.9.2342.19200300.100.1.1=alice,2.5.4.11=people,dc=example,dc=com",
            "OID.0.9.2342.19200300.100.1.1=alice,oid.2.5.4.11=people,dc=example,dc=com",
        ] {
            assert_eq!(Dn::parse(spelling).unwrap(), want, "{spelling}");
        }
        let base = Dn::parse("dc=example,dc=com").unwrap();
        assert!(
            Dn::parse("ou=people,domainComponent=example,0.9.2342.19200300.100.1.25=com")
                .unwrap()
                .is_within(&base)
        );
        assert_ne!(
            Dn::parse("cn=alice,dc=com").unwrap(),
            Dn::parse("uid=alice,dc=com").unwrap()
        );
        assert!(Dn::parse("oid.=x").is_err());
        assert!(Dn::parse("oid.x=y").is_err());
    }
}

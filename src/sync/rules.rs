//! The equality matching rule of each sign-in attribute, read from the
//! directory's own subschema ([`crate::upstream::schema`]).
//! Scheduled verification compares sign-in values with these rules, so it
//! finds every value the directory's filter (and so sign-in) finds equal.

use tracing::warn;

use super::reader::DirectoryReader;
use crate::ldap::matching::Matching;
use crate::ldap::schema::Schema;

/// One sign-in attribute: every name the directory may return it under
/// (configured name, schema aliases, OID) and its rule.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SignInAttribute {
    names: Vec<String>,
    matching: Matching,
}

/// The sign-in attributes and the rule each compares values by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInRules {
    attributes: Vec<SignInAttribute>,
}

impl SignInRules {
    /// Every attribute compared as caseIgnoreMatch: what is assumed when
    /// the schema cannot be read.
    pub fn case_ignore(sign_in: &[String]) -> SignInRules {
        let all: Vec<(&str, Matching)> = sign_in
            .iter()
            .map(|name| (name.as_str(), Matching::CaseIgnore))
            .collect();
        Self::new(&all)
    }

    /// The rules `schema` gives the `sign_in` attributes. One the schema
    /// does not know is compared as caseIgnoreMatch, with a warning.
    pub fn from_schema(schema: &Schema, sign_in: &[String]) -> SignInRules {
        let attributes = sign_in
            .iter()
            .map(|name| {
                let mut names = vec![name.clone()];
                let Some(at) = schema.get(name) else {
                    warn!(
                        attribute = %name,
                        "sign-in attribute not in the directory's schema; its values compare as caseIgnoreMatch"
                    );
                    return SignInAttribute {
                        names,
                        matching: Matching::CaseIgnore,
                    };
                };
                names.push(at.oid.clone());
                names.extend(at.names.iter().cloned());
                SignInAttribute {
                    names,
                    matching: schema.matching(name).unwrap_or(Matching::CaseIgnore),
                }
            })
            .collect();
        SignInRules { attributes }
    }

    /// Explicit rules, `(attribute name, rule)`.
    pub fn new(attributes: &[(&str, Matching)]) -> SignInRules {
        SignInRules {
            attributes: attributes
                .iter()
                .map(|(name, matching)| SignInAttribute {
                    names: vec![(*name).to_owned()],
                    matching: *matching,
                })
                .collect(),
        }
    }

    /// The rule of attribute `atype` as an entry names it (options such as
    /// `;lang-en` ignored); None when it is not a sign-in attribute.
    pub fn rule_of(&self, atype: &str) -> Option<Matching> {
        let base = atype.split(';').next().unwrap_or(atype);
        self.attributes
            .iter()
            .find(|a| a.names.iter().any(|n| n.eq_ignore_ascii_case(base)))
            .map(|a| a.matching)
    }

    /// The distinct rules in use, finest first.
    pub fn distinct(&self) -> Vec<Matching> {
        let mut rules: Vec<Matching> = self.attributes.iter().map(|a| a.matching).collect();
        rules.sort();
        rules.dedup();
        rules
    }

    /// `(attribute, rule name)` pairs, for logs.
    pub fn describe(&self) -> Vec<String> {
        self.attributes
            .iter()
            .map(|a| {
                let name = a.names.first().map_or("", String::as_str);
                format!("{name}:{}", a.matching.name())
            })
            .collect()
    }
}

/// The rules of the `sign_in` attributes from the directory's subschema,
/// or caseIgnoreMatch for all of them (with a warning) when it cannot be
/// read: verification still runs, as it did before it knew the rules.
pub async fn sign_in_rules(reader: &DirectoryReader, sign_in: &[String]) -> SignInRules {
    match reader.read_schema().await {
        Ok(schema) => SignInRules::from_schema(&schema, sign_in),
        Err(e) => {
            warn!(
                error = %e,
                "cannot read the directory's subschema: sign-in values compare as \
                 caseIgnoreMatch (case and space runs ignored), which misses values equal \
                 under other rules such as telephoneNumberMatch"
            );
            SignInRules::case_ignore(sign_in)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_from_the_schema_know_every_alias() {
        let (schema, _) = Schema::parse([
            "( 0.9.2342.19200300.100.1.3 NAME ( 'mail' 'rfc822Mailbox' ) \
             EQUALITY caseIgnoreIA5Match SYNTAX 1.3.6.1.4.1.1466.115.121.1.26{256} )",
            "( 0.9.2342.19200300.100.1.41 NAME ( 'mobile' 'mobileTelephoneNumber' ) \
             EQUALITY telephoneNumberMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.50 )",
        ]);
        let sign_in = ["rfc822Mailbox".to_owned(), "mobile".into(), "nosuch".into()];
        let rules = SignInRules::from_schema(&schema, &sign_in);
        assert_eq!(rules.rule_of("mail"), Some(Matching::CaseIgnore));
        assert_eq!(rules.rule_of("RFC822MAILBOX"), Some(Matching::CaseIgnore));
        assert_eq!(rules.rule_of("mobile"), Some(Matching::Telephone));
        assert_eq!(
            rules.rule_of("mobileTelephoneNumber"),
            Some(Matching::Telephone)
        );
        assert_eq!(
            rules.rule_of("0.9.2342.19200300.100.1.41"),
            Some(Matching::Telephone)
        );
        assert_eq!(rules.rule_of("mobile;x-option"), Some(Matching::Telephone));
        assert_eq!(rules.rule_of("nosuch"), Some(Matching::CaseIgnore));
        assert_eq!(rules.rule_of("cn"), None);
        assert_eq!(
            rules.distinct(),
            vec![Matching::CaseIgnore, Matching::Telephone]
        );
    }

    #[test]
    fn the_fallback_is_case_ignore() {
        let rules = SignInRules::case_ignore(&["mobile".to_owned()]);
        assert_eq!(rules.rule_of("Mobile"), Some(Matching::CaseIgnore));
    }
}

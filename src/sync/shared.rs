//! Sign-in values that make a login ambiguous: values of different entries
//! that one login matches, under the equality rule of the attribute that
//! matches them.
//!
//! A login matches an entry when, for some sign-in attribute A, A's rule
//! finds the login equal to one of the entry's A values. So a value `v` of
//! entry E1's attribute A and a value `w` of entry E2's attribute B collide
//! when some login matches both: typing `w` does whenever A's rule finds
//! `v` and `w` equal (B matches `w` itself), and typing `v` does whenever
//! B's rule does. Each value is therefore keyed by its normal form under
//! its own attribute's rule (it *owns* that key: the attribute's filter
//! matches it) and under the other sign-in rules (it *probes* those keys);
//! entries sharing a key collide when at least one of them owns it. Two
//! probes alone do not: `uid: 139-0009` and `uid: 1390009` are equal under
//! telephoneNumberMatch, but no login matches both unless some telephone
//! attribute holds that number. A value skips rules finer than its own
//! (whatever they find equal, its own rule, which the other value probes,
//! finds equal too). This is exact when one of the two rules refines the
//! other; for caseIgnore against numericString it is exact for values
//! valid in their syntax.
//!
//! Keys are 8-byte hashes with the index of the entry that first held
//! them, so a large directory costs little memory.

use std::collections::HashMap;

use ldap3_proto::proto::LdapSearchResultEntry;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::rules::SignInRules;
use crate::ldap::matching::Matching;

/// A sign-in value that matches several entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SharedValue {
    /// The attribute and value of one of the entries, as stored.
    pub attribute: String,
    pub value: String,
    /// The equality rule under which the entries' values are equal.
    pub rule: &'static str,
    /// Every entry a login of this value (or one the rule finds equal to
    /// it) matches.
    pub dns: Vec<String>,
}

/// Who holds a key so far.
#[derive(Debug, Clone, Copy)]
enum Slot {
    /// An entry whose attribute's rule is the key's rule: every later
    /// holder collides with it.
    Owned(u32),
    /// Only probes so far: the first one (the rest wait in `waiting`).
    Probed(u32),
}

/// Collects the entries of one verification pass and the values they share.
pub struct SharedValues {
    rules: SignInRules,
    distinct: Vec<Matching>,
    dns: Vec<String>,
    slots: HashMap<u64, Slot>,
    /// Further probes of keys nobody owns yet (rare: ids that only a
    /// coarser rule finds equal).
    waiting: HashMap<u64, Vec<u32>>,
    shared: HashMap<u64, SharedValue>,
}

/// One key of one entry, before it is recorded.
struct Held<'a> {
    key: u64,
    owns: bool,
    attribute: &'a str,
    value: &'a str,
    rule: Matching,
}

fn key(rule: Matching, normal: &str) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update([rule as u8]);
    hasher.update(normal.as_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

impl SharedValues {
    pub fn new(rules: SignInRules) -> SharedValues {
        SharedValues {
            distinct: rules.distinct(),
            rules,
            dns: Vec::new(),
            slots: HashMap::new(),
            waiting: HashMap::new(),
            shared: HashMap::new(),
        }
    }

    /// Takes one account with its sign-in attributes.
    pub fn add(&mut self, entry: &LdapSearchResultEntry) {
        let index = u32::try_from(self.dns.len()).unwrap_or(u32::MAX);
        self.dns.push(entry.dn.clone());
        // The same person through two attributes (uid and employeeNumber
        // both `pat`) is one entry: each key once per entry.
        let mut held: Vec<Held> = Vec::new();
        for attr in &entry.attributes {
            let Some(own) = self.rules.rule_of(&attr.atype) else {
                continue;
            };
            for v in &attr.vals {
                let Ok(text) = std::str::from_utf8(v) else {
                    continue;
                };
                for &rule in &self.distinct {
                    let owns = rule == own;
                    if !owns && rule.refines(own) {
                        continue;
                    }
                    let k = key(rule, &rule.normalize(text));
                    match held.iter_mut().find(|h| h.key == k) {
                        Some(h) => h.owns |= owns,
                        None => held.push(Held {
                            key: k,
                            owns,
                            attribute: &attr.atype,
                            value: text,
                            rule,
                        }),
                    }
                }
            }
        }
        for h in held {
            self.record(index, &h);
        }
    }

    fn record(&mut self, index: u32, h: &Held) {
        let earlier = match (self.slots.get(&h.key).copied(), h.owns) {
            (None, owns) => {
                let slot = if owns {
                    Slot::Owned(index)
                } else {
                    Slot::Probed(index)
                };
                self.slots.insert(h.key, slot);
                return;
            }
            (Some(Slot::Probed(_)), false) => {
                self.waiting.entry(h.key).or_default().push(index);
                return;
            }
            (Some(Slot::Owned(first)), _) => vec![first],
            (Some(Slot::Probed(first)), true) => {
                self.slots.insert(h.key, Slot::Owned(first));
                let mut earlier = vec![first];
                earlier.extend(self.waiting.remove(&h.key).unwrap_or_default());
                earlier
            }
        };
        let dns = &self.dns;
        let name = |i: u32| dns.get(i as usize).cloned().unwrap_or_default();
        let shared = self.shared.entry(h.key).or_insert_with(|| SharedValue {
            attribute: h.attribute.to_owned(),
            value: h.value.to_owned(),
            rule: h.rule.name(),
            dns: earlier.iter().map(|&i| name(i)).collect(),
        });
        shared.dns.push(name(index));
    }

    /// The shared values found, by attribute and value.
    pub fn finish(self) -> Vec<SharedValue> {
        let mut shared: Vec<SharedValue> = self.shared.into_values().collect();
        shared.sort_by(|a, b| (&a.attribute, &a.value).cmp(&(&b.attribute, &b.value)));
        shared
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ldap3_proto::proto::LdapPartialAttribute;
    use Matching::*;

    fn entry(dn: &str, attrs: &[(&str, &str)]) -> LdapSearchResultEntry {
        LdapSearchResultEntry {
            dn: dn.to_owned(),
            attributes: attrs
                .iter()
                .map(|(a, v)| LdapPartialAttribute {
                    atype: (*a).to_owned(),
                    vals: vec![v.as_bytes().to_vec()],
                })
                .collect(),
        }
    }

    /// uid, mail, employeeNumber and cn caseIgnore, mobile telephoneNumber,
    /// as on slapd.
    fn slapd_rules() -> SignInRules {
        SignInRules::new(&[
            ("uid", CaseIgnore),
            ("mobile", Telephone),
            ("mail", CaseIgnore),
            ("employeeNumber", CaseIgnore),
            ("cn", CaseIgnore),
        ])
    }

    fn shared(rules: SignInRules, entries: &[LdapSearchResultEntry]) -> Vec<SharedValue> {
        let mut s = SharedValues::new(rules);
        entries.iter().for_each(|e| s.add(e));
        s.finish()
    }

    type Person<'a> = (&'a str, &'a [(&'a str, &'a str)]);

    /// [`shared`] with the slapd rules, entries as `(dn, attributes)`.
    fn on_slapd(people: &[Person]) -> Vec<SharedValue> {
        let entries: Vec<_> = people.iter().map(|(dn, attrs)| entry(dn, attrs)).collect();
        shared(slapd_rules(), &entries)
    }

    #[test]
    fn phone_numbers_spelled_differently_are_shared() {
        let found = on_slapd(&[
            ("uid=a", &[("mobile", "+86 139 0000 0009")]),
            ("uid=b", &[("mobile", "+8613900000009")]),
            ("uid=c", &[("mobile", "+86-139-0000-0009")]),
            ("uid=d", &[("mobile", "+86 139 0000 0008")]),
        ]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].rule, "telephoneNumberMatch");
        assert_eq!(found[0].dns, ["uid=a", "uid=b", "uid=c"]);
    }

    #[test]
    fn case_and_space_runs_are_ignored_where_the_rule_says() {
        let found = on_slapd(&[
            ("uid=a", &[("mail", "Bob@Example.com")]),
            ("uid=b", &[("mail", "bob@example.COM")]),
            ("uid=c", &[("cn", "  Bob   Smith ")]),
            ("uid=d", &[("cn", "bob smith")]),
            ("uid=e", &[("cn", "bobsmith")]),
        ]);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found.iter().all(|s| s.rule == "caseIgnoreMatch"));
        assert_eq!(found[0].dns, ["uid=c", "uid=d"]);
        assert_eq!(found[1].dns, ["uid=a", "uid=b"]);
    }

    #[test]
    fn a_value_matched_through_another_attributes_rule_is_shared() {
        // The login "13900000009" matches a's uid (caseIgnore) and b's
        // mobile (telephoneNumber).
        let found = on_slapd(&[
            ("uid=a", &[("uid", "13900000009")]),
            ("uid=b", &[("mobile", "139-0000-0009")]),
        ]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].rule, "telephoneNumberMatch");
        // Either order.
        let found = on_slapd(&[
            ("uid=b", &[("mobile", "139-0000-0009")]),
            ("uid=a", &[("uid", "13900000009")]),
        ]);
        assert_eq!(found.len(), 1, "{found:?}");
    }

    #[test]
    fn values_equal_only_under_a_rule_none_of_their_attributes_use_are_not_shared() {
        let found = on_slapd(&[
            ("uid=a", &[("uid", "139-0009")]),
            ("uid=b", &[("uid", "1390009")]),
            ("uid=c", &[("employeeNumber", "139 0009")]),
        ]);
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn probes_that_wait_are_reported_once_an_owner_comes() {
        let found = on_slapd(&[
            ("uid=a", &[("uid", "139-0009")]),
            ("uid=b", &[("uid", "1390009")]),
            ("uid=c", &[("mobile", "139 0009")]),
            ("uid=d", &[("employeeNumber", "1390-009")]),
        ]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].dns, ["uid=a", "uid=b", "uid=c", "uid=d"]);
    }

    #[test]
    fn one_person_by_two_attributes_is_one_entry() {
        let found = on_slapd(&[
            ("uid=pat", &[("uid", "pat"), ("employeeNumber", "PAT")]),
            ("uid=q", &[("mobile", "1 2"), ("uid", "12")]),
        ]);
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn values_that_differ_under_the_rule_are_not_shared() {
        let found = on_slapd(&[
            ("uid=a", &[("mobile", "+86 139 0000 0009")]),
            ("uid=b", &[("mobile", "+86 139 0000 0090")]),
            ("uid=c", &[("uid", "bob-smith")]),
            ("uid=d", &[("uid", "bob smith")]),
        ]);
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn a_case_ignore_directory_keeps_phone_numbers_apart() {
        // AD: mobile is a Unicode string, compared caseIgnore.
        let found = shared(
            SignInRules::case_ignore(&["sAMAccountName".to_owned(), "mobile".to_owned()]),
            &[
                entry("cn=a", &[("mobile", "+86 139 0000 0009")]),
                entry("cn=b", &[("mobile", "+8613900000009")]),
                entry("cn=c", &[("sAMAccountName", "Carol")]),
                entry("cn=d", &[("mobile", "carol")]),
            ],
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].dns, ["cn=c", "cn=d"]);
    }

    #[test]
    fn an_exact_attribute_collides_under_the_coarser_rule() {
        let rules = SignInRules::new(&[("uid", CaseIgnore), ("badge", Exact)]);
        let found = shared(
            rules,
            &[
                entry("uid=a", &[("badge", "ABC")]),
                entry("uid=b", &[("uid", "abc")]),
                entry("uid=c", &[("badge", "abc ")]),
            ],
        );
        // Typing "ABC" matches a's badge and b's uid; typing "abc " matches
        // c's badge and b's uid.
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].rule, "caseIgnoreMatch");
        assert_eq!(found[0].dns, ["uid=a", "uid=b", "uid=c"]);
    }
}

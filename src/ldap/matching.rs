//! Equality matching rules as the directory applies them to sign-in values:
//! which rule an attribute uses ([`Matching::from_rule`], or
//! [`Matching::from_syntax`] where the schema names none, as on Active
//! Directory) and the normal form two values share exactly when the rule
//! finds them equal ([`Matching::normalize`]).
//!
//! String preparation follows RFC 4518 as far as it decides equality for
//! these rules: the Map step (characters mapped to nothing, separators and
//! line breaks mapped to SPACE), case folding for the case-ignoring rules,
//! and insignificant character handling (§2.6.1: space runs for
//! caseIgnore/caseExact, every space for numericString, every space and
//! hyphen for telephoneNumber). Of NFKC only the fullwidth ASCII forms
//! (U+FF01..U+FF5E) are applied, the compatibility mapping that phone numbers
//! and ids typed on CJK keyboards need; case folding is Unicode lowercase.

/// How an equality matching rule compares two values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Matching {
    /// octetStringMatch and other rules that compare values as stored.
    Exact,
    /// caseExactMatch, caseExactIA5Match: insignificant spaces only.
    CaseExact,
    /// caseIgnoreMatch, caseIgnoreIA5Match: case folded, insignificant spaces.
    CaseIgnore,
    /// numericStringMatch: every space removed.
    Numeric,
    /// telephoneNumberMatch: case folded, every space and hyphen removed.
    Telephone,
}

/// Matching rules compared as stored: not string rules, so not prepared.
const EXACT_RULES: [(&str, &str); 10] = [
    ("octetStringMatch", "2.5.13.17"),
    ("integerMatch", "2.5.13.14"),
    ("booleanMatch", "2.5.13.13"),
    ("bitStringMatch", "2.5.13.16"),
    ("objectIdentifierMatch", "2.5.13.0"),
    ("distinguishedNameMatch", "2.5.13.1"),
    ("uniqueMemberMatch", "2.5.13.23"),
    ("generalizedTimeMatch", "2.5.13.27"),
    ("uuidMatch", "1.3.6.1.1.16.2"),
    ("UUIDMatch", "1.3.6.1.1.16.2"),
];

const STRING_RULES: [(&str, &str, Matching); 7] = [
    ("caseIgnoreMatch", "2.5.13.2", Matching::CaseIgnore),
    (
        "caseIgnoreIA5Match",
        "1.3.6.1.4.1.1466.109.114.2",
        Matching::CaseIgnore,
    ),
    ("caseExactMatch", "2.5.13.5", Matching::CaseExact),
    (
        "caseExactIA5Match",
        "1.3.6.1.4.1.1466.109.114.1",
        Matching::CaseExact,
    ),
    ("numericStringMatch", "2.5.13.8", Matching::Numeric),
    ("telephoneNumberMatch", "2.5.13.20", Matching::Telephone),
    ("caseIgnoreListMatch", "2.5.13.11", Matching::CaseIgnore),
];

/// Syntaxes whose values AD (which names no EQUALITY) compares other than
/// case-insensitively.
const SYNTAXES: [(&str, Matching); 7] = [
    ("1.3.6.1.4.1.1466.115.121.1.50", Matching::Telephone),
    ("1.3.6.1.4.1.1466.115.121.1.36", Matching::Numeric),
    ("1.3.6.1.4.1.1466.115.121.1.40", Matching::Exact),
    ("1.3.6.1.4.1.1466.115.121.1.27", Matching::Exact),
    ("1.3.6.1.4.1.1466.115.121.1.7", Matching::Exact),
    ("1.3.6.1.4.1.1466.115.121.1.38", Matching::Exact),
    // AD's String(Case) (2.5.5.3): case-sensitive Unicode strings.
    ("1.2.840.113556.1.4.1362", Matching::CaseExact),
];

impl Matching {
    /// The rule an EQUALITY name or OID stands for (case-insensitive).
    /// An unknown rule is taken as caseIgnore: the common rule for
    /// identifiers, and one that reports rather than misses a collision
    /// in the usual case.
    pub fn from_rule(name_or_oid: &str) -> Matching {
        let r = name_or_oid.trim();
        if let Some((_, _, m)) = STRING_RULES
            .iter()
            .find(|(name, oid, _)| name.eq_ignore_ascii_case(r) || *oid == r)
        {
            return *m;
        }
        if EXACT_RULES
            .iter()
            .any(|(name, oid)| name.eq_ignore_ascii_case(r) || *oid == r)
        {
            return Matching::Exact;
        }
        Matching::CaseIgnore
    }

    /// The rule for an attribute whose type names no EQUALITY, by its
    /// SYNTAX OID (a `{length}` bound is ignored). Directory String,
    /// IA5, Printable and AD's Unicode strings, and anything unknown,
    /// compare as caseIgnore.
    pub fn from_syntax(oid: &str) -> Matching {
        let oid = oid.split('{').next().unwrap_or(oid).trim();
        SYNTAXES
            .iter()
            .find(|(s, _)| *s == oid)
            .map_or(Matching::CaseIgnore, |(_, m)| *m)
    }

    /// The rule's usual name, for reports.
    pub fn name(self) -> &'static str {
        match self {
            Matching::Exact => "octetStringMatch",
            Matching::CaseExact => "caseExactMatch",
            Matching::CaseIgnore => "caseIgnoreMatch",
            Matching::Numeric => "numericStringMatch",
            Matching::Telephone => "telephoneNumberMatch",
        }
    }

    /// True when every two values equal under `self` are equal under
    /// `other` too (`self` is the same rule or a finer one). Exact refines
    /// everything; caseExact refines the rest; caseIgnore and numeric
    /// each refine telephone, and neither refines the other.
    pub fn refines(self, other: Matching) -> bool {
        use Matching::*;
        match (self, other) {
            (a, b) if a == b => true,
            (Exact, _) => true,
            (CaseExact, _) => other != Exact,
            (CaseIgnore | Numeric, Telephone) => true,
            _ => false,
        }
    }

    /// The normal form of `value` under this rule: two values match exactly
    /// when their normal forms are equal.
    pub fn normalize(self, value: &str) -> String {
        if self == Matching::Exact {
            return value.to_owned();
        }
        let fold = matches!(self, Matching::CaseIgnore | Matching::Telephone);
        let mut out = String::with_capacity(value.len());
        // Pending space of a run, written before the next other character
        // (so runs collapse and trailing spaces vanish).
        let mut space = false;
        for c in value.chars().filter_map(map_character) {
            let insignificant = match self {
                Matching::Numeric => c == ' ',
                Matching::Telephone => c == ' ' || is_hyphen(c),
                _ => false,
            };
            if insignificant {
                continue;
            }
            if c == ' ' {
                space = !out.is_empty();
                continue;
            }
            if space {
                out.push(' ');
                space = false;
            }
            if fold {
                out.extend(c.to_lowercase());
            } else {
                out.push(c);
            }
        }
        out
    }
}

/// RFC 4518 §2.2 Map (and the fullwidth part of §2.3 NFKC): None for a
/// character mapped to nothing, SPACE for separators and line breaks.
fn map_character(c: char) -> Option<char> {
    let u = u32::from(c);
    let nothing = matches!(
        u,
        0x00AD
            | 0x1806
            | 0x034F
            | 0x180B..=0x180E
            | 0xFE00..=0xFE0F
            | 0xFFFC
            | 0x200B
            | 0x0000..=0x0008
            | 0x000E..=0x001F
            | 0x007F..=0x0084
            | 0x0086..=0x009F
            | 0x06DD
            | 0x070F
            | 0x200C..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2063
            | 0x206A..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    );
    if nothing {
        return None;
    }
    let space = matches!(
        u,
        0x0009..=0x000D
            | 0x0085
            | 0x00A0
            | 0x1680
            | 0x2000..=0x200A
            | 0x2028
            | 0x2029
            | 0x202F
            | 0x205F
            | 0x3000
    );
    if space {
        return Some(' ');
    }
    if (0xFF01..=0xFF5E).contains(&u) {
        // Fullwidth ASCII: NFKC maps U+FF01..U+FF5E to U+0021..U+007E.
        return char::from_u32(u - 0xFF01 + 0x21);
    }
    Some(c)
}

/// The hyphens RFC 4518 §2.6.1 removes from telephone numbers (after the
/// fullwidth hyphen-minus was mapped to U+002D).
fn is_hyphen(c: char) -> bool {
    matches!(
        c,
        '\u{002D}' | '\u{058A}' | '\u{2010}' | '\u{2011}' | '\u{2212}' | '\u{FE63}' | '\u{FF0D}'
    )
}

#[cfg(test)]
mod tests {
    use super::Matching::{self, *};

    fn same(m: Matching, a: &str, b: &str) -> bool {
        m.normalize(a) == m.normalize(b)
    }

    #[test]
    fn telephone_numbers_ignore_spaces_and_hyphens() {
        assert!(same(Telephone, "+86 139 0000 0009", "+8613900000009"));
        assert!(same(Telephone, "139-0000-0009", "13900000009"));
        assert!(same(Telephone, "139 - 0000 - 0009", "1390000 0009"));
        assert!(same(Telephone, "+1 800 FLOWERS", "+1800flowers"));
        assert_eq!(
            Telephone.normalize(" +86 139-0000\t0009 "),
            "+8613900000009"
        );
    }

    #[test]
    fn telephone_numbers_ignore_every_rfc4518_hyphen_and_separator() {
        for hyphen in [
            '\u{058A}', '\u{2010}', '\u{2011}', '\u{2212}', '\u{FE63}', '\u{FF0D}',
        ] {
            assert!(
                same(Telephone, &format!("139{hyphen}0009"), "1390009"),
                "{hyphen:?}"
            );
        }
        for space in ['\u{00A0}', '\u{3000}', '\u{2009}', '\u{202F}', '\n'] {
            assert!(same(Telephone, &format!("139{space}0009"), "1390009"));
        }
        // Soft hyphen and zero-width space are mapped to nothing.
        assert!(same(Telephone, "139\u{00AD}0009\u{200B}", "1390009"));
    }

    #[test]
    fn telephone_numbers_that_differ_stay_different() {
        assert!(!same(Telephone, "+86 139 0000 0009", "+86 139 0000 0008"));
        assert!(!same(Telephone, "+8613900000009", "8613900000009"));
        assert!(!same(Telephone, "(139) 0009", "139 0009"));
    }

    #[test]
    fn fullwidth_digits_are_ascii_digits() {
        assert!(same(Telephone, "１３９０００００００９", "13900000009"));
        assert!(same(CaseIgnore, "ＢＯＢ", "bob"));
        assert!(same(Numeric, "１２３", "123"));
    }

    #[test]
    fn case_ignore_folds_case_and_collapses_space_runs() {
        assert!(same(CaseIgnore, "  Bob   Smith ", "bob smith"));
        assert!(same(CaseIgnore, "Alice@Example.COM", "alice@example.com"));
        assert!(same(CaseIgnore, "bob\u{00A0}smith", "Bob Smith"));
        assert!(same(CaseIgnore, "ÉLODIE", "élodie"));
        assert_eq!(CaseIgnore.normalize("  Bob   Smith "), "bob smith");
        assert_eq!(CaseIgnore.normalize("   "), "");
    }

    #[test]
    fn case_ignore_keeps_inner_space_and_hyphens_significant() {
        assert!(!same(CaseIgnore, "bobsmith", "bob smith"));
        assert!(!same(CaseIgnore, "bob-smith", "bob smith"));
        assert!(!same(CaseIgnore, "+86 139", "+86139"));
    }

    #[test]
    fn case_exact_handles_spaces_only() {
        assert!(same(CaseExact, "  Bob   Smith ", "Bob Smith"));
        assert!(!same(CaseExact, "Bob Smith", "bob smith"));
    }

    #[test]
    fn numeric_strings_ignore_every_space() {
        assert!(same(Numeric, "1 234 567", "1234567"));
        assert!(same(Numeric, " 12  34 ", "1234"));
        assert!(!same(Numeric, "1-234", "1234"));
        assert!(!same(Numeric, "1234", "12345"));
    }

    #[test]
    fn exact_compares_as_stored() {
        assert!(!same(Exact, "a ", "a"));
        assert!(!same(Exact, "A", "a"));
        assert_eq!(Exact.normalize(" x\u{00AD}"), " x\u{00AD}");
    }

    #[test]
    fn rules_by_name_and_oid() {
        for (rule, want) in [
            ("telephoneNumberMatch", Telephone),
            ("TELEPHONENUMBERMATCH", Telephone),
            ("2.5.13.20", Telephone),
            ("caseIgnoreIA5Match", CaseIgnore),
            ("1.3.6.1.4.1.1466.109.114.2", CaseIgnore),
            ("caseExactMatch", CaseExact),
            ("caseExactIA5Match", CaseExact),
            ("numericStringMatch", Numeric),
            ("2.5.13.8", Numeric),
            ("octetStringMatch", Exact),
            ("integerMatch", Exact),
            ("UUIDMatch", Exact),
            ("someVendorMatch", CaseIgnore),
        ] {
            assert_eq!(Matching::from_rule(rule), want, "{rule}");
        }
    }

    #[test]
    fn rules_by_syntax_for_ad() {
        for (syntax, want) in [
            ("1.3.6.1.4.1.1466.115.121.1.50", Telephone),
            ("1.3.6.1.4.1.1466.115.121.1.50{32}", Telephone),
            ("1.3.6.1.4.1.1466.115.121.1.36", Numeric),
            ("1.3.6.1.4.1.1466.115.121.1.15", CaseIgnore),
            ("1.2.840.113556.1.4.905", CaseIgnore),
            ("1.2.840.113556.1.4.1362", CaseExact),
            ("1.3.6.1.4.1.1466.115.121.1.40", Exact),
            ("9.9.9", CaseIgnore),
        ] {
            assert_eq!(Matching::from_syntax(syntax), want, "{syntax}");
        }
    }

    /// `refines` must agree with the normalisers: wherever a finer rule
    /// finds two sample values equal, the coarser one does too.
    #[test]
    fn refinement_agrees_with_normal_forms() {
        let all = [Exact, CaseExact, CaseIgnore, Numeric, Telephone];
        let samples = [
            "13900000009",
            "139 0000 0009",
            "139  0000 0009 ",
            "139-0000-0009",
            "Bob Smith",
            "bob smith",
            " bob  smith",
            "BOBSMITH",
            "bobsmith",
            "1 2",
            "12",
        ];
        for fine in all {
            for coarse in all {
                if !fine.refines(coarse) {
                    continue;
                }
                for a in samples {
                    for b in samples {
                        if same(fine, a, b) {
                            assert!(same(coarse, a, b), "{fine:?} {coarse:?} {a:?} {b:?}");
                        }
                    }
                }
            }
        }
        assert!(!CaseIgnore.refines(Numeric));
        assert!(!Numeric.refines(CaseIgnore));
        assert!(!Telephone.refines(CaseIgnore));
        assert!(CaseIgnore.refines(Telephone));
    }
}

//! DN parsing and containment: `Dn::parse` (the built-in comparison) and
//! `DnSchema::parse` (a directory's schema), `is_within`, `parent`,
//! `ancestor`, `key`, `parent_text`, on two DNs from the input.
#![no_main]

use std::sync::OnceLock;

use ldapgate::ldap::dn::{parent_text, Dn};
use ldapgate::ldap::dn_schema::DnSchema;
use libfuzzer_sys::fuzz_target;

#[path = "common/mod.rs"]
mod common;

fn schemas() -> &'static [DnSchema; 2] {
    static S: OnceLock<[DnSchema; 2]> = OnceLock::new();
    S.get_or_init(|| [DnSchema::built_in(), common::dn_schema()])
}

fuzz_target!(|data: &[u8]| {
    // Two DNs, apart at the first NUL (which no DN string holds).
    let (a, b) = match data.iter().position(|c| *c == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    for (i, schema) in schemas().iter().enumerate() {
        let built_in = i == 0;
        let da = schema.from_bytes(a);
        if built_in {
            assert_eq!(
                da,
                Dn::from_bytes(a),
                "built-in DnSchema parses as Dn::parse"
            );
        } else {
            // The schema changes how values compare, never what parses.
            assert_eq!(da.is_ok(), Dn::from_bytes(a).is_ok());
        }
        let Ok(da) = da else { continue };
        one(schema, &da, built_in);
        let Ok(db) = schema.from_bytes(b) else {
            continue;
        };
        one(schema, &db, built_in);
        two(&da, &db);
        two(&db, &da);
    }
});

fn one(schema: &DnSchema, dn: &Dn, built_in: bool) {
    assert!(dn.is_within(dn), "containment is reflexive");
    assert_eq!(schema.parse(dn.as_str()).as_ref(), Ok(dn));
    assert_eq!(schema.renormalise(dn).as_ref(), Ok(dn));
    // The key names the DN: it parses back to it, unless a value holds a
    // `;` (a separator of RFC 2253 that keys do not escape, so such a key
    // does not parse at all).
    let key = dn.key();
    match schema.parse(&key) {
        Ok(again) => {
            assert_eq!(&again, dn, "key {key:?}");
            assert_eq!(again.key(), key);
        }
        Err(e) => assert!(key.contains(';'), "key {key:?} of {dn:?}: {e}"),
    }
    let _ = dn.leaf_text();
    let _ = (dn.leaf_is("cn", "subschema"), dn.to_string());
    assert_eq!(dn.is_root(), dn.depth() == 0);
    assert!(dn.ancestor(dn.depth()).is_some_and(|r| r.is_root()));
    assert!(dn.ancestor(dn.depth() + 1).is_none());
    match dn.parent() {
        None => assert!(dn.is_root()),
        Some(p) => {
            assert_eq!(p.depth() + 1, dn.depth());
            assert!(dn.is_within(&p));
            assert!(!p.is_within(dn));
            // The parent's text is a DN of its own, the same one.
            assert_eq!(schema.parse(p.as_str()).as_ref(), Ok(&p));
            if built_in && dn.depth() >= 2 {
                let text = parent_text(dn.as_str()).expect("a parent's text");
                assert_eq!(Dn::parse(text).as_ref(), Ok(&p));
            }
        }
    }
}

/// Containment between two DNs parsed the same way.
fn two(a: &Dn, b: &Dn) {
    assert_eq!(a == b, a.key() == b.key(), "equal DNs have equal keys");
    if a.is_within(b) {
        assert!(a.depth() >= b.depth());
        assert_eq!(a.ancestor(a.depth() - b.depth()).as_ref(), Some(b));
        if b.is_within(a) {
            assert_eq!(a, b, "containment is antisymmetric");
        }
        if let Some(p) = a.parent() {
            assert!(p.is_within(b) || a == b, "transitive through the parent");
        }
    }
}

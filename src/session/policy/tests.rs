//! The policy's decisions, request by request.

use super::*;
use crate::ldap::dn_schema::DnSchema;
use crate::ldap::request::BindRequest;
use crate::ldap::schema::Schema;

fn policy() -> Policy {
    policy_in("ou=people,dc=example,dc=com")
}

fn policy_in(base_dn: &str) -> Policy {
    Policy {
        dn_scope: SharedDnScope::new(DnScope::built_in(
            Dn::parse(base_dn).unwrap(),
            Some(Dn::parse("cn=admin,dc=example,dc=com").unwrap()),
        )),
        read_only: false,
        require_tls: false,
        upstream_encrypted: true,
        rewrite_signin: false,
    }
}

fn bind<'a>(name: &'a str, pw: &'a str) -> Request<'a> {
    Request::Bind(BindRequest {
        version: 3,
        name: name.as_bytes(),
        auth: BindAuth::Simple(pw.as_bytes()),
    })
}

fn code(v: Verdict) -> Option<LdapResultCode> {
    match v {
        Verdict::Refuse { code, .. } | Verdict::RefuseBind { code, .. } => Some(code),
        _ => None,
    }
}

#[test]
fn binds() {
    let p = policy();
    assert_eq!(p.decide(&bind("", ""), false), Verdict::Forward);
    assert_eq!(
        p.decide(&bind("uid=a,ou=people,dc=example,dc=com", "pw"), false),
        Verdict::Forward
    );
    assert_eq!(
        p.decide(&bind("cn=admin,dc=example,dc=com", "pw"), false),
        Verdict::Forward
    );
    assert!(matches!(
        p.decide(&bind("uid=a,ou=people,dc=example,dc=com", ""), false),
        Verdict::RefuseBind {
            code: LdapResultCode::InvalidCredentials,
            ..
        }
    ));
    assert_eq!(
        code(p.decide(&bind("cn=other,dc=example,dc=com", "pw"), false)),
        Some(LdapResultCode::InsufficentAccessRights)
    );
    assert_eq!(
        code(p.decide(&bind("alice", "pw"), false)),
        Some(LdapResultCode::InvalidDNSyntax)
    );
    let mut rewriting = policy();
    rewriting.rewrite_signin = true;
    assert_eq!(
        rewriting.decide(&bind("alice", "pw"), false),
        Verdict::ResolveBind
    );
    assert_eq!(
        rewriting.decide(&bind("+8613800000001", "pw"), false),
        Verdict::ResolveBind
    );
    // An empty password is refused before anything is resolved.
    assert!(matches!(
        rewriting.decide(&bind("alice", ""), false),
        Verdict::RefuseBind {
            code: LdapResultCode::InvalidCredentials,
            ..
        }
    ));
    let sasl = Request::Bind(BindRequest {
        version: 3,
        name: b"",
        auth: BindAuth::Sasl(b"EXTERNAL"),
    });
    assert_eq!(
        code(p.decide(&sasl, true)),
        Some(LdapResultCode::AuthMethodNotSupported)
    );
    // LDAPv2 is answered here: it never tests a password upstream.
    let v2 = Request::Bind(BindRequest {
        version: 2,
        name: b"uid=a,ou=people,dc=example,dc=com",
        auth: BindAuth::Simple(b"pw"),
    });
    assert_eq!(
        code(p.decide(&v2, false)),
        Some(LdapResultCode::ProtocolError)
    );
}

#[test]
fn searches_are_scoped_but_root_dse_and_schema_stay_readable() {
    let p = policy();
    let search = |base: &'static str, scope| Request::Search {
        base: base.as_bytes(),
        scope,
        derefs_aliases: false,
    };
    assert_eq!(p.decide(&search("", Scope::Base), false), Verdict::Forward);
    assert_eq!(
        p.decide(&search("cn=Subschema", Scope::Base), false),
        Verdict::Forward
    );
    assert_eq!(
        p.decide(
            &search(
                "CN=Aggregate,CN=Schema,CN=Configuration,DC=ad,DC=example",
                Scope::Base
            ),
            false
        ),
        Verdict::Forward
    );
    assert_eq!(
        code(p.decide(&search("", Scope::Subtree), false)),
        Some(LdapResultCode::InsufficentAccessRights)
    );
    assert_eq!(
        code(p.decide(&search("dc=example,dc=com", Scope::Subtree), false)),
        Some(LdapResultCode::InsufficentAccessRights)
    );
    assert_eq!(
        p.decide(
            &search("ou=People,DC=example,dc=com", Scope::Subtree),
            false
        ),
        Verdict::Forward
    );
    assert_eq!(
        code(p.decide(&search("not a dn", Scope::Base), false)),
        Some(LdapResultCode::InvalidDNSyntax)
    );
}

#[test]
fn writes_obey_read_only_scope_and_password_rules() {
    let mut p = policy();
    let inside = b"uid=a,ou=people,dc=example,dc=com".as_slice();
    let modify = |pw| Request::Modify {
        object: inside,
        writes_password: pw,
    };
    assert_eq!(p.decide(&modify(false), false), Verdict::Forward);
    assert_eq!(
        code(p.decide(&modify(true), false)),
        Some(LdapResultCode::ConfidentialityRequired)
    );
    assert_eq!(p.decide(&modify(true), true), Verdict::Forward);
    p.upstream_encrypted = false;
    assert_eq!(
        code(p.decide(&modify(true), true)),
        Some(LdapResultCode::ConfidentialityRequired)
    );
    let pwmod = Request::Extended {
        oid: oid::PASSWORD_MODIFY.as_bytes(),
        value: None,
    };
    assert_eq!(
        code(p.decide(&pwmod, true)),
        Some(LdapResultCode::ConfidentialityRequired)
    );
    p.upstream_encrypted = true;
    assert_eq!(p.decide(&pwmod, true), Verdict::Forward);
    p.read_only = true;
    assert_eq!(
        code(p.decide(&modify(false), true)),
        Some(LdapResultCode::UnwillingToPerform)
    );
    assert_eq!(
        code(p.decide(&Request::Delete { entry: inside }, true)),
        Some(LdapResultCode::UnwillingToPerform)
    );
    assert_eq!(
        code(p.decide(&pwmod, true)),
        Some(LdapResultCode::UnwillingToPerform)
    );
    let whoami = Request::Extended {
        oid: oid::WHO_AM_I.as_bytes(),
        value: None,
    };
    assert_eq!(p.decide(&whoami, true), Verdict::Forward);
}

#[test]
fn password_modify_identity_must_be_in_scope() {
    let p = policy();
    let req = |identity: &[u8]| {
        let mut v = vec![0x30, (identity.len() + 2) as u8, 0x80, identity.len() as u8];
        v.extend_from_slice(identity);
        v
    };
    let inside = req(b"dn:uid=a,ou=people,dc=example,dc=com");
    let outside = req(b"cn=admin,dc=example,dc=com");
    let authz = req(b"u:alice");
    let ext = |v: &[u8]| {
        p.decide(
            &Request::Extended {
                oid: oid::PASSWORD_MODIFY.as_bytes(),
                value: Some(v),
            },
            true,
        )
    };
    assert_eq!(ext(&inside), Verdict::Forward);
    assert_eq!(
        code(ext(&outside)),
        Some(LdapResultCode::InsufficentAccessRights)
    );
    assert_eq!(code(ext(&authz)), Some(LdapResultCode::UnwillingToPerform));
    assert_eq!(code(ext(b"\x04\x00")), Some(LdapResultCode::ProtocolError));
}

#[test]
fn moves_must_stay_inside_base_dn() {
    let p = policy();
    let mv = |entry: &'static str, sup: Option<&'static str>| Request::ModifyDn {
        entry: entry.as_bytes(),
        new_superior: sup.map(str::as_bytes),
    };
    assert_eq!(
        p.decide(&mv("uid=a,ou=people,dc=example,dc=com", None), false),
        Verdict::Forward
    );
    assert_eq!(
        code(p.decide(
            &mv(
                "uid=a,ou=people,dc=example,dc=com",
                Some("dc=example,dc=com")
            ),
            false
        )),
        Some(LdapResultCode::InsufficentAccessRights)
    );
    assert_eq!(
        code(p.decide(&mv("ou=people,dc=example,dc=com", None), false)),
        Some(LdapResultCode::InsufficentAccessRights)
    );
}

#[test]
fn require_tls_allows_only_starttls_before_tls() {
    let mut p = policy();
    p.require_tls = true;
    let starttls = Request::Extended {
        oid: oid::START_TLS.as_bytes(),
        value: None,
    };
    assert_eq!(p.decide(&starttls, false), Verdict::StartTls);
    assert!(matches!(
        p.decide(&bind("", ""), false),
        Verdict::RefuseBind {
            code: LdapResultCode::ConfidentialityRequired,
            ..
        }
    ));
    assert_eq!(p.decide(&bind("", ""), true), Verdict::Forward);
    assert_eq!(p.decide(&Request::Unbind, false), Verdict::Unbind);
}

/// A site schema: a case-exact type and a numeric-string one, each with an
/// alias the built-in table does not know.
fn site_schema() -> DnSchema {
    let (schema, errors) = Schema::parse([
        "( 0.9.2342.19200300.100.1.25 NAME ( 'dc' 'domainComponent' ) \
         EQUALITY caseIgnoreIA5Match SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 )",
        "( 0.9.2342.19200300.100.1.1 NAME ( 'uid' 'userid' ) EQUALITY caseIgnoreMatch \
         SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )",
        "( 1.3.6.1.4.1.32473.1.1 NAME ( 'gateTeam' 'gateTeamName' ) \
         EQUALITY caseExactMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )",
        "( 1.3.6.1.4.1.32473.1.2 NAME ( 'gateUnit' 'gateUnitNumber' ) \
         EQUALITY numericStringMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.36 )",
    ]);
    assert!(errors.is_empty(), "{errors:?}");
    DnSchema::from_schema(&schema)
}

#[test]
fn a_schema_read_later_decides_scope_from_then_on() {
    let p = policy_in("gateTeam=Blue,dc=example,dc=com");
    let search = |base: &'static str| Request::Search {
        base: base.as_bytes(),
        scope: Scope::Subtree,
        derefs_aliases: true,
    };
    let alias = search("gateTeamName=Blue,dc=example,dc=com");
    let other_case = search("gateTeam=blue,dc=example,dc=com");
    // Built in: the alias is another type, the case is ignored.
    assert_eq!(
        code(p.decide(&alias, false)),
        Some(LdapResultCode::InsufficentAccessRights)
    );
    assert_eq!(p.decide(&other_case, false), Verdict::Forward);
    p.dn_scope.set_schema(site_schema()).unwrap();
    assert_eq!(p.decide(&alias, false), Verdict::Forward);
    assert_eq!(
        p.decide(
            &search("1.3.6.1.4.1.32473.1.1=Blue,DC=example,dc=com"),
            false
        ),
        Verdict::Forward
    );
    assert_eq!(
        code(p.decide(&other_case, false)),
        Some(LdapResultCode::InsufficentAccessRights)
    );
    assert_eq!(
        p.decide(
            &bind("uid=erin,gateTeamName=Blue,dc=example,dc=com", "pw"),
            false
        ),
        Verdict::Forward
    );
    assert_eq!(
        code(p.decide(
            &bind("uid=erin,gateTeam=blue,dc=example,dc=com", "pw"),
            false
        )),
        Some(LdapResultCode::InsufficentAccessRights)
    );
    // The service account is compared under the same schema.
    assert_eq!(
        p.decide(
            &bind("CN=Admin,domainComponent=example,dc=com", "pw"),
            false
        ),
        Verdict::Forward
    );
    let mv = Request::ModifyDn {
        entry: b"uid=erin,gateTeam=Blue,dc=example,dc=com",
        new_superior: Some(b"gateTeam=blue,dc=example,dc=com"),
    };
    assert_eq!(
        code(p.decide(&mv, false)),
        Some(LdapResultCode::InsufficentAccessRights)
    );
}

#[test]
fn numeric_string_values_compare_without_spaces() {
    let p = policy_in("gateUnit=1234,dc=example,dc=com");
    p.dn_scope.set_schema(site_schema()).unwrap();
    for inside in [
        "gateUnitNumber=12 34,dc=example,dc=com",
        "uid=frank,gateUnit=1 2 3 4,dc=example,dc=com",
    ] {
        let req = Request::Compare {
            entry: inside.as_bytes(),
        };
        assert_eq!(p.decide(&req, false), Verdict::Forward, "{inside}");
    }
    let req = Request::Compare {
        entry: b"gateUnit=12345,dc=example,dc=com",
    };
    assert_eq!(
        code(p.decide(&req, false)),
        Some(LdapResultCode::InsufficentAccessRights)
    );
}

#[test]
fn entries_answered_are_held_by_base_dn_however_written() {
    let scope = policy().dn_scope.current();
    for inside in [
        "ou=people,dc=example,dc=com",
        "uid=alice,ou=people,dc=example,dc=com",
        "uid=a\\\\,ou=people,dc=example,dc=com",
        "UID=Alice, OU=People, DC=Example, DC=Com",
        "uid=alice,organizationalUnitName=people,dc=example,dc=com",
    ] {
        assert!(scope.holds(inside.as_bytes()), "{inside}");
    }
    for outside in [
        "cn=admin,dc=example,dc=com",
        "dc=example,dc=com",
        "",
        "uid=x,ou=peoplex,dc=example,dc=com",
        "uid=x,xou=people,dc=example,dc=com",
        // The comma before the base is escaped: one RDN value, not a parent.
        "cn=a\\,ou=people,dc=example,dc=com",
        "not a dn",
    ] {
        assert!(!scope.holds(outside.as_bytes()), "{outside}");
    }
}

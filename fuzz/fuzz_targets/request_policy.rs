//! Request parsing and the policy decision: a client PDU framed as the
//! session frames it, read by `request::parse`, decided by
//! `Policy::decide` under a policy built from a small configuration.
#![no_main]

use std::sync::OnceLock;

use ldap3_proto::proto::LdapResultCode;
use ldapgate::ber;
use ldapgate::ldap::oid;
use ldapgate::ldap::request::{self, BindAuth, Request};
use ldapgate::session::policy::{Policy, Verdict, MAX_BIND_NAME_BYTES};
use libfuzzer_sys::fuzz_target;

#[path = "common/mod.rs"]
mod common;

/// Policies by base DN, built-in DN comparison and the directory's schema.
fn policies() -> &'static [Policy; 3] {
    static P: OnceLock<[Policy; 3]> = OnceLock::new();
    P.get_or_init(|| {
        let schema = common::policy("ou=people,dc=example,dc=com", false);
        schema.dn_scope.set_schema(common::dn_schema()).unwrap();
        [
            common::policy("ou=people,dc=example,dc=com", false),
            common::policy("dc=example,dc=com", true),
            schema,
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, pdu)) = data.split_first() else {
        return;
    };
    let mut policy = policies()[usize::from(flags >> 5) % 3].clone();
    policy.read_only = flags & 1 != 0;
    policy.require_tls = flags & 2 != 0;
    policy.upstream_encrypted = flags & 4 != 0;
    policy.rewrite_signin = flags & 8 != 0;
    let client_tls = flags & 16 != 0;

    // The session parses only what frames as one PDU.
    let Ok(header) = ber::peek_pdu(pdu, 1 << 20) else {
        return;
    };
    let pdu = &pdu[..header.len];
    let _ = request::first_critical_control(pdu, &["1.3.6.1.4.1.42.2.27.8.5.1"]);
    let _ = request::is_persistent_search(pdu);
    let _ = request::has_control(pdu, oid::SYNC_REQUEST);
    let Ok(req) = request::parse(pdu) else {
        return;
    };
    assert!(!req.name().is_empty());
    let verdict = policy.decide(&req, client_tls);
    assert_eq!(verdict, policy.decide(&req, client_tls), "deterministic");
    check(&policy, &req, client_tls, &verdict);
});

fn refused_with(verdict: &Verdict) -> Option<LdapResultCode> {
    match verdict {
        Verdict::Refuse { code, .. } | Verdict::RefuseBind { code, .. } => Some(code.clone()),
        _ => None,
    }
}

fn check(policy: &Policy, req: &Request<'_>, client_tls: bool, verdict: &Verdict) {
    // What the session handles itself, whatever the rest of the policy.
    match req {
        Request::Extended { oid: o, .. } if *o == oid::START_TLS.as_bytes() => {
            assert_eq!(*verdict, Verdict::StartTls);
            return;
        }
        Request::Unbind => {
            assert_eq!(*verdict, Verdict::Unbind);
            return;
        }
        Request::Abandon { .. } => {
            assert_eq!(*verdict, Verdict::Forward);
            return;
        }
        _ => {}
    }
    assert!(!matches!(verdict, Verdict::StartTls | Verdict::Unbind));
    if policy.require_tls && !client_tls {
        assert_eq!(
            refused_with(verdict),
            Some(LdapResultCode::ConfidentialityRequired),
            "{req:?} over plain LDAP with require_tls: {verdict:?}"
        );
    }
    let forwarded = *verdict == Verdict::Forward;
    let both_encrypted = client_tls && policy.upstream_encrypted;
    let scope = policy.dn_scope.current();
    // A bind is answered as a bind (the upstream connection is made
    // anonymous); nothing else is.
    if let Request::Bind(bind) = req {
        assert!(!matches!(verdict, Verdict::Refuse { .. }), "{verdict:?}");
        if *verdict == Verdict::ResolveBind {
            assert!(policy.rewrite_signin);
            assert!(scope.parse(bind.name).is_err());
        }
        if forwarded && !bind.name.is_empty() {
            // RFC 4513 §5.1.2: never an unauthenticated bind; only simple
            // binds, by a DN in scope or the service account's.
            let BindAuth::Simple(password) = bind.auth else {
                panic!("a {:?} bind was forwarded", bind.auth);
            };
            assert!(!password.is_empty(), "unauthenticated bind forwarded");
            assert!(bind.name.len() <= MAX_BIND_NAME_BYTES);
            assert_eq!(bind.version, 3);
            let dn = scope.parse(bind.name).expect("a forwarded bind names a DN");
            assert!(scope.contains(&dn) || scope.is_service_account(&dn));
        }
        return;
    }
    assert!(
        !matches!(verdict, Verdict::RefuseBind { .. } | Verdict::ResolveBind),
        "{req:?}: {verdict:?}"
    );
    if !forwarded {
        return;
    }
    let in_scope = |dn: &[u8]| {
        let dn = scope.parse(dn).expect("a forwarded request names a DN");
        assert!(scope.contains(&dn), "{dn:?} is outside base_dn");
    };
    match *req {
        Request::Search { base, .. } => {
            // The root DSE and the subschema entry are read outside base_dn.
            let dn = scope.parse(base).expect("a forwarded search names a DN");
            let _ = dn;
        }
        Request::Compare { entry } => in_scope(entry),
        Request::Modify {
            object: entry,
            writes_password,
        }
        | Request::Add {
            entry,
            writes_password,
        } => {
            assert!(!policy.read_only);
            assert!(
                !writes_password || both_encrypted,
                "password write in clear"
            );
            in_scope(entry);
        }
        Request::Delete { entry } => {
            assert!(!policy.read_only);
            in_scope(entry);
        }
        Request::ModifyDn {
            entry,
            new_superior,
        } => {
            assert!(!policy.read_only);
            in_scope(entry);
            // The entry stays inside base_dn: its new parent is inside.
            match new_superior {
                Some(superior) => in_scope(superior),
                None => {
                    let parent = scope.parse(entry).ok().and_then(|dn| dn.parent());
                    assert!(parent.is_some_and(|p| scope.contains(&p)));
                }
            }
        }
        Request::Extended { oid: o, .. } => {
            if o == oid::PASSWORD_MODIFY.as_bytes() {
                assert!(!policy.read_only);
                assert!(both_encrypted, "Password Modify in clear");
            } else if o != oid::WHO_AM_I.as_bytes() && o != oid::CANCEL.as_bytes() {
                assert!(!policy.read_only, "an unknown extended operation may write");
            }
        }
        Request::Bind(_) | Request::Unbind | Request::Abandon { .. } => unreachable!(),
    }
}

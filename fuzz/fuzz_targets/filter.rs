//! Filters. ldapgate parses no RFC 4515 filter text and never decodes a
//! client's filter: it builds its own from typed parts and forwards the
//! client's byte for byte. So this target holds both to that:
//! - the sign-in filter built around an arbitrary login, encoded as the
//!   resolver sends it, decodes to the same filter (no login can change
//!   its structure) and frames and parses as the search it is;
//! - a SearchRequest carrying arbitrary filter bytes reads as the same
//!   search, gets the same policy verdict, whatever those bytes are.
#![no_main]

use std::sync::OnceLock;

use bytes::BytesMut;
use ldap3_proto::proto::{
    LdapDerefAliases, LdapFilter, LdapMsg, LdapOp, LdapSearchRequest, LdapSearchScope,
};
use ldap3_proto::LdapCodec;
use ldapgate::auth::accounts::AccountClasses;
use ldapgate::auth::resolver::signin_filter;
use ldapgate::ber;
use ldapgate::config::DirectoryKind;
use ldapgate::ldap::request::{self, Request, Scope};
use ldapgate::ldap::response;
use ldapgate::session::policy::Policy;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

#[path = "common/mod.rs"]
mod common;

const BASE: &str = "ou=people,dc=example,dc=com";
const KINDS: [DirectoryKind; 4] = [
    DirectoryKind::OpenLdap,
    DirectoryKind::ActiveDirectory,
    DirectoryKind::Ds389,
    DirectoryKind::Generic,
];

fn policy() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| common::policy(BASE, false))
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, data)) = data.split_first() else {
        return;
    };
    let (login, raw_filter) = match data.iter().position(|c| *c == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    signin(
        KINDS[usize::from(pick) % KINDS.len()],
        &String::from_utf8_lossy(login),
    );
    forwarded(raw_filter, usize::from(pick >> 2) % 3);
});

fn signin(kind: DirectoryKind, login: &str) {
    let attributes = ["uid", "mobile", "mail", "employeeNumber"].map(String::from);
    let classes = AccountClasses::new(kind, vec!["inetOrgPerson".into()]);
    let filter = signin_filter(&classes, &attributes, login);
    let LdapFilter::And(parts) = &filter else {
        panic!("{filter:?}");
    };
    assert_eq!(
        parts[1],
        LdapFilter::Or(
            attributes
                .iter()
                .map(|a| LdapFilter::Equality(a.clone(), login.to_owned()))
                .collect()
        )
    );
    let pdu = response::encode(LdapMsg::new(
        5,
        LdapOp::SearchRequest(LdapSearchRequest {
            base: BASE.into(),
            scope: LdapSearchScope::Subtree,
            aliases: LdapDerefAliases::Never,
            sizelimit: 2,
            timelimit: 10,
            typesonly: false,
            filter: filter.clone(),
            attrs: vec!["entryUUID".into()],
        }),
    ));
    let h = ber::peek_pdu(&pdu, 1 << 20).expect("the resolver's search frames");
    assert_eq!((h.len, h.msgid), (pdu.len(), 5));
    assert_eq!(
        request::parse(&pdu),
        Ok(Request::Search {
            base: BASE.as_bytes(),
            scope: Scope::Subtree,
            derefs_aliases: false,
        })
    );
    let mut buf = BytesMut::from(&pdu[..]);
    let msg = LdapCodec::new(Some(1 << 20), None)
        .decode(&mut buf)
        .expect("the resolver's search decodes")
        .expect("whole");
    let LdapOp::SearchRequest(search) = msg.op else {
        panic!("{:?}", msg.op);
    };
    assert_eq!(search.filter, filter, "the login changed the filter");
}

/// A client's SearchRequest with `filter` in place of its filter.
fn search_with(base: &str, scope: u8, filter: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    ber::push_tlv(&mut body, 0x04, base.as_bytes());
    ber::push_tlv(&mut body, 0x0a, &[scope]);
    ber::push_tlv(&mut body, 0x0a, &[0]); // derefAliases
    ber::push_tlv(&mut body, 0x02, &[0]); // sizeLimit
    ber::push_tlv(&mut body, 0x02, &[0]); // timeLimit
    ber::push_tlv(&mut body, 0x01, &[0]); // typesOnly
    body.extend_from_slice(filter);
    ber::push_tlv(&mut body, 0x30, &[]); // attributes
    let mut msg = Vec::new();
    ber::push_tlv(&mut msg, 0x02, &[7]);
    ber::push_tlv(&mut msg, 0x63, &body);
    let mut pdu = Vec::new();
    ber::push_tlv(&mut pdu, 0x30, &msg);
    pdu
}

fn forwarded(filter: &[u8], which: usize) {
    let base = ["", BASE, "cn=other,dc=example,dc=com"][which];
    let pdu = search_with(base, 2, filter);
    let plain = search_with(base, 2, b"\x87\x0bobjectClass");
    let h = ber::peek_pdu(&pdu, usize::MAX).expect("frames whatever the filter");
    assert_eq!(h.len, pdu.len());
    let req = request::parse(&pdu).expect("the filter is never decoded");
    assert_eq!(
        req,
        Request::Search {
            base: base.as_bytes(),
            scope: Scope::Subtree,
            derefs_aliases: false,
        }
    );
    let plain = request::parse(&plain).unwrap();
    for tls in [false, true] {
        assert_eq!(policy().decide(&req, tls), policy().decide(&plain, tls));
    }
    let _ = request::is_persistent_search(&pdu);
}

//! Every LDAP operation through ldapgate against a real slapd, with the
//! `ldap3` crate and the OpenLDAP command-line tools as clients.

mod common;

use common::*;
use ldap3::controls::{Control, ControlType, MakeCritical, PagedResults};
use ldap3::exop::{PasswordModify, WhoAmI, WhoAmIResp};
use ldap3::{Mod, Scope, SearchEntry};
use std::collections::HashSet;

fn setup() -> (Slapd, Proxy) {
    let slapd = Slapd::start();
    let proxy = Proxy::start(ProxyConfig::ldaps(&slapd));
    (slapd, proxy)
}

#[tokio::test]
async fn binds_right_wrong_empty_and_anonymous() {
    let (_slapd, mut proxy) = setup();
    let mut ldap = connect(&proxy.ldap_url(), None, false).await;
    let alice = format!("uid=alice,ou=people,{BASE_DN}");

    let ok = ldap.simple_bind(&alice, "alice-pw").await.unwrap();
    assert_eq!(ok.rc, 0, "right password: {ok:?}");
    let who = ldap.extended(WhoAmI).await.unwrap().0.parse::<WhoAmIResp>();
    assert_eq!(who.authzid, format!("dn:{alice}"));

    let wrong = ldap.simple_bind(&alice, "not-her-password").await.unwrap();
    assert_eq!(wrong.rc, 49, "wrong password: {wrong:?}");

    // RFC 4513 §5.1.2: refused by ldapgate, and the connection is anonymous
    // afterwards, as after any failed bind.
    ldap.simple_bind(&alice, "alice-pw").await.unwrap().success().unwrap();
    let empty = ldap.simple_bind(&alice, "").await.unwrap();
    assert_eq!(empty.rc, 49, "empty password: {empty:?}");
    assert!(empty.text.contains("empty password"), "{empty:?}");
    let who = ldap.extended(WhoAmI).await.unwrap().0.parse::<WhoAmIResp>();
    assert_eq!(who.authzid, "", "identity must be dropped after a refused bind");

    let anon = ldap.simple_bind("", "").await.unwrap();
    assert_eq!(anon.rc, 0);
    ldap.unbind().await.unwrap();

    // The same with the OpenLDAP tools.
    let out = ldap_tool(
        "ldapwhoami",
        &proxy.certs.ca_pem,
        &["-x", "-H", &proxy.ldap_url(), "-D", &alice, "-w", "alice-pw"],
        None,
    );
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("dn:{alice}"));
    let out = ldap_tool(
        "ldapwhoami",
        &proxy.certs.ca_pem,
        &["-x", "-H", &proxy.ldap_url(), "-D", &alice, "-w", "wrong"],
        None,
    );
    assert_eq!(out.status.code(), Some(49), "{}", show(&out));
    proxy.assert_alive();
}

#[tokio::test]
async fn subtree_and_base_searches() {
    let (_slapd, proxy) = setup();
    let mut ldap = connect(&proxy.ldap_url(), None, false).await;
    let (entries, res) = ldap
        .search(
            &format!("ou=people,{BASE_DN}"),
            Scope::Subtree,
            "(objectClass=inetOrgPerson)",
            vec!["uid"],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
    assert_eq!(res.rc, 0);
    assert_eq!(entries.len(), 3 + GENERATED_USERS);

    let (entries, _) = ldap
        .search(
            &format!("uid=bob,ou=people,{BASE_DN}"),
            Scope::Base,
            "(objectClass=*)",
            vec!["cn", "mail"],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
    let bob = SearchEntry::construct(entries[0].clone());
    assert_eq!(bob.attrs["cn"], vec!["Bob Builder"]);
    assert_eq!(bob.attrs["mail"], vec!["bob@example.com"]);

    // Root DSE stays readable; searching above base_dn is refused.
    let (entries, _) = ldap
        .search("", Scope::Base, "(objectClass=*)", vec!["namingContexts"])
        .await
        .unwrap()
        .success()
        .unwrap();
    let root = SearchEntry::construct(entries[0].clone());
    assert_eq!(root.attrs["namingContexts"], vec![BASE_DN]);
    let above = ldap
        .search("dc=com", Scope::Subtree, "(objectClass=*)", vec!["1.1"])
        .await
        .unwrap();
    assert_eq!(above.1.rc, 50, "{:?}", above.1);

    // ldapsearch agrees.
    let out = ldap_tool(
        "ldapsearch",
        &proxy.certs.ca_pem,
        &[
            "-x", "-LLL", "-H", &proxy.ldap_url(), "-b", BASE_DN, "(mobile=+8613800000003)", "uid",
        ],
        None,
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("uid: carol"), "{}", show(&out));
}

#[tokio::test]
async fn paged_search_crosses_several_pages() {
    let (_slapd, proxy) = setup();
    let mut ldap = connect(&proxy.ldap_url(), None, false).await;
    let mut cookie = Vec::new();
    let mut seen = HashSet::new();
    let mut pages = 0;
    loop {
        let ctrl = PagedResults {
            size: 7,
            cookie: cookie.clone(),
        };
        let (entries, res) = ldap
            .with_controls(ctrl.critical())
            .search(
                &format!("ou=engineering,ou=people,{BASE_DN}"),
                Scope::OneLevel,
                "(objectClass=inetOrgPerson)",
                vec!["uid"],
            )
            .await
            .unwrap()
            .success()
            .unwrap();
        pages += 1;
        assert!(entries.len() <= 7);
        for e in entries {
            assert!(seen.insert(SearchEntry::construct(e).dn), "entry seen twice");
        }
        let paged = res
            .ctrls
            .iter()
            .find_map(|c| match c {
                Control(Some(ControlType::PagedResults), raw) => Some(raw.parse::<PagedResults>()),
                _ => None,
            })
            .expect("paged results control in the response");
        if paged.cookie.is_empty() {
            break;
        }
        cookie = paged.cookie;
    }
    assert_eq!(seen.len(), GENERATED_USERS);
    assert_eq!(pages, GENERATED_USERS.div_ceil(7));
}

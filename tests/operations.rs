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
    ldap.simple_bind(&alice, "alice-pw")
        .await
        .unwrap()
        .success()
        .unwrap();
    let empty = ldap.simple_bind(&alice, "").await.unwrap();
    assert_eq!(empty.rc, 49, "empty password: {empty:?}");
    assert!(empty.text.contains("empty password"), "{empty:?}");
    let who = ldap.extended(WhoAmI).await.unwrap().0.parse::<WhoAmIResp>();
    assert_eq!(
        who.authzid, "",
        "identity must be dropped after a refused bind"
    );

    let anon = ldap.simple_bind("", "").await.unwrap();
    assert_eq!(anon.rc, 0);
    ldap.unbind().await.unwrap();

    // The same with the OpenLDAP tools.
    let out = ldap_tool(
        "ldapwhoami",
        &proxy.certs.ca_pem,
        &[
            "-x",
            "-H",
            &proxy.ldap_url(),
            "-D",
            &alice,
            "-w",
            "alice-pw",
        ],
        None,
    );
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("dn:{alice}")
    );
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
    assert_eq!(entries.len(), NAMED_USERS + GENERATED_USERS);

    let entries = search_ok(
        &mut ldap,
        &format!("uid=bob,ou=people,{BASE_DN}"),
        Scope::Base,
        "(objectClass=*)",
        &["cn", "mail"],
    )
    .await;
    let bob = entries[0].clone();
    assert_eq!(bob.attrs["cn"], vec!["Bob Builder"]);
    assert_eq!(bob.attrs["mail"], vec!["bob@example.com"]);

    // Root DSE stays readable; searching above base_dn is refused.
    let entries = search_ok(
        &mut ldap,
        "",
        Scope::Base,
        "(objectClass=*)",
        &["namingContexts"],
    )
    .await;
    let root = entries[0].clone();
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
            "-x",
            "-LLL",
            "-H",
            &proxy.ldap_url(),
            "-b",
            BASE_DN,
            "(mobile=+8613800000003)",
            "uid",
        ],
        None,
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("uid: carol"),
        "{}",
        show(&out)
    );
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
            assert!(
                seen.insert(SearchEntry::construct(e).dn),
                "entry seen twice"
            );
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

#[tokio::test]
async fn large_entry_with_binary_attribute_round_trips() {
    let (_slapd, proxy) = setup();
    let mut ldap = connect(&proxy.ldap_url(), None, false).await;
    ldap.simple_bind(ADMIN_DN, ADMIN_PW)
        .await
        .unwrap()
        .success()
        .unwrap();
    // 100 KiB of every byte value: larger than 64 KiB and not UTF-8.
    let photo: Vec<u8> = (0..100 * 1024).map(|i| (i * 7 % 256) as u8).collect();
    let dn = format!("uid=dave,ou=people,{BASE_DN}");
    ldap.add(
        &dn,
        vec![
            (
                "objectClass".as_bytes(),
                HashSet::from(["inetOrgPerson".as_bytes()]),
            ),
            ("uid".as_bytes(), HashSet::from(["dave".as_bytes()])),
            ("cn".as_bytes(), HashSet::from(["Dave".as_bytes()])),
            ("sn".as_bytes(), HashSet::from(["D".as_bytes()])),
            ("jpegPhoto".as_bytes(), HashSet::from([photo.as_slice()])),
        ],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    let entries = search_ok(
        &mut ldap,
        &dn,
        Scope::Base,
        "(objectClass=*)",
        &["jpegPhoto"],
    )
    .await;
    let entry = entries[0].clone();
    assert_eq!(entry.bin_attrs["jpegPhoto"], vec![photo.clone()]);

    // A filter on binary bytes that are not UTF-8 passes through intact.
    let entries = search_ok(
        &mut ldap,
        &format!("ou=people,{BASE_DN}"),
        Scope::Subtree,
        "(&(uid=dave)(jpegPhoto=*))",
        &["1.1"],
    )
    .await;
    assert_eq!(entries.len(), 1);
    let (entries, res) = ldap
        .search(
            &format!("ou=people,{BASE_DN}"),
            Scope::Subtree,
            "(cn=\\ff\\fe\\00)",
            vec!["1.1"],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
    assert_eq!((entries.len(), res.rc), (0, 0));

    // The OpenLDAP tools read the same bytes back.
    let out = ldap_tool(
        "ldapsearch",
        &proxy.certs.ca_pem,
        &[
            "-x",
            "-LLL",
            "-H",
            &proxy.ldap_url(),
            "-b",
            &dn,
            "-s",
            "base",
            "-tt",
            "-T",
            proxy.dir.path().to_str().unwrap(),
            "jpegPhoto",
        ],
        None,
    );
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let file = text
        .split("jpegPhoto:< file://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no file reference in {text}"));
    assert_eq!(std::fs::read(file).unwrap(), photo);
}

#[tokio::test]
async fn add_modify_rename_compare_delete() {
    let (_slapd, proxy) = setup();
    let mut ldap = connect(&proxy.ldap_url(), None, false).await;
    ldap.simple_bind(ADMIN_DN, ADMIN_PW)
        .await
        .unwrap()
        .success()
        .unwrap();
    let dn = format!("uid=erin,ou=people,{BASE_DN}");
    ldap.add(
        &dn,
        vec![
            ("objectClass", HashSet::from(["inetOrgPerson"])),
            ("uid", HashSet::from(["erin"])),
            ("cn", HashSet::from(["Erin"])),
            ("sn", HashSet::from(["E"])),
        ],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    ldap.modify(
        &dn,
        vec![Mod::Replace("mail", HashSet::from(["erin@example.com"]))],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    let cmp = ldap.compare(&dn, "mail", "erin@example.com").await.unwrap();
    assert_eq!(cmp.0.rc, 6, "compareTrue");
    let cmp = ldap
        .compare(&dn, "mail", "someone@example.com")
        .await
        .unwrap();
    assert_eq!(cmp.0.rc, 5, "compareFalse");

    ldap.modifydn(
        &dn,
        "uid=erin2",
        true,
        Some(&format!("ou=engineering,ou=people,{BASE_DN}")),
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    let moved = format!("uid=erin2,ou=engineering,ou=people,{BASE_DN}");
    let entries = search_ok(&mut ldap, &moved, Scope::Base, "(objectClass=*)", &["mail"]).await;
    assert_eq!(entries[0].clone().attrs["mail"], vec!["erin@example.com"]);

    // Moving it out of base_dn is refused before it reaches the directory.
    let out = ldap
        .modifydn(&moved, "uid=erin2", true, Some("dc=com"))
        .await
        .unwrap();
    assert_eq!(out.rc, 50, "{out:?}");
    ldap.delete(&moved).await.unwrap().success().unwrap();
    let gone = ldap
        .search(&moved, Scope::Base, "(objectClass=*)", vec!["1.1"])
        .await
        .unwrap();
    assert_eq!(gone.1.rc, 32, "noSuchObject after delete");

    // ldapmodify and ldapcompare with an LDIF change record.
    let ldif = format!(
        "dn: uid=frank,ou=people,{BASE_DN}\nchangetype: add\nobjectClass: inetOrgPerson\nuid: frank\ncn: Frank\nsn: F\n\n\
         dn: uid=frank,ou=people,{BASE_DN}\nchangetype: modify\nreplace: description\ndescription: via ldapmodify\n\n\
         dn: uid=frank,ou=people,{BASE_DN}\nchangetype: modrdn\nnewrdn: uid=frank2\ndeleteoldrdn: 1\n"
    );
    let out = ldap_tool(
        "ldapmodify",
        &proxy.certs.ca_pem,
        &[
            "-x",
            "-H",
            &proxy.ldap_url(),
            "-D",
            ADMIN_DN,
            "-w",
            ADMIN_PW,
        ],
        Some(&ldif),
    );
    assert!(out.status.success(), "{}", show(&out));
    let out = ldap_tool(
        "ldapcompare",
        &proxy.certs.ca_pem,
        &[
            "-x",
            "-H",
            &proxy.ldap_url(),
            &format!("uid=frank2,ou=people,{BASE_DN}"),
            "description:via ldapmodify",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(6), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("TRUE"),
        "{}",
        show(&out)
    );
}

#[tokio::test]
async fn password_modify_needs_tls_on_both_legs() {
    let (_slapd, proxy) = setup();
    let bob = format!("uid=bob,ou=people,{BASE_DN}");

    // Plaintext client leg: refused with confidentialityRequired.
    let mut ldap = connect(&proxy.ldap_url(), None, false).await;
    ldap.simple_bind(&bob, "bob-pw")
        .await
        .unwrap()
        .success()
        .unwrap();
    let err = ldap
        .extended(PasswordModify {
            user_id: None,
            old_pass: Some("bob-pw"),
            new_pass: Some("bob-new"),
        })
        .await
        .unwrap();
    assert_eq!(err.1.rc, 13, "{:?}", err.1);
    let refused = ldap
        .modify(
            &bob,
            vec![Mod::Replace("userPassword", HashSet::from(["x"]))],
        )
        .await
        .unwrap();
    assert_eq!(refused.rc, 13, "{refused:?}");

    // StartTLS to ldapgate, LDAPS to slapd: allowed, with ldappasswd.
    let out = ldap_tool(
        "ldappasswd",
        &proxy.certs.ca_pem,
        &[
            "-x",
            "-ZZ",
            "-H",
            &proxy.ldap_url(),
            "-D",
            &bob,
            "-w",
            "bob-pw",
            "-a",
            "bob-pw",
            "-s",
            "bob-new",
        ],
        None,
    );
    assert!(out.status.success(), "{}\n{}", show(&out), proxy.log());
    let mut ldap = connect(&proxy.ldaps_url(), Some(&proxy.certs), false).await;
    ldap.simple_bind(&bob, "bob-new")
        .await
        .unwrap()
        .success()
        .unwrap();
    let old = ldap.simple_bind(&bob, "bob-pw").await.unwrap();
    assert_eq!(old.rc, 49);
}

#[tokio::test]
async fn abandon_stops_a_search_and_the_session_continues() {
    let (_slapd, mut proxy) = setup();
    let mut ldap = connect(&proxy.ldap_url(), None, false).await;
    let mut stream = ldap
        .streaming_search(
            &format!("ou=people,{BASE_DN}"),
            Scope::Subtree,
            "(objectClass=*)",
            vec!["*"],
        )
        .await
        .unwrap();
    let first = stream.next().await.unwrap();
    assert!(first.is_some());
    let msgid = stream.ldap_handle().last_id();
    ldap.abandon(msgid).await.unwrap();
    drop(stream);
    // The connection still serves requests after the abandon.
    let entries = search_ok(
        &mut ldap,
        &format!("uid=alice,ou=people,{BASE_DN}"),
        Scope::Base,
        "(objectClass=*)",
        &["uid"],
    )
    .await;
    assert_eq!(entries.len(), 1);
    proxy.assert_alive();
}

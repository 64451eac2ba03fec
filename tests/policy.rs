//! Configured policy seen by real clients: require_tls, read_only,
//! allowed_clients, max_connections, idle_timeout, base_dn scoping, and
//! pooled upstream connections that never leak one client's identity to
//! the next.

mod common;

use common::*;
use ldap3::exop::{WhoAmI, WhoAmIResp};
use ldap3::{Mod, Scope};
use std::collections::HashSet;
use std::io::Read;
use std::net::TcpStream;
use std::time::Duration;

const ALICE: &str = "uid=alice,ou=people,dc=example,dc=com";

#[tokio::test]
async fn require_tls_refuses_plaintext_until_starttls() {
    let slapd = Slapd::start();
    let proxy = Proxy::start(ProxyConfig::ldaps(&slapd).server("require_tls = true"));
    let mut ldap = connect(&proxy.ldap_url(), None, false).await;
    let res = ldap.simple_bind(ALICE, "alice-pw").await.unwrap();
    assert_eq!(res.rc, 13, "confidentialityRequired: {res:?}");
    let mut ldap = connect(&proxy.ldap_url(), Some(&proxy.certs), true).await;
    ldap.simple_bind(ALICE, "alice-pw")
        .await
        .unwrap()
        .success()
        .unwrap();
}

#[tokio::test]
async fn read_only_refuses_writes_but_serves_reads() {
    let slapd = Slapd::start();
    let proxy = Proxy::start(ProxyConfig::ldaps(&slapd).directory("read_only = true"));
    let mut ldap = connect(&proxy.ldap_url(), None, false).await;
    ldap.simple_bind(ADMIN_DN, ADMIN_PW)
        .await
        .unwrap()
        .success()
        .unwrap();
    let res = ldap
        .modify(
            ALICE,
            vec![Mod::Replace("description", HashSet::from(["x"]))],
        )
        .await
        .unwrap();
    assert_eq!(res.rc, 53, "unwillingToPerform: {res:?}");
    let res = ldap.delete(ALICE).await.unwrap();
    assert_eq!(res.rc, 53);
    let entries = search_ok(&mut ldap, ALICE, Scope::Base, "(objectClass=*)", &["uid"]).await;
    assert_eq!(entries.len(), 1);
}

#[tokio::test]
async fn base_dn_scopes_every_operation() {
    let slapd = Slapd::start();
    let proxy = Proxy::start(ProxyConfig::with_directory(format!(
        "servers = [\"{}\"]\nca_file = \"{}\"\nbase_dn = \"ou=engineering,ou=people,{BASE_DN}\"\n",
        slapd.ldaps_url(),
        slapd.certs.ca_pem.display()
    )));
    let mut ldap = connect(&proxy.ldap_url(), None, false).await;
    // Alice lives outside the base: she cannot even bind through ldapgate.
    let res = ldap.simple_bind(ALICE, "alice-pw").await.unwrap();
    assert_eq!(res.rc, 50, "{res:?}");
    let user = format!("uid=user001,ou=engineering,ou=people,{BASE_DN}");
    ldap.simple_bind(&user, "user001-pw")
        .await
        .unwrap()
        .success()
        .unwrap();
    let res = ldap
        .search(
            &format!("ou=people,{BASE_DN}"),
            Scope::Subtree,
            "(uid=alice)",
            vec!["1.1"],
        )
        .await
        .unwrap();
    assert_eq!(res.1.rc, 50);
    let res = ldap.compare(ALICE, "uid", "alice").await.unwrap();
    assert_eq!(res.0.rc, 50);
    let entries = search_ok(
        &mut ldap,
        &format!("ou=engineering,ou=people,{BASE_DN}"),
        Scope::OneLevel,
        "(uid=user00*)",
        &["1.1"],
    )
    .await;
    assert_eq!(entries.len(), 10);
    // The subschema entry stays readable for clients that need the schema.
    let entries = search_ok(
        &mut ldap,
        "cn=Subschema",
        Scope::Base,
        "(objectClass=*)",
        &["objectClasses"],
    )
    .await;
    assert_eq!(entries.len(), 1);
}

#[test]
fn allowed_clients_closes_others_before_any_ldap() {
    let slapd = Slapd::start();
    let proxy =
        Proxy::start(ProxyConfig::ldaps(&slapd).server("allowed_clients = [\"10.0.0.0/8\"]"));
    let mut tcp = TcpStream::connect(proxy.addr()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = Vec::new();
    let n = tcp.read_to_end(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "closed without a byte");
    let out = ldap_tool(
        "ldapwhoami",
        &proxy.certs.ca_pem,
        &["-x", "-H", &proxy.ldap_url()],
        None,
    );
    assert!(!out.status.success(), "{}", show(&out));
}

#[test]
fn max_connections_turns_away_the_extra_client_with_busy() {
    let slapd = Slapd::start();
    let proxy = Proxy::start(ProxyConfig::ldaps(&slapd).server("max_connections = 2"));
    // The fixture's readiness probe may still hold a permit for a moment.
    std::thread::sleep(Duration::from_millis(200));
    let _a = TcpStream::connect(proxy.addr()).unwrap();
    let _b = TcpStream::connect(proxy.addr()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut c = TcpStream::connect(proxy.addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = Vec::new();
    c.read_to_end(&mut buf).unwrap();
    let notice = ldapgate::ldap::response::read_result(&buf).unwrap();
    assert_eq!(notice.code, 51, "busy: {notice:?}");
    drop(_a);
    std::thread::sleep(Duration::from_millis(200));
    let out = ldap_tool(
        "ldapwhoami",
        &proxy.certs.ca_pem,
        &["-x", "-H", &proxy.ldap_url()],
        None,
    );
    assert!(out.status.success(), "a slot is free again: {}", show(&out));
}

#[test]
fn idle_clients_are_disconnected_with_a_notice() {
    let slapd = Slapd::start();
    let proxy = Proxy::start(ProxyConfig::ldaps(&slapd).server("idle_timeout = \"1s\""));
    let mut tcp = TcpStream::connect(proxy.addr()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    tcp.read_to_end(&mut buf).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(900));
    let notice = ldapgate::ldap::response::read_result(&buf).unwrap();
    assert_eq!((notice.msgid, notice.code), (0, 52), "{notice:?}");
    assert!(notice.diagnostic.contains("idle"), "{notice:?}");
}

#[tokio::test]
async fn pooled_connections_do_not_leak_identity_between_clients() {
    let slapd = Slapd::start();
    let proxy = Proxy::start(ProxyConfig::ldaps(&slapd).directory("pool_size = 1"));
    for round in 0..5 {
        let mut ldap = connect(&proxy.ldap_url(), None, false).await;
        ldap.simple_bind(ALICE, "alice-pw")
            .await
            .unwrap()
            .success()
            .unwrap();
        ldap.unbind().await.unwrap();
        // Give the background reset its moment, then take the same
        // pooled connection as an anonymous client.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut anon = connect(&proxy.ldap_url(), None, false).await;
        let who = anon.extended(WhoAmI).await.unwrap().0.parse::<WhoAmIResp>();
        assert_eq!(
            who.authzid, "",
            "round {round}: anonymous client saw an identity"
        );
        anon.unbind().await.unwrap();
    }
    // And a client that vanishes without unbinding.
    let mut ldap = connect(&proxy.ldap_url(), None, false).await;
    ldap.simple_bind(ALICE, "alice-pw")
        .await
        .unwrap()
        .success()
        .unwrap();
    drop(ldap);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut anon = connect(&proxy.ldap_url(), None, false).await;
    let who = anon.extended(WhoAmI).await.unwrap().0.parse::<WhoAmIResp>();
    assert_eq!(who.authzid, "");
}

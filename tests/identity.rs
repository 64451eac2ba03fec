//! One account, one identity, against a real slapd: limits and lockout that
//! no name (sign-in ID, any spelling of the DN), channel (control channel,
//! LDAP, LDAPS, StartTLS) or stale cache gets around.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const TOKEN: &str = "identity-token";

fn alice_dn() -> String {
    format!("uid=alice,ou=people,{BASE_DN}")
}

/// Spellings of alice's DN that slapd takes as hers: case, spaces after
/// the commas, the OID of uid, an escaped character.
fn alice_spellings() -> Vec<String> {
    vec![
        alice_dn(),
        "UID=Alice,OU=People,DC=Example,DC=Com".into(),
        "uid=alice, ou=people, dc=example, dc=com".into(),
        format!("0.9.2342.19200300.100.1.1=alice,ou=people,{BASE_DN}"),
        format!("uid=\\61lice,ou=people,{BASE_DN}"),
    ]
}

fn proxy(slapd: &Slapd, ratelimit: &str, more: &str) -> Proxy {
    Proxy::start(
        ProxyConfig::ldaps(slapd)
            .service_account(slapd)
            .section(&format!("[ratelimit]\n{ratelimit}\n{more}"))
            .control(TOKEN),
    )
}

fn http_sign_in(proxy: &Proxy, login: &str, password: &str) -> (u16, Value) {
    let body = serde_json::json!({ "login": login, "password": password }).to_string();
    let r = control_request(proxy, "POST", "/v1/authenticate", Some(TOKEN), Some(&body));
    (r.status, r.json())
}

fn outcome(v: &(u16, Value)) -> &str {
    v.1["outcome"].as_str().unwrap_or("<none>")
}

/// A simple bind with ldap3 on a new connection: (result code, message).
async fn bind(
    url: &str,
    certs: Option<&Certs>,
    starttls: bool,
    name: &str,
    pw: &str,
) -> (u32, String) {
    let mut ldap = connect(url, certs, starttls).await;
    let r = ldap.simple_bind(name, pw).await.unwrap();
    let _ = ldap.unbind().await;
    (r.rc, r.text)
}

/// An LDAP modification made directly on slapd as its rootdn.
fn modify(slapd: &Slapd, ldif: &str) {
    slapd.modify(ldif);
}

/// The entryUUID of `dn`, read directly from slapd.
fn entry_uuid(slapd: &Slapd, dn: &str) -> String {
    let out = ldap_tool(
        "ldapsearch",
        &slapd.certs.ca_pem,
        &[
            "-x",
            "-LLL",
            "-H",
            &slapd.ldap_url(),
            "-b",
            dn,
            "-s",
            "base",
            "entryUUID",
        ],
        None,
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("entryUUID: "))
        .unwrap_or_else(|| panic!("no entryUUID for {dn}: {}", show(&out)))
        .to_owned()
}

// ---- raw BER, so that bursts can be pipelined and sources chosen ----

fn ber_len(n: usize) -> Vec<u8> {
    if n < 0x80 {
        vec![n as u8]
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        let mut v = vec![0x80 | bytes.len() as u8];
        v.extend(bytes);
        v
    }
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend(ber_len(content.len()));
    v.extend_from_slice(content);
    v
}

/// BindRequest (RFC 4511 §4.2), version 3, simple.
fn bind_pdu(msgid: u16, name: &str, pw: &str) -> Vec<u8> {
    bind_pdu_version(msgid, 3, name, pw)
}

fn bind_pdu_version(msgid: u16, version: u8, name: &str, pw: &str) -> Vec<u8> {
    let mut op = tlv(0x02, &[version]);
    op.extend(tlv(0x04, name.as_bytes()));
    op.extend(tlv(0x80, pw.as_bytes()));
    let mut msg = tlv(0x02, &msgid.to_be_bytes());
    msg.extend(tlv(0x60, &op));
    tlv(0x30, &msg)
}

/// Reads one TLV's tag and content.
fn read_tlv(r: &mut impl Read) -> (u8, Vec<u8>) {
    next_tlv(r).expect("a complete TLV")
}

/// The result code of the next response on `r` (a BindResponse).
fn read_result_code(r: &mut impl Read) -> u8 {
    let (tag, msg) = read_tlv(r);
    assert_eq!(tag, 0x30, "not an LDAPMessage");
    let mut rest = &msg[..];
    let (_, _msgid) = read_tlv(&mut rest);
    let (op, body) = read_tlv(&mut rest);
    assert_eq!(
        op,
        0x61,
        "not a BindResponse: {}",
        String::from_utf8_lossy(&body)
    );
    let (code_tag, code) = read_tlv(&mut &body[..]);
    assert_eq!(code_tag, 0x0a);
    code[0]
}

/// A connection to `to` from the loopback address `from` (std cannot bind
/// before connecting; tokio's TcpSocket can).
fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from((from, 0))).unwrap();
        socket.connect(to).await.unwrap()
    });
    let std = stream.into_std().unwrap();
    std.set_nonblocking(false).unwrap();
    std.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    std
}

/// Simple binds as `name`, one connection from `from`, each answered
/// before the next is sent; their result codes.
fn binds_from(from: [u8; 4], proxy: &Proxy, name: &str, pws: &[&str]) -> Vec<u8> {
    let mut s = connect_from(from, proxy.addr());
    pws.iter()
        .enumerate()
        .map(|(i, pw)| {
            s.write_all(&bind_pdu(i as u16 + 1, name, pw)).unwrap();
            read_result_code(&mut s)
        })
        .collect()
}

fn count(codes: &[u8], code: u8) -> usize {
    codes.iter().filter(|c| **c == code).count()
}

// ---- 1. lockout and limits bypassed by binding with the DN ----

#[tokio::test]
async fn a_locked_account_is_locked_for_every_spelling_of_its_dn_and_every_channel() {
    let slapd = Slapd::start();
    let proxy = proxy(
        &slapd,
        "binds_per_ip = \"50/s\"\nfailures_before_lockout = 5",
        "",
    );
    // Each spelling names alice: slapd itself takes the right password.
    for dn in alice_spellings() {
        let direct = bind(&slapd.ldap_url(), None, false, &dn, "alice-pw").await;
        assert_eq!(direct.0, 0, "{dn} directly: {direct:?}");
    }
    for _ in 0..5 {
        let r = http_sign_in(&proxy, "alice", "wrong");
        assert_eq!(outcome(&r), "invalid_credentials", "{r:?}");
    }
    let r = http_sign_in(&proxy, "alice", "alice-pw");
    assert_eq!((r.0, outcome(&r)), (403, "account_locked"), "{r:?}");
    let by_id = bind(&proxy.ldap_url(), None, false, "ALICE", "alice-pw").await;
    assert_eq!(by_id.0, 53, "{by_id:?}");
    for dn in alice_spellings() {
        let plain = bind(&proxy.ldap_url(), None, false, &dn, "alice-pw").await;
        assert_eq!(plain.0, 53, "{dn} over LDAP: {plain:?}");
        assert!(plain.1.contains("locked by ldapgate"), "{plain:?}");
        let ldaps = bind(
            &proxy.ldaps_url(),
            Some(&proxy.certs),
            false,
            &dn,
            "alice-pw",
        )
        .await;
        assert_eq!(ldaps.0, 53, "{dn} over LDAPS: {ldaps:?}");
        let starttls = bind(&proxy.ldap_url(), Some(&proxy.certs), true, &dn, "alice-pw").await;
        assert_eq!(starttls.0, 53, "{dn} over StartTLS: {starttls:?}");
    }
    // Others go on.
    let carol = bind(
        &proxy.ldap_url(),
        None,
        false,
        &format!("uid=carol,ou=people,{BASE_DN}"),
        "carol-pw",
    )
    .await;
    assert_eq!(carol.0, 0, "{carol:?}");
}

#[tokio::test]
async fn wrong_passwords_by_dn_lock_every_sign_in_id() {
    let slapd = Slapd::start();
    let proxy = proxy(
        &slapd,
        "binds_per_ip = \"50/s\"\nfailures_before_lockout = 5",
        "",
    );
    let spellings = [
        format!("uid=bob,ou=people,{BASE_DN}"),
        "UID=BOB,OU=PEOPLE,DC=EXAMPLE,DC=COM".into(),
        format!("uid=bob , ou=people,{BASE_DN}"),
        format!("0.9.2342.19200300.100.1.1=bob,ou=people,{BASE_DN}"),
        format!("uid=bob,ou=people,{BASE_DN}"),
    ];
    for dn in &spellings {
        let r = bind(&proxy.ldap_url(), None, false, dn, "wrong").await;
        assert_eq!(r.0, 49, "{dn}: {r:?}");
    }
    let r = http_sign_in(&proxy, "bob", "bob-pw");
    assert_eq!((r.0, outcome(&r)), (403, "account_locked"), "{r:?}");
    for login in ["bob@example.com", "+8613800000002", "E-bob"] {
        let r = bind(&proxy.ldap_url(), None, false, login, "bob-pw").await;
        assert_eq!(r.0, 53, "{login}: {r:?}");
    }
    let r = bind(&proxy.ldap_url(), None, false, &spellings[0], "bob-pw").await;
    assert_eq!(r.0, 53, "{r:?}");
}

#[test]
fn a_burst_of_wrong_dn_binds_meets_the_lockout_then_the_address_limit() {
    let slapd = Slapd::start();
    let proxy = proxy(
        &slapd,
        "binds_per_ip = \"50/s\"\nfailures_before_lockout = 5",
        "",
    );
    // One connection, as fast as the client can: like a sign-in ID burst,
    // 5 × 49, then 53, then busy.
    let pws = vec!["wrong"; 300];
    let codes = binds_from([127, 0, 0, 1], &proxy, &alice_dn(), &pws);
    assert_eq!(count(&codes, 49), 5, "{codes:?}");
    assert!(codes[..5].iter().all(|c| *c == 49), "{codes:?}");
    assert_eq!(count(&codes, 0), 0, "{codes:?}");
    assert!(count(&codes, 53) >= 45, "{codes:?}");
    // The address's budget (50, refilled at 50/s) runs out within the
    // burst however fast the machine is; never a 49 after the fifth.
    assert!(count(&codes, 51) >= 50, "{codes:?}");
    assert!(!codes[5..].contains(&49), "{codes:?}");
    assert_eq!(
        count(&codes, 49) + count(&codes, 53) + count(&codes, 51),
        300
    );

    // The same burst written in one piece (pipelined): each bind waits for
    // the one before, so the lockout still stops it at five.
    let mut s = connect_from([127, 0, 0, 2], proxy.addr());
    let carol = format!("uid=carol,ou=people,{BASE_DN}");
    let burst: Vec<u8> = (1..=300u16)
        .flat_map(|i| bind_pdu(i, &carol, "wrong"))
        .collect();
    s.write_all(&burst).unwrap();
    let codes: Vec<u8> = (0..300).map(|_| read_result_code(&mut s)).collect();
    assert_eq!(count(&codes, 49), 5, "{codes:?}");
    assert_eq!(count(&codes, 0), 0, "{codes:?}");
}

/// An application entry (not a person) with a password.
fn app_ldif() -> String {
    format!(
        "dn: ou=services,{BASE_DN}\nobjectClass: organizationalUnit\nou: services\n\n\
         dn: cn=app,ou=services,{BASE_DN}\nobjectClass: applicationProcess\n\
         objectClass: simpleSecurityObject\ncn: app\nuserPassword: app-pw\n\n"
    )
}

#[test]
fn service_accounts_lock_per_address_and_are_never_unlimited() {
    let slapd = Slapd::start_with_extra_ldif(&app_ldif());
    let proxy = proxy(
        &slapd,
        // The default service_binds_per_identity, 100/s.
        "binds_per_ip = \"1000/s\"\nfailures_before_lockout = 5",
        "",
    );
    let app = format!("cn=app,ou=services,{BASE_DN}");
    // Five wrong passwords from one address lock it there only.
    let codes = binds_from([127, 0, 0, 11], &proxy, &app, &["wrong"; 5]);
    assert_eq!(codes, vec![49; 5]);
    let again = binds_from([127, 0, 0, 11], &proxy, &app, &["app-pw"]);
    assert_eq!(again, vec![53]);
    let elsewhere = binds_from([127, 0, 0, 12], &proxy, &app, &["app-pw"]);
    assert_eq!(elsewhere, vec![0]);
    // Its own rate, per address: a burst is cut at about 100, and does not
    // starve the application elsewhere.
    let codes = binds_from([127, 0, 0, 13], &proxy, &app, &["app-pw"; 250]);
    assert!(count(&codes, 0) >= 95, "{codes:?}");
    assert!(count(&codes, 51) >= 1, "{codes:?}");
    assert_eq!(
        binds_from([127, 0, 0, 12], &proxy, &app, &["app-pw"]),
        vec![0]
    );
    // The rootdn has no entry: limited by its name the same way.
    let codes = binds_from([127, 0, 0, 14], &proxy, ADMIN_DN, &["wrong"; 5]);
    assert_eq!(codes, vec![49; 5]);
    assert_eq!(
        binds_from([127, 0, 0, 14], &proxy, ADMIN_DN, &[ADMIN_PW]),
        vec![53]
    );
    assert_eq!(
        binds_from([127, 0, 0, 15], &proxy, ADMIN_DN, &[ADMIN_PW]),
        vec![0]
    );
}

// ---- 2. a stale sign-in resolution decides outcomes ----

#[tokio::test]
async fn a_moved_account_signs_in_at_once_and_typos_before_the_move_do_not_lock_it() {
    let slapd = Slapd::start();
    // Default cache_ttl (5m) and change_check_interval; the default
    // per-identity rate (10/m) holds these few attempts.
    let proxy = proxy(&slapd, "failures_before_lockout = 5", "");
    let r = http_sign_in(&proxy, "bob", "bob-pw");
    assert_eq!(outcome(&r), "success", "{r:?}");
    for _ in 0..4 {
        assert_eq!(
            outcome(&http_sign_in(&proxy, "bob", "wrong")),
            "invalid_credentials"
        );
    }
    modify(
        &slapd,
        &format!(
            "dn: ou=staff,{BASE_DN}\nchangetype: add\nobjectClass: organizationalUnit\nou: staff\n\n\
             dn: uid=bob,ou=people,{BASE_DN}\nchangetype: modrdn\nnewrdn: uid=bob\ndeleteoldrdn: 1\n\
             newsuperior: ou=staff,{BASE_DN}\n"
        ),
    );
    let r = http_sign_in(&proxy, "bob", "bob-pw");
    assert_eq!(outcome(&r), "success", "right after the move: {r:?}");
    assert_eq!(r.1["dn"], format!("uid=bob,ou=staff,{BASE_DN}"));
    // On the listener too, by sign-in ID and by the new DN.
    let by_id = bind(&proxy.ldap_url(), None, false, "bob@example.com", "bob-pw").await;
    assert_eq!(by_id.0, 0, "{by_id:?}");
}

/// Signs in until `done` holds or `limit` passes; how long it took.
fn until(limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn a_login_given_to_another_person_follows_the_directory(slapd: &Slapd) -> Duration {
    let proxy = proxy(
        slapd,
        "binds_per_ip = \"1000/s\"\nbinds_per_identity = \"1000/s\"",
        // The defaults: cache_ttl 5m, change_check_interval 1s.
        "",
    );
    let r = http_sign_in(&proxy, "carol@example.com", "carol-pw");
    assert_eq!(outcome(&r), "success", "{r:?}");
    let r = http_sign_in(&proxy, "+8613800000001", "alice-pw");
    assert_eq!(outcome(&r), "success", "{r:?}");
    modify(
        slapd,
        &format!(
            "dn: uid=carol,ou=people,{BASE_DN}\nchangetype: modify\nreplace: mail\nmail: carol.d@example.com\n\n\
             dn: uid=alice,ou=people,{BASE_DN}\nchangetype: modify\nadd: mail\nmail: carol@example.com\n\n\
             dn: uid=dup1,ou=people,{BASE_DN}\nchangetype: modify\nadd: mobile\nmobile: +8613800000001\n"
        ),
    );
    let window = until(Duration::from_secs(5), || {
        outcome(&http_sign_in(&proxy, "carol@example.com", "carol-pw")) == "invalid_credentials"
    })
    .expect("carol@example.com still signs in as carol 5 s after it was taken from her");
    let r = http_sign_in(&proxy, "carol@example.com", "alice-pw");
    assert_eq!(outcome(&r), "success", "{r:?}");
    assert_eq!(r.1["dn"], alice_dn());
    // A value given to a second entry makes the login ambiguous.
    let r = http_sign_in(&proxy, "+8613800000001", "alice-pw");
    assert_eq!(outcome(&r), "ambiguous_login", "{r:?}");
    window
}

#[test]
fn a_login_given_to_another_person_follows_the_directory_within_one_check() {
    // Without syncprov there is no change marker: cached entries live one
    // check interval.
    let plain = Slapd::start();
    let window = a_login_given_to_another_person_follows_the_directory(&plain);
    eprintln!("stale window measured without a change marker: {window:?}");
    assert!(window <= Duration::from_millis(2500), "window {window:?}");
    // With syncprov, contextCSN moves with the change.
    let with_marker = Slapd::start_with_database_lines(
        "moduleload syncprov\nindex entryCSN,entryUUID eq\noverlay syncprov\n",
    );
    let window = a_login_given_to_another_person_follows_the_directory(&with_marker);
    assert!(window <= Duration::from_millis(2500), "window {window:?}");
    eprintln!("stale window measured with contextCSN: {window:?}");
}

#[test]
fn a_deleted_and_recreated_account_signs_in_with_its_new_id() {
    let slapd = Slapd::start();
    let proxy = proxy(&slapd, "binds_per_identity = \"1000/s\"", "");
    let dn = format!("uid=user007,ou=engineering,ou=people,{BASE_DN}");
    let old = entry_uuid(&slapd, &dn);
    let r = http_sign_in(&proxy, "user007", "user007-pw");
    assert_eq!(r.1["id"], old.as_str(), "{r:?}");
    modify(
        &slapd,
        &format!(
            "dn: {dn}\nchangetype: delete\n\n\
             dn: {dn}\nchangetype: add\nobjectClass: inetOrgPerson\nuid: user007\ncn: User 7\nsn: 7\n\
             userPassword: user007-pw\n"
        ),
    );
    let new = entry_uuid(&slapd, &dn);
    assert_ne!(old, new);
    let seen = until(Duration::from_secs(5), || {
        http_sign_in(&proxy, "user007", "user007-pw").1["id"] == new.as_str()
    });
    assert!(seen.is_some(), "the old id is still handed out 5 s later");
    // And never the old one again.
    let r = http_sign_in(&proxy, "user007", "user007-pw");
    assert_eq!(r.1["id"], new.as_str(), "{r:?}");
}

#[test]
fn a_cached_resolution_saves_the_search_while_the_directory_stands_still() {
    let slapd = Slapd::start_with_database_lines(
        "moduleload syncprov\nindex entryCSN,entryUUID eq\noverlay syncprov\n",
    );
    let proxy = proxy(&slapd, "binds_per_identity = \"1000/s\"", "");
    let cached = |proxy: &Proxy| proxy.log().matches("cached=true").count();
    assert_eq!(
        outcome(&http_sign_in(&proxy, "alice", "alice-pw")),
        "success"
    );
    // Several change checks pass; contextCSN has not moved.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        outcome(&http_sign_in(&proxy, "alice", "alice-pw")),
        "success"
    );
    assert_eq!(cached(&proxy), 1, "{}", proxy.log());
    // Any change moves the marker: the next sign-in asks the directory.
    modify(
        &slapd,
        &format!("dn: uid=user001,ou=engineering,ou=people,{BASE_DN}\nchangetype: modify\nreplace: sn\nsn: one\n"),
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        outcome(&http_sign_in(&proxy, "alice", "alice-pw")),
        "success"
    );
    assert_eq!(cached(&proxy), 1, "{}", proxy.log());
    assert_eq!(
        outcome(&http_sign_in(&proxy, "alice", "alice-pw")),
        "success"
    );
    assert_eq!(cached(&proxy), 2, "{}", proxy.log());
}

#[test]
fn names_without_an_entry_share_one_budget_per_address_whatever_their_spelling() {
    // The rootdn has no entry; slapd also takes its name by OID, by alias
    // and in Unicode compatibility forms that ldapgate cannot tell apart.
    let slapd = Slapd::start();
    let proxy = proxy(
        &slapd,
        "binds_per_ip = \"1000/s\"\nfailures_before_lockout = 5",
        "",
    );
    let rootdn_spellings = [
        format!("2.5.4.3=admin,{BASE_DN}"),
        format!("commonName=admin,{BASE_DN}"),
        format!("cn=\u{ff41}\u{ff44}\u{ff4d}\u{ff49}\u{ff4e},{BASE_DN}"),
        format!("cn=ad\u{ff4d}in,{BASE_DN}"),
    ];
    // slapd takes each spelling as its rootdn.
    let direct = SocketAddr::from(([127, 0, 0, 1], slapd.ldap_port));
    for dn in &rootdn_spellings {
        let mut s = connect_from([127, 0, 0, 1], direct);
        s.write_all(&bind_pdu(1, dn, ADMIN_PW)).unwrap();
        assert_eq!(read_result_code(&mut s), 0, "{dn} directly");
    }
    let codes = binds_from([127, 0, 0, 21], &proxy, ADMIN_DN, &["wrong"; 5]);
    assert_eq!(codes, vec![49; 5]);
    for dn in &rootdn_spellings {
        let codes = binds_from([127, 0, 0, 21], &proxy, dn, &["wrong", ADMIN_PW]);
        assert_eq!(codes, vec![53, 53], "{dn}");
    }
    // A DN that names nothing at all shares the budget too.
    let ghost = format!("uid=ghost,ou=people,{BASE_DN}");
    assert_eq!(
        binds_from([127, 0, 0, 21], &proxy, &ghost, &["x"]),
        vec![53]
    );
    // Another address is not affected.
    assert_eq!(
        binds_from([127, 0, 0, 22], &proxy, ADMIN_DN, &[ADMIN_PW]),
        vec![0]
    );
}

#[test]
fn binds_that_test_no_password_use_up_no_one_s_limits() {
    let slapd = Slapd::start_with_extra_ldif(&app_ldif());
    let proxy = proxy(&slapd, "binds_per_ip = \"1000/s\"", "");
    let app = format!("cn=app,ou=services,{BASE_DN}");
    for (name, address) in [(app.as_str(), 31u8), (alice_dn().as_str(), 32)] {
        let mut s = connect_from([127, 0, 0, address], proxy.addr());
        let codes: Vec<u8> = (1..=30u16)
            .map(|i| {
                s.write_all(&bind_pdu_version(i, 2, name, "bad")).unwrap();
                read_result_code(&mut s)
            })
            .collect();
        assert_eq!(codes, vec![2; 30], "{name}: LDAPv2 is a protocol error");
    }
    assert_eq!(
        binds_from([127, 0, 0, 33], &proxy, &app, &["app-pw"]),
        vec![0]
    );
    let r = http_sign_in(&proxy, "alice", "alice-pw");
    assert_eq!(outcome(&r), "success", "{r:?}");
}

#[test]
fn a_login_locked_while_it_named_no_one_is_free_once_it_names_someone() {
    let slapd = Slapd::start();
    let proxy = proxy(
        &slapd,
        "binds_per_identity = \"1000/s\"\nfailures_before_lockout = 5",
        "",
    );
    let outcomes: Vec<String> = (0..6)
        .map(|i| {
            outcome(&http_sign_in(
                &proxy,
                "bob.new@example.com",
                &format!("guess{i}"),
            ))
            .to_owned()
        })
        .collect();
    assert_eq!(outcomes[..5], vec!["invalid_credentials"; 5]);
    assert_eq!(outcomes[5], "account_locked");
    slapd.modify(&format!(
        "dn: uid=bob,ou=people,{BASE_DN}\nchangetype: modify\nadd: mail\nmail: bob.new@example.com\n"
    ));
    let r = http_sign_in(&proxy, "bob.new@example.com", "bob-pw");
    assert_eq!(outcome(&r), "success", "{r:?}");
}

#[test]
fn concurrent_wrong_passwords_stop_at_the_lockout_threshold() {
    let slapd = Slapd::start();
    let proxy = proxy(
        &slapd,
        "binds_per_ip = \"1000/s\"\nbinds_per_identity = \"1000/s\"\nfailures_before_lockout = 5",
        "",
    );
    let carol = format!("uid=carol,ou=people,{BASE_DN}");
    // 20 connections from 20 addresses, all at once.
    let codes: Vec<u8> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20u8)
            .map(|i| {
                let (proxy, carol) = (&proxy, &carol);
                scope.spawn(move || binds_from([127, 0, 1, i + 1], proxy, carol, &["wrong"]))
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(count(&codes, 49), 5, "{codes:?}");
    assert_eq!(count(&codes, 53), 15, "{codes:?}");
    // The same over the control channel, for another account.
    let outcomes: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20)
            .map(|_| {
                let proxy = &proxy;
                scope.spawn(move || outcome(&http_sign_in(proxy, "user011", "wrong")).to_owned())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let wrong = outcomes
        .iter()
        .filter(|o| *o == "invalid_credentials")
        .count();
    assert_eq!(wrong, 5, "{outcomes:?}");
}

#[test]
fn a_bind_name_the_directory_refuses_gets_the_directory_s_answer() {
    let slapd = Slapd::start();
    let proxy = proxy(&slapd, "binds_per_ip = \"1000/s\"", "");
    let direct = SocketAddr::from(([127, 0, 0, 1], slapd.ldap_port));
    for dn in [
        format!("uid=#0405616c696365,ou=people,{BASE_DN}"),
        format!("cn=admin+cn=admin,{BASE_DN}"),
    ] {
        let mut s = connect_from([127, 0, 0, 1], direct);
        s.write_all(&bind_pdu(1, &dn, "pw")).unwrap();
        let expected = read_result_code(&mut s);
        let got = binds_from([127, 0, 0, 41], &proxy, &dn, &["pw"]);
        assert_eq!(got, vec![expected], "{dn}");
    }
}

// ---- found by trying to break the above ----

/// A simple bind carrying one control, criticality TRUE.
fn bind_pdu_with_critical_control(msgid: u16, name: &str, pw: &str, oid: &str) -> Vec<u8> {
    let mut op = tlv(0x02, &[3]);
    op.extend(tlv(0x04, name.as_bytes()));
    op.extend(tlv(0x80, pw.as_bytes()));
    let mut control = tlv(0x04, oid.as_bytes());
    control.extend(tlv(0x01, &[0xff]));
    let mut msg = tlv(0x02, &msgid.to_be_bytes());
    msg.extend(tlv(0x60, &op));
    msg.extend(tlv(0xa0, &tlv(0x30, &control)));
    tlv(0x30, &msg)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn binds_the_directory_refuses_unread_cost_the_account_nothing() {
    let slapd = Slapd::start();
    // The default binds_per_identity: 10/m.
    let proxy = proxy(&slapd, "binds_per_ip = \"1000/s\"", "");
    let mut s = connect_from([127, 0, 0, 51], proxy.addr());
    let codes: Vec<u8> = (1..=12u16)
        .map(|i| {
            s.write_all(&bind_pdu_with_critical_control(
                i,
                &alice_dn(),
                "x",
                "1.2.3.4.5.6.7",
            ))
            .unwrap();
            read_result_code(&mut s)
        })
        .collect();
    assert_eq!(
        codes,
        vec![12; 12],
        "unavailableCriticalExtension, as slapd answers"
    );
    let r = http_sign_in(&proxy, "alice", "alice-pw");
    assert_eq!(outcome(&r), "success", "{r:?}");
    assert_eq!(
        binds_from([127, 0, 0, 52], &proxy, &alice_dn(), &["alice-pw"]),
        vec![0]
    );
    // A bind by sign-in ID is performed by ldapgate, which implements no
    // bind control: a critical one is refused (RFC 4511 §4.1.11).
    let mut s = connect_from([127, 0, 0, 53], proxy.addr());
    s.write_all(&bind_pdu_with_critical_control(
        1, "bob", "bob-pw", "1.2.3.4",
    ))
    .unwrap();
    assert_eq!(read_result_code(&mut s), 12);
}

#[test]
fn long_bind_names_cost_neither_a_lookup_nor_memory() {
    let slapd = Slapd::start();
    let proxy = proxy(&slapd, "binds_per_ip = \"100000/s\"", "");
    // Over MAX_BIND_NAME_BYTES (4 KiB) but within what a client may send
    // before a bind (64 KiB): refused as no DN, without a lookup.
    let huge = format!("uid={},{BASE_DN}", "a".repeat(60_000));
    assert_eq!(binds_from([127, 0, 0, 61], &proxy, &huge, &["x"]), vec![34]);
    // Distinct names under the cap that reach no entry are not remembered.
    let before = rss_kib(proxy.pid());
    let mut s = connect_from([127, 0, 0, 62], proxy.addr());
    for i in 0..2000u16 {
        let dn = format!("ou={}{i},{BASE_DN}", "b".repeat(4000));
        s.write_all(&bind_pdu(i + 1, &dn, "x")).unwrap();
        let code = read_result_code(&mut s);
        // Unknown names from one address share a budget: 5 wrong, then locked.
        assert!([49, 51, 53].contains(&code), "{code}");
    }
    let grown = rss_kib(proxy.pid()).saturating_sub(before);
    assert!(
        grown < 16 * 1024,
        "RSS grew by {grown} KiB for 2000 names of 4 KB"
    );
}

#[test]
fn a_bind_ends_what_the_directory_abandoned_without_ending_the_session() {
    let slapd = Slapd::start_with_database_lines(
        "moduleload syncprov\nindex entryCSN,entryUUID eq\noverlay syncprov\n",
    );
    let proxy = Proxy::start(
        ProxyConfig::ldaps(&slapd)
            .service_account(&slapd)
            .directory("operation_timeout = \"2s\""),
    );
    // A refreshAndPersist search (RFC 4533) never completes by itself; a bind
    // behind it makes slapd abandon it without a word (RFC 4511 §4.2.1).
    let sync_request = {
        let mut value = tlv(0x0a, &[3]); // refreshAndPersist
        value = tlv(0x30, &value);
        let mut control = tlv(0x04, b"1.3.6.1.4.1.4203.1.9.1.1");
        control.extend(tlv(0x01, &[0xff]));
        control.extend(tlv(0x04, &value));
        tlv(0x30, &control)
    };
    let mut search = tlv(0x04, BASE_DN.as_bytes());
    search.extend(tlv(0x0a, &[2]));
    search.extend(tlv(0x0a, &[0]));
    search.extend(tlv(0x02, &[0]));
    search.extend(tlv(0x02, &[0]));
    search.extend(tlv(0x01, &[0]));
    search.extend(tlv(0x87, b"objectClass"));
    search.extend(tlv(0x30, &tlv(0x04, b"1.1")));
    let mut msg = tlv(0x02, &[1]);
    msg.extend(tlv(0x63, &search));
    msg.extend(tlv(0xa0, &sync_request));
    let mut s = connect_from([127, 0, 0, 71], proxy.addr());
    s.write_all(&tlv(0x30, &msg)).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    s.write_all(&bind_pdu(2, &alice_dn(), "alice-pw")).unwrap();
    // Entries of the refresh phase may come first; then the BindResponse.
    assert_eq!(bind_code_after_other_responses(&mut s), 0);
    // Past operation_timeout, the session still serves.
    std::thread::sleep(Duration::from_millis(3000));
    s.write_all(&bind_pdu(3, &alice_dn(), "alice-pw")).unwrap();
    assert_eq!(bind_code_after_other_responses(&mut s), 0);
}

/// The result code of the next BindResponse on `s`, past other responses
/// (search entries); a Notice of Disconnection fails the test.
fn bind_code_after_other_responses(s: &mut impl Read) -> u8 {
    loop {
        let (tag, body) = read_tlv(s);
        assert_eq!(tag, 0x30);
        let mut rest = &body[..];
        let _ = read_tlv(&mut rest);
        let (op, content) = read_tlv(&mut rest);
        assert_ne!(
            op,
            0x78,
            "Notice of Disconnection: {}",
            String::from_utf8_lossy(&content)
        );
        if op == 0x61 {
            return read_tlv(&mut &content[..]).1[0];
        }
    }
}

#[test]
fn a_reload_that_changes_the_limits_unlocks_no_one() {
    let slapd = Slapd::start();
    let proxy = proxy(&slapd, "failures_before_lockout = 3", "");
    for _ in 0..3 {
        assert_eq!(
            outcome(&http_sign_in(&proxy, "carol", "wrong")),
            "invalid_credentials"
        );
    }
    let config = std::fs::read_to_string(&proxy.config_path).unwrap();
    std::fs::write(
        &proxy.config_path,
        config.replace(
            "failures_before_lockout = 3",
            "failures_before_lockout = 3\nbinds_per_ip = \"77/s\"",
        ),
    )
    .unwrap();
    send_signal(proxy.pid(), "HUP");
    proxy.wait_for_log("configuration reloaded");
    let r = http_sign_in(&proxy, "carol", "carol-pw");
    assert_eq!(outcome(&r), "account_locked", "{r:?}");
    let dn = format!("uid=carol,ou=people,{BASE_DN}");
    assert_eq!(
        binds_from([127, 0, 0, 81], &proxy, &dn, &["carol-pw"]),
        vec![53]
    );
}

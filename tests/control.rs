//! The HTTPS control channel: POST /v1/authenticate with curl as the client.

mod common;

use common::*;
use serde_json::json;

const TOKEN: &str = "test-token-0123456789";

fn proxy(slapd: &Slapd, sections: &str) -> Proxy {
    Proxy::start(
        ProxyConfig::ldaps(slapd)
            .service_account(slapd)
            .section(sections)
            .control(TOKEN),
    )
}

fn login(proxy: &Proxy, login: &str, password: &str) -> HttpReply {
    let body = json!({ "login": login, "password": password }).to_string();
    control_request(proxy, "POST", "/v1/authenticate", Some(TOKEN), Some(&body))
}

#[test]
fn authenticate_over_https() {
    let slapd = Slapd::start_with_ppolicy();
    let mut proxy = proxy(&slapd, "");
    let ok = login(&proxy, "+8613800000002", "bob-pw");
    assert_eq!(ok.status, 200, "{ok:?}");
    let v = ok.json();
    assert_eq!(v["outcome"], "success");
    assert_eq!(v["dn"], format!("uid=bob,ou=people,{BASE_DN}"));
    assert_eq!(v["attributes"]["uid"][0], "bob");

    let wrong = login(&proxy, "bob", "nope");
    assert_eq!(
        (wrong.status, wrong.json()["outcome"].as_str()),
        (401, Some("invalid_credentials"))
    );
    let ambiguous = login(&proxy, "+8613800009999", "dup1-pw");
    assert_eq!(
        (ambiguous.status, ambiguous.json()["outcome"].as_str()),
        (401, Some("ambiguous_login"))
    );
    let expired = login(&proxy, "pp-expired", "pp-expired-pw");
    assert_eq!(
        (expired.status, expired.json()["outcome"].as_str()),
        (403, Some("password_expired"))
    );
    let reset = login(&proxy, "pp-reset", "pp-reset-pw");
    assert_eq!(
        (reset.status, reset.json()["outcome"].as_str()),
        (403, Some("password_must_change"))
    );

    // The audit line names the outcome and never the password or the login.
    let log = proxy.log();
    assert!(log.contains("ldapgate::audit"), "{log}");
    assert!(
        log.contains("outcome=\"ambiguous_login\"") || log.contains("outcome=ambiguous_login"),
        "{log}"
    );
    assert!(
        !log.contains("bob-pw") && !log.contains("dup1-pw"),
        "password in log:\n{log}"
    );
    assert!(!log.contains("+8613800000002"), "login in log:\n{log}");
    proxy.assert_alive();
}

#[test]
fn wrong_or_missing_token_gets_401_with_no_detail() {
    let slapd = Slapd::start();
    let proxy = proxy(&slapd, "");
    let body = json!({ "login": "alice", "password": "alice-pw" }).to_string();
    for token in [None, Some("wrong-token"), Some("")] {
        let r = control_request(&proxy, "POST", "/v1/authenticate", token, Some(&body));
        assert_eq!(r.status, 401, "{r:?}");
        assert!(r.body.is_empty(), "{r:?}");
    }
}

#[test]
fn bad_bodies_get_400_naming_the_field() {
    let slapd = Slapd::start();
    let proxy = proxy(&slapd, "");
    let r = control_request(
        &proxy,
        "POST",
        "/v1/authenticate",
        Some(TOKEN),
        Some(r#"{"login":"alice"}"#),
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(
        r.json()["detail"].as_str().unwrap().contains("password"),
        "{r:?}"
    );
    let r = control_request(
        &proxy,
        "POST",
        "/v1/authenticate",
        Some(TOKEN),
        Some(r#"{"login":1,"password":"x"}"#),
    );
    assert_eq!(r.status, 400);
    assert!(
        r.json()["detail"].as_str().unwrap().contains("login"),
        "{r:?}"
    );
    let r = control_request(
        &proxy,
        "POST",
        "/v1/authenticate",
        Some(TOKEN),
        Some("not json"),
    );
    assert_eq!(r.status, 400);
}

#[test]
fn rate_limited_logins_get_429_with_retry_after() {
    let slapd = Slapd::start();
    let proxy = proxy(
        &slapd,
        "[ratelimit]\nbinds_per_ip = \"2/m\"\nbinds_per_identity = \"100/s\"",
    );
    assert_eq!(login(&proxy, "alice", "alice-pw").status, 200);
    assert_eq!(login(&proxy, "alice", "alice-pw").status, 200);
    let limited = login(&proxy, "alice", "alice-pw");
    assert_eq!(limited.status, 429, "{limited:?}");
    assert_eq!(limited.json()["outcome"], "rate_limited");
    let after: u64 = limited
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=30).contains(&after), "{after}");
}

// A full control channel closes its oldest connection that has not completed
// an authenticated request: tests/http_bounds.rs.

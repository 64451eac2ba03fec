//! The daemon as operators run it: Prometheus metrics after real traffic,
//! health and readiness probes, SIGHUP reload under a live session,
//! SIGTERM drain during a search, and the systemd unit's hardening.

mod common;

use common::*;
use std::time::Duration;

const ALICE: &str = "uid=alice,ou=people,dc=example,dc=com";

fn metrics_section(port: u16) -> String {
    format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n")
}

fn scrape(port: u16) -> String {
    let (status, head, body) = http_get(port, "/metrics");
    assert_eq!(status, 200, "{head}\n{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    body
}

/// Seconds from now until the first certificate in `pem` expires.
fn expiry_in_seconds(pem: &std::path::Path) -> f64 {
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::CertificateDer::from_pem_file(pem).unwrap();
    let not_after = ldapgate::tls::pin::expiry_of(&der).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    (not_after - now) as f64
}

fn value(text: &str, series: &str) -> f64 {
    metric(text, series).unwrap_or_else(|| panic!("{series} not in\n{text}"))
}

#[tokio::test]
async fn metrics_move_with_real_traffic_and_carry_no_personal_labels() {
    let slapd = Slapd::start();
    let port = free_port();
    let token = "metrics-token";
    let proxy = Proxy::start(
        ProxyConfig::ldaps(&slapd)
            .service_account(&slapd)
            .section(&metrics_section(port))
            .section("[ratelimit]\nfailures_before_lockout = 2\n")
            .control(token),
    );
    // The fixture's start-up probe connects once; wait until it is counted.
    let connections = "ldapgate_connections_total{directory=\"default\",listener=\"ldap\"}";
    let mut before = scrape(port);
    for _ in 0..100 {
        if metric(&before, connections).is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        before = scrape(port);
    }
    assert_eq!(
        metric(
            &before,
            "ldapgate_operations_total{directory=\"default\",op=\"search\",result=\"success\"}"
        ),
        None,
        "no traffic yet:\n{before}"
    );
    let upstream = slapd.ldaps_url();
    assert_eq!(
        value(
            &before,
            &format!("ldapgate_upstream_up{{directory=\"default\",server=\"{upstream}\"}}")
        ),
        1.0
    );

    // LDAP: a bind, three searches, a wrong password, on one connection.
    let mut ldap = connect(&proxy.ldap_url(), None, false).await;
    assert_eq!(ldap.simple_bind(ALICE, "alice-pw").await.unwrap().rc, 0);
    for _ in 0..3 {
        search_ok(
            &mut ldap,
            BASE_DN,
            ldap3::Scope::Base,
            "(objectClass=*)",
            &["dc"],
        )
        .await;
    }
    assert_eq!(ldap.simple_bind(ALICE, "wrong").await.unwrap().rc, 49);
    let _ = ldap.unbind().await;

    // Control channel: one sign-in, then wrong passwords until ldapgate's
    // own lockout refuses (two failures lock).
    let ok = r#"{"login":"alice","password":"alice-pw"}"#;
    assert_eq!(
        control_request(&proxy, "POST", "/v1/authenticate", Some(token), Some(ok)).status,
        200
    );
    let wrong = r#"{"login":"bob","password":"nope"}"#;
    for _ in 0..3 {
        control_request(&proxy, "POST", "/v1/authenticate", Some(token), Some(wrong));
    }
    let full = control_request(&proxy, "GET", "/v1/sync/full", Some(token), None);
    assert_eq!(full.status, 200);

    let text = scrape(port);
    let v = |series: &str| value(&text, series);
    assert_eq!(
        v("ldapgate_operations_total{directory=\"default\",op=\"search\",result=\"success\"}"),
        3.0
    );
    assert_eq!(
        v("ldapgate_operation_duration_seconds_count{directory=\"default\",op=\"search\"}"),
        3.0
    );
    assert!(
        v("ldapgate_operation_duration_seconds_sum{directory=\"default\",op=\"search\"}") > 0.0
    );
    assert_eq!(
        v("ldapgate_operations_total{directory=\"default\",op=\"bind\",result=\"success\"}"),
        1.0
    );
    assert_eq!(
        v("ldapgate_binds_total{directory=\"default\",result=\"success\"}"),
        1.0,
        "{text}"
    );
    assert_eq!(
        v("ldapgate_binds_total{directory=\"default\",result=\"invalidCredentials\"}"),
        1.0
    );
    assert_eq!(v(connections) - value(&before, connections), 1.0);
    assert_eq!(
        v("ldapgate_connections_active{directory=\"default\",listener=\"ldap\"}"),
        0.0
    );
    assert_eq!(
        v("ldapgate_auth_total{directory=\"default\",outcome=\"success\"}"),
        1.0
    );
    assert_eq!(
        v("ldapgate_auth_total{directory=\"default\",outcome=\"invalid_credentials\"}"),
        2.0
    );
    assert_eq!(
        v("ldapgate_auth_total{directory=\"default\",outcome=\"account_locked\"}"),
        1.0
    );
    assert_eq!(
        v("ldapgate_ratelimit_rejections_total{directory=\"default\",reason=\"lockout\"}"),
        1.0
    );
    // bob's two wrong passwords locked him once.
    assert_eq!(v("ldapgate_lockouts_total{directory=\"default\"}"), 1.0);
    assert_eq!(
        v("ldapgate_sync_runs_total{directory=\"default\",kind=\"full\",result=\"success\"}"),
        1.0
    );
    assert!(v("ldapgate_sync_last_success_timestamp_seconds{directory=\"default\"}") > 1.7e9);
    let version = format!(
        "ldapgate_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(v(&version), 1.0);
    // Seconds left on slapd's certificate, as ldapgate saw it in the handshake.
    let upstream_expiry = v(&format!(
        "ldapgate_certificate_expiry_seconds{{directory=\"default\",server=\"{upstream}\"}}"
    ));
    let expected = expiry_in_seconds(&slapd.certs.cert_pem);
    assert!(
        (upstream_expiry - expected).abs() < 120.0,
        "{upstream_expiry} vs {expected}"
    );
    assert!(v("ldapgate_certificate_expiry_seconds{directory=\"\",server=\"listener\"}") > 0.0);
    assert!(v("ldapgate_certificate_expiry_seconds{directory=\"\",server=\"control\"}") > 0.0);
    let open: f64 = ["idle", "in_use"]
        .iter()
        .map(|state| {
            v(&format!(
                "ldapgate_upstream_pool_connections{{directory=\"default\",server=\"{upstream}\",state=\"{state}\"}}"
            ))
        })
        .sum();
    assert!(
        open >= 1.0,
        "connections to the directory stay open:\n{text}"
    );
    for personal in ["alice", "bob", "uid=", "dc=example"] {
        assert!(
            !text.to_ascii_lowercase().contains(personal),
            "`{personal}` in the metrics:\n{text}"
        );
    }
}

#[test]
fn health_and_readiness_follow_the_directory() {
    let mut slapd = Slapd::start();
    let port = free_port();
    let proxy = Proxy::start(
        ProxyConfig::ldaps(&slapd)
            .directory("health_check_interval = \"200ms\"")
            .section(&metrics_section(port)),
    );
    assert_eq!(http_get(port, "/healthz").0, 200);
    let (status, _, body) = http_get(port, "/readyz");
    assert_eq!((status, body.as_str()), (200, "ready\ndefault: ready\n"));

    slapd.stop();
    let wait_for = |want: u16| {
        let start = std::time::Instant::now();
        loop {
            let (status, _, body) = http_get(port, "/readyz");
            if status == want {
                return body;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "readyz stayed {status}: {body}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let body = wait_for(503);
    assert!(body.contains("no directory server is up"), "{body}");
    assert!(body.contains("default: not ready"), "{body}");
    assert_eq!(
        metric(
            &scrape(port),
            &format!(
                "ldapgate_upstream_up{{directory=\"default\",server=\"{}\"}}",
                slapd.ldaps_url()
            )
        ),
        Some(0.0)
    );
    assert_eq!(
        http_get(port, "/healthz").0,
        200,
        "the process still answers"
    );
    slapd.restart();
    wait_for(200);
    drop(proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_search_in_flight_finish_then_exits_0() {
    let slapd = Slapd::start();
    let mut proxy = Proxy::start(ProxyConfig::ldaps(&slapd));
    let mut ldap = connect(&proxy.ldap_url(), None, false).await;
    assert_eq!(ldap.simple_bind(ALICE, "alice-pw").await.unwrap().rc, 0);
    // The directory stops answering: the next search stays in flight.
    send_signal(slapd.pid(), "STOP");
    let search = tokio::spawn(async move {
        let result = ldap
            .search(
                &format!("ou=people,{BASE_DN}"),
                ldap3::Scope::Subtree,
                "(objectClass=inetOrgPerson)",
                vec!["uid"],
            )
            .await;
        (ldap, result)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    send_signal(proxy.pid(), "TERM");
    proxy.wait_for_log("shutting down");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        proxy.wait_exit(Duration::ZERO),
        None,
        "ldapgate waits for the search"
    );
    assert!(
        std::net::TcpStream::connect(proxy.addr()).is_err(),
        "no new connections while draining"
    );
    send_signal(slapd.pid(), "CONT");
    let (mut ldap, result) = search.await.unwrap();
    let (entries, done) = result.unwrap().success().unwrap();
    assert_eq!(done.rc, 0);
    assert_eq!(entries.len(), NAMED_USERS + GENERATED_USERS);
    let _ = ldap.unbind().await;
    let status = proxy
        .wait_exit(Duration::from_secs(10))
        .expect("ldapgate exits once the session ends");
    assert!(status.success(), "{status}\n{}", proxy.log());
    assert!(proxy.log().contains("stopped"), "{}", proxy.log());
}

/// On SIGTERM an idle LDAP client is told at once, in a Notice of
/// Disconnection (RFC 4511 §4.4.1), and ldapgate exits without waiting out
/// the 30 s drain for it (clients keep idle pooled connections, so every
/// stop used to take 31 s and end with a bare close).
#[test]
fn sigterm_tells_idle_clients_and_exits_at_once() {
    use std::io::{Read, Write};
    let slapd = Slapd::start();
    let mut proxy = Proxy::start(ProxyConfig::ldaps(&slapd));
    let mut idle = std::net::TcpStream::connect(proxy.addr()).unwrap();
    idle.write_all(&ldapgate::ldap::response::anonymous_bind_request(1))
        .unwrap();
    let mut bound = [0u8; 14];
    idle.read_exact(&mut bound).unwrap();
    let started = std::time::Instant::now();
    send_signal(proxy.pid(), "TERM");
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut notice = Vec::new();
    let _ = idle.read_to_end(&mut notice);
    let told = started.elapsed();
    assert!(
        String::from_utf8_lossy(&notice).contains("shutting down"),
        "a Notice of Disconnection: {notice:?}"
    );
    let status = proxy
        .wait_exit(Duration::from_secs(5))
        .expect("ldapgate exits at once");
    assert!(status.success(), "{status}");
    assert!(told < Duration::from_secs(3), "told after {told:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_certificate_and_pins_for_new_sessions_only() {
    let slapd = Slapd::start();
    let right_pin = spki_pin(&slapd.certs.cert_pem);
    let wrong_pin = format!("sha256/{}=", "A".repeat(43));
    let port = free_port();
    let proxy = Proxy::start(
        ProxyConfig::with_directory(format!(
            "servers = [\"{}\"]\npins = [\"{right_pin}\"]\nbase_dn = \"{BASE_DN}\"\n",
            slapd.ldaps_url()
        ))
        .section(&metrics_section(port)),
    );
    let mut live = connect(&proxy.ldaps_url(), Some(&proxy.certs), false).await;
    assert_eq!(live.simple_bind(ALICE, "alice-pw").await.unwrap().rc, 0);

    // A new listener certificate (another CA) and a pin the directory
    // does not match.
    let original = std::fs::read_to_string(&proxy.config_path).unwrap();
    let renewed = Certs::generate(&proxy.dir.path().join("renewed"), "ldapgate");
    let with = |pin: &str| {
        original
            .replace(
                &proxy.certs.cert_pem.display().to_string(),
                &renewed.cert_pem.display().to_string(),
            )
            .replace(
                &proxy.certs.key_pem.display().to_string(),
                &renewed.key_pem.display().to_string(),
            )
            .replace(&right_pin, pin)
    };
    std::fs::write(&proxy.config_path, with(&wrong_pin)).unwrap();
    send_signal(proxy.pid(), "HUP");
    proxy.wait_for_log("configuration reloaded");

    // The live session keeps its certificate and its directory connection.
    let entries = search_ok(&mut live, ALICE, ldap3::Scope::Base, "(objectClass=*)", &[]).await;
    assert_eq!(entries.len(), 1);
    // New sessions get the new certificate...
    let settings = ldap3::LdapConnSettings::new()
        .set_conn_timeout(Duration::from_secs(5))
        .set_config(proxy.certs.client_config());
    assert!(
        ldap3::LdapConnAsync::with_settings(settings, &proxy.ldaps_url())
            .await
            .is_err(),
        "the old CA no longer verifies the listener"
    );
    let mut fresh = connect(&proxy.ldaps_url(), Some(&renewed), false).await;
    // ...and the new pins, which the directory does not match.
    let refused = fresh.simple_bind(ALICE, "alice-pw").await.unwrap();
    assert_eq!(refused.rc, 52, "{refused:?}");
    assert!(refused.text.contains("pin"), "{}", refused.text);
    let text = scrape(port);
    let pin_failures = format!(
        "ldapgate_tls_pin_failures_total{{directory=\"default\",server=\"{}\"}}",
        slapd.ldaps_url()
    );
    assert!(value(&text, &pin_failures) >= 1.0, "{text}");
    assert_eq!(
        value(&text, "ldapgate_config_reloads_total{result=\"success\"}"),
        2.0,
        "start and one reload"
    );

    // An invalid file is rejected and changes nothing.
    std::fs::write(&proxy.config_path, "[server\nbroken").unwrap();
    send_signal(proxy.pid(), "HUP");
    proxy.wait_for_log("configuration not reloaded");
    assert!(
        value(
            &scrape(port),
            "ldapgate_config_reloads_total{result=\"error\"}"
        ) == 1.0
    );
    let mut again = connect(&proxy.ldaps_url(), Some(&renewed), false).await;
    assert_eq!(again.simple_bind(ALICE, "alice-pw").await.unwrap().rc, 52);

    // The right pin again: new sessions reach the directory.
    std::fs::write(&proxy.config_path, with(&right_pin)).unwrap();
    send_signal(proxy.pid(), "HUP");
    proxy.wait_for_log_times("configuration reloaded", 2);
    let mut healed = connect(&proxy.ldaps_url(), Some(&renewed), false).await;
    assert_eq!(healed.simple_bind(ALICE, "alice-pw").await.unwrap().rc, 0);
    let entries = search_ok(&mut live, ALICE, ldap3::Scope::Base, "(objectClass=*)", &[]).await;
    assert_eq!(
        entries.len(),
        1,
        "the first session lived through three reloads"
    );
}

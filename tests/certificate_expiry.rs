//! A certificate chain stops verifying when its first certificate expires,
//! whichever that is: `ldapgate verify`, `ldapgate fingerprint` and
//! `ldapgate_certificate_expiry_seconds` report the earliest `notAfter` of
//! the chain that is served and verified, and name that certificate. Real
//! slapd serving generated chains (root → intermediate → leaf).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const DAY: f64 = 86_400.0;

/// slapd serving leaf (`leaf_days`) + intermediate (`intermediate_days`),
/// the root in `slapd.certs.ca_pem`.
fn slapd_with_chain(intermediate_days: i64, leaf_days: i64) -> Slapd {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate_chain(&dir.path().join("tls"), "dc1", intermediate_days, leaf_days);
    Slapd::start_with_tls(dir, certs, "")
}

/// A configuration for `ldapgate verify` with these `[directory]` lines.
fn verify_config(slapd: &Slapd, directory: &str) -> PathBuf {
    let path = slapd
        .dir
        .path()
        .join(format!("verify-{}.toml", free_port()));
    std::fs::write(
        &path,
        format!(
            "[server]\nldap_listen = [\"127.0.0.1:{}\"]\n[directory]\n{directory}\n\
             base_dn = \"{BASE_DN}\"\nconnect_timeout = \"2s\"\n[sync]\nstate_dir = \"{}\"\n",
            free_port(),
            slapd.dir.path().join("state").display()
        ),
    )
    .unwrap();
    path
}

/// The `expiry` line `ldapgate verify` prints for `server`: (status, detail).
fn expiry_line(config: &Path, server: &str) -> (String, String) {
    let (_, lines, output) = verify(config);
    lines
        .into_iter()
        .find(|(_, s, check, _)| s == server && check == "expiry")
        .map(|(status, _, _, detail)| (status, detail))
        .unwrap_or_else(|| panic!("no expiry line for {server}:\n{output}"))
}

/// `verify`'s expiry line for `slapd`'s LDAPS port, trusting its root.
fn expiry_by_root(slapd: &Slapd) -> (String, String) {
    let server = slapd.ldaps_url();
    let cfg = verify_config(
        slapd,
        &format!(
            "servers = [\"{server}\"]\nca_file = \"{}\"",
            slapd.certs.ca_pem.display()
        ),
    );
    expiry_line(&cfg, &server)
}

/// The days figure in "expires in N days".
fn days_in(detail: &str) -> i64 {
    detail
        .split("expires in ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `expires in N days` in: {detail}"))
}

#[test]
fn verify_reports_the_intermediate_that_expires_before_the_leaf() {
    let slapd = slapd_with_chain(3, 90);
    let ca = slapd.certs.ca_pem.display();
    // Trusted by the root: the verified path is leaf → intermediate.
    for server in [slapd.ldaps_url(), slapd.ldap_url()] {
        let cfg = verify_config(
            &slapd,
            &format!("servers = [\"{server}\"]\nca_file = \"{ca}\""),
        );
        let (status, detail) = expiry_line(&cfg, &server);
        assert_eq!(status, "warn", "{server}: {detail}");
        assert!(
            (2..=3).contains(&days_in(&detail)),
            "3 days, not the leaf's 90: {detail}"
        );
        assert!(
            detail.contains("CN=dc1 intermediate CA"),
            "names the certificate that expires first: {detail}"
        );
        assert!(detail.contains("verified chain"), "{detail}");
    }
    // Trusted by a pin on the leaf alone: the served chain still stops
    // working for every other client when its intermediate expires.
    let pin = spki_pin(&slapd.certs.cert_pem);
    let server = slapd.ldaps_url();
    let cfg = verify_config(
        &slapd,
        &format!("servers = [\"{server}\"]\npins = [\"{pin}\"]"),
    );
    let (status, detail) = expiry_line(&cfg, &server);
    assert_eq!(status, "warn", "{detail}");
    assert!((2..=3).contains(&days_in(&detail)), "{detail}");
    assert!(detail.contains("CN=dc1 intermediate CA"), "{detail}");
    assert!(detail.contains("served chain"), "{detail}");
}

#[test]
fn a_leaf_that_expires_first_is_named_with_its_pin() {
    let (status, detail) = expiry_by_root(&slapd_with_chain(400, 20));
    assert_eq!(status, "warn", "{detail}");
    assert!((19..=20).contains(&days_in(&detail)), "{detail}");
    assert!(
        detail.contains("the leaf certificate CN=dc1.test"),
        "{detail}"
    );
    assert!(detail.contains("its pin"), "{detail}");

    // Far from expiry: ok, still the chain's date.
    let (status, detail) = expiry_by_root(&slapd_with_chain(200, 365));
    assert_eq!(status, "ok", "{detail}");
    assert!((199..=200).contains(&days_in(&detail)), "{detail}");
    assert!(detail.contains("CN=dc1 intermediate CA"), "{detail}");
}

#[test]
fn certificates_served_off_the_verified_path_do_not_count_against_a_ca() {
    // The server also sends stray certificates (another chain, expiring
    // tomorrow) that the path to the root does not use. slapd (GnuTLS)
    // drops such strays; `openssl s_server` sends what it is given.
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate_chain(&dir.path().join("tls"), "dc1", 400, 300);
    let stray = Certs::generate_chain(&dir.path().join("stray"), "stray", 1, 1);
    let served = std::fs::read_to_string(&certs.cert_pem).unwrap();
    let (leaf, intermediate) =
        served.split_at(served.find("-----END CERTIFICATE-----").unwrap() + 26);
    let leaf_pem = dir.path().join("leaf.pem");
    let chain_pem = dir.path().join("chain.pem");
    std::fs::write(&leaf_pem, leaf).unwrap();
    std::fs::write(
        &chain_pem,
        format!(
            "{intermediate}{}",
            std::fs::read_to_string(&stray.cert_pem).unwrap()
        ),
    )
    .unwrap();
    let chain_arg = chain_pem.display().to_string();
    let peer = OpensslServer::start(&leaf_pem, &certs.key_pem, &["-cert_chain", &chain_arg]);
    let server = peer.ldaps_url();
    let state = tempfile::tempdir().unwrap();
    let config = |trust: String| {
        let path = state.path().join(format!("verify-{}.toml", free_port()));
        std::fs::write(
            &path,
            format!(
                "[server]\nldap_listen = [\"127.0.0.1:{}\"]\n[directory]\nservers = [\"{server}\"]\n\
                 {trust}\nbase_dn = \"{BASE_DN}\"\nconnect_timeout = \"2s\"\n\
                 operation_timeout = \"1s\"\n[sync]\nstate_dir = \"{}\"\n",
                free_port(),
                state.path().display()
            ),
        )
        .unwrap();
        path
    };
    let cfg = config(format!("ca_file = \"{}\"", certs.ca_pem.display()));
    let (status, detail) = expiry_line(&cfg, &server);
    assert_eq!(status, "ok", "{detail}");
    assert!((299..=300).contains(&days_in(&detail)), "{detail}");
    assert!(
        detail.contains("the leaf certificate CN=dc1.test (1 of 2)"),
        "{detail}"
    );
    // With a pin alone nothing is chained: everything served counts.
    let cfg = config(format!("pins = [\"{}\"]", spki_pin(&leaf_pem)));
    let (status, detail) = expiry_line(&cfg, &server);
    assert_eq!(status, "warn", "{detail}");
    assert!((0..=1).contains(&days_in(&detail)), "{detail}");
    assert!(
        detail.contains("chain[2] CN=stray.test (3 of 4)"),
        "{detail}"
    );
}

#[test]
fn fingerprint_shows_when_the_served_chain_expires() {
    let slapd = slapd_with_chain(3, 90);
    let out = Command::new(ldapgate_binary())
        .args(["fingerprint", &format!("127.0.0.1:{}", slapd.ldaps_port)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let expires = report
        .lines()
        .find(|l| l.starts_with("expires:"))
        .unwrap_or_else(|| panic!("no `expires:` line in:\n{report}"));
    assert!(expires.contains("CN=dc1 intermediate CA"), "{report}");
    // The leaf's own date stays where it was, beside its pins.
    assert!(report.contains("pin (spki):"), "{report}");
    assert!(report.contains("not_after:"), "{report}");
}

#[test]
fn the_expiry_metric_is_the_verified_chains() {
    let slapd = slapd_with_chain(3, 90);
    let port = free_port();
    let _proxy = Proxy::start(
        ProxyConfig::ldaps(&slapd).section(&format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n")),
    );
    let series = format!(
        "ldapgate_certificate_expiry_seconds{{directory=\"default\",server=\"{}\"}}",
        slapd.ldaps_url()
    );
    let left = wait_for_metric(port, &series);
    assert!(
        left > 2.0 * DAY && left <= 3.0 * DAY,
        "the intermediate's 3 days, not the leaf's 90: {left}"
    );
}

#[test]
fn ldapgates_own_certificate_expiry_is_its_chains() {
    let slapd = Slapd::start();
    let port = free_port();
    let proxy = Proxy::start(
        ProxyConfig::ldaps(&slapd).section(&format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n")),
    );
    // The listener's certificate file becomes a chain whose intermediate
    // expires in 5 days; a reload serves it.
    let own = Certs::generate_chain(&proxy.dir.path().join("own"), "own", 5, 300);
    std::fs::copy(&own.cert_pem, &proxy.certs.cert_pem).unwrap();
    std::fs::copy(&own.key_pem, &proxy.certs.key_pem).unwrap();
    send_signal(proxy.pid(), "HUP");
    let series = "ldapgate_certificate_expiry_seconds{directory=\"\",server=\"listener\"}";
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = wait_for_metric(port, series);
        if left <= 5.0 * DAY {
            assert!(left > 4.0 * DAY, "{left}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "after the reload the listener's expiry is still {left} s:\n{}",
            proxy.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The value of `series` once ldapgate has recorded it (within 10 s).
fn wait_for_metric(port: u16, series: &str) -> f64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, _, body) = http_get(port, "/metrics");
        if let Some(v) = metric(&body, series) {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{series} not in\n{body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

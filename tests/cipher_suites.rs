//! Directories whose TLS rustls cannot speak, though other clients connect:
//! `ldapgate verify`, `ldapgate fingerprint` and the daemon name the cause
//! (no cipher suite in common, or a TLS version below 1.2), list the suites
//! each side offers, and `fingerprint` still prints the pins. Real peers:
//! `openssl s_server` limited to what a Windows Server 2012 R2 DC offers
//! with an RSA certificate, and slapd (GnuTLS) limited by TLSCipherSuite.

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Output};

/// What a Windows Server 2012 R2 DC offers with an RSA certificate, in
/// OpenSSL's names: ECDHE-RSA only with AES-CBC, AES-GCM only with DHE-RSA
/// or RSA key exchange.
const WINDOWS_2012_R2: &str =
    "ECDHE-RSA-AES256-SHA384:ECDHE-RSA-AES128-SHA256:DHE-RSA-AES256-GCM-SHA384:AES256-GCM-SHA384";

/// The same suites in IANA names, as ldapgate reports them.
const WINDOWS_2012_R2_IANA: [&str; 4] = [
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
];

/// slapd (GnuTLS) with ECDHE-ECDSA only with AES-CBC: the same kind of
/// directory with an ECDSA certificate.
const GNUTLS_CBC_ONLY: &str = "TLSCipherSuite NONE:+VERS-TLS1.2:+ECDHE-ECDSA:+AES-256-CBC:\
    +AES-128-CBC:+SHA384:+SHA256:+SHA1:+SIGN-ALL:+COMP-NULL:+GROUP-ALL";

fn ldapgate(args: &[&str]) -> Output {
    Command::new(ldapgate_binary()).args(args).output().unwrap()
}

/// `openssl s_client` completes a handshake and names the suite.
fn s_client_connects(port: u16, extra: &[&str]) -> String {
    let out = Command::new("openssl")
        .arg("s_client")
        .args(["-connect", &format!("127.0.0.1:{port}")])
        .args(extra)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.contains("Cipher is"))
        .unwrap_or_else(|| panic!("openssl s_client did not connect:\n{}", show(&out)));
    assert!(!line.contains("(NONE)"), "{}", show(&out));
    line.to_owned()
}

/// The `fingerprint` output for `target`: it read the certificate (its SPKI
/// pin is `pem`'s), says it cannot be used and exits 1.
fn fingerprint_names_the_cause(target: &[&str], pem: &Path) -> String {
    let out = ldapgate(&[&["fingerprint"], target].concat());
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        report.contains(&format!("pin (spki): {}", spki_pin(pem))),
        "prints the server's pin: {}",
        show(&out)
    );
    assert!(report.contains("pin (leaf): sha256:"), "{report}");
    report
        .lines()
        .find_map(|l| l.strip_prefix("usable:     no, "))
        .unwrap_or_else(|| panic!("no `usable: no` line:\n{report}"))
        .to_owned()
}

/// The message names the mismatch, ldapgate's suites and the server's.
fn assert_names_suites(message: &str, server_suites: &[&str]) {
    assert!(message.contains("no cipher suite in common"), "{message}");
    assert!(
        message.contains("ldapgate (rustls) offers")
            && message.contains("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384")
            && message.contains("TLS13_AES_256_GCM_SHA384"),
        "ldapgate's suites: {message}"
    );
    for suite in server_suites {
        assert!(message.contains(suite), "the server's {suite}: {message}");
    }
    assert!(message.contains("README"), "{message}");
    assert!(!message.contains("tls handshake eof"), "{message}");
}

/// `ldapgate verify` for one server: its `tls` line (status, detail).
fn verify_tls_line(dir: &Path, server: &str, trust: &str) -> (i32, String, String) {
    let config = dir.join(format!("verify-{}.toml", free_port()));
    std::fs::write(
        &config,
        format!(
            "[server]\nldap_listen = [\"127.0.0.1:{}\"]\n[directory]\nservers = [\"{server}\"]\n\
             {trust}\nbase_dn = \"{BASE_DN}\"\nconnect_timeout = \"3s\"\n\
             [sync]\nstate_dir = \"{}\"\n",
            free_port(),
            dir.join("state").display()
        ),
    )
    .unwrap();
    let out = ldapgate(&["verify", "-c", &config.display().to_string()]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.contains(server) && l.split_whitespace().nth(2) == Some("tls"))
        .unwrap_or_else(|| panic!("no tls line:\n{}", show(&out)));
    let status = line
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    (out.status.code().unwrap_or(-1), status, line.to_owned())
}

#[test]
fn a_windows_2012_r2_suite_list_is_named_and_its_pin_still_printed() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = rsa_certificate(dir.path(), "dc2012.test");
    let dc = OpensslServer::start(&cert, &key, &["-tls1_2", "-cipher", WINDOWS_2012_R2]);
    // The server is real and usable: OpenSSL clients connect.
    s_client_connects(dc.port, &[]);

    let message = fingerprint_names_the_cause(&[&format!("127.0.0.1:{}", dc.port)], &cert);
    assert_names_suites(&message, &WINDOWS_2012_R2_IANA);
    assert!(
        message.contains("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 in the SSL Cipher Suite Order"),
        "says what to enable on Windows: {message}"
    );

    // verify fails the tls check with the same diagnosis, whatever the trust.
    let pin = format!("pins = [\"{}\"]", spki_pin(&cert));
    let (code, status, line) = verify_tls_line(dir.path(), &dc.ldaps_url(), &pin);
    assert_eq!((code, status.as_str()), (1, "FAIL"), "{line}");
    assert_names_suites(&line, &WINDOWS_2012_R2_IANA);
}

#[test]
fn gcm_only_with_dhe_or_rsa_key_exchange_is_named_too() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = rsa_certificate(dir.path(), "dc-gcm.test");
    let suites = "DHE-RSA-AES128-GCM-SHA256:AES128-GCM-SHA256";
    let dc = OpensslServer::start(&cert, &key, &["-tls1_2", "-cipher", suites]);
    s_client_connects(dc.port, &[]);
    let message = fingerprint_names_the_cause(&[&format!("127.0.0.1:{}", dc.port)], &cert);
    assert_names_suites(
        &message,
        &[
            "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256 (finite-field DHE key exchange)",
            "TLS_RSA_WITH_AES_128_GCM_SHA256 (RSA key exchange)",
        ],
    );
}

#[test]
fn a_tls_1_0_directory_is_named_by_its_version() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = rsa_certificate(dir.path(), "dc2003.test");
    let legacy = ["-tls1", "-cipher", "ECDHE-RSA-AES128-SHA:@SECLEVEL=0"];
    let dc = OpensslServer::start(&cert, &key, &legacy);
    s_client_connects(dc.port, &["-tls1", "-cipher", "DEFAULT:@SECLEVEL=0"]);
    let message = fingerprint_names_the_cause(&[&format!("127.0.0.1:{}", dc.port)], &cert);
    assert!(
        message.contains("the server speaks at most TLS 1.0")
            && message.contains("requires TLS 1.2 or 1.3"),
        "{message}"
    );
}

#[test]
fn slapd_limited_to_cbc_suites_is_named_over_ldaps_and_starttls_and_by_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(&dir.path().join("tls"), "slapd");
    let slapd = Slapd::start_with_tls(dir, certs, GNUTLS_CBC_ONLY);
    // libldap clients connect over both.
    for args in [
        vec!["-x", "-H", &slapd.ldaps_url()],
        vec!["-x", "-ZZ", "-H", &slapd.ldap_url()],
    ] {
        let out = ldap_tool(
            "ldapwhoami",
            &slapd.certs.ca_pem,
            &[&args[..], &["-D", ADMIN_DN, "-w", ADMIN_PW]].concat(),
            None,
        );
        assert!(out.status.success(), "{args:?}: {}", show(&out));
    }
    let cbc = [
        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384 (CBC mode)",
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA (CBC mode)",
    ];
    for target in [
        vec![format!("127.0.0.1:{}", slapd.ldaps_port)],
        vec![
            format!("127.0.0.1:{}", slapd.ldap_port),
            "--starttls".into(),
        ],
    ] {
        let target: Vec<&str> = target.iter().map(String::as_str).collect();
        let message = fingerprint_names_the_cause(&target, &slapd.certs.cert_pem);
        assert_names_suites(&message, &cbc);
        assert!(message.contains("closed the connection"), "{message}");
        assert!(
            message.contains("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 and"),
            "the suites for its ECDSA key: {message}"
        );
    }

    // The daemon says the same in its log when the server is marked down.
    let proxy = Proxy::start(ProxyConfig::ldaps(&slapd));
    proxy.wait_for_log("no cipher suite in common");
}

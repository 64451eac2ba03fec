//! TLS on both legs: StartTLS and LDAPS listeners, upstream LDAPS and
//! StartTLS trusted by CA or by pins, pin mismatch, failover, and the
//! fingerprint command whose output is what `pins` accepts.

mod common;

use common::*;
use ldap3::exop::{WhoAmI, WhoAmIResp};
use std::process::Command;

const ALICE: &str = "uid=alice,ou=people,dc=example,dc=com";

async fn whoami_as_alice(url: &str, certs: Option<&Certs>, starttls: bool) -> String {
    let mut ldap = connect(url, certs, starttls).await;
    let res = ldap.simple_bind(ALICE, "alice-pw").await.unwrap();
    assert_eq!(res.rc, 0, "bind through {url}: {res:?}");
    ldap.extended(WhoAmI)
        .await
        .unwrap()
        .0
        .parse::<WhoAmIResp>()
        .authzid
}

fn fingerprint(args: &[&str]) -> std::process::Output {
    Command::new(ldapgate_binary())
        .arg("fingerprint")
        .args(args)
        .output()
        .unwrap()
}

fn pin_from(report: &str, label: &str) -> String {
    report
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| panic!("no `{label}` line in:\n{report}"))
}

#[tokio::test]
async fn starttls_and_ldaps_listeners() {
    let slapd = Slapd::start();
    let proxy = Proxy::start(ProxyConfig::ldaps(&slapd));
    let expected = format!("dn:{ALICE}");
    assert_eq!(
        whoami_as_alice(&proxy.ldap_url(), Some(&proxy.certs), true).await,
        expected
    );
    assert_eq!(
        whoami_as_alice(&proxy.ldaps_url(), Some(&proxy.certs), false).await,
        expected
    );
    // libldap over both, verifying ldapgate's certificate.
    for args in [
        vec!["-x", "-ZZ", "-H", &proxy.ldap_url()],
        vec!["-x", "-H", &proxy.ldaps_url()],
    ] {
        let mut args = args.clone();
        args.extend(["-D", ALICE, "-w", "alice-pw"]);
        let out = ldap_tool("ldapwhoami", &proxy.certs.ca_pem, &args, None);
        assert!(out.status.success(), "{}", show(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), expected);
    }
    // A second StartTLS on an encrypted connection is refused.
    let out = ldap_tool(
        "ldapwhoami",
        &proxy.certs.ca_pem,
        &["-x", "-ZZ", "-H", &proxy.ldaps_url()],
        None,
    );
    assert!(!out.status.success(), "{}", show(&out));
}

#[tokio::test]
async fn upstream_starttls_with_ca() {
    let slapd = Slapd::start();
    let proxy = Proxy::start(ProxyConfig::with_directory(format!(
        "servers = [\"{}\"]\nstarttls = true\nca_file = \"{}\"\nbase_dn = \"{BASE_DN}\"\n",
        slapd.ldap_url(),
        slapd.certs.ca_pem.display()
    )));
    assert_eq!(
        whoami_as_alice(&proxy.ldap_url(), None, false).await,
        format!("dn:{ALICE}")
    );
    // Both legs are encrypted now, so a password change is allowed.
    let out = ldap_tool(
        "ldappasswd",
        &proxy.certs.ca_pem,
        &[
            "-x",
            "-ZZ",
            "-H",
            &proxy.ldap_url(),
            "-D",
            ALICE,
            "-w",
            "alice-pw",
            "-s",
            "alice-new",
        ],
        None,
    );
    assert!(out.status.success(), "{}", show(&out));
}

#[tokio::test]
async fn pins_printed_by_fingerprint_are_accepted_and_a_wrong_pin_is_refused() {
    let slapd = Slapd::start();
    let ldaps_target = format!("127.0.0.1:{}", slapd.ldaps_port);
    let out = fingerprint(&[&ldaps_target]);
    assert!(out.status.success(), "{}", show(&out));
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(report.contains("subject:    CN=slapd.test"), "{report}");
    assert!(report.contains("IP:127.0.0.1"), "{report}");
    assert!(report.contains("not_after:"), "{report}");
    let spki = pin_from(&report, "pin (spki):");
    let leaf = pin_from(&report, "pin (leaf):");
    assert!(
        spki.starts_with("sha256/") && leaf.starts_with("sha256:"),
        "{report}"
    );

    // Same certificate through StartTLS on the plain port.
    let out = fingerprint(&[&format!("127.0.0.1:{}", slapd.ldap_port), "--starttls"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        pin_from(&String::from_utf8_lossy(&out.stdout), "pin (leaf):"),
        leaf
    );

    // Each pin alone, with no CA, is enough trust.
    for pin in [&spki, &leaf] {
        let proxy = Proxy::start(ProxyConfig::with_directory(format!(
            "servers = [\"{}\"]\npins = [\"{pin}\"]\nbase_dn = \"{BASE_DN}\"\n",
            slapd.ldaps_url()
        )));
        assert_eq!(
            whoami_as_alice(&proxy.ldap_url(), None, false).await,
            format!("dn:{ALICE}"),
            "pin {pin}"
        );
    }

    // A wrong pin (plus a right CA) refuses the connection; the error names
    // the server and what it presented.
    let wrong = format!("sha256/{}", "A".repeat(43) + "=");
    let mut proxy = Proxy::start(ProxyConfig::with_directory(format!(
        "servers = [\"{}\"]\nca_file = \"{}\"\npins = [\"{wrong}\"]\nbase_dn = \"{BASE_DN}\"\n",
        slapd.ldaps_url(),
        slapd.certs.ca_pem.display()
    )));
    let mut ldap = connect(&proxy.ldap_url(), None, false).await;
    let res = ldap.simple_bind(ALICE, "alice-pw").await.unwrap();
    assert_eq!(res.rc, 52, "unavailable: {res:?}");
    assert!(res.text.contains(&slapd.ldaps_url()), "{}", res.text);
    assert!(
        res.text.contains(&spki),
        "names the presented SPKI pin: {}",
        res.text
    );
    assert!(
        proxy.log().contains("matches no configured pin"),
        "{}",
        proxy.log()
    );
    proxy.assert_alive();
}

#[tokio::test]
async fn untrusted_ca_is_refused() {
    let slapd = Slapd::start();
    let other = Certs::generate(&slapd.dir.path().join("other"), "other");
    let proxy = Proxy::start(ProxyConfig::with_directory(format!(
        "servers = [\"{}\"]\nca_file = \"{}\"\nbase_dn = \"{BASE_DN}\"\n",
        slapd.ldaps_url(),
        other.ca_pem.display()
    )));
    let mut ldap = connect(&proxy.ldap_url(), None, false).await;
    let res = ldap.simple_bind(ALICE, "alice-pw").await.unwrap();
    assert_eq!(res.rc, 52, "{res:?}");
    assert!(res.text.contains("UnknownIssuer"), "{}", res.text);
}

#[tokio::test]
async fn fails_over_when_the_first_server_is_down() {
    let slapd = Slapd::start();
    let dead = format!("ldaps://127.0.0.1:{}", free_port());
    let mut proxy = Proxy::start(ProxyConfig::with_directory(format!(
            "servers = [\"{dead}\", \"{}\"]\nca_file = \"{}\"\nbase_dn = \"{BASE_DN}\"\nconnect_timeout = \"2s\"\n",
            slapd.ldaps_url(),
            slapd.certs.ca_pem.display()
        )));
    for _ in 0..3 {
        assert_eq!(
            whoami_as_alice(&proxy.ldap_url(), None, false).await,
            format!("dn:{ALICE}")
        );
    }
    assert!(
        proxy.log().contains("directory server is down"),
        "{}",
        proxy.log()
    );
    proxy.assert_alive();
}

#[tokio::test]
async fn all_servers_down_answers_unavailable_and_recovers() {
    let mut slapd = Slapd::start();
    let mut proxy =
        Proxy::start(ProxyConfig::ldaps(&slapd).directory("health_check_interval = \"1s\""));
    assert_eq!(
        whoami_as_alice(&proxy.ldap_url(), None, false).await,
        format!("dn:{ALICE}")
    );
    slapd.stop();
    let mut ldap = connect(&proxy.ldap_url(), None, false).await;
    let res = ldap.simple_bind(ALICE, "alice-pw").await.unwrap();
    assert_eq!(res.rc, 52, "{res:?}");
    assert!(
        res.text.contains("no directory server available"),
        "{}",
        res.text
    );
    // The same client session works again once the directory is back.
    slapd.restart();
    let res = ldap.simple_bind(ALICE, "alice-pw").await.unwrap();
    assert_eq!(res.rc, 0, "after restart: {res:?}");
    proxy.assert_alive();
}

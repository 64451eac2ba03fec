//! `ldapgate verify` and `POST /v1/verify` against a real slapd: every
//! check passes on a healthy directory, and each kind of trouble fails its
//! own check with a reason, the checks after it skipped.

mod common;

use common::*;
use serde_json::Value;
use std::path::PathBuf;

/// A configuration for `slapd` with `directory` lines after `servers`.
fn config(slapd: &Slapd, servers: &str, directory: &str) -> PathBuf {
    let dir = slapd.dir.path();
    let pw = dir.join("bind_password");
    std::fs::write(&pw, ADMIN_PW).unwrap();
    let path = dir.join(format!("verify-{}.toml", free_port()));
    std::fs::write(
        &path,
        format!(
            "[server]\nldap_listen = [\"127.0.0.1:{}\"]\n[directory]\nservers = [{servers}]\n\
             bind_dn = \"{ADMIN_DN}\"\nbind_password_file = \"{}\"\nconnect_timeout = \"2s\"\n{directory}\n\
             [sync]\nstate_dir = \"{}\"\n",
            free_port(),
            pw.display(),
            dir.join(format!("state-{}", free_port())).display()
        ),
    )
    .unwrap();
    path
}

fn status_of<'a>(lines: &'a [VerifyLine], server: &str, check: &str) -> (&'a str, &'a str) {
    lines
        .iter()
        .find(|(_, s, c, _)| s == server && c == check)
        .map(|(status, _, _, detail)| (status.as_str(), detail.as_str()))
        .unwrap_or_else(|| panic!("no {check} line for {server} in {lines:#?}"))
}

#[test]
fn every_check_passes_on_a_healthy_directory_and_the_fingerprint_is_compared() {
    let slapd = Slapd::start();
    let base = format!("ou=groups,{BASE_DN}");
    let cfg = config(
        &slapd,
        &format!("\"{}\"", slapd.ldaps_url()),
        &format!(
            "ca_file = \"{}\"\npins = [\"{}\"]\nbase_dn = \"{base}\"",
            slapd.certs.ca_pem.display(),
            spki_pin(&slapd.certs.cert_pem)
        ),
    );
    let server = slapd.ldaps_url();
    let (code, lines, out) = verify(&cfg);
    assert_eq!(code, 0, "{out}");
    assert_eq!(lines.len(), 6, "one line per check: {out}");
    for check in ["tcp", "tls", "pin", "expiry", "bind", "base_dn"] {
        assert_eq!(status_of(&lines, &server, check).0, "ok", "{check}: {out}");
    }
    assert!(status_of(&lines, &server, "base_dn")
        .1
        .contains("no fingerprint recorded yet"));
    assert!(status_of(&lines, &server, "bind").1.contains(ADMIN_DN));

    // The first pull records the fingerprint; verify compares, never records.
    let (_, pulled) = sync_full(&cfg);
    assert_eq!(pulled, 0);
    let (code, lines, out) = verify(&cfg);
    assert_eq!(code, 0, "{out}");
    assert!(
        status_of(&lines, &server, "base_dn")
            .1
            .contains("matches the recorded fingerprint"),
        "{out}"
    );
    // Same DN, another entry: the check fails and says what to do.
    let out = ldap_tool(
        "ldapmodify",
        &slapd.certs.ca_pem,
        &["-x", "-H", &slapd.ldap_url(), "-D", ADMIN_DN, "-w", ADMIN_PW],
        Some(&format!(
            "dn: {base}\nchangetype: delete\n\ndn: {base}\nchangetype: add\nobjectClass: organizationalUnit\nou: groups\n"
        )),
    );
    assert!(out.status.success(), "{}", show(&out));
    let (code, lines, out) = verify(&cfg);
    assert_eq!(code, 1, "{out}");
    let (status, detail) = status_of(&lines, &server, "base_dn");
    assert_eq!(status, "FAIL");
    assert!(detail.contains("sync rearm"), "{detail}");
}

#[test]
fn each_kind_of_trouble_fails_its_own_check() {
    let slapd = Slapd::start();
    let dead = format!("ldaps://127.0.0.1:{}", free_port());
    let wrong_pin = format!("sha256/{}=", "A".repeat(43));
    // A server that is down, then one whose certificate matches no pin.
    let cfg = config(
        &slapd,
        &format!("\"{dead}\", \"{}\"", slapd.ldaps_url()),
        &format!("pins = [\"{wrong_pin}\"]\nbase_dn = \"{BASE_DN}\""),
    );
    let (code, lines, out) = verify(&cfg);
    assert_eq!(code, 1, "{out}");
    assert_eq!(status_of(&lines, &dead, "tcp").0, "FAIL");
    assert_eq!(
        status_of(&lines, &dead, "bind"),
        ("skip", "TCP failed"),
        "{out}"
    );
    let live = slapd.ldaps_url();
    assert_eq!(status_of(&lines, &live, "tcp").0, "ok");
    let (status, detail) = status_of(&lines, &live, "pin");
    assert_eq!(status, "FAIL", "{out}");
    assert!(
        detail.contains(&spki_pin(&slapd.certs.cert_pem)),
        "names what it presented: {detail}"
    );
    assert_eq!(status_of(&lines, &live, "base_dn").0, "skip");

    // A wrong service password, then a base DN that does not exist.
    let cfg = config(
        &slapd,
        &format!("\"{live}\""),
        &format!(
            "ca_file = \"{}\"\nbase_dn = \"ou=nowhere,{BASE_DN}\"",
            slapd.certs.ca_pem.display()
        ),
    );
    std::fs::write(slapd.dir.path().join("bind_password"), "wrong").unwrap();
    let (code, lines, out) = verify(&cfg);
    assert_eq!(code, 1);
    let (status, detail) = status_of(&lines, &live, "bind");
    assert_eq!(status, "FAIL", "{out}");
    assert!(detail.contains("result 49"), "{detail}");
    std::fs::write(slapd.dir.path().join("bind_password"), ADMIN_PW).unwrap();
    let (code, lines, out) = verify(&cfg);
    assert_eq!(code, 1);
    assert_eq!(status_of(&lines, &live, "bind").0, "ok", "{out}");
    let (status, detail) = status_of(&lines, &live, "base_dn");
    assert_eq!(status, "FAIL");
    assert!(detail.contains("does not exist"), "{detail}");
}

#[test]
fn verify_over_the_control_channel() {
    let slapd = Slapd::start();
    let token = "verify-token";
    let proxy = Proxy::start(
        ProxyConfig::ldaps(&slapd)
            .service_account(&slapd)
            .control(token),
    );
    assert_eq!(
        control_request(&proxy, "POST", "/v1/verify", None, None).status,
        401
    );
    let r = control_request(&proxy, "POST", "/v1/verify", Some(token), None);
    assert_eq!(r.status, 200, "{r:?}");
    let report: Value = r.json();
    assert_eq!(report["ok"], true);
    let checks: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert_eq!(checks, ["tcp", "tls", "pin", "expiry", "bind", "base_dn"]);
    assert_eq!(report["checks"][2]["status"], "skip", "no pins configured");
    assert_eq!(report["checks"][4]["status"], "ok");
}

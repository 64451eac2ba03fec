//! The command line: exit codes and messages of check-config, run and
//! fingerprint, and the reference configuration kept in step with the parser.

mod common;

use common::*;
use std::process::Command;

fn ldapgate(args: &[&str]) -> std::process::Output {
    Command::new(ldapgate_binary()).args(args).output().unwrap()
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn check_config_accepts_a_valid_file() {
    let dir = tempfile::tempdir().unwrap();
    let pw = write(&dir, "pw", "secret\n");
    let config = write(
        &dir,
        "ok.toml",
        &format!(
            "[server]\nldap_listen = [\"127.0.0.1:1389\"]\n[directory]\nservers = [\"ldap://127.0.0.1:389\"]\n\
             starttls = false\nbase_dn = \"dc=example,dc=com\"\nbind_dn = \"cn=admin,dc=example,dc=com\"\n\
             bind_password_file = \"{pw}\"\n"
        ),
    );
    let out = ldapgate(&["check-config", "-c", &config]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).ends_with(": ok\n"));
}

#[test]
fn check_config_lists_every_problem_by_key_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        &dir,
        "bad.toml",
        "[server]\nldap_listen = [\"localhost\"]\nidle_timeout = \"forever\"\n\
         [directory]\nservers = [\"ftp://x\"]\nbase_dn = \"example.com\"\npins = [\"md5:00\"]\n",
    );
    let out = ldapgate(&["check-config", "-c", &config]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for key in [
        "server.ldap_listen[0]:",
        "server.idle_timeout:",
        "directory.servers[0]:",
        "directory.base_dn:",
        "directory.pins[0]:",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(key)),
            "no line for {key} in:\n{text}"
        );
    }
}

#[test]
fn run_with_a_bad_config_exits_2_before_listening() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write(
        &dir,
        "bad.toml",
        &format!(
            "[server]\nldap_listen = [\"127.0.0.1:{port}\"]\n[directory]\nservers = [\"ldap://127.0.0.1:1\"]\n\
             base_dn = \"dc=example,dc=com\"\nbind_dn = \"cn=a,dc=example,dc=com\"\n"
        ),
    );
    let out = ldapgate(&["run", "-c", &config]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("directory.bind_password_file"),
        "{}",
        show(&out)
    );
    let missing = ldapgate(&["run", "-c", "/nonexistent/ldapgate.toml"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/ldapgate.toml"));
}

#[test]
fn run_reports_a_port_it_cannot_bind() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let config = write(
        &dir,
        "taken.toml",
        &format!(
            "[server]\nldap_listen = [\"{addr}\"]\n[directory]\nservers = [\"ldap://127.0.0.1:1\"]\n\
             starttls = false\nbase_dn = \"dc=example,dc=com\"\nconnect_timeout = \"1s\"\n"
        ),
    );
    let out = ldapgate(&["run", "-c", &config]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("cannot listen on {addr}")),
        "{}",
        show(&out)
    );
}

#[test]
fn fingerprint_errors() {
    let out = ldapgate(&["fingerprint", "no-port-here"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let port = free_port();
    let out = ldapgate(&[
        "fingerprint",
        &format!("127.0.0.1:{port}"),
        "--timeout",
        "2s",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("127.0.0.1:{port}")),
        "{}",
        show(&out)
    );
}

#[test]
fn reference_config_has_only_known_keys() {
    let reference = concat!(env!("CARGO_MANIFEST_DIR"), "/config/ldapgate.toml");
    let out = ldapgate(&["check-config", "-c", reference]);
    let text = String::from_utf8_lossy(&out.stdout);
    // On a build machine its /etc and /run files do not exist; every other
    // kind of problem means the reference and the parser disagree.
    for line in text.lines() {
        assert!(
            line.contains("cannot read /etc/ldapgate/")
                || line.contains("cannot read /run/credentials/"),
            "reference config problem that is not a missing file: {line}\n{text}"
        );
    }
    assert!(text.lines().count() >= 1, "{}", show(&out));
}

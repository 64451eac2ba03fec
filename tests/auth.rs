//! Delegated authentication against a real slapd with the ppolicy overlay:
//! every outcome over `ldapgate authenticate`, hostile logins, and the
//! rate limits and lockout through the library's one code path.

mod common;

use common::*;
use ldapgate::auth::outcome::Outcome;
use ldapgate::auth::{Attempt, Authenticator};
use ldapgate::config::Config;
use ldapgate::metrics::DirectoryMetrics;
use ldapgate::ratelimit::BindLimiter;
use ldapgate::upstream::UpstreamPool;
use serde_json::Value;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A configuration for delegated auth against `slapd` over LDAPS.
fn auth_config(slapd: &Slapd, extra: &str) -> PathBuf {
    let pw = slapd.dir.path().join("bind_password");
    std::fs::write(&pw, ADMIN_PW).unwrap();
    let path = slapd.dir.path().join(format!("auth-{}.toml", free_port()));
    std::fs::write(
        &path,
        format!(
            "[server]\nldap_listen = [\"127.0.0.1:{}\"]\n[directory]\nservers = [\"{}\"]\nca_file = \"{}\"\n\
             base_dn = \"{BASE_DN}\"\nbind_dn = \"{ADMIN_DN}\"\nbind_password_file = \"{}\"\n{extra}\n",
            free_port(),
            slapd.ldaps_url(),
            slapd.certs.ca_pem.display(),
            pw.display()
        ),
    )
    .unwrap();
    path
}

/// `ldapgate authenticate`: the JSON verdict and the exit code.
fn cli(config: &Path, login: &str, password: &str) -> (Value, i32) {
    let mut child = Command::new(ldapgate_binary())
        .args(["authenticate", "-c"])
        .arg(config)
        .args(["--login", login])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    let json: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", show(&out)));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains(password) || password.is_empty(),
        "password in the log: {stderr}"
    );
    (json, out.status.code().unwrap_or(-1))
}

fn outcome(v: &Value) -> &str {
    v["outcome"].as_str().unwrap_or("<none>")
}

#[test]
fn every_sign_in_id_and_every_outcome_over_the_command_line() {
    let slapd = Slapd::start_with_ppolicy();
    let cfg = auth_config(&slapd, "");
    for login in [
        "alice",
        "+8613800000001",
        "alice@example.com",
        "E-alice",
        "ALICE",
    ] {
        let (v, code) = cli(&cfg, login, "alice-pw");
        assert_eq!((outcome(&v), code), ("success", 0), "{login}: {v}");
        assert_eq!(v["dn"], format!("uid=alice,ou=people,{BASE_DN}"));
        assert_eq!(v["attributes"]["mail"][0], "alice@example.com");
        assert!(v["id"].as_str().unwrap().len() == 36, "entryUUID: {v}");
    }
    // The same person by two attributes is one entry.
    let (v, _) = cli(&cfg, "pat", "pat-pw");
    assert_eq!(outcome(&v), "success", "{v}");

    // A wrong password and an unknown login look the same.
    let (wrong, code) = cli(&cfg, "alice", "nope");
    assert_eq!((outcome(&wrong), code), ("invalid_credentials", 1));
    let (unknown, _) = cli(&cfg, "nobody-here", "nope");
    assert_eq!(wrong, unknown);

    let (v, _) = cli(&cfg, "+8613800009999", "dup1-pw");
    assert_eq!(outcome(&v), "ambiguous_login", "{v}");

    let (v, _) = cli(&cfg, "pp-expired", "pp-expired-pw");
    assert_eq!(outcome(&v), "password_expired", "{v}");
    let (v, _) = cli(&cfg, "pp-reset", "pp-reset-pw");
    assert_eq!(outcome(&v), "password_must_change", "{v}");
    let (v, _) = cli(&cfg, "pp-grace", "pp-grace-pw");
    assert_eq!(outcome(&v), "success", "{v}");
    assert_eq!(v["warnings"]["grace_logins_remaining"], 1, "{v}");
    // The directory's own lockout: three wrong, then the right password.
    for _ in 0..3 {
        let (v, _) = cli(&cfg, "pp-locked", "wrong");
        assert_eq!(outcome(&v), "invalid_credentials", "{v}");
    }
    let (v, _) = cli(&cfg, "pp-locked", "pp-locked-pw");
    assert_eq!(outcome(&v), "account_locked", "{v}");
}

#[test]
fn empty_password_is_refused_before_any_network_io() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("dead.toml");
    // Nothing listens on the directory port: any I/O would say unavailable.
    std::fs::write(
        &cfg,
        format!(
            "[directory]\nservers = [\"ldaps://127.0.0.1:{}\"]\nbase_dn = \"{BASE_DN}\"\n",
            free_port()
        ),
    )
    .unwrap();
    let (v, code) = cli(&cfg, "alice", "");
    assert_eq!((outcome(&v), code), ("invalid_credentials", 1), "{v}");
    let (v, _) = cli(&cfg, "alice", "x");
    assert_eq!(outcome(&v), "directory_unavailable", "{v}");
}

async fn authenticator(slapd: &Slapd, extra: &str) -> Authenticator {
    let config = Config::load(&auth_config(slapd, extra)).unwrap();
    let config = config.only_directory().unwrap();
    let pool = UpstreamPool::new(&config.directory, DirectoryMetrics::new(&config.name)).unwrap();
    let limiter = BindLimiter::new(&config.ratelimit);
    Authenticator::new(config, pool, limiter)
}

async fn attempt(a: &Authenticator, login: &str, password: &str, client: [u8; 4]) -> Outcome {
    a.authenticate(&Attempt {
        login,
        password,
        client: IpAddr::from(client),
        channel: "test",
    })
    .await
    .outcome
}

#[tokio::test]
async fn hostile_logins_neither_inject_nor_crash() {
    let slapd = Slapd::start();
    let a = authenticator(
        &slapd,
        "[ratelimit]\nbinds_per_ip = \"1000/s\"\nbinds_per_identity = \"1000/s\"",
    )
    .await;
    let long = "a".repeat(10 * 1024);
    for login in [
        "*",
        "(",
        ")",
        "\\",
        "*)(uid=*",
        "alice)(|(uid=*",
        "al\\2aice",
        "al\0ice",
        "ålice😀",
        long.as_str(),
        "(&(objectClass=*))",
    ] {
        // A `*` that reached the directory as a wildcard would match every
        // user: ambiguous, not invalid.
        let o = attempt(&a, login, "alice-pw", [10, 0, 0, 1]).await;
        assert_eq!(
            o,
            Outcome::InvalidCredentials,
            "login {:?}",
            &login[..login.len().min(20)]
        );
    }
    assert_eq!(
        attempt(&a, "alice", "alice-pw", [10, 0, 0, 1]).await,
        Outcome::Success
    );
}

#[tokio::test]
async fn lockout_after_n_wrong_passwords_and_release_after_the_duration() {
    let slapd = Slapd::start();
    let a = authenticator(
        &slapd,
        "[ratelimit]\nbinds_per_ip = \"1000/s\"\nbinds_per_identity = \"1000/s\"\n\
         failures_before_lockout = 3\nlockout_duration = \"2s\"",
    )
    .await;
    for _ in 0..3 {
        assert_eq!(
            attempt(&a, "bob", "wrong", [10, 0, 0, 2]).await,
            Outcome::InvalidCredentials
        );
    }
    // Locked, whatever the password, and by any of bob's sign-in IDs.
    assert_eq!(
        attempt(&a, "bob", "bob-pw", [10, 0, 0, 2]).await,
        Outcome::AccountLocked
    );
    assert_eq!(
        attempt(&a, "bob@example.com", "bob-pw", [10, 0, 0, 3]).await,
        Outcome::AccountLocked
    );
    // Others are not affected.
    assert_eq!(
        attempt(&a, "carol", "carol-pw", [10, 0, 0, 2]).await,
        Outcome::Success
    );
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    assert_eq!(
        attempt(&a, "bob", "bob-pw", [10, 0, 0, 2]).await,
        Outcome::Success
    );
}

#[tokio::test]
async fn right_password_account_states_do_not_count_towards_lockout() {
    let slapd = Slapd::start_with_ppolicy();
    let a = authenticator(
        &slapd,
        "[ratelimit]\nbinds_per_ip = \"1000/s\"\nbinds_per_identity = \"1000/s\"\nfailures_before_lockout = 2",
    )
    .await;
    for _ in 0..4 {
        assert_eq!(
            attempt(&a, "pp-reset", "pp-reset-pw", [10, 0, 0, 4]).await,
            Outcome::PasswordMustChange
        );
    }
}

#[tokio::test]
async fn per_ip_rate_limit() {
    let slapd = Slapd::start();
    let a = authenticator(
        &slapd,
        "[ratelimit]\nbinds_per_ip = \"3/m\"\nbinds_per_identity = \"1000/s\"",
    )
    .await;
    for _ in 0..3 {
        assert_eq!(
            attempt(&a, "alice", "alice-pw", [10, 0, 0, 5]).await,
            Outcome::Success
        );
    }
    assert_eq!(
        attempt(&a, "alice", "alice-pw", [10, 0, 0, 5]).await,
        Outcome::RateLimited
    );
    assert_eq!(
        attempt(&a, "alice", "alice-pw", [10, 0, 0, 6]).await,
        Outcome::Success
    );
}

#[test]
fn audit_line_is_json_when_asked_and_never_holds_the_password() {
    let slapd = Slapd::start();
    let cfg = auth_config(&slapd, "");
    let mut child = Command::new(ldapgate_binary())
        .args(["--log-format", "json", "authenticate", "-c"])
        .arg(&cfg)
        .args(["--login", "carol"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "carol-pw").unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("carol-pw"), "{stderr}");
    let audit: Value = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["target"] == "ldapgate::audit")
        .unwrap_or_else(|| panic!("no JSON audit line in:\n{stderr}"));
    let f = &audit["fields"];
    assert_eq!(f["outcome"], "success");
    assert_eq!(f["dn"], format!("uid=carol,ou=people,{BASE_DN}"));
    assert_eq!(f["channel"], "cli");
    assert_eq!(f["login_hash"].as_str().unwrap().len(), 16);
    assert!(f["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(f["server"].as_str().unwrap().starts_with("ldaps://"));
}

#[tokio::test]
async fn ldap_binds_with_sign_in_ids_are_resolved_on_the_listener() {
    let slapd = Slapd::start_with_ppolicy();
    let mut proxy = Proxy::start(
        ProxyConfig::ldaps(&slapd)
            .service_account(&slapd)
            .section("[ratelimit]\nbinds_per_ip = \"1000/s\"\nfailures_before_lockout = 3\nlockout_duration = \"1m\""),
    );
    // libldap: bind by mobile number, then the session is alice.
    let out = ldap_tool(
        "ldapwhoami",
        &proxy.certs.ca_pem,
        &[
            "-x",
            "-H",
            &proxy.ldap_url(),
            "-D",
            "+8613800000001",
            "-w",
            "alice-pw",
        ],
        None,
    );
    assert!(out.status.success(), "{}\n{}", show(&out), proxy.log());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("dn:uid=alice,ou=people,{BASE_DN}")
    );

    // ldap3: by uid and by mail; operations then run as the user.
    let mut ldap = connect(&proxy.ldap_url(), None, false).await;
    ldap.simple_bind("bob@example.com", "bob-pw")
        .await
        .unwrap()
        .success()
        .unwrap();
    let who = ldap
        .extended(ldap3::exop::WhoAmI)
        .await
        .unwrap()
        .0
        .parse::<ldap3::exop::WhoAmIResp>();
    assert_eq!(who.authzid, format!("dn:uid=bob,ou=people,{BASE_DN}"));

    // Failures look like ordinary bind failures, and leave the session anonymous.
    let r = ldap.simple_bind("bob", "wrong").await.unwrap();
    assert_eq!(r.rc, 49, "{r:?}");
    let who = ldap
        .extended(ldap3::exop::WhoAmI)
        .await
        .unwrap()
        .0
        .parse::<ldap3::exop::WhoAmIResp>();
    assert_eq!(who.authzid, "");
    let r = ldap.simple_bind("nobody", "x").await.unwrap();
    assert_eq!(r.rc, 49, "{r:?}");
    let r = ldap.simple_bind("+8613800009999", "dup1-pw").await.unwrap();
    assert_eq!(r.rc, 49, "ambiguous: {r:?}");

    // ldapgate's own lockout on the LDAP path: unwillingToPerform, saying why.
    for _ in 0..3 {
        assert_eq!(ldap.simple_bind("carol", "wrong").await.unwrap().rc, 49);
    }
    let r = ldap.simple_bind("carol", "carol-pw").await.unwrap();
    assert_eq!(r.rc, 53, "{r:?}");
    assert!(r.text.contains("locked by ldapgate"), "{r:?}");
    assert!(proxy.log().contains("channel=\"ldap\""), "{}", proxy.log());
    proxy.assert_alive();
}

#[tokio::test]
async fn each_outcome_over_every_channel() {
    let slapd = Slapd::start_with_ppolicy();
    let token = "outcomes-token";
    let proxy = Proxy::start(
        ProxyConfig::ldaps(&slapd)
            .service_account(&slapd)
            .section("[ratelimit]\nbinds_per_ip = \"1000/s\"\nbinds_per_identity = \"1000/s\"\nfailures_before_lockout = 100")
            .control(token),
    );
    // Where the directory decided, an LDAP client gets what a bind by DN
    // straight to slapd gets; a login that names no entry gets what a
    // wrong password gets; an ambiguous login is ldapgate's own answer.
    let direct = |uid: &str, password: &str| {
        let (url, dn) = (slapd.ldaps_url(), format!("uid={uid},ou=people,{BASE_DN}"));
        let password = password.to_owned();
        async move { direct_bind(&url, &dn, &password).await }
    };
    let wrong_password = direct("nosuch", "x").await;
    assert_eq!(wrong_password.0, 49);
    for (login, password, outcome, ldap) in [
        (
            "alice",
            "alice-pw",
            "success",
            direct("alice", "alice-pw").await,
        ),
        (
            "+8613800000002",
            "bob-pw",
            "success",
            direct("bob", "bob-pw").await,
        ),
        // (pp-grace has two grace logins in all: tested on its own above.)
        (
            "alice",
            "wrong",
            "invalid_credentials",
            wrong_password.clone(),
        ),
        ("nobody", "x", "invalid_credentials", wrong_password.clone()),
        (
            "+8613800009999",
            "dup1-pw",
            "ambiguous_login",
            (49, "ambiguous login".into()),
        ),
        (
            "pp-expired",
            "pp-expired-pw",
            "password_expired",
            direct("pp-expired", "pp-expired-pw").await,
        ),
        // slapd accepts the bind and restricts the connection to a password
        // change (pwdReset): so does the session through ldapgate.
        (
            "pp-reset",
            "pp-reset-pw",
            "password_must_change",
            direct("pp-reset", "pp-reset-pw").await,
        ),
    ] {
        let got = sign_in_everywhere(&proxy, token, login, password).await;
        assert_everywhere(&got, login, outcome, &ldap);
    }
    // The directory's lockout (3 wrong), then the right password everywhere.
    for _ in 0..3 {
        let mut ldap = connect(&proxy.ldap_url(), None, false).await;
        assert_eq!(ldap.simple_bind("pp-locked", "wrong").await.unwrap().rc, 49);
    }
    let got = sign_in_everywhere(&proxy, token, "pp-locked", "pp-locked-pw").await;
    let locked = direct("pp-locked", "pp-locked-pw").await;
    assert_eq!(locked.0, 49);
    assert_everywhere(&got, "pp-locked", "account_locked", &locked);
}

#[tokio::test]
async fn a_bind_by_sign_in_id_answers_as_the_directory_with_its_policy_control() {
    let slapd = Slapd::start_with_ppolicy();
    let mut proxy = Proxy::start(
        ProxyConfig::ldaps(&slapd)
            .service_account(&slapd)
            .section("[ratelimit]\nbinds_per_ip = \"1000/s\"\nbinds_per_identity = \"1000/s\"\nfailures_before_lockout = 100"),
    );
    let dn = |uid: &str| format!("uid={uid},ou=people,{BASE_DN}");
    let through = |login: &str, password: &str, controls: Vec<ldap3::controls::RawControl>| {
        let (url, login, password) = (proxy.ldap_url(), login.to_owned(), password.to_owned());
        async move {
            let mut ldap = connect(&url, None, false).await;
            bind_as(&mut ldap, &login, &password, controls).await
        }
    };
    // With the password policy request control, the response control the
    // directory sends (expired: error 0; must change: error 2; a success:
    // an empty one) reaches the client as it left slapd.
    for (login, uid, password) in [
        ("pp-expired", "pp-expired", "pp-expired-pw"),
        ("pp-reset", "pp-reset", "pp-reset-pw"),
        ("+8613800000001", "alice", "alice-pw"),
        ("alice", "alice", "wrong"),
    ] {
        let direct = direct_bind_with(
            &slapd.ldaps_url(),
            &dn(uid),
            password,
            vec![ppolicy_request()],
        )
        .await;
        assert!(
            direct
                .2
                .iter()
                .any(|(t, _)| t == "1.3.6.1.4.1.42.2.27.8.5.1"),
            "{login}: slapd sends the control: {direct:?}"
        );
        assert_eq!(
            through(login, password, vec![ppolicy_request()]).await,
            direct,
            "{login}"
        );
        // Without it, none: ldapgate's own request for it stays its own.
        let direct = direct_bind_with(&slapd.ldaps_url(), &dn(uid), password, Vec::new()).await;
        assert_eq!(
            through(login, password, Vec::new()).await,
            direct,
            "{login}, no control"
        );
        assert!(direct.2.is_empty(), "{direct:?}");
    }
    // A critical password policy request is served (ldapgate asks the
    // directory for the control), not refused as an unknown critical control.
    let critical = ldap3::controls::RawControl {
        crit: true,
        ..ppolicy_request()
    };
    let direct = direct_bind_with(
        &slapd.ldaps_url(),
        &dn("pp-expired"),
        "pp-expired-pw",
        vec![critical.clone()],
    )
    .await;
    assert_eq!(
        through("pp-expired", "pp-expired-pw", vec![critical]).await,
        direct
    );
    // The pwdReset account is bound and restricted to a password change by
    // slapd itself, through ldapgate as directly.
    let mut ldap = connect(&proxy.ldap_url(), None, false).await;
    assert_eq!(
        bind_as(&mut ldap, "pp-reset", "pp-reset-pw", Vec::new())
            .await
            .0,
        0
    );
    let search = ldap
        .search(
            &dn("alice"),
            ldap3::Scope::Base,
            "(objectClass=*)",
            vec!["cn"],
        )
        .await
        .unwrap();
    assert_eq!(search.1.rc, 50, "{search:?}");
    assert!(search.1.text.contains("restricted"), "{search:?}");
    proxy.assert_alive();
}

//! One ldapgate in front of every directory of the tenant: a slapd
//! (`ldap`) and the Samba AD DC (`corp-ad`) at once, each with its own
//! listener, sign-in, sync state and health (issue 13).

mod common;

use common::samba::*;
use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const TOKEN: &str = "directories-token";

/// The `[[directories]]` entry of a slapd directory called `name`, served
/// on `port`, its sync state in `state`.
fn slapd_entry(name: &str, slapd: &Slapd, port: u16, state: &Path) -> String {
    let pw = slapd.dir.path().join("bind_password");
    std::fs::write(&pw, ADMIN_PW).unwrap();
    format!(
        "[[directories]]\nname = \"{name}\"\nldap_listen = [\"127.0.0.1:{port}\"]\n\
         servers = [\"{}\"]\nca_file = \"{}\"\nbase_dn = \"{BASE_DN}\"\n\
         bind_dn = \"{ADMIN_DN}\"\nbind_password_file = \"{}\"\nhealth_check_interval = \"200ms\"\n\
         [directories.sync]\nstate_dir = \"{}\"\n",
        slapd.ldaps_url(),
        slapd.certs.ca_pem.display(),
        pw.display(),
        state.display()
    )
}

/// The `[[directories]]` entry of the Samba AD DC, called `corp-ad`.
fn ad_entry(samba: &SambaAd, port: u16, state: &Path) -> String {
    format!(
        "[[directories]]\nname = \"corp-ad\"\nkind = \"ad\"\nldap_listen = [\"127.0.0.1:{port}\"]\n\
         servers = [\"ldaps://127.0.0.1:636\"]\npins = [\"{}\"]\nbase_dn = \"{AD_BASE_DN}\"\n\
         bind_dn = \"{AD_ADMIN_DN}\"\nbind_password_file = \"{}\"\n\
         [directories.signin]\nattributes = [\"sAMAccountName\", \"userPrincipalName\", \"mail\", \"mobile\"]\n\
         user_object_classes = [\"user\"]\n\
         [directories.ratelimit]\nbinds_per_ip = \"1000/s\"\nbinds_per_identity = \"1000/s\"\n\
         [directories.sync]\nstate_dir = \"{}\"\n",
        samba.pin,
        samba.bind_password_file.display(),
        state.display()
    )
}

/// ldapgate with `ldap` (slapd) on `files.ldap_port` and `corp-ad` on
/// `ad_port`, control channel and metrics on.
fn start_both(slapd: &Slapd, ad_port: u16, metrics_port: u16) -> (Proxy, String) {
    let files = ProxyFiles::new();
    let state = files.dir.path().join("state");
    let text = format!(
        "{}{}{}[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n{}",
        files.server_section(),
        slapd_entry("ldap", slapd, files.ldap_port, &state.join("ldap")),
        ad_entry(samba(), ad_port, &state.join("corp-ad")),
        files.control_section(TOKEN),
    );
    (Proxy::start_text(files, &text, true), text)
}

fn sign_in(proxy: &Proxy, path: &str, login: &str, password: &str) -> (u16, Value) {
    let body = json!({ "login": login, "password": password }).to_string();
    let r = control_request(proxy, "POST", path, Some(TOKEN), Some(&body));
    (r.status, r.json())
}

/// `ldapgate authenticate` on the proxy's configuration; its exit code and
/// standard output.
fn cli_sign_in(
    config: &Path,
    directory: Option<&str>,
    login: &str,
    password: &str,
) -> (i32, String, String) {
    let mut cmd = Command::new(ldapgate_binary());
    cmd.args(["authenticate", "-c"])
        .arg(config)
        .args(["--login", login]);
    if let Some(d) = directory {
        cmd.args(["--directory", d]);
    }
    let out = run_with_stdin(cmd, Some(&format!("{password}\n")));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Signs `login` in on `directory` over HTTP: the answer has `status`
/// and `outcome`.
fn expect_sign_in(
    proxy: &Proxy,
    directory: &str,
    login: &str,
    password: &str,
    status: u16,
    outcome: &str,
) {
    let path = format!("/v1/directories/{directory}/authenticate");
    let (got, v) = sign_in(proxy, &path, login, password);
    assert_eq!(
        (got, v["outcome"].as_str()),
        (status, Some(outcome)),
        "{login} on {directory}: {v}"
    );
}

async fn ldap_bind(port: u16, name: &str, password: &str) -> (i64, String) {
    let mut ldap = connect(&format!("ldap://127.0.0.1:{port}"), None, false).await;
    let r = ldap.simple_bind(name, password).await.unwrap();
    let _ = ldap.unbind().await;
    (i64::from(r.rc), r.text)
}

#[tokio::test]
async fn one_ldapgate_signs_in_to_slapd_and_active_directory_by_every_channel() {
    let slapd = Slapd::start();
    let ad_port = free_port();
    let (mut proxy, _) = start_both(&slapd, ad_port, free_port());

    // HTTP, scoped by directory.
    let (status, v) = sign_in(
        &proxy,
        "/v1/directories/ldap/authenticate",
        "alice",
        "alice-pw",
    );
    assert_eq!(
        (status, v["dn"].as_str()),
        (200, Some("uid=alice,ou=people,dc=example,dc=com")),
        "{v}"
    );
    let (status, v) = sign_in(
        &proxy,
        "/v1/directories/corp-ad/authenticate",
        "ada@example.com",
        "Ada!Passw0rd1",
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["dn"], format!("CN=ada,CN=Users,{AD_BASE_DN}"));
    // Typed AD outcomes through the AD directory.
    for (login, password, status, outcome) in [
        ("dis", "Dis!Passw0rd1", 403, "account_disabled"),
        ("exp", "Exp!Passw0rd1", 403, "account_expired"),
        ("mcp", "Mcp!Passw0rd1", 403, "password_must_change"),
    ] {
        let got = sign_in(
            &proxy,
            "/v1/directories/corp-ad/authenticate",
            login,
            password,
        );
        assert_eq!(
            (got.0, got.1["outcome"].as_str()),
            (status, Some(outcome)),
            "{login}: {}",
            got.1
        );
    }
    // A login of one directory is unknown to the other: a wrong password's
    // answer, as for any unknown login.
    expect_sign_in(
        &proxy,
        "corp-ad",
        "alice",
        "alice-pw",
        401,
        "invalid_credentials",
    );
    expect_sign_in(
        &proxy,
        "ldap",
        "ada",
        "Ada!Passw0rd1",
        401,
        "invalid_credentials",
    );

    // The unscoped path cannot know which directory: 400 naming both; an
    // unknown name is a 404 naming both.
    let (status, v) = sign_in(&proxy, "/v1/authenticate", "alice", "alice-pw");
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("directory_required")),
        "{v}"
    );
    assert_eq!(v["directories"], json!(["ldap", "corp-ad"]));
    let (status, v) = sign_in(
        &proxy,
        "/v1/directories/nope/authenticate",
        "alice",
        "alice-pw",
    );
    assert_eq!(
        (status, v["error"].as_str()),
        (404, Some("unknown_directory")),
        "{v}"
    );
    assert!(
        v["detail"].as_str().unwrap().contains("ldap, corp-ad"),
        "{v}"
    );

    // GET /v1/directories: both, ready.
    let r = control_request(&proxy, "GET", "/v1/directories", Some(TOKEN), None);
    assert_eq!(r.status, 200, "{r:?}");
    let list = r.json()["directories"].clone();
    let summary: Vec<(String, String, bool)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap().into(),
                d["kind"].as_str().unwrap().into(),
                d["ready"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("ldap".into(), "openldap".into(), true),
            ("corp-ad".into(), "ad".into(), true)
        ]
    );

    // The CLI, with --directory; without it the choice is named.
    let (code, out, _) = cli_sign_in(&proxy.config_path, Some("corp-ad"), "ada", "Ada!Passw0rd1");
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["outcome"],
        "success"
    );
    let (code, out, _) = cli_sign_in(&proxy.config_path, Some("ldap"), "bob", "bob-pw");
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = cli_sign_in(&proxy.config_path, Some("ldap"), "ada", "Ada!Passw0rd1");
    assert_eq!(
        (
            code,
            serde_json::from_str::<Value>(&out).unwrap()["outcome"].as_str()
        ),
        (1, Some("invalid_credentials"))
    );
    let (code, _, err) = cli_sign_in(&proxy.config_path, None, "ada", "Ada!Passw0rd1");
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--directory") && err.contains("ldap, corp-ad"),
        "{err}"
    );

    // LDAP binds by sign-in ID, each on its directory's listener.
    assert_eq!(
        ldap_bind(proxy.ldap_port, "alice", "alice-pw").await,
        (0, String::new())
    );
    assert_eq!(ldap_bind(ad_port, "ada", "Ada!Passw0rd1").await.0, 0);
    assert_eq!(
        ldap_bind(ad_port, "alice", "alice-pw").await.0,
        49,
        "alice is no AD login"
    );
    assert_eq!(
        ldap_bind(proxy.ldap_port, "ada", "Ada!Passw0rd1").await.0,
        49,
        "ada is no slapd login"
    );
    // A search on the AD listener reaches AD, on the other slapd.
    let mut ad = connect(&format!("ldap://127.0.0.1:{ad_port}"), None, false).await;
    ad.simple_bind("ada", "Ada!Passw0rd1")
        .await
        .unwrap()
        .success()
        .unwrap();
    let (entries, _) = ad
        .search(
            AD_BASE_DN,
            ldap3::Scope::Subtree,
            "(sAMAccountName=ada)",
            vec!["sAMAccountName"],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
    assert_eq!(entries.len(), 1);
    // Audit lines say which directory a sign-in was for.
    let log = proxy.log();
    for directory in ["ldap", "corp-ad"] {
        assert!(
            log.lines().any(|l| l.contains("authentication")
                && l.contains("ldapgate::audit")
                && l.contains(&format!("directory=\"{directory}\""))),
            "no audit line for {directory}:\n{log}"
        );
    }
    proxy.assert_alive();
}

/// The NDJSON of a full pull of `directory` over the control channel.
fn full_pull(proxy: &Proxy, directory: &str) -> Vec<Value> {
    let r = control_request(
        proxy,
        "GET",
        &format!("/v1/directories/{directory}/sync/full"),
        Some(TOKEN),
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    r.ndjson()
}

fn usernames(lines: &[Value], field: &str) -> Vec<String> {
    let mut names: Vec<String> = lines
        .iter()
        .filter(|l| l["type"] == "account")
        .filter_map(|l| l["fields"][field].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn pulls_and_verification_of_both_directories_and_one_directory_down() {
    let mut slapd = Slapd::start();
    let ad_port = free_port();
    let metrics_port = free_port();
    let (mut proxy, _) = start_both(&slapd, ad_port, metrics_port);

    // Full and changes pulls of each, each with its own cookie and state.
    let ldap_full = full_pull(&proxy, "ldap");
    let ad_full = full_pull(&proxy, "corp-ad");
    assert!(usernames(&ldap_full, "username").contains(&"alice".to_owned()));
    assert!(!usernames(&ldap_full, "username").contains(&"ada".to_owned()));
    assert_eq!(ldap_full.last().unwrap()["type"], "end");
    assert_eq!(
        ad_full.last().unwrap()["type"],
        "end",
        "{:?}",
        ad_full.last()
    );
    let ad_ids: Vec<&str> = ad_full
        .iter()
        .filter(|l| l["type"] == "account")
        .filter_map(|l| l["id"].as_str())
        .collect();
    assert!(
        !ad_ids.is_empty() && ad_ids.iter().all(|id| id.split('-').count() == 5),
        "objectGUIDs: {ad_ids:?}"
    );
    for (directory, full) in [("ldap", &ldap_full), ("corp-ad", &ad_full)] {
        let cookie = cookie_of(full);
        let r = control_request(
            &proxy,
            "GET",
            &format!("/v1/directories/{directory}/sync/changes?cookie={cookie}"),
            Some(TOKEN),
            None,
        );
        assert_eq!(r.status, 200, "{directory}: {r:?}");
        assert_eq!(
            r.ndjson().last().unwrap()["type"],
            "end",
            "{directory}: {r:?}"
        );
    }
    // A cookie of one directory means nothing to the other.
    let r = control_request(
        &proxy,
        "GET",
        &format!(
            "/v1/directories/corp-ad/sync/changes?cookie={}",
            cookie_of(&ldap_full)
        ),
        Some(TOKEN),
        None,
    );
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (409, Some("cookie_unknown")),
        "{r:?}"
    );
    let state = proxy.dir.path().join("state");
    assert!(state.join("ldap").is_dir() && state.join("corp-ad").is_dir());

    // verify: every directory from the CLI, one over HTTP.
    let out = Command::new(ldapgate_binary())
        .args(["verify", "--json", "-c"])
        .arg(&proxy.config_path)
        .output()
        .unwrap();
    let report: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)));
    assert_eq!(out.status.code(), Some(0), "{report}");
    let checked: std::collections::BTreeSet<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["directory"].as_str().unwrap())
        .collect();
    assert_eq!(checked.into_iter().collect::<Vec<_>>(), ["corp-ad", "ldap"]);
    let r = control_request(
        &proxy,
        "POST",
        "/v1/directories/corp-ad/verify",
        Some(TOKEN),
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.json()["checks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["directory"] == "corp-ad"));

    // Metrics carry the directory.
    let text = scrape(metrics_port);
    for series in [
        "ldapgate_sync_runs_total{directory=\"ldap\",kind=\"full\",result=\"success\"}",
        "ldapgate_sync_runs_total{directory=\"corp-ad\",kind=\"full\",result=\"success\"}",
        "ldapgate_upstream_up{directory=\"corp-ad\",server=\"ldaps://127.0.0.1:636\"}",
    ] {
        assert_eq!(metric(&text, series), Some(1.0), "{series} in\n{text}");
    }

    // slapd stops: only `ldap` is unavailable; AD sign-in goes on, and the
    // appliance stays ready while one directory is.
    slapd.stop();
    let start = Instant::now();
    loop {
        let (status, body) = {
            let (s, _, b) = http_get(metrics_port, "/readyz");
            (s, b)
        };
        if body.contains("ldap: not ready") {
            assert_eq!(status, 200, "{body}");
            assert!(body.contains("corp-ad: ready"), "{body}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "ldap still ready: {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    expect_sign_in(
        &proxy,
        "ldap",
        "alice",
        "alice-pw",
        503,
        "directory_unavailable",
    );
    expect_sign_in(&proxy, "corp-ad", "ada", "Ada!Passw0rd1", 200, "success");
    assert_eq!(ldap_bind(ad_port, "ada", "Ada!Passw0rd1").await.0, 0);
    let (code, out, _) = cli_sign_in(&proxy.config_path, Some("corp-ad"), "ada", "Ada!Passw0rd1");
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = cli_sign_in(&proxy.config_path, Some("ldap"), "alice", "alice-pw");
    assert_eq!(
        (
            code,
            serde_json::from_str::<Value>(&out).unwrap()["outcome"].as_str()
        ),
        (1, Some("directory_unavailable"))
    );
    proxy.assert_alive();
}

fn scrape(port: u16) -> String {
    let (status, _, body) = http_get(port, "/metrics");
    assert_eq!(status, 200);
    body
}

fn cookie_of(lines: &[Value]) -> String {
    lines.last().unwrap()["cookie"].as_str().unwrap().to_owned()
}

/// A subtree search on `ldap` from `base` finds one entry for `filter`.
async fn finds_one(ldap: &mut ldap3::Ldap, base: &str, filter: &str) {
    let (entries, _) = ldap
        .search(base, ldap3::Scope::Subtree, filter, vec!["dn"])
        .await
        .unwrap()
        .success()
        .unwrap();
    assert_eq!(entries.len(), 1, "{filter}");
}

#[tokio::test]
async fn a_reload_adds_a_directory_and_the_sessions_of_the_others_live_on() {
    let slapd = Slapd::start();
    let partners = Slapd::start();
    let ad_port = free_port();
    let metrics_port = free_port();
    let (mut proxy, text) = start_both(&slapd, ad_port, metrics_port);

    // A bound session on each directory, kept open across the reload.
    let mut on_ldap = connect(&proxy.ldap_url(), None, false).await;
    on_ldap
        .simple_bind("alice", "alice-pw")
        .await
        .unwrap()
        .success()
        .unwrap();
    let mut on_ad = connect(&format!("ldap://127.0.0.1:{ad_port}"), None, false).await;
    on_ad
        .simple_bind("ada", "Ada!Passw0rd1")
        .await
        .unwrap()
        .success()
        .unwrap();

    let partners_port = free_port();
    let state = proxy.dir.path().join("state").join("partners");
    let added = format!(
        "{text}{}",
        slapd_entry("partners", &partners, partners_port, &state)
    );
    std::fs::write(&proxy.config_path, added).unwrap();
    send_signal(proxy.pid(), "HUP");
    proxy.wait_for_log("configuration reloaded");
    assert!(proxy.log().contains("directory added"), "{}", proxy.log());
    assert!(
        !proxy.log().contains("directory changed"),
        "the other two were kept as they were: {}",
        proxy.log()
    );

    // The new directory serves at once, on its own listener and path.
    assert_eq!(
        ldap_bind(partners_port, "bob", "bob-pw").await,
        (0, String::new())
    );
    let (status, _) = sign_in(
        &proxy,
        "/v1/directories/partners/authenticate",
        "carol",
        "carol-pw",
    );
    assert_eq!(status, 200);
    // The sessions opened before are the same connections, still bound.
    finds_one(&mut on_ldap, BASE_DN, "(uid=alice)").await;
    finds_one(&mut on_ad, AD_BASE_DN, "(sAMAccountName=ada)").await;

    // A reload that removes `partners` and changes `ldap` stops the one's
    // listener and gives the other's new sessions the new settings.
    let changed = text.replace(
        "health_check_interval = \"200ms\"",
        "health_check_interval = \"300ms\"\noperation_timeout = \"9s\"",
    );
    std::fs::write(&proxy.config_path, changed).unwrap();
    send_signal(proxy.pid(), "HUP");
    proxy.wait_for_log_times("configuration reloaded", 2);
    let log = proxy.log();
    assert_eq!(log.matches("directory changed").count(), 1, "{log}");
    assert!(log.contains("directory removed"), "{log}");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", partners_port)).is_ok() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "partners still listening"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, v) = sign_in(
        &proxy,
        "/v1/directories/partners/authenticate",
        "carol",
        "carol-pw",
    );
    assert_eq!(status, 404, "{v}");
    let series = scrape(metrics_port);
    assert!(
        !series.contains("directory=\"partners\""),
        "a removed directory leaves no series: {series}"
    );
    assert!(series.contains("directory=\"corp-ad\""));

    // A reload whose new directory cannot listen (the port is taken)
    // changes nothing, and what it built leaves no series either.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let fourth = format!(
        "{text}{}",
        slapd_entry(
            "fourth",
            &partners,
            port,
            &proxy.dir.path().join("state/fourth")
        )
    );
    std::fs::write(&proxy.config_path, fourth).unwrap();
    send_signal(proxy.pid(), "HUP");
    proxy.wait_for_log("configuration not reloaded");
    assert!(
        proxy.log().contains("Address already in use"),
        "{}",
        proxy.log()
    );
    assert!(!scrape(metrics_port).contains("directory=\"fourth\""));
    let (status, _) = sign_in(
        &proxy,
        "/v1/directories/fourth/authenticate",
        "bob",
        "bob-pw",
    );
    assert_eq!(status, 404);
    assert_eq!(ldap_bind(proxy.ldap_port, "bob", "bob-pw").await.0, 0);
    // The sessions of before are still the same connections.
    finds_one(&mut on_ldap, BASE_DN, "(uid=bob)").await;
    finds_one(&mut on_ad, AD_BASE_DN, "(sAMAccountName=ada)").await;
    let _ = on_ldap.unbind().await;
    let _ = on_ad.unbind().await;
    proxy.assert_alive();
}

#[test]
fn the_single_directory_form_still_answers_unscoped_and_scoped_paths() {
    let slapd = Slapd::start();
    let proxy = Proxy::start(
        ProxyConfig::ldaps(&slapd)
            .service_account(&slapd)
            .control(TOKEN),
    );
    assert_eq!(
        sign_in(&proxy, "/v1/authenticate", "alice", "alice-pw").0,
        200
    );
    assert_eq!(
        sign_in(
            &proxy,
            "/v1/directories/default/authenticate",
            "alice",
            "alice-pw"
        )
        .0,
        200
    );
    let r = control_request(&proxy, "GET", "/v1/directories", Some(TOKEN), None);
    assert_eq!(r.json()["directories"][0]["name"], "default", "{r:?}");
    let (code, out, err) = cli_sign_in(&proxy.config_path, None, "alice", "alice-pw");
    assert_eq!(code, 0, "{out}{err}");
}

#[tokio::test]
async fn a_directory_whose_servers_never_answer_holds_up_no_other() {
    let slapd = Slapd::start();
    // Accepts TCP connections (the kernel does) and never says a word: a
    // TLS handshake with it waits for connect_timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let files = ProxyFiles::new();
    let state = files.dir.path().join("state");
    let stuck_port = free_port();
    let text = format!(
        "{}{}[[directories]]\nname = \"stuck\"\nldap_listen = [\"127.0.0.1:{stuck_port}\"]\n\
         servers = [\"ldaps://127.0.0.1:{silent_port}\", \"ldaps://127.0.0.1:{silent_port}\"]\n\
         ca_file = \"{}\"\nbase_dn = \"{BASE_DN}\"\nconnect_timeout = \"30s\"\n\
         [directories.sync]\nstate_dir = \"{}\"\n{}",
        files.server_section(),
        slapd_entry("ldap", &slapd, files.ldap_port, &state.join("ldap")),
        slapd.certs.ca_pem.display(),
        state.join("stuck").display(),
        files.control_section(TOKEN),
    );
    let started = Instant::now();
    let mut proxy = Proxy::start_text(files, &text, true);
    let took = started.elapsed();
    // Two servers of 30 s each, checked and then asked for the schema, held
    // the listeners for two minutes before.
    assert!(
        took < Duration::from_secs(15),
        "listening took {took:?}:\n{}",
        proxy.log()
    );
    assert!(
        proxy.log().contains("checking them in the background"),
        "{}",
        proxy.log()
    );
    assert_eq!(
        sign_in(
            &proxy,
            "/v1/directories/ldap/authenticate",
            "alice",
            "alice-pw"
        )
        .0,
        200
    );
    assert_eq!(ldap_bind(proxy.ldap_port, "alice", "alice-pw").await.0, 0);

    // A reload that keeps `stuck` as it was does not wait for it again.
    send_signal(proxy.pid(), "HUP");
    proxy.wait_for_log("configuration reloaded");
    // A stop is at once, even in the middle of a reload that rebuilds it.
    let changed = text.replace("connect_timeout = \"30s\"", "connect_timeout = \"29s\"");
    std::fs::write(&proxy.config_path, changed).unwrap();
    send_signal(proxy.pid(), "HUP");
    std::thread::sleep(Duration::from_millis(300));
    send_signal(proxy.pid(), "TERM");
    let status = proxy.wait_exit(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}:\n{}",
        proxy.log()
    );
    drop(silent);
}

#[tokio::test]
async fn each_directory_may_limit_its_own_clients() {
    let slapd = Slapd::start();
    let other = Slapd::start();
    let files = ProxyFiles::new();
    let state = files.dir.path().join("state");
    let (closed_port, open_port) = (free_port(), free_port());
    let with = |entry: String, name: &str, extra: &str| {
        entry.replace(
            &format!("name = \"{name}\"\n"),
            &format!("name = \"{name}\"\n{extra}\n"),
        )
    };
    let text = format!(
        "{}{}{}{}",
        files.server_section(),
        with(
            slapd_entry("ldap", &slapd, files.ldap_port, &state.join("ldap")),
            "ldap",
            "max_connections = 2"
        ),
        with(
            slapd_entry("closed", &other, closed_port, &state.join("closed")),
            "closed",
            "allowed_clients = [\"10.0.0.0/8\"]"
        ),
        slapd_entry("open", &other, open_port, &state.join("open")),
    );
    let proxy = Proxy::start_text(files, &text, false);
    // The start-up probe's connection holds a slot until its session ends.
    proxy.wait_for_log("session ended");
    // Two connections fill `ldap`'s own limit: a third is told busy (51)...
    let held: Vec<std::net::TcpStream> = (0..2)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", proxy.ldap_port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut third = std::net::TcpStream::connect(("127.0.0.1", proxy.ldap_port)).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let (tag, notice) = next_tlv(&mut third)
        .unwrap_or_else(|| panic!("no Notice of Disconnection:\n{}", proxy.log()));
    assert_eq!(tag, 0x30);
    // resultCode busy (51), and which limit.
    assert!(
        notice.windows(3).any(|w| w == [0x0a, 0x01, 51]),
        "{notice:?}"
    );
    assert!(
        String::from_utf8_lossy(&notice).contains("this directory"),
        "{notice:?}"
    );
    // ...while the other directories' clients get in.
    assert_eq!(
        ldap_bind(open_port, "bob", "bob-pw").await,
        (0, String::new())
    );
    // `closed` lets no loopback client in: closed before a byte.
    let mut refused = std::net::TcpStream::connect(("127.0.0.1", closed_port)).unwrap();
    refused
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert_eq!(
        std::io::Read::read(&mut refused, &mut byte).unwrap_or(0),
        0,
        "closed without an answer"
    );
    // A reload that raises the limit to 3 counts the two still open: one
    // more gets in, the next is told busy again.
    let raised = text.replace("max_connections = 2", "max_connections = 3");
    std::fs::write(&proxy.config_path, raised).unwrap();
    send_signal(proxy.pid(), "HUP");
    proxy.wait_for_log("configuration reloaded");
    let mut ldap = connect(&proxy.ldap_url(), None, false).await;
    ldap.simple_bind("alice", "alice-pw")
        .await
        .unwrap()
        .success()
        .unwrap();
    let mut fourth = std::net::TcpStream::connect(("127.0.0.1", proxy.ldap_port)).unwrap();
    fourth
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let (_, notice) =
        next_tlv(&mut fourth).unwrap_or_else(|| panic!("the fourth was let in:\n{}", proxy.log()));
    assert!(
        notice.windows(3).any(|w| w == [0x0a, 0x01, 51]),
        "{notice:?}"
    );
    let _ = ldap.unbind().await;
    drop(held);
    // A slot of `ldap` comes back when a connection ends.
    let start = Instant::now();
    loop {
        let mut ldap = connect(&proxy.ldap_url(), None, false).await;
        if ldap
            .simple_bind("alice", "alice-pw")
            .await
            .is_ok_and(|r| r.rc == 0)
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no slot came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

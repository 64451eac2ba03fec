//! Delegated authentication against a real Samba AD DC: sign-in by
//! sAMAccountName, userPrincipalName, mail and mobile, and the account
//! states AD reports through its `data XXX` sub-codes.

mod common;

use common::samba::*;
use common::*;
use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn ad_directory(samba: &SambaAd) -> String {
    let pw = samba.dir.join("ldapgate_bind_password");
    std::fs::write(&pw, AD_ADMIN_PW).unwrap();
    format!(
        "kind = \"ad\"\nservers = [\"ldaps://127.0.0.1:636\"]\npins = [\"{}\"]\nbase_dn = \"{AD_BASE_DN}\"\n\
         bind_dn = \"{AD_ADMIN_DN}\"\nbind_password_file = \"{}\"\n",
        samba.pin,
        pw.display()
    )
}

const AD_SIGNIN: &str =
    "[signin]\nattributes = [\"sAMAccountName\", \"userPrincipalName\", \"mail\", \"mobile\"]\n\
                         user_object_classes = [\"user\"]\n\
                         [ratelimit]\nbinds_per_ip = \"1000/s\"\nbinds_per_identity = \"1000/s\"\n";

fn config_file(samba: &SambaAd) -> PathBuf {
    let path = samba.dir.join(format!("ldapgate-{}.toml", free_port()));
    std::fs::write(
        &path,
        format!(
            "[server]\nldap_listen = [\"127.0.0.1:{}\"]\n[directory]\n{}\n{AD_SIGNIN}",
            free_port(),
            ad_directory(samba)
        ),
    )
    .unwrap();
    path
}

fn cli(config: &PathBuf, login: &str, password: &str) -> Value {
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
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", show(&out)))
}

#[test]
fn ad_user_signs_in_by_every_id_and_each_account_state_is_reported() {
    let samba = samba();
    let cfg = config_file(samba);
    for login in [
        "ada",
        "ada@example.com",
        "ada.lovelace@example.com",
        "+8613900000001",
    ] {
        let v = cli(&cfg, login, "Ada!Passw0rd1");
        assert_eq!(v["outcome"], "success", "{login}: {v}");
        assert_eq!(v["dn"], format!("CN=ada,CN=Users,{AD_BASE_DN}"));
        let id = v["id"].as_str().unwrap();
        // objectGUID as a GUID string: 8-4-4-4-12 hex digits.
        let groups: Vec<usize> = id.split('-').map(str::len).collect();
        assert_eq!(groups, vec![8, 4, 4, 4, 12], "{id}");
    }
    let wrong = cli(&cfg, "ada", "wrong");
    assert_eq!(wrong["outcome"], "invalid_credentials", "{wrong}");
    assert_eq!(
        cli(&cfg, "nobody", "x"),
        wrong,
        "unknown login looks like a wrong password"
    );
    for (login, password, outcome) in [
        ("dis", "Dis!Passw0rd1", "account_disabled"),
        ("exp", "Exp!Passw0rd1", "account_expired"),
        ("mcp", "Mcp!Passw0rd1", "password_must_change"),
    ] {
        let v = cli(&cfg, login, password);
        assert_eq!(v["outcome"], outcome, "{login}: {v}");
    }
}

#[test]
fn ad_lockout_is_reported_as_account_locked() {
    let samba = samba();
    let cfg = config_file(samba);
    // Three wrong passwords reach AD (ldapgate's own threshold is 5), and
    // AD locks the account: sub-code 775, whatever the password.
    for _ in 0..3 {
        assert_eq!(cli(&cfg, "lck", "wrong")["outcome"], "invalid_credentials");
    }
    let v = cli(&cfg, "lck", "Lck!Passw0rd1");
    assert_eq!(v["outcome"], "account_locked", "{v}");
}

#[tokio::test]
async fn ad_sign_in_over_https_and_over_an_ldap_bind() {
    let samba = samba();
    let token = "ad-test-token";
    let mut proxy = Proxy::start(
        ProxyConfig::with_directory(ad_directory(samba))
            .section(AD_SIGNIN)
            .control(token),
    );
    let body =
        serde_json::json!({ "login": "ada@example.com", "password": "Ada!Passw0rd1" }).to_string();
    let r = control_request(&proxy, "POST", "/v1/authenticate", Some(token), Some(&body));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["attributes"]["sAMAccountName"][0], "ada");
    let body = serde_json::json!({ "login": "dis", "password": "Dis!Passw0rd1" }).to_string();
    let r = control_request(&proxy, "POST", "/v1/authenticate", Some(token), Some(&body));
    assert_eq!(
        (r.status, r.json()["outcome"].as_str()),
        (403, Some("account_disabled")),
        "{r:?}"
    );

    // An LDAP client binding by sAMAccountName through ldapgate.
    let mut ldap = connect(&proxy.ldap_url(), None, false).await;
    ldap.simple_bind("ada", "Ada!Passw0rd1")
        .await
        .unwrap()
        .success()
        .unwrap();
    let r = ldap.simple_bind("mcp", "Mcp!Passw0rd1").await.unwrap();
    assert_eq!(
        (r.rc, r.text.as_str()),
        (49, "password must change"),
        "{r:?}"
    );
    proxy.assert_alive();
}

#[tokio::test]
async fn each_ad_outcome_over_every_channel() {
    let samba = samba();
    let token = "ad-outcomes-token";
    let proxy = Proxy::start(
        ProxyConfig::with_directory(ad_directory(samba))
            .section(AD_SIGNIN)
            .control(token),
    );
    for (login, password, outcome) in [
        ("ada", "Ada!Passw0rd1", "success"),
        ("+8613900000001", "Ada!Passw0rd1", "success"),
        ("wpw", "wrong", "invalid_credentials"),
        ("dis", "Dis!Passw0rd1", "account_disabled"),
        ("exp", "Exp!Passw0rd1", "account_expired"),
        ("mcp", "Mcp!Passw0rd1", "password_must_change"),
    ] {
        let got = sign_in_everywhere(&proxy, token, login, password).await;
        assert_everywhere(&got, login, outcome);
    }
}

#[tokio::test]
async fn ad_full_and_changes_pulls_use_object_guids() {
    let samba = samba();
    let token = "ad-sync-token";
    let proxy = Proxy::start(
        ProxyConfig::with_directory(ad_directory(samba))
            .section(AD_SIGNIN)
            .section(
                "[sync]\nstate_dir = \"STATE\"\n[sync.fields]\nusername = \"sAMAccountName\"\nemail = \"mail\"\n"
                    .replace("STATE", &samba.dir.join(format!("state-{}", free_port())).display().to_string())
                    .as_str(),
            )
            .control(token),
    );
    // A user of this test's own (the Samba instance is shared).
    let out = admin_tool(
        "ldapmodify",
        &[],
        Some(&format!(
            "dn: CN=syncu,CN=Users,{AD_BASE_DN}\nchangetype: add\nobjectClass: user\nsAMAccountName: syncu\n\
             mail: syncu@example.com\n"
        )),
    );
    assert!(out.status.success(), "{}", show(&out));
    let r = control_request(&proxy, "GET", "/v1/sync/full", Some(token), None);
    assert_eq!(r.status, 200, "{r:?}");
    let lines: Vec<Value> = r.ndjson();
    let end = lines.last().unwrap();
    assert_eq!(end["type"], "end", "{end}");
    let ada = lines
        .iter()
        .find(|l| l["fields"]["username"] == "ada")
        .expect("ada exported");
    assert_eq!(ada["fields"]["email"], "ada.lovelace@example.com");
    let user = lines
        .iter()
        .find(|l| l["fields"]["username"] == "syncu")
        .expect("syncu exported");
    let user_id = user["id"].as_str().unwrap().to_owned();
    assert_eq!(
        user_id.split('-').map(str::len).collect::<Vec<_>>(),
        vec![8, 4, 4, 4, 12]
    );
    let cookie = end["cookie"].as_str().unwrap().to_owned();

    // An OU, and the user moved into it.
    let out = admin_tool(
        "ldapmodify",
        &[],
        Some(&format!(
            "dn: OU=Sales,{AD_BASE_DN}\nchangetype: add\nobjectClass: organizationalUnit\nou: Sales\n\n\
             dn: CN=syncu,CN=Users,{AD_BASE_DN}\nchangetype: modrdn\nnewrdn: CN=syncu\ndeleteoldrdn: 1\nnewsuperior: OU=Sales,{AD_BASE_DN}\n"
        )),
    );
    assert!(out.status.success(), "{}", show(&out));
    let r = control_request(
        &proxy,
        "GET",
        &format!("/v1/sync/changes?cookie={cookie}"),
        Some(token),
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    let changes: Vec<Value> = r.ndjson();
    let user_changes: Vec<&Value> = changes
        .iter()
        .filter(|l| l["id"] == user_id.as_str())
        .collect();
    assert_eq!(user_changes.len(), 1, "{changes:#?}");
    assert_eq!(user_changes[0]["op"], "upsert");
    assert_eq!(
        user_changes[0]["dn"],
        format!("CN=syncu,OU=Sales,{AD_BASE_DN}")
    );
    let sales = changes
        .iter()
        .find(|l| l["type"] == "org" && l["fields"]["name"] == "Sales")
        .expect("Sales");
    assert_eq!(user_changes[0]["parent_id"], sales["id"]);
    assert!(!changes.iter().any(|l| l["op"] == "delete"), "{changes:#?}");
}

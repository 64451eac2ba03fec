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
    ad_directory_at(samba, AD_BASE_DN)
}

fn ad_directory_at(samba: &SambaAd, base_dn: &str) -> String {
    format!(
        "kind = \"ad\"\nservers = [\"ldaps://127.0.0.1:636\"]\npins = [\"{}\"]\nbase_dn = \"{base_dn}\"\n\
         bind_dn = \"{AD_ADMIN_DN}\"\nbind_password_file = \"{}\"\n",
        samba.pin,
        samba.bind_password_file.display()
    )
}

/// Samba's LDAPS port, for binds straight to AD.
const AD_LDAPS: &str = "ldaps://127.0.0.1:636";

/// The DN of a user created by the fixture.
fn ad_dn(user: &str) -> String {
    format!("CN={user},CN=Users,{AD_BASE_DN}")
}

/// What AD answers a wrong password (`data 52e`), asked of a name that is
/// no account so that no account's bad-password count grows.
async fn ad_wrong_password() -> (i64, String) {
    let answer = direct_bind(AD_LDAPS, &ad_dn("no-such-user"), "wrong").await;
    assert!(
        answer.0 == 49 && answer.1.contains("data 52e"),
        "{answer:?}"
    );
    answer
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
    // A password that must change: AD's own answer, sub-code and all, as
    // a bind by DN straight to AD gets it (issue 11, part 5).
    let r = ldap.simple_bind("mcp", "Mcp!Passw0rd1").await.unwrap();
    let direct = direct_bind(AD_LDAPS, &ad_dn("mcp"), "Mcp!Passw0rd1").await;
    assert_eq!((i64::from(r.rc), r.text.clone()), direct, "{r:?}");
    assert!(direct.1.contains("data 773"), "{direct:?}");
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
    // The LDAP bind answers as AD answers a bind by DN: code, and the
    // diagnostic with its `data NNN` sub-code (issue 11, part 5).
    let wrong_password = ad_wrong_password().await;
    for (login, password, outcome, ldap) in [
        ("ada", "Ada!Passw0rd1", "success", (0, String::new())),
        (
            "+8613900000001",
            "Ada!Passw0rd1",
            "success",
            (0, String::new()),
        ),
        (
            "wpw",
            "wrong",
            "invalid_credentials",
            wrong_password.clone(),
        ),
        (
            "nobody",
            "wrong",
            "invalid_credentials",
            wrong_password.clone(),
        ),
        (
            "dis",
            "Dis!Passw0rd1",
            "account_disabled",
            direct_bind(AD_LDAPS, &ad_dn("dis"), "Dis!Passw0rd1").await,
        ),
        (
            "exp",
            "Exp!Passw0rd1",
            "account_expired",
            direct_bind(AD_LDAPS, &ad_dn("exp"), "Exp!Passw0rd1").await,
        ),
        (
            "mcp",
            "Mcp!Passw0rd1",
            "password_must_change",
            direct_bind(AD_LDAPS, &ad_dn("mcp"), "Mcp!Passw0rd1").await,
        ),
    ] {
        let got = sign_in_everywhere(&proxy, token, login, password).await;
        assert_everywhere(&got, login, outcome, &ldap);
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
    // The domain controller's computer account is a user too, for AD; it
    // is not an account of the export.
    let computers: Vec<&Value> = lines
        .iter()
        .filter(|l| {
            l["fields"]["username"]
                .as_str()
                .is_some_and(|u| u.ends_with('$'))
        })
        .collect();
    assert!(computers.is_empty(), "{computers:#?}");
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
    // The move is an upsert only (other tests of this process change the
    // shared domain, so only this test's objects are looked at).
    let sales_id = sales["id"].as_str().unwrap();
    assert_eq!(
        changes.iter().filter(|l| l["id"] == sales_id).count(),
        1,
        "{changes:#?}"
    );
}

/// A config whose sync covers `base` only, pulled on the command line.
fn sync_config(samba: &SambaAd, base: &str) -> PathBuf {
    sync_config_with(samba, base, "")
}

/// [`sync_config`] with `extra` lines in `[sync]`.
fn sync_config_with(samba: &SambaAd, base: &str, extra: &str) -> PathBuf {
    let path = samba.dir.join(format!("sync-{}.toml", free_port()));
    let state = samba.dir.join(format!("state-{}", free_port()));
    std::fs::write(
        &path,
        format!(
            "[server]\nldap_listen = [\"127.0.0.1:{}\"]\n[directory]\n{}\n{AD_SIGNIN}\n\
             [sync]\nstate_dir = \"{}\"\npage_size = 5\n{extra}\n\
             [sync.fields]\nusername = \"sAMAccountName\"\nemail = \"mail\"\n",
            free_port(),
            ad_directory_at(samba, base),
            state.display()
        ),
    )
    .unwrap();
    path
}

fn ad_modify(ldif: &str) {
    let out = admin_tool("ldapmodify", &[], Some(ldif));
    assert!(out.status.success(), "{}", show(&out));
}

/// An account for the LDIF of a test: sAMAccountName is unique in the
/// whole domain, so each test's accounts carry its own prefix.
fn ad_user(name: &str, parent: &str) -> String {
    format!(
        "dn: CN={name},{parent}\nchangetype: add\nobjectClass: user\nsAMAccountName: {name}\n\
         mail: {name}@example.com\n\n"
    )
}

fn ad_ou(name: &str, parent: &str) -> String {
    format!(
        "dn: OU={name},{parent}\nchangetype: add\nobjectClass: organizationalUnit\nou: {name}\n\n"
    )
}

fn ad_id<'a>(lines: &'a [Value], kind: &str, name: &str) -> &'a str {
    let field = if kind == "org" { "name" } else { "username" };
    lines
        .iter()
        .find(|l| l["type"] == kind && l["fields"][field] == name)
        .and_then(|l| l["id"].as_str())
        .unwrap_or_else(|| panic!("{kind} {name} not in {lines:#?}"))
}

#[test]
fn ad_each_change_shows_up_once_through_usn_tracking() {
    let samba = samba();
    let base = format!("OU=UsnBase,{AD_BASE_DN}");
    let people = format!("OU=People,{base}");
    let depts = format!("OU=Depts,{base}");
    let mut ldif = ad_ou("UsnBase", AD_BASE_DN);
    for (ou, parent) in [
        ("People", base.as_str()),
        ("Engineering", people.as_str()),
        ("Groups", base.as_str()),
        ("Depts", base.as_str()),
        ("Ops", depts.as_str()),
        ("Legacy", base.as_str()),
    ] {
        ldif.push_str(&ad_ou(ou, parent));
    }
    for user in ["ubob", "ucarol", "ualice", "udup", "uout"] {
        ldif.push_str(&ad_user(user, &people));
    }
    ldif.push_str(&ad_user("uolive", &format!("OU=Ops,{depts}")));
    ldif.push_str(&ad_user("uleo", &format!("OU=Legacy,{base}")));
    ad_modify(&ldif);

    let cfg = sync_config(samba, &base);
    let (full, code) = sync_full(&cfg);
    assert_eq!(code, 0, "{full:#?}");
    // Seven OUs below the base, seven accounts, the end line.
    assert_eq!(full.len(), 14, "{full:#?}");
    let cookie = full.last().unwrap()["cookie"].as_str().unwrap().to_owned();
    let [bob, carol, alice, dup, out, olive, leo] =
        ["ubob", "ucarol", "ualice", "udup", "uout", "uolive", "uleo"]
            .map(|u| ad_id(&full, "account", u).to_owned());
    let [people_id, engineering, groups, ops, legacy] =
        ["People", "Engineering", "Groups", "Ops", "Legacy"]
            .map(|o| ad_id(&full, "org", o).to_owned());

    let mut ldif = ad_user("unew", &people);
    ldif.push_str(&format!(
        "dn: CN=ubob,{people}\nchangetype: modify\nreplace: mail\nmail: robert@example.com\n\n\
         dn: CN=ucarol,{people}\nchangetype: modrdn\nnewrdn: CN=ucarol2\ndeleteoldrdn: 1\n\n\
         dn: CN=ualice,{people}\nchangetype: modrdn\nnewrdn: CN=ualice\ndeleteoldrdn: 1\nnewsuperior: OU=Engineering,{people}\n\n\
         dn: CN=udup,{people}\nchangetype: delete\n\n\
         dn: CN=uout,{people}\nchangetype: modrdn\nnewrdn: CN=uout\ndeleteoldrdn: 1\nnewsuperior: CN=Users,{AD_BASE_DN}\n\n\
         dn: OU=Groups,{base}\nchangetype: modrdn\nnewrdn: OU=Teams\ndeleteoldrdn: 1\n\n\
         dn: OU=Ops,{depts}\nchangetype: modrdn\nnewrdn: OU=Ops\ndeleteoldrdn: 1\nnewsuperior: {people}\n\n\
         dn: CN=uleo,OU=Legacy,{base}\nchangetype: delete\n\n\
         dn: OU=Legacy,{base}\nchangetype: delete\n\n"
    ));
    ldif.push_str(&ad_ou("Sales", &base));
    ad_modify(&ldif);

    let (lines, code) = sync_changes(&cfg, &cookie, None);
    assert_eq!(code, 0, "{lines:#?}");
    let end = lines.last().unwrap();
    assert_eq!(end["type"], "end");
    assert_eq!(end["method"], "usn", "{end}");
    let body = &lines[..lines.len() - 1];
    let op_of = |id: &str| ops_for(body, id);
    let line_of = |id: &str| line_for(body, id);
    assert_eq!(op_of(&bob), vec!["upsert"], "{body:#?}");
    assert_eq!(op_of(&carol), vec!["upsert"], "a rename is one upsert");
    assert_eq!(op_of(&alice), vec!["upsert"], "a move is one upsert");
    assert_eq!(op_of(&dup), vec!["delete"]);
    assert_eq!(op_of(&out), vec!["delete"], "moved out of base_dn");
    assert_eq!(op_of(&groups), vec!["upsert"], "renamed OU");
    assert_eq!(op_of(&ops), vec!["upsert"], "moved OU");
    assert_eq!(op_of(&olive), vec!["upsert"], "its OU moved");
    assert_eq!(op_of(&leo), vec!["delete"]);
    assert_eq!(op_of(&legacy), vec!["delete"], "deleted OU");
    assert_eq!(line_of(&bob)["fields"]["email"], "robert@example.com");
    assert_eq!(line_of(&carol)["dn"], format!("CN=ucarol2,{people}"));
    assert_eq!(line_of(&alice)["parent_id"], engineering.as_str());
    assert_eq!(line_of(&ops)["parent_id"], people_id.as_str());
    assert_eq!(line_of(&olive)["dn"], format!("CN=uolive,OU=Ops,{people}"));
    assert_eq!(line_of(&olive)["parent_id"], ops.as_str());
    assert_eq!(line_of(&groups)["fields"]["name"], "Teams");
    let unew = ad_id(body, "account", "unew");
    assert_eq!(op_of(unew), vec!["upsert"]);
    assert_eq!(line_of(unew)["parent_id"], people_id.as_str());
    assert_eq!(op_of(ad_id(body, "org", "Sales")), vec!["upsert"]);
    assert_eq!(body.len(), 12, "only those objects changed: {body:#?}");
    assert_eq!(end["counts"]["account_deletes"], 3);
    assert_eq!(end["counts"]["org_deletes"], 1);

    // Nothing since; then one change alone.
    let next = end["cookie"].as_str().unwrap().to_owned();
    let (again, _) = sync_changes(&cfg, &next, None);
    assert_eq!(again.len(), 1, "{again:#?}");
    assert_eq!(again[0]["method"], "usn");
    ad_modify(&format!(
        "dn: CN=unew,{people}\nchangetype: modify\nreplace: mail\nmail: newer@example.com\n"
    ));
    let (one, _) = sync_changes(&cfg, &next, None);
    assert_eq!(one.len(), 2, "{one:#?}");
    assert_eq!(one[0]["fields"]["email"], "newer@example.com");
}

#[test]
fn ad_another_domain_controller_forces_a_whole_comparison_and_says_why() {
    let samba = samba();
    let base = format!("OU=DcBase,{AD_BASE_DN}");
    let mut ldif = ad_ou("DcBase", AD_BASE_DN);
    ldif.push_str(&ad_user("dcone", &base));
    ldif.push_str(&ad_user("dctwo", &base));
    ad_modify(&ldif);
    let cfg = sync_config(samba, &base);
    let (full, code) = sync_full(&cfg);
    assert_eq!(code, 0, "{full:#?}");
    let cookie = full.last().unwrap()["cookie"].as_str().unwrap().to_owned();
    let two = ad_id(&full, "account", "dctwo").to_owned();

    // The cookie now stands for a cursor of another DC: what a pull that
    // reaches another server of the domain sees.
    let config = std::fs::read_to_string(&cfg).unwrap();
    let state = config
        .lines()
        .find_map(|l| l.strip_prefix("state_dir = "))
        .unwrap()
        .trim_matches('"')
        .to_owned();
    let snapshot = PathBuf::from(state).join(format!("snapshot-{cookie}.json"));
    let mut saved: Value = serde_json::from_slice(&std::fs::read(&snapshot).unwrap()).unwrap();
    assert_eq!(saved["cursor"]["method"], "usn", "{saved}");
    saved["cursor"]["invocation_id"] = "00000000-0000-0000-0000-0000000000dc".into();
    std::fs::write(&snapshot, serde_json::to_vec(&saved).unwrap()).unwrap();

    ad_modify(&format!(
        "dn: CN=dctwo,{base}\nchangetype: modify\nreplace: mail\nmail: two@example.com\n\n\
         dn: CN=dcone,{base}\nchangetype: delete\n"
    ));
    let (lines, code) = sync_changes(&cfg, &cookie, None);
    assert_eq!(code, 0, "{lines:#?}");
    let end = lines.last().unwrap();
    assert_eq!(end["method"], "snapshot", "{end}");
    let reason = end["resync_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("domain controller changed") && reason.contains("0000000000dc"),
        "{end}"
    );
    // The whole comparison still finds exactly what changed, in applying
    // order (account deletions first).
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert_eq!(lines[0]["op"], "delete");
    assert_eq!(
        (&lines[1]["id"], &lines[1]["fields"]["email"]),
        (&Value::from(two.as_str()), &Value::from("two@example.com"))
    );
    // And the next pull is back on this DC's numbers.
    let (again, _) = sync_changes(&cfg, end["cookie"].as_str().unwrap(), None);
    assert_eq!(again.len(), 1, "{again:#?}");
    assert_eq!(again[0]["method"], "usn");
}

#[test]
fn ad_verify_passes_every_check_with_a_pinned_certificate() {
    let samba = samba();
    let cfg = sync_config(samba, AD_BASE_DN);
    let out = Command::new(ldapgate_binary())
        .args(["verify", "--json", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let checks = report["checks"].as_array().unwrap();
    let status = |name: &str| {
        checks
            .iter()
            .find(|c| c["check"] == name)
            .map(|c| (c["status"].as_str().unwrap(), c["detail"].as_str().unwrap()))
            .unwrap_or_else(|| panic!("no {name} in {report:#}"))
    };
    for name in ["tcp", "tls", "pin", "expiry", "bind", "base_dn"] {
        assert_eq!(status(name).0, "ok", "{name}: {report:#}");
    }
    assert!(status("tls").1.contains("pin alone"), "{report:#}");
    // objectGUID as a GUID string.
    let detail = status("base_dn").1;
    let id = detail
        .split("id ")
        .nth(1)
        .and_then(|rest| rest.split([';', ',']).next())
        .unwrap_or_default();
    assert_eq!(
        id.split('-').map(str::len).collect::<Vec<_>>(),
        vec![8, 4, 4, 4, 12],
        "{detail}"
    );
}

// ---- one account, one identity (issue 9) ----

fn identity_proxy(samba: &SambaAd, token: &str, ratelimit: &str) -> Proxy {
    Proxy::start(
        ProxyConfig::with_directory(ad_directory(samba))
            .section(&format!(
                "[signin]\nattributes = [\"sAMAccountName\", \"userPrincipalName\", \"mail\", \"mobile\"]\n\
                 user_object_classes = [\"user\"]\n[ratelimit]\n{ratelimit}\n"
            ))
            .control(token),
    )
}

fn http_outcome(proxy: &Proxy, token: &str, login: &str, password: &str) -> (u16, Value) {
    let body = serde_json::json!({ "login": login, "password": password }).to_string();
    let r = control_request(proxy, "POST", "/v1/authenticate", Some(token), Some(&body));
    (r.status, r.json())
}

#[tokio::test]
async fn ad_dn_bind_after_ldapgate_lockout_is_refused() {
    let samba = samba();
    samba.tool(&["user", "create", "idl", "Idl!Passw0rd1"]);
    let token = "ad-identity-token";
    // Below the domain's own threshold (3), so the lock is ldapgate's.
    let proxy = identity_proxy(
        samba,
        token,
        "binds_per_ip = \"1000/s\"\nbinds_per_identity = \"1000/s\"\nfailures_before_lockout = 2",
    );
    for _ in 0..2 {
        let r = http_outcome(&proxy, token, "idl", "wrong");
        assert_eq!(r.1["outcome"], "invalid_credentials", "{r:?}");
    }
    let r = http_outcome(&proxy, token, "idl", "Idl!Passw0rd1");
    assert_eq!(
        (r.0, r.1["outcome"].as_str()),
        (403, Some("account_locked")),
        "{r:?}"
    );
    for name in [
        format!("CN=idl,CN=Users,{AD_BASE_DN}"),
        "cn=IDL,cn=users,dc=EXAMPLE,dc=com".to_owned(),
        "idl@example.com".to_owned(),
    ] {
        let mut ldap = connect(&proxy.ldap_url(), None, false).await;
        let r = ldap.simple_bind(&name, "Idl!Passw0rd1").await.unwrap();
        assert_eq!(r.rc, 53, "{name}: {r:?}");
        let mut ldaps = connect(&proxy.ldaps_url(), Some(&proxy.certs), false).await;
        let r = ldaps.simple_bind(&name, "Idl!Passw0rd1").await.unwrap();
        assert_eq!(r.rc, 53, "{name} over LDAPS: {r:?}");
    }
    // The domain itself never locked the account: a DN bind of another
    // user goes through.
    let mut ldap = connect(&proxy.ldap_url(), None, false).await;
    let r = ldap
        .simple_bind(&format!("CN=ada,CN=Users,{AD_BASE_DN}"), "Ada!Passw0rd1")
        .await
        .unwrap();
    assert_eq!(r.rc, 0, "{r:?}");
}

#[test]
fn ad_renamed_user_signs_in_at_once_and_a_recreated_one_gets_its_new_guid() {
    let samba = samba();
    samba.tool(&["user", "create", "ren", "Ren!Passw0rd1"]);
    samba.tool(&["user", "create", "rec", "Rec!Passw0rd1"]);
    let token = "ad-stale-token";
    // One wrong password would lock: a stale resolution must not count.
    let proxy = identity_proxy(
        samba,
        token,
        "binds_per_ip = \"1000/s\"\nbinds_per_identity = \"1000/s\"\nfailures_before_lockout = 1",
    );
    let r = http_outcome(&proxy, token, "ren", "Ren!Passw0rd1");
    assert_eq!(r.1["dn"], format!("CN=ren,CN=Users,{AD_BASE_DN}"), "{r:?}");
    ad_modify(&format!(
        "dn: CN=ren,CN=Users,{AD_BASE_DN}\nchangetype: modrdn\nnewrdn: CN=ren-renamed\ndeleteoldrdn: 1\n"
    ));
    for _ in 0..2 {
        let r = http_outcome(&proxy, token, "ren", "Ren!Passw0rd1");
        assert_eq!(r.1["outcome"], "success", "right after the rename: {r:?}");
        assert_eq!(r.1["dn"], format!("CN=ren-renamed,CN=Users,{AD_BASE_DN}"));
    }

    let first = http_outcome(&proxy, token, "rec", "Rec!Passw0rd1");
    let old = first.1["id"].as_str().unwrap().to_owned();
    samba.tool(&["user", "delete", "rec"]);
    samba.tool(&["user", "create", "rec", "Rec!Passw0rd1"]);
    let cli_id = cli(&proxy.config_path, "rec", "Rec!Passw0rd1")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(cli_id, old);
    let started = std::time::Instant::now();
    loop {
        let r = http_outcome(&proxy, token, "rec", "Rec!Passw0rd1");
        if r.1["id"] == cli_id.as_str() {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "the deleted account's objectGUID is still handed out: {r:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[tokio::test]
async fn ad_computers_are_not_accounts_for_sign_in_sync_or_verification() {
    let samba = samba();
    samba.tool(&["computer", "create", "pc9"]);
    // A computer with a password and a person's mobile number.
    let password: Vec<u8> = "\"Pc9!Passw0rd1\""
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(password);
    ad_modify(&format!(
        "dn: CN=pc9,CN=Computers,{AD_BASE_DN}\nchangetype: modify\nreplace: unicodePwd\n\
         unicodePwd:: {encoded}\n-\nreplace: mobile\nmobile: +8613900000001\n"
    ));
    let token = "ad-computer-token";
    let proxy = identity_proxy(
        samba,
        token,
        "binds_per_ip = \"1000/s\"\nbinds_per_identity = \"1000/s\"",
    );
    // The computer's password is right, but a computer is not a person.
    let wrong_password = ad_wrong_password().await;
    for login in ["pc9$", "pc9"] {
        let got = sign_in_everywhere(&proxy, token, login, "Pc9!Passw0rd1").await;
        assert_everywhere(&got, login, "invalid_credentials", &wrong_password);
    }
    // The person whose number the computer carries is not ambiguous.
    let got = sign_in_everywhere(&proxy, token, "+8613900000001", "Ada!Passw0rd1").await;
    assert_everywhere(&got, "+8613900000001", "success", &(0, String::new()));
    // Verification agrees: no shared value.
    let out = Command::new(ldapgate_binary())
        .args(["sync", "verify", "-c"])
        .arg(&proxy.config_path)
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", show(&out)));
    let shared = report["shared_sign_in_values"].as_array().unwrap();
    assert!(
        shared.iter().all(|s| s["value"] != "+8613900000001"),
        "{report:#}"
    );
}

/// Moves of entries that hold objects (issue 10, part 1) through
/// uSNChanged: an OU with accounts and a container moved into base_dn, a
/// container holding a container moved within it and then out, an OU
/// moved out. Each pull gives what the whole-directory comparison gives,
/// and a consumer applying them holds what a full pull delivers.
#[test]
fn ad_moves_of_ous_and_containers_follow_through_usn_tracking() {
    let samba = samba();
    let base = format!("OU=MoveBase,{AD_BASE_DN}");
    let out = format!("OU=MoveOut,{AD_BASE_DN}");
    let hq = format!("OU=HQ,{base}");
    let staging = format!("CN=Staging,{base}");
    let container = |name: &str, parent: &str| {
        format!("dn: CN={name},{parent}\nchangetype: add\nobjectClass: container\ncn: {name}\n\n")
    };
    let ldif = [
        ad_ou("MoveBase", AD_BASE_DN),
        ad_ou("MoveOut", AD_BASE_DN),
        ad_ou("HQ", &base),
        ad_user("mvh1", &hq),
        container("Staging", &base),
        ad_user("mvst1", &staging),
        container("Inner", &staging),
        ad_user("mvin1", &format!("CN=Inner,{staging}")),
        ad_ou("Old", &base),
        ad_user("mvo1", &format!("OU=Old,{base}")),
        ad_ou("Sales", &out),
        ad_user("mvs1", &format!("OU=Sales,{out}")),
        ad_user("mvs2", &format!("OU=Sales,{out}")),
        container("Parked", &out),
        ad_user("mvp1", &format!("CN=Parked,{out}")),
    ]
    .concat();
    ad_modify(&ldif);
    let tracked = sync_config(samba, &base);
    let compared = sync_config_with(samba, &base, "change_tracking = \"snapshot\"");
    let full = sync_config(samba, &base);
    let mut pullers = Pullers::with_configs(tracked, compared, full, &base, "usn");
    let move_to = |dn: &str, rdn: &str, superior: &str| {
        format!("dn: {dn}\nchangetype: modrdn\nnewrdn: {rdn}\ndeleteoldrdn: 1\nnewsuperior: {superior}\n\n")
    };
    let steps = [
        (
            "an OU with accounts and a container move in",
            [
                move_to(&format!("OU=Sales,{out}"), "OU=Sales", &base),
                move_to(&format!("CN=Parked,{out}"), "CN=Parked", &base),
            ]
            .concat(),
        ),
        (
            "a container holding a container moves within",
            move_to(&staging, "CN=Staging", &hq),
        ),
        (
            "that container moves out, and an OU with an account",
            [
                move_to(&format!("CN=Staging,{hq}"), "CN=Staging", &out),
                move_to(&format!("OU=Old,{base}"), "OU=Old", &out),
            ]
            .concat(),
        ),
        (
            "a container is renamed",
            format!(
                "dn: CN=Parked,{base}\nchangetype: modrdn\nnewrdn: CN=Kept\ndeleteoldrdn: 1\n\n"
            ),
        ),
        (
            "an OU holding an account is renamed in case only",
            format!("dn: {hq}\nchangetype: modrdn\nnewrdn: OU=hq\ndeleteoldrdn: 1\n\n"),
        ),
    ];
    for (what, ldif) in steps {
        ad_modify(&ldif);
        pullers.pull(what);
        pullers.assert_in_step(what);
    }
    let h1 = pullers
        .consumer
        .objects
        .values()
        .find(|o| o["fields"]["username"] == "mvh1")
        .expect("mvh1 held");
    assert_eq!(h1["dn"], format!("CN=mvh1,OU=hq,{base}"), "{h1}");
    let held = pullers.consumer.usernames();
    for user in ["mvh1", "mvs1", "mvs2", "mvp1"] {
        assert!(held.contains(&user), "{user} in {held:?}");
    }
    for user in ["mvst1", "mvin1", "mvo1"] {
        assert!(
            !held.contains(&user),
            "{user} left with its container: {held:?}"
        );
    }
}

/// Issue 11, part 2, on AD: a search with AD's change notification control
/// (1.2.840.113556.1.4.528, `ldapsearch -E '!serverNotif'`) stays open
/// through ldapgate past `operation_timeout` and `idle_timeout` of quiet,
/// and delivers the change made later, as AD does directly.
#[test]
fn ad_change_notification_outlives_operation_timeout() {
    use std::time::Duration;

    let samba = samba();
    ad_modify(&ad_user("ntf1", &format!("CN=Users,{AD_BASE_DN}")));
    let proxy = Proxy::start(
        ProxyConfig::with_directory(ad_directory(samba))
            .directory("operation_timeout = \"2s\"")
            .server("idle_timeout = \"2s\""),
    );
    let mut search = RunningLines::spawn(
        Command::new(require_program("ldapsearch", "ldap-utils"))
            .args(["-x", "-LLL", "-H", &proxy.ldap_url()])
            .args(["-D", AD_ADMIN_DN, "-w", AD_ADMIN_PW])
            .args(["-b", &ad_dn("ntf1"), "-s", "base", "-E", "!serverNotif"])
            .args(["(objectClass=*)", "description"]),
    );
    // Quiet for twice operation_timeout and idle_timeout.
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        search.running(),
        "the search ended while quiet: {}",
        proxy.log()
    );
    ad_modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: description\ndescription: notified-later\n",
        ad_dn("ntf1")
    ));
    let delivered = search.sees("notified-later");
    let out = search.stop();
    assert!(
        delivered,
        "the change made later arrived: {}\n{}",
        show(&out),
        proxy.log()
    );
}

//! Sync pulls against a real slapd: the full export's shape across pages,
//! the base-DN fingerprint, and failures that must never pass for a short
//! export.

mod common;

use common::*;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn sync_config(slapd: &Slapd, base_dn: &str, service_account: bool, extra: &str) -> PathBuf {
    let state = slapd.dir.path().join(format!("state-{}", free_port()));
    let mut directory = format!(
        "servers = [\"{}\"]\nca_file = \"{}\"\nbase_dn = \"{base_dn}\"\n",
        slapd.ldaps_url(),
        slapd.certs.ca_pem.display()
    );
    if service_account {
        let pw = slapd.dir.path().join("bind_password");
        std::fs::write(&pw, ADMIN_PW).unwrap();
        directory.push_str(&format!(
            "bind_dn = \"{ADMIN_DN}\"\nbind_password_file = \"{}\"\n",
            pw.display()
        ));
    }
    let path = slapd.dir.path().join(format!("sync-{}.toml", free_port()));
    std::fs::write(
        &path,
        format!(
            "[server]\nldap_listen = [\"127.0.0.1:{}\"]\n[directory]\n{directory}\n[sync]\nstate_dir = \"{}\"\n{extra}\n",
            free_port(),
            state.display()
        ),
    )
    .unwrap();
    path
}

/// `ldapgate sync full`: the parsed lines and the exit code.
fn pull(config: &Path) -> (Vec<Value>, i32) {
    let out = Command::new(ldapgate_binary())
        .args(["sync", "full", "-c"])
        .arg(config)
        .output()
        .unwrap();
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    (lines, out.status.code().unwrap_or(-1))
}

#[test]
fn full_export_streams_every_org_and_account_with_parent_ids() {
    let slapd = Slapd::start();
    let cfg = sync_config(&slapd, BASE_DN, true, "page_size = 7");
    let (lines, code) = pull(&cfg);
    assert_eq!(code, 0, "{lines:?}");
    let end = lines.last().unwrap();
    assert_eq!(end["type"], "end", "{end}");
    let orgs: Vec<&Value> = lines.iter().filter(|l| l["type"] == "org").collect();
    let accounts: Vec<&Value> = lines.iter().filter(|l| l["type"] == "account").collect();
    assert_eq!(orgs.len(), 3, "people, engineering, groups");
    assert_eq!(accounts.len(), NAMED_USERS + GENERATED_USERS);
    assert_eq!(end["counts"]["orgs"], 3);
    assert_eq!(end["counts"]["accounts"], NAMED_USERS + GENERATED_USERS);

    let ids: HashSet<&str> = lines[..lines.len() - 1]
        .iter()
        .map(|l| l["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), lines.len() - 1, "every id once, across pages");
    let org_id: HashMap<&str, &str> = orgs
        .iter()
        .map(|o| {
            (
                o["fields"]["name"].as_str().unwrap(),
                o["id"].as_str().unwrap(),
            )
        })
        .collect();
    // Parents come before their children, with the right ids.
    let people = orgs
        .iter()
        .position(|o| o["fields"]["name"] == "people")
        .unwrap();
    let engineering = orgs
        .iter()
        .position(|o| o["fields"]["name"] == "engineering")
        .unwrap();
    assert!(people < engineering);
    assert_eq!(orgs[engineering]["parent_id"], org_id["people"]);
    let alice = accounts
        .iter()
        .find(|a| a["fields"]["username"] == "alice")
        .unwrap();
    assert_eq!(alice["parent_id"], org_id["people"]);
    assert_eq!(alice["fields"]["email"], "alice@example.com");
    assert_eq!(alice["fields"]["mobile"], "+8613800000001");
    assert_eq!(alice["fields"]["employee_id"], "E-alice");
    assert_eq!(alice["dn"], format!("uid=alice,ou=people,{BASE_DN}"));
    let user7 = accounts
        .iter()
        .find(|a| a["fields"]["username"] == "user007")
        .unwrap();
    assert_eq!(user7["parent_id"], org_id["engineering"]);
    // No password ever leaves in a pull.
    assert!(!lines.iter().any(|l| l.to_string().contains("-pw")));
}

#[test]
fn a_recreated_base_entry_blocks_sync_until_rearmed() {
    let slapd = Slapd::start();
    let base = format!("ou=groups,{BASE_DN}");
    let cfg = sync_config(&slapd, &base, true, "");
    let (lines, code) = pull(&cfg);
    assert_eq!(
        (code, lines.last().unwrap()["type"].as_str()),
        (0, Some("end"))
    );
    // Same DN, different entry.
    let ldif = format!(
        "dn: {base}\nchangetype: delete\n\ndn: {base}\nchangetype: add\nobjectClass: organizationalUnit\nou: groups\n"
    );
    let out = ldap_tool(
        "ldapmodify",
        &slapd.certs.ca_pem,
        &[
            "-x",
            "-H",
            &slapd.ldap_url(),
            "-D",
            ADMIN_DN,
            "-w",
            ADMIN_PW,
        ],
        Some(&ldif),
    );
    assert!(out.status.success(), "{}", show(&out));
    let (lines, code) = pull(&cfg);
    assert_eq!(code, 1);
    assert_eq!(lines.len(), 1, "nothing but the error: {lines:?}");
    assert_eq!(lines[0]["error"], "base_dn_moved", "{lines:?}");
    // Still blocked on the next pull.
    assert_eq!(pull(&cfg).0[0]["error"], "base_dn_moved");
    let out = Command::new(ldapgate_binary())
        .args(["sync", "rearm", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let (lines, code) = pull(&cfg);
    assert_eq!(
        (code, lines.last().unwrap()["type"].as_str()),
        (0, Some("end")),
        "{lines:?}"
    );
}

#[test]
fn a_directory_that_fails_mid_export_gives_an_error_not_a_short_export() {
    // Anonymous paged searches may return 20 entries in all: the export
    // hits the limit part-way through the accounts.
    let slapd = Slapd::start_with_database_lines("limits anonymous size.prtotal=20");
    let cfg = sync_config(&slapd, BASE_DN, false, "page_size = 5");
    let (lines, code) = pull(&cfg);
    assert_eq!(code, 1, "{lines:?}");
    let last = lines.last().unwrap();
    assert_eq!(last["type"], "error", "{last}");
    assert_eq!(last["error"], "directory_error", "{last}");
    assert!(!lines.iter().any(|l| l["type"] == "end"));
    // The failure came part-way: accounts were already streamed.
    let streamed = lines.iter().filter(|l| l["type"] == "account").count();
    assert!(
        (5..NAMED_USERS + GENERATED_USERS).contains(&streamed),
        "{streamed} accounts before the error"
    );
}

#[test]
fn a_missing_base_dn_is_an_error() {
    let slapd = Slapd::start();
    let cfg = sync_config(&slapd, &format!("ou=nowhere,{BASE_DN}"), true, "");
    let (lines, code) = pull(&cfg);
    assert_eq!(code, 1);
    assert_eq!(lines[0]["error"], "directory_error", "{lines:?}");
}

#[test]
fn full_export_over_https_and_base_dn_moved_is_a_409() {
    let slapd = Slapd::start();
    let token = "sync-token";
    let base = format!("ou=people,{BASE_DN}");
    let proxy = Proxy::start(
        ProxyConfig::with_directory(format!(
            "servers = [\"{}\"]\nca_file = \"{}\"\nbase_dn = \"{base}\"\n",
            slapd.ldaps_url(),
            slapd.certs.ca_pem.display()
        ))
        .service_account(&slapd)
        .control(token),
    );
    let r = control_request(&proxy, "GET", "/v1/sync/full", Some(token), None);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/x-ndjson")
    );
    let lines: Vec<Value> = r
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let end = lines.last().unwrap();
    assert_eq!(end["type"], "end", "{end}");
    assert_eq!(end["counts"]["orgs"], 1, "engineering under people");
    assert_eq!(end["counts"]["accounts"], NAMED_USERS + GENERATED_USERS);
    assert_eq!(
        control_request(&proxy, "GET", "/v1/sync/full", None, None).status,
        401
    );

    // Recreate the base entry (and what is under it) as a different entry.
    let out = ldap_tool(
        "ldapdelete",
        &slapd.certs.ca_pem,
        &[
            "-x",
            "-r",
            "-H",
            &slapd.ldap_url(),
            "-D",
            ADMIN_DN,
            "-w",
            ADMIN_PW,
            &base,
        ],
        None,
    );
    assert!(out.status.success(), "{}", show(&out));
    let out = ldap_tool(
        "ldapadd",
        &slapd.certs.ca_pem,
        &[
            "-x",
            "-H",
            &slapd.ldap_url(),
            "-D",
            ADMIN_DN,
            "-w",
            ADMIN_PW,
        ],
        Some(&format!(
            "dn: {base}\nobjectClass: organizationalUnit\nou: people\n"
        )),
    );
    assert!(out.status.success(), "{}", show(&out));
    let r = control_request(&proxy, "GET", "/v1/sync/full", Some(token), None);
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(r.json()["error"], "base_dn_moved");
}

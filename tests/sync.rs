//! Sync pulls against a real slapd: the full export's shape across pages,
//! the base-DN fingerprint, and failures that must never pass for a short
//! export.

mod common;

use common::*;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

#[test]
fn full_export_streams_every_org_and_account_with_parent_ids() {
    let slapd = Slapd::start();
    let cfg = sync_config(&slapd, BASE_DN, true, "page_size = 7");
    let (lines, code) = sync_full(&cfg);
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
    let (lines, code) = sync_full(&cfg);
    assert_eq!(
        (code, lines.last().unwrap()["type"].as_str()),
        (0, Some("end"))
    );
    // Same DN, different entry.
    modify(
        &slapd,
        &format!(
            "dn: {base}\nchangetype: delete\n\ndn: {base}\nchangetype: add\nobjectClass: organizationalUnit\nou: groups\n"
        ),
    );
    let (lines, code) = sync_full(&cfg);
    assert_eq!(code, 1);
    assert_eq!(lines.len(), 1, "nothing but the error: {lines:?}");
    assert_eq!(lines[0]["error"], "base_dn_moved", "{lines:?}");
    // Still blocked on the next pull.
    assert_eq!(sync_full(&cfg).0[0]["error"], "base_dn_moved");
    let out = Command::new(ldapgate_binary())
        .args(["sync", "rearm", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let (lines, code) = sync_full(&cfg);
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
    let (lines, code) = sync_full(&cfg);
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
    let (lines, code) = sync_full(&cfg);
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
    let lines: Vec<Value> = r.ndjson();
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

fn modify(slapd: &Slapd, ldif: &str) {
    slapd.modify(ldif);
}

fn id_of<'a>(lines: &'a [Value], username: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l["fields"]["username"] == username)
        .and_then(|l| l["id"].as_str())
        .unwrap_or_else(|| panic!("{username} not in pull"))
}

/// Entries the change test moves and deletes: an OU with an account, to
/// move to another OU, and an OU with an account, to delete.
fn movable_ous() -> String {
    format!(
        "dn: ou=depts,{BASE_DN}\nobjectClass: organizationalUnit\nou: depts\n\n\
         dn: ou=ops,ou=depts,{BASE_DN}\nobjectClass: organizationalUnit\nou: ops\n\n\
         dn: uid=olive,ou=ops,ou=depts,{BASE_DN}\nobjectClass: inetOrgPerson\nuid: olive\ncn: Olive\nsn: O\n\n\
         dn: ou=legacy,{BASE_DN}\nobjectClass: organizationalUnit\nou: legacy\n\n\
         dn: uid=leo,ou=legacy,{BASE_DN}\nobjectClass: inetOrgPerson\nuid: leo\ncn: Leo\nsn: L\n\n"
    )
}

fn org_id<'a>(lines: &'a [Value], name: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l["type"] == "org" && l["fields"]["name"] == name)
        .and_then(|l| l["id"].as_str())
        .unwrap_or_else(|| panic!("OU {name} not in pull"))
}

/// Add, modify, rename and move (to another OU) accounts and OUs, delete
/// both, and check that each shows up once, with the right op and id, in
/// the next changes pull, found by `method`.
fn each_change_shows_up_once(slapd: &Slapd, method: &str) {
    let cfg = sync_config(slapd, BASE_DN, true, "page_size = 10");
    let (full, code) = sync_full(&cfg);
    assert_eq!(code, 0);
    let cookie = full.last().unwrap()["cookie"].as_str().unwrap().to_owned();
    let [carol, alice, bob, dup1, olive, leo] =
        ["carol", "alice", "bob", "dup1", "olive", "leo"].map(|u| id_of(&full, u).to_owned());
    let [groups, ops, legacy, people, engineering] =
        ["groups", "ops", "legacy", "people", "engineering"].map(|o| org_id(&full, o).to_owned());
    let p = format!("ou=people,{BASE_DN}");
    modify(
        slapd,
        &format!(
            "dn: uid=newbie,{p}\nchangetype: add\nobjectClass: inetOrgPerson\nuid: newbie\ncn: New\nsn: N\n\n\
             dn: uid=bob,{p}\nchangetype: modify\nreplace: mail\nmail: robert@example.com\n\n\
             dn: uid=carol,{p}\nchangetype: modrdn\nnewrdn: uid=carol2\ndeleteoldrdn: 1\n\n\
             dn: uid=alice,{p}\nchangetype: modrdn\nnewrdn: uid=alice\ndeleteoldrdn: 1\nnewsuperior: ou=engineering,{p}\n\n\
             dn: uid=dup1,{p}\nchangetype: delete\n\n\
             dn: ou=sales,{BASE_DN}\nchangetype: add\nobjectClass: organizationalUnit\nou: sales\n\n\
             dn: ou=groups,{BASE_DN}\nchangetype: modrdn\nnewrdn: ou=teams\ndeleteoldrdn: 1\n\n\
             dn: ou=ops,ou=depts,{BASE_DN}\nchangetype: modrdn\nnewrdn: ou=ops\ndeleteoldrdn: 1\nnewsuperior: {p}\n\n\
             dn: uid=leo,ou=legacy,{BASE_DN}\nchangetype: delete\n\n\
             dn: ou=legacy,{BASE_DN}\nchangetype: delete\n"
        ),
    );
    let (lines, code) = sync_changes(&cfg, &cookie, None);
    assert_eq!(code, 0, "{lines:?}");
    let end = lines.last().unwrap();
    assert_eq!(end["type"], "end");
    assert_eq!(end["method"], method, "{end}");
    let body = &lines[..lines.len() - 1];
    let op_of = |id: &str| ops_for(body, id);
    let line_of = |id: &str| line_for(body, id);
    assert_eq!(op_of(&bob), vec!["upsert"]);
    assert_eq!(
        op_of(&carol),
        vec!["upsert"],
        "a rename is one upsert with the same id"
    );
    assert_eq!(
        op_of(&alice),
        vec!["upsert"],
        "a move is one upsert with the same id"
    );
    assert_eq!(op_of(&dup1), vec!["delete"]);
    assert_eq!(op_of(&groups), vec!["upsert"], "renamed OU");
    assert_eq!(op_of(&ops), vec!["upsert"], "moved OU");
    assert_eq!(
        op_of(&olive),
        vec!["upsert"],
        "an account whose OU moved has a new DN"
    );
    assert_eq!(op_of(&leo), vec!["delete"]);
    assert_eq!(op_of(&legacy), vec!["delete"], "deleted OU");
    assert_eq!(line_of(&carol)["fields"]["username"], "carol2");
    assert_eq!(line_of(&bob)["fields"]["email"], "robert@example.com");
    assert_eq!(line_of(&alice)["parent_id"], engineering.as_str());
    assert_eq!(line_of(&ops)["parent_id"], people.as_str());
    assert_eq!(line_of(&ops)["dn"], format!("ou=ops,{p}"));
    assert_eq!(line_of(&olive)["dn"], format!("uid=olive,ou=ops,{p}"));
    assert_eq!(line_of(&olive)["parent_id"], ops.as_str());
    assert_eq!(line_of(&groups)["fields"]["name"], "teams");
    let newbie = body
        .iter()
        .find(|l| l["fields"]["username"] == "newbie")
        .expect("newbie added");
    assert_eq!(
        (&newbie["op"], &newbie["parent_id"]),
        (&Value::from("upsert"), &Value::from(people.as_str()))
    );
    assert!(body
        .iter()
        .any(|l| l["op"] == "upsert" && l["type"] == "org" && l["fields"]["name"] == "sales"));
    // Only those eleven objects changed; deletes come last, the OU after
    // its account.
    assert_eq!(body.len(), 11, "{body:#?}");
    assert_eq!(end["counts"]["account_deletes"], 2);
    assert_eq!(end["counts"]["org_deletes"], 1);
    assert_eq!(body[10]["id"], legacy.as_str());

    // Nothing since: an empty change set. The next change alone comes
    // with the new cookie; the old cookie still replays.
    let next = end["cookie"].as_str().unwrap().to_owned();
    let (again, _) = sync_changes(&cfg, &next, None);
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0]["method"], method, "{again:?}");
    modify(
        slapd,
        &format!("dn: uid=newbie,{p}\nchangetype: modify\nreplace: cn\ncn: Newer\n"),
    );
    let (one, _) = sync_changes(&cfg, &next, None);
    assert_eq!(one.len(), 2, "{one:?}");
    assert_eq!(
        (&one[0]["op"], &one[0]["fields"]["display_name"]),
        (&Value::from("upsert"), &Value::from("Newer"))
    );
    let (replay, code) = sync_changes(&cfg, &cookie, None);
    assert_eq!(code, 0);
    assert_eq!(replay.len(), lines.len(), "{replay:#?}");
    let (unknown, code) = sync_changes(&cfg, "00ff", None);
    assert_eq!(
        (code, unknown[0]["error"].as_str()),
        (1, Some("cookie_unknown"))
    );
}

#[test]
fn changes_through_syncrepl_with_a_present_phase() {
    let slapd = Slapd::start_with_lines_and_ldif(&syncprov(false), &movable_ous());
    each_change_shows_up_once(&slapd, "syncrepl");
}

#[test]
fn changes_through_syncrepl_with_the_sessionlog() {
    let slapd = Slapd::start_with_lines_and_ldif(&syncprov(true), &movable_ous());
    each_change_shows_up_once(&slapd, "syncrepl");
}

#[test]
fn changes_by_snapshot_difference_without_syncprov() {
    let slapd = Slapd::start_with_extra_ldif(&movable_ous());
    each_change_shows_up_once(&slapd, "snapshot");
}

#[test]
fn mass_deletion_is_held_back_until_approved() {
    mass_deletion_held_back(&Slapd::start(), "snapshot");
}

#[test]
fn mass_deletion_found_by_syncrepl_is_held_back_until_approved() {
    mass_deletion_held_back(
        &Slapd::start_with_lines_and_ldif(&syncprov(true), ""),
        "syncrepl",
    );
}

/// 31 account deletions (over the default 30) are held back until the
/// approval token of exactly that change set comes with the pull.
fn mass_deletion_held_back(slapd: &Slapd, method: &str) {
    let cfg = sync_config(slapd, BASE_DN, true, "");
    let (full, _) = sync_full(&cfg);
    let cookie = full.last().unwrap()["cookie"].as_str().unwrap().to_owned();
    let ldif: String = (0..31)
        .map(|i| {
            format!("dn: uid=user{i:03},ou=engineering,ou=people,{BASE_DN}\nchangetype: delete\n\n")
        })
        .collect();
    modify(slapd, &ldif);
    let (held, code) = sync_changes(&cfg, &cookie, None);
    assert_eq!(code, 1);
    assert_eq!(held.len(), 1, "nothing delivered: {held:?}");
    assert_eq!(held[0]["error"], "sync_protection");
    assert_eq!(held[0]["account_deletes"], 31);
    assert_eq!(held[0]["org_deletes"], 0);
    let token = held[0]["approval"].as_str().unwrap().to_owned();
    // The cookie did not advance: asking again gives the same token.
    assert_eq!(
        sync_changes(&cfg, &cookie, None).0[0]["approval"],
        token.as_str()
    );
    assert_eq!(
        sync_changes(&cfg, &cookie, Some("0123abcd")).0[0]["error"],
        "sync_protection"
    );
    let (delivered, code) = sync_changes(&cfg, &cookie, Some(&token));
    assert_eq!(code, 0, "{delivered:?}");
    assert_eq!(delivered.last().unwrap()["method"], method, "{delivered:?}");
    let deletes = delivered.iter().filter(|l| l["op"] == "delete").count();
    assert_eq!(deletes, 31);
    // One more deletion changes the change set: the old token no longer fits.
    modify(
        slapd,
        &format!("dn: uid=user031,ou=engineering,ou=people,{BASE_DN}\nchangetype: delete\n"),
    );
    let (held, _) = sync_changes(&cfg, &cookie, Some(&token));
    assert_eq!(held[0]["error"], "sync_protection");
    assert_ne!(held[0]["approval"], token.as_str());
}

#[test]
fn changes_over_https() {
    let slapd = Slapd::start();
    let token = "changes-token";
    let proxy = Proxy::start(
        ProxyConfig::ldaps(&slapd)
            .service_account(&slapd)
            .control(token),
    );
    let r = control_request(&proxy, "GET", "/v1/sync/full", Some(token), None);
    let end: Value = serde_json::from_str(r.body.lines().last().unwrap()).unwrap();
    let cookie = end["cookie"].as_str().unwrap();
    modify(
        &slapd,
        &format!("dn: uid=bob,ou=people,{BASE_DN}\nchangetype: modify\nreplace: cn\ncn: Bobby\n"),
    );
    let r = control_request(
        &proxy,
        "GET",
        &format!("/v1/sync/changes?cookie={cookie}"),
        Some(token),
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    let lines: Vec<Value> = r.ndjson();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["fields"]["display_name"], "Bobby");
    let r = control_request(
        &proxy,
        "GET",
        "/v1/sync/changes?cookie=beef",
        Some(token),
        None,
    );
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (409, Some("cookie_unknown"))
    );
    let r = control_request(&proxy, "GET", "/v1/sync/changes", Some(token), None);
    assert_eq!(r.status, 400);
}

#[test]
fn kill_9_during_state_writes_loses_nothing() {
    let slapd = Slapd::start();
    let cfg = sync_config(&slapd, BASE_DN, true, "page_size = 5");
    assert_eq!(sync_full(&cfg).1, 0);
    let state = PathBuf::from(
        std::fs::read_to_string(&cfg)
            .unwrap()
            .lines()
            .find_map(|l| {
                l.strip_prefix("state_dir = \"")
                    .map(|s| s.trim_end_matches('"').to_owned())
            })
            .unwrap(),
    );
    for i in 0..40u64 {
        let mut child = Command::new(ldapgate_binary())
            .args(["sync", "full", "-c"])
            .arg(&cfg)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_micros(
            2_000 + (i * 7919) % 60_000,
        ));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        // Every state file present is whole.
        for entry in std::fs::read_dir(&state).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name.ends_with(".json") && !name.starts_with('.') {
                let text = std::fs::read_to_string(&path).unwrap();
                serde_json::from_str::<Value>(&text)
                    .unwrap_or_else(|e| panic!("{name} torn after kill {i}: {e}"));
            }
        }
    }
    // The state still works: a pull succeeds and the base is not "moved".
    let (lines, code) = sync_full(&cfg);
    assert_eq!(
        (code, lines.last().unwrap()["type"].as_str()),
        (0, Some("end")),
        "{lines:?}"
    );
}

#[test]
fn verification_reports_sign_in_values_shared_by_several_entries() {
    let slapd = Slapd::start();
    let cfg = sync_config(&slapd, BASE_DN, true, "");
    let out = Command::new(ldapgate_binary())
        .args(["sync", "verify", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["orgs"], 3);
    assert_eq!(report["accounts"], NAMED_USERS + GENERATED_USERS);
    let shared = report["shared_sign_in_values"].as_array().unwrap();
    // dup1 and dup2 share a mobile number; pat's uid equals his employee
    // number, which is one person, not a conflict.
    assert_eq!(shared.len(), 1, "{report:#}");
    assert_eq!(shared[0]["attribute"], "mobile");
    assert_eq!(shared[0]["value"], "+8613800009999");
    let dns: Vec<&str> = shared[0]["dns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert!(
        dns.contains(&format!("uid=dup1,ou=people,{BASE_DN}").as_str()),
        "{dns:?}"
    );
    assert!(
        dns.contains(&format!("uid=dup2,ou=people,{BASE_DN}").as_str()),
        "{dns:?}"
    );

    // A value shared across attributes counts too: a new user whose mail is
    // alice's uid.
    modify(
        &slapd,
        &format!(
            "dn: uid=mallory,ou=people,{BASE_DN}\nchangetype: add\nobjectClass: inetOrgPerson\nuid: mallory\n\
             cn: M\nsn: M\nmail: alice\n"
        ),
    );
    let out = Command::new(ldapgate_binary())
        .args(["sync", "verify", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["shared_sign_in_values"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["value"].as_str().unwrap().eq_ignore_ascii_case("alice")),
        "{report:#}"
    );
}

/// `ldapgate sync verify`: the report (the exit code must be `code`).
/// `ldapgate authenticate`: the outcome.
fn sign_in_outcome(cfg: &Path, login: &str, password: &str) -> String {
    let mut cmd = Command::new(ldapgate_binary());
    cmd.args(["authenticate", "-c"])
        .arg(cfg)
        .args(["--login", login]);
    let out = run_with_stdin(cmd, Some(&format!("{password}\n")));
    let verdict: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", show(&out)));
    verdict["outcome"].as_str().unwrap_or_default().to_owned()
}

/// An inetOrgPerson `uid` under ou=people with password `<uid>-pw` and
/// `attrs` (values base64-encoded, so leading and trailing spaces stay).
fn person_ldif(uid: &str, attrs: &[(&str, &str)]) -> String {
    use base64::Engine;
    let mut ldif = format!(
        "dn: uid={uid},ou=people,{BASE_DN}\nchangetype: add\nobjectClass: inetOrgPerson\n\
         uid: {uid}\nsn: {uid}\nuserPassword: {uid}-pw\n"
    );
    if !attrs.iter().any(|(a, _)| *a == "cn") {
        ldif.push_str(&format!("cn: {uid}\n"));
    }
    for (attr, value) in attrs {
        let b64 = base64::engine::general_purpose::STANDARD.encode(value);
        ldif.push_str(&format!("{attr}:: {b64}\n"));
    }
    ldif.push('\n');
    ldif
}

/// Issue 9, part 3: values the directory's equality rules find equal are
/// shared, whatever their spelling, and sign-in agrees value by value.
#[test]
fn verification_compares_sign_in_values_under_the_directorys_matching_rules() {
    let slapd = Slapd::start();
    let people: [(&str, &[(&str, &str)]); 14] = [
        // telephoneNumberMatch: spaces and hyphens are insignificant.
        ("tel1", &[("mobile", "+86 139 0000 0009")]),
        ("tel2", &[("mobile", "+8613900000009")]),
        ("hyph1", &[("mobile", "139-0000-0007")]),
        ("hyph2", &[("mobile", "13900000007")]),
        // caseIgnoreIA5Match: case.
        ("mail1", &[("mail", "Dora@Example.com")]),
        ("mail2", &[("mail", "dora@example.COM")]),
        // caseIgnoreMatch: case, leading, trailing and repeated spaces.
        ("space1", &[("cn", "  Bob   Smith ")]),
        ("space2", &[("cn", "bob smith")]),
        // Across attributes: the login 13900000005 matches cross1's uid
        // (caseIgnore) and cross2's mobile (telephoneNumber).
        ("13900000005", &[]),
        ("cross2", &[("mobile", "139 0000 0005")]),
        // Different under the rules: not shared.
        (
            "neg1",
            &[("mobile", "+86 139 0000 0001"), ("cn", "Ann Lee")],
        ),
        ("neg2", &[("mobile", "+86 139 0000 0010"), ("cn", "AnnLee")]),
        // Equal only under telephoneNumberMatch, which no uid uses and no
        // mobile holds: no login matches both.
        ("neg-3", &[]),
        ("neg3", &[]),
    ];
    let ldif: String = people
        .iter()
        .map(|(uid, attrs)| person_ldif(uid, attrs))
        .collect();
    modify(&slapd, &ldif);
    let cfg = sync_config(
        &slapd,
        BASE_DN,
        true,
        "[signin]\nattributes = [\"uid\", \"mobile\", \"mail\", \"employeeNumber\", \"cn\"]",
    );
    let report = sync_verify(&cfg, 1);
    let shared = report["shared_sign_in_values"].as_array().unwrap();
    let groups: Vec<(Vec<String>, &str)> = shared
        .iter()
        .map(|s| {
            let mut uids: Vec<String> = s["dns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| {
                    let dn = d.as_str().unwrap();
                    dn["uid=".len()..dn.find(',').unwrap()].to_owned()
                })
                .collect();
            uids.sort();
            (uids, s["rule"].as_str().unwrap_or_default())
        })
        .collect();
    let want: [(&[&str], &str); 6] = [
        (&["dup1", "dup2"], "telephoneNumberMatch"),
        (&["tel1", "tel2"], "telephoneNumberMatch"),
        (&["hyph1", "hyph2"], "telephoneNumberMatch"),
        (&["mail1", "mail2"], "caseIgnoreMatch"),
        (&["space1", "space2"], "caseIgnoreMatch"),
        (&["13900000005", "cross2"], "telephoneNumberMatch"),
    ];
    for (uids, rule) in want {
        assert!(
            groups.iter().any(|(g, r)| g == uids && *r == rule),
            "{uids:?} under {rule} not reported: {report:#}"
        );
    }
    assert_eq!(groups.len(), want.len(), "{report:#}");

    // Sign-in agrees: every reported spelling is ambiguous, whatever the
    // password, and the values verification keeps apart sign in.
    for login in [
        "+86 139 0000 0009",
        "+8613900000009",
        "139-0000-0007",
        "13900000007",
        "DORA@example.com",
        "  Bob   Smith ",
        "bob smith",
        "13900000005",
    ] {
        assert_eq!(
            sign_in_outcome(&cfg, login, "tel1-pw"),
            "ambiguous_login",
            "{login:?}"
        );
    }
    for (login, password) in [
        ("+86 139 0000 0001", "neg1-pw"),
        ("+86-139-0000-0010", "neg2-pw"),
        ("ann lee", "neg1-pw"),
        ("annlee", "neg2-pw"),
        ("neg-3", "neg-3-pw"),
        ("neg3", "neg3-pw"),
        // Typed with spaces, the number matches no uid (caseIgnore keeps
        // inner spaces): only cross2.
        ("139 0000 0005", "cross2-pw"),
    ] {
        assert_eq!(
            sign_in_outcome(&cfg, login, password),
            "success",
            "{login:?}"
        );
    }
}

#[test]
fn scheduled_verification_runs_in_the_daemon() {
    let slapd = Slapd::start();
    let proxy = Proxy::start(
        ProxyConfig::ldaps(&slapd)
            .service_account(&slapd)
            .section(&format!(
                "[sync]\nstate_dir = \"{}\"\nverify_interval = \"1s\"\n",
                slapd.dir.path().join("daemon-state").display()
            )),
    );
    // Reloads more often than the interval do not postpone verification.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut reloads = 0;
    while !proxy
        .log()
        .contains("scheduled verification found shared sign-in ID values")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no verification logged:\n{}",
            proxy.log()
        );
        send_signal(proxy.pid(), "HUP");
        reloads += 1;
        proxy.wait_for_log_times("configuration reloaded", reloads);
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    assert!(proxy.log().contains("+8613800009999"), "{}", proxy.log());
}

/// One entry, one id (issue 10, part 3): an entryUUID stored in upper case
/// (as 389-DS and imports write it) is printed in RFC 4122 lower case by
/// the full pull, by syncrepl (which sends it binary) and by sign-in, so
/// an edit elsewhere never turns it into a deletion.
#[test]
fn an_upper_case_entry_uuid_is_one_id_on_every_path() {
    const STORED: &str = "5D2F0A1C-1111-4222-8333-944455556666";
    let canonical = STORED.to_lowercase();
    let dave = format!(
        "dn: uid=dave,ou=people,{BASE_DN}\nobjectClass: inetOrgPerson\nuid: dave\ncn: dave\n\
         sn: dave\nuserPassword: dave-pw\nentryUUID: {STORED}\n\n"
    );
    for sessionlog in [false, true] {
        let slapd = Slapd::start_with_lines_and_ldif(&syncprov(sessionlog), &dave);
        let cfg = sync_config(&slapd, BASE_DN, true, "");
        let (full, code) = sync_full(&cfg);
        assert_eq!(code, 0, "{full:?}");
        assert_eq!(id_of(&full, "dave"), canonical, "full pull");
        modify(
            &slapd,
            &format!(
                "dn: uid=bob,ou=people,{BASE_DN}\nchangetype: modify\nreplace: cn\ncn: Bobby\n"
            ),
        );
        let cookie = full.last().unwrap()["cookie"].as_str().unwrap().to_owned();
        let (lines, code) = sync_changes(&cfg, &cookie, None);
        assert_eq!(code, 0, "{lines:?}");
        let end = lines.last().unwrap();
        assert_eq!(end["method"], "syncrepl", "{end}");
        let body = &lines[..lines.len() - 1];
        assert!(
            ops_for(body, &canonical).is_empty() && ops_for(body, STORED).is_empty(),
            "sessionlog {sessionlog}: dave is untouched: {body:#?}"
        );
        assert_eq!(body.len(), 1, "only bob changed: {body:#?}");
        assert_eq!(body[0]["op"], "upsert");
        // Sign-in answers with the same id.
        let out = run_with_stdin(
            {
                let mut c = Command::new(ldapgate_binary());
                c.args(["authenticate", "-c"])
                    .arg(&cfg)
                    .args(["--login", "dave"]);
                c
            },
            Some("dave-pw\n"),
        );
        let verdict: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(verdict["id"], canonical.as_str(), "{verdict}");
    }
}

/// Applying order (issue 10, part 4): an account deleted and created again
/// with the same DN and username comes out as the deletion of the old id
/// before the upsert of the new one, on every tracking method, so that a
/// consumer with unique usernames can apply it line by line.
#[test]
fn a_recreated_account_is_deleted_before_its_successor_is_upserted() {
    let cases = [
        (syncprov(false), "syncrepl"),
        (syncprov(true), "syncrepl"),
        (String::new(), "snapshot"),
    ];
    for (lines, method) in cases {
        let slapd = Slapd::start_with_lines_and_ldif(&lines, "");
        let cfg = sync_config(&slapd, BASE_DN, true, "");
        let (full, code) = sync_full(&cfg);
        assert_eq!(code, 0, "{full:?}");
        let old = id_of(&full, "bob").to_owned();
        let bob = format!("uid=bob,ou=people,{BASE_DN}");
        modify(
            &slapd,
            &format!(
                "dn: {bob}\nchangetype: delete\n\n\
                 dn: {bob}\nchangetype: add\nobjectClass: inetOrgPerson\nuid: bob\ncn: Bob Again\n\
                 sn: Again\nmail: bob@example.com\nuserPassword: bob-pw\n\n\
                 dn: ou=sales,{BASE_DN}\nchangetype: add\nobjectClass: organizationalUnit\nou: sales\n\n\
                 dn: uid=sam,ou=sales,{BASE_DN}\nchangetype: add\nobjectClass: inetOrgPerson\nuid: sam\n\
                 cn: Sam\nsn: Sam\n\n\
                 dn: ou=groups,{BASE_DN}\nchangetype: delete\n"
            ),
        );
        let cookie = full.last().unwrap()["cookie"].as_str().unwrap().to_owned();
        let (lines, code) = sync_changes(&cfg, &cookie, None);
        assert_eq!(code, 0, "{lines:?}");
        assert_eq!(lines.last().unwrap()["method"], method);
        let body = &lines[..lines.len() - 1];
        let position = |op: &str, pred: &dyn Fn(&Value) -> bool| {
            body.iter()
                .position(|l| l["op"] == op && pred(l))
                .unwrap_or_else(|| panic!("{method}: no {op} in {body:#?}"))
        };
        let old_gone = position("delete", &|l| l["id"] == old.as_str());
        let new_bob = position("upsert", &|l| l["fields"]["username"] == "bob");
        assert_ne!(body[new_bob]["id"], old.as_str());
        let sales = position("upsert", &|l| {
            l["type"] == "org" && l["fields"]["name"] == "sales"
        });
        let sam = position("upsert", &|l| l["fields"]["username"] == "sam");
        let groups_gone = position("delete", &|l| l["type"] == "org");
        assert!(old_gone < new_bob, "{method}: {body:#?}");
        assert!(
            sales < sam,
            "{method}: parent organization first: {body:#?}"
        );
        assert!(
            sam < groups_gone,
            "{method}: organizations deleted last: {body:#?}"
        );
    }
}

/// Accounts and organizations are told apart by the directory's schema
/// (issue 10, part 2): with `user_object_classes = ["person"]` and accounts
/// that list only `inetOrgPerson` (a subclass), an edit is an upsert and a
/// new account arrives, through syncrepl with and without the session log.
#[test]
fn a_superclass_in_user_object_classes_holds_for_change_pulls() {
    for sessionlog in [false, true] {
        let slapd = Slapd::start_with_lines_and_ldif(&syncprov(sessionlog), "");
        let cfg = sync_config(
            &slapd,
            BASE_DN,
            true,
            "[signin]\nuser_object_classes = [\"person\"]",
        );
        let (full, code) = sync_full(&cfg);
        assert_eq!(code, 0, "{full:?}");
        let carol = id_of(&full, "carol").to_owned();
        modify(
            &slapd,
            &format!(
                "dn: uid=carol,ou=people,{BASE_DN}\nchangetype: modify\nreplace: cn\ncn: Carol D\n\n\
                 dn: uid=erin,ou=people,{BASE_DN}\nchangetype: add\nobjectClass: inetOrgPerson\n\
                 uid: erin\ncn: Erin\nsn: Erin\n"
            ),
        );
        let cookie = full.last().unwrap()["cookie"].as_str().unwrap().to_owned();
        let (lines, code) = sync_changes(&cfg, &cookie, None);
        assert_eq!(code, 0, "{lines:?}");
        let body = &lines[..lines.len() - 1];
        assert_eq!(
            ops_for(body, &carol),
            vec!["upsert"],
            "sessionlog {sessionlog}: {body:#?}"
        );
        assert!(
            body.iter()
                .any(|l| l["op"] == "upsert" && l["fields"]["username"] == "erin"),
            "sessionlog {sessionlog}: erin arrives: {body:#?}"
        );
        assert_eq!(body.len(), 2, "sessionlog {sessionlog}: {body:#?}");
    }
}

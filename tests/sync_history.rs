//! Change pulls over directory histories (issue 10): every tracking method
//! gives the change set the whole-directory comparison gives, and a
//! consumer that applies the change sets, line by line, to a full pull
//! holds exactly what a new full pull delivers: through moves of non-leaf
//! entries into, within and out of `base_dn`, renames, class changes,
//! deletions and re-creations, on real slapd with syncprov (with and
//! without the session log).

mod common;

use common::*;
use serde_json::Value;

/// The base DN of these tests: an OU, so that entries can come from
/// outside it and leave it.
fn tenant() -> String {
    format!("ou=tenant,{BASE_DN}")
}

/// Outside `base_dn`.
fn outside() -> String {
    format!("ou=outside,{BASE_DN}")
}

fn person(parent: &str, uid: &str) -> String {
    format!(
        "dn: uid={uid},{parent}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}\n\
         mail: {uid}@example.com\n\n"
    )
}

fn ou(parent: &str, name: &str) -> String {
    format!("dn: ou={name},{parent}\nobjectClass: organizationalUnit\nou: {name}\n\n")
}

/// A container that is no organization (organizationalRole).
fn container(parent: &str, name: &str) -> String {
    format!("dn: cn={name},{parent}\nobjectClass: organizationalRole\ncn: {name}\n\n")
}

fn move_to(dn: &str, rdn: &str, superior: &str) -> String {
    format!(
        "dn: {dn}\nchangetype: modrdn\nnewrdn: {rdn}\ndeleteoldrdn: 1\nnewsuperior: {superior}\n\n"
    )
}

fn rename(dn: &str, rdn: &str) -> String {
    format!("dn: {dn}\nchangetype: modrdn\nnewrdn: {rdn}\ndeleteoldrdn: 1\n\n")
}

/// The tree every history starts from, besides the sample directory.
fn tree() -> String {
    let (t, o) = (tenant(), outside());
    let hq = format!("ou=hq,{t}");
    let staging = format!("cn=staging,{t}");
    let inner = format!("cn=inner,{staging}");
    let sales = format!("ou=sales,{o}");
    let parked = format!("cn=parked,{o}");
    [
        ou(BASE_DN, "tenant"),
        ou(&t, "hq"),
        person(&hq, "h1"),
        person(&hq, "h2"),
        ou(&hq, "deep"),
        person(&format!("ou=deep,{hq}"), "d1"),
        format!("dn: cn=svc,{hq}\nobjectClass: device\ncn: svc\n\n"),
        container(&t, "staging"),
        person(&staging, "st1"),
        container(&staging, "inner"),
        person(&inner, "in1"),
        ou(&t, "old"),
        person(&format!("ou=old,{t}"), "o1"),
        ou(BASE_DN, "outside"),
        ou(&o, "sales"),
        person(&sales, "s1"),
        person(&sales, "s2"),
        container(&o, "parked"),
        person(&parked, "p1"),
    ]
    .concat()
}

/// Accounts are inetOrgPerson entries, and entries with posixAccount;
/// organizations OUs, and entries with dcObject (auxiliary classes: adding
/// or removing one changes what an entry is).
const CLASSES: &str = "[signin]\nuser_object_classes = [\"inetOrgPerson\", \"posixAccount\"]\n\
                       org_object_classes = [\"organizationalUnit\", \"dcObject\"]";

/// Each history: named steps, one changes pull after each.
fn histories() -> Vec<(&'static str, Vec<String>)> {
    let (t, o) = (tenant(), outside());
    let hq = format!("ou=hq,{t}");
    let staging = format!("cn=staging,{t}");
    let svc = format!("cn=svc,{hq}");
    let dc = [("dc", "staging".to_owned())];
    // An OU has no cn, which posixAccount needs.
    let mut hq_posix = posix_attrs("hq", 5001);
    hq_posix.insert(1, ("cn", "hq".to_owned()));
    vec![
        (
            "an OU with accounts moves in (issue 10: s1 and s2 never arrived)",
            vec![move_to(&format!("ou=sales,{o}"), "ou=sales", &t)],
        ),
        (
            "a container moves within (issue 10: st1 kept its old DN)",
            vec![move_to(&staging, "cn=staging", &hq)],
        ),
        (
            "an OU with an account moves out",
            vec![move_to(&format!("ou=old,{t}"), "ou=old", &o)],
        ),
        (
            "a container moves in",
            vec![move_to(&format!("cn=parked,{o}"), "cn=parked", &t)],
        ),
        (
            "a container holding a container moves out",
            vec![move_to(&staging, "cn=staging", &o)],
        ),
        (
            "a container is renamed",
            vec![rename(&staging, "cn=staged")],
        ),
        (
            "an OU with an OU moves into a nested container, then back",
            vec![
                move_to(&hq, "ou=hq", &format!("cn=inner,{staging}")),
                move_to(&format!("ou=hq,cn=inner,{staging}"), "ou=hq", &t),
            ],
        ),
        (
            "in, an account out, the OU out, the OU in again: a pull each",
            vec![
                move_to(&format!("ou=sales,{o}"), "ou=sales", &t),
                move_to(&format!("uid=s1,ou=sales,{t}"), "uid=s1", &o),
                move_to(&format!("ou=sales,{t}"), "ou=sales", &o),
                move_to(&format!("ou=sales,{o}"), "ou=sales", &t),
            ],
        ),
        (
            "out and back in within one pull",
            vec![[
                move_to(&staging, "cn=staging", &o),
                move_to(&format!("cn=staging,{o}"), "cn=staging", &t),
            ]
            .concat()],
        ),
        (
            "moved in, then an account inside moves within",
            vec![
                move_to(&format!("cn=parked,{o}"), "cn=parked", &t),
                move_to(&format!("uid=p1,cn=parked,{t}"), "uid=p1", &hq),
            ],
        ),
        (
            "adds, modifies, renames and deletions",
            vec![[
                person(&hq, "new1").replace("\nobjectClass", "\nchangetype: add\nobjectClass"),
                format!(
                    "dn: uid=h1,{hq}\nchangetype: modify\nreplace: mail\nmail: h1@new.example\n\n"
                ),
                rename(&format!("uid=h2,{hq}"), "uid=h2b"),
                format!("dn: uid=d1,ou=deep,{hq}\nchangetype: delete\n\n"),
                format!("dn: ou=deep,{hq}\nchangetype: delete\n\n"),
            ]
            .concat()],
        ),
        (
            "class changes: a device becomes an account, then stops being one",
            vec![
                aux_class(&svc, "posixAccount", &posix_attrs("svc", 5000), true),
                aux_class(&svc, "posixAccount", &posix_attrs("svc", 5000), false),
            ],
        ),
        (
            "an account deleted and created again with its DN and username",
            vec![[
                format!("dn: uid=h1,{hq}\nchangetype: delete\n\n"),
                person(&hq, "h1").replace("\nobjectClass", "\nchangetype: add\nobjectClass"),
            ]
            .concat()],
        ),
        (
            "an OU holding accounts and an OU is renamed in case only",
            vec![rename(&hq, "ou=HQ")],
        ),
        (
            "base_dn's entry is renamed in case only",
            vec![rename(&t, "ou=TENANT")],
        ),
        (
            "a container becomes an organization (dcObject), then stops being one",
            vec![
                aux_class(&staging, "dcObject", &dc, true),
                aux_class(&staging, "dcObject", &dc, false),
            ],
        ),
        (
            "an OU holding accounts becomes an account too (posixAccount), then not",
            vec![
                aux_class(&hq, "posixAccount", &hq_posix, true),
                aux_class(&hq, "posixAccount", &hq_posix, false),
            ],
        ),
        (
            "an OU moves into a container that then leaves",
            vec![
                move_to(&hq, "ou=hq", &staging),
                move_to(&staging, "cn=staging", &o),
            ],
        ),
    ]
}

fn every_history_matches_the_snapshot_difference(sessionlog: bool) {
    for (name, steps) in histories() {
        let slapd = Slapd::start_with_lines_and_ldif(&syncprov(sessionlog), &tree());
        let mut pullers = Pullers::new(&slapd, &tenant(), CLASSES);
        for (n, ldif) in steps.iter().enumerate() {
            slapd.modify(ldif);
            let what = format!("sessionlog {sessionlog}: {name}, step {}", n + 1);
            pullers.pull(&what);
            pullers.assert_in_step(&what);
        }
    }
}

#[test]
fn every_history_matches_the_snapshot_difference_with_a_present_phase() {
    every_history_matches_the_snapshot_difference(false);
}

#[test]
fn every_history_matches_the_snapshot_difference_with_the_sessionlog() {
    every_history_matches_the_snapshot_difference(true);
}

/// The inputs of issue 10, part 1, checked line by line: the accounts of
/// an OU moved in arrive with their new DN and parent, an account in a
/// moved container gets its new DN.
#[test]
fn accounts_below_a_moved_entry_come_with_their_new_dn_and_parent() {
    for sessionlog in [false, true] {
        let slapd = Slapd::start_with_lines_and_ldif(&syncprov(sessionlog), &tree());
        let cfg = sync_config(&slapd, &tenant(), true, "");
        let (full, code) = sync_full(&cfg);
        assert_eq!(code, 0, "{full:?}");
        let st1 = full
            .iter()
            .find(|l| l["fields"]["username"] == "st1")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (t, o) = (tenant(), outside());
        slapd.modify(
            &[
                move_to(&format!("ou=sales,{o}"), "ou=sales", &t),
                move_to(
                    &format!("cn=staging,{t}"),
                    "cn=staging",
                    &format!("ou=hq,{t}"),
                ),
            ]
            .concat(),
        );
        let (lines, code) = sync_changes(&cfg, &cookie_of(&full), None);
        assert_eq!(code, 0, "{lines:?}");
        let body = &lines[..lines.len() - 1];
        let sales = body
            .iter()
            .find(|l| l["type"] == "org" && l["fields"]["name"] == "sales")
            .unwrap_or_else(|| panic!("sessionlog {sessionlog}: sales arrives: {body:#?}"));
        for uid in ["s1", "s2"] {
            let line = body
                .iter()
                .find(|l| l["fields"]["username"] == uid)
                .unwrap_or_else(|| panic!("sessionlog {sessionlog}: {uid} arrives: {body:#?}"));
            assert_eq!(line["op"], "upsert");
            assert_eq!(line["dn"], format!("uid={uid},ou=sales,{t}"));
            assert_eq!(line["parent_id"], sales["id"]);
        }
        assert_eq!(ops_for(body, &st1), vec!["upsert"], "{body:#?}");
        assert_eq!(
            line_for(body, &st1)["dn"],
            format!("uid=st1,cn=staging,ou=hq,{t}")
        );
        // in1 sits in a container inside the moved one.
        let in1 = body
            .iter()
            .find(|l| l["fields"]["username"] == "in1")
            .unwrap_or_else(|| panic!("sessionlog {sessionlog}: in1 moved: {body:#?}"));
        assert_eq!(in1["dn"], format!("uid=in1,cn=inner,cn=staging,ou=hq,{t}"));
    }
}

/// Deletions are confirmed before they are held or delivered (issue 10,
/// part 5). Forty people deleted by mistake are restored from a backup
/// (slapcat, then slapadd while slapd is down: their entryUUID and
/// entryCSN come back as they were). syncprov's session log, kept in an
/// accesslog database so that it outlives a restart, still reports them
/// deleted. Sync protection would offer to approve deleting forty people
/// who can sign in; the deletions are checked against the directory
/// instead, found false, and the pull compares the whole directory,
/// saying why. The next pull uses syncrepl again.
#[test]
fn a_deletion_the_directory_contradicts_is_never_held_for_approval() {
    let log = tempfile::tempdir().unwrap();
    let accesslog = format!(
        "moduleload syncprov\nmoduleload accesslog\nindex entryCSN,entryUUID eq\n\
         overlay syncprov\nsyncprov-sessionlog-source cn=accesslog\n\
         overlay accesslog\nlogdb cn=accesslog\nlogops writes\nlogsuccess TRUE\n\
         database mdb\nmaxsize 104857600\nsuffix \"cn=accesslog\"\nrootdn \"{ADMIN_DN}\"\n\
         directory {}\nindex reqStart,reqEnd,reqResult eq\n",
        log.path().display()
    );
    let mut slapd = Slapd::start_with_lines_and_ldif(&accesslog, "");
    // The log reaches back to the full pull's cookie only with a write
    // before it.
    slapd.modify(&format!(
        "dn: uid=carol,ou=people,{BASE_DN}\nchangetype: modify\nreplace: sn\nsn: D\n"
    ));
    // Through the daemon, as a consumer pulls, with its metrics.
    let token = "restore-token";
    let metrics = free_port();
    let proxy = Proxy::start(
        ProxyConfig::ldaps(&slapd)
            .service_account(&slapd)
            .section(&format!("[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n"))
            .control(token),
    );
    let pull = |path: &str| {
        let r = control_request(&proxy, "GET", path, Some(token), None);
        assert_eq!(r.status, 200, "{r:?}");
        r.ndjson()
    };
    let full = pull("/v1/sync/full");
    let backup = slapd.backup("(|(uid=user00*)(uid=user01*)(uid=user02*)(uid=user03*))");
    let mut ldif: String = (0..40)
        .map(|i| {
            format!("dn: uid=user{i:03},ou=engineering,ou=people,{BASE_DN}\nchangetype: delete\n\n")
        })
        .collect();
    ldif.push_str(&format!(
        "dn: uid=bob,ou=people,{BASE_DN}\nchangetype: modify\nreplace: mail\nmail: robert@example.com\n"
    ));
    slapd.modify(&ldif);
    slapd.restore(&backup, true);

    // No 409 with an approval token: a change set, found another way.
    let lines = pull(&format!("/v1/sync/changes?cookie={}", cookie_of(&full)));
    let end = lines.last().unwrap();
    assert_eq!(end["method"], "snapshot", "{end}");
    let reason = end["resync_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("40 object(s) deleted that still exist"),
        "the cause is reported: {end}"
    );
    let body = &lines[..lines.len() - 1];
    let bob = full
        .iter()
        .find(|l| l["fields"]["username"] == "bob")
        .unwrap()["id"]
        .as_str()
        .unwrap();
    assert_eq!(ops_for(body, bob), vec!["upsert"], "{body:#?}");
    assert_eq!(body.len(), 1, "bob's edit and nothing else: {body:#?}");
    let (status, _, text) = http_get(metrics, "/metrics");
    assert_eq!(status, 200);
    assert_eq!(
        metric(
            &text,
            "ldapgate_sync_tracking_mismatches_total{directory=\"default\"}"
        ),
        Some(1.0),
        "{text}"
    );

    let next = pull(&format!("/v1/sync/changes?cookie={}", cookie_of(&lines)));
    assert_eq!(next.len(), 1, "{next:#?}");
    assert_eq!(next[0]["method"], "syncrepl", "{next:#?}");
}

/// A snapshot written by a build that kept no DNs (an upgrade): moves
/// cannot be followed from it, so the first changes pull compares the
/// whole directory and says so; the next one uses syncrepl again.
#[test]
fn a_snapshot_without_dns_is_compared_whole_once() {
    let slapd = Slapd::start_with_lines_and_ldif(&syncprov(true), &tree());
    let cfg = sync_config(&slapd, &tenant(), true, "");
    let (full, code) = sync_full(&cfg);
    assert_eq!(code, 0, "{full:?}");
    let cookie = cookie_of(&full);
    let config = std::fs::read_to_string(&cfg).unwrap();
    let state = config
        .lines()
        .find_map(|l| l.strip_prefix("state_dir = \""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap();
    let file = std::path::Path::new(state).join(format!("snapshot-{cookie}.json"));
    let mut snapshot: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    for object in snapshot["objects"].as_object_mut().unwrap().values_mut() {
        object.as_object_mut().unwrap().remove("n");
    }
    snapshot.as_object_mut().unwrap().remove("containers");
    std::fs::write(&file, snapshot.to_string()).unwrap();
    slapd.modify(&move_to(
        &format!("cn=staging,{}", tenant()),
        "cn=staging",
        &format!("ou=hq,{}", tenant()),
    ));
    let (lines, code) = sync_changes(&cfg, &cookie, None);
    assert_eq!(code, 0, "{lines:#?}");
    let end = lines.last().unwrap();
    assert_eq!(end["method"], "snapshot", "{end}");
    assert!(
        end["resync_reason"]
            .as_str()
            .is_some_and(|r| r.contains("earlier version")),
        "{end}"
    );
    let moved = lines
        .iter()
        .filter(|l| {
            l["dn"]
                .as_str()
                .is_some_and(|d| d.contains("cn=staging,ou=hq"))
        })
        .count();
    assert_eq!(moved, 2, "st1 and in1 moved: {lines:#?}");
    let (next, code) = sync_changes(&cfg, &cookie_of(&lines), None);
    assert_eq!(code, 0, "{next:#?}");
    assert_eq!(next[0]["method"], "syncrepl", "{next:#?}");
}

/// Entries deleted, delivered as deleted, then restored from a backup
/// (slapcat before, slapadd while slapd is down: their entryUUID and
/// entryCSN as they were). syncprov's present phase names them present,
/// though nothing reports them changed: the ids the snapshot lacks are
/// looked up, and they come back as upserts.
#[test]
fn entries_restored_from_a_backup_come_back_through_a_present_phase() {
    let mut slapd = Slapd::start_with_lines_and_ldif(&syncprov(false), &tree());
    let mut pullers = Pullers::new(&slapd, &tenant(), CLASSES);
    let hq = format!("ou=hq,{}", tenant());
    let backup = slapd.backup("(|(uid=h1)(uid=d1)(ou=deep))");
    slapd.modify(&format!(
        "dn: uid=h1,{hq}\nchangetype: delete\n\ndn: uid=d1,ou=deep,{hq}\nchangetype: delete\n\n\
         dn: ou=deep,{hq}\nchangetype: delete\n\n"
    ));
    pullers.pull("deleted");
    pullers.assert_in_step("deleted");
    // Killed: slapd rebuilds its contextCSN from the entries at start, and
    // the restored ones are older than the cookie, so it runs a present
    // phase. (Stopped cleanly, it would not: see the next test.)
    slapd.restore(&backup, false);
    pullers.pull("restored");
    pullers.assert_in_step("restored");
    let held = pullers.consumer.usernames();
    assert!(held.contains(&"h1") && held.contains(&"d1"), "{held:?}");
}

/// A consumer of change pulls from one configuration: its objects and
/// cookie, with each pull applied line by line.
struct Follower {
    cfg: std::path::PathBuf,
    consumer: Consumer,
    cookie: String,
    what: String,
}

impl Follower {
    fn new(slapd: &Slapd, what: &str) -> Follower {
        let cfg = sync_config(slapd, &tenant(), true, CLASSES);
        let (full, code) = sync_full(&cfg);
        assert_eq!(code, 0, "{what}: {full:?}");
        Follower {
            consumer: Consumer::from_full(&full, &tenant()),
            cookie: cookie_of(&full),
            cfg,
            what: what.to_owned(),
        }
    }

    /// A changes pull from `cookie`, applied; the end line.
    fn pull_from(&mut self, cookie: &str, step: &str) -> Value {
        let (lines, code) = sync_changes(&self.cfg, cookie, None);
        let what = format!("{}, {step}", self.what);
        assert_eq!(code, 0, "{what}: {lines:#?}");
        self.consumer
            .apply(&lines[..lines.len() - 1])
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        self.cookie = cookie_of(&lines);
        lines.last().unwrap().clone()
    }

    fn pull(&mut self, step: &str) -> Value {
        let cookie = self.cookie.clone();
        self.pull_from(&cookie, step)
    }

    /// The consumer holds what a full pull (of another configuration)
    /// delivers now.
    fn assert_in_step(&self, slapd: &Slapd, step: &str) {
        let (now, code) = sync_full(&sync_config(slapd, &tenant(), true, CLASSES));
        assert_eq!(code, 0);
        assert_eq!(
            self.consumer.objects,
            Consumer::from_full(&now, &tenant()).objects,
            "{}, {step}: the consumer holds what a full pull delivers",
            self.what
        );
    }
}

fn assert_whole_comparison(end: &Value, what: &str) {
    assert_eq!(end["method"], "snapshot", "{what}: {end}");
    assert!(
        end["resync_reason"]
            .as_str()
            .is_some_and(|r| r.contains("does not report")),
        "{what}: {end}"
    );
}

/// Entries restored from a backup after their deletion was delivered, with
/// slapd stopped cleanly (it keeps its contextCSN): syncprov reports no
/// change and runs no present phase, with or without its session log.
/// Scheduled verification finds the objects the tracker does not report
/// and marks the snapshot: every changes pull from it compares the whole
/// directory and brings them back (a repeated pull too, after a lost
/// response, or one after a full pull elsewhere); the pull after uses
/// syncrepl again.
#[test]
fn verification_finds_what_syncrepl_cannot_report_and_the_next_pull_brings_it() {
    for sessionlog in [false, true] {
        let what = format!("sessionlog {sessionlog}");
        let mut slapd = Slapd::start_with_lines_and_ldif(&syncprov(sessionlog), &tree());
        let mut follower = Follower::new(&slapd, &what);
        let hq = format!("ou=hq,{}", tenant());
        let backup = slapd.backup("(|(uid=h1)(uid=d1)(ou=deep))");
        slapd.modify(&format!(
            "dn: uid=h1,{hq}\nchangetype: delete\n\ndn: uid=d1,ou=deep,{hq}\nchangetype: delete\n\n\
             dn: ou=deep,{hq}\nchangetype: delete\n\n"
        ));
        follower.pull("deleted");
        slapd.restore(&backup, true);
        let end = follower.pull("restored");
        assert_eq!(end["method"], "syncrepl", "{end}");
        let marked = follower.cookie.clone();
        // Another consumer's full pull before verification changes nothing
        // for this one.
        sync_full(&follower.cfg);

        let report = sync_verify(&follower.cfg, 1);
        assert_eq!(
            report["untracked_objects"], 3,
            "{what}: h1, ou=deep and d1: {report}"
        );
        assert_whole_comparison(&follower.pull("after verification"), &what);
        follower.assert_in_step(&slapd, "after verification");
        assert!(follower.consumer.usernames().contains(&"h1"));
        // The response was lost: the same cookie again.
        follower.consumer = {
            let mut c = follower.consumer.clone();
            for id in ["h1", "d1"] {
                c.objects.retain(|_, o| o["fields"]["username"] != id);
            }
            c.objects.retain(|_, o| o["fields"]["name"] != "deep");
            c
        };
        assert_whole_comparison(&follower.pull_from(&marked, "repeated"), &what);
        follower.assert_in_step(&slapd, "repeated");
        let end = follower.pull("next");
        assert_eq!(end["method"], "syncrepl", "{end}");
        assert_eq!(sync_verify(&follower.cfg, 0)["untracked_objects"], 0);
    }
}

/// An account changed and pulled, then deleted and restored from a backup
/// taken before the change, without a pull in between: the consumer holds
/// the changed version, the directory the older one, and the tracker
/// reports nothing. Verification compares lines, not only ids.
#[test]
fn verification_finds_an_older_version_restored_over_a_pulled_change() {
    for sessionlog in [false, true] {
        let what = format!("sessionlog {sessionlog}");
        let mut slapd = Slapd::start_with_lines_and_ldif(&syncprov(sessionlog), &tree());
        let mut follower = Follower::new(&slapd, &what);
        let h1 = format!("uid=h1,ou=hq,{}", tenant());
        let backup = slapd.backup("(uid=h1)");
        slapd.modify(&format!(
            "dn: {h1}\nchangetype: modify\nreplace: mail\nmail: changed@example.com\n"
        ));
        follower.pull("changed");
        slapd.modify(&format!("dn: {h1}\nchangetype: delete\n"));
        slapd.restore(&backup, true);
        let report = sync_verify(&follower.cfg, 1);
        assert_eq!(report["untracked_objects"], 1, "{what}: {report}");
        assert_whole_comparison(&follower.pull("after verification"), &what);
        follower.assert_in_step(&slapd, "after verification");
    }
}

//! Two ldapgate instances of one tenant in front of one slapd, sharing a
//! real `redis-server` through `[cluster]`: lockout counted across both on
//! every channel (also under concurrent attempts), sync cookies, approval
//! tokens and the base-DN block honoured by either instance, and the store
//! going away and coming back.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::pulls::{cookie_of, syncprov, Consumer};
use common::redis_server::RedisServer;
use common::*;
use redis::Commands;
use serde_json::Value;

const TOKEN: &str = "cluster-test-token";

/// 32 bytes every instance of the test tenant shares.
fn key_file(dir: &Path, byte: u8) -> PathBuf {
    let path = dir.join(format!("cluster-key-{byte}"));
    std::fs::write(&path, [byte; 32]).unwrap();
    path
}

/// One instance in front of `slapd` (LDAPS, service account) with its own
/// state directory, the control channel, metrics and `[cluster]` (with
/// `key` as key_file; without, the key the store keeps).
fn instance(
    slapd: &Slapd,
    directory: Option<String>,
    redis: &RedisServer,
    key: Option<&Path>,
    sections: &str,
) -> (Proxy, u16) {
    let metrics = free_port();
    let state = slapd.dir.path().join(format!("state-{}", free_port()));
    let config = match directory {
        Some(d) => ProxyConfig::with_directory(d),
        None => ProxyConfig::ldaps(slapd),
    };
    let proxy = Proxy::start(
        config
            .service_account(slapd)
            .control(TOKEN)
            .section(sections)
            .section(&format!(
                "[sync]\nstate_dir = \"{}\"\n{}",
                state.display(),
                sections_sync(sections)
            ))
            .section(&format!("[metrics]\nlisten = \"127.0.0.1:{metrics}\""))
            .section(&redis.cluster_section(key)),
    );
    (proxy, metrics)
}

/// `[sync]` lines a test passes as `#sync:` comments (the `[sync]` section
/// itself is written by [`instance`]).
fn sections_sync(sections: &str) -> String {
    sections
        .lines()
        .filter_map(|l| l.strip_prefix("#sync:"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `[directory]` lines for `slapd` over LDAPS with `base` as base_dn.
fn directory_at(slapd: &Slapd, base: &str) -> String {
    format!(
        "servers = [\"{}\"]\nca_file = \"{}\"\nbase_dn = \"{base}\"\n",
        slapd.ldaps_url(),
        slapd.certs.ca_pem.display()
    )
}

const LIMITS: &str =
    "[ratelimit]\nbinds_per_ip = \"100000/s\"\nbinds_per_identity = \"100000/s\"\n\
                      failures_before_lockout = 3\nlockout_duration = \"1m\"";

fn sign_in(proxy: &Proxy, login: &str, password: &str) -> (u16, String) {
    let body = serde_json::json!({ "login": login, "password": password }).to_string();
    let r = control_request(proxy, "POST", "/v1/authenticate", Some(TOKEN), Some(&body));
    (
        r.status,
        r.json()["outcome"].as_str().unwrap_or("").to_owned(),
    )
}

async fn ldap_bind(proxy: &Proxy, name: &str, password: &str) -> i64 {
    let mut ldap = connect(&proxy.ldap_url(), None, false).await;
    let rc = ldap.simple_bind(name, password).await.unwrap().rc as i64;
    let _ = ldap.unbind().await;
    rc
}

/// GET `path` from the metrics endpoint on `port`: (status, body).
fn metrics_get(port: u16, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_owned())
}

fn store_up(port: u16) -> Option<i64> {
    let (_, body) = metrics_get(port, "/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix("ldapgate_cluster_store_up "))
        .and_then(|v| v.trim().parse().ok())
}

fn wait_store_up(port: u16, want: i64) {
    let started = Instant::now();
    while store_up(port) != Some(want) {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "ldapgate_cluster_store_up did not become {want}: {:?}",
            store_up(port)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn pull(proxy: &Proxy, path: &str) -> (u16, Vec<Value>) {
    let r = control_request(proxy, "GET", path, Some(TOKEN), None);
    let lines = if r.status == 200 {
        r.ndjson()
    } else {
        vec![r.json()]
    };
    (r.status, lines)
}

fn changes(proxy: &Proxy, cookie: &str, approve: Option<&str>) -> (u16, Vec<Value>) {
    let mut path = format!("/v1/sync/changes?cookie={cookie}");
    if let Some(token) = approve {
        path.push_str(&format!("&approve={token}"));
    }
    pull(proxy, &path)
}

fn modify(slapd: &Slapd, ldif: &str) {
    slapd.modify(ldif);
}

#[tokio::test]
async fn lockout_is_counted_across_both_instances_on_every_channel() {
    let slapd = Slapd::start();
    let redis = RedisServer::start(Some("store-secret"));
    let key = key_file(slapd.dir.path(), 7);
    let (a, _) = instance(&slapd, None, &redis, Some(&key), LIMITS);
    let (b, _) = instance(&slapd, None, &redis, Some(&key), LIMITS);

    // Two wrong passwords through A (HTTP, LDAP by sign-in ID), one through
    // B (LDAP by DN): alice is locked on both, whatever the channel.
    assert_eq!(
        sign_in(&a, "alice", "wrong"),
        (401, "invalid_credentials".into())
    );
    assert_eq!(ldap_bind(&a, "alice@example.com", "wrong").await, 49);
    let dn = format!("uid=alice,ou=people,{BASE_DN}");
    assert_eq!(ldap_bind(&b, &dn, "wrong").await, 49);
    assert_eq!(
        sign_in(&b, "alice", "alice-pw"),
        (403, "account_locked".into())
    );
    assert_eq!(
        sign_in(&a, "+8613800000001", "alice-pw").1,
        "account_locked"
    );
    assert_eq!(ldap_bind(&a, "alice", "alice-pw").await, 53);
    assert_eq!(ldap_bind(&b, &dn, "alice-pw").await, 53);
    // bob is untouched; a right password clears his count on both.
    assert_eq!(sign_in(&a, "bob", "wrong").1, "invalid_credentials");
    assert_eq!(sign_in(&b, "bob", "wrong").1, "invalid_credentials");
    assert_eq!(sign_in(&b, "bob", "bob-pw"), (200, "success".into()));
    assert_eq!(sign_in(&a, "bob", "wrong").1, "invalid_credentials");
    assert_eq!(sign_in(&a, "bob", "bob-pw").1, "success");
    // A login that names no one is limited across both too.
    for proxy in [&a, &b, &a] {
        assert_eq!(sign_in(proxy, "nobody", "x").1, "invalid_credentials");
    }
    assert_eq!(sign_in(&b, "nobody", "x").1, "account_locked");

    // The store holds no login, DN or password in clear, only hashed keys
    // under the directory's namespace.
    let mut conn = redis.connection();
    let keys: Vec<String> = conn.keys("*").unwrap();
    assert!(keys
        .iter()
        .any(|k| k.starts_with("ldapgate:default:limit:{")));
    for k in &keys {
        let lower = k.to_lowercase();
        for secret in ["alice", "bob", "nobody", "uid=", "-pw", "example"] {
            assert!(!lower.contains(secret), "{k} names {secret}");
        }
        assert!(k.starts_with("ldapgate:"), "{k}");
    }
}

#[tokio::test]
async fn two_hundred_concurrent_wrong_passwords_lock_after_exactly_the_limit() {
    let slapd = Slapd::start();
    let redis = RedisServer::start(Some("store-secret"));
    // The section as the contract gives it: store (and password) only; the
    // instances then share a key kept in the store.
    let limits = LIMITS.replace("failures_before_lockout = 3", "failures_before_lockout = 5");
    let (a, ma) = instance(&slapd, None, &redis, None, &limits);
    let (b, mb) = instance(&slapd, None, &redis, None, &limits);
    let dn = format!("uid=carol,ou=people,{BASE_DN}");
    let mut tasks = Vec::new();
    for i in 0..200 {
        let url = if i % 2 == 0 {
            a.ldap_url()
        } else {
            b.ldap_url()
        };
        // Half by sign-in ID (rewritten), half by DN.
        let name = if i % 4 < 2 {
            "carol".to_owned()
        } else {
            dn.clone()
        };
        tasks.push(tokio::spawn(async move {
            let mut ldap = connect(&url, None, false).await;
            let rc = ldap.simple_bind(&name, "wrong").await.unwrap().rc;
            let _ = ldap.unbind().await;
            rc
        }));
    }
    let mut codes = std::collections::BTreeMap::new();
    for t in tasks {
        *codes.entry(t.await.unwrap()).or_insert(0) += 1;
    }
    assert_eq!(
        codes,
        [(49, 5), (53, 195)].into_iter().collect(),
        "result codes of 200 wrong binds over both instances"
    );
    assert_eq!(sign_in(&a, "carol", "carol-pw").1, "account_locked");
    assert_eq!(sign_in(&b, "carol", "carol-pw").1, "account_locked");
    // One lockout in all, counted by the instance whose attempt started it.
    let locks: i64 = [ma, mb]
        .iter()
        .map(|port| {
            metrics_get(*port, "/metrics")
                .1
                .lines()
                .find_map(|l| l.strip_prefix("ldapgate_lockouts_total{directory=\"default\"} "))
                .map_or(0, |v| v.trim().parse().unwrap())
        })
        .sum();
    assert_eq!(locks, 1);
}

#[test]
fn cookies_and_approvals_issued_by_one_instance_are_honoured_by_the_other() {
    let slapd = Slapd::start_with_database_lines(&syncprov(true));
    let redis = RedisServer::start(None);
    let key = key_file(slapd.dir.path(), 3);
    let sections = "#sync:max_account_deletes = 1";
    let (a, _) = instance(&slapd, None, &redis, Some(&key), sections);
    let (b, _) = instance(&slapd, None, &redis, Some(&key), sections);

    let (status, full) = pull(&a, "/v1/sync/full");
    assert_eq!(status, 200, "{full:?}");
    let mut consumer = Consumer::from_full(&full, BASE_DN);
    let mut cookie = cookie_of(&full);
    // The snapshot behind the cookie is sealed: no DN, no line hash readable.
    let mut conn = redis.connection();
    let sealed: Vec<u8> = conn
        .get(format!("ldapgate:default:sync:snapshot:{cookie}"))
        .unwrap();
    assert!(sealed.starts_with(b"lg1:"), "{:?}", &sealed[..8]);
    let text = String::from_utf8_lossy(&sealed);
    assert!(!text.contains("alice") && !text.contains("ou=people"));
    let steps: [(&Proxy, String); 3] = [
        (
            &b,
            format!(
                "dn: uid=zed,ou=people,{BASE_DN}\nchangetype: add\nobjectClass: inetOrgPerson\n\
                 uid: zed\ncn: Zed\nsn: Zed\nuserPassword: zed-pw\n"
            ),
        ),
        (
            &a,
            format!("dn: uid=alice,ou=people,{BASE_DN}\nchangetype: modify\nreplace: cn\ncn: Alice Kingsleigh\n"),
        ),
        (&b, format!("dn: uid=bob,ou=people,{BASE_DN}\nchangetype: delete\n")),
    ];
    for (proxy, ldif) in steps {
        modify(&slapd, &ldif);
        let (status, body) = changes(proxy, &cookie, None);
        assert_eq!(status, 200, "{body:?}");
        let end = body.last().unwrap();
        assert_eq!(end["method"], "syncrepl", "{end}");
        consumer.apply(&body[..body.len() - 1]).unwrap();
        cookie = cookie_of(&body);
    }
    let names = consumer.usernames();
    assert!(
        names.contains(&"zed") && !names.contains(&"bob"),
        "{names:?}"
    );

    // Two deletions are over the limit: A holds them back with a token
    // that B accepts for exactly that change set.
    modify(
        &slapd,
        &format!(
            "dn: uid=carol,ou=people,{BASE_DN}\nchangetype: delete\n\n\
             dn: uid=user000,ou=engineering,ou=people,{BASE_DN}\nchangetype: delete\n"
        ),
    );
    let (status, held) = changes(&a, &cookie, None);
    assert_eq!(
        (status, held[0]["error"].as_str()),
        (409, Some("sync_protection"))
    );
    let approval = held[0]["approval"].as_str().unwrap().to_owned();
    assert_eq!(
        changes(&b, &cookie, Some("0123abcd")).0,
        409,
        "a wrong token"
    );
    let (status, body) = changes(&b, &cookie, Some(&approval));
    assert_eq!(status, 200, "{body:?}");
    assert_eq!(body.last().unwrap()["counts"]["account_deletes"], 2);
    consumer.apply(&body[..body.len() - 1]).unwrap();

    // What the consumer holds is what a full pull from either finds now.
    let (_, now) = pull(&b, "/v1/sync/full");
    let fresh = Consumer::from_full(&now, BASE_DN);
    assert_eq!(consumer.objects, fresh.objects);
}

#[test]
fn a_base_dn_blocked_on_one_instance_is_blocked_on_the_other() {
    let slapd = Slapd::start();
    let redis = RedisServer::start(None);
    let key = key_file(slapd.dir.path(), 5);
    let base = format!("ou=groups,{BASE_DN}");
    let (a, _) = instance(
        &slapd,
        Some(directory_at(&slapd, &base)),
        &redis,
        Some(&key),
        "",
    );
    let (b, _) = instance(
        &slapd,
        Some(directory_at(&slapd, &base)),
        &redis,
        Some(&key),
        "",
    );
    assert_eq!(pull(&a, "/v1/sync/full").0, 200);
    modify(
        &slapd,
        &format!("dn: {base}\nchangetype: delete\n\ndn: {base}\nchangetype: add\nobjectClass: organizationalUnit\nou: groups\n"),
    );
    // B never pulled before: the fingerprint A recorded blocks it.
    for proxy in [&b, &a] {
        let (status, body) = pull(proxy, "/v1/sync/full");
        assert_eq!(
            (status, body[0]["error"].as_str()),
            (409, Some("base_dn_moved"))
        );
    }
    // Re-armed through B's configuration: both pull again.
    let out = Command::new(ldapgate_binary())
        .args(["sync", "rearm", "-c"])
        .arg(&b.config_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(pull(&a, "/v1/sync/full").0, 200);
    assert_eq!(pull(&b, "/v1/sync/full").0, 200);
}

#[tokio::test]
async fn the_store_going_away_and_coming_back() {
    let slapd = Slapd::start();
    let mut redis = RedisServer::start(None);
    let key = key_file(slapd.dir.path(), 11);
    let (a, ma) = instance(&slapd, None, &redis, Some(&key), LIMITS);
    let (b, mb) = instance(&slapd, None, &redis, Some(&key), LIMITS);
    wait_store_up(ma, 1);
    let (_, full) = pull(&a, "/v1/sync/full");
    let cookie = cookie_of(&full);

    redis.kill();
    // Sign-in and the data path go on, at once.
    let started = Instant::now();
    assert_eq!(sign_in(&a, "bob", "bob-pw"), (200, "success".into()));
    assert_eq!(sign_in(&b, "bob", "bob-pw"), (200, "success".into()));
    assert_eq!(ldap_bind(&b, "bob", "bob-pw").await, 0);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    wait_store_up(ma, 0);
    wait_store_up(mb, 0);
    let (status, ready) = metrics_get(ma, "/readyz");
    assert_eq!(status, 200, "{ready}");
    assert!(
        ready.contains("cluster store redis://127.0.0.1:") && ready.contains("down"),
        "{ready}"
    );
    // Lockout is still enforced, by each instance with its own counts.
    for _ in 0..3 {
        assert_eq!(sign_in(&a, "carol", "wrong").1, "invalid_credentials");
    }
    assert_eq!(sign_in(&a, "carol", "carol-pw").1, "account_locked");
    assert_eq!(ldap_bind(&a, "carol", "carol-pw").await, 53);
    // Sync answers a clear error, never a short export or a cookie the
    // other instance could not honour.
    for (proxy, path) in [
        (&a, "/v1/sync/full".to_owned()),
        (&b, format!("/v1/sync/changes?cookie={cookie}")),
    ] {
        let (status, body) = pull(proxy, &path);
        assert_eq!(
            (status, body[0]["error"].as_str()),
            (503, Some("store_unavailable")),
            "{body:?}"
        );
    }
    let mut a = a;
    a.assert_alive();

    // Back, with what it held: sharing resumes without a restart.
    redis.restart();
    wait_store_up(ma, 1);
    wait_store_up(mb, 1);
    let (status, body) = changes(&b, &cookie, None);
    assert_eq!(status, 200, "a cookie from before the outage: {body:?}");
    assert_eq!(sign_in(&a, "user001", "wrong").1, "invalid_credentials");
    assert_eq!(sign_in(&b, "user001", "wrong").1, "invalid_credentials");
    assert_eq!(ldap_bind(&a, "user001", "wrong").await, 49);
    assert_eq!(sign_in(&b, "user001", "user001-pw").1, "account_locked");
    let (_, ready) = metrics_get(mb, "/readyz");
    assert!(ready.contains(": up"), "{ready}");
}

#[test]
fn verify_checks_the_store() {
    let slapd = Slapd::start();
    let redis = RedisServer::start(Some("store-secret"));
    let key = key_file(slapd.dir.path(), 1);
    let (a, _) = instance(&slapd, None, &redis, Some(&key), "");
    let verify = |config: &Path| {
        let out = Command::new(ldapgate_binary())
            .args(["verify", "--json", "-c"])
            .arg(config)
            .output()
            .unwrap();
        let report: Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)));
        let store: Vec<Value> = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["server"].as_str().unwrap_or("").starts_with("redis://"))
            .cloned()
            .collect();
        (out.status.code(), store)
    };
    let (code, store) = verify(&a.config_path);
    assert_eq!(code, Some(0), "{store:?}");
    let names: Vec<&str> = store.iter().map(|c| c["check"].as_str().unwrap()).collect();
    assert_eq!(names, ["store", "write", "latency", "key"]);
    assert!(store.iter().all(|c| c["status"] == "ok"), "{store:?}");
    assert!(store[0]["detail"]
        .as_str()
        .unwrap()
        .contains("authenticated"));
    assert!(store[2]["detail"].as_str().unwrap().contains("round trip"));

    // Another key on another instance: verification says so.
    let other = std::fs::read_to_string(&a.config_path).unwrap().replace(
        &key.display().to_string(),
        &key_file(slapd.dir.path(), 2).display().to_string(),
    );
    let other_path = slapd.dir.path().join("other-key.toml");
    std::fs::write(&other_path, other).unwrap();
    let (code, store) = verify(&other_path);
    assert_eq!(code, Some(1));
    assert_eq!(store[3]["status"], "fail", "{store:?}");
    assert!(store[3]["detail"].as_str().unwrap().contains("differs"));

    // A wrong password: authentication refused, the rest skipped.
    std::fs::write(redis.dir.path().join("store_password"), "wrong\n").unwrap();
    let (code, store) = verify(&a.config_path);
    assert_eq!(code, Some(1));
    assert_eq!(store[0]["status"], "fail", "{store:?}");
    assert!(
        store[0]["detail"]
            .as_str()
            .unwrap()
            .contains("authentication refused"),
        "{store:?}"
    );
    assert_eq!(store[1]["status"], "skip");
}

/// The limiter of one instance on `redis`, as the daemon makes it, once the
/// store answered.
async fn limiter_on(
    redis: &RedisServer,
    limit: u32,
) -> std::sync::Arc<ldapgate::ratelimit::BindLimiter> {
    let key = key_file(redis.dir.path(), 4);
    let text = format!(
        "[server]\nldap_listen = [\"127.0.0.1:1\"]\n[directory]\nservers = [\"ldap://127.0.0.1:1\"]\n\
         starttls = false\nbase_dn = \"{BASE_DN}\"\n[ratelimit]\nfailures_before_lockout = {limit}\n{}",
        redis.cluster_section(Some(&key))
    );
    let config = ldapgate::config::Config::parse(&text, Path::new("limiter.toml")).unwrap();
    let store = ldapgate::cluster::ClusterStore::new(config.cluster.as_ref().unwrap()).unwrap();
    assert!(store.probe().await, "the store answers");
    let d = &config.directories[0];
    let shared = ldapgate::ratelimit::shared::SharedLimits::new(
        store.clone(),
        &d.name,
        &d.ratelimit,
        d.directory.operation_timeout,
    );
    ldapgate::ratelimit::BindLimiter::with_shared(&d.ratelimit, Some(shared))
}

#[tokio::test]
async fn an_attempt_that_could_reach_the_limit_waits_for_the_other_instances_attempt() {
    use ldapgate::ratelimit::{Budget, Refusal, Tested};
    let redis = RedisServer::start(None);
    let (x, y) = (limiter_on(&redis, 3).await, limiter_on(&redis, 3).await);
    // X's attempt runs (no failure counted yet: no turn); Y fails twice
    // meanwhile (the second time holding the turn: with X's, 3 at most).
    let on_x = x.admit("id:z", Budget::Spend).await.unwrap();
    for _ in 0..2 {
        let attempt = y.admit("id:z", Budget::Spend).await.unwrap();
        assert!(!y.settle(attempt, Tested::WrongPassword).await);
    }
    // Y's third failure and X's could pass 3: Y's next attempt waits.
    let y = std::sync::Arc::new(y);
    let waiting = tokio::spawn({
        let y = y.clone();
        async move { y.admit("id:z", Budget::Spend).await.map(|_| ()) }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "Y's attempt went ahead while X's ran"
    );
    assert!(
        x.settle(on_x, Tested::WrongPassword).await,
        "X's failure is the third: locked"
    );
    let answer = tokio::time::timeout(Duration::from_secs(2), waiting)
        .await
        .expect("Y's attempt is answered once X's ended")
        .unwrap();
    assert!(
        matches!(answer, Err(Refusal::LockedOut { .. })),
        "{answer:?}"
    );
    assert!(matches!(
        x.admit("id:z", Budget::Spend).await,
        Err(Refusal::LockedOut { .. })
    ));
}

#[tokio::test]
async fn a_store_that_answers_but_does_not_do_its_part_counts_as_down() {
    let slapd = Slapd::start();
    let redis = RedisServer::start(None);
    let key = key_file(slapd.dir.path(), 21);
    let (a, ma) = instance(&slapd, None, &redis, Some(&key), LIMITS);
    wait_store_up(ma, 1);
    // A replica after a failover: PING answers, writes are refused.
    let mut conn = redis.connection();
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(free_port())
        .query(&mut conn)
        .unwrap();
    assert_eq!(sign_in(&a, "bob", "bob-pw"), (200, "success".into()));
    wait_store_up(ma, 0);
    let (_, ready) = metrics_get(ma, "/readyz");
    assert!(
        ready.contains("read only replica"),
        "the reason is shown: {ready}"
    );
    assert!(a.log().contains("read only replica"), "and logged");
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut conn)
        .unwrap();
    wait_store_up(ma, 1);

    // Another instance with another key: it does not share, and says so.
    let other = key_file(slapd.dir.path(), 22);
    let (b, mb) = instance(&slapd, None, &redis, Some(&other), LIMITS);
    wait_store_up(mb, 0);
    let (_, ready) = metrics_get(mb, "/readyz");
    assert!(ready.contains("another key"), "{ready}");
    assert_eq!(sign_in(&b, "bob", "bob-pw").1, "success");
    assert_eq!(
        store_up(ma),
        Some(1),
        "the first instance's key is the reference"
    );
}

#[test]
fn a_store_that_lost_its_data_gets_the_base_dn_fingerprint_back() {
    let slapd = Slapd::start();
    let redis = RedisServer::start(None);
    let key = key_file(slapd.dir.path(), 23);
    let base = format!("ou=groups,{BASE_DN}");
    let (a, ma) = instance(
        &slapd,
        Some(directory_at(&slapd, &base)),
        &redis,
        Some(&key),
        "",
    );
    assert_eq!(pull(&a, "/v1/sync/full").0, 200);
    modify(
        &slapd,
        &format!("dn: {base}\nchangetype: delete\n\ndn: {base}\nchangetype: add\nobjectClass: organizationalUnit\nou: groups\n"),
    );
    let _: () = redis::cmd("FLUSHALL")
        .query(&mut redis.connection())
        .unwrap();
    wait_store_up(ma, 1);
    let (status, body) = pull(&a, "/v1/sync/full");
    assert_eq!(
        (status, body[0]["error"].as_str()),
        (409, Some("base_dn_moved")),
        "{body:?}"
    );
}

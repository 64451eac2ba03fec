//! What makes the shared store usable, checked by every probe: it answers
//! on both connections, it runs ldapgate's scripts and takes their writes
//! (a replica after a failover answers PING but refuses writes; an ACL
//! user may lack EVALSHA; a store at its memory limit refuses writes), and
//! every instance uses the same key.

use redis::aio::ConnectionLike;

use super::key::{KEY_CHECK, STORED_KEY};
use super::ClusterStore;

/// Writes a key with a short life and answers the store's time: what the
/// limit scripts need (EVALSHA, SET with PX, TIME).
const HEALTH_SCRIPT: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'PX', 60000)
return redis.call('TIME')[1]
";

/// Where the health script writes.
const PROBE_KEY: &str = "ldapgate:probe";

/// Runs the health script on `conn` (`who` is written as the probe
/// key's value): an error when the store does not run ldapgate's scripts
/// or take their writes.
pub async fn write_probe<C: ConnectionLike>(conn: &mut C, who: &str) -> redis::RedisResult<()> {
    redis::Script::new(HEALTH_SCRIPT)
        .key(PROBE_KEY)
        .arg(who)
        .invoke_async::<String>(conn)
        .await
        .map(drop)
}

/// Writes `mine` as the check value of the instances' key unless one is
/// there; answers the one that was there, if any.
pub async fn claim_key_check<C: ConnectionLike>(
    conn: &mut C,
    mine: &str,
) -> redis::RedisResult<Option<String>> {
    redis::cmd("SET")
        .arg(KEY_CHECK)
        .arg(mine)
        .arg("NX")
        .arg("GET")
        .query_async(conn)
        .await
}

/// Ok when the store does all ldapgate needs of it; else why not, for the
/// log and `/readyz`.
pub async fn check(store: &ClusterStore) -> Result<(), String> {
    let mut fast = store.fast.clone();
    write_probe(&mut fast, "ok").await.map_err(|e| {
        format!("the store does not run ldapgate's scripts or take their writes: {e}")
    })?;
    // The sync connection too: after a restart of the store, it is
    // reconnected here rather than by the first pull.
    let mut bulk = store.bulk.clone();
    redis::cmd("PING")
        .query_async::<String>(&mut bulk)
        .await
        .map_err(|e| format!("the sync connection: {e}"))?;
    if !store.key.is_configured() {
        let stored = stored_key(&mut fast).await.map_err(|e| e.to_string())?;
        if store.key.adopt(&stored) {
            tracing::warn!(store = %store.address, "the key kept in the store changed (did the store lose its data?): using the new one");
        }
    }
    let mine = store.key.check().ok_or_else(|| "no key yet".to_owned())?;
    let found = claim_key_check(&mut fast, &mine)
        .await
        .map_err(|e| e.to_string())?;
    match found {
        Some(other) if other != mine => Err(format!(
            "another instance uses another key (the check value in {KEY_CHECK} differs): \
             lockout counts, cookies and approval tokens would not be shared; give every \
             instance the same cluster.key_file (or none), then `DEL {KEY_CHECK}` in the store"
        )),
        _ => Ok(()),
    }
}

/// The key kept in the store, made by the first instance to ask.
async fn stored_key(conn: &mut redis::aio::ConnectionManager) -> redis::RedisResult<Vec<u8>> {
    redis::cmd("SET")
        .arg(STORED_KEY)
        .arg(crate::random::hex(32))
        .arg("NX")
        .query_async::<Option<String>>(conn)
        .await?;
    redis::cmd("GET")
        .arg(STORED_KEY)
        .query_async::<Vec<u8>>(conn)
        .await
}

//! The checks of the shared store of `[cluster]`: reachable and
//! authenticated, its round-trip time, and whether every instance uses the
//! same key (`cluster.key_file`).

use std::time::{Duration, Instant};

use super::{Check, Status};
use crate::cluster::{self, health, KEY_CHECK};
use crate::config::ClusterConfig;

/// How long one check waits for the store.
const WAIT: Duration = Duration::from_secs(5);

/// A round trip slower than this is a warning: every sign-in waits for
/// one or two of them.
const SLOW: Duration = Duration::from_millis(20);

/// PINGs whose median round trip is reported.
const PINGS: usize = 5;

/// The checks of `config`'s store, on a connection of their own.
pub async fn checks(config: &ClusterConfig) -> Vec<Check> {
    let server = config.store.to_string();
    let check = |check: &'static str, status: Status, detail: String| Check {
        directory: String::new(),
        server: server.clone(),
        check,
        status,
        detail,
    };
    let skipped = |reason: &str| {
        ["write", "latency", "key"].map(|name| check(name, Status::Skip, reason.to_owned()))
    };
    let client = match cluster::client(config) {
        Ok(client) => client,
        Err(e) => {
            let mut out = vec![check("store", Status::Fail, e.reason)];
            out.extend(skipped("the store cannot be reached"));
            return out;
        }
    };
    let settings = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(WAIT))
        .set_response_timeout(Some(WAIT));
    let connected = client
        .get_multiplexed_async_connection_with_config(&settings)
        .await;
    let mut conn = match connected {
        Ok(conn) => conn,
        Err(e) => {
            let mut out = vec![check("store", Status::Fail, refused(&e))];
            out.extend(skipped("the store cannot be reached"));
            return out;
        }
    };
    // Connecting authenticates (AUTH) and selects the database; a store
    // that wants a password nobody gave refuses the first command.
    let info: Result<String, _> = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut conn)
        .await;
    let version = match info {
        Ok(text) => text
            .lines()
            .find_map(|l| {
                l.strip_prefix("redis_version:")
                    .or(l.strip_prefix("valkey_version:"))
            })
            .unwrap_or("unknown")
            .trim()
            .to_owned(),
        Err(e) => {
            let mut out = vec![check("store", Status::Fail, refused(&e))];
            out.extend(skipped("the store refuses ldapgate's commands"));
            return out;
        }
    };
    let auth = if config.password.is_some() {
        "authenticated"
    } else {
        "no password"
    };
    let mut out = vec![check(
        "store",
        Status::Ok,
        format!(
            "reachable, {auth}, database {}, version {version}",
            config.store.db
        ),
    )];
    out.push(writes(&mut conn, &check).await);
    out.push(latency(&mut conn, &check).await);
    out.push(key(&mut conn, config, &check).await);
    out
}

/// What a refused connection or command means to an operator.
fn refused(e: &redis::RedisError) -> String {
    let text = e.to_string();
    let authentication = e.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("NOAUTH" | "WRONGPASS"));
    match e.code() {
        _ if authentication => format!(
            "authentication refused: {text} (check cluster.password_file and the ACL user in cluster.store)"
        ),
        Some("NOPERM") => format!(
            "the ACL user may not run ldapgate's commands: {text} (see README, \"Two availability zones\", for the ACL it needs)"
        ),
        Some("READONLY") => format!(
            "the store is a read-only replica: {text} (point cluster.store at the primary)"
        ),
        Some("OOM") => format!("the store is at its memory limit and refuses writes: {text}"),
        _ => format!("cannot connect: {text}"),
    }
}

async fn latency(
    conn: &mut redis::aio::MultiplexedConnection,
    check: &impl Fn(&'static str, Status, String) -> Check,
) -> Check {
    let mut times = Vec::with_capacity(PINGS);
    for _ in 0..PINGS {
        let started = Instant::now();
        if let Err(e) = redis::cmd("PING").query_async::<String>(conn).await {
            return check("latency", Status::Fail, format!("PING failed: {e}"));
        }
        times.push(started.elapsed());
    }
    times.sort();
    let median = times[PINGS / 2];
    let detail = format!(
        "round trip {:.2} ms (median of {PINGS} PINGs, slowest {:.2} ms)",
        median.as_secs_f64() * 1000.0,
        times[PINGS - 1].as_secs_f64() * 1000.0
    );
    if median > SLOW {
        check(
            "latency",
            Status::Warn,
            format!(
                "{detail}: every sign-in waits for one or two round trips; put the store nearer"
            ),
        )
    } else {
        check("latency", Status::Ok, detail)
    }
}

/// The first instance to check writes its key's check value; every other
/// must find the same, or its key differs. Without `key_file` the key is
/// the one the store keeps.
async fn key(
    conn: &mut redis::aio::MultiplexedConnection,
    config: &ClusterConfig,
    check: &impl Fn(&'static str, Status, String) -> Check,
) -> Check {
    let mine = match &config.key {
        Some(key) => cluster::check_value(key.expose()),
        None => {
            let stored: Result<Option<Vec<u8>>, _> = redis::cmd("GET")
                .arg(cluster::STORED_KEY)
                .query_async(conn)
                .await;
            match stored {
                Err(e) => return check("key", Status::Fail, refused(&e)),
                // No instance has run yet: the first one makes the key.
                Ok(None) => {
                    return check(
                        "key",
                        Status::Warn,
                        no_key_file("no instance has made the key yet"),
                    )
                }
                Ok(Some(bytes)) => cluster::check_value(&bytes),
            }
        }
    };
    match health::claim_key_check(conn, &mine).await {
        Err(e) => check("key", Status::Fail, refused(&e)),
        Ok(Some(found)) if found != mine => check(
            "key",
            Status::Fail,
            format!(
                "this instance's key differs from the one the other instances use: lockout \
                 counts, cookies and approval tokens are not shared with them. Give every \
                 instance the same cluster.key_file (or none); after changing the key on all \
                 of them, `DEL {KEY_CHECK}` in the store"
            ),
        ),
        Ok(_) if config.key.is_none() => check(
            "key",
            Status::Warn,
            no_key_file("the instances share the key kept in the store"),
        ),
        Ok(None) => check(
            "key",
            Status::Ok,
            "this instance is the first to check: its key is now the reference".into(),
        ),
        Ok(Some(_)) => check(
            "key",
            Status::Ok,
            "cluster.key_file is the key the other instances use".into(),
        ),
    }
}

fn no_key_file(what: &str) -> String {
    format!(
        "no cluster.key_file: {what} ({}), which whoever reads the store can read too; give \
         every instance the same key_file (`head -c 32 /dev/urandom`)",
        cluster::STORED_KEY
    )
}

/// The store runs ldapgate's scripts and takes their writes: not a
/// replica, not out of memory, an ACL user with the commands it needs.
async fn writes(
    conn: &mut redis::aio::MultiplexedConnection,
    check: &impl Fn(&'static str, Status, String) -> Check,
) -> Check {
    match health::write_probe(conn, "verify").await {
        Ok(_) => check(
            "write",
            Status::Ok,
            "runs ldapgate's scripts and takes their writes".into(),
        ),
        Err(e) => check("write", Status::Fail, refused(&e)),
    }
}

//! The shared store of `[cluster]`: Redis (or Valkey) through which the
//! appliances of one tenant share what must not be per instance — lockout
//! counts, per-identity rates ([`crate::ratelimit`]), sync snapshots and
//! the base-DN fingerprint ([`crate::sync`]).
//!
//! Keys are `ldapgate:<directory>:...`; no key holds a login, DN or
//! password in clear: identities are hashed with the tenant's shared key
//! ([`ClusterStore::keyed`]): `key_file`, or without one a key the first
//! instance keeps in the store ([`STORED_KEY`]). When the store does not answer within
//! `cluster.timeout`, it counts as down: calls fail at once (no caller
//! waits on a dead store) and each instance decides on its own until a
//! probe finds the store answering again, within a second.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ring::hmac;

use crate::config::{ClusterConfig, ClusterKey, StoreAddress};
use crate::metrics::metrics;

/// How long a bulk call (a sync snapshot of a large directory) may take.
const BULK_TIMEOUT: Duration = Duration::from_secs(60);

/// How often the store is probed while it is down, and while it is up.
const PROBE_DOWN: Duration = Duration::from_secs(1);
const PROBE_UP: Duration = Duration::from_secs(5);

/// Where the instances keep their shared key when none has `key_file`.
pub const STORED_KEY: &str = "ldapgate:cluster-key";

/// The key holding [`key_check_value`] of the key the instances use.
pub const KEY_CHECK: &str = "ldapgate:key-check";

/// A value that tells keys apart without revealing them: HMAC-SHA256 of a
/// constant under `key`, in hex.
pub fn key_check_value(key: &ClusterKey) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key.expose());
    hmac::sign(&key, b"ldapgate key check")
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A store call that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("shared store {store} is down (calls resume when it answers again)")]
    Down { store: String },
    #[error("shared store {store} did not answer within {timeout:?}")]
    Timeout { store: String, timeout: Duration },
    #[error("shared store {store}: {source}")]
    Redis {
        store: String,
        source: redis::RedisError,
    },
    #[error("shared store {store}: {what} is not what ldapgate wrote ({reason}); it is ignored")]
    Corrupt {
        store: String,
        what: String,
        reason: String,
    },
}

/// The store could not be set up from its configuration.
#[derive(Debug, thiserror::Error)]
#[error("shared store {store}: {reason}")]
pub struct StoreSetupError {
    pub store: String,
    pub reason: String,
}

/// The connection to the shared store, and whether it answers.
pub struct ClusterStore {
    address: StoreAddress,
    /// Calls on the sign-in path: `cluster.timeout` each.
    fast: ConnectionManager,
    /// Sync snapshots, which may be megabytes: [`BULK_TIMEOUT`].
    bulk: ConnectionManager,
    timeout: Duration,
    /// The tenant's key: from `key_file`, or read from the store by the
    /// first probe that reaches it (the store counts as down until then).
    key: OnceLock<hmac::Key>,
    up: AtomicBool,
}

/// The client for `config`: its address, credentials and TLS roots.
pub fn client(config: &ClusterConfig) -> Result<redis::Client, StoreSetupError> {
    let store = config.store.to_string();
    let setup = |reason: String| StoreSetupError {
        store: store.clone(),
        reason,
    };
    let a = &config.store;
    let addr = if a.tls {
        redis::ConnectionAddr::TcpTls {
            host: a.host.clone(),
            port: a.port,
            insecure: false,
            tls_params: None,
        }
    } else {
        redis::ConnectionAddr::Tcp(a.host.clone(), a.port)
    };
    let mut settings = redis::RedisConnectionInfo::default().set_db(a.db);
    if let Some(user) = &a.username {
        settings = settings.set_username(user);
    }
    if let Some(password) = &config.password {
        settings = settings.set_password(password.expose());
    }
    // Nagle's algorithm would hold back each small command until the
    // previous one is acknowledged: milliseconds per sign-in.
    let tcp = redis::io::tcp::TcpSettings::default().set_nodelay(true);
    let info = redis::IntoConnectionInfo::into_connection_info(addr)
        .map_err(|e| setup(e.to_string()))?
        .set_redis_settings(settings)
        .set_tcp_settings(tcp);
    match &config.ca_file {
        Some(ca) if a.tls => {
            let root_cert = std::fs::read(ca)
                .map_err(|e| setup(format!("cannot read ca_file {}: {e}", ca.display())))?;
            redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                },
            )
        }
        _ => redis::Client::open(info),
    }
    .map_err(|e| setup(e.to_string()))
}

impl ClusterStore {
    /// The store `config` names; no connection is made yet (the first
    /// probe makes one), so a store that is down does not hold up a start.
    pub fn new(config: &ClusterConfig) -> Result<Arc<ClusterStore>, StoreSetupError> {
        let client = client(config)?;
        let store_name = config.store.to_string();
        let manager = |timeout: Duration| {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(config.timeout.max(Duration::from_secs(1))))
                .set_response_timeout(Some(timeout))
                // Reconnecting is the probe's job: a call never waits for it.
                .set_number_of_retries(1);
            ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(|e| {
                StoreSetupError {
                    store: store_name.clone(),
                    reason: e.to_string(),
                }
            })
        };
        let store = Arc::new(ClusterStore {
            address: config.store.clone(),
            fast: manager(config.timeout)?,
            bulk: manager(BULK_TIMEOUT)?,
            timeout: config.timeout,
            key: OnceLock::new(),
            up: AtomicBool::new(false),
        });
        if let Some(key) = &config.key {
            let _ = store
                .key
                .set(hmac::Key::new(hmac::HMAC_SHA256, key.expose()));
        }
        metrics().cluster_store(false);
        Ok(store)
    }

    /// The store's address, for messages (no password).
    pub fn address(&self) -> &StoreAddress {
        &self.address
    }

    /// Whether the store answered the last call or probe.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    fn set_up(&self, up: bool) {
        let was = self.up.swap(up, Ordering::Relaxed);
        if was != up {
            metrics().cluster_store(up);
            if up {
                tracing::info!(store = %self.address, "shared store answers: limits and sync state are shared again");
            } else {
                tracing::warn!(store = %self.address, "shared store is down: each instance enforces lockout with its own counts; sync pulls answer an error until it returns");
            }
        }
    }

    /// The prefix of every key of `directory`.
    pub fn namespace(&self, directory: &str) -> String {
        format!("ldapgate:{directory}:")
    }

    /// `parts` hashed with the tenant's key (HMAC-SHA256, 128 bits in hex):
    /// what stands for an identity in a store key. Err while no key is
    /// known (the store was never reached and there is no `key_file`).
    pub fn keyed(&self, parts: &[&[u8]]) -> Result<String, StoreError> {
        Ok(self.sign(parts)?[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect())
    }

    /// The tenant's key, for signing what every instance must verify
    /// (approval tokens): HMAC-SHA256 of `parts` under it.
    pub fn sign(&self, parts: &[&[u8]]) -> Result<Vec<u8>, StoreError> {
        let key = self.key.get().ok_or_else(|| StoreError::Down {
            store: self.address.to_string(),
        })?;
        let mut ctx = hmac::Context::with_key(key);
        for part in parts {
            // Lengths first, so that ("ab","c") and ("a","bc") differ.
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        Ok(ctx.sign().as_ref().to_vec())
    }

    /// The key kept in the store, made by the first instance to ask.
    async fn stored_key(&self) -> redis::RedisResult<Vec<u8>> {
        let mut conn = self.fast.clone();
        redis::cmd("SET")
            .arg(STORED_KEY)
            .arg(crate::random::hex(32))
            .arg("NX")
            .query_async::<Option<String>>(&mut conn)
            .await?;
        redis::cmd("GET")
            .arg(STORED_KEY)
            .query_async::<Vec<u8>>(&mut conn)
            .await
    }

    /// Runs `call` on the sign-in path's connection, within
    /// `cluster.timeout`; an error or timeout marks the store down.
    pub async fn fast<T, F, Fut>(&self, call: F) -> Result<T, StoreError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        self.run(self.fast.clone(), self.timeout, call).await
    }

    /// Runs `call` on the bulk connection (sync state).
    pub async fn bulk<T, F, Fut>(&self, call: F) -> Result<T, StoreError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        self.run(self.bulk.clone(), BULK_TIMEOUT, call).await
    }

    async fn run<T, F, Fut>(
        &self,
        conn: ConnectionManager,
        timeout: Duration,
        call: F,
    ) -> Result<T, StoreError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let store = || self.address.to_string();
        if !self.is_up() {
            return Err(StoreError::Down { store: store() });
        }
        match tokio::time::timeout(timeout, call(conn)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(source)) => {
                // A script's own error (a bug, not an outage) leaves the
                // store up; anything about the connection marks it down.
                if source.is_io_error()
                    || source.is_connection_dropped()
                    || source.is_timeout()
                    || source.is_connection_refusal()
                {
                    self.set_up(false);
                }
                Err(StoreError::Redis {
                    store: store(),
                    source,
                })
            }
            Err(_) => {
                self.set_up(false);
                Err(StoreError::Timeout {
                    store: store(),
                    timeout,
                })
            }
        }
    }

    /// Pings the store once; marks it up or down by the answer.
    pub async fn probe(&self) -> bool {
        let mut conn = self.fast.clone();
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<String>(&mut conn);
        let wait = self.timeout.max(Duration::from_secs(1));
        let mut up = matches!(tokio::time::timeout(wait, ping).await, Ok(Ok(_)));
        if up && self.key.get().is_none() {
            match tokio::time::timeout(wait, self.stored_key()).await {
                Ok(Ok(key)) if !key.is_empty() => {
                    let _ = self.key.set(hmac::Key::new(hmac::HMAC_SHA256, &key));
                }
                _ => up = false,
            }
        }
        self.set_up(up);
        up
    }

    /// Probes the store every second while it is down and every five while
    /// it is up, until the store is dropped: sharing resumes without a
    /// restart when the store returns.
    pub fn spawn_probe(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(store) = weak.upgrade() else {
                    return;
                };
                let up = store.probe().await;
                drop(store);
                tokio::time::sleep(if up { PROBE_UP } else { PROBE_DOWN }).await;
            }
        });
    }
}

//! The shared store of `[cluster]`: Redis (or Valkey) through which the
//! appliances of one tenant share what must not be per instance — lockout
//! counts, per-identity rates ([`crate::ratelimit`]), sync snapshots and
//! the base-DN fingerprint ([`crate::sync`]).
//!
//! Keys are `ldapgate:<directory>:...`; no key holds a login, DN or
//! password in clear: identities are hashed with the tenant's shared key
//! ([`ClusterStore::keyed`]): `key_file`, or without one a key the first
//! instance keeps in the store ([`key::STORED_KEY`]).
//!
//! The store counts as down when a call fails or does not answer within
//! `cluster.timeout`, and when the probe ([`health`]) finds that it cannot
//! write, run the scripts, or that another instance uses another key:
//! calls then fail at once (calls in flight end too), the reason is
//! logged, and each instance decides on its own until a probe finds the
//! store whole again, within a second or two.

pub mod health;
pub mod key;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ring::aead;
use tokio::sync::Notify;

use crate::config::{ClusterConfig, StoreAddress};
use crate::metrics::metrics;
use key::TenantKey;
pub use key::{check_value, KEY_CHECK, STORED_KEY};

/// How long a bulk call (a sync snapshot of a large directory) may take;
/// it ends sooner when the store is found down meanwhile.
const BULK_TIMEOUT: Duration = Duration::from_secs(30);

/// What a sealed value starts with (and its format version).
const SEALED: &[u8] = b"lg1:";

/// How often the store is probed while it is down, and while it is up.
const PROBE_DOWN: Duration = Duration::from_secs(1);
const PROBE_UP: Duration = Duration::from_secs(5);

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
    /// Its section of the configuration (what `verify` checks).
    config: ClusterConfig,
    address: StoreAddress,
    /// Calls on the sign-in path: `cluster.timeout` each.
    fast: ConnectionManager,
    /// Sync snapshots, which may be megabytes: [`BULK_TIMEOUT`].
    bulk: ConnectionManager,
    timeout: Duration,
    key: TenantKey,
    up: AtomicBool,
    /// Why the store counts as down, as last logged.
    reason: Mutex<Option<String>>,
    /// Wakes the calls in flight when the store is found down.
    down: Notify,
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
            config: config.clone(),
            address: config.store.clone(),
            fast: manager(config.timeout)?,
            bulk: manager(BULK_TIMEOUT)?,
            timeout: config.timeout,
            key: TenantKey::new(config.key.as_ref()),
            up: AtomicBool::new(false),
            reason: Mutex::new(None),
            down: Notify::new(),
        });
        metrics().cluster_store(false);
        Ok(store)
    }

    /// Its section of the configuration.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// The store's address, for messages (no password).
    pub fn address(&self) -> &StoreAddress {
        &self.address
    }

    /// Whether the store answered the last call or probe.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Why the store counts as down, when it does.
    pub fn down_reason(&self) -> Option<String> {
        if self.is_up() {
            return None;
        }
        self.reason.lock().ok().and_then(|r| r.clone())
    }

    /// Marks the store up, or down for `reason`; a change is logged, and a
    /// new reason while down too (the first failed probe says why).
    fn set_up(&self, up: bool, reason: Option<String>) {
        let was = self.up.swap(up, Ordering::Relaxed);
        if was != up {
            metrics().cluster_store(up);
        }
        if up {
            if let Ok(mut r) = self.reason.lock() {
                *r = None;
            }
            if !was {
                tracing::info!(store = %self.address, "shared store answers: limits and sync state are shared again");
            }
            return;
        }
        self.down.notify_waiters();
        let reason = reason.unwrap_or_else(|| "no answer".into());
        let new = self
            .reason
            .lock()
            .map(|mut r| r.replace(reason.clone()).as_ref() != Some(&reason))
            .unwrap_or(true);
        if was || new {
            tracing::warn!(store = %self.address, %reason, "shared store is down: each instance enforces lockout with its own counts; sync pulls answer store_unavailable until it returns");
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
        self.key.sign(parts).ok_or_else(|| StoreError::Down {
            store: self.address.to_string(),
        })
    }

    /// `plain` encrypted for the store (AES-256-GCM under a key derived
    /// from the tenant's key for `purpose`, bound to `context`): what sync
    /// snapshots are kept as, since they hold DNs and hashes of lines.
    pub fn seal(
        &self,
        purpose: &[u8],
        context: &[u8],
        plain: Vec<u8>,
    ) -> Result<Vec<u8>, StoreError> {
        let key = self.aead_key(purpose)?;
        let mut nonce = [0u8; aead::NONCE_LEN];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
            .map_err(|_| self.corrupt("a sealed value", "no system randomness for a nonce"))?;
        let mut body = plain;
        key.seal_in_place_append_tag(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(context),
            &mut body,
        )
        .map_err(|_| self.corrupt("a sealed value", "sealing failed"))?;
        let mut out = Vec::with_capacity(SEALED.len() + nonce.len() + body.len());
        out.extend_from_slice(SEALED);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// The plain bytes of what [`Self::seal`] made with the same purpose
    /// and context.
    pub fn open(
        &self,
        purpose: &[u8],
        context: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        let rest = sealed
            .strip_prefix(SEALED)
            .filter(|r| r.len() >= aead::NONCE_LEN)
            .ok_or_else(|| self.corrupt("a sealed value", "not sealed by ldapgate"))?;
        let (nonce, body) = rest.split_at(aead::NONCE_LEN);
        let nonce = aead::Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| self.corrupt("a sealed value", "bad nonce"))?;
        let mut body = body.to_vec();
        let plain = self
            .aead_key(purpose)?
            .open_in_place(nonce, aead::Aad::from(context), &mut body)
            .map_err(|_| {
                self.corrupt(
                    "a sealed value",
                    "it does not open with this instance's key (another key_file?)",
                )
            })?;
        Ok(plain.to_vec())
    }

    fn aead_key(&self, purpose: &[u8]) -> Result<aead::LessSafeKey, StoreError> {
        let derived = self.sign(&[b"seal", purpose])?;
        let unbound = aead::UnboundKey::new(&aead::AES_256_GCM, &derived)
            .map_err(|_| self.corrupt("a sealed value", "key derivation"))?;
        Ok(aead::LessSafeKey::new(unbound))
    }

    fn corrupt(&self, what: &str, reason: &str) -> StoreError {
        StoreError::Corrupt {
            store: self.address.to_string(),
            what: what.to_owned(),
            reason: reason.to_owned(),
        }
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

    /// Runs a script on the sign-in path's connection (see [`Self::fast`]).
    pub async fn fast_script<T: redis::FromRedisValue>(
        &self,
        call: &redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        self.fast(|mut conn| async move { call.invoke_async(&mut conn).await })
            .await
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
        // Registered before the check, so that no marking down is missed.
        let down = self.down.notified();
        if !self.is_up() {
            return Err(StoreError::Down { store: store() });
        }
        let answer = tokio::select! {
            answer = tokio::time::timeout(timeout, call(conn)) => answer,
            () = down => return Err(StoreError::Down { store: store() }),
        };
        match answer {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(source)) => {
                // Whatever the store refuses (a connection lost, READONLY
                // after a failover, NOPERM, OOM) means it does not do its
                // part: each instance counts alone until a probe finds it
                // whole.
                self.set_up(false, Some(source.to_string()));
                Err(StoreError::Redis {
                    store: store(),
                    source,
                })
            }
            Err(_) => {
                self.set_up(false, Some(format!("no answer within {timeout:?}")));
                Err(StoreError::Timeout {
                    store: store(),
                    timeout,
                })
            }
        }
    }

    /// Checks the store once ([`health::check`]); marks it up or down by
    /// the answer.
    pub async fn probe(&self) -> bool {
        let wait = self.timeout.max(Duration::from_secs(1));
        let checked = tokio::time::timeout(wait * 4, health::check(self)).await;
        let result = checked.unwrap_or_else(|_| Err(format!("no answer within {:?}", wait * 4)));
        let up = result.is_ok();
        self.set_up(up, result.err());
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

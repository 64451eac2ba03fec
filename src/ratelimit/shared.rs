//! Lockout counts, lockouts and per-identity rates in the shared store, so
//! that every instance of a tenant counts an identity's attempts together.
//!
//! Each operation is one Lua script run atomically by the store
//! (`begin.lua`, `settle.lua`, `unknown.lua`, on the functions of
//! `limits.lua`), on the store's clock: concurrent failures on two
//! instances are never lost, and an account's attempts take turns across
//! instances (a turn key, besides each instance's own turn lock), so
//! concurrent wrong passwords stop at `failures_before_lockout` exactly.
//! While an identity has no failure counted, its attempts skip the turn:
//! each instance runs one at a time, so at most [`MAX_INSTANCES`] can fail
//! together, which cannot pass a limit of that many or more; a sign-in
//! with the right password then costs one call to the store, not two.
//! Such attempts are marked (per instance, until they end or the
//! operation timeout), and an attempt that could reach the limit waits
//! until no marked attempt of another instance runs.
//! Keys are `ldapgate:<directory>:limit:{<hash>}:<part>`, the hash keyed
//! with the tenant's key: no login or id in clear.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::Script;

use super::Refusal;
use crate::cluster::{ClusterStore, StoreError};
use crate::config::{Rate, RateLimitConfig};

const PRELUDE: &str = include_str!("limits.lua");

/// Appliances a tenant runs at most (one per availability zone).
pub const MAX_INSTANCES: u32 = 2;

/// How an attempt pays into its identity's rate in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateMode {
    /// Paid at admission.
    Spend,
    /// Checked at admission, paid when settled.
    Check,
}

/// What the store answered an admission.
#[derive(Debug, PartialEq, Eq)]
pub enum Begun {
    /// Admitted; `turn`: holding the identity's turn (to be released by
    /// [`SharedLimits::settle`]).
    Admitted {
        turn: bool,
    },
    /// Another instance's attempt for the identity holds its turn.
    Busy,
    Refused(Refusal),
}

/// A rate as the scripts take it: microseconds per attempt, and the burst.
#[derive(Debug, Clone, Copy)]
struct Gcra {
    interval_us: u64,
    burst: u32,
}

impl From<Rate> for Gcra {
    fn from(rate: Rate) -> Gcra {
        let count = rate.count.get();
        let period_us = u64::try_from(rate.period.as_micros()).unwrap_or(u64::MAX);
        Gcra {
            interval_us: (period_us / u64::from(count)).max(1),
            burst: count,
        }
    }
}

/// The shared limits of one directory.
pub struct SharedLimits {
    store: Arc<ClusterStore>,
    namespace: String,
    identity_rate: Gcra,
    service_rate: Gcra,
    failures_before_lockout: u32,
    window_ms: u64,
    lock_ms: u64,
    /// How long a turn outlives an instance that died holding it.
    turn_ms: u64,
    /// How long an attempt without a turn stays marked at most: the
    /// operation timeout, which bounds its bind.
    mark_ms: u64,
    /// This instance, in the marks of attempts without a turn and in turn
    /// tokens.
    instance: String,
    /// Attempts so far, numbering turn tokens.
    attempts: AtomicU64,
    begin: Script,
    settle: Script,
    unknown: Script,
}

/// The store keys of one identity.
struct Keys {
    turn: String,
    fail: String,
    lock: String,
    rate: String,
    marks: String,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn refusal(code: i64, ms: i64) -> Option<Refusal> {
    let retry_after = Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    match code {
        1 => Some(Refusal::LockedOut { retry_after }),
        3 => Some(Refusal::IdentityRate { retry_after }),
        _ => None,
    }
}

impl SharedLimits {
    /// The limits of `cfg` for `directory`, kept in `store`. A turn held by
    /// an instance that died is free again after `operation_timeout` and
    /// five seconds.
    pub fn new(
        store: Arc<ClusterStore>,
        directory: &str,
        cfg: &RateLimitConfig,
        operation_timeout: Duration,
    ) -> SharedLimits {
        let script = |body: &str| Script::new(&format!("{PRELUDE}\n{body}"));
        SharedLimits {
            namespace: store.namespace(directory),
            store,
            identity_rate: cfg.binds_per_identity.into(),
            service_rate: cfg.service_binds_per_identity.into(),
            failures_before_lockout: cfg.failures_before_lockout,
            window_ms: millis(cfg.lockout_window),
            lock_ms: millis(cfg.lockout_duration),
            turn_ms: millis(operation_timeout + Duration::from_secs(5)),
            mark_ms: millis(operation_timeout),
            instance: crate::random::hex(8),
            attempts: AtomicU64::new(0),
            begin: script(include_str!("begin.lua")),
            settle: script(include_str!("settle.lua")),
            unknown: script(include_str!("unknown.lua")),
        }
    }

    /// A token naming one attempt's turn: this instance and a number, so
    /// that no two attempts anywhere share one.
    pub fn token(&self) -> String {
        let n = self.attempts.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n:x}", self.instance)
    }

    /// Whether the store answers now; while it does not, the caller
    /// decides with its own counts.
    pub fn is_up(&self) -> bool {
        self.store.is_up()
    }

    fn keys(&self, identity: &str) -> Result<Keys, StoreError> {
        let hash = self.store.keyed(&[b"limit", identity.as_bytes()])?;
        let key = |part: &str| format!("{}limit:{{{hash}}}:{part}", self.namespace);
        Ok(Keys {
            turn: key("turn"),
            fail: key("fail"),
            lock: key("lock"),
            rate: key("rate"),
            marks: key("marks"),
        })
    }

    /// Admits an attempt for `identity`: refused when locked or over its
    /// rate, [`Begun::Busy`] while another instance's attempt holds its
    /// turn. With a `token`, the turn is taken (and released by
    /// [`Self::settle`] with the same token).
    pub async fn begin(
        &self,
        identity: &str,
        token: Option<&str>,
        mode: RateMode,
        service: bool,
    ) -> Result<Begun, StoreError> {
        let keys = self.keys(identity)?;
        let rate = if service {
            self.service_rate
        } else {
            self.identity_rate
        };
        let mode = match mode {
            RateMode::Spend => 1,
            RateMode::Check => 2,
        };
        let mut call = self.begin.prepare_invoke();
        call.key(&keys.turn)
            .key(&keys.lock)
            .key(&keys.rate)
            .key(&keys.fail)
            .key(&keys.marks)
            .arg(token.unwrap_or(""))
            .arg(self.turn_ms)
            .arg(mode)
            .arg(rate.interval_us)
            .arg(rate.burst)
            .arg(self.failures_before_lockout)
            .arg(&self.instance)
            .arg(self.mark_ms)
            .arg(MAX_INSTANCES);
        let (code, ms): (i64, i64) = self.store.fast_script(&call).await?;
        Ok(match (code, refusal(code, ms)) {
            (2, _) => Begun::Busy,
            (_, Some(refused)) => Begun::Refused(refused),
            _ => Begun::Admitted { turn: ms == 1 },
        })
    }

    /// Settles an admitted attempt: `tested` is None when the directory did
    /// not test the password, else whether it was right; with `charge`,
    /// the identity's rate is paid now. Returns true when this attempt
    /// locked the identity.
    pub async fn settle(
        &self,
        identity: &str,
        token: Option<&str>,
        tested: Option<bool>,
        charge: bool,
    ) -> Result<bool, StoreError> {
        let keys = self.keys(identity)?;
        let tested = match tested {
            None => 0,
            Some(false) => 1,
            Some(true) => 2,
        };
        let mut call = self.settle.prepare_invoke();
        call.key(&keys.turn)
            .key(&keys.fail)
            .key(&keys.lock)
            .key(&keys.rate)
            .key(&keys.marks)
            .arg(token.unwrap_or(""))
            .arg(tested)
            .arg(self.failures_before_lockout)
            .arg(self.window_ms)
            .arg(self.lock_ms)
            .arg(u8::from(charge))
            .arg(self.identity_rate.interval_us)
            .arg(self.identity_rate.burst)
            .arg(&self.instance);
        let locked: i64 = self.store.fast_script(&call).await?;
        Ok(locked == 1)
    }

    /// A wrong guess decided at once: refused when locked or over its
    /// rate, else counted as a wrong password, in one step. Ok(true) when
    /// it locked the identity.
    pub async fn unknown(&self, identity: &str) -> Result<Result<bool, Refusal>, StoreError> {
        let keys = self.keys(identity)?;
        let mut call = self.unknown.prepare_invoke();
        call.key(&keys.fail)
            .key(&keys.lock)
            .key(&keys.rate)
            .arg(self.failures_before_lockout)
            .arg(self.window_ms)
            .arg(self.lock_ms)
            .arg(self.identity_rate.interval_us)
            .arg(self.identity_rate.burst);
        let (code, ms): (i64, i64) = self.store.fast_script(&call).await?;
        Ok(match refusal(code, ms) {
            Some(refused) => Err(refused),
            None => Ok(ms == 1),
        })
    }
}

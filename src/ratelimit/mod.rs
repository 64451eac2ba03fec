//! Bind rate limiting and lockout.
//!
//! Rates are GCRA limiters from `governor`, keyed by client address (IPv6
//! by /64) and by identity: an account's id, a service entry's id with the
//! client address, or the normalised login when it did not resolve (the
//! keys are made by [`crate::auth`]). Lockout counts wrong-password results
//! per identity within a window; an account's attempts take turns, so that
//! concurrent ones cannot overshoot it. Memory stays bounded: limiter keys
//! whose state has returned to "fresh" are dropped by
//! [`BindLimiter::housekeeping`], and the other tables are capacity-bounded
//! caches with time-to-live or time-to-idle.
//!
//! With `[cluster]`, lockout counts, lockouts, per-identity rates and
//! turns live in the shared store ([`shared`]) and every instance of the
//! tenant counts together; per-address rates stay per instance. Each
//! instance keeps its own counts too (failures and lockouts it saw), and
//! decides with them alone while the store is down: never "no limit".

pub mod shared;

use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::{Rate, RateLimitConfig};
use shared::{Begun, RateMode, SharedLimits};

/// How often an attempt asks again for a turn another instance holds.
const TURN_POLL: Duration = Duration::from_millis(5);

/// Seconds a turn left by a failed admission is tried to be released: its
/// life in the store is shorter.
const TURN_RELEASE_TRIES: u32 = 60;

/// Most identities tracked for lockout; beyond it the oldest are evicted.
const MAX_TRACKED: u64 = 200_000;

/// How long an identity's turn lock outlives its last use. Longer than any
/// bind can take, so a lock in use is not dropped for idleness (only past
/// MAX_TRACKED identities, when the worst case is one overshoot).
const TURN_IDLE: Duration = Duration::from_secs(600);

/// The key a client address is counted under: the address itself for IPv4
/// (and v4-mapped IPv6), the /64 network for IPv6, since one host commonly
/// holds a whole /64.
pub fn client_key(client: IpAddr) -> IpAddr {
    match client.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(prefix.into())
        }
        v4 => v4,
    }
}

/// Why an attempt may not go ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Too many attempts from this client address.
    ClientRate { retry_after: Duration },
    /// Too many attempts for this identity.
    IdentityRate { retry_after: Duration },
    /// Locked after repeated wrong passwords.
    LockedOut { retry_after: Duration },
}

impl Refusal {
    pub fn retry_after(&self) -> Duration {
        match self {
            Refusal::ClientRate { retry_after }
            | Refusal::IdentityRate { retry_after }
            | Refusal::LockedOut { retry_after } => *retry_after,
        }
    }

    /// A metric-safe label.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::ClientRate { .. } => "per_ip",
            Refusal::IdentityRate { .. } => "per_identity",
            Refusal::LockedOut { .. } => "lockout",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    since: Instant,
}

/// The limits for one directory.
pub struct BindLimiter {
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    per_identity: DefaultKeyedRateLimiter<String>,
    /// Entries outside the account classes (service accounts).
    per_service: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
    failures_before_lockout: u32,
    lockout_window: Duration,
    lockout_duration: Duration,
    failures: moka::sync::Cache<String, Failures>,
    locked: moka::sync::Cache<String, Instant>,
    /// Identities whose `per_identity` budget ran out, until when: lets an
    /// attempt be admitted without spending from the budget, which is
    /// spent only once the directory has tested a password.
    exhausted: moka::sync::Cache<String, Instant>,
    /// One attempt at a time per account, so that concurrent wrong
    /// passwords cannot overshoot `failures_before_lockout`.
    turns: moka::sync::Cache<String, Arc<tokio::sync::Mutex<()>>>,
    /// The tenant's shared counts, with `[cluster]`.
    shared: Option<Arc<SharedLimits>>,
}

/// How an attempt pays into its identity's rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// An account's sign-in: paid at admission (`binds_per_identity`).
    Spend,
    /// An account's bind by DN: checked at admission, paid when the
    /// directory tested the password (see [`BindLimiter::settle`]).
    Later,
    /// An entry outside the account classes: `service_binds_per_identity`,
    /// paid at admission, without a turn.
    Service,
}

/// An attempt admitted by [`BindLimiter::admit`], to be settled with
/// [`BindLimiter::settle`]; it holds the identity's turn until then.
pub struct Admission {
    identity: String,
    budget: Budget,
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
    /// Set when the shared store admitted the attempt.
    shared: Option<SharedTurn>,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The identity is an account id or a login: not for logs.
        f.debug_struct("Admission")
            .field("budget", &self.budget)
            .field("shared", &self.shared.is_some())
            .finish_non_exhaustive()
    }
}

/// The identity's turn in the shared store: released when settled, or, if
/// the attempt is dropped unsettled, by a task of its own.
struct SharedTurn {
    limits: Arc<SharedLimits>,
    identity: String,
    token: Option<String>,
}

impl Drop for SharedTurn {
    fn drop(&mut self) {
        let Some(token) = self.token.take() else {
            return;
        };
        let limits = self.limits.clone();
        let identity = std::mem::take(&mut self.identity);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = limits.settle(&identity, Some(&token), None, false).await;
            });
        }
    }
}

/// What the directory made of the password of an admitted attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tested {
    /// Not tested (refused unread, unavailable, another error).
    No,
    WrongPassword,
    RightPassword,
    /// Tested, and the bind refused for another reason (an AD sub-code of
    /// a disabled, expired or must-change account): paid for, but neither
    /// a failure nor a success.
    Refused,
}

fn quota(rate: Rate) -> Quota {
    // `count` per `period`, with a burst of `count`. The period divided by
    // a non-zero count is non-zero unless the period is below a nanosecond
    // per request, which config validation cannot produce; fall back to
    // one per period rather than panic.
    let per_request = rate.period / rate.count.get();
    Quota::with_period(per_request)
        .unwrap_or_else(|| Quota::with_period(rate.period).unwrap_or(Quota::per_second(rate.count)))
        .allow_burst(rate.count)
}

impl BindLimiter {
    /// Limits of one instance alone.
    pub fn new(cfg: &RateLimitConfig) -> Arc<BindLimiter> {
        Self::with_shared(cfg, None)
    }

    /// Limits counted with the other instances of the tenant through
    /// `shared`, when given.
    pub fn with_shared(cfg: &RateLimitConfig, shared: Option<SharedLimits>) -> Arc<BindLimiter> {
        Arc::new(BindLimiter {
            shared: shared.map(Arc::new),
            per_ip: RateLimiter::keyed(quota(cfg.binds_per_ip)),
            per_identity: RateLimiter::keyed(quota(cfg.binds_per_identity)),
            per_service: RateLimiter::keyed(quota(cfg.service_binds_per_identity)),
            clock: DefaultClock::default(),
            failures_before_lockout: cfg.failures_before_lockout,
            lockout_window: cfg.lockout_window,
            lockout_duration: cfg.lockout_duration,
            failures: moka::sync::Cache::builder()
                .max_capacity(MAX_TRACKED)
                .time_to_live(cfg.lockout_window)
                .build(),
            locked: moka::sync::Cache::builder()
                .max_capacity(MAX_TRACKED)
                .time_to_live(cfg.lockout_duration)
                .build(),
            exhausted: moka::sync::Cache::builder()
                .max_capacity(MAX_TRACKED)
                .time_to_live(cfg.binds_per_identity.period)
                .build(),
            turns: moka::sync::Cache::builder()
                .max_capacity(MAX_TRACKED)
                .time_to_idle(TURN_IDLE)
                .build(),
        })
    }

    fn check<K: Hash + Eq + Clone>(
        &self,
        limiter: &DefaultKeyedRateLimiter<K>,
        key: &K,
    ) -> Result<(), Duration> {
        limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Counts an attempt from `client`.
    pub fn check_client(&self, client: IpAddr) -> Result<(), Refusal> {
        self.check(&self.per_ip, &client_key(client))
            .map_err(|retry_after| Refusal::ClientRate { retry_after })
    }

    /// Refuses an identity that is locked out (as this instance knows);
    /// counts nothing.
    fn check_lockout(&self, identity: &str) -> Result<(), Refusal> {
        match self.locked.get(identity) {
            Some(until) if until > Instant::now() => Err(Refusal::LockedOut {
                retry_after: until - Instant::now(),
            }),
            _ => Ok(()),
        }
    }

    /// Counts an attempt for `identity`.
    fn check_identity(&self, identity: &str) -> Result<(), Refusal> {
        self.check_lockout(identity)?;
        self.spend(identity)
    }

    /// Spends one attempt from `identity`'s budget; remembers when it ran out.
    fn spend(&self, identity: &str) -> Result<(), Refusal> {
        self.check(&self.per_identity, &identity.to_owned())
            .map_err(|retry_after| {
                self.exhausted
                    .insert(identity.to_owned(), Instant::now() + retry_after);
                Refusal::IdentityRate { retry_after }
            })
    }

    /// Admits an attempt for `identity` without spending from its budget:
    /// refused when locked or when its budget ran out. The attempt is paid
    /// for by [`Self::charge`] once the directory tested its password, so a
    /// bind the directory refuses unread (an unsupported critical control,
    /// say) costs the account nothing. One attempt beyond the budget may
    /// pass before the refusal is known.
    fn admit_identity(&self, identity: &str) -> Result<(), Refusal> {
        self.check_lockout(identity)?;
        match self.exhausted.get(identity) {
            Some(until) if until > Instant::now() => Err(Refusal::IdentityRate {
                retry_after: until - Instant::now(),
            }),
            _ => Ok(()),
        }
    }

    /// Pays for an attempt admitted by [`Self::admit_identity`].
    fn charge(&self, identity: &str) {
        let _ = self.spend(identity);
    }

    /// Counts an attempt for an entry outside the account classes (a
    /// service account): its lockout and its own rate,
    /// `service_binds_per_identity`. The caller makes `key` per client
    /// address, so that guessers cannot lock or starve it for everyone.
    fn check_service(&self, key: &str) -> Result<(), Refusal> {
        self.check_lockout(key)?;
        self.check(&self.per_service, &key.to_owned())
            .map_err(|retry_after| Refusal::IdentityRate { retry_after })
    }

    /// Waits for `identity`'s turn: attempts for one account are decided one
    /// at a time (the lockout check, the bind, the count), so concurrent wrong
    /// passwords stop at `failures_before_lockout` exactly. The turn ends when
    /// the guard is dropped.
    async fn turn(&self, identity: &str) -> tokio::sync::OwnedMutexGuard<()> {
        // The common case finds the lock without allocating a key.
        let lock = match self.turns.get(identity) {
            Some(lock) => lock,
            None => self.turns.get_with(identity.to_owned(), || {
                Arc::new(tokio::sync::Mutex::new(()))
            }),
        };
        lock.lock_owned().await
    }

    /// Records a wrong password for `identity`; returns true when this one
    /// locked it.
    fn record_failure(&self, identity: &str) -> bool {
        if self.failures_before_lockout == 0 {
            return false;
        }
        let now = Instant::now();
        let mut entry = self.failures.get(identity).unwrap_or(Failures {
            count: 0,
            since: now,
        });
        if now.duration_since(entry.since) > self.lockout_window {
            entry = Failures {
                count: 0,
                since: now,
            };
        }
        entry.count += 1;
        if entry.count >= self.failures_before_lockout {
            self.failures.invalidate(identity);
            self.locked
                .insert(identity.to_owned(), now + self.lockout_duration);
            return true;
        }
        self.failures.insert(identity.to_owned(), entry);
        false
    }

    /// Admits an attempt for `identity`, paying into its rate as `budget`
    /// says: refused when the identity is locked out or over its rate.
    /// Accounts' attempts (every budget but [`Budget::Service`]) wait for
    /// their turn first, here and, with `[cluster]`, across instances; the
    /// caller bounds the wait. Settle the admission with [`Self::settle`].
    pub async fn admit(&self, identity: &str, budget: Budget) -> Result<Admission, Refusal> {
        let turn = match budget {
            Budget::Service => None,
            Budget::Spend | Budget::Later => Some(self.turn(identity).await),
        };
        let mut admission = Admission {
            identity: identity.to_owned(),
            budget,
            _turn: turn,
            shared: None,
        };
        if let Some(limits) = self.shared.as_ref().filter(|l| l.is_up()) {
            match self.admit_shared(limits, identity, budget).await {
                Some(Ok(shared)) => {
                    admission.shared = Some(shared);
                    return Ok(admission);
                }
                Some(Err(refused)) => return Err(refused),
                // The store failed: this instance decides alone.
                None => {}
            }
        }
        match budget {
            Budget::Spend => self.check_identity(identity)?,
            Budget::Later => self.admit_identity(identity)?,
            Budget::Service => self.check_service(identity)?,
        }
        Ok(admission)
    }

    /// The store's admission; None when the store failed.
    async fn admit_shared(
        &self,
        limits: &Arc<SharedLimits>,
        identity: &str,
        budget: Budget,
    ) -> Option<Result<SharedTurn, Refusal>> {
        let (token, mode, service) = match budget {
            Budget::Spend => (Some(limits.token()), RateMode::Spend, false),
            Budget::Later => (Some(limits.token()), RateMode::Check, false),
            Budget::Service => (None, RateMode::Spend, true),
        };
        loop {
            match limits
                .begin(identity, token.as_deref(), mode, service)
                .await
            {
                Ok(Begun::Admitted { turn }) => {
                    return Some(Ok(SharedTurn {
                        limits: limits.clone(),
                        identity: identity.to_owned(),
                        token: token.filter(|_| turn),
                    }))
                }
                Ok(Begun::Busy) => tokio::time::sleep(TURN_POLL).await,
                Ok(Begun::Refused(refused)) => {
                    if let Refusal::LockedOut { retry_after } = refused {
                        // Remembered here too, for while the store is down.
                        self.locked
                            .insert(identity.to_owned(), Instant::now() + retry_after);
                    }
                    return Some(Err(refused));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "lockout counted by this instance alone");
                    if let Some(token) = token {
                        release_later(limits.clone(), identity.to_owned(), token);
                    }
                    return None;
                }
            }
        }
    }

    /// Settles an admitted attempt: a wrong password counts toward the
    /// identity's lockout, a right one clears its count, and an attempt
    /// admitted with [`Budget::Later`] pays its rate once the password was
    /// tested. Returns true when this attempt locked the identity. This
    /// instance's own counts are kept either way, for while the store is
    /// down.
    pub async fn settle(&self, mut admission: Admission, tested: Tested) -> bool {
        let identity = admission.identity.as_str();
        let charge = admission.budget == Budget::Later && tested != Tested::No;
        let locked_here = match tested {
            Tested::WrongPassword => self.record_failure(identity),
            Tested::RightPassword => {
                self.record_success(identity);
                false
            }
            Tested::No | Tested::Refused => false,
        };
        let Some(mut shared) = admission.shared.take() else {
            if charge {
                self.charge(identity);
            }
            return locked_here;
        };
        let token = shared.token.take();
        // Admitted without a turn (no failure was counted) and nothing to
        // count or pay: the store has nothing to hear.
        if token.is_none() && !charge && tested != Tested::WrongPassword {
            return locked_here;
        }
        let verdict = match tested {
            Tested::No | Tested::Refused => None,
            Tested::WrongPassword => Some(false),
            Tested::RightPassword => Some(true),
        };
        match shared
            .limits
            .settle(identity, token.as_deref(), verdict, charge)
            .await
        {
            Ok(locked) => locked,
            Err(e) => {
                tracing::warn!(error = %e, "attempt counted by this instance alone");
                if let Some(token) = token {
                    release_later(shared.limits.clone(), identity.to_owned(), token);
                }
                locked_here
            }
        }
    }

    /// A wrong guess decided without a turn (a login that names no entry,
    /// or a bind whose DN named another entry by the time it failed):
    /// refused when locked or over its rate, else paid for and counted as
    /// a wrong password at once. Ok(true) when this guess locked it.
    pub async fn count_wrong_guess(&self, identity: &str) -> Result<bool, Refusal> {
        if let Some(limits) = self.shared.as_ref().filter(|l| l.is_up()) {
            match limits.unknown(identity).await {
                Ok(answer) => {
                    if answer.is_ok() {
                        self.record_failure(identity);
                    }
                    return answer;
                }
                Err(e) => tracing::warn!(error = %e, "lockout counted by this instance alone"),
            }
        }
        self.check_identity(identity)?;
        Ok(self.record_failure(identity))
    }

    /// Takes over `old`'s failure counts and lockouts (a reload that changes
    /// the limits must not unlock anyone). Rate budgets start afresh.
    pub fn carry_over(&self, old: &BindLimiter) {
        for (key, failures) in old.failures.iter() {
            self.failures.insert(key.as_ref().clone(), failures);
        }
        for (key, until) in old.locked.iter() {
            self.locked.insert(key.as_ref().clone(), until);
        }
    }

    /// A correct password clears the failure count.
    fn record_success(&self, identity: &str) {
        self.failures.invalidate(identity);
    }

    /// Drops limiter state that has returned to "fresh"; call periodically.
    pub fn housekeeping(&self) {
        self.per_ip.retain_recent();
        self.per_ip.shrink_to_fit();
        self.per_identity.retain_recent();
        self.per_identity.shrink_to_fit();
        self.per_service.retain_recent();
        self.per_service.shrink_to_fit();
        self.failures.run_pending_tasks();
        self.locked.run_pending_tasks();
        self.turns.run_pending_tasks();
        self.exhausted.run_pending_tasks();
    }

    /// Keys held by the rate limiters and lockout tables, for tests and metrics.
    pub fn tracked_keys(&self) -> usize {
        self.per_ip.len()
            + self.per_identity.len()
            + self.per_service.len()
            + self.failures.entry_count() as usize
            + self.locked.entry_count() as usize
    }

    /// Runs [`Self::housekeeping`] every `every` until the limiter is dropped.
    pub fn spawn_housekeeping(self: &Arc<Self>, every: Duration) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(limiter) = weak.upgrade() else {
                    return;
                };
                limiter.housekeeping();
            }
        });
    }
}

/// Releases a turn the store may have given an admission that failed on
/// the way back (a store that stalled past `cluster.timeout` runs the call
/// when it resumes): once the store answers again, so that the account's
/// next attempts need not wait for the turn to expire.
fn release_later(limits: Arc<SharedLimits>, identity: String, token: String) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        for _ in 0..TURN_RELEASE_TRIES {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if limits.is_up()
                && limits
                    .settle(&identity, Some(&token), None, false)
                    .await
                    .is_ok()
            {
                return;
            }
        }
    });
}

/// The identity key for a login that did not resolve: case-folded and
/// trimmed, so `Alice` and `alice ` share a budget.
pub fn normalised_login(login: &str) -> String {
    format!("login:{}", login.trim().to_lowercase())
}

#[cfg(test)]
mod tests;

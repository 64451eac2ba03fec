//! Delegated authentication: a login identifier is resolved to exactly one
//! directory entry ([`resolver`]), then the password is verified by binding
//! as it on a connection of its own, and the directory's answer becomes a
//! typed [`outcome::Outcome`]. One code path serves the control channel, the
//! command line and the LDAP listener.
//!
//! One account is one identity ([`identity`]): lockout and per-identity
//! rates are kept by the entry's stable id, so a sign-in ID, any spelling
//! of the entry's DN in a bind on the listener ([`Authenticator::admit_dn_bind`])
//! and every channel count together.

pub mod accounts;
mod dn_bind;
pub mod freshness;
pub mod identity;
pub mod outcome;
pub mod resolver;
mod wrong_password;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::metrics::DirectoryMetrics;
use tracing::info;

use crate::config::TenantDirectory;
use crate::ldap::ppolicy::PolicyResponse;
use crate::ratelimit::{normalised_login, Admission, BindLimiter, Budget, Refusal, Tested};
use crate::upstream::requests::BindReply;
use crate::upstream::{Lease, UpstreamPool};
pub use dn_bind::BindTicket;
use freshness::{ChangeMarker, ChangeWatch};
use identity::IdentityIndex;
use outcome::{bind_outcome, Outcome};
use resolver::{Resolution, ResolvedEntry, SignInResolver};
use wrong_password::WrongPasswordReply;

/// Logins longer than this are refused without touching the directory.
pub const MAX_LOGIN_BYTES: usize = 256;

/// One sign-in attempt.
pub struct Attempt<'a> {
    pub login: &'a str,
    /// Never logged, never stored.
    pub password: &'a str,
    pub client: IpAddr,
    /// Where the attempt came from, for the audit line: "control", "cli", "ldap".
    pub channel: &'static str,
}

/// The verdict on one attempt.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attributes: Option<std::collections::BTreeMap<String, Vec<String>>>,
    /// Password policy warnings on a success (grace logins, expiry soon).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warnings: Option<PolicyResponse>,
    /// Why, for the caller; says nothing that tells an unknown login from a
    /// wrong password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip)]
    pub retry_after: Option<Duration>,
    /// The directory's BindResponse, as it sent it to ldapgate (message ID
    /// ldapgate's own), when the directory decided the attempt: an LDAP
    /// client gets its result code, diagnostic (AD's `data NNN`) and
    /// response controls. None where a rule of ldapgate's decided.
    #[serde(skip)]
    pub reply: Option<bytes::Bytes>,
}

impl Verdict {
    fn bare(outcome: Outcome, detail: Option<String>) -> Verdict {
        Verdict {
            outcome,
            dn: None,
            id: None,
            attributes: None,
            warnings: None,
            detail,
            retry_after: None,
            reply: None,
        }
    }

    fn refused(refusal: &Refusal) -> Verdict {
        let (outcome, detail) = match refusal {
            Refusal::LockedOut { .. } => (
                Outcome::AccountLocked,
                "locked by ldapgate after repeated wrong passwords",
            ),
            Refusal::ClientRate { .. } => {
                (Outcome::RateLimited, "too many attempts from this address")
            }
            Refusal::IdentityRate { .. } => {
                (Outcome::RateLimited, "too many attempts for this login")
            }
        };
        Verdict {
            retry_after: Some(refusal.retry_after()),
            ..Verdict::bare(outcome, Some(detail.into()))
        }
    }
}

/// What the audit line records besides the verdict.
#[derive(Default)]
struct AuditFacts {
    id: Option<String>,
    dn: Option<String>,
    server: Option<String>,
    subcode: Option<String>,
    cached: bool,
    collided: Vec<String>,
}

/// Delegated authentication for one directory.
pub struct Authenticator {
    resolver: SignInResolver,
    /// Which entry a bind DN reaches, for binds by DN on the listener.
    identities: IdentityIndex,
    /// When cached resolutions and identities may be used.
    watch: Arc<ChangeWatch>,
    /// Reads the directory's change marker for `watch`.
    marker: std::sync::Mutex<Option<ChangeMarker>>,
    /// Lends the connections that binds and the service account's
    /// searches go over.
    pool: Arc<UpstreamPool>,
    limiter: Arc<BindLimiter>,
    binds: Semaphore,
    /// How long an attempt waits for its turn (`directory.operation_timeout`).
    operation_timeout: Duration,
    /// What the directory answers a wrong password, which a login that
    /// names no entry gets too.
    wrong_password: WrongPasswordReply,
    /// The directory's metrics: outcomes and refusals.
    metrics: DirectoryMetrics,
}

/// Key of the login hash in audit lines: random, one per process, so that
/// one login has one hash across reloads and directories (and none across
/// restarts).
fn audit_key() -> &'static [u8; 32] {
    static KEY: std::sync::LazyLock<[u8; 32]> = std::sync::LazyLock::new(|| {
        let mut key = [0u8; 32];
        // Without the OS RNG the key is zero: the audit hash then only
        // hides the login from a casual reader, which is logged.
        if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key).is_err() {
            tracing::warn!("no system randomness for the audit key; login hashes are unkeyed");
        }
        key
    });
    &KEY
}

impl Authenticator {
    pub fn new(
        config: &TenantDirectory,
        pool: Arc<UpstreamPool>,
        limiter: Arc<BindLimiter>,
    ) -> Authenticator {
        let metrics = pool.metrics().clone();
        let watch = ChangeWatch::new(config.signin.change_check_interval);
        let d = &config.directory;
        Authenticator {
            resolver: SignInResolver::new(config, pool.clone(), watch.clone()),
            identities: IdentityIndex::new(
                pool.clone(),
                accounts::AccountClasses::from_config(config),
                d.kind,
                watch.clone(),
                config.signin.cache_ttl,
            ),
            marker: std::sync::Mutex::new(Some(ChangeMarker::new(
                pool.clone(),
                d.kind,
                d.base_dn.clone(),
            ))),
            watch,
            pool,
            limiter,
            binds: Semaphore::new(config.ratelimit.max_concurrent_binds),
            operation_timeout: config.directory.operation_timeout,
            wrong_password: WrongPasswordReply::new(&config.directory.base_dn),
            metrics,
        }
    }

    /// The verdict for a sign-in a rate limit or the lockout refused,
    /// counted in the metrics.
    fn refuse(&self, refusal: &Refusal) -> Verdict {
        self.metrics.rate_limited(refusal.reason());
        Verdict::refused(refusal)
    }

    /// What a login that names no entry answers: the directory's answer to
    /// a wrong password (learned from the last one). A bind to a DN that
    /// names no entry, with a random password, is made for every such
    /// login as a wrong password's bind is, so that neither the answer nor
    /// its time tells the two apart; before any wrong password was seen,
    /// that bind's own answer serves. None (ldapgate's own answer) when the
    /// directory cannot be asked.
    async fn wrong_password_reply(&self) -> Option<bytes::Bytes> {
        let probed = match wrong_password::random_password() {
            Some(password) => {
                let mut facts = AuditFacts::default();
                let bound = self
                    .directory_bind(self.wrong_password.probe_dn(), &password, &mut facts)
                    .await;
                bound.ok().map(|(reply, _lease)| reply)
            }
            None => None,
        };
        match (self.wrong_password.known(), probed) {
            (Some(known), _) => Some(known),
            (None, Some(reply)) if reply.code == 49 => Some(self.wrong_password.learn(&reply.pdu)),
            _ => None,
        }
    }

    /// One simple bind on a connection lent for sign-in binds, within the
    /// limit on binds in progress; only over an encrypted leg. Err: the
    /// verdict when the directory could not be asked.
    async fn directory_bind(
        &self,
        dn: &str,
        password: &str,
        facts: &mut AuditFacts,
    ) -> Result<(BindReply, Lease), Verdict> {
        let unavailable =
            |detail: String| Verdict::bare(Outcome::DirectoryUnavailable, Some(detail));
        let Ok(_permit) = tokio::time::timeout(self.operation_timeout, self.binds.acquire()).await
        else {
            let detail = "too many binds in progress (ratelimit.max_concurrent_binds)";
            self.metrics.rate_limited("concurrency");
            return Err(Verdict::bare(Outcome::RateLimited, Some(detail.into())));
        };
        let mut conn = self
            .pool
            .sign_in_lease()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let server = conn.server_name().to_owned();
        if !conn.encrypted() {
            // A password leaves ldapgate only over TLS.
            facts.server = Some(server.clone());
            return Err(unavailable(format!(
                "{server}: the directory leg is not encrypted (use ldaps:// or starttls)"
            )));
        }
        facts.server = Some(server);
        match conn.bind_simple(dn, password).await {
            Ok(reply) => Ok((reply, conn)),
            Err(e) => Err(unavailable(e.to_string())),
        }
    }

    pub fn limiter(&self) -> &Arc<BindLimiter> {
        &self.limiter
    }

    /// Starts reading the directory's change marker, which lets cached
    /// resolutions be used (a daemon's; a one-shot command never caches).
    /// The task ends when the authenticator is dropped; a second call does
    /// nothing.
    pub fn watch_changes(&self) {
        let marker = self.marker.lock().ok().and_then(|mut m| m.take());
        if let Some(marker) = marker {
            self.watch.spawn(marker);
        }
    }

    fn login_hash(&self, login: &str) -> String {
        let digest = Sha256::new()
            .chain_update(audit_key())
            .chain_update(login.as_bytes())
            .finalize();
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Decides one attempt and writes its audit line.
    pub async fn authenticate(&self, attempt: &Attempt<'_>) -> Verdict {
        self.authenticate_keeping(attempt, false).await.0
    }

    /// Like [`Self::authenticate`]; with `keep`, a successful attempt also
    /// hands back the upstream connection now bound as the user, for an
    /// LDAP session to carry on with, lent for the session from then on.
    /// Otherwise the connection goes back to the pool for the next sign-in.
    pub async fn authenticate_keeping(
        &self,
        attempt: &Attempt<'_>,
        keep: bool,
    ) -> (Verdict, Option<Lease>) {
        let started = Instant::now();
        let mut facts = AuditFacts::default();
        let (verdict, conn) = self.decide(attempt, keep, &mut facts).await;
        self.metrics.authentication(verdict.outcome.as_str());
        info!(
            target: "ldapgate::audit",
            directory = self.metrics.directory(),
            channel = attempt.channel,
            client = %attempt.client,
            login_hash = %self.login_hash(attempt.login),
            id = facts.id.as_deref().unwrap_or(""),
            dn = facts.dn.as_deref().unwrap_or(""),
            server = facts.server.as_deref().unwrap_or(""),
            outcome = verdict.outcome.as_str(),
            subcode = facts.subcode.as_deref().unwrap_or(""),
            collided = %facts.collided.join(","),
            cached = facts.cached,
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            "authentication"
        );
        (verdict, conn)
    }

    async fn decide(
        &self,
        attempt: &Attempt<'_>,
        keep: bool,
        facts: &mut AuditFacts,
    ) -> (Verdict, Option<Lease>) {
        if let Some(verdict) = self.refusal(attempt) {
            return (verdict, None);
        }
        let (entry, identity, cached) = match self.resolve(attempt, true, facts).await {
            Ok(found) => found,
            Err(verdict) => return (verdict, None),
        };
        let admission = match self.admit(&identity, Budget::Spend).await {
            Ok(admission) => admission,
            Err(verdict) => return (verdict, None),
        };
        let (verdict, conn) = self.bind(&entry, attempt.password, keep, facts).await;
        if verdict.outcome != Outcome::InvalidCredentials || !cached {
            self.count(&verdict, admission).await;
            return (verdict, conn);
        }
        // A cached resolution never counts as a wrong password: the entry
        // may have moved, been replaced or lost the login. Ask again.
        self.resolver.forget(attempt.login);
        let (fresh, fresh_identity, _) = match self.resolve(attempt, false, facts).await {
            Ok(found) => found,
            Err(verdict) => return (verdict, None),
        };
        if fresh.id == entry.id && fresh.dn == entry.dn {
            // The same entry: the password was wrong.
            self.count(&verdict, admission).await;
            return (verdict, conn);
        }
        self.settle(admission, Tested::No).await;
        let admission = match self.admit(&fresh_identity, Budget::Spend).await {
            Ok(admission) => admission,
            Err(verdict) => return (verdict, None),
        };
        let (verdict, conn) = self.bind(&fresh, attempt.password, keep, facts).await;
        self.count(&verdict, admission).await;
        (verdict, conn)
    }

    /// Admits an attempt for `identity` (see [`BindLimiter::admit`]),
    /// waiting at most `operation_timeout` for its turn; the attempt is
    /// decided while the admission is held.
    async fn admit(&self, identity: &str, budget: Budget) -> Result<Admission, Verdict> {
        match tokio::time::timeout(self.operation_timeout, self.limiter.admit(identity, budget))
            .await
        {
            Ok(Ok(admission)) => Ok(admission),
            Ok(Err(refused)) => Err(self.refuse(&refused)),
            Err(_) => {
                self.metrics.rate_limited("concurrency");
                Err(Verdict::bare(
                    Outcome::RateLimited,
                    Some("too many attempts in progress for this account".into()),
                ))
            }
        }
    }

    /// A wrong password counts toward the identity's lockout; a right one
    /// clears its count.
    async fn count(&self, verdict: &Verdict, admission: Admission) {
        let tested = match verdict.outcome {
            Outcome::InvalidCredentials => Tested::WrongPassword,
            Outcome::Success => Tested::RightPassword,
            _ => Tested::No,
        };
        self.settle(admission, tested).await;
    }

    /// Settles an admitted attempt (see [`BindLimiter::settle`]); a lockout
    /// it starts is counted in the metrics.
    async fn settle(&self, admission: Admission, tested: Tested) {
        if self.limiter.settle(admission, tested).await {
            self.metrics.locked_out();
        }
    }

    /// A wrong guess counted at once (see [`BindLimiter::count_wrong_guess`]);
    /// a lockout it starts is counted in the metrics.
    async fn count_wrong_guess(&self, identity: &str) -> Result<(), Refusal> {
        if self.limiter.count_wrong_guess(identity).await? {
            self.metrics.locked_out();
        }
        Ok(())
    }

    /// Everything before resolution: input checks and the client's rate.
    /// (A login as typed is limited only while it resolves to nothing: a
    /// login locked while it named no one is free once it names someone.)
    /// Returns the refusal, if any.
    fn refusal(&self, attempt: &Attempt<'_>) -> Option<Verdict> {
        let login = attempt.login;
        // Refused before any network I/O: these cannot be right.
        if attempt.password.is_empty() {
            return Some(Verdict::bare(
                Outcome::InvalidCredentials,
                Some("empty password".into()),
            ));
        }
        if login.trim().is_empty()
            || login.len() > MAX_LOGIN_BYTES
            || login.chars().any(char::is_control)
        {
            return Some(Verdict::bare(Outcome::InvalidCredentials, None));
        }
        if let Err(r) = self.limiter.check_client(attempt.client) {
            return Some(self.refuse(&r));
        }
        None
    }

    /// Resolves the login; an unknown one counts as a wrong guess for the
    /// login as typed. Returns the entry, its identity key and whether it
    /// came from cache.
    async fn resolve(
        &self,
        attempt: &Attempt<'_>,
        use_cache: bool,
        facts: &mut AuditFacts,
    ) -> Result<(Arc<ResolvedEntry>, String, bool), Verdict> {
        let login = attempt.login;
        let (resolution, cached) = match self.resolver.resolve(login, use_cache).await {
            Ok(r) => r,
            Err(e) => {
                return Err(Verdict::bare(
                    Outcome::DirectoryUnavailable,
                    Some(e.to_string()),
                ));
            }
        };
        facts.cached = cached;
        let entry = match resolution {
            Resolution::Found(entry) => entry,
            Resolution::NotFound => {
                // Counts as a wrong guess for this login, so a spray of
                // guesses at one unknown name is limited like any other.
                let login_key = normalised_login(login);
                if let Err(r) = self.count_wrong_guess(&login_key).await {
                    return Err(self.refuse(&r));
                }
                return Err(Verdict {
                    reply: self.wrong_password_reply().await,
                    ..Verdict::bare(Outcome::InvalidCredentials, None)
                });
            }
            Resolution::Ambiguous { entries, collided } => {
                facts.collided = collided;
                return Err(Verdict::bare(
                    Outcome::AmbiguousLogin,
                    Some(format!("the login matches {entries} entries")),
                ));
            }
        };
        facts.id = Some(entry.id.clone());
        facts.dn = Some(entry.dn.clone());
        let identity = identity::account_key(&entry.id);
        Ok((entry, identity, cached))
    }

    async fn bind(
        &self,
        entry: &Arc<ResolvedEntry>,
        password: &str,
        keep: bool,
        facts: &mut AuditFacts,
    ) -> (Verdict, Option<Lease>) {
        let (reply, conn) = match self.directory_bind(&entry.dn, password, facts).await {
            Ok(answered) => answered,
            Err(verdict) => return (verdict, None),
        };
        let server = facts.server.clone().unwrap_or_default();
        if let Some(code) = outcome::ad_subcode(&reply.diagnostic) {
            facts.subcode = Some(format!("{code:x}"));
        } else if let Some(err) = reply.policy.and_then(|p| p.error) {
            facts.subcode = Some(format!("ppolicy:{err}"));
        }
        let outcome = bind_outcome(reply.code, &reply.diagnostic, reply.policy.as_ref());
        if outcome == Outcome::InvalidCredentials && reply.code == 49 {
            self.wrong_password.learn(&reply.pdu);
        }
        // Bound as the user (the directory said success, perhaps with a
        // password policy restriction it enforces itself), or anonymous
        // after a failure: hand it to the session that asked, or return it
        // for the next sign-in's bind.
        let kept = (keep && reply.code == 0).then(|| conn.into_session());
        if outcome != Outcome::Success {
            let detail = match outcome {
                Outcome::InvalidCredentials => None,
                Outcome::DirectoryUnavailable => Some(format!(
                    "{server}: result {} {}",
                    reply.code, reply.diagnostic
                )),
                other => Some(other.as_str().replace('_', " ")),
            };
            let verdict = Verdict {
                reply: Some(reply.pdu),
                ..Verdict::bare(outcome, detail)
            };
            return (verdict, kept);
        }
        let warnings = reply
            .policy
            .filter(|p| p.grace_logins_remaining.is_some() || p.time_before_expiration.is_some());
        let verdict = Verdict {
            outcome: Outcome::Success,
            dn: Some(entry.dn.clone()),
            id: Some(entry.id.clone()),
            attributes: Some(entry.attributes.clone()),
            warnings,
            detail: None,
            retry_after: None,
            reply: Some(reply.pdu),
        };
        (verdict, kept)
    }
}

//! Simple binds by DN on the LDAP listener: forwarded to the directory as
//! they are, but counted and limited like every other sign-in, by client
//! address and by the identity the DN reaches ([`super::identity`]).
//!
//! - An account (an entry of the account classes) shares its rate
//!   (`binds_per_identity`) and its lockout with its sign-in IDs and every
//!   other spelling of its DN.
//!   Its attempts are decided one at a time, so that concurrent wrong
//!   passwords stop at the lockout threshold exactly.
//! - Another entry (a service account, an administrator) is limited per
//!   entry *and* client address: `service_binds_per_identity`, and after
//!   `failures_before_lockout` wrong passwords from one address, binds as it
//!   from that address are refused for `lockout_duration`, while the
//!   applications elsewhere that use it go on (a guesser can neither lock
//!   nor starve it for them).
//! - Every DN that reaches no entry the service account can see (a guess,
//!   a name hidden by access control, or a name with no entry such as
//!   OpenLDAP's rootdn) shares one budget per client address: the directory
//!   may take spellings ldapgate cannot tell are equal (attribute OIDs,
//!   Unicode compatibility forms), so no spelling may open a budget of its
//!   own.

use std::net::IpAddr;
use std::time::Instant;

use tracing::info;

use super::identity::{account_key, Identity};
use super::outcome::{bind_outcome, Outcome};
use super::{Authenticator, Verdict};
use crate::ratelimit::{client_key, Admission, Budget, Tested};

/// invalidCredentials (RFC 4511 appendix A).
const INVALID_CREDENTIALS: i64 = 49;

/// A bind by DN that was let through, to settle when its response comes.
#[derive(Debug)]
pub struct BindTicket {
    identity: Identity,
    /// Where its rate and its wrong passwords count.
    key: String,
    dn: String,
    client: IpAddr,
    /// The identity came from the cache.
    cached: bool,
    started: Instant,
    /// The attempt's admission (an account's turn), held until the
    /// directory answered.
    admission: Admission,
}

/// The key an identity's rate and lockout count under.
fn limit_key(identity: &Identity, client: IpAddr) -> String {
    let client = client_key(client);
    match identity {
        Identity::Account(id) => account_key(id),
        Identity::Service(id) => format!("id:{id}@{client}"),
        Identity::Unknown => format!("unmapped@{client}"),
    }
}

impl Authenticator {
    /// Decides whether a simple bind named by `dn` (with a non-empty
    /// password) from `client` may go to the directory. A refusal is a
    /// verdict to answer with: rate limited, locked, or the directory
    /// unreachable (a name that cannot be mapped to its entry cannot be
    /// limited, so it is not let through).
    pub async fn admit_dn_bind(&self, dn: &str, client: IpAddr) -> Result<BindTicket, Verdict> {
        // Counted in ldapgate_ratelimit_rejections_total; the bind itself in
        // ldapgate_binds_total like any other (auth_total is delegated
        // authentication's).
        let refused = |r| self.refuse(&r);
        self.limiter.check_client(client).map_err(refused)?;
        let (identity, cached) = self
            .identities
            .of_dn(dn)
            .await
            .map_err(|e| Verdict::bare(Outcome::DirectoryUnavailable, Some(e.to_string())))?;
        let key = limit_key(&identity, client);
        let budget = match identity {
            Identity::Account(_) => Budget::Later,
            _ => Budget::Service,
        };
        let admission = self.admit(&key, budget).await?;
        Ok(BindTicket {
            identity,
            key,
            dn: dn.to_owned(),
            client,
            cached,
            started: Instant::now(),
            admission,
        })
    }

    /// Records the directory's answer to an admitted bind (its result code
    /// and diagnostic message, where AD puts its sub-code). Only an answer
    /// that tested the password (success or invalidCredentials) spends from
    /// an account's budget; a wrong password counts toward the lockout of
    /// the entry the DN names (AD sub-codes other than 52e/525 mean the
    /// password was right and never count), a right one clears the count.
    /// When the identity came from the cache, a wrong password counts for
    /// the entry the DN names now.
    pub async fn settle_dn_bind(&self, ticket: BindTicket, code: i64, diagnostic: &str) {
        // Only a success or invalidCredentials tested the password; other
        // codes (unavailableCriticalExtension, protocolError, ...) did not.
        let tested = match (code, bind_outcome(code, diagnostic, None)) {
            (0, Outcome::Success) => Tested::RightPassword,
            (INVALID_CREDENTIALS, Outcome::InvalidCredentials) => Tested::WrongPassword,
            (0 | INVALID_CREDENTIALS, _) => Tested::Refused,
            _ => Tested::No,
        };
        let BindTicket {
            identity,
            key,
            dn,
            client,
            cached,
            started,
            admission,
        } = ticket;
        let mut recount = None;
        if tested == Tested::WrongPassword && cached {
            self.identities.forget(&dn);
            if let Ok((now, _)) = self.identities.of_dn(&dn).await {
                let now_key = limit_key(&now, client);
                if now_key != key {
                    recount = Some(now_key);
                }
            }
        }
        match recount {
            // The DN names another entry now: the wrong password counts
            // for that one.
            Some(now_key) => {
                self.settle(admission, Tested::No).await;
                self.count_wrong_guess(&now_key).await.ok();
            }
            None => self.settle(admission, tested).await,
        }
        let id = match &identity {
            Identity::Account(id) | Identity::Service(id) => id.as_str(),
            Identity::Unknown => "",
        };
        info!(
            target: "ldapgate::audit",
            directory = self.metrics.directory(),
            channel = "ldap_dn",
            client = %client,
            login_hash = %self.login_hash(&dn),
            id,
            service = matches!(identity, Identity::Service(_)),
            result = code,
            cached,
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            "authentication"
        );
    }
}

//! Simple binds by DN on the LDAP listener: forwarded to the directory as
//! they are, but counted and limited like every other sign-in, by client
//! address and by the identity the DN reaches ([`super::identity`]).
//!
//! - An account (an entry of the account classes) shares its rate
//!   (`binds_per_identity`) and its lockout with its sign-in IDs and every
//!   other spelling of its DN.
//! - Another entry (a service account, an administrator) has its own rate,
//!   `service_binds_per_identity`, and is locked per client address: after
//!   `failures_before_lockout` wrong passwords from one address, binds as it
//!   from that address are refused for `lockout_duration`, while the
//!   applications elsewhere that use it go on.
//! - A DN that reaches no entry the service account can see (a guess, or a
//!   name with no entry such as OpenLDAP's rootdn) is limited like a
//!   service account, by its normalised text.

use std::net::IpAddr;
use std::time::Instant;

use tracing::info;

use super::identity::Identity;
use super::outcome::Outcome;
use super::{Authenticator, Verdict};

/// invalidCredentials (RFC 4511 appendix A).
const INVALID_CREDENTIALS: i64 = 49;

/// A bind by DN that was let through, to settle when its response comes.
#[derive(Debug, Clone)]
pub struct BindTicket {
    identity: Identity,
    /// Where its wrong passwords count.
    lockout_key: String,
    dn: String,
    client: IpAddr,
    /// The identity came from the cache.
    cached: bool,
    started: Instant,
}

fn lockout_key(identity: &Identity, client: IpAddr) -> String {
    match identity {
        Identity::Account(_) => identity.rate_key(),
        _ => format!("{}@{}", identity.rate_key(), client.to_canonical()),
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
        let refused = |r| Verdict::refused(&r);
        self.limiter.check_client(client).map_err(refused)?;
        let (identity, cached) = self
            .identities
            .of_dn(dn, self.operation_timeout, self.max_message)
            .await
            .map_err(|e| Verdict::bare(Outcome::DirectoryUnavailable, Some(e.to_string())))?;
        let ticket = BindTicket {
            lockout_key: lockout_key(&identity, client),
            identity,
            dn: dn.to_owned(),
            client,
            cached,
            started: Instant::now(),
        };
        let admitted = match &ticket.identity {
            Identity::Account(_) => self.limiter.check_identity(&ticket.lockout_key),
            _ => self
                .limiter
                .check_service(&ticket.identity.rate_key(), &ticket.lockout_key),
        };
        admitted.map_err(refused)?;
        Ok(ticket)
    }

    /// Records the directory's answer to an admitted bind: a wrong password
    /// counts toward the lockout of the entry the DN names, a right one
    /// clears its count. When the identity came from the cache, a wrong
    /// password counts for the entry the DN names now.
    pub async fn settle_dn_bind(&self, ticket: BindTicket, code: i64) {
        let mut key = ticket.lockout_key.clone();
        if code == INVALID_CREDENTIALS && ticket.cached {
            self.identities.forget(&ticket.dn);
            if let Ok((now, _)) = self
                .identities
                .of_dn(&ticket.dn, self.operation_timeout, self.max_message)
                .await
            {
                key = lockout_key(&now, ticket.client);
            }
        }
        match code {
            0 => self.limiter.record_success(&key),
            INVALID_CREDENTIALS => {
                self.limiter.record_failure(&key);
            }
            _ => {}
        }
        let id = match &ticket.identity {
            Identity::Account(id) | Identity::Service(id) => id.as_str(),
            Identity::Unknown(_) => "",
        };
        info!(
            target: "ldapgate::audit",
            channel = "ldap_dn",
            client = %ticket.client,
            login_hash = %self.login_hash(&ticket.dn),
            id,
            service = matches!(ticket.identity, Identity::Service(_)),
            result = code,
            cached = ticket.cached,
            duration_ms = ticket.started.elapsed().as_secs_f64() * 1000.0,
            "authentication"
        );
    }
}

//! Binds whose name is a sign-in ID rather than a DN (`[signin]
//! rewrite_ldap_binds`): authenticated by the same code path as the control
//! channel, after which the session carries on with the upstream connection
//! that bound as the user.

use ldap3_proto::proto::LdapResultCode;

use super::Session;
use crate::auth::outcome::Outcome;
use crate::auth::{Attempt, Verdict};
use crate::ldap::request::{BindAuth, Request};

impl Session {
    /// A bind with a sign-in ID for a name: authenticated by the same code
    /// path as the control channel; on success the session carries on with
    /// the upstream connection that bound as the user.
    pub(super) async fn sign_in(
        &mut self,
        req: &Request<'_>,
    ) -> Result<(), (LdapResultCode, String)> {
        let invalid = || {
            (
                LdapResultCode::InvalidCredentials,
                "invalid credentials".to_owned(),
            )
        };
        let Request::Bind(bind) = req else {
            return Err(invalid());
        };
        let authenticator = self.ctx.authenticator.clone();
        if !self.inflight.is_idle() {
            // RFC 4511 §4.2.1: operations must finish before a bind.
            return Err((
                LdapResultCode::OperationsError,
                "finish or abandon outstanding operations before binding".into(),
            ));
        }
        let (Ok(login), BindAuth::Simple(password)) = (std::str::from_utf8(bind.name), bind.auth)
        else {
            return Err(invalid());
        };
        let Ok(password) = std::str::from_utf8(password) else {
            return Err(invalid());
        };
        let attempt = Attempt {
            login,
            password,
            client: self.peer.ip(),
            channel: "ldap",
        };
        let (verdict, conn) = authenticator.authenticate_keeping(&attempt, true).await;
        if let Some(conn) = conn {
            if let Some(old) = self.upstream.take() {
                if self.reusable && old.buf.is_empty() {
                    self.ctx.pool.checkin(old, self.needs_reset);
                }
            }
            self.upstream = Some(conn);
            self.reusable = true;
            self.needs_reset = true;
            self.upstream_bound = true;
            return Ok(());
        }
        Err(bind_refusal(verdict))
    }
}

/// The BindResponse code and message for a sign-in or a bind by DN that
/// was not let through, or failed.
pub(super) fn bind_refusal(verdict: Verdict) -> (LdapResultCode, String) {
    let retry = verdict
        .retry_after
        .map(|d| format!("; retry in {}s", d.as_secs().max(1)))
        .unwrap_or_default();
    match verdict.outcome {
        // A success always hands over its connection; without one the
        // session cannot carry the identity.
        Outcome::Success => (
            LdapResultCode::Unavailable,
            "the directory connection was lost after the bind".into(),
        ),
        Outcome::RateLimited => (LdapResultCode::Busy, format!("rate limited{retry}")),
        Outcome::AccountLocked if verdict.retry_after.is_some() => (
            LdapResultCode::UnwillingToPerform,
            format!("locked by ldapgate after repeated wrong passwords{retry}"),
        ),
        Outcome::DirectoryUnavailable => (
            LdapResultCode::Unavailable,
            verdict
                .detail
                .unwrap_or_else(|| "directory unavailable".into()),
        ),
        Outcome::InvalidCredentials => (
            LdapResultCode::InvalidCredentials,
            "invalid credentials".to_owned(),
        ),
        other => (
            LdapResultCode::InvalidCredentials,
            other.as_str().replace('_', " "),
        ),
    }
}

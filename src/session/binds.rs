//! Binds by DN on the listener: counted and limited before they go to the
//! directory ([`crate::auth::Authenticator::admit_dn_bind`]), and refused
//! binds answered as a failed bind would leave the connection: anonymous.

use bytes::BytesMut;
use ldap3_proto::proto::LdapResultCode;

use super::{bind_response, Session};
use crate::auth::outcome::Outcome;
use crate::auth::{BindTicket, Verdict};
use crate::ldap::request::{self, BindAuth};
use crate::ldap::response;

impl Session {
    /// Readies a bind by DN for the directory: admitted by the limits,
    /// then the one bind in flight. Err: the refusal to answer instead.
    pub(super) async fn send_bind(
        &mut self,
        msgid: i32,
        bind: &request::BindRequest<'_>,
    ) -> Result<(), (LdapResultCode, String)> {
        if !bind.name.is_empty() || !matches!(bind.auth, BindAuth::Simple(_)) {
            if let Some(conn) = self.upstream.as_mut() {
                conn.note_bind();
            }
        }
        // RFC 4511 §4.2.1: anonymous until the bind succeeds.
        self.authenticated = false;
        let ticket = self.admit_bind(bind).await?;
        if ticket.is_some() {
            self.upstream_bound = true;
        }
        self.bind_pending = Some((msgid, ticket));
        // RFC 4511 §4.2.1: the directory completes or abandons what is
        // outstanding before a bind (slapd abandons, silently). Results that
        // still come are forwarded; none is waited for.
        if !self.inflight.outstanding.is_empty() {
            self.inflight.outstanding.clear();
            self.inflight.scoped.clear();
            self.inflight.root_dse.clear();
            self.upstream_abandoned();
        }
        self.inflight.start(msgid, "bind");
        Ok(())
    }

    /// Counts a bind by DN with a password, and lets it through unless the
    /// client's address or the identity it names is over its limits or
    /// locked. Anonymous binds carry no password to guess and are not
    /// counted.
    pub(super) async fn admit_bind(
        &self,
        bind: &request::BindRequest<'_>,
    ) -> Result<Option<BindTicket>, (LdapResultCode, String)> {
        let BindAuth::Simple(password) = bind.auth else {
            return Ok(None);
        };
        if bind.name.is_empty() || password.is_empty() {
            return Ok(None);
        }
        let Ok(dn) = std::str::from_utf8(bind.name) else {
            return Err((
                LdapResultCode::InvalidDNSyntax,
                "bind name is not UTF-8".into(),
            ));
        };
        self.ctx
            .authenticator
            .admit_dn_bind(dn, self.peer.ip())
            .await
            .map(Some)
            .map_err(bind_refusal)
    }

    /// Answers a bind with a refusal. A failed bind leaves a connection
    /// anonymous, so when the upstream leg carries an identity it is made
    /// anonymous too, and the refusal stands in for that bind's response.
    pub(super) fn refuse_bind(
        &mut self,
        msgid: i32,
        code: LdapResultCode,
        message: &str,
        to_upstream: &mut BytesMut,
        to_client: &mut Vec<u8>,
    ) {
        let reply = bind_response(msgid, code, message);
        self.answer_failed_bind(msgid, reply, to_upstream, to_client);
    }

    /// Answers a bind that failed with `reply`, leaving the session
    /// anonymous as [`Self::refuse_bind`] does.
    pub(super) fn answer_failed_bind(
        &mut self,
        msgid: i32,
        reply: Vec<u8>,
        to_upstream: &mut BytesMut,
        to_client: &mut Vec<u8>,
    ) {
        self.authenticated = false;
        if self.upstream.is_some() && self.upstream_bound {
            self.upstream_bound = false;
            to_upstream.extend(response::anonymous_bind_request(msgid));
            self.inflight.substitutes.insert(msgid, reply);
            self.inflight.start(msgid, "bind");
        } else {
            to_client.extend(reply);
        }
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

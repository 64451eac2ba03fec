//! Binds whose name is a sign-in ID rather than a DN (`[signin]
//! rewrite_ldap_binds`): authenticated by the same code path as the control
//! channel, after which the session carries on with the upstream connection
//! that bound as the user.

use ldap3_proto::proto::LdapResultCode;

use super::Session;
use crate::auth::Attempt;
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
        Err(super::binds::bind_refusal(verdict))
    }
}

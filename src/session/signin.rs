//! Binds whose name is a sign-in ID rather than a DN (`[signin]
//! rewrite_ldap_binds`): authenticated by the same code path as the control
//! channel and answered as the directory answered, after which the session
//! carries on with the upstream connection that bound as the user.

use ldap3_proto::proto::LdapResultCode;

use super::{bind_response, Session};
use crate::auth::{Attempt, Verdict};
use crate::ldap::ppolicy::PPOLICY_OID;
use crate::ldap::request::{self, BindAuth, Request};
use crate::ldap::response;
use crate::upstream::Lease;

/// What a bind by sign-in ID answers the client.
pub(super) struct SignInAnswer {
    /// The BindResponse for the client, under its message ID.
    pub response: Vec<u8>,
    /// Its result code, for metrics.
    pub code: i64,
    /// The session now carries an upstream connection bound as the user.
    pub bound: bool,
}

impl Session {
    /// A bind with a sign-in ID for a name (`pdu`, message `msgid`):
    /// authenticated by the same code path as the control channel. Where
    /// the directory decided, the client gets the directory's BindResponse
    /// (result code, diagnostic, response controls; the password policy
    /// control only when the client asked for it); where a rule of
    /// ldapgate's decided, ldapgate's own. When the directory accepted the
    /// bind the session carries on with the connection bound as the user.
    pub(super) async fn sign_in(
        &mut self,
        req: &Request<'_>,
        msgid: i32,
        pdu: &[u8],
    ) -> SignInAnswer {
        let (verdict, conn) = match self.authenticate(req).await {
            Ok(decided) => decided,
            Err((code, message)) => return SignInAnswer::own(msgid, code, &message),
        };
        let asked_policy = request::has_control(pdu, PPOLICY_OID);
        let directory = verdict.reply.as_ref().and_then(|reply| {
            let drop = |oid: &[u8]| !asked_policy && oid == PPOLICY_OID.as_bytes();
            let response = response::readdressed(reply, msgid, drop).ok()?;
            Some((response::result_code(&response)?, response))
        });
        if let Some(conn) = conn {
            self.replace_upstream(Some(conn));
            self.upstream_bound = true;
            let (code, response) =
                directory.unwrap_or_else(|| (0, bind_response(msgid, LdapResultCode::Success, "")));
            return SignInAnswer {
                response,
                code,
                bound: true,
            };
        }
        match directory {
            Some((code, response)) => SignInAnswer {
                response,
                code,
                bound: false,
            },
            None => {
                let (code, message) = super::binds::bind_refusal(verdict);
                SignInAnswer::own(msgid, code, &message)
            }
        }
    }

    /// Decides a bind by sign-in ID. Err: refused before anyone was asked.
    async fn authenticate(
        &mut self,
        req: &Request<'_>,
    ) -> Result<(Verdict, Option<Lease>), (LdapResultCode, String)> {
        let invalid = || {
            (
                LdapResultCode::InvalidCredentials,
                "invalid credentials".to_owned(),
            )
        };
        let Request::Bind(bind) = req else {
            return Err(invalid());
        };
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
        let authenticator = self.ctx.authenticator.clone();
        Ok(authenticator.authenticate_keeping(&attempt, true).await)
    }
}

impl SignInAnswer {
    /// An answer of ldapgate's own; the session stays anonymous.
    fn own(msgid: i32, code: LdapResultCode, message: &str) -> SignInAnswer {
        SignInAnswer {
            code: code.clone() as i64,
            response: bind_response(msgid, code, message),
            bound: false,
        }
    }
}

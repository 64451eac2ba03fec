//! What a session does with each client request: the policy's verdict
//! ([`super::policy`]) carried out — answered here, performed by ldapgate
//! (StartTLS, binds by sign-in ID), or forwarded ([`super::forward`]).

use bytes::BytesMut;
use ldap3_proto::proto::LdapResultCode;
use tokio::time::Instant;
use tracing::debug;

use super::policy::Verdict;
use super::{record, violation, Flow, Session, SessionEnd};
use crate::ldap::ppolicy::PPOLICY_OID;
use crate::ldap::request;
use crate::ldap::response;

impl Session {
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn handle_request(
        &mut self,
        pdu: &[u8],
        msgid: i32,
        op_tag: u8,
        client_tls: bool,
        to_upstream: &mut BytesMut,
        to_client: &mut Vec<u8>,
    ) -> Flow {
        let received = Instant::now();
        let req = match request::parse(pdu) {
            Ok(req) if msgid != 0 => req,
            Ok(_) => return violation(to_client, "message ID 0 is reserved for the server".into()),
            Err(e) => return violation(to_client, format!("malformed request: {e}")),
        };
        let op = req.name();
        match self.ctx.policy.decide(&req, client_tls) {
            Verdict::Unbind => Flow::End(SessionEnd::Unbind),
            Verdict::StartTls => {
                let refusal = if client_tls {
                    Some((
                        LdapResultCode::OperationsError,
                        "TLS is already established",
                    ))
                } else if self.ctx.starttls.is_none() {
                    Some((
                        LdapResultCode::ProtocolError,
                        "StartTLS is not configured (server.tls_cert)",
                    ))
                } else if !self.inflight.outstanding.is_empty() {
                    // RFC 4511 §4.14.1: no StartTLS while operations are outstanding.
                    Some((
                        LdapResultCode::OperationsError,
                        "operations are outstanding",
                    ))
                } else {
                    None
                };
                let code = refusal
                    .as_ref()
                    .map_or(LdapResultCode::Success, |(code, _)| code.clone());
                record(&self.ctx.metrics, op, &code, received);
                match refusal {
                    Some((code, message)) => {
                        to_client.extend(response::start_tls_response(msgid, code, message));
                        Flow::Continue
                    }
                    None => {
                        to_client.extend(response::start_tls_response(
                            msgid,
                            LdapResultCode::Success,
                            "",
                        ));
                        Flow::StartTls
                    }
                }
            }
            Verdict::Refuse { code, message } => {
                debug!(peer = %self.peer, op, ?code, %message, "refused");
                record(&self.ctx.metrics, op, &code, received);
                to_client.extend(
                    response::result_for(op_tag, msgid, code, &message).unwrap_or_default(),
                );
                Flow::Continue
            }
            Verdict::ResolveBind => {
                // ldapgate performs this bind itself (RFC 4511 §4.1.11); of
                // bind controls it serves the password policy request, by
                // asking the directory for it.
                if let Some(oid) = request::first_critical_control(pdu, &[PPOLICY_OID]) {
                    let code = LdapResultCode::UnavailableCriticalExtension;
                    let message = format!(
                        "critical control {} is not supported on a bind by sign-in ID",
                        String::from_utf8_lossy(oid)
                    );
                    record(&self.ctx.metrics, op, &code, received);
                    self.refuse_bind(msgid, code, &message, to_upstream, to_client);
                    return Flow::Continue;
                }
                let answer = self.sign_in(&req, msgid, pdu).await;
                self.ctx
                    .metrics
                    .operation(op, answer.code, received.elapsed());
                self.authenticated = answer.bound;
                if answer.bound {
                    to_client.extend(answer.response);
                } else {
                    self.answer_failed_bind(msgid, answer.response, to_upstream, to_client);
                }
                Flow::Continue
            }
            Verdict::RefuseBind { code, message } => {
                debug!(peer = %self.peer, ?code, %message, "bind refused");
                record(&self.ctx.metrics, op, &code, received);
                self.refuse_bind(msgid, code, &message, to_upstream, to_client);
                Flow::Continue
            }
            Verdict::Forward => {
                self.forward(&req, pdu, msgid, op_tag, to_upstream, to_client, received)
                    .await
            }
        }
    }
}

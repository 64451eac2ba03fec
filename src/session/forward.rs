//! Requests that go to the directory as they are: the upstream connection
//! is opened on the first one, and what each leaves in flight is noted for
//! the routing of the responses ([`super::responses`]).

use bytes::BytesMut;
use ldap3_proto::proto::LdapResultCode;
use tokio::time::Instant;
use tracing::debug;

use super::{record, Flow, Session};
use crate::ber::TlvReader;
use crate::ldap::request::{self, Request, Scope};
use crate::ldap::{oid, response};

impl Session {
    /// Forwards one request the policy let through: `pdu`, message `msgid`.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn forward(
        &mut self,
        req: &Request<'_>,
        pdu: &[u8],
        msgid: i32,
        op_tag: u8,
        to_upstream: &mut BytesMut,
        to_client: &mut Vec<u8>,
        received: Instant,
    ) -> Flow {
        let op = req.name();
        if self.upstream.is_none() {
            if let Request::Abandon { .. } = req {
                // Nothing to abandon on a connection never opened.
                return Flow::Continue;
            }
            match self.ctx.pool.checkout().await {
                Ok(conn) => self.upstream = Some(conn),
                Err(e) => {
                    debug!(peer = %self.peer, error = %e, "no directory server");
                    record(op, &LdapResultCode::Unavailable, received);
                    let reply = response::result_for(
                        op_tag,
                        msgid,
                        LdapResultCode::Unavailable,
                        &e.to_string(),
                    );
                    to_client.extend(reply.unwrap_or_default());
                    return Flow::Continue;
                }
            }
        }
        match *req {
            Request::Abandon { msgid: target } => {
                if let Ok(target) = i32::try_from(target) {
                    self.inflight.abandon(target);
                }
                self.needs_reset = true;
            }
            Request::Bind(b) => {
                if let Err((code, message)) = self.send_bind(msgid, &b).await {
                    debug!(peer = %self.peer, ?code, %message, "bind refused");
                    record(op, &code, received);
                    self.refuse_bind(msgid, code, &message, to_upstream, to_client);
                    return Flow::Continue;
                }
            }
            Request::Extended { oid: o, value } => {
                // An extended operation ldapgate does not know may leave
                // state on the connection; do not reuse it.
                if ![oid::WHO_AM_I, oid::PASSWORD_MODIFY, oid::CANCEL]
                    .iter()
                    .any(|known| known.as_bytes() == o)
                {
                    self.reusable = false;
                }
                if o == oid::CANCEL.as_bytes() {
                    if let Some(target) = value.and_then(cancel_id) {
                        self.inflight.cancel(msgid, target);
                        self.needs_reset = true;
                    }
                }
                self.inflight.start(msgid, op);
            }
            Request::Search { base, scope } => {
                if base.is_empty() && scope == Scope::Base {
                    self.inflight.root_dse.insert(msgid);
                }
                let persistent = request::is_persistent_search(pdu);
                self.inflight.start_as(msgid, op, persistent);
            }
            _ => {
                self.inflight.start(msgid, op);
            }
        }
        to_upstream.extend_from_slice(pdu);
        Flow::Continue
    }
}

/// The message ID a Cancel request names (RFC 3909 §2:
/// `cancelRequestValue ::= SEQUENCE { cancelID MessageID }`); None when the
/// value is malformed (the directory answers that).
fn cancel_id(value: &[u8]) -> Option<i32> {
    let seq = TlvReader::new(value)
        .expect(0x30, "cancelRequestValue")
        .ok()?;
    let id = seq
        .children()
        .expect(0x02, "cancelID")
        .ok()?
        .as_int()
        .ok()?;
    i32::try_from(id).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cancel_id_is_read_from_the_request_value() {
        assert_eq!(cancel_id(&[0x30, 0x03, 0x02, 0x01, 0x02]), Some(2));
        assert_eq!(cancel_id(&[0x30, 0x04, 0x02, 0x02, 0x01, 0x00]), Some(256));
        assert_eq!(cancel_id(&[0x30, 0x03, 0x04, 0x01, 0x02]), None);
        assert_eq!(cancel_id(&[0x02, 0x01, 0x02]), None);
        assert_eq!(cancel_id(&[]), None);
    }
}

//! Requests that go to the directory as they are: the upstream connection
//! is opened on the first one, and what each leaves in flight is noted for
//! the routing of the responses ([`super::responses`]).

use bytes::BytesMut;
use ldap3_proto::proto::LdapResultCode;
use tokio::time::Instant;
use tracing::debug;

use super::{record, Flow, Session};
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
            match self.ctx.pool.session_lease().await {
                Ok(conn) => self.upstream = Some(conn),
                Err(e) => {
                    debug!(peer = %self.peer, error = %e, "no directory server");
                    record(
                        &self.ctx.metrics,
                        op,
                        &LdapResultCode::Unavailable,
                        received,
                    );
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
                // An Abandon with a critical control is not performed by a
                // directory that does not know the control (RFC 4511
                // §4.1.11): nothing is dropped here either.
                let performed = request::first_critical_control(pdu, &[]).is_none();
                if let (Ok(target), true) = (i32::try_from(target), performed) {
                    self.inflight.abandon(target);
                }
                self.upstream_abandoned();
            }
            Request::Bind(b) => {
                if let Err((code, message)) = self.send_bind(msgid, &b).await {
                    debug!(peer = %self.peer, ?code, %message, "bind refused");
                    record(&self.ctx.metrics, op, &code, received);
                    self.refuse_bind(msgid, code, &message, to_upstream, to_client);
                    return Flow::Continue;
                }
            }
            Request::Extended { oid: o, .. } => {
                // An extended operation ldapgate does not know may leave
                // state on the connection; do not reuse it.
                if ![oid::WHO_AM_I, oid::PASSWORD_MODIFY, oid::CANCEL]
                    .iter()
                    .any(|known| known.as_bytes() == o)
                {
                    self.upstream_unsettled();
                }
                // A Cancel (RFC 3909) goes to the directory like any other
                // request, and everything it answers comes back: the
                // cancelled search's entries up to its result (canceled, or
                // success when the Cancel came too late). Dropping them
                // early would truncate a search that then succeeds.
                self.inflight.start(msgid, op);
            }
            Request::Search {
                base,
                scope,
                derefs_aliases,
            } => {
                if base.is_empty() && scope == Scope::Base {
                    self.inflight.root_dse.insert(msgid);
                } else if derefs_aliases {
                    // An alias below base_dn may lead anywhere: what it
                    // leads to outside base_dn is dropped from the answer.
                    self.inflight.scoped.insert(msgid);
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

//! What a session waits for against the clock: an idle client, a client
//! that takes none of its answers, a request left unfinished, a directory
//! that does not answer, and (with only persistent searches outstanding)
//! the health of the directory server instead.

use ldap3_proto::proto::LdapResultCode;
use tokio::time::{Duration, Instant};

use super::{Flow, Session, SessionEnd};
use crate::stream::duplex::MAX_QUEUED;

/// What a session waits for against the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Deadline {
    /// The client started a PDU and has not finished it (`pdu_timeout`).
    UnfinishedPdu,
    /// The client has nothing outstanding and sends nothing (`idle_timeout`).
    Idle,
    /// The client takes none of its responses (`send_timeout`).
    ClientStalled,
    /// The directory neither answers nor takes requests (`operation_timeout`).
    Operation,
    /// Only persistent searches are outstanding: time to see whether the
    /// pool's health checks still find the directory server up.
    Liveness,
}

/// How often a session with only persistent searches outstanding looks at
/// its directory server's health: a server that stopped answering (a hung
/// process still answers TCP keepalive) fails the pool's health checks
/// (`health_check_interval`, each within `operation_timeout`).
const LIVENESS_CHECK: Duration = Duration::from_secs(5);

impl Session {
    /// The first deadline the session must meet and what it is; None when
    /// nothing is timed.
    pub(super) fn deadline(&self) -> Option<(Instant, Deadline)> {
        let limits = &self.ctx.limits;
        // Whether or not ldapgate reads the client meanwhile: a client that
        // is held back because it reads none of its answers (or waits on
        // its bind) must not keep a PDU, and its budget, open past this.
        let unfinished = self
            .unfinished_since
            .map(|since| (since + limits.pdu_timeout, Deadline::UnfinishedPdu));
        let stalled = self
            .to_client
            .stalled_since()
            .map(|since| (since + limits.send_timeout, Deadline::ClientStalled));
        // While the client holds the directory's answers back (the session
        // stops reading the directory), the directory is not the one
        // keeping anyone waiting: only the client's stall is timed.
        let held_back = self.to_client.len() >= MAX_QUEUED;
        let unread = self
            .to_upstream
            .stalled_since()
            .filter(|_| !held_back)
            .map(|since| (since + limits.operation_timeout, Deadline::Operation));
        let waiting = if self.inflight.outstanding.is_empty() {
            // Idle once everything is delivered: a client still taking a
            // long result is busy, and timed as ClientStalled meanwhile.
            self.to_client.is_settled().then(|| {
                let since = self
                    .last_client_activity
                    .max(self.to_client.last_progress());
                (since + limits.idle_timeout, Deadline::Idle)
            })
        } else if self.inflight.outstanding.values().all(|s| s.persistent) {
            // Only quiet-by-design searches: the directory is watched by
            // the pool's health checks instead.
            Some((Instant::now() + LIVENESS_CHECK, Deadline::Liveness))
        } else if self.inflight.awaits_answer() && !held_back {
            Some((
                self.last_upstream_progress + limits.operation_timeout,
                Deadline::Operation,
            ))
        } else {
            None
        };
        [unfinished, stalled, unread, waiting]
            .into_iter()
            .flatten()
            .min_by_key(|(at, _)| *at)
    }

    /// Ends the session for a missed deadline, telling the client why;
    /// None when the deadline was a check that found all well.
    pub(super) fn expire(&mut self, why: Deadline) -> Option<Flow> {
        Some(match why {
            Deadline::Liveness => {
                let up = self
                    .upstream
                    .as_ref()
                    .and_then(|conn| self.ctx.pool.servers().get(conn.server_index()))
                    .is_none_or(|server| server.is_up());
                if up {
                    return None;
                }
                self.upstream_unsettled();
                self.notify(
                    LdapResultCode::Unavailable,
                    "the directory server stopped answering health checks",
                );
                Flow::End(SessionEnd::UpstreamTimeout)
            }
            Deadline::UnfinishedPdu => {
                self.notify(
                    LdapResultCode::Unavailable,
                    "a request was not completed within server.pdu_timeout",
                );
                Flow::End(SessionEnd::PduTimeout)
            }
            Deadline::Idle => {
                self.notify(LdapResultCode::Unavailable, "idle timeout");
                Flow::End(SessionEnd::IdleTimeout)
            }
            Deadline::ClientStalled => {
                self.upstream_unsettled();
                self.notify(
                    LdapResultCode::Unavailable,
                    "answers were left unread for server.send_timeout",
                );
                Flow::End(SessionEnd::ClientError(
                    "client stopped reading responses (send_timeout)".into(),
                ))
            }
            Deadline::Operation => {
                self.upstream_unsettled();
                self.notify(
                    LdapResultCode::Unavailable,
                    "the directory did not answer within operation_timeout",
                );
                Flow::End(SessionEnd::UpstreamTimeout)
            }
        })
    }
}

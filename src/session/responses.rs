//! Routing the directory's responses back to the client: which buffered
//! bytes are forwarded as they are, which response is replaced by one of
//! ldapgate's own, and when the stream ends. Pure logic, no I/O.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use super::root_dse::{self, Served};
use crate::ber::{self, FrameError};
use crate::ldap::{response, tag};

/// Abandoned message IDs remembered per session at most.
const MAX_ABANDONED: usize = 1024;

/// An operation sent upstream: what it is and since when.
#[derive(Debug, Clone, Copy)]
pub struct Started {
    pub op: &'static str,
    pub at: Instant,
    /// A search that stays open, quiet until the directory has a change
    /// ([`crate::ldap::request::is_persistent_search`]): never timed out.
    pub persistent: bool,
}

/// An operation whose final response went to the client.
#[derive(Debug, Clone)]
pub struct Finished {
    pub msgid: i32,
    pub started: Started,
    /// The response's result code; None when it could not be read.
    pub code: Option<i64>,
    /// A bind response's diagnostic message (AD's sub-codes are in it);
    /// empty for other operations.
    pub diagnostic: String,
}

/// What a session has in flight on its upstream connection.
#[derive(Debug, Default)]
pub struct InFlight {
    /// Message IDs sent upstream whose final response has not arrived.
    pub outstanding: HashMap<i32, Started>,
    /// Responses to substitute for the directory's: a refused bind becomes
    /// an anonymous bind upstream whose response is replaced by the refusal.
    pub substitutes: HashMap<i32, Vec<u8>>,
    /// Message IDs of root DSE reads, whose entry is made true of ldapgate
    /// ([`root_dse::rewrite`]), and what this listener serves.
    pub root_dse: HashSet<i32>,
    pub served: Served,
    /// Searches that dereference aliases, whose entries are checked to be
    /// within base_dn (RFC 4511 §4.5.1.3: an alias may point anywhere).
    pub scoped: HashSet<i32>,
    /// Message IDs the client abandoned while outstanding: nothing more of
    /// them reaches the client (RFC 4511 §4.11), though the directory may
    /// still be sending what it had under way.
    pub abandoned: HashSet<i32>,
}

impl InFlight {
    /// True when nothing of the session is in flight.
    pub fn is_idle(&self) -> bool {
        self.outstanding.is_empty() && self.substitutes.is_empty()
    }

    /// Nothing in flight, for a session whose listener serves `served`.
    pub fn new(served: Served) -> InFlight {
        InFlight {
            served,
            ..InFlight::default()
        }
    }

    /// Notes that operation `op` with `msgid` went upstream now.
    pub fn start(&mut self, msgid: i32, op: &'static str) {
        self.start_as(msgid, op, false);
    }

    /// [`Self::start`], for an operation that is `persistent` or not.
    pub fn start_as(&mut self, msgid: i32, op: &'static str, persistent: bool) {
        // The client reuses an ID it abandoned: what comes now is the new
        // operation's.
        self.abandoned.remove(&msgid);
        self.outstanding.insert(
            msgid,
            Started {
                op,
                at: Instant::now(),
                persistent,
            },
        );
    }

    /// The client abandoned `msgid`: if it was outstanding, its further
    /// responses are dropped.
    pub fn abandon(&mut self, msgid: i32) {
        self.scoped.remove(&msgid);
        self.root_dse.remove(&msgid);
        if self.outstanding.remove(&msgid).is_some() {
            // The directory sends nothing more for most abandoned searches,
            // so IDs would stay: bounded, forgetting one at random (most
            // likely long finished).
            if self.abandoned.len() >= MAX_ABANDONED {
                if let Some(old) = self.abandoned.iter().next().copied() {
                    self.abandoned.remove(&old);
                }
            }
            self.abandoned.insert(msgid);
        }
    }

    /// True when an operation the directory must answer in time is
    /// outstanding (anything but a persistent search).
    pub fn awaits_answer(&self) -> bool {
        self.outstanding.values().any(|s| !s.persistent)
    }
}

/// One step of what goes to the client, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Forward this many bytes from the front of the buffer unchanged.
    Forward(usize),
    /// Drop this many bytes from the front of the buffer.
    Skip(usize),
    /// Send these bytes of ldapgate's own.
    Own(Vec<u8>),
}

/// Why the response stream ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEnd {
    /// The directory sent an unsolicited notification (a Notice of
    /// Disconnection); it was forwarded and the directory will close.
    Unsolicited,
    /// The directory sent something that is not a PDU within the limit.
    Malformed(String),
}

/// The routing of everything complete in a buffer.
#[derive(Debug, Default)]
pub struct Routing {
    pub pieces: Vec<Piece>,
    pub end: Option<StreamEnd>,
    /// Operations whose directory response is forwarded (substituted ones
    /// are accounted for where the substitute was made).
    pub finished: Vec<Finished>,
}

impl Routing {
    fn forward(&mut self, n: usize) {
        if let Some(Piece::Forward(last)) = self.pieces.last_mut() {
            *last += n;
        } else {
            self.pieces.push(Piece::Forward(n));
        }
    }
}

/// Routes every complete PDU in `buf`, updating `inflight`. Bytes of an
/// incomplete PDU at the end are left for the next read. `in_scope` says
/// whether an entry's DN (as the directory wrote it) is within base_dn.
pub fn route(
    buf: &[u8],
    limit: usize,
    inflight: &mut InFlight,
    in_scope: &dyn Fn(&[u8]) -> bool,
) -> Routing {
    let mut routing = Routing::default();
    let mut pos = 0;
    while pos < buf.len() {
        let header = match ber::peek_pdu(&buf[pos..], limit) {
            Ok(h) => h,
            Err(FrameError::Incomplete) => break,
            Err(e) => {
                routing.end = Some(StreamEnd::Malformed(format!("directory sent {e}")));
                break;
            }
        };
        pos += header.len;
        if header.msgid == 0 {
            routing.forward(header.len);
            routing.end = Some(StreamEnd::Unsolicited);
            break;
        }
        if inflight.abandoned.contains(&header.msgid) {
            if tag::is_final_response(header.op_tag) {
                inflight.abandoned.remove(&header.msgid);
            }
            routing.pieces.push(Piece::Skip(header.len));
            continue;
        }
        if header.op_tag == tag::SEARCH_RESULT_ENTRY
            && inflight.scoped.contains(&header.msgid)
            && !entry_name(&buf[pos - header.len..pos]).is_some_and(in_scope)
        {
            routing.pieces.push(Piece::Skip(header.len));
            continue;
        }
        if header.op_tag == tag::SEARCH_RESULT_ENTRY && inflight.root_dse.contains(&header.msgid) {
            let pdu = &buf[pos - header.len..pos];
            if let Some(own) = root_dse::rewrite(pdu, inflight.served, limit) {
                routing.pieces.push(Piece::Skip(header.len));
                routing.pieces.push(Piece::Own(own));
                continue;
            }
        }
        if tag::is_final_response(header.op_tag) {
            inflight.root_dse.remove(&header.msgid);
            inflight.scoped.remove(&header.msgid);
            let started = inflight.outstanding.remove(&header.msgid);
            if let Some(own) = inflight.substitutes.remove(&header.msgid) {
                routing.pieces.push(Piece::Skip(header.len));
                routing.pieces.push(Piece::Own(own));
                continue;
            }
            if let Some(started) = started {
                let pdu = &buf[pos - header.len..pos];
                let code = response::result_code(pdu);
                // AD's sub-code is in a failed bind's diagnostic; nothing
                // else needs one.
                let diagnostic = if header.op_tag == tag::BIND_RESPONSE && code != Some(0) {
                    response::read_result(pdu)
                        .map(|r| r.diagnostic)
                        .unwrap_or_default()
                } else {
                    String::new()
                };
                routing.finished.push(Finished {
                    msgid: header.msgid,
                    started,
                    code,
                    diagnostic,
                });
            }
        }
        routing.forward(header.len);
    }
    routing
}

/// The objectName of a SearchResultEntry PDU.
fn entry_name(pdu: &[u8]) -> Option<&[u8]> {
    let (_, op, _) = ber::message_parts(pdu).ok()?;
    Some(op.children().expect(0x04, "objectName").ok()?.value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ldap::response::{notice_of_disconnection, result_for};
    use ldap3_proto::proto::LdapResultCode;

    fn done(msgid: i32) -> Vec<u8> {
        result_for(tag::SEARCH_REQUEST, msgid, LdapResultCode::Success, "").unwrap()
    }

    fn entry(msgid: i32) -> Vec<u8> {
        // SearchResultEntry { "cn=x", no attributes }
        let mut pdu = vec![0x30, 0x00, 0x02, 0x01, msgid as u8, 0x64, 0x08, 0x04, 0x04];
        pdu.extend(b"cn=x");
        pdu.extend([0x30, 0x00]);
        pdu[1] = (pdu.len() - 2) as u8;
        pdu
    }

    #[test]
    fn nothing_of_an_abandoned_operation_reaches_the_client() {
        let mut inflight = InFlight::default();
        inflight.start(2, "search");
        inflight.start(4, "search");
        let first = route(&entry(2), 1 << 20, &mut inflight, &|_| true);
        assert_eq!(first.pieces, vec![Piece::Forward(entry(2).len())]);
        inflight.abandon(2);
        // An abandon of an ID not outstanding changes nothing.
        inflight.abandon(9);
        let mut buf = entry(2);
        buf.extend(entry(4));
        buf.extend(done(2));
        buf.extend(done(4));
        let r = route(&buf, 1 << 20, &mut inflight, &|_| true);
        let (e, d) = (entry(2).len(), done(2).len());
        assert_eq!(
            r.pieces,
            vec![
                Piece::Skip(e),
                Piece::Forward(e),
                Piece::Skip(d),
                Piece::Forward(d)
            ]
        );
        assert_eq!(r.finished.len(), 1, "only 4 finished for the client");
        assert!(inflight.abandoned.is_empty() && inflight.outstanding.is_empty());
        // Remembered IDs are bounded.
        for id in 100..(100 + MAX_ABANDONED as i32 + 50) {
            inflight.start(id, "search");
            inflight.abandon(id);
        }
        assert_eq!(inflight.abandoned.len(), MAX_ABANDONED);
        inflight.abandoned.clear();
        // An abandoned ID used again is the new operation's.
        inflight.start(2, "search");
        inflight.abandon(2);
        inflight.start(2, "search");
        assert_eq!(
            route(&done(2), 1 << 20, &mut inflight, &|_| true).pieces,
            vec![Piece::Forward(done(2).len())]
        );
    }

    #[test]
    fn entries_outside_base_dn_are_dropped_from_searches_that_dereference() {
        let mut inflight = InFlight::default();
        inflight.start(2, "search");
        inflight.start(3, "search");
        inflight.scoped.insert(2);
        let outside = |dn: &[u8]| dn != b"cn=x";
        let mut buf = entry(2);
        buf.extend(entry(3));
        buf.extend(done(2));
        let r = route(&buf, 1 << 20, &mut inflight, &outside);
        let e = entry(2).len();
        assert_eq!(
            r.pieces,
            vec![Piece::Skip(e), Piece::Forward(e + done(2).len())],
            "only the dereferencing search is checked"
        );
        assert!(inflight.scoped.is_empty());
        inflight.scoped.insert(3);
        inflight.abandon(3);
        assert!(inflight.scoped.is_empty(), "forgotten with the search");
    }

    #[test]
    fn entries_and_results_are_forwarded_in_one_piece() {
        let mut inflight = InFlight::default();
        inflight.start(2, "search");
        let mut buf = entry(2);
        buf.extend(entry(2));
        buf.extend(done(2));
        let r = route(&buf, 1 << 20, &mut inflight, &|_| true);
        assert_eq!(r.pieces, vec![Piece::Forward(buf.len())]);
        assert_eq!(r.end, None);
        assert!(inflight.is_idle());
    }

    #[test]
    fn finished_operations_carry_their_name_and_result_code() {
        let mut inflight = InFlight::default();
        inflight.start(2, "search");
        inflight.start(3, "bind");
        let mut buf = entry(2);
        buf.extend(
            result_for(tag::BIND_REQUEST, 3, LdapResultCode::InvalidCredentials, "").unwrap(),
        );
        let r = route(&buf, 1 << 20, &mut inflight, &|_| true);
        let finished: Vec<_> = r.finished.iter().map(|f| (f.started.op, f.code)).collect();
        assert_eq!(
            finished,
            vec![("bind", Some(49))],
            "the search is still running"
        );
        let r = route(&done(2), 1 << 20, &mut inflight, &|_| true);
        let finished: Vec<_> = r.finished.iter().map(|f| (f.started.op, f.code)).collect();
        assert_eq!(finished, vec![("search", Some(0))]);
        assert!(inflight.is_idle());
    }

    #[test]
    fn an_incomplete_tail_waits_for_more() {
        let mut inflight = InFlight::default();
        inflight.start(2, "search");
        let mut buf = entry(2);
        let first = buf.len();
        buf.extend(&done(2)[..5]);
        let r = route(&buf, 1 << 20, &mut inflight, &|_| true);
        assert_eq!(r.pieces, vec![Piece::Forward(first)]);
        assert!(
            inflight.outstanding.contains_key(&2),
            "search still running"
        );
    }

    #[test]
    fn a_substitute_replaces_exactly_its_response() {
        let mut inflight = InFlight::default();
        inflight.start(2, "search");
        inflight.start(3, "bind");
        let own = result_for(
            tag::BIND_REQUEST,
            3,
            LdapResultCode::InvalidCredentials,
            "no",
        )
        .unwrap();
        inflight.substitutes.insert(3, own.clone());
        let upstream_bind = result_for(tag::BIND_REQUEST, 3, LdapResultCode::Success, "").unwrap();
        let mut buf = entry(2);
        buf.extend(&upstream_bind);
        buf.extend(done(2));
        let r = route(&buf, 1 << 20, &mut inflight, &|_| true);
        assert_eq!(
            r.pieces,
            vec![
                Piece::Forward(entry(2).len()),
                Piece::Skip(upstream_bind.len()),
                Piece::Own(own),
                Piece::Forward(done(2).len()),
            ]
        );
        assert!(inflight.is_idle());
    }

    #[test]
    fn a_notice_of_disconnection_is_forwarded_and_ends_the_stream() {
        let mut inflight = InFlight::default();
        inflight.start(5, "search");
        let notice = notice_of_disconnection(LdapResultCode::Unavailable, "shutting down");
        let mut buf = entry(5);
        buf.extend(&notice);
        buf.extend(done(5));
        let r = route(&buf, 1 << 20, &mut inflight, &|_| true);
        assert_eq!(
            r.pieces,
            vec![Piece::Forward(entry(5).len() + notice.len())]
        );
        assert_eq!(r.end, Some(StreamEnd::Unsolicited));
    }

    #[test]
    fn oversized_or_malformed_responses_end_the_stream_after_what_came_before() {
        let mut inflight = InFlight::default();
        let mut buf = entry(2);
        buf.extend([0x30, 0x84, 0x7f, 0, 0, 0]);
        let r = route(&buf, 1 << 20, &mut inflight, &|_| true);
        assert_eq!(r.pieces, vec![Piece::Forward(entry(2).len())]);
        assert!(matches!(r.end, Some(StreamEnd::Malformed(m)) if m.contains("exceeds the limit")));
        let r = route(b"HTTP/1.1 400", 1 << 20, &mut inflight, &|_| true);
        assert!(matches!(r.end, Some(StreamEnd::Malformed(_))));
    }
}

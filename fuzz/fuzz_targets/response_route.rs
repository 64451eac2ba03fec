//! Response routing: `route` over a buffer of directory responses with an
//! `InFlight` set up from the input (outstanding, abandoned, substituted,
//! root DSE and alias-dereferencing operations), and `read_result` /
//! `readdressed` on every PDU it passes.
#![no_main]

use std::collections::HashSet;

use ldap3_proto::proto::LdapResultCode;
use ldapgate::ber::{self, PduHeader};
use ldapgate::ldap::{response, tag};
use ldapgate::session::responses::{route, InFlight, Piece, StreamEnd};
use libfuzzer_sys::fuzz_target;

const LIMITS: [usize; 4] = [16, 300, 65536, 1 << 20];
const OPS: [&str; 4] = ["search", "bind", "modify", "extended"];

/// Whether an entry's DN is within base_dn, for searches that dereference
/// aliases: any fixed rule serves the model.
fn in_scope(dn: &[u8]) -> bool {
    dn.len() % 2 == 0
}

/// The objectName of a SearchResultEntry PDU.
fn entry_name(pdu: &[u8]) -> Option<&[u8]> {
    let (_, op, _) = ber::message_parts(pdu).ok()?;
    Some(op.children().expect(0x04, "objectName").ok()?.value)
}

fuzz_target!(|data: &[u8]| {
    let Some((setup, buf)) = setup(data) else {
        return;
    };
    let (mut inflight, limit, new_id) = setup;
    let before = Snapshot::of(&inflight);
    let routing = route(buf, limit, &mut inflight, &in_scope);

    // Pieces cover whole PDUs from the front of the buffer, no more.
    let mut pos = 0;
    let mut pdus: Vec<(PduHeader, bool)> = Vec::new(); // header, forwarded
    let mut last_skip = false;
    for piece in &routing.pieces {
        match piece {
            Piece::Forward(n) | Piece::Skip(n) => {
                let forward = matches!(piece, Piece::Forward(_));
                let end = pos + n;
                assert!(
                    end <= buf.len(),
                    "{piece:?} past the buffer of {}",
                    buf.len()
                );
                let mut skipped = 0;
                while pos < end {
                    let h = ber::peek_pdu(&buf[pos..], limit).expect("a routed PDU frames");
                    pos += h.len;
                    skipped += 1;
                    pdus.push((h, forward));
                }
                assert_eq!(pos, end, "{piece:?} ends inside a PDU");
                assert!(forward || skipped == 1, "one Skip per PDU");
                last_skip = !forward;
            }
            Piece::Own(own) => {
                assert!(last_skip, "ldapgate's own response replaces a skipped one");
                let h = ber::peek_pdu(own, usize::MAX).expect("ldapgate's own PDU frames");
                assert_eq!(h.len, own.len());
                assert_eq!(h.msgid, pdus.last().unwrap().0.msgid);
                last_skip = false;
            }
        }
    }
    let rest = &buf[pos..];
    match &routing.end {
        None => assert!(
            rest.is_empty() || ber::peek_pdu(rest, limit) == Err(ber::FrameError::Incomplete),
            "a complete PDU was left unrouted"
        ),
        Some(StreamEnd::Unsolicited) => {
            let (h, forwarded) = pdus.last().expect("the notice was routed");
            assert_eq!(h.msgid, 0);
            assert!(forwarded);
        }
        Some(StreamEnd::Malformed(_)) => assert!(ber::peek_pdu(rest, limit).is_err()),
    }
    assert!(pdus.iter().all(|(h, _)| h.msgid != 0) || routing.end == Some(StreamEnd::Unsolicited));
    before.model(buf, &pdus, &inflight);

    // Every operation finished had been outstanding, and is no longer.
    let mut seen = HashSet::new();
    for f in &routing.finished {
        assert!(before.outstanding.contains(&f.msgid));
        assert!(!inflight.outstanding.contains_key(&f.msgid));
        assert!(seen.insert(f.msgid), "finished twice");
    }
    assert!(inflight
        .outstanding
        .keys()
        .all(|id| before.outstanding.contains(id)));
    assert!(inflight
        .substitutes
        .keys()
        .all(|id| before.substitutes.contains(id)));

    // The reads made of responses agree with the framing.
    let mut at = 0;
    for (h, _) in &pdus {
        let pdu = &buf[at..at + h.len];
        at += h.len;
        if let Ok(summary) = response::read_result(pdu) {
            assert_eq!((summary.msgid, summary.op_tag), (h.msgid, h.op_tag));
            assert_eq!(response::result_code(pdu), Some(summary.code));
        }
        let drop = |t: &[u8]| t.first().is_some_and(|b| b & 1 == 1);
        if let Ok(out) = response::readdressed(pdu, new_id, drop) {
            let h2 = ber::peek_pdu(&out, usize::MAX).expect("a readdressed PDU frames");
            assert_eq!((h2.len, h2.msgid, h2.op_tag), (out.len(), new_id, h.op_tag));
            let (_, op, _) = ber::message_parts(pdu).unwrap();
            let (_, op2, controls) = ber::message_parts(&out).unwrap();
            assert_eq!(op, op2, "the operation is kept byte for byte");
            if let Some(controls) = controls {
                let mut list = controls.children();
                while !list.is_empty() {
                    let t = list.next().unwrap().children().next().unwrap();
                    assert!(!drop(t.value), "a dropped control was kept");
                }
            }
        }
    }

    // What is left is routed the same on the next read.
    let again = route(rest, limit, &mut inflight, &in_scope);
    if routing.end.is_none() {
        assert!(again.pieces.is_empty() && again.end.is_none());
    }
});

/// Builds the InFlight from the head of the input: a count, then three
/// bytes per step. Message IDs are small so that steps and responses meet.
fn setup(data: &[u8]) -> Option<((InFlight, usize, i32), &[u8])> {
    let (&head, data) = data.split_first()?;
    let steps = usize::from(head & 0x0f);
    let limit = LIMITS[usize::from(head >> 4) % LIMITS.len()];
    let (steps_bytes, buf) = data.split_at_checked(steps * 3)?;
    let mut inflight = InFlight::default();
    inflight.served.starttls = head & 0x40 != 0;
    inflight.served.read_only = head & 0x80 != 0;
    let mut new_id = 1;
    for step in steps_bytes.chunks(3) {
        let (kind, a, b) = (step[0], i32::from(step[1] % 8), i32::from(step[2] % 8));
        match kind % 8 {
            0..=2 => inflight.start(a, OPS[usize::from(b as u8) % OPS.len()]),
            3 => inflight.start_as(a, "search", true),
            4 => inflight.abandon(a),
            5 => {
                inflight.scoped.insert(a);
            }
            6 => {
                let code = if b == 0 {
                    LdapResultCode::InvalidCredentials
                } else {
                    LdapResultCode::ConfidentialityRequired
                };
                let own = response::result_for(tag::BIND_REQUEST, a, code, "refused");
                inflight
                    .substitutes
                    .insert(a, own.expect("a bind has a response"));
            }
            _ => {
                inflight.root_dse.insert(a);
                new_id = i32::from(step[2]) << 16 | i32::from(step[1]);
            }
        }
    }
    Some(((inflight, limit, new_id), buf))
}

/// What was in flight before routing, to hold the routing to.
struct Snapshot {
    outstanding: HashSet<i32>,
    substitutes: HashSet<i32>,
    abandoned: HashSet<i32>,
    scoped: HashSet<i32>,
    root_dse: HashSet<i32>,
}

impl Snapshot {
    fn of(i: &InFlight) -> Snapshot {
        Snapshot {
            outstanding: i.outstanding.keys().copied().collect(),
            substitutes: i.substitutes.keys().copied().collect(),
            abandoned: i.abandoned.clone(),
            scoped: i.scoped.clone(),
            root_dse: i.root_dse.clone(),
        }
    }

    /// Nothing of an abandoned operation, no entry outside base_dn of a
    /// search that dereferences aliases, and no substituted final response
    /// reaches the client; anything else does (a root DSE entry perhaps
    /// rewritten).
    fn model(&self, buf: &[u8], pdus: &[(PduHeader, bool)], after: &InFlight) {
        let mut abandoned = self.abandoned.clone();
        let mut scoped = self.scoped.clone();
        let mut substitutes = self.substitutes.clone();
        let mut at = 0;
        for (h, forwarded) in pdus {
            let pdu = &buf[at..at + h.len];
            at += h.len;
            let final_ = tag::is_final_response(h.op_tag);
            if h.msgid == 0 {
                assert!(forwarded);
                return;
            }
            if abandoned.contains(&h.msgid) {
                assert!(
                    !forwarded,
                    "a response to an abandoned operation went through"
                );
                if final_ {
                    abandoned.remove(&h.msgid);
                }
                continue;
            }
            if h.op_tag == tag::SEARCH_RESULT_ENTRY
                && scoped.contains(&h.msgid)
                && !entry_name(pdu).is_some_and(in_scope)
            {
                assert!(!forwarded, "an entry outside base_dn went through");
                continue;
            }
            if final_ {
                scoped.remove(&h.msgid);
                if substitutes.remove(&h.msgid) {
                    assert!(!forwarded, "a substituted response went through");
                    continue;
                }
            }
            let rewritten =
                h.op_tag == tag::SEARCH_RESULT_ENTRY && self.root_dse.contains(&h.msgid);
            assert!(*forwarded || rewritten, "{h:?} was dropped");
        }
        assert_eq!(abandoned, after.abandoned);
        assert_eq!(scoped, after.scoped);
    }
}

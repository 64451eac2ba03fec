//! The PDU splitter: `peek_pdu`, `declared_len`, `message_parts` and the
//! TLV reader, on arbitrary bytes.
#![no_main]

use ldapgate::ber::{self, FrameError, Tlv, TlvReader};
use libfuzzer_sys::fuzz_target;

/// Limits the session uses (before a bind, after, upstream) and a few small
/// ones that make TooLarge reachable.
const LIMITS: [usize; 8] = [0, 1, 5, 64, 300, 65536, 1 << 20, 16 << 20];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, buf)) = data.split_first() else {
        return;
    };
    let limit = LIMITS[usize::from(pick) % LIMITS.len()];
    frame(buf, limit);
    walk(TlvReader::new(buf), 0);
    if buf.len() >= 4 {
        let v = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let content = ber::int_content(v);
        assert_eq!(
            Tlv {
                tag: 0x02,
                value: &content
            }
            .as_int(),
            Ok(i64::from(v))
        );
    }
});

fn frame(buf: &[u8], limit: usize) {
    match ber::peek_pdu(buf, limit) {
        Ok(h) => {
            // 0x30 L, 02 01 id, and at least the operation's tag.
            assert!(h.len >= 6 && h.len <= buf.len(), "{h:?} of {}", buf.len());
            assert!(h.msgid >= 0);
            assert_eq!(ber::declared_len(buf), Some(h.len));
            let pdu = &buf[..h.len];
            // The PDU alone, or with any limit that admits it, frames the same.
            assert_eq!(ber::peek_pdu(pdu, limit), Ok(h));
            assert_eq!(ber::peek_pdu(buf, usize::MAX), Ok(h));
            // However TCP cuts the stream, a PDU that frames whole is only
            // ever "incomplete" before its last byte arrives.
            for cut in 0..h.len {
                assert_eq!(
                    ber::peek_pdu(&pdu[..cut], limit),
                    Err(FrameError::Incomplete),
                    "prefix of {cut} bytes of an accepted PDU"
                );
            }
            if let Ok((id, op, _)) = ber::message_parts(pdu) {
                assert_eq!(id.as_int(), Ok(i64::from(h.msgid)));
                assert_eq!(op.tag, h.op_tag);
            }
        }
        Err(FrameError::Incomplete) => {
            // Either the length octets are not all there, or the body is not.
            assert!(ber::declared_len(buf).is_none_or(|n| buf.len() < n));
        }
        Err(FrameError::TooLarge { size, limit: l }) => {
            assert_eq!(l, limit);
            assert!(size > limit as u64);
        }
        Err(FrameError::Malformed(_)) => {}
    }
}

/// Reads every element, descending into constructed ones; each element
/// lies inside what it was read from and re-encodes to one that reads the
/// same.
fn walk(mut reader: TlvReader<'_>, depth: usize) {
    while !reader.is_empty() {
        let before = reader.rest();
        let Ok(tlv) = reader.next() else {
            // A failed read consumes nothing.
            assert_eq!(reader.rest(), before);
            return;
        };
        let used = before.len() - reader.rest().len();
        assert!(used >= 2 + tlv.value.len());
        let _ = tlv.as_int();
        let mut out = Vec::new();
        ber::push_tlv(&mut out, tlv.tag, tlv.value);
        let mut again = TlvReader::new(&out);
        assert_eq!(again.next(), Ok(tlv));
        assert!(again.is_empty());
        if tlv.tag & 0x20 != 0 && depth < 32 {
            walk(tlv.children(), depth + 1);
        }
    }
}

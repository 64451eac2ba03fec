//! Raw BER framing of LDAP PDUs.
//!
//! The proxy forwards PDUs byte-for-byte, so it needs to know only where one
//! `LDAPMessage` ends and the next begins, its message ID and the tag of its
//! protocol operation. Decoding through a typed codec would drop what the codec
//! does not model (unknown controls, attribute order, the exact encoding a
//! server chose), so framing is done here, with an explicit
//! size limit per direction, and a small zero-copy TLV reader serves the few
//! fields policy needs.

use thiserror::Error;

/// Why a byte stream is not a well-formed sequence of LDAP PDUs.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// More bytes are needed; the hot-path case, deliberately cheap.
    #[error("incomplete PDU")]
    Incomplete,
    #[error("malformed BER: {0}")]
    Malformed(&'static str),
    #[error("PDU of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: u64, limit: usize },
}

/// Where a complete PDU sits in a buffer, and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PduHeader {
    /// Total encoded length of the PDU, header included.
    pub len: usize,
    /// The LDAP message ID.
    pub msgid: i32,
    /// Tag byte of the protocol operation (e.g. `0x60` BindRequest).
    pub op_tag: u8,
}

/// Reads a BER length at `buf[pos..]`; returns (content length, bytes used).
/// LDAP forbids the indefinite form (RFC 4511 §5.1) and no sane PDU needs a
/// length of more than four bytes.
fn read_length(buf: &[u8], pos: usize) -> Result<(u64, usize), FrameError> {
    let first = *buf.get(pos).ok_or(FrameError::Incomplete)?;
    if first < 0x80 {
        return Ok((u64::from(first), 1));
    }
    let n = usize::from(first & 0x7f);
    if n == 0 {
        return Err(FrameError::Malformed("indefinite length"));
    }
    if n > 4 {
        // A length this large cannot be within any limit; report the size we
        // can see (at least 2^32) so the error explains itself.
        return Err(FrameError::TooLarge {
            size: u64::from(u32::MAX) + 1,
            limit: 0,
        });
    }
    let bytes = buf
        .get(pos + 1..pos + 1 + n)
        .ok_or(FrameError::Incomplete)?;
    let len = bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    Ok((len, 1 + n))
}

/// Finds the first complete PDU in `buf`.
///
/// Returns `Incomplete` until the whole PDU is buffered; a PDU whose declared
/// length exceeds `limit` fails as soon as its header is read, before the body
/// arrives, so an attacker cannot make the proxy buffer it.
pub fn peek_pdu(buf: &[u8], limit: usize) -> Result<PduHeader, FrameError> {
    let tag = *buf.first().ok_or(FrameError::Incomplete)?;
    if tag != 0x30 {
        return Err(FrameError::Malformed("LDAPMessage is not a SEQUENCE"));
    }
    let (content_len, len_bytes) = read_length(buf, 1).map_err(|e| match e {
        FrameError::TooLarge { size, .. } => FrameError::TooLarge { size, limit },
        other => other,
    })?;
    if content_len > limit as u64 {
        return Err(FrameError::TooLarge {
            size: content_len,
            limit,
        });
    }
    let header_len = 1 + len_bytes;
    // content_len <= limit (a usize) so the cast is lossless.
    let total = header_len + content_len as usize;
    if buf.len() < total {
        // Before waiting for the body, make sure what we have so far is not
        // already malformed: garbage should be rejected on the first packet.
        let partial = &buf[header_len..];
        if partial.len() >= 2 {
            check_msgid_prefix(partial)?;
        }
        return Err(FrameError::Incomplete);
    }
    let body = &buf[header_len..total];
    let mut reader = TlvReader::new(body);
    let id = reader
        .next()
        .map_err(|_| FrameError::Malformed("truncated message ID"))?;
    if id.tag != 0x02 {
        return Err(FrameError::Malformed("message ID is not an INTEGER"));
    }
    let msgid = decode_msgid(id.value)?;
    let op_tag = *reader.rest().first().ok_or(FrameError::Malformed(
        "LDAPMessage has no protocol operation",
    ))?;
    Ok(PduHeader {
        len: total,
        msgid,
        op_tag,
    })
}

/// The whole length (header and content) of the PDU that starts `buf`,
/// once its length octets have arrived; None before that or when they are
/// not a usable length (the framing itself reports those).
pub fn declared_len(buf: &[u8]) -> Option<usize> {
    let (content_len, len_bytes) = read_length(buf, 1).ok()?;
    usize::try_from(content_len)
        .ok()?
        .checked_add(1 + len_bytes)
}

/// True when `buf`, after the whole PDUs at its front, ends in part of one
/// (whatever their size: limits are the framing's business).
pub fn unfinished_tail(buf: &[u8]) -> bool {
    let mut rest = buf;
    while !rest.is_empty() {
        match declared_len(rest) {
            Some(len) if len <= rest.len() => rest = &rest[len..],
            _ => return true,
        }
    }
    false
}

fn check_msgid_prefix(partial: &[u8]) -> Result<(), FrameError> {
    if partial[0] != 0x02 {
        return Err(FrameError::Malformed("message ID is not an INTEGER"));
    }
    // A short-form length of 1 to 4, or a long form (0x81..=0x84) whose
    // value the whole PDU's reading checks: BER allows `02 81 01 05`, and
    // the verdict must not depend on how the stream was cut.
    if !matches!(partial[1], 1..=4 | 0x81..=0x84) {
        return Err(FrameError::Malformed("message ID length out of range"));
    }
    Ok(())
}

/// MessageID ::= INTEGER (0 .. maxInt), maxInt = 2^31-1.
fn decode_msgid(value: &[u8]) -> Result<i32, FrameError> {
    if value.is_empty() || value.len() > 4 {
        return Err(FrameError::Malformed("message ID length out of range"));
    }
    if value[0] & 0x80 != 0 {
        return Err(FrameError::Malformed("negative message ID"));
    }
    let v = value.iter().fold(0i64, |acc, b| (acc << 8) | i64::from(*b));
    i32::try_from(v).map_err(|_| FrameError::Malformed("message ID out of range"))
}

/// One BER element: its tag byte and the content octets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    pub tag: u8,
    pub value: &'a [u8],
}

impl<'a> Tlv<'a> {
    /// Reads the content as a non-negative INTEGER or ENUMERATED that fits in i64.
    pub fn as_int(&self) -> Result<i64, FrameError> {
        if self.value.is_empty() || self.value.len() > 8 {
            return Err(FrameError::Malformed("integer length out of range"));
        }
        let negative = self.value[0] & 0x80 != 0;
        let init: i64 = if negative { -1 } else { 0 };
        Ok(self
            .value
            .iter()
            .fold(init, |acc, b| (acc << 8) | i64::from(*b)))
    }

    /// A reader over the elements inside this (constructed) element.
    pub fn children(&self) -> TlvReader<'a> {
        TlvReader::new(self.value)
    }
}

/// Zero-copy reader over a sequence of BER elements with single-byte tags
/// (all LDAP tags are below 31).
#[derive(Debug, Clone)]
pub struct TlvReader<'a> {
    data: &'a [u8],
}

impl<'a> TlvReader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The bytes not yet read.
    pub fn rest(&self) -> &'a [u8] {
        self.data
    }

    /// Reads the next element; the whole element must be present.
    #[allow(clippy::should_implement_trait)] // fallible, unlike Iterator::next
    pub fn next(&mut self) -> Result<Tlv<'a>, FrameError> {
        let tag = *self
            .data
            .first()
            .ok_or(FrameError::Malformed("element expected"))?;
        if tag & 0x1f == 0x1f {
            return Err(FrameError::Malformed("multi-byte tag"));
        }
        let (len, len_bytes) = read_length(self.data, 1).map_err(|e| match e {
            FrameError::Incomplete => FrameError::Malformed("truncated length"),
            other => other,
        })?;
        let start = 1 + len_bytes;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| start.checked_add(l))
            .filter(|end| *end <= self.data.len())
            .ok_or(FrameError::Malformed("element overruns its container"))?;
        let value = &self.data[start..end];
        self.data = &self.data[end..];
        Ok(Tlv { tag, value })
    }

    /// Reads the next element and checks its tag.
    pub fn expect(&mut self, tag: u8, what: &'static str) -> Result<Tlv<'a>, FrameError> {
        let tlv = self.next()?;
        if tlv.tag != tag {
            return Err(FrameError::Malformed(what));
        }
        Ok(tlv)
    }
}

/// Appends one BER element, `tag` then the definite length in its shortest
/// form (X.690 §8.1.3) then `content`.
pub fn push_tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        // Below 0x80 the short form is the length itself.
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        // At most size_of::<usize>() (8) length bytes, so this fits in 7 bits.
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
}

/// The content octets of INTEGER `v` in its shortest two's-complement form
/// (X.690 §8.3.2).
pub fn int_content(v: i32) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let mut start = 0;
    while start < 3 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    bytes[start..].to_vec()
}

/// Splits a buffer into the PDUs it contains, header and body together.
/// Returns the inner elements of the LDAPMessage: message ID, protocol
/// operation, and the optional controls.
pub fn message_parts(pdu: &[u8]) -> Result<(Tlv<'_>, Tlv<'_>, Option<Tlv<'_>>), FrameError> {
    let mut outer = TlvReader::new(pdu);
    let msg = outer.expect(0x30, "LDAPMessage is not a SEQUENCE")?;
    let mut inner = msg.children();
    let id = inner.expect(0x02, "message ID is not an INTEGER")?;
    let op = inner.next()?;
    let controls = if inner.is_empty() {
        None
    } else {
        Some(inner.expect(0xa0, "controls must be tagged [0]")?)
    };
    Ok((id, op, controls))
}

#[cfg(test)]
mod tests {
    use super::*;

    // An anonymous simple bind, message ID 1, from `ldapwhoami -x`.
    const BIND: &[u8] = &[
        0x30, 0x0c, 0x02, 0x01, 0x01, 0x60, 0x07, 0x02, 0x01, 0x03, 0x04, 0x00, 0x80, 0x00,
    ];

    #[test]
    fn an_unfinished_tail_is_found_behind_whole_pdus() {
        let whole = [0x30, 0x03, 0x02, 0x01, 0x01];
        assert!(!unfinished_tail(&[]));
        assert!(!unfinished_tail(&whole));
        assert!(!unfinished_tail(&[whole, whole].concat()));
        assert!(unfinished_tail(&[&whole[..], &whole[..3]].concat()));
        assert!(unfinished_tail(&[0x30]));
    }

    #[test]
    fn the_declared_length_is_known_once_the_length_octets_arrive() {
        assert_eq!(declared_len(&[0x30]), None);
        assert_eq!(declared_len(&[0x30, 0x05]), Some(7));
        assert_eq!(declared_len(&[0x30, 0x83, 0x10]), None);
        assert_eq!(
            declared_len(&[0x30, 0x83, 0x10, 0x00, 0x00]),
            Some(5 + 0x10_0000)
        );
        assert_eq!(declared_len(&[0x30, 0x80]), None, "indefinite");
    }

    #[test]
    fn encodes_lengths_and_integers_in_their_shortest_form() {
        let mut out = Vec::new();
        push_tlv(&mut out, 0x04, &[7; 3]);
        assert_eq!(out, [0x04, 3, 7, 7, 7]);
        let mut out = Vec::new();
        push_tlv(&mut out, 0x04, &[0; 300]);
        assert_eq!(out[..4], [0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(TlvReader::new(&out).next().unwrap().value.len(), 300);
        for (v, want) in [
            (0, vec![0]),
            (5, vec![5]),
            (127, vec![0x7f]),
            (128, vec![0, 0x80]),
            (256, vec![1, 0]),
            (-1, vec![0xff]),
            (-129, vec![0xff, 0x7f]),
            (i32::MAX, vec![0x7f, 0xff, 0xff, 0xff]),
        ] {
            assert_eq!(int_content(v), want, "{v}");
            let tlv = Tlv {
                tag: 2,
                value: &want,
            };
            assert_eq!(tlv.as_int().unwrap(), i64::from(v));
        }
    }

    #[test]
    fn peeks_a_complete_pdu() {
        let h = peek_pdu(BIND, 1024).unwrap();
        assert_eq!(
            h,
            PduHeader {
                len: 14,
                msgid: 1,
                op_tag: 0x60
            }
        );
    }

    #[test]
    fn every_strict_prefix_is_incomplete() {
        for cut in 0..BIND.len() {
            assert_eq!(
                peek_pdu(&BIND[..cut], 1024),
                Err(FrameError::Incomplete),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_long_form_message_id_length_is_incomplete_until_the_pdu_is_whole() {
        // Found by fuzz/fuzz_targets/pdu.rs: an unbind whose message ID
        // length is in the long form framed whole, but its first four
        // bytes alone were rejected as malformed.
        let unbind = [0x30, 0x06, 0x02, 0x81, 0x01, 0x05, 0x42, 0x00];
        let h = peek_pdu(&unbind, 1024).unwrap();
        assert_eq!((h.len, h.msgid, h.op_tag), (8, 5, 0x42));
        for cut in 0..unbind.len() {
            assert_eq!(
                peek_pdu(&unbind[..cut], 1024),
                Err(FrameError::Incomplete),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn trailing_bytes_belong_to_the_next_pdu() {
        let mut two = BIND.to_vec();
        two.extend_from_slice(BIND);
        assert_eq!(peek_pdu(&two, 1024).unwrap().len, BIND.len());
    }

    #[test]
    fn oversized_pdu_fails_on_its_header() {
        // Declares 100,000 bytes of content but carries none.
        let hdr = [0x30, 0x83, 0x01, 0x86, 0xa0];
        assert_eq!(
            peek_pdu(&hdr, 65536),
            Err(FrameError::TooLarge {
                size: 100_000,
                limit: 65536
            })
        );
    }

    #[test]
    fn rejects_garbage_and_indefinite_length() {
        assert!(matches!(
            peek_pdu(b"GET / HTTP/1.1\r\n", 1024),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            peek_pdu(&[0x30, 0x80, 0x02, 0x01, 0x01], 1024),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            peek_pdu(&[0x30, 0x85, 1, 2, 3, 4, 5], 1024),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn rejects_bad_message_ids() {
        // Negative.
        assert!(matches!(
            peek_pdu(&[0x30, 0x05, 0x02, 0x01, 0xff, 0x42, 0x00], 1024),
            Err(FrameError::Malformed(_))
        ));
        // Five bytes long, noticed before the body is complete.
        assert!(matches!(
            peek_pdu(&[0x30, 0x40, 0x02, 0x05], 1024),
            Err(FrameError::Malformed(_))
        ));
        // Not an INTEGER.
        assert!(matches!(
            peek_pdu(&[0x30, 0x05, 0x04, 0x01, 0x01, 0x42, 0x00], 1024),
            Err(FrameError::Malformed(_))
        ));
        // No operation after the ID.
        assert!(matches!(
            peek_pdu(&[0x30, 0x03, 0x02, 0x01, 0x01], 1024),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn long_form_lengths_and_big_ids() {
        let mut pdu = vec![0x30, 0x82, 0x01, 0x05, 0x02, 0x04, 0x7f, 0xff, 0xff, 0xff];
        pdu.push(0x64);
        pdu.push(0x81);
        pdu.push(0xfc);
        pdu.extend(std::iter::repeat_n(0u8, 0xfc));
        let h = peek_pdu(&pdu, 1 << 20).unwrap();
        assert_eq!(h.len, 4 + 0x105);
        assert_eq!(h.msgid, i32::MAX);
        assert_eq!(h.op_tag, 0x64);
    }

    #[test]
    fn tlv_reader_walks_a_bind_request() {
        let (id, op, controls) = message_parts(BIND).unwrap();
        assert_eq!(id.as_int().unwrap(), 1);
        assert_eq!(op.tag, 0x60);
        assert!(controls.is_none());
        let mut bind = op.children();
        assert_eq!(bind.expect(0x02, "version").unwrap().as_int().unwrap(), 3);
        assert_eq!(bind.expect(0x04, "name").unwrap().value, b"");
        assert_eq!(bind.expect(0x80, "simple").unwrap().value, b"");
        assert!(bind.is_empty());
    }

    #[test]
    fn tlv_reader_refuses_overruns() {
        let mut r = TlvReader::new(&[0x04, 0x05, b'a']);
        assert!(matches!(r.next(), Err(FrameError::Malformed(_))));
        let mut r = TlvReader::new(&[0x04]);
        assert!(matches!(r.next(), Err(FrameError::Malformed(_))));
    }
}

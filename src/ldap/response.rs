//! PDUs ldapgate writes itself: results for requests it refuses, StartTLS,
//! Notice of Disconnection, and the few requests it sends upstream on its own
//! account. Encoding is ldap3_proto's; reading a result back is done by hand
//! so that result codes ldap3_proto does not know cannot fail the proxy.

use bytes::BytesMut;
use ldap3_proto::proto::{
    LdapBindCred, LdapBindRequest, LdapBindResponse, LdapExtendedRequest, LdapExtendedResponse,
    LdapMsg, LdapOp, LdapResult, LdapResultCode,
};
use ldap3_proto::LdapCodec;
use tokio_util::codec::Encoder;

use crate::ber::{self, FrameError};
use crate::ldap::{oid, tag};

/// Encodes a message.
pub fn encode(msg: LdapMsg) -> Vec<u8> {
    let mut buf = BytesMut::new();
    // ldap3_lber encodes into an in-memory Vec and has no failing path; the
    // io::Result is only the Encoder trait's signature.
    LdapCodec::default()
        .encode(msg, &mut buf)
        .expect("encoding an LdapMsg into memory cannot fail");
    buf.to_vec()
}

fn result(code: LdapResultCode, message: &str) -> LdapResult {
    LdapResult {
        code,
        matcheddn: String::new(),
        message: message.to_owned(),
        referral: Vec::new(),
    }
}

/// The response to request `request_tag` carrying `code`, or None for the
/// operations that have no response (abandon, unbind).
pub fn result_for(
    request_tag: u8,
    msgid: i32,
    code: LdapResultCode,
    message: &str,
) -> Option<Vec<u8>> {
    let res = result(code, message);
    let op = match request_tag {
        tag::BIND_REQUEST => LdapOp::BindResponse(LdapBindResponse {
            res,
            saslcreds: None,
        }),
        tag::SEARCH_REQUEST => LdapOp::SearchResultDone(res),
        tag::MODIFY_REQUEST => LdapOp::ModifyResponse(res),
        tag::ADD_REQUEST => LdapOp::AddResponse(res),
        tag::DEL_REQUEST => LdapOp::DelResponse(res),
        tag::MODIFY_DN_REQUEST => LdapOp::ModifyDNResponse(res),
        tag::COMPARE_REQUEST => LdapOp::CompareResult(res),
        tag::EXTENDED_REQUEST => LdapOp::ExtendedResponse(LdapExtendedResponse {
            res,
            name: None,
            value: None,
        }),
        _ => return None,
    };
    Some(encode(LdapMsg::new(msgid, op)))
}

/// The StartTLS extended response (RFC 4511 §4.14.2).
pub fn start_tls_response(msgid: i32, code: LdapResultCode, message: &str) -> Vec<u8> {
    encode(LdapMsg::new(
        msgid,
        LdapOp::ExtendedResponse(LdapExtendedResponse {
            res: result(code, message),
            name: Some(oid::START_TLS.to_owned()),
            value: None,
        }),
    ))
}

/// An unsolicited Notice of Disconnection (RFC 4511 §4.4.1).
pub fn notice_of_disconnection(code: LdapResultCode, message: &str) -> Vec<u8> {
    encode(LdapMsg::new(
        0,
        LdapOp::ExtendedResponse(LdapExtendedResponse {
            res: result(code, message),
            name: Some(oid::NOTICE_OF_DISCONNECTION.to_owned()),
            value: None,
        }),
    ))
}

/// A StartTLS request, sent upstream.
pub fn start_tls_request(msgid: i32) -> Vec<u8> {
    encode(LdapMsg::new(
        msgid,
        LdapOp::ExtendedRequest(LdapExtendedRequest {
            name: oid::START_TLS.to_owned(),
            value: None,
        }),
    ))
}

/// An anonymous simple bind, which returns a connection to the anonymous
/// state (RFC 4513 §5.1.1) before it is reused for another client.
pub fn anonymous_bind_request(msgid: i32) -> Vec<u8> {
    encode(LdapMsg::new(
        msgid,
        LdapOp::BindRequest(LdapBindRequest {
            version: 3,
            dn: String::new(),
            cred: LdapBindCred::Simple(String::new()),
        }),
    ))
}

/// The LDAPResult at the head of a response PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultSummary {
    pub msgid: i32,
    pub op_tag: u8,
    pub code: i64,
    pub diagnostic: String,
    /// responseName of an ExtendedResponse.
    pub response_name: Option<String>,
}

/// The result code of a response PDU, without reading the rest.
pub fn result_code(pdu: &[u8]) -> Option<i64> {
    let (_, op, _) = ber::message_parts(pdu).ok()?;
    op.children().expect(0x0a, "resultCode").ok()?.as_int().ok()
}

/// Reads the result code and diagnostic of a response PDU.
pub fn read_result(pdu: &[u8]) -> Result<ResultSummary, FrameError> {
    let (id, op, _) = ber::message_parts(pdu)?;
    let msgid = i32::try_from(id.as_int()?).map_err(|_| FrameError::Malformed("message ID"))?;
    let mut r = op.children();
    let code = r.expect(0x0a, "resultCode is not ENUMERATED")?.as_int()?;
    r.expect(0x04, "matchedDN is not an OCTET STRING")?;
    let diagnostic = r.expect(0x04, "diagnosticMessage is not an OCTET STRING")?;
    let diagnostic = String::from_utf8_lossy(diagnostic.value).into_owned();
    let mut response_name = None;
    while !r.is_empty() {
        let t = r.next()?;
        if op.tag == tag::EXTENDED_RESPONSE && t.tag == 0x8a {
            response_name = Some(String::from_utf8_lossy(t.value).into_owned());
        }
    }
    Ok(ResultSummary {
        msgid,
        op_tag: op.tag,
        code,
        diagnostic,
        response_name,
    })
}

/// `pdu` (a response) with message ID `msgid` instead of its own, and
/// without the response controls whose type `drop_control` rejects; the
/// protocol operation's content and every other control are kept byte for
/// byte (lengths are re-encoded in their shortest form). For a
/// response the directory sent to one of ldapgate's own requests that
/// answers the client's (RFC 4511 §4.1.1: one message ID per request).
pub fn readdressed(
    pdu: &[u8],
    msgid: i32,
    drop_control: impl Fn(&[u8]) -> bool,
) -> Result<Vec<u8>, FrameError> {
    let (_, op, controls) = ber::message_parts(pdu)?;
    let mut body = Vec::with_capacity(pdu.len());
    ber::push_tlv(&mut body, 0x02, &ber::int_content(msgid));
    ber::push_tlv(&mut body, op.tag, op.value);
    if let Some(controls) = controls {
        let mut kept = Vec::new();
        let mut list = controls.children();
        while !list.is_empty() {
            let before = list.rest();
            let control = list.expect(0x30, "control is not a SEQUENCE")?;
            let whole = &before[..before.len() - list.rest().len()];
            let control_type = control
                .children()
                .expect(0x04, "controlType is not an OCTET STRING")?;
            if !drop_control(control_type.value) {
                kept.extend_from_slice(whole);
            }
        }
        if !kept.is_empty() {
            ber::push_tlv(&mut body, 0xa0, &kept);
        }
    }
    let mut out = Vec::with_capacity(body.len() + 6);
    ber::push_tlv(&mut out, 0x30, &body);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_readdressed_response_keeps_everything_but_its_id_and_dropped_controls() {
        use ldap3_proto::control::LdapControl;
        let original = encode(LdapMsg::new_with_ctrls(
            7,
            LdapOp::BindResponse(LdapBindResponse {
                res: result(
                    LdapResultCode::InvalidCredentials,
                    "80090308: LdapErr: DSID-0C0903A9, data 773, v1db1",
                ),
                saslcreds: None,
            }),
            vec![LdapControl::PasswordPolicyRequest { criticality: false }],
        ));
        let ppolicy = b"1.3.6.1.4.1.42.2.27.8.5.1";
        let kept = readdressed(&original, 300, |_| false).unwrap();
        let r = read_result(&kept).unwrap();
        assert_eq!((r.msgid, r.op_tag, r.code), (300, tag::BIND_RESPONSE, 49));
        assert!(r.diagnostic.contains("data 773"));
        let (_, op, controls) = ber::message_parts(&kept).unwrap();
        let (_, original_op, original_controls) = ber::message_parts(&original).unwrap();
        assert_eq!(op, original_op);
        assert_eq!(controls, original_controls);
        let dropped = readdressed(&original, 1, |oid| oid == ppolicy).unwrap();
        let (_, op, controls) = ber::message_parts(&dropped).unwrap();
        assert_eq!((op, controls), (original_op, None));
        assert!(readdressed(b"\x30\x03\x02\x01", 1, |_| false).is_err());
    }

    #[test]
    fn refusals_carry_the_matching_response_tag() {
        let cases = [
            (tag::BIND_REQUEST, tag::BIND_RESPONSE),
            (tag::SEARCH_REQUEST, tag::SEARCH_RESULT_DONE),
            (tag::MODIFY_REQUEST, tag::MODIFY_RESPONSE),
            (tag::ADD_REQUEST, tag::ADD_RESPONSE),
            (tag::DEL_REQUEST, tag::DEL_RESPONSE),
            (tag::MODIFY_DN_REQUEST, tag::MODIFY_DN_RESPONSE),
            (tag::COMPARE_REQUEST, tag::COMPARE_RESPONSE),
            (tag::EXTENDED_REQUEST, tag::EXTENDED_RESPONSE),
        ];
        for (req, resp) in cases {
            let pdu = result_for(req, 42, LdapResultCode::UnwillingToPerform, "no").unwrap();
            let r = read_result(&pdu).unwrap();
            assert_eq!((r.msgid, r.op_tag, r.code), (42, resp, 53));
            assert_eq!(r.diagnostic, "no");
        }
        assert!(result_for(tag::ABANDON_REQUEST, 1, LdapResultCode::Other, "").is_none());
        assert!(result_for(tag::UNBIND_REQUEST, 1, LdapResultCode::Other, "").is_none());
    }

    #[test]
    fn notice_of_disconnection_is_unsolicited() {
        let pdu = notice_of_disconnection(LdapResultCode::ProtocolError, "bad");
        let r = read_result(&pdu).unwrap();
        assert_eq!(r.msgid, 0);
        assert_eq!(r.code, 2);
        assert_eq!(
            r.response_name.as_deref(),
            Some(oid::NOTICE_OF_DISCONNECTION)
        );
    }

    #[test]
    fn reads_unknown_result_codes() {
        // A DelResponse with result code 4096+7, which ldap3_proto cannot decode.
        let pdu = [
            0x30, 0x0c, 0x02, 0x01, 0x05, 0x6b, 0x07, 0x0a, 0x02, 0x10, 0x07, 0x04, 0x00, 0x04,
            0x00,
        ];
        let mut fixed = pdu.to_vec();
        fixed[1] = (fixed.len() - 2) as u8;
        fixed[6] = (fixed.len() - 7) as u8;
        let r = read_result(&fixed).unwrap();
        assert_eq!(r.code, 4103);
    }
}

//! The password policy response control (draft-behera-ldap-password-policy):
//! its OID, which a bind also carries to ask for it, and its value, which
//! says why a bind failed (expired, locked, must change) or warns of an
//! expiry to come.

use serde::Serialize;

use crate::ber::{FrameError, TlvReader};

/// OID of the password policy control (draft-behera-ldap-password-policy).
pub const PPOLICY_OID: &str = "1.3.6.1.4.1.42.2.27.8.5.1";

/// The password policy response control's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct PolicyResponse {
    /// Seconds until the password expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_before_expiration: Option<i64>,
    /// Logins left on an expired password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace_logins_remaining: Option<i64>,
    /// The PasswordPolicyResponseValue error enumeration.
    #[serde(skip)]
    pub error: Option<i64>,
}

/// Decodes `PasswordPolicyResponseValue ::= SEQUENCE { warning [0] CHOICE {
/// timeBeforeExpiration [0] INTEGER, graceAuthNsRemaining [1] INTEGER }
/// OPTIONAL, error [1] ENUMERATED OPTIONAL }`.
pub fn decode_policy_response(value: &[u8]) -> Result<PolicyResponse, FrameError> {
    let mut outer = TlvReader::new(value);
    let seq = outer.expect(0x30, "PasswordPolicyResponseValue is not a SEQUENCE")?;
    let mut fields = seq.children();
    let mut resp = PolicyResponse::default();
    while !fields.is_empty() {
        let field = fields.next()?;
        match field.tag {
            // warning [0], constructed (a CHOICE of two implicit INTEGERs)
            0xa0 => {
                let mut choice = field.children();
                let w = choice.next()?;
                match w.tag {
                    0x80 => resp.time_before_expiration = Some(w.as_int()?),
                    0x81 => resp.grace_logins_remaining = Some(w.as_int()?),
                    _ => return Err(FrameError::Malformed("unknown ppolicy warning")),
                }
            }
            // error [1], implicit ENUMERATED
            0x81 => resp.error = Some(field.as_int()?),
            _ => return Err(FrameError::Malformed("unknown ppolicy response field")),
        }
    }
    Ok(resp)
}

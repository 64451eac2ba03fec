//! What a sign-in attempt came to, from the directory's own words: AD's
//! `data XXX` sub-code in the diagnostic of an invalidCredentials result,
//! and the password policy response control of OpenLDAP and 389-DS
//! ([`crate::ldap::ppolicy`]).

use serde::Serialize;

use crate::ldap::ppolicy::PolicyResponse;

/// The outcome of a sign-in, as the control channel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    InvalidCredentials,
    AmbiguousLogin,
    AccountLocked,
    AccountDisabled,
    AccountExpired,
    PasswordExpired,
    PasswordMustChange,
    LogonNotPermitted,
    RateLimited,
    DirectoryUnavailable,
}

impl Outcome {
    /// The label used in JSON, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::InvalidCredentials => "invalid_credentials",
            Outcome::AmbiguousLogin => "ambiguous_login",
            Outcome::AccountLocked => "account_locked",
            Outcome::AccountDisabled => "account_disabled",
            Outcome::AccountExpired => "account_expired",
            Outcome::PasswordExpired => "password_expired",
            Outcome::PasswordMustChange => "password_must_change",
            Outcome::LogonNotPermitted => "logon_not_permitted",
            Outcome::RateLimited => "rate_limited",
            Outcome::DirectoryUnavailable => "directory_unavailable",
        }
    }

    /// True only for a wrong guess: the outcomes that count towards lockout.
    /// The account states (disabled, expired, must change, ...) mean the
    /// password was right, and must not lock anyone out.
    pub fn is_wrong_password(self) -> bool {
        self == Outcome::InvalidCredentials
    }
}

/// AD's sub-code from a diagnostic such as
/// `80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 52e, v4563`.
pub fn ad_subcode(diagnostic: &str) -> Option<u16> {
    let rest = diagnostic.split("data ").nth(1)?;
    let hex: String = rest.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
    if hex.is_empty() || hex.len() > 4 {
        return None;
    }
    u16::from_str_radix(&hex, 16).ok()
}

/// The outcome AD means by a sub-code.
pub fn ad_outcome(subcode: u16) -> Outcome {
    match subcode {
        0x525 | 0x52e => Outcome::InvalidCredentials,
        0x530 | 0x531 => Outcome::LogonNotPermitted,
        0x532 => Outcome::PasswordExpired,
        0x533 => Outcome::AccountDisabled,
        0x701 => Outcome::AccountExpired,
        0x773 => Outcome::PasswordMustChange,
        0x775 => Outcome::AccountLocked,
        // 568 (too many SIDs) and codes not listed: the password was not
        // shown to be right, so say no without claiming why.
        _ => Outcome::InvalidCredentials,
    }
}

/// The outcome of a bind whose result code was `code`, read with what the
/// directory said beside it.
pub fn bind_outcome(code: i64, diagnostic: &str, policy: Option<&PolicyResponse>) -> Outcome {
    // ppolicy errors: 0 passwordExpired, 1 accountLocked, 2 changeAfterReset.
    match policy.and_then(|p| p.error) {
        Some(0) => return Outcome::PasswordExpired,
        Some(1) => return Outcome::AccountLocked,
        Some(2) => return Outcome::PasswordMustChange,
        _ => {}
    }
    match code {
        0 => Outcome::Success,
        49 => ad_subcode(diagnostic).map_or(Outcome::InvalidCredentials, ad_outcome),
        // unavailable, busy, unwilling, other: the directory could not say.
        51 | 52 | 80 => Outcome::DirectoryUnavailable,
        // constraintViolation/insufficientAccess on bind: 389-DS lockout
        // without the control, or a policy refusal.
        19 | 50 | 53 => Outcome::LogonNotPermitted,
        _ => Outcome::InvalidCredentials,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ldap::ppolicy::decode_policy_response;

    #[test]
    fn reads_ad_subcodes() {
        let d = "80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 52e, v4563";
        assert_eq!(ad_subcode(d), Some(0x52e));
        assert_eq!(ad_subcode("... data 775, v4563\0"), Some(0x775));
        assert_eq!(ad_subcode("Invalid credentials"), None);
        assert_eq!(ad_subcode("data zz"), None);
    }

    #[test]
    fn maps_every_documented_ad_subcode() {
        let cases = [
            (0x525, Outcome::InvalidCredentials),
            (0x52e, Outcome::InvalidCredentials),
            (0x530, Outcome::LogonNotPermitted),
            (0x531, Outcome::LogonNotPermitted),
            (0x532, Outcome::PasswordExpired),
            (0x533, Outcome::AccountDisabled),
            (0x568, Outcome::InvalidCredentials),
            (0x701, Outcome::AccountExpired),
            (0x773, Outcome::PasswordMustChange),
            (0x775, Outcome::AccountLocked),
        ];
        for (code, outcome) in cases {
            let diag = format!("80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data {code:x}, v4563");
            assert_eq!(bind_outcome(49, &diag, None), outcome, "{code:x}");
        }
        assert!(!Outcome::AccountDisabled.is_wrong_password());
        assert!(Outcome::InvalidCredentials.is_wrong_password());
    }

    #[test]
    fn decodes_ppolicy_responses() {
        // error: accountLocked
        let locked = [0x30, 0x03, 0x81, 0x01, 0x01];
        let p = decode_policy_response(&locked).unwrap();
        assert_eq!(p.error, Some(1));
        assert_eq!(bind_outcome(49, "", Some(&p)), Outcome::AccountLocked);
        // warning: graceAuthNsRemaining 2, and success
        let grace = [0x30, 0x05, 0xa0, 0x03, 0x81, 0x01, 0x02];
        let p = decode_policy_response(&grace).unwrap();
        assert_eq!(p.grace_logins_remaining, Some(2));
        assert_eq!(bind_outcome(0, "", Some(&p)), Outcome::Success);
        // warning: timeBeforeExpiration 3600
        let warn = [0x30, 0x06, 0xa0, 0x04, 0x80, 0x02, 0x0e, 0x10];
        assert_eq!(
            decode_policy_response(&warn)
                .unwrap()
                .time_before_expiration,
            Some(3600)
        );
        // error: changeAfterReset on a successful bind
        let reset = [0x30, 0x03, 0x81, 0x01, 0x02];
        let p = decode_policy_response(&reset).unwrap();
        assert_eq!(bind_outcome(0, "", Some(&p)), Outcome::PasswordMustChange);
        // empty value
        assert_eq!(
            decode_policy_response(&[0x30, 0x00]).unwrap(),
            PolicyResponse::default()
        );
        assert!(decode_policy_response(&[0x04, 0x00]).is_err());
        assert!(decode_policy_response(&[0x30, 0x03, 0x85, 0x01, 0x00]).is_err());
    }

    #[test]
    fn result_codes_without_detail() {
        assert_eq!(bind_outcome(0, "", None), Outcome::Success);
        assert_eq!(
            bind_outcome(49, "Invalid credentials", None),
            Outcome::InvalidCredentials
        );
        assert_eq!(bind_outcome(52, "", None), Outcome::DirectoryUnavailable);
        assert_eq!(bind_outcome(53, "", None), Outcome::LogonNotPermitted);
    }
}

//! LDAP protocol knowledge the proxy acts on: operation tags, OIDs, DNs,
//! the few request fields policy reads, the responses ldapgate writes itself,
//! server URLs ([`url`]), the password policy control ([`ppolicy`]), and the
//! subschema's attribute types ([`schema`]) with the equality
//! matching rules they compare values by ([`matching`]), which also decide
//! how DNs compare ([`dn_schema`]).

pub mod dn;
pub mod dn_schema;
pub mod matching;
pub mod ppolicy;
pub mod request;
pub mod response;
pub mod schema;
pub mod url;

/// Protocol operation tags (RFC 4511 §4.2–4.14, [APPLICATION n]).
pub mod tag {
    pub const BIND_REQUEST: u8 = 0x60;
    pub const BIND_RESPONSE: u8 = 0x61;
    pub const UNBIND_REQUEST: u8 = 0x42;
    pub const SEARCH_REQUEST: u8 = 0x63;
    pub const SEARCH_RESULT_ENTRY: u8 = 0x64;
    pub const SEARCH_RESULT_DONE: u8 = 0x65;
    pub const SEARCH_RESULT_REFERENCE: u8 = 0x73;
    pub const MODIFY_REQUEST: u8 = 0x66;
    pub const MODIFY_RESPONSE: u8 = 0x67;
    pub const ADD_REQUEST: u8 = 0x68;
    pub const ADD_RESPONSE: u8 = 0x69;
    pub const DEL_REQUEST: u8 = 0x4a;
    pub const DEL_RESPONSE: u8 = 0x6b;
    pub const MODIFY_DN_REQUEST: u8 = 0x6c;
    pub const MODIFY_DN_RESPONSE: u8 = 0x6d;
    pub const COMPARE_REQUEST: u8 = 0x6e;
    pub const COMPARE_RESPONSE: u8 = 0x6f;
    pub const ABANDON_REQUEST: u8 = 0x50;
    pub const EXTENDED_REQUEST: u8 = 0x77;
    pub const EXTENDED_RESPONSE: u8 = 0x78;
    pub const INTERMEDIATE_RESPONSE: u8 = 0x79;

    /// True for a response that ends its operation (everything but search
    /// entries, references and intermediate responses).
    pub fn is_final_response(tag: u8) -> bool {
        matches!(
            tag,
            BIND_RESPONSE
                | SEARCH_RESULT_DONE
                | MODIFY_RESPONSE
                | ADD_RESPONSE
                | DEL_RESPONSE
                | MODIFY_DN_RESPONSE
                | COMPARE_RESPONSE
                | EXTENDED_RESPONSE
        )
    }
}

/// Object identifiers of the extended operations the proxy treats specially.
pub mod oid {
    /// StartTLS (RFC 4511 §4.14).
    pub const START_TLS: &str = "1.3.6.1.4.1.1466.20037";
    /// Notice of Disconnection (RFC 4511 §4.4.1).
    pub const NOTICE_OF_DISCONNECTION: &str = "1.3.6.1.4.1.1466.20036";
    /// Password Modify (RFC 3062).
    pub const PASSWORD_MODIFY: &str = "1.3.6.1.4.1.4203.1.11.1";
    /// Who am I? (RFC 4532).
    pub const WHO_AM_I: &str = "1.3.6.1.4.1.4203.1.11.3";
    /// Cancel (RFC 3909).
    pub const CANCEL: &str = "1.3.6.1.1.8";
    /// The Sync Request control (RFC 4533 §2.2).
    pub const SYNC_REQUEST: &str = "1.3.6.1.4.1.4203.1.9.1.1";
    /// The persistent search control (draft-ietf-ldapext-psearch).
    pub const PERSISTENT_SEARCH: &str = "2.16.840.1.113730.3.4.3";
    /// Active Directory's change notification control (MS-ADTS
    /// LDAP_SERVER_NOTIFICATION_OID).
    pub const AD_NOTIFICATION: &str = "1.2.840.113556.1.4.528";
}

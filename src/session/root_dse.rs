//! The root DSE as clients of ldapgate may rely on it (RFC 4512 §5.1):
//! what it advertises, ldapgate serves. The directory's root DSE is
//! forwarded with the SASL mechanisms removed (ldapgate forwards simple
//! binds only: a SASL bind gets authMethodNotSupported), StartTLS listed
//! exactly when ldapgate performs it on this listener, and, on a read-only
//! appliance, only the extended operations it forwards (Who am I?, Cancel).

use ldap3_proto::proto::{LdapMsg, LdapOp};

use crate::ldap::{oid, response};

/// What this session's listener serves, for the root DSE.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Served {
    /// ldapgate performs StartTLS on this listener (a plain listener with
    /// `server.tls_cert`).
    pub starttls: bool,
    /// `directory.read_only`: extended operations that may write are
    /// refused.
    pub read_only: bool,
}

impl Served {
    /// Whether an advertised extended operation is one ldapgate serves.
    fn serves_extension(&self, advertised: &[u8]) -> bool {
        if advertised == oid::START_TLS.as_bytes() {
            return self.starttls;
        }
        !self.read_only
            || [oid::WHO_AM_I, oid::CANCEL]
                .iter()
                .any(|o| o.as_bytes() == advertised)
    }
}

/// The root DSE entry in `pdu` (a SearchResultEntry) made true of ldapgate;
/// None when it needs no change, is another entry, or cannot be decoded
/// (then it is forwarded as the directory sent it).
pub fn rewrite(pdu: &[u8], served: Served, max: usize) -> Option<Vec<u8>> {
    let mut msg = decode(pdu, max)?;
    let LdapOp::SearchResultEntry(entry) = &mut msg.op else {
        return None;
    };
    if !entry.dn.is_empty() {
        return None;
    }
    let before = entry.attributes.clone();
    // No SASL bind is served; nor is a read of the directory's
    // configuration or monitor trees, which lie outside any base_dn.
    entry.attributes.retain(|a| {
        !["supportedSASLMechanisms", "configContext", "monitorContext"]
            .iter()
            .any(|gone| a.atype.eq_ignore_ascii_case(gone))
    });
    // An attribute the directory sent without values (typesOnly) is left
    // as it is.
    let extensions = entry
        .attributes
        .iter_mut()
        .find(|a| a.atype.eq_ignore_ascii_case("supportedExtension") && !a.vals.is_empty());
    if let Some(attr) = extensions {
        attr.vals.retain(|v| served.serves_extension(v));
        if served.starttls && !attr.vals.iter().any(|v| v == oid::START_TLS.as_bytes()) {
            attr.vals.push(oid::START_TLS.as_bytes().to_vec());
        }
        if attr.vals.is_empty() {
            entry
                .attributes
                .retain(|a| !a.atype.eq_ignore_ascii_case("supportedExtension"));
        }
    }
    if entry.attributes == before {
        return None;
    }
    Some(response::encode(msg))
}

fn decode(pdu: &[u8], max: usize) -> Option<LdapMsg> {
    use tokio_util::codec::Decoder;
    let mut buf = bytes::BytesMut::from(pdu);
    ldap3_proto::LdapCodec::new(Some(max), None)
        .decode(&mut buf)
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ldap3_proto::proto::{LdapPartialAttribute, LdapSearchResultEntry};

    fn root_dse(attrs: &[(&str, &[&str])]) -> Vec<u8> {
        response::encode(LdapMsg {
            msgid: 3,
            op: LdapOp::SearchResultEntry(LdapSearchResultEntry {
                dn: String::new(),
                attributes: attrs
                    .iter()
                    .map(|(name, vals)| LdapPartialAttribute {
                        atype: (*name).into(),
                        vals: vals.iter().map(|v| v.as_bytes().to_vec()).collect(),
                    })
                    .collect(),
            }),
            ctrl: vec![],
        })
    }

    fn attrs(pdu: &[u8]) -> Vec<(String, Vec<String>)> {
        let LdapOp::SearchResultEntry(e) = decode(pdu, 1 << 20).unwrap().op else {
            panic!("not an entry");
        };
        e.attributes
            .into_iter()
            .map(|a| {
                let vals = a
                    .vals
                    .iter()
                    .map(|v| String::from_utf8_lossy(v).into_owned());
                (a.atype, vals.collect())
            })
            .collect()
    }

    const PASSWD: &str = "1.3.6.1.4.1.4203.1.11.1";

    #[test]
    fn sasl_mechanisms_go_and_extensions_follow_what_is_served() {
        let pdu = root_dse(&[
            ("namingContexts", &["dc=example,dc=com"]),
            ("supportedSASLMechanisms", &["PLAIN", "LOGIN"]),
            ("configContext", &["cn=config"]),
            ("monitorContext", &["cn=Monitor"]),
            (
                "supportedExtension",
                &[oid::WHO_AM_I, PASSWD, oid::START_TLS, "1.2.3.4"],
            ),
        ]);
        let read_write = Served {
            starttls: false,
            read_only: false,
        };
        assert_eq!(
            attrs(&rewrite(&pdu, read_write, 1 << 20).unwrap()),
            vec![
                ("namingContexts".into(), vec!["dc=example,dc=com".into()]),
                (
                    "supportedExtension".into(),
                    vec![oid::WHO_AM_I.into(), PASSWD.into(), "1.2.3.4".into()]
                ),
            ]
        );
        let read_only = Served {
            starttls: true,
            read_only: true,
        };
        assert_eq!(
            attrs(&rewrite(&pdu, read_only, 1 << 20).unwrap())[1],
            (
                "supportedExtension".into(),
                vec![oid::WHO_AM_I.into(), oid::START_TLS.into()]
            )
        );
    }

    #[test]
    fn starttls_is_listed_where_ldapgate_performs_it() {
        let pdu = root_dse(&[("supportedExtension", &[oid::WHO_AM_I])]);
        let served = Served {
            starttls: true,
            read_only: false,
        };
        assert_eq!(
            attrs(&rewrite(&pdu, served, 1 << 20).unwrap())[0].1,
            vec![oid::WHO_AM_I.to_owned(), oid::START_TLS.to_owned()]
        );
        // Nothing to change: forwarded as the directory sent it.
        assert_eq!(rewrite(&pdu, Served::default(), 1 << 20), None);
    }

    #[test]
    fn other_entries_and_junk_pass_untouched() {
        let mut other = root_dse(&[("supportedSASLMechanisms", &["PLAIN"])]);
        assert!(rewrite(&other, Served::default(), 1 << 20).is_some());
        // The same entry under a DN is not the root DSE.
        other = response::encode(LdapMsg {
            msgid: 3,
            op: LdapOp::SearchResultEntry(LdapSearchResultEntry {
                dn: "cn=x".into(),
                attributes: vec![LdapPartialAttribute {
                    atype: "supportedSASLMechanisms".into(),
                    vals: vec![b"PLAIN".to_vec()],
                }],
            }),
            ctrl: vec![],
        });
        assert_eq!(rewrite(&other, Served::default(), 1 << 20), None);
        assert_eq!(
            rewrite(&[0x30, 0x03, 0x02], Served::default(), 1 << 20),
            None
        );
    }
}

//! A zero-copy view of a client request: the fields policy decides on.
//!
//! Only the leading fields of each operation are read (target DN, scope,
//! attribute names of a modify or add); filters, values and controls are
//! never decoded, so a binary filter value or an unknown control cannot make
//! the proxy fail or alter a byte of what it forwards.

use crate::ber::{self, FrameError, Tlv, TlvReader};
use crate::ldap::{oid, tag};

/// Search scope (RFC 4511 §4.5.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Base,
    OneLevel,
    Subtree,
    /// A value this proxy does not know (e.g. subordinateSubtree, 3).
    Other(i64),
}

/// How a bind authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindAuth<'a> {
    /// `simple [0] OCTET STRING`: the password.
    Simple(&'a [u8]),
    /// `sasl [3]`: the mechanism name.
    Sasl(&'a [u8]),
    /// Any other AuthenticationChoice tag.
    Other(u8),
}

/// The fields of a BindRequest.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct BindRequest<'a> {
    pub version: i64,
    pub name: &'a [u8],
    pub auth: BindAuth<'a>,
}

// The password must never reach a log through Debug.
impl std::fmt::Debug for BindRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let auth = match self.auth {
            BindAuth::Simple(b"") => "simple(empty)".to_owned(),
            BindAuth::Simple(_) => "simple(<redacted>)".to_owned(),
            BindAuth::Sasl(m) => format!("sasl({})", String::from_utf8_lossy(m)),
            BindAuth::Other(t) => format!("other({t:#x})"),
        };
        f.debug_struct("BindRequest")
            .field("version", &self.version)
            .field("name", &String::from_utf8_lossy(self.name))
            .field("auth", &auth)
            .finish()
    }
}

/// A client request, reduced to what policy needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    Bind(BindRequest<'a>),
    Unbind,
    Search {
        base: &'a [u8],
        scope: Scope,
        /// derefAliases is not neverDerefAliases (RFC 4511 §4.5.1.3): the
        /// directory may answer entries an alias points to, anywhere.
        derefs_aliases: bool,
    },
    Modify {
        object: &'a [u8],
        writes_password: bool,
    },
    Add {
        entry: &'a [u8],
        writes_password: bool,
    },
    Delete {
        entry: &'a [u8],
    },
    ModifyDn {
        entry: &'a [u8],
        new_superior: Option<&'a [u8]>,
    },
    Compare {
        entry: &'a [u8],
    },
    Abandon {
        msgid: i64,
    },
    Extended {
        oid: &'a [u8],
        value: Option<&'a [u8]>,
    },
}

impl Request<'_> {
    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Bind(_) => "bind",
            Request::Unbind => "unbind",
            Request::Search { .. } => "search",
            Request::Modify { .. } => "modify",
            Request::Add { .. } => "add",
            Request::Delete { .. } => "delete",
            Request::ModifyDn { .. } => "modify_dn",
            Request::Compare { .. } => "compare",
            Request::Abandon { .. } => "abandon",
            Request::Extended { .. } => "extended",
        }
    }
}

/// Why a client PDU could not be read as a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Ber(#[from] FrameError),
    #[error("protocol operation tag {0:#04x} is not a request")]
    NotARequest(u8),
}

/// Reads the request carried by one complete PDU.
pub fn parse(pdu: &[u8]) -> Result<Request<'_>, RequestError> {
    let (_, op, _) = ber::message_parts(pdu)?;
    let req = match op.tag {
        tag::BIND_REQUEST => Request::Bind(bind(op)?),
        tag::UNBIND_REQUEST => Request::Unbind,
        tag::SEARCH_REQUEST => {
            let mut r = op.children();
            let base = r.expect(0x04, "search base is not an OCTET STRING")?.value;
            let scope = match r.expect(0x0a, "search scope is not ENUMERATED")?.as_int()? {
                0 => Scope::Base,
                1 => Scope::OneLevel,
                2 => Scope::Subtree,
                other => Scope::Other(other),
            };
            let deref = r.expect(0x0a, "derefAliases is not ENUMERATED")?.as_int()?;
            Request::Search {
                base,
                scope,
                derefs_aliases: deref != 0,
            }
        }
        tag::MODIFY_REQUEST => {
            let mut r = op.children();
            let object = r
                .expect(0x04, "modify object is not an OCTET STRING")?
                .value;
            let changes = r.expect(0x30, "modify changes are not a SEQUENCE")?;
            let mut writes_password = false;
            let mut changes = changes.children();
            while !changes.is_empty() {
                let mut change = changes.expect(0x30, "change is not a SEQUENCE")?.children();
                change.expect(0x0a, "change operation is not ENUMERATED")?;
                let attr = first_octets(change.expect(0x30, "modification is not a SEQUENCE")?)?;
                writes_password |= is_password_attribute(attr);
            }
            Request::Modify {
                object,
                writes_password,
            }
        }
        tag::ADD_REQUEST => {
            let mut r = op.children();
            let entry = r.expect(0x04, "add entry is not an OCTET STRING")?.value;
            let attrs = r.expect(0x30, "add attributes are not a SEQUENCE")?;
            let mut writes_password = false;
            let mut attrs = attrs.children();
            while !attrs.is_empty() {
                let attr = first_octets(attrs.expect(0x30, "attribute is not a SEQUENCE")?)?;
                writes_password |= is_password_attribute(attr);
            }
            Request::Add {
                entry,
                writes_password,
            }
        }
        // DelRequest ::= [APPLICATION 10] LDAPDN, a primitive OCTET STRING.
        tag::DEL_REQUEST => Request::Delete { entry: op.value },
        tag::MODIFY_DN_REQUEST => {
            let mut r = op.children();
            let entry = r.expect(0x04, "modDN entry is not an OCTET STRING")?.value;
            r.expect(0x04, "modDN newrdn is not an OCTET STRING")?;
            r.expect(0x01, "modDN deleteoldrdn is not a BOOLEAN")?;
            let new_superior = if r.is_empty() {
                None
            } else {
                Some(
                    r.expect(0x80, "modDN newSuperior must be tagged [0]")?
                        .value,
                )
            };
            Request::ModifyDn {
                entry,
                new_superior,
            }
        }
        tag::COMPARE_REQUEST => {
            let mut r = op.children();
            let entry = r
                .expect(0x04, "compare entry is not an OCTET STRING")?
                .value;
            Request::Compare { entry }
        }
        tag::ABANDON_REQUEST => Request::Abandon {
            msgid: Tlv {
                tag: 0x02,
                value: op.value,
            }
            .as_int()?,
        },
        tag::EXTENDED_REQUEST => {
            let mut r = op.children();
            let oid = r
                .expect(0x80, "extended requestName must be tagged [0]")?
                .value;
            let value = if r.is_empty() {
                None
            } else {
                Some(
                    r.expect(0x81, "extended requestValue must be tagged [1]")?
                        .value,
                )
            };
            Request::Extended { oid, value }
        }
        other => return Err(RequestError::NotARequest(other)),
    };
    Ok(req)
}

fn bind(op: Tlv<'_>) -> Result<BindRequest<'_>, FrameError> {
    let mut r = op.children();
    let version = r.expect(0x02, "bind version is not an INTEGER")?.as_int()?;
    let name = r.expect(0x04, "bind name is not an OCTET STRING")?.value;
    let auth = r.next()?;
    let auth = match auth.tag {
        0x80 => BindAuth::Simple(auth.value),
        0xa3 => {
            let mut sasl = auth.children();
            BindAuth::Sasl(
                sasl.expect(0x04, "SASL mechanism is not an OCTET STRING")?
                    .value,
            )
        }
        other => BindAuth::Other(other),
    };
    Ok(BindRequest {
        version,
        name,
        auth,
    })
}

/// The type of the first control of `pdu` marked critical (RFC 4511
/// §4.1.11: `Control ::= SEQUENCE { controlType LDAPOID, criticality
/// BOOLEAN DEFAULT FALSE, controlValue OCTET STRING OPTIONAL }`), for
/// operations ldapgate performs itself and so must refuse with
/// unavailableCriticalExtension; those of a type in `supported` are
/// served and skipped. Malformed controls count as critical.
pub fn first_critical_control<'a>(pdu: &'a [u8], supported: &[&str]) -> Option<&'a [u8]> {
    let (_, _, controls) = ber::message_parts(pdu).ok()?;
    let mut controls = controls?.children();
    while !controls.is_empty() {
        let Ok(control) = controls.next() else {
            return Some(b"(malformed control)");
        };
        let mut fields = control.children();
        let Ok(oid) = fields.expect(0x04, "control type is not an OCTET STRING") else {
            return Some(b"(malformed control)");
        };
        let critical = match fields.next() {
            Ok(t) if t.tag == 0x01 => t.value.iter().any(|b| *b != 0),
            _ => false,
        };
        if critical && !supported.iter().any(|s| s.as_bytes() == oid.value) {
            return Some(oid.value);
        }
    }
    None
}

/// True when the request `pdu` carries a control of type `oid` (RFC 4511
/// §4.1.11), critical or not. Malformed controls count as absent.
pub fn has_control(pdu: &[u8], oid: &str) -> bool {
    let Some((_, _, Some(controls))) = ber::message_parts(pdu).ok() else {
        return false;
    };
    let mut controls = controls.children();
    while let Ok(control) = controls.next() {
        let mut fields = control.children();
        if fields
            .expect(0x04, "control type is not an OCTET STRING")
            .is_ok_and(|t| t.value == oid.as_bytes())
        {
            return true;
        }
    }
    false
}

/// True when the request `pdu` asks for a search that stays open after
/// its initial results, quiet until the directory has a change to send: a
/// Sync Request in refreshAndPersist mode (RFC 4533 §2.2, mode 3), the
/// persistent search control, AD's change notification. Malformed controls
/// do not count (the directory answers them).
pub fn is_persistent_search(pdu: &[u8]) -> bool {
    /// `mode ENUMERATED { refreshOnly (1), refreshAndPersist (3) }`.
    const REFRESH_AND_PERSIST: u8 = 3;
    let Some((_, _, Some(controls))) = ber::message_parts(pdu).ok() else {
        return false;
    };
    let mut controls = controls.children();
    while let Ok(control) = controls.next() {
        let mut fields = control.children();
        let Ok(control_type) = fields.expect(0x04, "control type is not an OCTET STRING") else {
            return false;
        };
        let control_oid = control_type.value;
        if control_oid == oid::PERSISTENT_SEARCH.as_bytes()
            || control_oid == oid::AD_NOTIFICATION.as_bytes()
        {
            return true;
        }
        if control_oid != oid::SYNC_REQUEST.as_bytes() {
            continue;
        }
        // Skip the criticality; the value is a syncRequestValue SEQUENCE
        // whose first field is the mode.
        let mut field = fields.next();
        if matches!(&field, Ok(t) if t.tag == 0x01) {
            field = fields.next();
        }
        let Some(value) = field.ok().filter(|t| t.tag == 0x04) else {
            continue;
        };
        let mode = TlvReader::new(value.value)
            .expect(0x30, "syncRequestValue is not a SEQUENCE")
            .and_then(|seq| seq.children().expect(0x0a, "mode is not an ENUMERATED"));
        if mode.is_ok_and(|m| m.value == [REFRESH_AND_PERSIST]) {
            return true;
        }
    }
    false
}

/// The attribute description at the head of a PartialAttribute/Attribute.
fn first_octets(seq: Tlv<'_>) -> Result<&[u8], FrameError> {
    let mut r: TlvReader<'_> = seq.children();
    Ok(
        r.expect(0x04, "attribute description is not an OCTET STRING")?
            .value,
    )
}

/// True for attribute descriptions that carry a password: userPassword,
/// authPassword (RFC 3112) and AD's unicodePwd, by name or OID, with any options.
pub fn is_password_attribute(desc: &[u8]) -> bool {
    let base = desc.split(|b| *b == b';').next().unwrap_or(desc);
    const NAMES: [&[u8]; 6] = [
        b"userpassword",
        b"authpassword",
        b"unicodepwd",
        b"2.5.4.35",
        b"1.3.6.1.4.1.4203.1.3.4",
        b"1.2.840.113556.1.4.90",
    ];
    NAMES.iter().any(|n| base.eq_ignore_ascii_case(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ldap3_proto::proto::*;

    /// Encodes with ldap3_proto, an independent encoder, so these tests do
    /// not check the parser against itself.
    fn encode(op: LdapOp) -> Vec<u8> {
        crate::ldap::response::encode(LdapMsg::new(7, op))
    }

    /// A search of `base` with `scope` for every entry.
    fn search_request(base: &str, scope: LdapSearchScope) -> LdapSearchRequest {
        LdapSearchRequest {
            base: base.into(),
            scope,
            aliases: LdapDerefAliases::Never,
            sizelimit: 0,
            timelimit: 0,
            typesonly: false,
            filter: LdapFilter::Present("objectClass".into()),
            attrs: vec![],
        }
    }

    fn bind_with(ctrls: Vec<ldap3_proto::control::LdapControl>) -> Vec<u8> {
        crate::ldap::response::encode(LdapMsg::new_with_ctrls(
            7,
            LdapOp::BindRequest(LdapBindRequest {
                version: 3,
                dn: "uid=a,dc=x".into(),
                cred: LdapBindCred::Simple("pw".into()),
            }),
            ctrls,
        ))
    }

    #[test]
    fn persistent_searches_are_told_by_their_controls() {
        use ldap3_proto::control::LdapControl;
        let search = |ctrls: Vec<LdapControl>| {
            crate::ldap::response::encode(LdapMsg::new_with_ctrls(
                7,
                LdapOp::SearchRequest(search_request("dc=x", LdapSearchScope::Subtree)),
                ctrls,
            ))
        };
        let sync = |mode| LdapControl::SyncRequest {
            criticality: true,
            mode,
            cookie: Some(b"rid=000".to_vec()),
            reload_hint: false,
        };
        let unknown = |oid: &str| LdapControl::Unknown {
            oid: oid.into(),
            criticality: false,
            value: Some(vec![0x30, 0x00]),
        };
        assert!(is_persistent_search(&search(vec![sync(
            SyncRequestMode::RefreshAndPersist
        )])));
        assert!(!is_persistent_search(&search(vec![sync(
            SyncRequestMode::RefreshOnly
        )])));
        assert!(is_persistent_search(&search(vec![
            unknown("1.2.840.113556.1.4.319"),
            unknown(oid::PERSISTENT_SEARCH),
        ])));
        assert!(is_persistent_search(&search(vec![unknown(
            oid::AD_NOTIFICATION
        )])));
        assert!(!is_persistent_search(&search(vec![])));
        // A Sync Request without a value is no persistent search.
        assert!(!is_persistent_search(&search(vec![LdapControl::Unknown {
            oid: oid::SYNC_REQUEST.into(),
            criticality: true,
            value: None,
        }])));
        assert!(!is_persistent_search(&[0x30, 0x03, 0x02, 0x01]));
    }

    #[test]
    fn finds_the_first_critical_control() {
        let control = |oid: &str, criticality| ldap3_proto::control::LdapControl::Unknown {
            oid: oid.into(),
            criticality,
            value: None,
        };
        assert_eq!(first_critical_control(&bind_with(vec![]), &[]), None);
        assert_eq!(
            first_critical_control(&bind_with(vec![control("1.2.3", false)]), &[]),
            None
        );
        assert_eq!(
            first_critical_control(
                &bind_with(vec![control("1.2.3", false), control("1.2.3.4", true)]),
                &[]
            ),
            Some(&b"1.2.3.4"[..])
        );
        let both = bind_with(vec![control("1.2.3", true), control("1.2.3.4", true)]);
        assert_eq!(
            first_critical_control(&both, &["1.2.3"]),
            Some(&b"1.2.3.4"[..]),
            "a supported critical control is skipped, not the rest"
        );
        assert_eq!(first_critical_control(&both, &["1.2.3.4", "1.2.3"]), None);
    }

    #[test]
    fn reads_a_search_base_and_scope_despite_a_binary_filter() {
        let pdu = encode(LdapOp::SearchRequest(search_request(
            "ou=people,dc=example,dc=com",
            LdapSearchScope::OneLevel,
        )));
        assert_eq!(
            parse(&pdu).unwrap(),
            Request::Search {
                base: b"ou=people,dc=example,dc=com",
                scope: Scope::OneLevel,
                derefs_aliases: false,
            }
        );
        // Same search with a filter holding non-UTF-8 bytes, patched by hand:
        // (objectGUID=\ff\fe) is [3] { "objectGUID", 0xff 0xfe }.
        let mut raw = vec![0x30, 0x00, 0x02, 0x01, 0x07, 0x63, 0x00];
        let mut body = vec![0x04, 0x00, 0x0a, 0x01, 0x02, 0x0a, 0x01, 0x00];
        body.extend([0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x01, 0x01, 0x00]);
        body.extend([0xa3, 0x10, 0x04, 0x0a]);
        body.extend(b"objectGUID");
        body.extend([0x04, 0x02, 0xff, 0xfe, 0x30, 0x00]);
        raw[6] = body.len() as u8;
        raw.extend(body);
        raw[1] = (raw.len() - 2) as u8;
        assert_eq!(
            parse(&raw).unwrap(),
            Request::Search {
                base: b"",
                scope: Scope::Subtree,
                derefs_aliases: false,
            }
        );
    }

    #[test]
    fn finds_password_writes_in_modify_and_add() {
        let modify = |attr: &str| {
            encode(LdapOp::ModifyRequest(LdapModifyRequest {
                dn: "uid=a,dc=x".into(),
                changes: vec![
                    LdapModify {
                        operation: LdapModifyType::Replace,
                        modification: LdapPartialAttribute {
                            atype: "mail".into(),
                            vals: vec![b"a@x".to_vec()],
                        },
                    },
                    LdapModify {
                        operation: LdapModifyType::Replace,
                        modification: LdapPartialAttribute {
                            atype: attr.into(),
                            vals: vec![b"secret".to_vec()],
                        },
                    },
                ],
            }))
        };
        for attr in [
            "userPassword",
            "USERPASSWORD;binary",
            "unicodePwd",
            "2.5.4.35",
        ] {
            assert_eq!(
                parse(&modify(attr)).unwrap(),
                Request::Modify {
                    object: b"uid=a,dc=x",
                    writes_password: true
                },
                "{attr}"
            );
        }
        assert_eq!(
            parse(&modify("description")).unwrap(),
            Request::Modify {
                object: b"uid=a,dc=x",
                writes_password: false
            }
        );
        let add = encode(LdapOp::AddRequest(LdapAddRequest {
            dn: "uid=b,dc=x".into(),
            attributes: vec![LdapAttribute {
                atype: "userPassword".into(),
                vals: vec![b"x".to_vec()],
            }],
        }));
        assert_eq!(
            parse(&add).unwrap(),
            Request::Add {
                entry: b"uid=b,dc=x",
                writes_password: true
            }
        );
    }

    #[test]
    fn reads_binds() {
        let pdu = encode(LdapOp::BindRequest(LdapBindRequest {
            version: 3,
            dn: "cn=admin,dc=x".into(),
            cred: LdapBindCred::Simple(String::new()),
        }));
        assert_eq!(
            parse(&pdu).unwrap(),
            Request::Bind(BindRequest {
                version: 3,
                name: b"cn=admin,dc=x",
                auth: BindAuth::Simple(b"")
            })
        );
        let pdu = encode(LdapOp::BindRequest(LdapBindRequest {
            version: 3,
            dn: String::new(),
            cred: LdapBindCred::SASL(SaslCredentials {
                mechanism: "EXTERNAL".into(),
                credentials: vec![],
            }),
        }));
        assert!(matches!(
            parse(&pdu).unwrap(),
            Request::Bind(BindRequest {
                auth: BindAuth::Sasl(b"EXTERNAL"),
                ..
            })
        ));
    }

    #[test]
    fn bind_debug_hides_the_password() {
        let b = BindRequest {
            version: 3,
            name: b"cn=a",
            auth: BindAuth::Simple(b"hunter2"),
        };
        assert!(!format!("{b:?}").contains("hunter2"));
    }

    #[test]
    fn reads_other_operations() {
        let del = encode(LdapOp::DelRequest("uid=a,dc=x".into()));
        assert_eq!(
            parse(&del).unwrap(),
            Request::Delete {
                entry: b"uid=a,dc=x"
            }
        );
        let moddn = encode(LdapOp::ModifyDNRequest(LdapModifyDNRequest {
            dn: "uid=a,dc=x".into(),
            newrdn: "uid=b".into(),
            deleteoldrdn: true,
            new_superior: Some("ou=y,dc=x".into()),
        }));
        assert_eq!(
            parse(&moddn).unwrap(),
            Request::ModifyDn {
                entry: b"uid=a,dc=x",
                new_superior: Some(b"ou=y,dc=x")
            }
        );
        let abandon = encode(LdapOp::AbandonRequest(300));
        assert_eq!(parse(&abandon).unwrap(), Request::Abandon { msgid: 300 });
        let ext = encode(LdapOp::ExtendedRequest(LdapExtendedRequest {
            name: crate::ldap::oid::WHO_AM_I.into(),
            value: None,
        }));
        assert_eq!(
            parse(&ext).unwrap(),
            Request::Extended {
                oid: crate::ldap::oid::WHO_AM_I.as_bytes(),
                value: None
            }
        );
        assert_eq!(
            parse(&encode(LdapOp::UnbindRequest)).unwrap(),
            Request::Unbind
        );
        let resp = encode(LdapOp::DelResponse(LdapResult {
            code: LdapResultCode::Success,
            matcheddn: String::new(),
            message: String::new(),
            referral: vec![],
        }));
        assert_eq!(parse(&resp), Err(RequestError::NotARequest(0x6b)));
    }
}

//! What a session does with each client request: forward it, answer it
//! locally, or handle it itself (StartTLS, unbind). Pure logic, no I/O.

use ldap3_proto::proto::LdapResultCode;

use crate::ber::TlvReader;
use crate::config::Config;
use crate::ldap::dn::Dn;
use crate::ldap::oid;
use crate::ldap::request::{BindAuth, Request, Scope};

/// Bind names longer than this are refused: far beyond any real DN (AD
/// limits an RDN value to 64 characters), and each one a client may make
/// ldapgate look up and remember.
pub const MAX_BIND_NAME_BYTES: usize = 4096;

/// The decision for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Send it to the directory unchanged.
    Forward,
    /// Answer it here; the directory never sees it.
    Refuse {
        code: LdapResultCode,
        message: String,
    },
    /// A bind answered here. A failed bind leaves a connection anonymous
    /// (RFC 4511 §4.2.1), so the upstream connection must be made anonymous
    /// too before the client's next request.
    RefuseBind {
        code: LdapResultCode,
        message: String,
    },
    /// A simple bind whose name is a sign-in ID, not a DN: resolve it and
    /// bind as the entry it names (`[signin] rewrite_ldap_binds`).
    ResolveBind,
    /// StartTLS, which the session performs itself.
    StartTls,
    /// The client is leaving.
    Unbind,
}

fn refuse(code: LdapResultCode, message: impl Into<String>) -> Verdict {
    Verdict::Refuse {
        code,
        message: message.into(),
    }
}

fn refuse_bind(code: LdapResultCode, message: impl Into<String>) -> Verdict {
    Verdict::RefuseBind {
        code,
        message: message.into(),
    }
}

/// The rules every session of one directory applies.
#[derive(Debug, Clone)]
pub struct Policy {
    pub base_dn: Dn,
    /// The service account may bind even when it lives outside `base_dn`.
    pub service_dn: Option<Dn>,
    pub read_only: bool,
    pub require_tls: bool,
    /// Whether every configured upstream leg is encrypted; password writes
    /// need that, whichever server the session lands on.
    pub upstream_encrypted: bool,
    /// Resolve bind names that are not DNs as sign-in IDs.
    pub rewrite_signin: bool,
}

impl Policy {
    pub fn from_config(config: &Config) -> Policy {
        let d = &config.directory;
        Policy {
            base_dn: d.base_dn.clone(),
            service_dn: d.service_account.as_ref().map(|a| a.dn.clone()),
            read_only: d.read_only,
            require_tls: config.server.require_tls,
            upstream_encrypted: d.every_leg_encrypted(),
            rewrite_signin: config.signin.rewrite_ldap_binds,
        }
    }

    /// Decides what to do with `req`; `client_tls` says whether the client
    /// leg is encrypted.
    pub fn decide(&self, req: &Request<'_>, client_tls: bool) -> Verdict {
        match req {
            Request::Extended { oid: o, .. } if *o == oid::START_TLS.as_bytes() => {
                return Verdict::StartTls
            }
            Request::Unbind => return Verdict::Unbind,
            Request::Abandon { .. } => return Verdict::Forward,
            _ => {}
        }
        if self.require_tls && !client_tls {
            let message = "TLS is required: use StartTLS or LDAPS";
            return match req {
                Request::Bind(_) => refuse_bind(LdapResultCode::ConfidentialityRequired, message),
                _ => refuse(LdapResultCode::ConfidentialityRequired, message),
            };
        }
        let both_legs_encrypted = client_tls && self.upstream_encrypted;
        match *req {
            Request::Bind(bind) if bind.version != 3 => {
                // RFC 4511 §4.2: version 3 only. Answered here, so that a
                // bind the directory would refuse before testing its
                // password cannot use up anyone's limits.
                refuse_bind(
                    LdapResultCode::ProtocolError,
                    format!(
                        "LDAP version {} is not supported: use version 3",
                        bind.version
                    ),
                )
            }
            Request::Bind(bind) => self.bind(bind.name, bind.auth),
            Request::Search { base, scope } => {
                // Clients read the root DSE and the subschema entry on connect.
                let dn = match Dn::from_bytes(base) {
                    Ok(dn) => dn,
                    Err(e) => return refuse(LdapResultCode::InvalidDNSyntax, e.to_string()),
                };
                if scope == Scope::Base && (dn.is_root() || is_subschema(&dn)) {
                    return Verdict::Forward;
                }
                self.in_scope(&dn)
            }
            Request::Compare { entry } => self.target(entry),
            Request::Modify {
                object,
                writes_password,
            }
            | Request::Add {
                entry: object,
                writes_password,
            } => {
                if let Some(v) = self.refuse_write() {
                    return v;
                }
                if writes_password && !both_legs_encrypted {
                    return refuse_password_write();
                }
                self.target(object)
            }
            Request::Delete { entry } => self.refuse_write().unwrap_or_else(|| self.target(entry)),
            Request::ModifyDn {
                entry,
                new_superior,
            } => {
                if let Some(v) = self.refuse_write() {
                    return v;
                }
                let entry_dn = match Dn::from_bytes(entry) {
                    Ok(dn) => dn,
                    Err(e) => return refuse(LdapResultCode::InvalidDNSyntax, e.to_string()),
                };
                let new_parent = match new_superior.map(Dn::from_bytes) {
                    Some(Ok(dn)) => Some(dn),
                    Some(Err(e)) => return refuse(LdapResultCode::InvalidDNSyntax, e.to_string()),
                    None => entry_dn.parent(),
                };
                // The entry must stay inside base_dn after the move, so the
                // new parent must be inside it (the base entry cannot move).
                match new_parent {
                    Some(p) if p.is_within(&self.base_dn) => self.in_scope(&entry_dn),
                    _ => refuse(
                        LdapResultCode::InsufficentAccessRights,
                        format!("the new location is outside base_dn {}", self.base_dn),
                    ),
                }
            }
            Request::Extended { oid: o, value } => {
                if o == oid::PASSWORD_MODIFY.as_bytes() {
                    if let Some(v) = self.refuse_write() {
                        return v;
                    }
                    if !both_legs_encrypted {
                        return refuse_password_write();
                    }
                    return self.password_modify_target(value);
                }
                if o == oid::WHO_AM_I.as_bytes() || o == oid::CANCEL.as_bytes() {
                    return Verdict::Forward;
                }
                // An extended operation ldapgate does not know may write.
                self.refuse_write().unwrap_or(Verdict::Forward)
            }
            Request::Unbind | Request::Abandon { .. } => Verdict::Forward,
        }
    }

    fn bind(&self, name: &[u8], auth: BindAuth<'_>) -> Verdict {
        let password = match auth {
            BindAuth::Simple(p) => p,
            BindAuth::Sasl(_) | BindAuth::Other(_) => {
                return refuse_bind(
                    LdapResultCode::AuthMethodNotSupported,
                    "ldapgate forwards simple binds only",
                )
            }
        };
        if name.is_empty() {
            // Anonymous bind (or a password with no name, which the directory
            // refuses itself).
            return Verdict::Forward;
        }
        if name.len() > MAX_BIND_NAME_BYTES {
            // No directory entry has such a name; refused before it costs
            // a lookup or a cache slot.
            return refuse_bind(
                LdapResultCode::InvalidDNSyntax,
                format!("bind name longer than {MAX_BIND_NAME_BYTES} bytes"),
            );
        }
        if password.is_empty() {
            // RFC 4513 §5.1.2: a name with an empty password is an
            // unauthenticated bind that many servers answer with success.
            return refuse_bind(
                LdapResultCode::InvalidCredentials,
                "empty password refused (unauthenticated bind, RFC 4513 section 5.1.2)",
            );
        }
        let dn = match Dn::from_bytes(name) {
            Ok(dn) => dn,
            Err(_) if self.rewrite_signin => return Verdict::ResolveBind,
            Err(e) => {
                return refuse_bind(
                    LdapResultCode::InvalidDNSyntax,
                    format!("bind name is not a DN: {e}"),
                )
            }
        };
        if dn.is_within(&self.base_dn) || self.service_dn.as_ref() == Some(&dn) {
            Verdict::Forward
        } else {
            refuse_bind(
                LdapResultCode::InsufficentAccessRights,
                format!("bind name is outside base_dn {}", self.base_dn),
            )
        }
    }

    fn target(&self, dn: &[u8]) -> Verdict {
        match Dn::from_bytes(dn) {
            Ok(dn) => self.in_scope(&dn),
            Err(e) => refuse(LdapResultCode::InvalidDNSyntax, e.to_string()),
        }
    }

    fn in_scope(&self, dn: &Dn) -> Verdict {
        if dn.is_within(&self.base_dn) {
            Verdict::Forward
        } else {
            refuse(
                LdapResultCode::InsufficentAccessRights,
                format!("`{dn}` is outside base_dn {}", self.base_dn),
            )
        }
    }

    fn refuse_write(&self) -> Option<Verdict> {
        self.read_only.then(|| {
            refuse(
                LdapResultCode::UnwillingToPerform,
                "ldapgate is configured read_only",
            )
        })
    }

    /// Password Modify names its target in `userIdentity` (RFC 3062), or
    /// changes the bound identity's password when it is absent.
    fn password_modify_target(&self, value: Option<&[u8]>) -> Verdict {
        let Some(value) = value else {
            return Verdict::Forward;
        };
        let mut outer = TlvReader::new(value);
        let Ok(seq) = outer.expect(0x30, "PasswdModifyRequestValue") else {
            return refuse(
                LdapResultCode::ProtocolError,
                "malformed Password Modify request",
            );
        };
        let mut fields = seq.children();
        while !fields.is_empty() {
            let Ok(field) = fields.next() else {
                return refuse(
                    LdapResultCode::ProtocolError,
                    "malformed Password Modify request",
                );
            };
            if field.tag == 0x80 {
                let identity = field.value.strip_prefix(b"dn:").unwrap_or(field.value);
                return match Dn::from_bytes(identity) {
                    Ok(dn) if !dn.is_root() => self.in_scope(&dn),
                    _ => refuse(
                        LdapResultCode::UnwillingToPerform,
                        "Password Modify userIdentity must be a DN under base_dn",
                    ),
                };
            }
        }
        Verdict::Forward
    }
}

fn refuse_password_write() -> Verdict {
    refuse(
        LdapResultCode::ConfidentialityRequired,
        "password changes need TLS on both legs (client to ldapgate and ldapgate to directory)",
    )
}

/// The subschema entry: `cn=Subschema` (OpenLDAP, 389-DS) or AD's
/// `CN=Aggregate,CN=Schema,CN=Configuration,<forest root>`.
fn is_subschema(dn: &Dn) -> bool {
    (dn.depth() == 1 && dn.leaf_is("cn", "subschema"))
        || (dn.leaf_is("cn", "aggregate")
            && dn.parent().is_some_and(|p| p.leaf_is("cn", "schema"))
            && dn
                .ancestor(2)
                .is_some_and(|p| p.leaf_is("cn", "configuration")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ldap::request::BindRequest;

    fn policy() -> Policy {
        Policy {
            base_dn: Dn::parse("ou=people,dc=example,dc=com").unwrap(),
            service_dn: Some(Dn::parse("cn=admin,dc=example,dc=com").unwrap()),
            read_only: false,
            require_tls: false,
            upstream_encrypted: true,
            rewrite_signin: false,
        }
    }

    fn bind<'a>(name: &'a str, pw: &'a str) -> Request<'a> {
        Request::Bind(BindRequest {
            version: 3,
            name: name.as_bytes(),
            auth: BindAuth::Simple(pw.as_bytes()),
        })
    }

    fn code(v: Verdict) -> Option<LdapResultCode> {
        match v {
            Verdict::Refuse { code, .. } | Verdict::RefuseBind { code, .. } => Some(code),
            _ => None,
        }
    }

    #[test]
    fn binds() {
        let p = policy();
        assert_eq!(p.decide(&bind("", ""), false), Verdict::Forward);
        assert_eq!(
            p.decide(&bind("uid=a,ou=people,dc=example,dc=com", "pw"), false),
            Verdict::Forward
        );
        assert_eq!(
            p.decide(&bind("cn=admin,dc=example,dc=com", "pw"), false),
            Verdict::Forward
        );
        assert!(matches!(
            p.decide(&bind("uid=a,ou=people,dc=example,dc=com", ""), false),
            Verdict::RefuseBind {
                code: LdapResultCode::InvalidCredentials,
                ..
            }
        ));
        assert_eq!(
            code(p.decide(&bind("cn=other,dc=example,dc=com", "pw"), false)),
            Some(LdapResultCode::InsufficentAccessRights)
        );
        assert_eq!(
            code(p.decide(&bind("alice", "pw"), false)),
            Some(LdapResultCode::InvalidDNSyntax)
        );
        let mut rewriting = policy();
        rewriting.rewrite_signin = true;
        assert_eq!(
            rewriting.decide(&bind("alice", "pw"), false),
            Verdict::ResolveBind
        );
        assert_eq!(
            rewriting.decide(&bind("+8613800000001", "pw"), false),
            Verdict::ResolveBind
        );
        // An empty password is refused before anything is resolved.
        assert!(matches!(
            rewriting.decide(&bind("alice", ""), false),
            Verdict::RefuseBind {
                code: LdapResultCode::InvalidCredentials,
                ..
            }
        ));
        let sasl = Request::Bind(BindRequest {
            version: 3,
            name: b"",
            auth: BindAuth::Sasl(b"EXTERNAL"),
        });
        assert_eq!(
            code(p.decide(&sasl, true)),
            Some(LdapResultCode::AuthMethodNotSupported)
        );
        // LDAPv2 is answered here: it never tests a password upstream.
        let v2 = Request::Bind(BindRequest {
            version: 2,
            name: b"uid=a,ou=people,dc=example,dc=com",
            auth: BindAuth::Simple(b"pw"),
        });
        assert_eq!(
            code(p.decide(&v2, false)),
            Some(LdapResultCode::ProtocolError)
        );
    }

    #[test]
    fn searches_are_scoped_but_root_dse_and_schema_stay_readable() {
        let p = policy();
        let search = |base: &'static str, scope| Request::Search {
            base: base.as_bytes(),
            scope,
        };
        assert_eq!(p.decide(&search("", Scope::Base), false), Verdict::Forward);
        assert_eq!(
            p.decide(&search("cn=Subschema", Scope::Base), false),
            Verdict::Forward
        );
        assert_eq!(
            p.decide(
                &search(
                    "CN=Aggregate,CN=Schema,CN=Configuration,DC=ad,DC=example",
                    Scope::Base
                ),
                false
            ),
            Verdict::Forward
        );
        assert_eq!(
            code(p.decide(&search("", Scope::Subtree), false)),
            Some(LdapResultCode::InsufficentAccessRights)
        );
        assert_eq!(
            code(p.decide(&search("dc=example,dc=com", Scope::Subtree), false)),
            Some(LdapResultCode::InsufficentAccessRights)
        );
        assert_eq!(
            p.decide(
                &search("ou=People,DC=example,dc=com", Scope::Subtree),
                false
            ),
            Verdict::Forward
        );
        assert_eq!(
            code(p.decide(&search("not a dn", Scope::Base), false)),
            Some(LdapResultCode::InvalidDNSyntax)
        );
    }

    #[test]
    fn writes_obey_read_only_scope_and_password_rules() {
        let mut p = policy();
        let inside = b"uid=a,ou=people,dc=example,dc=com".as_slice();
        let modify = |pw| Request::Modify {
            object: inside,
            writes_password: pw,
        };
        assert_eq!(p.decide(&modify(false), false), Verdict::Forward);
        assert_eq!(
            code(p.decide(&modify(true), false)),
            Some(LdapResultCode::ConfidentialityRequired)
        );
        assert_eq!(p.decide(&modify(true), true), Verdict::Forward);
        p.upstream_encrypted = false;
        assert_eq!(
            code(p.decide(&modify(true), true)),
            Some(LdapResultCode::ConfidentialityRequired)
        );
        let pwmod = Request::Extended {
            oid: oid::PASSWORD_MODIFY.as_bytes(),
            value: None,
        };
        assert_eq!(
            code(p.decide(&pwmod, true)),
            Some(LdapResultCode::ConfidentialityRequired)
        );
        p.upstream_encrypted = true;
        assert_eq!(p.decide(&pwmod, true), Verdict::Forward);
        p.read_only = true;
        assert_eq!(
            code(p.decide(&modify(false), true)),
            Some(LdapResultCode::UnwillingToPerform)
        );
        assert_eq!(
            code(p.decide(&Request::Delete { entry: inside }, true)),
            Some(LdapResultCode::UnwillingToPerform)
        );
        assert_eq!(
            code(p.decide(&pwmod, true)),
            Some(LdapResultCode::UnwillingToPerform)
        );
        let whoami = Request::Extended {
            oid: oid::WHO_AM_I.as_bytes(),
            value: None,
        };
        assert_eq!(p.decide(&whoami, true), Verdict::Forward);
    }

    #[test]
    fn password_modify_identity_must_be_in_scope() {
        let p = policy();
        let req = |identity: &[u8]| {
            let mut v = vec![0x30, (identity.len() + 2) as u8, 0x80, identity.len() as u8];
            v.extend_from_slice(identity);
            v
        };
        let inside = req(b"dn:uid=a,ou=people,dc=example,dc=com");
        let outside = req(b"cn=admin,dc=example,dc=com");
        let authz = req(b"u:alice");
        let ext = |v: &[u8]| {
            p.decide(
                &Request::Extended {
                    oid: oid::PASSWORD_MODIFY.as_bytes(),
                    value: Some(v),
                },
                true,
            )
        };
        assert_eq!(ext(&inside), Verdict::Forward);
        assert_eq!(
            code(ext(&outside)),
            Some(LdapResultCode::InsufficentAccessRights)
        );
        assert_eq!(code(ext(&authz)), Some(LdapResultCode::UnwillingToPerform));
        assert_eq!(code(ext(b"\x04\x00")), Some(LdapResultCode::ProtocolError));
    }

    #[test]
    fn moves_must_stay_inside_base_dn() {
        let p = policy();
        let mv = |entry: &'static str, sup: Option<&'static str>| Request::ModifyDn {
            entry: entry.as_bytes(),
            new_superior: sup.map(str::as_bytes),
        };
        assert_eq!(
            p.decide(&mv("uid=a,ou=people,dc=example,dc=com", None), false),
            Verdict::Forward
        );
        assert_eq!(
            code(p.decide(
                &mv(
                    "uid=a,ou=people,dc=example,dc=com",
                    Some("dc=example,dc=com")
                ),
                false
            )),
            Some(LdapResultCode::InsufficentAccessRights)
        );
        assert_eq!(
            code(p.decide(&mv("ou=people,dc=example,dc=com", None), false)),
            Some(LdapResultCode::InsufficentAccessRights)
        );
    }

    #[test]
    fn require_tls_allows_only_starttls_before_tls() {
        let mut p = policy();
        p.require_tls = true;
        let starttls = Request::Extended {
            oid: oid::START_TLS.as_bytes(),
            value: None,
        };
        assert_eq!(p.decide(&starttls, false), Verdict::StartTls);
        assert!(matches!(
            p.decide(&bind("", ""), false),
            Verdict::RefuseBind {
                code: LdapResultCode::ConfidentialityRequired,
                ..
            }
        ));
        assert_eq!(p.decide(&bind("", ""), true), Verdict::Forward);
        assert_eq!(p.decide(&Request::Unbind, false), Verdict::Unbind);
    }
}

//! What a session does with each client request: forward it, answer it
//! locally, or handle it itself (StartTLS, unbind). Pure logic, no I/O.

use ldap3_proto::proto::LdapResultCode;

use crate::ber::TlvReader;
use crate::config::{ServerConfig, TenantDirectory};
use crate::ldap::dn::Dn;
use crate::ldap::oid;
use crate::ldap::request::{BindAuth, Request, Scope};

mod scope;
pub use scope::{DnScope, SharedDnScope, WeakDnScope};

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
    /// `base_dn`, and the service account's DN (which may bind even when it
    /// lives outside `base_dn`), with the DN schema that compares them.
    pub dn_scope: SharedDnScope,
    pub read_only: bool,
    pub require_tls: bool,
    /// Whether every configured upstream leg is encrypted; password writes
    /// need that, whichever server the session lands on.
    pub upstream_encrypted: bool,
    /// Resolve bind names that are not DNs as sign-in IDs.
    pub rewrite_signin: bool,
}

impl Policy {
    /// The rules for clients of `tenant`; `server` says whether TLS is
    /// required of them.
    pub fn from_config(server: &ServerConfig, tenant: &TenantDirectory) -> Policy {
        let d = &tenant.directory;
        Policy {
            dn_scope: SharedDnScope::new(DnScope::built_in(
                d.base_dn.clone(),
                d.service_account.as_ref().map(|a| a.dn.clone()),
            )),
            read_only: d.read_only,
            require_tls: server.require_tls,
            upstream_encrypted: d.every_leg_encrypted(),
            rewrite_signin: tenant.signin.rewrite_ldap_binds,
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
        // One DN schema for the whole request, even if a newly read one
        // is published meanwhile.
        let dns = self.dn_scope.current();
        let dns = &*dns;
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
            Request::Bind(bind) => self.bind(dns, bind.name, bind.auth),
            Request::Search { base, scope, .. } => {
                // Clients read the root DSE and the subschema entry on connect.
                let dn = match dns.parse(base) {
                    Ok(dn) => dn,
                    Err(e) => return refuse(LdapResultCode::InvalidDNSyntax, e.to_string()),
                };
                if scope == Scope::Base && (dn.is_root() || is_subschema(&dn)) {
                    return Verdict::Forward;
                }
                in_scope(dns, &dn)
            }
            Request::Compare { entry } => target(dns, entry),
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
                target(dns, object)
            }
            Request::Delete { entry } => self.refuse_write().unwrap_or_else(|| target(dns, entry)),
            Request::ModifyDn {
                entry,
                new_superior,
            } => {
                let refused = self.refuse_write();
                refused.unwrap_or_else(|| move_target(dns, entry, new_superior))
            }
            Request::Extended { oid: o, value } => {
                self.extended(dns, o, value, both_legs_encrypted)
            }
            Request::Unbind | Request::Abandon { .. } => Verdict::Forward,
        }
    }

    fn bind(&self, dns: &DnScope, name: &[u8], auth: BindAuth<'_>) -> Verdict {
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
        let dn = match dns.parse(name) {
            Ok(dn) => dn,
            Err(_) if self.rewrite_signin => return Verdict::ResolveBind,
            Err(e) => {
                return refuse_bind(
                    LdapResultCode::InvalidDNSyntax,
                    format!("bind name is not a DN: {e}"),
                )
            }
        };
        if dns.contains(&dn) || dns.is_service_account(&dn) {
            Verdict::Forward
        } else {
            refuse_bind(
                LdapResultCode::InsufficentAccessRights,
                format!("bind name is outside base_dn {}", dns.base_dn()),
            )
        }
    }

    /// An extended operation other than StartTLS.
    fn extended(
        &self,
        dns: &DnScope,
        o: &[u8],
        value: Option<&[u8]>,
        both_legs_encrypted: bool,
    ) -> Verdict {
        if o == oid::PASSWORD_MODIFY.as_bytes() {
            if let Some(v) = self.refuse_write() {
                return v;
            }
            if !both_legs_encrypted {
                return refuse_password_write();
            }
            return password_modify_target(dns, value);
        }
        if o == oid::WHO_AM_I.as_bytes() || o == oid::CANCEL.as_bytes() {
            return Verdict::Forward;
        }
        // An extended operation ldapgate does not know may write.
        self.refuse_write().unwrap_or(Verdict::Forward)
    }

    fn refuse_write(&self) -> Option<Verdict> {
        self.read_only.then(|| {
            refuse(
                LdapResultCode::UnwillingToPerform,
                "ldapgate is configured read_only",
            )
        })
    }
}

fn target(dns: &DnScope, dn: &[u8]) -> Verdict {
    match dns.parse(dn) {
        Ok(dn) => in_scope(dns, &dn),
        Err(e) => refuse(LdapResultCode::InvalidDNSyntax, e.to_string()),
    }
}

fn in_scope(dns: &DnScope, dn: &Dn) -> Verdict {
    if dns.contains(dn) {
        Verdict::Forward
    } else {
        refuse(
            LdapResultCode::InsufficentAccessRights,
            format!("`{dn}` is outside base_dn {}", dns.base_dn()),
        )
    }
}

/// A modify DN: the entry must be inside base_dn and stay inside it after
/// the move, so the new parent (`newSuperior`, else the entry's own) must
/// be inside it too (the base entry cannot move).
fn move_target(dns: &DnScope, entry: &[u8], new_superior: Option<&[u8]>) -> Verdict {
    let entry_dn = match dns.parse(entry) {
        Ok(dn) => dn,
        Err(e) => return refuse(LdapResultCode::InvalidDNSyntax, e.to_string()),
    };
    let new_parent = match new_superior.map(|s| dns.parse(s)) {
        Some(Ok(dn)) => Some(dn),
        Some(Err(e)) => return refuse(LdapResultCode::InvalidDNSyntax, e.to_string()),
        None => entry_dn.parent(),
    };
    match new_parent {
        Some(p) if dns.contains(&p) => in_scope(dns, &entry_dn),
        _ => refuse(
            LdapResultCode::InsufficentAccessRights,
            format!("the new location is outside base_dn {}", dns.base_dn()),
        ),
    }
}

/// Password Modify names its target in `userIdentity` (RFC 3062), or
/// changes the bound identity's password when it is absent.
fn password_modify_target(dns: &DnScope, value: Option<&[u8]>) -> Verdict {
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
            return match dns.parse(identity) {
                Ok(dn) if !dn.is_root() => in_scope(dns, &dn),
                _ => refuse(
                    LdapResultCode::UnwillingToPerform,
                    "Password Modify userIdentity must be a DN under base_dn",
                ),
            };
        }
    }
    Verdict::Forward
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
mod tests;

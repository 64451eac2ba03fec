//! `[directory]`: the upstream servers, how to trust them, and the service
//! account.

use std::path::PathBuf;
use std::time::Duration;

use super::raw::RawDirectory;
use super::{Secret, Validator};
use crate::ldap::dn::Dn;
use crate::ldap::url::{Endpoint, Scheme};
use crate::tls::{self, Pin};

/// Which directory product is behind the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectoryKind {
    OpenLdap,
    ActiveDirectory,
    Ds389,
    Generic,
}

impl DirectoryKind {
    /// The name `directory.kind` gives it.
    pub fn name(self) -> &'static str {
        match self {
            DirectoryKind::OpenLdap => "openldap",
            DirectoryKind::ActiveDirectory => "ad",
            DirectoryKind::Ds389 => "389ds",
            DirectoryKind::Generic => "generic",
        }
    }
}

/// `[directory]`: the upstream servers and how to trust them.
#[derive(Debug, Clone)]
pub struct DirectoryConfig {
    pub kind: DirectoryKind,
    pub servers: Vec<Endpoint>,
    pub starttls: bool,
    pub ca_file: Option<PathBuf>,
    pub pins: Vec<Pin>,
    pub base_dn: Dn,
    pub service_account: Option<ServiceAccount>,
    pub connect_timeout: Duration,
    pub operation_timeout: Duration,
    pub pool_size: usize,
    pub health_check_interval: Duration,
    pub max_message_bytes: usize,
    pub read_only: bool,
}

impl DirectoryConfig {
    /// True when the leg to `server` is encrypted.
    pub fn leg_encrypted(&self, server: &Endpoint) -> bool {
        server.scheme == Scheme::Ldaps || self.starttls
    }

    /// True when the leg to every server is encrypted, whichever one a
    /// session lands on.
    pub fn every_leg_encrypted(&self) -> bool {
        self.servers.iter().all(|s| self.leg_encrypted(s))
    }
}

/// The account ldapgate binds as for its own queries.
#[derive(Debug, Clone)]
pub struct ServiceAccount {
    pub dn: Dn,
    pub password: Secret,
}

impl Validator {
    pub(super) fn directory(&mut self, r: &RawDirectory) -> Option<DirectoryConfig> {
        let kind = match r.kind.as_str() {
            "openldap" => DirectoryKind::OpenLdap,
            "ad" => DirectoryKind::ActiveDirectory,
            "389ds" => DirectoryKind::Ds389,
            "generic" => DirectoryKind::Generic,
            other => {
                self.problem(
                    "directory.kind",
                    format!("`{other}` is not one of openldap, ad, 389ds, generic"),
                );
                DirectoryKind::Generic
            }
        };
        let mut servers = Vec::new();
        for (i, s) in r.servers.iter().enumerate() {
            match s.parse::<Endpoint>() {
                Ok(e) => servers.push(e),
                Err(e) => self.problem(&format!("directory.servers[{i}]"), format!("`{s}`: {e}")),
            }
        }
        if r.servers.is_empty() {
            self.problem("directory.servers", "at least one server is required");
        }
        let ca_file = r
            .ca_file
            .as_deref()
            .filter(|s| !s.is_empty())
            .and_then(|p| {
                let path = self.readable("directory.ca_file", p)?;
                match tls::load_roots(&path) {
                    Ok(_) => Some(path),
                    Err(e) => {
                        self.problem("directory.ca_file", e);
                        None
                    }
                }
            });
        let mut pins = Vec::new();
        for (i, p) in r.pins.iter().enumerate() {
            match p.parse::<Pin>() {
                Ok(pin) => pins.push(pin),
                Err(e) => self.problem(&format!("directory.pins[{i}]"), format!("`{p}`: {e}")),
            }
        }
        let base_dn = match r.base_dn.as_deref() {
            None | Some("") => {
                self.problem("directory.base_dn", "required: the subtree ldapgate serves");
                None
            }
            Some(text) => match Dn::parse(text) {
                Ok(dn) => Some(dn),
                Err(e) => {
                    self.problem("directory.base_dn", format!("`{text}`: {e}"));
                    None
                }
            },
        };
        let service_account = self.service_account(r);
        let connect_timeout = self.duration("directory.connect_timeout", &r.connect_timeout, false);
        let operation_timeout =
            self.duration("directory.operation_timeout", &r.operation_timeout, false);
        let pool_size = self.range("directory.pool_size", r.pool_size, 0, 10_000);
        let health_check_interval = self.duration(
            "directory.health_check_interval",
            &r.health_check_interval,
            false,
        );
        let max_message_bytes = self.range(
            "directory.max_message_bytes",
            r.max_message_bytes,
            1024,
            1 << 30,
        );
        Some(DirectoryConfig {
            kind,
            servers,
            starttls: r.starttls,
            ca_file,
            pins,
            base_dn: base_dn?,
            service_account,
            connect_timeout,
            operation_timeout,
            pool_size,
            health_check_interval,
            max_message_bytes,
            read_only: r.read_only,
        })
    }

    fn service_account(&mut self, r: &RawDirectory) -> Option<ServiceAccount> {
        match (&r.bind_dn, &r.bind_password_file) {
            (None, None) => None,
            (Some(_), None) => {
                self.problem(
                    "directory.bind_password_file",
                    "required when bind_dn is set (a file, e.g. a systemd credential)",
                );
                None
            }
            (None, Some(_)) => {
                self.problem(
                    "directory.bind_dn",
                    "required when bind_password_file is set",
                );
                None
            }
            (Some(dn), Some(file)) => {
                let dn = match Dn::parse(dn) {
                    Ok(dn) => Some(dn),
                    Err(e) => {
                        self.problem("directory.bind_dn", format!("`{dn}`: {e}"));
                        None
                    }
                };
                let password = self.secret_file("directory.bind_password_file", file);
                Some(ServiceAccount {
                    dn: dn?,
                    password: password?,
                })
            }
        }
    }
}

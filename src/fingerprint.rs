//! `ldapgate fingerprint`: connect to a server and show its certificate in
//! the forms `directory.pins` accepts, so an operator can pin it.

use std::time::Duration;

use rustls_pki_types::CertificateDer;

use crate::ldap::url::{Endpoint, EndpointError, Scheme};
use crate::tls::pin::CertParseError;
use crate::tls::{verifier::Trust, CertFingerprints, ChainExpiry, DirectoryTls};
use crate::upstream::{PoolSettings, UpstreamError, UpstreamServer};

/// Why the certificate could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FingerprintError {
    #[error("`{target}` is not HOST:PORT or an ldap:// / ldaps:// URL: {reason}")]
    Target { target: String, reason: String },
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    #[error("{server} presented no certificate")]
    NoCertificate { server: String },
    #[error("{server}: {reason}")]
    BadCertificate { server: String, reason: String },
}

/// The server and its certificate chain, leaf first.
#[derive(Debug, Clone)]
pub struct ServerCertificates {
    pub server: Endpoint,
    pub chain: Vec<CertFingerprints>,
    /// The certificate of the served chain that expires first: nothing
    /// that relies on this chain works after it.
    pub expiry: Option<ChainExpiry>,
    /// Why ldapgate cannot connect to this server although the certificate
    /// could be read (with a diagnostic ClientHello): fix this before
    /// pinning helps.
    pub unusable: Option<String>,
}

/// Parses `HOST:PORT` (TLS from the first byte, or StartTLS when asked) or
/// a server URL (`ldaps://` TLS, `ldap://` StartTLS).
pub fn parse_target(target: &str, starttls: bool) -> Result<(Endpoint, bool), FingerprintError> {
    let bad = |e: EndpointError| FingerprintError::Target {
        target: target.to_owned(),
        reason: e.to_string(),
    };
    if target.contains("://") {
        let endpoint: Endpoint = target.parse().map_err(bad)?;
        let starttls = endpoint.scheme == Scheme::Ldap;
        return Ok((endpoint, starttls));
    }
    let scheme = if starttls { "ldap" } else { "ldaps" };
    let endpoint: Endpoint = format!("{scheme}://{target}").parse().map_err(bad)?;
    if !target.contains(':') || target.ends_with(']') {
        return Err(FingerprintError::Target {
            target: target.to_owned(),
            reason: "a port is required".into(),
        });
    }
    Ok((endpoint, starttls))
}

/// Connects and returns the certificate chain the server presents. The
/// certificate is not trusted for anything: this only reads it.
pub async fn fetch(
    endpoint: Endpoint,
    starttls: bool,
    limit: Duration,
) -> Result<ServerCertificates, FingerprintError> {
    let directory_tls = DirectoryTls::new(Trust::FingerprintOnly)?;
    let server =
        UpstreamServer::new(endpoint.clone(), starttls, directory_tls, 0, None).map_err(|e| {
            FingerprintError::Target {
                target: endpoint.to_string(),
                reason: e.to_string(),
            }
        })?;
    let name = endpoint.to_string();
    let settings = PoolSettings {
        connect_timeout: limit,
        operation_timeout: limit,
        max_idle_per_server: 0,
        max_message_bytes: 1 << 20,
    };
    let conn = match server.connect(0, &settings).await {
        Ok(conn) => conn,
        // ldapgate cannot speak this server's TLS, but a diagnostic
        // ClientHello read the certificate it presents: show it, with why
        // it cannot be used yet.
        Err(UpstreamError::TlsIncompatible { found, .. }) if !found.survey.chain.is_empty() => {
            let served = &found.survey.chain;
            let expiry = ChainExpiry::of(served).map_err(|e| bad_certificate(&name, e))?;
            return Ok(ServerCertificates {
                server: endpoint,
                chain: fingerprints(&name, served)?,
                expiry,
                unusable: Some(found.to_string()),
            });
        }
        Err(e) => return Err(e.into()),
    };
    let certs = conn
        .peer_certificates()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| FingerprintError::NoCertificate {
            server: name.clone(),
        })?;
    Ok(ServerCertificates {
        server: endpoint,
        chain: fingerprints(&name, certs)?,
        expiry: conn.chain_expiry().cloned(),
        unusable: None,
    })
}

/// Both fingerprints and the details of each certificate of `chain`.
fn fingerprints(
    server: &str,
    chain: &[CertificateDer<'_>],
) -> Result<Vec<CertFingerprints>, FingerprintError> {
    chain
        .iter()
        .map(|c| CertFingerprints::of(c))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_certificate(server, e))
}

fn bad_certificate(server: &str, e: CertParseError) -> FingerprintError {
    FingerprintError::BadCertificate {
        server: server.to_owned(),
        reason: e.to_string(),
    }
}

impl ServerCertificates {
    /// The report as JSON, for `GET /v1/fingerprint`: the same facts as
    /// [`ServerCertificates::report`], each certificate of the chain leaf
    /// first, with both pin forms `directory.pins` accepts.
    pub fn to_json(&self) -> serde_json::Value {
        let chain: Vec<serde_json::Value> = self
            .chain
            .iter()
            .map(|c| {
                serde_json::json!({
                    "subject": c.subject,
                    "issuer": c.issuer,
                    "sans": c.sans,
                    "not_after": c.not_after,
                    "not_after_unix": c.not_after_unix,
                    "pin_spki": c.spki.to_string(),
                    "pin_leaf": c.leaf.to_string(),
                })
            })
            .collect();
        let expires = self.expiry.as_ref().map(|e| {
            serde_json::json!({
                "not_after": e.not_after,
                "not_after_unix": e.not_after_unix,
                "subject": e.subject,
                "position": e.position,
            })
        });
        serde_json::json!({
            "server": self.server.to_string(),
            "chain": chain,
            "expires": expires,
            "usable": self.unusable.is_none(),
            "unusable_reason": self.unusable,
        })
    }

    /// The human-readable report `ldapgate fingerprint` prints.
    pub fn report(&self) -> String {
        let mut out = format!("server:     {}\n", self.server);
        if let Some(leaf) = self.chain.first() {
            out.push_str(&format!("subject:    {}\n", leaf.subject));
            out.push_str(&format!("issuer:     {}\n", leaf.issuer));
            out.push_str(&format!("sans:       {}\n", leaf.sans.join(", ")));
            out.push_str(&format!("not_after:  {}\n", leaf.not_after));
            out.push_str(&format!("pin (spki): {}\n", leaf.spki));
            out.push_str(&format!("pin (leaf): {}\n", leaf.leaf));
        }
        for (i, ca) in self.chain.iter().enumerate().skip(1) {
            out.push_str(&format!(
                "chain[{i}]:   {} (spki {}, not_after {})\n",
                ca.subject, ca.spki, ca.not_after
            ));
        }
        if let Some(expiry) = &self.expiry {
            out.push_str(&format!(
                "expires:    {}: the earliest notAfter of the served chain, {expiry}\n",
                expiry.not_after
            ));
        }
        if let Some(why) = &self.unusable {
            out.push_str(&format!(
                "usable:     no, ldapgate cannot connect to it yet: {why}\n"
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let (e, st) = parse_target("dc1.example.com:636", false).unwrap();
        assert_eq!(
            (e.to_string(), st),
            ("ldaps://dc1.example.com:636".into(), false)
        );
        let (e, st) = parse_target("dc1.example.com:389", true).unwrap();
        assert_eq!(
            (e.to_string(), st),
            ("ldap://dc1.example.com:389".into(), true)
        );
        let (e, st) = parse_target("ldap://dc1.example.com", false).unwrap();
        assert_eq!((e.port, st), (389, true));
        assert!(parse_target("dc1.example.com", false).is_err());
        assert!(parse_target("http://x:1", false).is_err());
    }
}

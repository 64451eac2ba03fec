//! Certificate pins: SHA-256 of the leaf certificate or of its public key.
//!
//! Two textual forms, the ones `ldapgate fingerprint` prints and `pins`
//! accepts: `sha256/<base64>` for the SubjectPublicKeyInfo (survives
//! re-issuing a certificate with the same key) and `sha256:<HEX:HEX:..>`
//! for the whole leaf certificate.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha256};
use thiserror::Error;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A pinned fingerprint.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pin {
    /// SHA-256 of the DER SubjectPublicKeyInfo.
    Spki([u8; 32]),
    /// SHA-256 of the DER certificate.
    Leaf([u8; 32]),
}

/// Why a pin string was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PinParseError {
    #[error("expected `sha256/<base64 of SPKI hash>` or `sha256:<hex of certificate hash>`")]
    UnknownForm,
    #[error("the base64 after `sha256/` does not decode: {0}")]
    BadBase64(String),
    #[error("the hex after `sha256:` is not hexadecimal")]
    BadHex,
    #[error("a SHA-256 hash is 32 bytes, this one is {0}")]
    WrongLength(usize),
}

impl FromStr for Pin {
    type Err = PinParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let to_hash = |bytes: Vec<u8>| -> Result<[u8; 32], PinParseError> {
            let len = bytes.len();
            bytes
                .try_into()
                .map_err(|_| PinParseError::WrongLength(len))
        };
        if let Some(b64) = s.strip_prefix("sha256/") {
            let bytes = STANDARD
                .decode(b64)
                .map_err(|e| PinParseError::BadBase64(e.to_string()))?;
            return Ok(Pin::Spki(to_hash(bytes)?));
        }
        if let Some(hex) = s.strip_prefix("sha256:") {
            let digits: Vec<u8> = hex.bytes().filter(|b| *b != b':').collect();
            if !digits.len().is_multiple_of(2) {
                return Err(PinParseError::BadHex);
            }
            let bytes = digits
                .chunks(2)
                .map(|pair| {
                    std::str::from_utf8(pair)
                        .ok()
                        .and_then(|p| u8::from_str_radix(p, 16).ok())
                        .ok_or(PinParseError::BadHex)
                })
                .collect::<Result<Vec<u8>, _>>()?;
            return Ok(Pin::Leaf(to_hash(bytes)?));
        }
        Err(PinParseError::UnknownForm)
    }
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pin::Spki(h) => write!(f, "sha256/{}", STANDARD.encode(h)),
            Pin::Leaf(h) => {
                f.write_str("sha256:")?;
                for (i, b) in h.iter().enumerate() {
                    if i > 0 {
                        f.write_str(":")?;
                    }
                    write!(f, "{b:02X}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Both fingerprints of a certificate, plus what a person checks before
/// pinning it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFingerprints {
    pub spki: Pin,
    pub leaf: Pin,
    pub subject: String,
    pub issuer: String,
    pub sans: Vec<String>,
    /// RFC 3339 expiry.
    pub not_after: String,
    /// Seconds since the epoch of the expiry.
    pub not_after_unix: i64,
}

/// A certificate that could not be parsed.
#[derive(Debug, Clone, Error)]
#[error("certificate is not valid X.509: {0}")]
pub struct CertParseError(String);

impl CertParseError {
    /// The certificate at `position` of a chain (0 = leaf) does not parse.
    pub fn at(position: usize, reason: String) -> Self {
        CertParseError(format!("chain[{position}]: {reason}"))
    }
}

impl CertFingerprints {
    /// Computes both fingerprints of a DER certificate.
    pub fn of(der: &[u8]) -> Result<Self, CertParseError> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| CertParseError(e.to_string()))?;
        let spki = Pin::Spki(Sha256::digest(cert.public_key().raw).into());
        let leaf = Pin::Leaf(Sha256::digest(der).into());
        let sans = match cert.subject_alternative_name() {
            Ok(Some(ext)) => ext.value.general_names.iter().map(describe_name).collect(),
            _ => Vec::new(),
        };
        let not_after = cert.validity().not_after;
        Ok(CertFingerprints {
            spki,
            leaf,
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            sans,
            not_after: not_after
                .to_rfc2822()
                .unwrap_or_else(|_| not_after.to_string()),
            not_after_unix: not_after.timestamp(),
        })
    }

    /// True when any pin matches this certificate.
    pub fn matches_any(&self, pins: &[Pin]) -> bool {
        pins.iter().any(|p| *p == self.spki || *p == self.leaf)
    }
}

/// When a DER certificate expires (seconds since the epoch); None when it
/// does not parse.
pub fn expiry_of(der: &[u8]) -> Option<i64> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// A SAN in the `DNS:`/`IP:` notation people know from other tools.
fn describe_name(name: &x509_parser::extensions::GeneralName<'_>) -> String {
    use x509_parser::extensions::GeneralName;
    match name {
        GeneralName::DNSName(d) => format!("DNS:{d}"),
        GeneralName::RFC822Name(m) => format!("email:{m}"),
        GeneralName::URI(u) => format!("URI:{u}"),
        GeneralName::IPAddress(ip) => match ip.len() {
            4 => {
                let octets: [u8; 4] = [ip[0], ip[1], ip[2], ip[3]];
                format!("IP:{}", std::net::Ipv4Addr::from(octets))
            }
            16 => {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(ip);
                format!("IP:{}", std::net::Ipv6Addr::from(octets))
            }
            _ => "IP:<malformed>".to_owned(),
        },
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_round_trip() {
        let spki = Pin::Spki([7; 32]);
        let leaf = Pin::Leaf([0xab; 32]);
        assert_eq!(spki.to_string().parse::<Pin>().unwrap(), spki);
        assert_eq!(leaf.to_string().parse::<Pin>().unwrap(), leaf);
        assert!(leaf.to_string().starts_with("sha256:AB:AB:"));
    }

    #[test]
    fn leaf_hex_is_case_and_colon_insensitive() {
        let plain = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(plain.parse::<Pin>().unwrap(), Pin::Leaf([0xab; 32]));
    }

    #[test]
    fn rejects_malformed_pins() {
        assert_eq!("md5:00".parse::<Pin>(), Err(PinParseError::UnknownForm));
        assert_eq!("sha256:zz".parse::<Pin>(), Err(PinParseError::BadHex));
        assert_eq!("sha256:abc".parse::<Pin>(), Err(PinParseError::BadHex));
        assert_eq!(
            "sha256:abcd".parse::<Pin>(),
            Err(PinParseError::WrongLength(2))
        );
        assert!(matches!(
            "sha256/!!!".parse::<Pin>(),
            Err(PinParseError::BadBase64(_))
        ));
        assert_eq!(
            "sha256/AAAA".parse::<Pin>(),
            Err(PinParseError::WrongLength(3))
        );
    }

    #[test]
    fn fingerprints_of_a_generated_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["dc1.example.com".into(), "127.0.0.1".into()])
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        let fp = CertFingerprints::of(cert.der()).unwrap();
        assert_eq!(fp.leaf, Pin::Leaf(Sha256::digest(cert.der()).into()));
        use rustls_pki_types::pem::PemObject;
        let spki_der = rustls_pki_types::SubjectPublicKeyInfoDer::from_pem_slice(
            key.public_key_pem().as_bytes(),
        )
        .unwrap();
        assert_eq!(fp.spki, Pin::Spki(Sha256::digest(&spki_der).into()));
        assert_eq!(fp.sans, vec!["DNS:dc1.example.com", "IP:127.0.0.1"]);
        assert!(fp.matches_any(&[Pin::Leaf([0; 32]), fp.spki]));
        assert!(!fp.matches_any(&[Pin::Leaf([0; 32])]));
    }
}

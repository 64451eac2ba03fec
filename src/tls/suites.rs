//! Cipher suites: the ones ldapgate offers, the ones directories commonly
//! offer that rustls does not implement, and the diagnosis of a handshake a
//! server refused: which suites it accepts instead (asked with diagnostic
//! ClientHellos, see [`super::probe`]) and so what to enable on it.
//!
//! rustls implements only AEAD suites with ephemeral elliptic-curve key
//! exchange (RFC 8446 for TLS 1.3; RFC 5289 and RFC 7905 for TLS 1.2). A
//! Windows Server 2012 R2 DC with an RSA certificate offers ECDHE only with
//! AES-CBC, and AES-GCM only with DHE or RSA key exchange, so it has no
//! suite in common with ldapgate until one is enabled on it.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use rustls::{CipherSuite, ProtocolVersion};
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite};

use super::probe::{self, ServerAnswer};

/// How many diagnostic ClientHellos a diagnosis sends at most: each one
/// learns one suite the server accepts (the one it chose), which is then
/// left out of the next.
const MAX_PROBES: usize = 8;

/// Suites directories offer that rustls does not implement, strongest
/// first: ECDHE with AES-CBC (RFC 5289), DHE and RSA key exchange with
/// AES-GCM (RFC 5288) and AES-CBC (RFC 5246), and 3DES.
pub const LEGACY: &[CipherSuite] = &[
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
    CipherSuite::TLS_DHE_RSA_WITH_AES_256_GCM_SHA384,
    CipherSuite::TLS_DHE_RSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_DHE_RSA_WITH_AES_256_CBC_SHA256,
    CipherSuite::TLS_DHE_RSA_WITH_AES_128_CBC_SHA256,
    CipherSuite::TLS_DHE_RSA_WITH_AES_256_CBC_SHA,
    CipherSuite::TLS_DHE_RSA_WITH_AES_128_CBC_SHA,
    CipherSuite::TLS_RSA_WITH_AES_256_GCM_SHA384,
    CipherSuite::TLS_RSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_RSA_WITH_AES_256_CBC_SHA256,
    CipherSuite::TLS_RSA_WITH_AES_128_CBC_SHA256,
    CipherSuite::TLS_RSA_WITH_AES_256_CBC_SHA,
    CipherSuite::TLS_RSA_WITH_AES_128_CBC_SHA,
    CipherSuite::TLS_RSA_WITH_3DES_EDE_CBC_SHA,
];

/// The suites ldapgate offers, in its order of preference.
pub fn offered() -> Vec<CipherSuite> {
    super::provider()
        .cipher_suites
        .iter()
        .map(|s| s.suite())
        .collect()
}

/// A suite's IANA name (`TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384`), or its
/// number when rustls does not know it.
pub fn name(suite: CipherSuite) -> String {
    suite
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("0x{:04X}", u16::from(suite)))
}

/// Why rustls cannot use `suite`, from its name.
fn why_unsupported(suite: CipherSuite) -> &'static str {
    let n = name(suite);
    if n.starts_with("TLS_DHE_") {
        "finite-field DHE key exchange"
    } else if n.starts_with("TLS_RSA_") {
        "RSA key exchange"
    } else if n.contains("_CBC_") {
        "CBC mode"
    } else {
        "not implemented"
    }
}

/// What diagnostic ClientHellos learnt about a server.
#[derive(Debug, Clone, Default)]
pub struct Survey {
    /// The TLS version it answered with first.
    pub version: Option<ProtocolVersion>,
    /// The suites it chose, one per ClientHello, in the order asked.
    pub accepted: Vec<CipherSuite>,
    /// The certificate chain it sent the first time (leaf first).
    pub chain: Vec<CertificateDer<'static>>,
    /// How the last ClientHello ended when no suite was left to find, or
    /// why it could not be read.
    pub last: Option<String>,
}

/// Asks the server which suites it accepts: up to [`MAX_PROBES`]
/// ClientHellos offering ldapgate's suites and [`LEGACY`], each on a stream
/// `open` returns (TCP, after StartTLS when that applies), leaving out the
/// suites already learnt. Stops early on a suite ldapgate offers too (then
/// the refusal had another cause) or a version below TLS 1.2.
pub async fn survey<S, F, Fut>(mut open: F, host: Option<&str>, limit: Duration) -> Survey
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<S, String>>,
{
    let ours = offered();
    let mut survey = Survey::default();
    for _ in 0..MAX_PROBES {
        let asked: Vec<CipherSuite> = ours
            .iter()
            .chain(LEGACY)
            .filter(|s| !survey.accepted.contains(s))
            .copied()
            .collect();
        let answer = match open().await {
            Ok(mut stream) => probe::ask(&mut stream, host, &asked, limit).await,
            Err(e) => {
                survey.last = Some(e);
                break;
            }
        };
        match answer {
            Ok(ServerAnswer::Hello {
                version,
                suite,
                chain,
            }) => {
                if survey.accepted.is_empty() {
                    survey.version = Some(version);
                    survey.chain = chain;
                }
                survey.accepted.push(suite);
                if ours.contains(&suite) || !is_tls12_or_later(version) {
                    break;
                }
            }
            Ok(ServerAnswer::Alert(alert)) => {
                survey.last = Some(format!("alert {alert:?}"));
                break;
            }
            Ok(ServerAnswer::Closed) => {
                survey.last = Some("closed the connection".into());
                break;
            }
            Err(e) => {
                survey.last = Some(e.to_string());
                break;
            }
        }
    }
    survey
}

/// "TLS 1.0" rather than rustls' `TLSv1_0`.
fn version_name(version: ProtocolVersion) -> String {
    match u16::from(version) {
        0x0300 => "SSL 3.0".into(),
        v @ 0x0301..=0x0304 => format!("TLS 1.{}", (v & 0xff) - 1),
        v => format!("version 0x{v:04X}"),
    }
}

fn is_tls12_or_later(version: ProtocolVersion) -> bool {
    u16::from(version) >= u16::from(ProtocolVersion::TLSv1_2)
}

/// A directory server whose TLS ldapgate cannot speak, with what it
/// accepts instead and the certificate it would have presented.
#[derive(Debug, Clone)]
pub struct Incompatibility {
    /// How the server refused ldapgate's own ClientHello.
    pub refusal: String,
    /// The suites ldapgate offered.
    pub offered: Vec<CipherSuite>,
    pub survey: Survey,
}

impl Incompatibility {
    /// The diagnosis of `refusal` from `survey`; None when the survey
    /// learnt nothing (the server refused the diagnostic ClientHellos too),
    /// so that there is no cause to name beyond the refusal itself.
    pub fn diagnose(refusal: String, survey: Survey) -> Option<Incompatibility> {
        if survey.accepted.is_empty() {
            return None;
        }
        Some(Incompatibility {
            refusal,
            offered: offered(),
            survey,
        })
    }

    /// True when the server accepts no suite ldapgate offers.
    pub fn no_common_suite(&self) -> bool {
        !self
            .survey
            .accepted
            .iter()
            .any(|s| self.offered.contains(s))
    }

    fn write_offers(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |suites: &[CipherSuite]| {
            suites
                .iter()
                .map(|s| name(*s))
                .collect::<Vec<_>>()
                .join(", ")
        };
        write!(f, "ldapgate (rustls) offers {}", list(&self.offered))?;
        let accepted: Vec<String> = self
            .survey
            .accepted
            .iter()
            .map(|s| match self.offered.contains(s) {
                true => name(*s),
                false => format!("{} ({})", name(*s), why_unsupported(*s)),
            })
            .collect();
        write!(
            f,
            "; asked again with older suites, the server accepts {}",
            accepted.join(", ")
        )?;
        match &self.survey.last {
            Some(last) if self.survey.accepted.len() < MAX_PROBES => {
                write!(f, " and no other ({last} when offered the rest)")
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let version = self.survey.version.filter(|v| !is_tls12_or_later(*v));
        if let Some(version) = version {
            write!(
                f,
                "the server speaks at most {} and ldapgate requires TLS 1.2 or 1.3 \
                 ({}); enable TLS 1.2 on the directory (see README, \"Cipher suites\")",
                version_name(version),
                self.refusal
            )
        } else if self.no_common_suite() {
            write!(f, "no cipher suite in common ({}): ", self.refusal)?;
            self.write_offers(f)?;
            // The suites to enable are those for the server's key type.
            let ecdsa = self
                .survey
                .accepted
                .iter()
                .any(|s| name(*s).contains("_ECDSA_"));
            let (key, or) = match ecdsa {
                true => ("ECDSA", ""),
                false => ("RSA", ", or an ECDSA certificate"),
            };
            write!(
                f,
                ". Enable an ECDHE suite with AES-GCM on the directory (Windows: \
                 TLS_ECDHE_{key}_WITH_AES_256_GCM_SHA384 and TLS_ECDHE_{key}_WITH_AES_128_GCM_SHA256 \
                 in the SSL Cipher Suite Order policy{or}; OpenLDAP: olcTLSCipherSuite); \
                 see README, \"Cipher suites\""
            )
        } else {
            write!(f, "the handshake was refused ({}) although ", self.refusal)?;
            self.write_offers(f)?;
            f.write_str(
                ": the suites match, so the cause is elsewhere (key-exchange groups, \
                 signature schemes, or the server's certificate)",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(version: ProtocolVersion, accepted: &[CipherSuite]) -> Incompatibility {
        let survey = Survey {
            version: Some(version),
            accepted: accepted.to_vec(),
            chain: Vec::new(),
            last: Some("alert HandshakeFailure".into()),
        };
        Incompatibility::diagnose("closed".into(), survey).unwrap()
    }

    #[test]
    fn nothing_learnt_is_no_diagnosis() {
        assert!(Incompatibility::diagnose("closed".into(), Survey::default()).is_none());
    }

    #[test]
    fn a_suite_mismatch_names_both_sides_and_what_to_enable_for_the_key_type() {
        let rsa = found(
            ProtocolVersion::TLSv1_2,
            &[
                CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384,
                CipherSuite::TLS_DHE_RSA_WITH_AES_256_GCM_SHA384,
                CipherSuite::TLS_RSA_WITH_AES_256_GCM_SHA384,
            ],
        );
        assert!(rsa.no_common_suite());
        let text = rsa.to_string();
        for part in [
            "no cipher suite in common (closed)",
            "ldapgate (rustls) offers TLS13_AES_256_GCM_SHA384",
            "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384 (CBC mode)",
            "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384 (finite-field DHE key exchange)",
            "TLS_RSA_WITH_AES_256_GCM_SHA384 (RSA key exchange) and no other",
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 and",
            "or an ECDSA certificate",
        ] {
            assert!(text.contains(part), "`{part}` in {text}");
        }
        let ecdsa = found(
            ProtocolVersion::TLSv1_2,
            &[CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA],
        )
        .to_string();
        assert!(
            ecdsa.contains("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 in"),
            "{ecdsa}"
        );
        assert!(!ecdsa.contains("or an ECDSA certificate"), "{ecdsa}");
    }

    #[test]
    fn an_old_version_or_a_common_suite_is_not_called_a_suite_mismatch() {
        let old = found(
            ProtocolVersion::TLSv1_0,
            &[CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA],
        )
        .to_string();
        assert!(old.contains("at most TLS 1.0"), "{old}");
        assert!(!old.contains("no cipher suite in common"), "{old}");
        let common = found(
            ProtocolVersion::TLSv1_2,
            &[CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256],
        );
        assert!(!common.no_common_suite());
        assert!(common.to_string().contains("the cause is elsewhere"));
    }

    #[test]
    fn every_legacy_suite_is_one_rustls_lacks_and_is_explained() {
        let ours = offered();
        for suite in LEGACY {
            assert!(!ours.contains(suite), "{}", name(*suite));
            assert_ne!(
                why_unsupported(*suite),
                "not implemented",
                "{}",
                name(*suite)
            );
        }
    }
}

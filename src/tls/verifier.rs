//! Verification of a directory server's certificate: the CA chain, the pins,
//! or both. Handshake signatures are always checked by rustls; this module
//! adds only the trust policy.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::{
    CertificateError, DigitallySignedStruct, Error, OtherError, RootCertStore, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::pin::{CertFingerprints, Pin};

/// The certificate a server presented matched none of the configured pins.
#[derive(Debug, Clone)]
pub struct PinMismatch {
    /// The fingerprints of what the server presented, in both pin forms.
    pub presented: CertFingerprints,
}

impl fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "certificate matches no configured pin; it presented {} (SPKI) / {} (leaf), subject {}",
            self.presented.spki, self.presented.leaf, self.presented.subject
        )
    }
}

impl std::error::Error for PinMismatch {}

impl PinMismatch {
    /// Finds a pin mismatch inside a TLS error, if that is what it was.
    pub fn from_tls_error(err: &Error) -> Option<&PinMismatch> {
        match err {
            Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
                inner.downcast_ref::<PinMismatch>()
            }
            _ => None,
        }
    }
}

/// What a directory server's certificate must satisfy.
#[derive(Debug)]
pub enum Trust {
    /// Chain to these roots and match the host name.
    Roots(RootCertStore),
    /// Match one of these pins; chain and name are not checked.
    Pins(Vec<Pin>),
    /// Both of the above.
    RootsAndPins(RootCertStore, Vec<Pin>),
    /// Anything; only for printing a certificate's fingerprint so that it can
    /// be pinned. Never used for a connection that carries data.
    FingerprintOnly,
}

/// A `ServerCertVerifier` enforcing a [`Trust`] policy.
#[derive(Debug)]
pub struct PinnedCertVerifier {
    chain: Option<Arc<WebPkiServerVerifier>>,
    /// The roots `chain` verifies against, kept to rebuild the verified
    /// path for [`Self::chain_in_force`].
    roots: Option<Arc<RootCertStore>>,
    pins: Vec<Pin>,
    provider: Arc<CryptoProvider>,
}

impl PinnedCertVerifier {
    pub fn new(trust: Trust, provider: Arc<CryptoProvider>) -> Result<Self, rustls::Error> {
        let (roots, pins) = match trust {
            Trust::Roots(roots) => (Some(Arc::new(roots)), Vec::new()),
            Trust::Pins(pins) => (None, pins),
            Trust::RootsAndPins(roots, pins) => (Some(Arc::new(roots)), pins),
            Trust::FingerprintOnly => (None, Vec::new()),
        };
        let chain = roots
            .as_ref()
            .map(|roots| {
                WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                    .build()
                    .map_err(|e| rustls::Error::General(format!("CA bundle: {e}")))
            })
            .transpose()?;
        Ok(Self {
            chain,
            roots,
            pins,
            provider,
        })
    }

    /// The certificates whose validity this verifier's decision rests on,
    /// leaf first, for a `served` chain it accepted at `now`.
    ///
    /// With a CA bundle that is the path webpki builds from the leaf through
    /// the served intermediates to a trust anchor: certificates a server
    /// sends that are not on the path do not count, and neither does the
    /// anchor, which webpki takes as given (RFC 5280 §6.1.1 (d): trust
    /// anchor information, not a certificate whose validity is checked).
    /// With pins alone (or for a fingerprint), nothing is chained, so every
    /// certificate served counts.
    pub fn chain_in_force(
        &self,
        served: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Vec<CertificateDer<'static>> {
        let all_served = || served.iter().map(|c| c.clone().into_owned()).collect();
        let (Some(roots), Some((leaf, intermediates))) = (&self.roots, served.split_first()) else {
            return all_served();
        };
        let Ok(end_entity) = webpki::EndEntityCert::try_from(leaf) else {
            return all_served();
        };
        let path = end_entity.verify_for_usage(
            self.provider.signature_verification_algorithms.all,
            &roots.roots,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        );
        match path {
            Ok(path) => std::iter::once(leaf.clone().into_owned())
                .chain(
                    path.intermediate_certificates()
                        .map(|c| c.der().into_owned()),
                )
                .collect(),
            // Accepted a moment ago, refused now: a certificate expired in
            // between. The served chain holds it, so its date is reported.
            Err(_) => all_served(),
        }
    }
}

impl ServerCertVerifier for PinnedCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if let Some(chain) = &self.chain {
            chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        }
        if !self.pins.is_empty() {
            let presented = CertFingerprints::of(end_entity)
                .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
            if !presented.matches_any(&self.pins) {
                return Err(Error::InvalidCertificate(CertificateError::Other(
                    OtherError(Arc::new(PinMismatch { presented })),
                )));
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

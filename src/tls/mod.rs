//! TLS for both legs, by rustls: certificate pins and the verifier that
//! enforces them, PEM loading, and the configs for listeners and upstreams.

pub mod expiry;
pub mod pin;
pub mod probe;
pub mod suites;
pub mod verifier;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

pub use expiry::ChainExpiry;
pub use pin::{CertFingerprints, Pin};
pub use suites::Incompatibility;
pub use verifier::{PinMismatch, PinnedCertVerifier};

/// A TLS file that could not be used.
#[derive(Debug, Error)]
pub enum TlsFileError {
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { path: PathBuf },
    #[error("{path}: certificate {index} is not usable as a trust anchor: {reason}")]
    BadAnchor {
        path: PathBuf,
        index: usize,
        reason: String,
    },
    #[error("certificate {cert} and key {key} do not form a usable pair: {reason}")]
    BadPair {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

/// The crypto provider used everywhere (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads every certificate from a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let read_err = |reason: String| TlsFileError::Read {
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| read_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsFileError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// Reads a private key from a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsFileError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsFileError::NoKey {
            path: path.to_owned(),
        },
        other => TlsFileError::Read {
            path: path.to_owned(),
            reason: other.to_string(),
        },
    })
}

/// Reads a CA bundle into a root store.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsFileError> {
    let mut roots = RootCertStore::empty();
    for (index, cert) in load_certs(path)?.into_iter().enumerate() {
        roots.add(cert).map_err(|e| TlsFileError::BadAnchor {
            path: path.to_owned(),
            index,
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// The platform's trust store, for upstreams configured with neither
/// `ca_file` nor `pins`.
pub fn native_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    // Unreadable system certificates are skipped: verification then fails
    // with a clear "unknown issuer" naming the server, which is the right
    // place to learn of it.
    let found = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(found.certs);
    roots
}

/// A listener's TLS configuration from a certificate chain and key.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsFileError> {
    let chain = load_certs(cert)?;
    let key_der = load_key(key)?;
    let bad_pair = |reason: String| TlsFileError::BadPair {
        cert: cert.to_owned(),
        key: key.to_owned(),
        reason,
    };
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad_pair(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| bad_pair(e.to_string()))?;
    Ok(Arc::new(config))
}

/// TLS towards a directory server: the connector, and the verifier it
/// checks certificates with, kept to tell which certificates a verified
/// chain holds (for its expiry).
#[derive(Clone)]
pub struct DirectoryTls {
    pub connector: tokio_rustls::TlsConnector,
    pub verifier: Arc<PinnedCertVerifier>,
}

impl DirectoryTls {
    /// Connector and verifier enforcing `trust`.
    pub fn new(trust: verifier::Trust) -> Result<Self, rustls::Error> {
        let verifier = Arc::new(PinnedCertVerifier::new(trust, provider())?);
        let connector = tokio_rustls::TlsConnector::from(client_config(verifier.clone())?);
        Ok(DirectoryTls {
            connector,
            verifier,
        })
    }
}

/// A client configuration that verifies with `verifier`.
pub fn client_config(
    verifier: Arc<dyn rustls::client::danger::ServerCertVerifier>,
) -> Result<Arc<ClientConfig>, rustls::Error> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

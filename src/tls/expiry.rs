//! When a certificate chain stops verifying: the earliest `notAfter`
//! (RFC 5280 §4.1.2.5) among the certificates a verification rests on.
//!
//! A 90-day leaf under an intermediate that expires in 3 days stops
//! verifying in 3 days, so the leaf's own `notAfter` is not the answer:
//! every certificate of the chain counts, and the report names the one that
//! expires first so that the operator knows what to renew.

use std::fmt;

use x509_parser::prelude::{FromDer, X509Certificate};

use super::pin::CertParseError;

/// The certificate of a chain that expires first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainExpiry {
    /// Its `notAfter`, in seconds since the Unix epoch.
    pub not_after_unix: i64,
    /// The same instant in RFC 2822 form, as `ldapgate fingerprint` prints it.
    pub not_after: String,
    /// Its subject DN.
    pub subject: String,
    /// Its place in the chain: 0 is the leaf, 1 the certificate that
    /// issued it, and so on.
    pub position: usize,
    /// How many certificates the chain holds.
    pub chain_len: usize,
}

impl ChainExpiry {
    /// The earliest `notAfter` of `chain` (DER certificates, leaf first);
    /// None for an empty chain. On equal dates the certificate nearest the
    /// leaf is named. Every certificate must parse: one that does not cannot
    /// be verified either, and guessing around it would hide that.
    pub fn of<C: AsRef<[u8]>>(chain: &[C]) -> Result<Option<ChainExpiry>, CertParseError> {
        let mut earliest: Option<ChainExpiry> = None;
        for (position, der) in chain.iter().enumerate() {
            let (_, cert) = X509Certificate::from_der(der.as_ref())
                .map_err(|e| CertParseError::at(position, e.to_string()))?;
            let not_after = cert.validity().not_after;
            let unix = not_after.timestamp();
            if earliest.as_ref().is_some_and(|e| e.not_after_unix <= unix) {
                continue;
            }
            earliest = Some(ChainExpiry {
                not_after_unix: unix,
                not_after: not_after
                    .to_rfc2822()
                    .unwrap_or_else(|_| not_after.to_string()),
                subject: cert.subject().to_string(),
                position,
                chain_len: chain.len(),
            });
        }
        Ok(earliest)
    }

    /// Whole days from `now_unix` (seconds since the epoch) until it
    /// expires; negative once it has.
    pub fn days_left(&self, now_unix: i64) -> i64 {
        (self.not_after_unix - now_unix).div_euclid(86_400)
    }

    /// True when the certificate that expires first is the leaf, whose
    /// renewal also changes a leaf pin (and an SPKI pin when the key is
    /// replaced).
    pub fn is_leaf(&self) -> bool {
        self.position == 0
    }
}

impl fmt::Display for ChainExpiry {
    /// Which certificate it is: "the leaf certificate CN=dc1 (1 of 2)" or
    /// "chain[1] CN=Issuing CA (2 of 3)".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let role = if self.is_leaf() {
            "the leaf certificate".to_owned()
        } else {
            format!("chain[{}]", self.position)
        };
        write!(
            f,
            "{role} {} ({} of {})",
            self.subject,
            self.position + 1,
            self.chain_len
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

    fn params(cn: &str, days: i64, ca: bool) -> CertificateParams {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.not_after = time_in_days(days);
        if ca {
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        }
        p
    }

    fn time_in_days(days: i64) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc() + time::Duration::days(days)
    }

    /// root (10 years) → intermediate (`mid` days) → leaf (`leaf` days).
    fn chain(mid: i64, leaf: i64) -> Vec<Vec<u8>> {
        let root_key = KeyPair::generate().unwrap();
        let root_params = params("Root", 3650, true);
        let root = root_params.self_signed(&root_key).unwrap();
        let root_issuer = Issuer::new(root_params, root_key);
        let mid_key = KeyPair::generate().unwrap();
        let mid_params = params("Intermediate", mid, true);
        let mid_cert = mid_params.signed_by(&mid_key, &root_issuer).unwrap();
        let mid_issuer = Issuer::new(mid_params, mid_key);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf_cert = params("leaf", leaf, false)
            .signed_by(&leaf_key, &mid_issuer)
            .unwrap();
        vec![
            leaf_cert.der().to_vec(),
            mid_cert.der().to_vec(),
            root.der().to_vec(),
        ]
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    #[test]
    fn an_intermediate_that_expires_first_is_named() {
        let e = ChainExpiry::of(&chain(3, 90)).unwrap().unwrap();
        assert_eq!((e.position, e.chain_len), (1, 3));
        assert_eq!(e.subject, "CN=Intermediate");
        // 3 days less the time elapsed since the certificate was made, which
        // rounds to whole seconds.
        assert!((2..=3).contains(&e.days_left(now())));
        assert!(!e.is_leaf());
        assert_eq!(e.to_string(), "chain[1] CN=Intermediate (2 of 3)");
    }

    #[test]
    fn a_leaf_that_expires_first_is_named() {
        let e = ChainExpiry::of(&chain(400, 90)).unwrap().unwrap();
        assert!(e.is_leaf());
        assert!((89..=90).contains(&e.days_left(now())));
        assert_eq!(e.to_string(), "the leaf certificate CN=leaf (1 of 3)");
    }

    #[test]
    fn empty_and_unparsable_chains() {
        assert_eq!(ChainExpiry::of::<Vec<u8>>(&[]).unwrap(), None);
        let mut bad = chain(3, 90);
        bad[1] = vec![0x30, 0x03, 0x02, 0x01, 0x00];
        let err = ChainExpiry::of(&bad).unwrap_err();
        assert!(err.to_string().contains("chain[1]"), "{err}");
    }
}

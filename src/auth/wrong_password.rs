//! The directory's answer to a wrong password, which a login that names no
//! entry gets too: an LDAP client must not tell an unknown login from a
//! wrong password by the answer's diagnostic (AD's `data 52e`, slapd's
//! empty text) any more than by its result code.

use std::sync::{Mutex, PoisonError};

use bytes::Bytes;

use crate::ldap::dn::Dn;

/// The latest BindResponse the directory gave a wrong password (message
/// ID ldapgate's own), and the DN to ask with when none was seen yet.
pub struct WrongPasswordReply {
    reply: Mutex<Option<Bytes>>,
    probe_dn: String,
}

impl WrongPasswordReply {
    /// Nothing learned yet, for a directory whose entries are below `base_dn`.
    pub fn new(base_dn: &Dn) -> WrongPasswordReply {
        WrongPasswordReply {
            reply: Mutex::new(None),
            probe_dn: format!("cn=ldapgate-no-such-entry,{base_dn}"),
        }
    }

    /// The answer learned, if any.
    pub fn known(&self) -> Option<Bytes> {
        // A poisoned lock only means a panic elsewhere; the value stands.
        self.reply
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Remembers the directory's latest answer to a wrong password.
    pub fn learn(&self, pdu: &Bytes) -> Bytes {
        *self.reply.lock().unwrap_or_else(PoisonError::into_inner) = Some(pdu.clone());
        pdu.clone()
    }

    /// A DN below base_dn that names no entry: a bind to it with a random
    /// password gets the directory's wrong-password answer without adding
    /// to any account's failure count.
    pub fn probe_dn(&self) -> &str {
        &self.probe_dn
    }
}

/// 32 random bytes in hex, a password no entry has; None without the OS RNG.
pub fn random_password() -> Option<String> {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_answer_is_kept_and_the_probe_is_below_base_dn() {
        let base = Dn::parse("dc=example,dc=com").unwrap();
        let answers = WrongPasswordReply::new(&base);
        assert_eq!(answers.known(), None);
        answers.learn(&Bytes::from_static(b"first"));
        answers.learn(&Bytes::from_static(b"second"));
        assert_eq!(answers.known().as_deref(), Some(&b"second"[..]));
        let probe = Dn::parse(answers.probe_dn()).unwrap();
        assert!(probe.is_within(&base) && probe != base);
        let (a, b) = (random_password().unwrap(), random_password().unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}

//! The tenant's key: from `key_file`, or (without one) kept in the store
//! itself and read again at every probe, so that a store that lost its
//! data and got a new key is followed by every instance.

use std::sync::RwLock;

use ring::hmac;

use crate::config::ClusterKey;

/// Where the instances keep their shared key when none has `key_file`.
pub const STORED_KEY: &str = "ldapgate:cluster-key";

/// The key holding [`check_value`] of the key the instances use: the first
/// instance to probe writes it, every other compares.
pub const KEY_CHECK: &str = "ldapgate:key-check";

/// Key bytes and what they make.
#[derive(Clone)]
struct Material {
    bytes: Vec<u8>,
    hmac: hmac::Key,
    check: String,
}

impl Material {
    fn new(bytes: &[u8]) -> Material {
        Material {
            bytes: bytes.to_vec(),
            hmac: hmac::Key::new(hmac::HMAC_SHA256, bytes),
            check: check_value(bytes),
        }
    }
}

/// A value that tells keys apart without revealing them: HMAC-SHA256 of a
/// constant under `key`, in hex.
pub fn check_value(key: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    hex(hmac::sign(&key, b"ldapgate key check").as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The tenant's key as this instance knows it.
pub struct TenantKey {
    /// From `key_file`: fixed for the life of the process.
    fixed: bool,
    current: RwLock<Option<Material>>,
}

impl TenantKey {
    pub fn new(configured: Option<&ClusterKey>) -> TenantKey {
        TenantKey {
            fixed: configured.is_some(),
            current: RwLock::new(configured.map(|k| Material::new(k.expose()))),
        }
    }

    /// Whether the key comes from `key_file` (else from the store).
    pub fn is_configured(&self) -> bool {
        self.fixed
    }

    /// Takes the key the store keeps (no-op with `key_file`); true when it
    /// replaced another one.
    pub fn adopt(&self, stored: &[u8]) -> bool {
        if self.fixed {
            return false;
        }
        let Ok(mut current) = self.current.write() else {
            return false;
        };
        let changed = current.as_ref().is_some_and(|m| m.bytes != stored);
        if current.as_ref().is_none_or(|m| m.bytes != stored) {
            *current = Some(Material::new(stored));
        }
        changed
    }

    /// [`check_value`] of the key, once known.
    pub fn check(&self) -> Option<String> {
        self.material().map(|m| m.check)
    }

    fn material(&self) -> Option<Material> {
        self.current.read().ok().and_then(|m| m.clone())
    }

    /// HMAC-SHA256 of `parts` (each preceded by its length, so that
    /// ("ab","c") and ("a","bc") differ); None while no key is known.
    pub fn sign(&self, parts: &[&[u8]]) -> Option<Vec<u8>> {
        let material = self.material()?;
        let mut ctx = hmac::Context::with_key(&material.hmac);
        for part in parts {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        Some(ctx.sign().as_ref().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_key_is_followed_and_a_configured_one_is_not() {
        let stored = TenantKey::new(None);
        assert!(stored.sign(&[b"x"]).is_none(), "no key before the store");
        assert!(!stored.adopt(b"first"));
        let one = stored.sign(&[b"x"]).unwrap();
        assert!(!stored.adopt(b"first"), "the same key is no change");
        assert!(stored.adopt(b"second"));
        assert_ne!(stored.sign(&[b"x"]).unwrap(), one);
        assert_eq!(stored.check().unwrap(), check_value(b"second"));

        let file = std::env::temp_dir().join(format!("ldapgate-key-test-{}", std::process::id()));
        std::fs::write(&file, [9u8; 32]).unwrap();
        let text = format!(
            "[server]\nldap_listen = [\"127.0.0.1:1\"]\n[directory]\nservers = [\"ldap://h\"]\n\
             starttls = false\nbase_dn = \"dc=x\"\n[cluster]\nstore = \"redis://h\"\nkey_file = \"{}\"\n",
            file.display()
        );
        let config = crate::config::Config::parse(&text, std::path::Path::new("t")).unwrap();
        std::fs::remove_file(&file).unwrap();
        let fixed = TenantKey::new(config.cluster.unwrap().key.as_ref());
        let before = fixed.sign(&[b"x"]).unwrap();
        assert!(!fixed.adopt(b"other"));
        assert_eq!(fixed.sign(&[b"x"]).unwrap(), before);
        assert_ne!(fixed.sign(&[b"a", b"bc"]), fixed.sign(&[b"ab", b"c"]));
    }
}

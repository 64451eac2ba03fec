//! What a part of the configuration was made of, as a digest: its TOML
//! text and the contents of the files it names. A reload keeps what it
//! built from a part whose digest did not change (a directory's pool,
//! caches and limiter), and rebuilds the rest, certificates and secrets
//! that changed on disk included.

use sha2::{Digest, Sha256};

/// SHA-256 over a part's TOML and its files' contents; equal digests mean
/// the part would build the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SourceDigest([u8; 32]);

impl SourceDigest {
    /// The digest of `parts` (TOML values, absent ones included as such)
    /// and of the contents of `files` (paths as written; a file that cannot
    /// be read counts as its error, so a file appearing changes the digest).
    pub(super) fn of(parts: &[Option<&toml::Value>], files: &[Option<&str>]) -> SourceDigest {
        let mut hash = Sha256::new();
        for part in parts {
            // Value's Display is its TOML text, in a stable key order.
            let text = part.map(ToString::to_string).unwrap_or_default();
            hash.update((text.len() as u64).to_be_bytes());
            hash.update(text.as_bytes());
        }
        for file in files {
            let contents = match file {
                Some(path) => std::fs::read(path).unwrap_or_else(|e| e.to_string().into_bytes()),
                None => Vec::new(),
            };
            hash.update((contents.len() as u64).to_be_bytes());
            hash.update(&contents);
        }
        SourceDigest(hash.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_follows_the_text_and_the_files_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "one").unwrap();
        let path = file.to_str();
        let table: toml::Value = toml::from_str("a = 1\nb = \"x\"").unwrap();
        let reordered: toml::Value = toml::from_str("b = \"x\"\na = 1").unwrap();
        let other: toml::Value = toml::from_str("a = 2\nb = \"x\"").unwrap();
        let first = SourceDigest::of(&[Some(&table)], &[path]);
        assert_eq!(first, SourceDigest::of(&[Some(&reordered)], &[path]));
        assert_ne!(first, SourceDigest::of(&[Some(&other)], &[path]));
        assert_ne!(first, SourceDigest::of(&[Some(&table), None], &[path]));
        std::fs::write(&file, "two").unwrap();
        assert_ne!(first, SourceDigest::of(&[Some(&table)], &[path]));
    }
}

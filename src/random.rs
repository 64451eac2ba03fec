//! Random values: sync cookies, turn tokens, keys made on first use.

/// `bytes` random bytes from the system RNG, as lowercase hex. Without the
/// OS RNG the time serves instead: still unique per call in practice, only
/// guessable, which none of the values made here need resist (keys that
/// must be secret come from files).
pub fn hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut buf).is_err() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        return format!("{now:032x}");
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

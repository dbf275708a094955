//! Stable hashes and unique tokens: what sharding, schedule offsets, reload fingerprints,
//! probe messages and JWT ids need, with no dependency on the rest of mailprobe.

use std::hash::Hasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// FNV-1a: a stable hash (unlike std's `DefaultHasher`) for fingerprints and schedule offsets.
#[derive(Clone, Copy)]
pub struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv64 {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// A stable 64-bit hash of a string.
pub fn stable_hash(s: &str) -> u64 {
    let mut h = Fnv64::default();
    h.write(s.as_bytes());
    h.finish()
}

/// A token that no other probe message has: time, process and a counter, hashed with a
/// per-process random key.
pub fn unique_token() -> String {
    use std::hash::BuildHasher;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static KEY: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    let key = KEY.get_or_init(std::collections::hash_map::RandomState::new);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let a = key.hash_one((now, n, std::process::id()));
    let b = key.hash_one((a, n));
    format!("{a:016x}{b:08x}", b = b as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_is_stable_across_runs_and_versions() {
        // FNV-1a's published test vector: "a" → 0xaf63dc4c8601ec8c.
        assert_eq!(stable_hash("a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn tokens_are_unique_and_hex() {
        let a = unique_token();
        let b = unique_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 24);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }
}

//! Deterministic ids: hashes of length-prefixed parts, shaped as UUIDs, so
//! that a redelivered input yields the same result id.

use sha2::{Digest, Sha256};

/// Deterministic id of the result of `cause` produced by `worker` with
/// `model_version`: a redelivered input yields the same result id.
pub fn result_id(cause_source: &str, cause_id: &str, worker: &str, model_version: &str) -> String {
    stable_id(&[cause_source, cause_id, worker, model_version])
}

/// A hash of length-prefixed parts, formatted as a UUID-shaped string.
pub fn stable_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    // Mark it as a version-8 (custom) UUID so it is a well-formed UUID.
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    // Encoded into a stack buffer: `to_string` goes through the formatter.
    uuid::Uuid::from_bytes(b).hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_ids_are_deterministic() {
        assert_eq!(result_id("s", "1", "w", "v1"), result_id("s", "1", "w", "v1"));
        assert_ne!(result_id("s", "1", "w", "v1"), result_id("s", "1", "w", "v2"));
        assert_ne!(stable_id(&["ab", "c"]), stable_id(&["a", "bc"]));
    }
}

//! Ed25519 signing and the strict verification rule of §4.1.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

/// Signs `msg`.
pub fn sign(key: &SigningKey, msg: &[u8]) -> [u8; 64] {
    key.sign(msg).to_bytes()
}

/// RFC 8032 verification with ed25519-dalek's `verify_strict` checks
/// (canonical `s`, no small-order `R` or public key). A signature that is
/// not exactly 64 bytes never verifies.
pub fn verify_strict(key: &VerifyingKey, msg: &[u8], sig: &[u8]) -> bool {
    let Ok(bytes) = <[u8; 64]>::try_from(sig) else {
        return false;
    };
    key.verify_strict(msg, &Signature::from_bytes(&bytes))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_tampering_is_caught() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let sig = sign(&key, b"hello");
        assert!(verify_strict(&key.verifying_key(), b"hello", &sig));
        assert!(!verify_strict(&key.verifying_key(), b"hellp", &sig));
        assert!(!verify_strict(&key.verifying_key(), b"hello", &sig[..63]));
        let mut bad = sig;
        bad[10] ^= 1;
        assert!(!verify_strict(&key.verifying_key(), b"hello", &bad));
    }

    #[test]
    fn non_canonical_s_is_rejected() {
        // s + L (the group order) verifies under lax rules but not strictly.
        let key = SigningKey::from_bytes(&[5; 32]);
        let mut sig = sign(&key, b"m");
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut carry = 0u16;
        for i in 0..32 {
            let sum = u16::from(sig[32 + i]) + u16::from(L[i]) + carry;
            sig[32 + i] = sum as u8;
            carry = sum >> 8;
        }
        assert!(!verify_strict(&key.verifying_key(), b"m", &sig));
    }

    #[test]
    fn small_order_public_key_is_rejected() {
        // The identity point: every signature "verifies" under a naive check.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let key = VerifyingKey::from_bytes(&identity).expect("decodes");
        let mut sig = [0u8; 64];
        sig[0] = 1; // R = identity, s = 0
        assert!(!verify_strict(&key, b"anything", &sig));
    }
}

//! Encryption of secrets at rest (webhook URLs, OAuth tokens) with
//! XChaCha20-Poly1305 under a key derived from `PERLY_SECRET_KEY`. Each value
//! gets a random 24-byte nonce, stored in front of the ciphertext; the
//! workspace id and secret name are bound as associated data, so a ciphertext
//! copied to another workspace or name does not decrypt.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// Encrypts and decrypts secrets. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct SecretCipher {
    aead: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretCipher(<redacted>)")
    }
}

/// Decryption failed: wrong key, tampered data, or data bound to another name.
#[derive(Debug, thiserror::Error)]
#[error("secret could not be decrypted (wrong PERLY_SECRET_KEY or tampered data)")]
pub struct DecryptError;

const NONCE_LEN: usize = 24;

impl SecretCipher {
    /// Derives the 256-bit key from the configured secret (any length).
    pub fn new(secret: &SecretString) -> Self {
        let key = Sha256::digest(secret.expose_secret().as_bytes());
        Self {
            aead: XChaCha20Poly1305::new(&key),
        }
    }

    pub fn encrypt(&self, context: &str, plaintext: &str) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let payload = Payload {
            msg: plaintext.as_bytes(),
            aad: context.as_bytes(),
        };
        // Encryption with a valid key and nonce cannot fail for in-memory sizes.
        let sealed = self
            .aead
            .encrypt(XNonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend(sealed);
        out
    }

    pub fn decrypt(&self, context: &str, data: &[u8]) -> Result<String, DecryptError> {
        if data.len() < NONCE_LEN {
            return Err(DecryptError);
        }
        let (nonce, sealed) = data.split_at(NONCE_LEN);
        let plain = self
            .aead
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| DecryptError)?;
        String::from_utf8(plain).map_err(|_| DecryptError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher(k: &str) -> SecretCipher {
        SecretCipher::new(&SecretString::from(k.to_owned()))
    }

    #[test]
    fn round_trips_and_hides_the_plaintext() {
        let c = cipher("k1");
        let sealed = c.encrypt("ws1/slack", "https://hooks.slack.com/services/T/B/x");
        assert!(!String::from_utf8_lossy(&sealed).contains("hooks.slack.com"));
        assert_eq!(
            c.decrypt("ws1/slack", &sealed).expect("decrypts"),
            "https://hooks.slack.com/services/T/B/x"
        );
    }

    #[test]
    fn wrong_key_or_context_fails() {
        let sealed = cipher("k1").encrypt("ws1/slack", "secret");
        assert!(cipher("k2").decrypt("ws1/slack", &sealed).is_err());
        assert!(cipher("k1").decrypt("ws2/slack", &sealed).is_err());
        assert!(cipher("k1").decrypt("ws1/slack", &sealed[..10]).is_err());
        assert!(!format!("{:?}", cipher("k1")).contains("k1"));
    }
}

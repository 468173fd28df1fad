//! Credentials: argon2 password hashes for users, and API keys that are random,
//! shown once, and kept only as a SHA-256 hash (a key has 256 bits of entropy,
//! so a fast hash is safe and keeps every API request cheap).

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// Hashes a password for storage.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Checks a password against a stored hash.
pub fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// Takes as long as [`verify_password`] against a real hash (same
/// parameters, made once), for a sign-in whose email has no account, so the
/// time of the answer does not tell which accounts exist.
pub fn verify_no_account(password: &str) {
    let _ = verify_password(password, stand_in_hash());
}

fn stand_in_hash() -> &'static str {
    static STAND_IN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    STAND_IN.get_or_init(|| hash_password(&random_token(16)).unwrap_or_default())
}

/// A random printable secret of `bytes` bytes of entropy.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// A new API key: (plaintext shown once, prefix kept for display).
pub fn new_api_key() -> (String, String) {
    let secret = random_token(32);
    let plaintext = format!("perly_{secret}");
    let prefix = plaintext.chars().take(12).collect();
    (plaintext, prefix)
}

/// The stored form of an API key.
pub fn api_key_hash(plaintext: &str) -> String {
    hex::encode(Sha256::digest(plaintext.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_with_the_right_password() {
        let h = hash_password("correct horse").expect("hash");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[test]
    fn the_stand_in_for_unknown_accounts_is_a_real_hash_with_the_same_parameters() {
        let stand_in = PasswordHash::new(stand_in_hash()).expect("a real hash");
        let real = hash_password("x").expect("hash");
        let real = PasswordHash::new(&real).expect("parses");
        assert_eq!(stand_in.algorithm, real.algorithm);
        assert_eq!(stand_in.params, real.params);
        verify_no_account("anything");
    }

    #[test]
    fn api_keys_are_unique_and_hashed() {
        let (a, prefix) = new_api_key();
        let (b, _) = new_api_key();
        assert_ne!(a, b);
        assert!(a.starts_with("perly_") && a.starts_with(&prefix));
        assert_ne!(api_key_hash(&a), a);
        assert_eq!(api_key_hash(&a), api_key_hash(&a));
    }
}

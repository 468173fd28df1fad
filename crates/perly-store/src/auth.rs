//! Credentials: argon2 password hashes for users, the rules a new password
//! must meet, and API keys that are random, shown once, and kept only as a
//! SHA-256 hash (a key has 256 bits of entropy, so a fast hash is safe and
//! keeps every API request cheap).

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

/// Sign-in checks at least this many hashes, whatever the number of
/// accounts with the email, so the time of the answer does not tell how many
/// there are (0 to 3 cost the same; more than 3 take longer).
pub const MIN_PASSWORD_CHECKS: usize = 3;

/// Which of the `stored` hashes `password` opens, in order. Runs at least
/// [`MIN_PASSWORD_CHECKS`] verifications, padding with a stand-in hash of
/// the same parameters (made once, never matched).
pub fn verify_each(password: &str, stored: &[&str]) -> Vec<bool> {
    verify_each_with(password, stored, verify_password)
}

fn verify_each_with(password: &str, stored: &[&str], mut verify: impl FnMut(&str, &str) -> bool) -> Vec<bool> {
    let opened = stored.iter().map(|hash| verify(password, hash)).collect();
    for _ in stored.len()..MIN_PASSWORD_CHECKS {
        let _ = verify(password, stand_in_hash());
    }
    opened
}

fn stand_in_hash() -> &'static str {
    static STAND_IN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    STAND_IN.get_or_init(|| hash_password(&random_token(16)).unwrap_or_default())
}

/// Fewest characters in a new password.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Most characters in a new password.
pub const MAX_PASSWORD_CHARS: usize = 128;

/// The most common passwords (from public breach lists), one a line,
/// lowercase: a new password that is one of them is refused.
const COMMON_PASSWORDS: &str = include_str!("common_passwords.txt");

/// Why a new password is refused; the text is shown to the person choosing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WeakPassword {
    #[error("Use at least 12 characters (a few words in a row are easy to remember)")]
    TooShort,
    #[error("Use at most 128 characters")]
    TooLong,
    #[error("This is one of the most common passwords (on Perly's list of common passwords); choose another")]
    Common,
    #[error("Use more different characters: this repeats just a few")]
    Repetitive,
}

/// Checks a new password: 12 to 128 characters (any Unicode; a run of
/// spaces counts as one), at least five different characters, and not on
/// the list of common passwords (compared ignoring case, and also without
/// the digits and punctuation tacked on at its end: `Password2024!!!`).
/// Passwords already set are not checked again.
pub fn check_new_password(password: &str) -> Result<(), WeakPassword> {
    let collapsed = password.split_whitespace().collect::<Vec<_>>().join(" ");
    let chars = collapsed.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(WeakPassword::TooShort);
    }
    if password.chars().count() > MAX_PASSWORD_CHARS {
        return Err(WeakPassword::TooLong);
    }
    let distinct: std::collections::HashSet<char> = collapsed.chars().collect();
    if distinct.len() < 5 {
        return Err(WeakPassword::Repetitive);
    }
    let lower = collapsed.to_lowercase();
    let stem = lower.trim_end_matches(|c: char| c.is_ascii_digit() || c.is_ascii_punctuation() || c == ' ');
    if COMMON_PASSWORDS.lines().any(|common| common == lower || common == stem) {
        return Err(WeakPassword::Common);
    }
    Ok(())
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
        assert_eq!(verify_each("anything", &[]), Vec::<bool>::new());
    }

    #[test]
    fn sign_in_runs_as_many_verifications_for_zero_to_three_accounts() {
        let hashes = ["h1", "h2", "h3", "h4"];
        let mut counts = Vec::new();
        for accounts in 0..=4 {
            let mut calls = 0;
            let opened = verify_each_with("pw", &hashes[..accounts], |_, hash| {
                calls += 1;
                hash == "h2"
            });
            assert_eq!(opened, (0..accounts).map(|i| i == 1).collect::<Vec<_>>());
            counts.push(calls);
        }
        assert_eq!(
            counts,
            [3, 3, 3, 3, 4],
            "0–3 accounts cost the same; a 4th costs one more"
        );
    }

    #[test]
    fn verify_each_tells_which_accounts_the_password_opens() {
        let right = hash_password("correct horse").expect("hash");
        let wrong = hash_password("other horse").expect("hash");
        assert_eq!(verify_each("correct horse", &[&wrong, &right]), [false, true]);
    }

    #[test]
    fn new_passwords_need_12_to_128_characters_and_not_a_common_one() {
        assert_eq!(check_new_password("short pass1"), Err(WeakPassword::TooShort));
        assert_eq!(check_new_password("twelve chars"), Ok(()));
        // Characters, not bytes: 12 non-ASCII characters are enough.
        assert_eq!(check_new_password("ñandú ñandú!"), Ok(()));
        assert_eq!(check_new_password("我的密码是一句很长的话呢"), Ok(()));
        assert_eq!(
            check_new_password(&"éàüöß ".repeat(21)[..].chars().take(128).collect::<String>()),
            Ok(())
        );
        // A run of spaces counts once; a few characters over and over are not enough.
        assert_eq!(check_new_password("a b      c d"), Err(WeakPassword::TooShort));
        assert_eq!(check_new_password(&" ".repeat(12)), Err(WeakPassword::TooShort));
        assert_eq!(check_new_password("abababababab"), Err(WeakPassword::Repetitive));
        assert_eq!(
            check_new_password("密码密码密码密码密码密码"),
            Err(WeakPassword::Repetitive)
        );
        // A common password with digits or punctuation tacked on is still common.
        assert_eq!(check_new_password("Password2024!!!"), Err(WeakPassword::Common));
        assert_eq!(check_new_password("sunshine 12345"), Err(WeakPassword::Common));
        assert_eq!(check_new_password(&"a".repeat(129)), Err(WeakPassword::TooLong));
        assert_eq!(check_new_password("password1234"), Err(WeakPassword::Common));
        assert_eq!(
            check_new_password("Qwerty123456"),
            Err(WeakPassword::Common),
            "any case"
        );
        assert!(WeakPassword::Common.to_string().contains("common passwords"));
    }

    #[test]
    fn the_common_password_list_is_lowercase_and_tidy() {
        let lines: Vec<&str> = COMMON_PASSWORDS.lines().collect();
        assert!(lines.len() >= 300, "{}", lines.len());
        for l in &lines {
            assert!(!l.is_empty() && *l == l.trim() && *l == l.to_lowercase(), "{l:?}");
        }
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

//! Encryption of secrets at rest (webhook URLs, the Salesforce refresh
//! token, OAuth flow state) with XChaCha20-Poly1305, under a [`Keyring`]: the
//! current key (`PERLY_SECRET_KEY`) and the keys it replaced
//! (`PERLY_PREVIOUS_SECRET_KEYS`).
//!
//! A key is 32 random bytes written as hex or base64 ([`SecretKey::parse`]);
//! passphrases, short keys and keys that are plainly not random are
//! refused. Two subkeys are derived from each key with HMAC-SHA-256: the
//! encryption key and an 8-byte key id, which names the key without saying
//! anything about it.
//!
//! A value sealed now is `C5 01 ‖ key id (8) ‖ nonce (24) ‖ ciphertext and
//! tag`, with a random nonce per value. The header and the value's context
//! (workspace and name) are bound as associated data, so a ciphertext copied
//! to another workspace or name does not decrypt. Opening looks the key id up
//! among the current and previous keys.
//!
//! Values written before key ids existed are `nonce ‖ ciphertext` under
//! SHA-256 of the configured text. They still open under the *legacy*
//! derivation of every configured key, current or previous; a previous
//! value that is not a valid key (an old passphrase) is kept for that alone
//! and never encrypts. `perly secrets rotate` re-seals every value under the
//! current key ([`Opened::current`] says which ones need it).

use std::sync::Arc;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::{Digest, Sha256};

/// Bytes in a key.
pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const ID_LEN: usize = 8;
/// First byte of a sealed value with a key id, then the format version.
const MAGIC: u8 = 0xC5;
const FORMAT: u8 = 1;
const HEADER_LEN: usize = 2 + ID_LEN;

/// Why a configured value is not a usable key. Never carries the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("it is empty")]
    Empty,
    #[error(
        "it is {0} characters of text, not 32 bytes written as hex (64 characters) or base64 (43 or 44 characters)"
    )]
    Encoding(usize),
    #[error("it decodes to {0} bytes, not 32")]
    Length(usize),
    #[error("it decodes to 32 bytes that are not random: {0}")]
    NotRandom(&'static str),
}

/// A 32-byte key. Its `Debug` never shows it.
pub struct SecretKey(SecretBox<[u8; KEY_LEN]>);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({})", self.id())
    }
}

impl SecretKey {
    /// Reads a key given as 64 hex characters or as base64 (standard or
    /// URL-safe alphabet, padded or not) of exactly 32 bytes, and refuses
    /// bytes that are plainly not random (see [`not_random`]).
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(KeyError::Empty);
        }
        let chars = text.chars().count();
        let is_hex = text.len().is_multiple_of(2) && text.bytes().all(|b| b.is_ascii_hexdigit());
        let bytes = if is_hex {
            hex::decode(text).map_err(|_| KeyError::Encoding(chars))?
        } else {
            [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD]
                .iter()
                .find_map(|engine| engine.decode(text).ok())
                .ok_or(KeyError::Encoding(chars))?
        };
        // Text that happens to be valid base64 (a passphrase of letters) is
        // reported as text, which is what it is.
        let bytes: [u8; KEY_LEN] = bytes.try_into().map_err(|b: Vec<u8>| {
            if is_hex {
                KeyError::Length(b.len())
            } else {
                KeyError::Encoding(chars)
            }
        })?;
        if let Some(why) = not_random(&bytes) {
            return Err(KeyError::NotRandom(why));
        }
        Ok(Self(SecretBox::new(Box::new(bytes))))
    }

    /// A new random key from the operating system's generator.
    pub fn generate() -> Self {
        let mut bytes = [0u8; KEY_LEN];
        OsRng.fill_bytes(&mut bytes);
        Self(SecretBox::new(Box::new(bytes)))
    }

    /// The key as 64 lowercase hex characters (what `perly secrets generate` prints).
    pub fn to_hex(&self) -> SecretString {
        SecretString::from(hex::encode(self.0.expose_secret()))
    }

    /// The key's id: stored beside every value it seals.
    pub fn id(&self) -> KeyId {
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&derive(self.0.expose_secret(), b"perly secret key id v1")[..ID_LEN]);
        KeyId(id)
    }

    fn sealer(&self) -> Sealer {
        let key = derive(self.0.expose_secret(), b"perly secret encryption v1");
        Sealer {
            id: self.id(),
            aead: XChaCha20Poly1305::new(&key.into()),
        }
    }
}

/// HMAC-SHA-256 of `label` under `key`: a PRF, so outputs for different
/// labels are independent and none of them reveals the key.
fn derive(key: &[u8; KEY_LEN], label: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(label);
    mac.finalize().into_bytes().into()
}

/// Why 32 bytes are plainly not random, if they are. Cheap checks that a
/// random key fails with a probability below 10⁻¹³: every byte the same, a
/// counting sequence, a short pattern repeated (under 16 distinct values),
/// or nothing but printable ASCII (a passphrase written as hex).
pub fn not_random(bytes: &[u8; KEY_LEN]) -> Option<&'static str> {
    if bytes.iter().all(|&b| b == bytes[0]) {
        return Some("every byte is the same");
    }
    let step = bytes[1].wrapping_sub(bytes[0]);
    if bytes.windows(2).all(|w| w[1].wrapping_sub(w[0]) == step) {
        return Some("the bytes count up or down");
    }
    let mut seen = [false; 256];
    for &b in bytes {
        seen[usize::from(b)] = true;
    }
    if seen.iter().filter(|&&s| s).count() < 16 {
        return Some("a short pattern repeats");
    }
    if bytes.iter().all(|b| (0x20..0x7f).contains(b)) {
        return Some("every byte is printable text");
    }
    None
}

/// Names a key in stored values and in messages; derived from the key with
/// HMAC, so it says nothing about the key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId([u8; ID_LEN]);

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::fmt::Debug for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyId({self})")
    }
}

struct Sealer {
    id: KeyId,
    aead: XChaCha20Poly1305,
}

/// The current key, which seals, and the keys that still open what they
/// sealed. Its `Debug` shows key ids only.
pub struct Keyring {
    current: Sealer,
    previous: Vec<Sealer>,
    /// SHA-256 of each configured text: how values were sealed before key ids.
    legacy: Vec<XChaCha20Poly1305>,
    legacy_only: usize,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current.id)
            .field("previous", &self.previous.iter().map(|s| s.id).collect::<Vec<_>>())
            .field("legacy", &self.legacy.len())
            .finish()
    }
}

/// Which configured value is not a usable key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    #[error("the current secret key is not valid: {0}")]
    Current(#[source] KeyError),
    #[error("previous secret key number {0} is empty")]
    EmptyPrevious(usize),
}

/// The legacy keys of a configured text: SHA-256 of it, and of it trimmed
/// when that differs (the demo trimmed its key file; the environment did not).
fn legacy_aeads(text: &str) -> impl Iterator<Item = XChaCha20Poly1305> + '_ {
    let trimmed = (text.trim() != text).then(|| text.trim());
    std::iter::once(text)
        .chain(trimmed)
        .map(|t| XChaCha20Poly1305::new(&Sha256::digest(t.as_bytes())))
}

impl Keyring {
    /// The keyring of the configured texts: `current` must be a valid key
    /// ([`SecretKey::parse`]); each of `previous` is a valid key or an old
    /// passphrase, which only opens values sealed before key ids.
    pub fn new(current: &SecretString, previous: &[SecretString]) -> Result<Self, KeyringError> {
        let key = SecretKey::parse(current.expose_secret()).map_err(KeyringError::Current)?;
        let mut legacy: Vec<_> = legacy_aeads(current.expose_secret()).collect();
        let mut sealers = Vec::new();
        let mut legacy_only = 0;
        for (i, text) in previous.iter().enumerate() {
            let text = text.expose_secret();
            if text.trim().is_empty() {
                return Err(KeyringError::EmptyPrevious(i + 1));
            }
            match SecretKey::parse(text) {
                Ok(k) => sealers.push(k.sealer()),
                Err(_) => legacy_only += 1,
            }
            legacy.extend(legacy_aeads(text));
        }
        Ok(Self {
            current: key.sealer(),
            previous: sealers,
            legacy,
            legacy_only,
        })
    }

    /// One key only, e.g. a new random one for commands that never read secrets.
    pub fn single(key: &SecretKey) -> Self {
        Self {
            current: key.sealer(),
            previous: Vec::new(),
            legacy: Vec::new(),
            legacy_only: 0,
        }
    }

    /// The id of the key that seals.
    pub fn current_id(&self) -> KeyId {
        self.current.id
    }

    /// How many previous values are old passphrases (open legacy values only).
    pub fn legacy_only(&self) -> usize {
        self.legacy_only
    }
}

/// Encrypts and decrypts secrets with a [`Keyring`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SecretCipher {
    ring: Arc<Keyring>,
}

/// Decryption failed: no configured key opens it, it was tampered with, or
/// it is bound to another workspace or name.
#[derive(Debug, thiserror::Error)]
#[error("secret could not be decrypted (no configured secret key opens it, or the data was tampered with)")]
pub struct DecryptError;

/// An opened value. Its `Debug` never shows the plaintext.
pub struct Opened {
    pub plaintext: String,
    /// Sealed under the current key in the current format: nothing to rotate.
    pub current: bool,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened").field("current", &self.current).finish()
    }
}

fn header(id: KeyId) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0] = MAGIC;
    h[1] = FORMAT;
    h[2..].copy_from_slice(&id.0);
    h
}

impl SecretCipher {
    pub fn new(ring: Keyring) -> Self {
        Self { ring: Arc::new(ring) }
    }

    pub fn keyring(&self) -> &Keyring {
        &self.ring
    }

    /// Seals `plaintext` under the current key, bound to `context`.
    pub fn encrypt(&self, context: &str, plaintext: &str) -> Vec<u8> {
        let head = header(self.ring.current.id);
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let aad = [&head[..], context.as_bytes()].concat();
        let payload = Payload {
            msg: plaintext.as_bytes(),
            aad: &aad,
        };
        // Encryption with a valid key and nonce cannot fail for in-memory sizes.
        let sealed = self
            .ring
            .current
            .aead
            .encrypt(XNonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        let mut out = Vec::with_capacity(HEADER_LEN + NONCE_LEN + sealed.len());
        out.extend_from_slice(&head);
        out.extend_from_slice(&nonce);
        out.extend(sealed);
        out
    }

    pub fn decrypt(&self, context: &str, data: &[u8]) -> Result<String, DecryptError> {
        self.open(context, data).map(|o| o.plaintext)
    }

    /// Opens a value sealed by any key of the ring, in either format, and
    /// says whether it is sealed as [`Self::encrypt`] would seal it now.
    pub fn open(&self, context: &str, data: &[u8]) -> Result<Opened, DecryptError> {
        if data.len() >= HEADER_LEN + NONCE_LEN + TAG_LEN && data[0] == MAGIC && data[1] == FORMAT {
            let (head, rest) = data.split_at(HEADER_LEN);
            let sealer = std::iter::once(&self.ring.current)
                .chain(&self.ring.previous)
                .find(|s| s.id.0 == head[2..]);
            if let Some(s) = sealer {
                let (nonce, sealed) = rest.split_at(NONCE_LEN);
                let aad = [head, context.as_bytes()].concat();
                let opened = s
                    .aead
                    .decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad: &aad });
                if let Ok(plain) = opened {
                    let plaintext = String::from_utf8(plain).map_err(|_| DecryptError)?;
                    return Ok(Opened {
                        plaintext,
                        current: s.id == self.ring.current.id,
                    });
                }
            }
        }
        // Sealed before key ids: a random nonce, so it may even start like a
        // header; it is tried as legacy whenever the above did not open it.
        if data.len() < NONCE_LEN + TAG_LEN {
            return Err(DecryptError);
        }
        let (nonce, sealed) = data.split_at(NONCE_LEN);
        for aead in &self.ring.legacy {
            let payload = Payload {
                msg: sealed,
                aad: context.as_bytes(),
            };
            if let Ok(plain) = aead.decrypt(XNonce::from_slice(nonce), payload) {
                let plaintext = String::from_utf8(plain).map_err(|_| DecryptError)?;
                return Ok(Opened {
                    plaintext,
                    current: false,
                });
            }
        }
        Err(DecryptError)
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    const A: &str = "6f1c0e5a9b2d4c3e8f7a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6a";
    const B: &str = "Jx2Yp9QeL3vT8sK1mN6bR4wZ0aC5dF7gH2jU9iO3lE8=";

    fn s(text: &str) -> SecretString {
        SecretString::from(text.to_owned())
    }

    fn ring(current: &str, previous: &[&str]) -> SecretCipher {
        let previous: Vec<_> = previous.iter().map(|p| s(p)).collect();
        SecretCipher::new(Keyring::new(&s(current), &previous).expect("valid keyring"))
    }

    /// What Perly wrote before key ids: SHA-256 of the text, `nonce ‖ ciphertext`.
    fn legacy_seal(text: &str, context: &str, plaintext: &str) -> Vec<u8> {
        let nonce = [7u8; NONCE_LEN];
        let sealed = XChaCha20Poly1305::new(&Sha256::digest(text.as_bytes()))
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .expect("seal");
        [&nonce[..], &sealed].concat()
    }

    #[rstest]
    #[case::hex_lowercase(A, true)]
    #[case::hex_uppercase(&A.to_uppercase(), true)]
    #[case::hex_with_a_newline(&format!("{A}\n"), true)]
    #[case::base64_padded(B, true)]
    #[case::base64_unpadded(B.trim_end_matches('='), true)]
    #[case::base64_url_safe("_-2Yp9QeL3vT8sK1mN6bR4wZ0aC5dF7gH2jU9iO3lE8", true)]
    #[case::base64_standard_with_plus_and_slash("+/2Yp9QeL3vT8sK1mN6bR4wZ0aC5dF7gH2jU9iO3lE8=", true)]
    #[case::empty("", false)]
    #[case::short_hex("6f1c0e5a9b2d4c3e8f7a1b2c3d4e5f60", false)]
    #[case::hex_one_char_short(&A[..63], false)]
    #[case::passphrase("test-secret-key", false)]
    #[case::long_passphrase("correct horse battery staple, and then some more words", false)]
    #[case::all_zero(&"00".repeat(32), false)]
    #[case::all_one_byte(&"ab".repeat(32), false)]
    #[case::counting(&(0u8..32).map(|b| format!("{b:02x}")).collect::<String>(), false)]
    #[case::short_pattern(&"0123456789abcdef".repeat(4), false)]
    #[case::hex_of_ascii_text(&hex::encode("this is my password, 32 letters"), false)]
    #[case::base64_of_48_bytes(&STANDARD.encode([9u8; 48]), false)]
    fn keys_are_32_random_bytes_in_hex_or_base64(#[case] text: &str, #[case] ok: bool) {
        assert_eq!(
            SecretKey::parse(text).is_ok(),
            ok,
            "{text}: {:?}",
            SecretKey::parse(text)
        );
    }

    #[test]
    fn refusals_say_why_without_the_key() {
        let passphrase = SecretKey::parse("test-secret-key").expect_err("refused");
        assert!(passphrase.to_string().contains("64 characters"), "{passphrase}");
        assert!(!passphrase.to_string().contains("test-secret"));
        let zero = SecretKey::parse(&"00".repeat(32)).expect_err("refused");
        assert_eq!(zero, KeyError::NotRandom("every byte is the same"));
        assert_eq!(
            SecretKey::parse(&"ab".repeat(24)).expect_err("short"),
            KeyError::Length(24)
        );
    }

    #[test]
    fn generated_keys_parse_back_and_are_distinct() {
        let k = SecretKey::generate();
        let text = k.to_hex();
        assert_eq!(text.expose_secret().len(), 64);
        assert_eq!(SecretKey::parse(text.expose_secret()).expect("valid").id(), k.id());
        assert_ne!(SecretKey::generate().id(), k.id());
    }

    #[test]
    fn key_ids_are_stable_distinct_and_reveal_nothing_of_the_key() {
        let a = SecretKey::parse(A).expect("a");
        let b = SecretKey::parse(B).expect("b");
        assert_eq!(a.id(), SecretKey::parse(&A.to_uppercase()).expect("a").id());
        assert_ne!(a.id(), b.id());
        let id = a.id().to_string();
        assert_eq!(id.len(), 16);
        assert!(!A.contains(&id), "the id is not a piece of the key");
        assert!(!hex::encode(Sha256::digest(hex::decode(A).expect("hex"))).contains(&id));
        assert!(!format!("{a:?}").contains(&A[..16]));
    }

    #[test]
    fn round_trips_with_the_key_id_in_the_header_and_hides_the_plaintext() {
        let c = ring(A, &[]);
        let sealed = c.encrypt("ws1/slack", "https://hooks.slack.com/services/T/B/x");
        assert!(!String::from_utf8_lossy(&sealed).contains("hooks.slack.com"));
        assert_eq!(&sealed[..2], &[MAGIC, FORMAT]);
        let id = SecretKey::parse(A).expect("a").id();
        assert_eq!(sealed[2..10], id.0);
        let opened = c.open("ws1/slack", &sealed).expect("opens");
        assert_eq!(opened.plaintext, "https://hooks.slack.com/services/T/B/x");
        assert!(opened.current);
    }

    #[test]
    fn wrong_key_context_header_or_length_fails() {
        let sealed = ring(A, &[]).encrypt("ws1/slack", "secret");
        assert!(ring(B, &[]).decrypt("ws1/slack", &sealed).is_err());
        assert!(ring(A, &[]).decrypt("ws2/slack", &sealed).is_err());
        assert!(ring(A, &[]).decrypt("ws1/slack", &sealed[..20]).is_err());
        let mut flipped = sealed.clone();
        flipped[5] ^= 1;
        assert!(
            ring(A, &[]).decrypt("ws1/slack", &flipped).is_err(),
            "the key id is bound"
        );
        assert!(ring(A, &[]).decrypt("ws1/slack", b"garbage").is_err());
        assert!(!format!("{:?}", ring(A, &[])).contains(&A[..16]));
    }

    #[test]
    fn previous_keys_open_what_they_sealed_and_only_the_current_key_seals() {
        let old = ring(A, &[]).encrypt("ws1/x", "value");
        let rotated = ring(B, &[A]);
        let opened = rotated.open("ws1/x", &old).expect("previous key opens");
        assert_eq!(opened.plaintext, "value");
        assert!(!opened.current, "sealed by a previous key: needs rotation");
        let fresh = rotated.encrypt("ws1/x", "value");
        assert!(rotated.open("ws1/x", &fresh).expect("opens").current);
        assert!(ring(B, &[]).decrypt("ws1/x", &fresh).is_ok());
        assert!(
            ring(A, &[]).decrypt("ws1/x", &fresh).is_err(),
            "the previous key never seals"
        );
        assert!(ring(B, &[]).decrypt("ws1/x", &old).is_err(), "without A it is gone");
    }

    #[test]
    fn legacy_values_open_with_an_old_passphrase_or_an_unchanged_key() {
        let weak = legacy_seal("test-secret-key", "ws1/x", "legacy value");
        let ring_weak = ring(A, &["test-secret-key"]);
        assert_eq!(ring_weak.keyring().legacy_only(), 1);
        let opened = ring_weak.open("ws1/x", &weak).expect("legacy opens");
        assert_eq!(opened.plaintext, "legacy value");
        assert!(!opened.current);
        assert!(ring(A, &[]).decrypt("ws1/x", &weak).is_err());
        assert!(ring_weak.decrypt("ws2/x", &weak).is_err(), "context still bound");

        // An install that already had a strong key keeps it as the current key.
        let strong = legacy_seal(A, "ws1/x", "legacy value");
        let opened = ring(A, &[]).open("ws1/x", &strong).expect("legacy of the current key");
        assert!(!opened.current);
        assert!(ring(B, &[A]).decrypt("ws1/x", &strong).is_ok());
    }

    #[test]
    fn a_weak_current_key_or_an_empty_previous_one_is_refused() {
        let weak = Keyring::new(&s("test-secret-key"), &[]).expect_err("weak");
        assert!(matches!(weak, KeyringError::Current(KeyError::Encoding(15))), "{weak}");
        let empty = Keyring::new(&s(A), &[s(B), s(" ")]).expect_err("empty");
        assert_eq!(empty, KeyringError::EmptyPrevious(2));
    }
}

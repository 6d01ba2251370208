//! API keys: generation from caller-supplied entropy, hashing, and constant-time checks.
//! Keys are shown once and stored only as SHA-256 hashes.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Prefix of every generated key, so leaked keys are easy to recognise and scan for.
pub const KEY_PREFIX: &str = "hpk_";

/// A secret API key as presented by a client. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// A new key from 32 bytes of entropy supplied by the caller (from the OS RNG in production).
    pub fn from_entropy(bytes: [u8; 32]) -> Self {
        let mut key = String::with_capacity(KEY_PREFIX.len() + 64);
        key.push_str(KEY_PREFIX);
        for b in bytes {
            key.push_str(&format!("{b:02x}"));
        }
        Self(key)
    }

    /// Wraps a key configured by an operator (e.g. `HOMEPOT_ADMIN_KEY`).
    pub fn from_configured(key: String) -> Self {
        Self(key)
    }

    /// The secret itself, for showing it to its owner exactly once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The hash under which this key is stored.
    pub fn hash(&self) -> KeyHash {
        KeyHash::of(&self.0)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// SHA-256 of a key. Keys carry 256 bits of entropy, so an unsalted fast hash is enough:
/// there is nothing to brute-force that is cheaper than guessing the key itself.
/// Serialised as its stored hex form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyHash([u8; 32]);

impl TryFrom<String> for KeyHash {
    type Error = &'static str;

    fn try_from(hex: String) -> Result<Self, Self::Error> {
        Self::from_hex(&hex).ok_or("a key hash is 64 hex digits")
    }
}

impl From<KeyHash> for String {
    fn from(hash: KeyHash) -> Self {
        hash.to_hex()
    }
}

impl KeyHash {
    /// Hashes whatever a client presented.
    pub fn of(presented: &str) -> Self {
        Self(Sha256::digest(presented.as_bytes()).into())
    }

    /// Compares in constant time, so response timing reveals nothing about the stored hash.
    pub fn matches(&self, other: &KeyHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    /// Lower-case hex, as stored.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// `key:` and the first 16 hex digits of the hash: names a key in logs and analytics
    /// without revealing it (the stored hash starts with the same digits).
    pub fn fingerprint(&self) -> String {
        format!("key:{}", &self.to_hex()[..16])
    }

    /// Parses the stored hex form; `None` when it is not 64 hex digits.
    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self(out))
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({}…)", &self.to_hex()[..8])
    }
}

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything: manage devices, read everything, write for any device.
    Admin,
    /// Write the data of the one device the key was issued for.
    Device,
    /// Read everything, write nothing.
    Read,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Device => "device",
            Role::Read => "read",
        }
    }

    /// Parses the stored name.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "admin" => Some(Role::Admin),
            "device" => Some(Role::Device),
            "read" => Some(Role::Read),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let key = ApiKey::from_entropy([7; 32]);
        assert!(!format!("{key:?}").contains("0707"));
        assert!(key.expose().starts_with(KEY_PREFIX));
        assert_eq!(key.expose().len(), KEY_PREFIX.len() + 64);
    }

    proptest! {
        #[test]
        fn hash_hex_round_trips(bytes in any::<[u8; 32]>()) {
            let hash = ApiKey::from_entropy(bytes).hash();
            let back = KeyHash::from_hex(&hash.to_hex()).unwrap();
            prop_assert!(back.matches(&hash));
        }

        #[test]
        fn different_keys_do_not_match(a in any::<[u8; 32]>(), b in any::<[u8; 32]>()) {
            prop_assume!(a != b);
            prop_assert!(!ApiKey::from_entropy(a).hash().matches(&ApiKey::from_entropy(b).hash()));
        }
    }
}

//! Pseudonyms for users and servers (`Config::identity_key`): ids stored as given, or as a
//! keyed hash (HMAC-SHA256) that cannot be reversed without the key.

use std::sync::Arc;

/// How `events` stores users and servers (`Config::identity_key`): as the application gave
/// them, or as HMAC-SHA256 under the key, the first [`PSEUDONYM_HEX_DIGITS`] hex digits.
///
/// Keyed: without the key, a pseudonym cannot be reversed by trying candidate ids (the
/// unkeyed 64-bit FNV it replaces gave up a 6-digit numeric id in under a second). Anyone
/// holding the key can recompute a pseudonym to find a known user's rows, e.g. in Python:
/// `hmac.new(key, b"user123", "sha256").hexdigest()[:32]`.
#[derive(Clone, Default)]
pub struct Pseudonyms {
    /// The HMAC state after absorbing the key (the key's inner and outer pads), cloned per id
    /// so hashing one costs two SHA-256 compressions.
    keyed: Option<Arc<Hmac<Sha256>>>,
}

/// Hex digits of a stored pseudonym: 128 bits, collision-free in practice for any number of
/// users a database holds.
pub const PSEUDONYM_HEX_DIGITS: usize = 32;

type Hmac<D> = hmac::Hmac<D>;
type Sha256 = sha2::Sha256;

impl Pseudonyms {
    /// Ids stored as given.
    pub(crate) fn as_given() -> Pseudonyms {
        Pseudonyms { keyed: None }
    }

    /// Ids stored as HMAC-SHA256 under `key`.
    pub(crate) fn keyed(key: &str) -> Pseudonyms {
        use hmac::KeyInit;
        // HMAC takes keys of any length (longer than a block is hashed first): never an error.
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
        Pseudonyms {
            keyed: Some(Arc::new(mac)),
        }
    }

    /// Whether ids are hashed.
    pub(crate) fn is_keyed(&self) -> bool {
        self.keyed.is_some()
    }

    /// What `events` stores for `id`.
    pub(crate) fn stored<'a>(&self, id: Option<&'a str>) -> Option<StoredId<'a>> {
        let id = id?;
        Some(match &self.keyed {
            None => StoredId::Plain(id),
            Some(mac) => StoredId::Hashed(pseudonym(mac, id)),
        })
    }
}

impl std::fmt::Debug for Pseudonyms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_keyed() {
            "Pseudonyms(HMAC-SHA256, key redacted)"
        } else {
            "Pseudonyms(as given)"
        })
    }
}

/// HMAC-SHA256(key, id), the first [`PSEUDONYM_HEX_DIGITS`] hex digits, in place.
fn pseudonym(mac: &Hmac<Sha256>, id: &str) -> [u8; PSEUDONYM_HEX_DIGITS] {
    use hmac::Mac;
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut mac = mac.clone();
    mac.update(id.as_bytes());
    let tag = mac.finalize().into_bytes();
    let mut hex = [0u8; PSEUDONYM_HEX_DIGITS];
    for (pair, byte) in hex.chunks_exact_mut(2).zip(tag.iter()) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0xf)];
    }
    hex
}

/// A user or server id as `events` stores it: the id, or its pseudonym (in place, so building
/// a row allocates nothing for it).
pub(crate) enum StoredId<'a> {
    Plain(&'a str),
    Hashed([u8; PSEUDONYM_HEX_DIGITS]),
}

impl StoredId<'_> {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            StoredId::Plain(id) => id,
            // only ASCII hex digits: always valid UTF-8
            StoredId::Hashed(hex) => std::str::from_utf8(hex).unwrap_or_default(),
        }
    }
}

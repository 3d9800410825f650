//! Pseudonyms for users and servers (`Config::identity_key`): ids stored as given, or as a
//! keyed hash (HMAC-SHA256) that cannot be reversed without the key.
//!
//! Applied at the front door ([`Pseudonyms::apply`], called by the supervisor as it accepts an
//! event, with the key in force then): what leaves it (the journal, the sampler's decisions,
//! records, the `quarantine` table, the stop path) carries the pseudonym, never the raw id. An
//! event accepted before `Configure` sets the key is stored as given, one accepted after it
//! as its pseudonym, however the writer batches them.

use std::sync::Arc;

use crate::event::TrackEvent;
use crate::text::Text;

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

    /// Replaces the event's user and server by their pseudonyms when keyed; as given
    /// otherwise. Called once per event, at acceptance.
    pub(crate) fn apply(&self, e: &mut TrackEvent) {
        let Some(mac) = &self.keyed else { return };
        for id in [&mut e.user, &mut e.server].into_iter().flatten() {
            let hex = pseudonym(mac, id);
            // only ASCII hex digits: always valid UTF-8
            *id = Text::from(std::str::from_utf8(&hex).unwrap_or_default());
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(p: &Pseudonyms, user: &str) -> String {
        let mut e = TrackEvent::command("c")
            .user(user)
            .server(format!("s-{user}"));
        p.apply(&mut e);
        if p.is_keyed() {
            assert_eq!(
                e.server.as_deref().map(str::len),
                Some(PSEUDONYM_HEX_DIGITS)
            );
        }
        e.user.map(String::from).unwrap_or_default()
    }

    /// RFC 4231, test case 2: HMAC-SHA256 with key "Jefe".
    #[test]
    fn pseudonyms_are_hmac_sha256_truncated_to_32_hex_digits() {
        let p = Pseudonyms::keyed("Jefe");
        let stored = applied(&p, "what do ya want for nothing?");
        assert_eq!(stored, "5bdcc146bf60754e6a042426089575c7");
        assert_eq!(stored.len(), PSEUDONYM_HEX_DIGITS);
        // another key, another pseudonym; the same key, the same one
        let other = Pseudonyms::keyed("Jeff");
        assert_ne!(applied(&other, "123456"), applied(&p, "123456"));
        assert_eq!(applied(&p.clone(), "123456"), applied(&p, "123456"));
        // as given, and absent stays absent
        assert_eq!(applied(&Pseudonyms::as_given(), "123456"), "123456");
        let mut anonymous = TrackEvent::command("c");
        p.apply(&mut anonymous);
        assert_eq!((anonymous.user, anonymous.server), (None, None));
        assert!(!format!("{p:?}").contains("Jefe"));
    }

    /// Cost of a pseudonym: `cargo test --release --lib pseudonym_cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn pseudonym_cost() {
        let p = Pseudonyms::keyed("a key of at least sixteen bytes");
        let mut events: Vec<TrackEvent> = (0..1_000_000)
            .map(|i| TrackEvent::command("c").user(format!("user-{i:026}")))
            .collect();
        let started = std::time::Instant::now();
        for e in &mut events {
            p.apply(e);
        }
        let per_id = started.elapsed() / events.len() as u32;
        assert!(events
            .iter()
            .all(|e| e.user.as_deref().map(str::len) == Some(32)));
        eprintln!("HMAC-SHA256 pseudonym: {per_id:?} per id");
    }
}

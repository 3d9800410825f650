//! The journal's entry format: accepted events, encoded back to back in one byte string, and
//! the buffer of entries that the supervisor appends to ([`Appender`]).
//!
//! An entry is one `journal_entries` row: a format byte ([`FORMAT`]), an 8-byte checksum, then
//! its events. Each event is its kind (one byte), a bit set of the optional fields present (two
//! bytes, little-endian), its name, then each present field in [`TrackEvent`]'s order: strings
//! as a LEB128 length and UTF-8 bytes, numbers as 8 little-endian bytes, the priority and
//! `success` as one byte, tags as a LEB128 count of key-value pairs. A performance sample with
//! a context and a time takes about 40 bytes.
//!
//! The checksum is XXH3-64 (little-endian) of the entry's first and last positions (8 bytes
//! each, little-endian) followed by the event bytes: a damaged entry, or one whose position
//! columns were damaged, is refused whole ([`decode_entry`]) instead of replaying different
//! events. XXH3 rather than CRC32C: it is already a dependency (sampling by field hashes with
//! it), it runs at memory speed, and 64 bits leave a random damage undetected with a
//! probability of 2^-64 (CRC32C: 2^-32) per entry; neither defends against a deliberate forger
//! (whoever can write the file can write the events). Entries of format 1 (before the checksum)
//! are still read. Decoded events are validated again at replay, like new ones.

use crate::encoding::put_varint;
use crate::event::{EventKind, Priority, TrackEvent};
use crate::text::Text;

/// The format byte that opens every entry: 2, with a checksum.
pub(crate) const FORMAT: u8 = 2;

/// The format written before the checksum: the format byte, then the events.
const FORMAT_1: u8 = 1;

/// Bytes before the first event of a [`FORMAT`] entry: the format byte and the checksum.
const HEADER: usize = 9;

/// Bytes after which an entry is closed and a new one begun, so no row is larger than a few
/// megabytes (SQLite's limit is a gigabyte) and a journal commit writes whole rows.
pub(crate) const ENTRY_BYTES: usize = 1 << 20;

/// Why an entry could not be decoded (the journal file is damaged or from an unknown version).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("journal entry at byte {at}: {what}")]
pub(crate) struct Corrupt {
    at: usize,
    what: &'static str,
}

const TS: u16 = 1;
const PRIORITY: u16 = 1 << 1;
const USER: u16 = 1 << 2;
const SERVER: u16 = 1 << 3;
const SUCCESS: u16 = 1 << 4;
const DURATION: u16 = 1 << 5;
const VALUE: u16 = 1 << 6;
const CONTEXT: u16 = 1 << 7;
const ERROR_TYPE: u16 = 1 << 8;
const MESSAGE: u16 = 1 << 9;
const ERROR_HASH: u16 = 1 << 10;
const TAGS: u16 = 1 << 11;

const PRIORITIES: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

fn put_len(out: &mut Vec<u8>, n: usize) {
    put_varint(out, n as u64);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// Appends one event to `out`.
pub(crate) fn encode(e: &TrackEvent, out: &mut Vec<u8>) {
    let mut flags = 0u16;
    let mut flag = |present: bool, bit: u16| {
        if present {
            flags |= bit
        }
    };
    flag(e.ts_ms.is_some(), TS);
    flag(e.priority.is_some(), PRIORITY);
    flag(e.user.is_some(), USER);
    flag(e.server.is_some(), SERVER);
    flag(e.success.is_some(), SUCCESS);
    flag(e.duration_ms.is_some(), DURATION);
    flag(e.value.is_some(), VALUE);
    flag(e.context.is_some(), CONTEXT);
    flag(e.error_type.is_some(), ERROR_TYPE);
    flag(e.message.is_some(), MESSAGE);
    flag(e.error_hash.is_some(), ERROR_HASH);
    flag(!e.tags.is_empty(), TAGS);
    out.push(
        EventKind::ALL
            .iter()
            .position(|k| *k == e.kind)
            .unwrap_or(0) as u8,
    );
    out.extend_from_slice(&flags.to_le_bytes());
    put_str(out, &e.name);
    if let Some(ts) = e.ts_ms {
        out.extend_from_slice(&ts.to_le_bytes());
    }
    if let Some(p) = e.priority {
        out.push(p.index() as u8);
    }
    for s in [&e.user, &e.server].into_iter().flatten() {
        put_str(out, s);
    }
    if let Some(ok) = e.success {
        out.push(u8::from(ok));
    }
    for v in [e.duration_ms, e.value].into_iter().flatten() {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for s in [
        e.context.as_deref(),
        e.error_type.as_deref(),
        e.message.as_deref(),
        e.error_hash.as_deref(),
    ]
    .into_iter()
    .flatten()
    {
        put_str(out, s);
    }
    if !e.tags.is_empty() {
        put_len(out, e.tags.len());
        for (k, v) in &e.tags {
            put_str(out, k);
            put_str(out, v);
        }
    }
}

/// A cursor over an entry's bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn fail<T>(&self, what: &'static str) -> Result<T, Corrupt> {
        Err(Corrupt { at: self.at, what })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Corrupt> {
        match self.bytes.get(self.at..self.at.saturating_add(n)) {
            Some(b) => {
                self.at += n;
                Ok(b)
            }
            None => self.fail("truncated"),
        }
    }

    fn byte(&mut self) -> Result<u8, Corrupt> {
        Ok(self.take(1)?[0])
    }

    fn eight(&mut self) -> Result<[u8; 8], Corrupt> {
        let mut b = [0; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(b)
    }

    fn len(&mut self) -> Result<usize, Corrupt> {
        let mut n = 0usize;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= usize::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(n);
            }
        }
        self.fail("length too long")
    }

    fn string(&mut self) -> Result<String, Corrupt> {
        let n = self.len()?;
        let bytes = self.take(n)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_string()),
            Err(_) => self.fail("text is not UTF-8"),
        }
    }

    fn opt_string(&mut self, flags: u16, bit: u16) -> Result<Option<String>, Corrupt> {
        if flags & bit == 0 {
            return Ok(None);
        }
        self.string().map(Some)
    }

    fn opt_f64(&mut self, flags: u16, bit: u16) -> Result<Option<f64>, Corrupt> {
        if flags & bit == 0 {
            return Ok(None);
        }
        Ok(Some(f64::from_le_bytes(self.eight()?)))
    }

    fn event(&mut self) -> Result<TrackEvent, Corrupt> {
        let kind = match EventKind::ALL.get(usize::from(self.byte()?)) {
            Some(k) => *k,
            None => return self.fail("unknown event kind"),
        };
        let flags = u16::from_le_bytes([self.byte()?, self.byte()?]);
        if flags >> 12 != 0 {
            return self.fail("unknown field flags");
        }
        let mut e = match kind {
            EventKind::Command => TrackEvent::command(self.string()?),
            EventKind::Engagement => TrackEvent::engagement(self.string()?),
            EventKind::Custom => TrackEvent::custom(self.string()?),
            EventKind::Performance => TrackEvent::performance(self.string()?, 0.0),
            EventKind::Counter => TrackEvent::counter(self.string()?, 0.0),
            EventKind::Gauge => TrackEvent::gauge(self.string()?, 0.0),
            EventKind::Datastore => TrackEvent::datastore(self.string()?, "", 0.0),
            EventKind::Error => TrackEvent::error(self.string()?, ""),
        };
        if flags & TS != 0 {
            e.ts_ms = Some(i64::from_le_bytes(self.eight()?));
        }
        e.priority = match flags & PRIORITY {
            0 => None,
            _ => match PRIORITIES.get(usize::from(self.byte()?)) {
                Some(p) => Some(*p),
                None => return self.fail("unknown priority"),
            },
        };
        e.user = self.opt_string(flags, USER)?.map(Text::from);
        e.server = self.opt_string(flags, SERVER)?.map(Text::from);
        e.success = match flags & SUCCESS {
            0 => None,
            _ => Some(self.byte()? != 0),
        };
        e.duration_ms = self.opt_f64(flags, DURATION)?;
        e.value = self.opt_f64(flags, VALUE)?;
        e.context = self.opt_string(flags, CONTEXT)?.map(Text::from);
        e.error_type = self.opt_string(flags, ERROR_TYPE)?.map(Text::from);
        e.message = self.opt_string(flags, MESSAGE)?;
        e.error_hash = self.opt_string(flags, ERROR_HASH)?;
        if flags & TAGS != 0 {
            let n = self.len()?;
            if n > crate::event::MAX_TAGS {
                return self.fail("too many tags");
            }
            for _ in 0..n {
                let k = self.string()?;
                let v = self.string()?;
                e.tags.push((Text::from(k), Text::from(v)));
            }
        }
        Ok(e)
    }
}

/// The events of one entry, in order (the checksum is not checked: see [`decode_entry`]).
pub(crate) fn decode(bytes: &[u8]) -> Result<Vec<TrackEvent>, Corrupt> {
    let mut r = Reader { bytes, at: 0 };
    match r.byte()? {
        FORMAT if bytes.len() < HEADER => return r.fail("truncated"),
        FORMAT => r.at = HEADER,
        FORMAT_1 => {}
        _ => return r.fail("unknown entry format"),
    }
    let mut events = Vec::new();
    while r.at < bytes.len() {
        events.push(r.event()?);
    }
    Ok(events)
}

/// The checksum of an entry of [`FORMAT`] at positions `first..=last` whose events are
/// `events` (see the module docs).
fn checksum(first: u64, last: u64, events: &[u8]) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3Default::new();
    h.update(&first.to_le_bytes());
    h.update(&last.to_le_bytes());
    h.update(events);
    h.digest()
}

/// Writes the checksum of `entry` into its header (once its events are all appended).
pub(crate) fn seal(entry: &mut Entry) {
    if entry.bytes.len() >= HEADER && entry.bytes[0] == FORMAT {
        let sum = checksum(entry.first, entry.last, &entry.bytes[HEADER..]);
        entry.bytes[1..HEADER].copy_from_slice(&sum.to_le_bytes());
    }
}

/// The events of `entry`, checked against its checksum and its positions (one event per
/// position).
pub(crate) fn decode_entry(entry: &Entry) -> Result<Vec<TrackEvent>, Corrupt> {
    if entry.bytes.first() == Some(&FORMAT) {
        let stored = entry.bytes.get(1..HEADER).map(|b| {
            let mut sum = [0; 8];
            sum.copy_from_slice(b);
            u64::from_le_bytes(sum)
        });
        let events = entry.bytes.get(HEADER..).unwrap_or_default();
        if stored != Some(checksum(entry.first, entry.last, events)) {
            return Err(Corrupt {
                at: 1,
                what: "checksum mismatch (the entry or its positions are damaged)",
            });
        }
    }
    let events = decode(&entry.bytes)?;
    if Some(events.len() as u64)
        != entry
            .last
            .checked_add(1)
            .and_then(|l| l.checked_sub(entry.first))
    {
        return Err(Corrupt {
            at: entry.bytes.len(),
            what: "the number of events does not match the entry's positions",
        });
    }
    Ok(events)
}

/// Events appended and not yet handed to the journal file: entries of at most about
/// [`ENTRY_BYTES`], each with the positions of its first and last event. Positions number
/// accepted events from 1, without gaps, across runs.
#[derive(Debug)]
pub(crate) struct Appender {
    entries: Vec<Entry>,
    /// The position the next event gets.
    next: u64,
    bytes: usize,
}

/// One journal entry: the events at positions `first..=last`, encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub first: u64,
    pub last: u64,
    pub bytes: Vec<u8>,
}

impl Appender {
    /// An empty buffer whose next event gets position `next` (at least 1).
    pub(crate) fn new(next: u64) -> Self {
        Appender {
            entries: Vec::new(),
            next: next.max(1),
            bytes: 0,
        }
    }

    /// Appends `e`; returns its position.
    pub(crate) fn append(&mut self, e: &TrackEvent) -> u64 {
        let position = self.next;
        let open = match self.entries.last_mut() {
            Some(entry) if entry.bytes.len() < ENTRY_BYTES => entry,
            _ => {
                self.entries.push(Entry {
                    first: position,
                    last: position,
                    bytes: Vec::with_capacity(4096),
                });
                let entry = self.entries.last_mut().expect("just pushed");
                entry.bytes.push(FORMAT);
                entry.bytes.extend_from_slice(&[0; HEADER - 1]);
                entry
            }
        };
        let before = open.bytes.len();
        encode(e, &mut open.bytes);
        open.last = position;
        self.bytes += open.bytes.len() - before;
        self.next += 1;
        position
    }

    /// The position of the last event appended (0 before the first of all).
    pub(crate) fn last(&self) -> u64 {
        self.next - 1
    }

    /// Nothing waits.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Encoded bytes waiting.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Takes every entry waiting, oldest first.
    pub(crate) fn take(&mut self) -> Vec<Entry> {
        self.bytes = 0;
        std::mem::take(&mut self.entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_field() -> TrackEvent {
        TrackEvent::command("ask")
            .user("u1")
            .server("s\u{e9}rver")
            .success(false)
            .duration_ms(12.5)
            .error_type("timeout")
            .message("")
            .error_hash("h")
            .value(-0.0)
            .context("ctx")
            .tag("plan", "pro")
            .tag("region", "")
            .priority(Priority::Low)
            .at(1_764_000_000_123)
    }

    #[test]
    fn every_kind_and_field_round_trips() {
        let events = vec![
            every_field(),
            TrackEvent::command("bare"),
            TrackEvent::performance("rt", 212.0).context("api").at(-5),
            TrackEvent::datastore("save", "conversation", 1e-300),
            TrackEvent::error("timeout", "api").message("upstream"),
            TrackEvent::engagement("reaction").user("u"),
            TrackEvent::custom("checkout").value(f64::MAX),
            TrackEvent::custom("x".repeat(300)).tag("k", "v".repeat(200)),
            TrackEvent::counter("requests", 3.0)
                .context("api")
                .tag("route", "/help"),
            TrackEvent::gauge("queue_depth", -2.5).at(1_764_000_000_000),
        ];
        let mut bytes = vec![FORMAT_1];
        for e in &events {
            encode(e, &mut bytes);
        }
        assert_eq!(decode(&bytes).unwrap(), events);
        let perf = TrackEvent::performance("response_time", 212.0)
            .context("api")
            .at(1_764_000_000_000);
        let mut one = Vec::new();
        encode(&perf, &mut one);
        assert!(one.len() <= 45, "{} bytes", one.len());
    }

    #[test]
    fn damage_is_an_error_not_a_panic() {
        let mut bytes = vec![FORMAT_1];
        encode(&every_field(), &mut bytes);
        assert_eq!(decode(&bytes[..1]), Ok(vec![]), "the format byte alone");
        for cut in 2..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let entry = |last| Entry {
            first: 7,
            last,
            bytes: bytes.clone(),
        };
        assert_eq!(decode_entry(&entry(7)).unwrap().len(), 1);
        assert!(decode_entry(&entry(8)).is_err(), "an event missing");
        assert!(decode_entry(&entry(6)).is_err());
        let mut bad_kind = bytes.clone();
        bad_kind[1] = 9;
        assert_eq!(
            decode(&bad_kind).unwrap_err().to_string(),
            "journal entry at byte 2: unknown event kind"
        );
        assert!(decode(&[3]).is_err(), "unknown format");
        assert!(decode(&[FORMAT, 0, 0]).is_err(), "a checksum cut short");
        assert!(decode(&[]).is_err());
        let mut bad_flags = bytes;
        bad_flags[3] = 0xf0;
        assert!(decode(&bad_flags).is_err());
    }

    /// A sealed entry: any one byte flipped, or a position changed, and it is refused; an
    /// entry never sealed is refused too.
    #[test]
    fn a_checksum_refuses_any_damaged_byte_or_position() {
        let mut a = Appender::new(5);
        a.append(&every_field());
        a.append(&TrackEvent::performance("rt", 2.5).at(7));
        let mut entry = a.take().remove(0);
        assert!(decode_entry(&entry).is_err(), "not sealed yet");
        seal(&mut entry);
        assert_eq!(decode_entry(&entry).unwrap().len(), 2);
        for at in 0..entry.bytes.len() {
            for bit in [0x01, 0x80] {
                let mut bad = entry.clone();
                bad.bytes[at] ^= bit;
                assert!(
                    decode_entry(&bad).is_err(),
                    "byte {at} ^ {bit:#x} went unnoticed"
                );
            }
        }
        for (first, last) in [(4, 6), (5, 7), (6, 6)] {
            let moved = Entry {
                first,
                last,
                ..entry.clone()
            };
            assert!(decode_entry(&moved).is_err(), "positions {first}..={last}");
        }
    }

    #[test]
    fn positions_are_consecutive_and_entries_bounded() {
        let mut a = Appender::new(41);
        assert_eq!(a.last(), 40);
        assert!(a.is_empty());
        let e = TrackEvent::custom("c").tag("k", "v".repeat(250));
        let n = 2 * ENTRY_BYTES / 260 + 10;
        for i in 0..n {
            assert_eq!(a.append(&e), 41 + i as u64);
        }
        assert_eq!(a.last(), 40 + n as u64);
        let entries = a.take();
        assert!(a.is_empty() && a.bytes() == 0);
        assert!(entries.len() >= 3, "{} entries", entries.len());
        let mut next = 41;
        for entry in &entries {
            assert_eq!(entry.first, next);
            assert!(entry.bytes.len() < ENTRY_BYTES + 300);
            let mut entry = entry.clone();
            seal(&mut entry);
            decode_entry(&entry).unwrap();
            next = entry.last + 1;
        }
        assert_eq!(next, 41 + n as u64);
        // numbering goes on after a take
        assert_eq!(a.append(&e), 41 + n as u64);
        assert_eq!(Appender::new(0).append(&e), 1, "positions start at 1");
    }

    proptest::proptest! {
        #[test]
        fn any_event_round_trips(
            name in ".{1,40}",
            ts in proptest::option::of(proptest::num::i64::ANY),
            value in proptest::option::of(proptest::num::f64::NORMAL),
            user in proptest::option::of(".{0,20}"),
            tags in proptest::collection::vec((".{1,8}", ".{0,8}"), 0..5),
            kind in 0usize..8,
        ) {
            let mut e = match kind {
                0 => TrackEvent::command(name),
                1 => TrackEvent::performance(name, 1.0),
                2 => TrackEvent::datastore(name, "db", 1.0),
                3 => TrackEvent::error(name, "cat"),
                4 => TrackEvent::engagement(name),
                5 => TrackEvent::counter(name, 1.0),
                6 => TrackEvent::gauge(name, 1.0),
                _ => TrackEvent::custom(name),
            };
            e.ts_ms = ts;
            e.value = value;
            e.user = user.map(Text::from);
            e.tags = tags.into_iter().map(|(k, v)| (Text::from(k), Text::from(v))).collect();
            let mut bytes = vec![FORMAT_1];
            encode(&e, &mut bytes);
            encode(&e, &mut bytes);
            proptest::prop_assert_eq!(decode(&bytes).unwrap(), vec![e.clone(), e]);
        }
    }
}

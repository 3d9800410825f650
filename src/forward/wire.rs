//! The wire format of forwarded batches (docs/scale-out.md): one NATS message per batch the
//! writer would have written. A header (version, instance, run, batch number) and the rows in
//! the varints of `crate::encoding`, the whole compressed with zstd level 1.
//!
//! Records carry their kind, priority, outcome, time (a delta from the previous record's),
//! sampling rate (only when not 1), duration and value (only when present) and text fields;
//! windows their series, bounds, epoch, final flag and the window state's own bytes
//! (`WindowState::to_bytes`, the `metric_windows.sketch` blob); error counts their fields;
//! patterns (rare) as JSON; distinct-user sketches (version 2) their command, context, window
//! and the sketch's own bytes (`UserSketch::to_bytes`, the `command_users.registers` blob).
//! A worker reads versions 1 and 2.

use thiserror::Error;

use crate::cores::users::UserWindow;
use crate::encoding::{put_varint, unzigzag, zigzag, Reader, SketchDecodeError};
use crate::event::{EventKind, Priority};
use crate::model::{
    ErrorCountSnapshot, PatternRecord, Record, SeriesKey, WindowSnapshot, WriteBatch, ABSENT,
    FIELDS,
};
use crate::stats::detect::PatternKind;
use crate::stats::hll::UserSketch;
use crate::stats::window::WindowState;

/// The format version this code writes (it reads this one and version 1, which has no
/// distinct-user sketches).
const VERSION: u8 = 2;

/// The zstd level: the fastest, already several times smaller than the rows' JSON.
pub(crate) const ZSTD_LEVEL: i32 = 1;

/// Why a message is not a forwarded batch this code reads.
#[derive(Debug, Error)]
pub enum WireError {
    /// zstd refused the bytes.
    #[error("forwarded batch does not decompress: {0}")]
    Decompress(#[source] std::io::Error),
    /// A field is cut short or out of range.
    #[error("forwarded batch is malformed: {0}")]
    Malformed(#[from] SketchDecodeError),
    /// The version byte is not one this code reads.
    #[error("forwarded batch has format version {0}, this worker reads 1 to {VERSION}")]
    Version(u8),
    /// A field's value is impossible; the text names it.
    #[error("forwarded batch is invalid: {0}")]
    Invalid(&'static str),
}

/// Who sent a batch, and which of its batches it is: `Nats-Msg-Id` is
/// `<instance>.<run, hex>.<seq>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    pub instance: String,
    pub run: u64,
    pub seq: u64,
}

impl Origin {
    /// The message's de-duplication id.
    pub(crate) fn msg_id(&self) -> String {
        format!("{}.{:x}.{}", self.instance, self.run, self.seq)
    }

    /// The `instance_id` of the rows of one window (or error count) epoch of this run: each
    /// epoch's whole state is one row, so no base is ever read (docs/scale-out.md).
    pub(crate) fn epoch_instance(&self, epoch: u64) -> String {
        format!("{}~{:x}~{}", self.instance, self.run, epoch)
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn get_str<'a>(r: &mut Reader<'a>) -> Result<&'a str, WireError> {
    let n = r.varint()? as usize;
    std::str::from_utf8(r.bytes(n)?).map_err(|_| WireError::Invalid("text is not UTF-8"))
}

fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => put_varint(out, 0),
        Some(s) => {
            put_varint(out, s.len() as u64 + 1);
            out.extend_from_slice(s.as_bytes());
        }
    }
}

/// A label set, as `crate::model::labels_text` wrote it.
/// A series key: metric, context, labels (read by [`get_key`]).
fn put_key(out: &mut Vec<u8>, key: &SeriesKey) {
    put_str(out, &key.metric);
    put_opt_str(out, key.context.as_deref());
    put_str(out, &key.labels_text());
}

/// A series key: metric, context, labels.
fn get_key(r: &mut Reader<'_>) -> Result<SeriesKey, WireError> {
    let metric = get_str(r)?.to_string();
    let context = get_opt_str(r)?;
    let labels = get_labels(r)?;
    Ok(SeriesKey::new(metric, context.as_deref()).with_labels(labels))
}

fn get_labels(r: &mut Reader<'_>) -> Result<crate::model::Labels, WireError> {
    let text = get_str(r)?;
    if text == "{}" {
        return Ok(crate::model::Labels::new());
    }
    serde_json::from_str(text).map_err(|_| WireError::Invalid("label set"))
}

fn get_opt_str(r: &mut Reader<'_>) -> Result<Option<String>, WireError> {
    match r.varint()? as usize {
        0 => Ok(None),
        n => {
            let b = r.bytes(n - 1)?;
            let s = std::str::from_utf8(b).map_err(|_| WireError::Invalid("text is not UTF-8"))?;
            Ok(Some(s.to_string()))
        }
    }
}

/// A kind travels as its index here (the journal's order: new kinds are appended).
const KINDS: [EventKind; 8] = EventKind::ALL;
const PRIORITIES: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

/// The uncompressed encoding of `batch` sent by `origin`.
pub(crate) fn encode_raw(origin: &Origin, batch: &WriteBatch) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + batch.records.len() * 24);
    out.push(VERSION);
    put_str(&mut out, &origin.instance);
    put_varint(&mut out, origin.run);
    put_varint(&mut out, origin.seq);
    put_varint(&mut out, batch.records.len() as u64);
    let mut last_ts = 0i64;
    for r in &batch.records {
        let (duration, value, lens, text) = r.wire_parts();
        let kind = KINDS.iter().position(|k| *k == r.kind).unwrap_or(0) as u8;
        let priority = PRIORITIES
            .iter()
            .position(|p| *p == r.priority)
            .unwrap_or(1) as u8;
        let success = match r.success {
            None => 0u8,
            Some(false) => 1,
            Some(true) => 2,
        };
        let flags = u8::from(!duration.is_nan())
            | u8::from(!value.is_nan()) << 1
            | u8::from(r.sample_rate != 1.0) << 2;
        // kind (3 bits), priority (2), success (2); then the flags
        out.push(kind | priority << 3 | success << 5);
        out.push(flags);
        put_varint(&mut out, zigzag(r.ts_ms.wrapping_sub(last_ts)));
        last_ts = r.ts_ms;
        if flags & 4 != 0 {
            out.extend_from_slice(&r.sample_rate.to_le_bytes());
        }
        if flags & 1 != 0 {
            out.extend_from_slice(&duration.to_le_bytes());
        }
        if flags & 2 != 0 {
            out.extend_from_slice(&value.to_le_bytes());
        }
        for &len in lens {
            put_varint(&mut out, if len == ABSENT { 0 } else { u64::from(len) + 1 });
        }
        out.extend_from_slice(text.as_bytes());
    }
    put_varint(&mut out, batch.windows.len() as u64);
    for w in &batch.windows {
        put_key(&mut out, &w.key);
        put_varint(&mut out, zigzag(w.start_ms));
        put_varint(&mut out, zigzag(w.end_ms - w.start_ms));
        put_varint(&mut out, w.epoch);
        out.push(u8::from(w.is_final));
        let state = w.state.to_bytes();
        put_varint(&mut out, state.len() as u64);
        out.extend_from_slice(&state);
    }
    put_varint(&mut out, batch.errors.len() as u64);
    for e in &batch.errors {
        put_str(&mut out, &e.error_hash);
        put_str(&mut out, &e.error_type);
        put_opt_str(&mut out, e.error_category.as_deref());
        put_varint(&mut out, zigzag(e.start_ms));
        put_varint(&mut out, e.epoch);
        put_varint(&mut out, e.count);
        put_varint(&mut out, zigzag(e.first_ts_ms));
        put_varint(&mut out, zigzag(e.last_ts_ms));
        out.push(u8::from(e.is_final));
    }
    put_varint(&mut out, batch.patterns.len() as u64);
    for p in &batch.patterns {
        put_key(&mut out, &p.key);
        out.push(
            PatternKind::ALL
                .iter()
                .position(|k| *k == p.kind)
                .unwrap_or(0) as u8,
        );
        out.extend_from_slice(&p.confidence.to_le_bytes());
        put_varint(&mut out, zigzag(p.start_ms));
        put_varint(&mut out, zigzag(p.end_ms));
        out.extend_from_slice(&p.observed.to_le_bytes());
        out.extend_from_slice(&p.baseline.to_le_bytes());
        put_str(&mut out, &p.description);
        put_varint(&mut out, zigzag(p.detected_at_ms));
        put_str(
            &mut out,
            &serde_json::to_string(&p.statistics).unwrap_or_else(|_| "[]".into()),
        );
    }
    put_varint(&mut out, batch.users.len() as u64);
    for u in &batch.users {
        put_str(&mut out, &u.command);
        put_str(&mut out, &u.context);
        put_varint(&mut out, zigzag(u.start_ms));
        put_varint(&mut out, zigzag(u.window_ms));
        let sketch = u.sketch.to_bytes();
        put_varint(&mut out, sketch.len() as u64);
        out.extend_from_slice(&sketch);
    }
    out
}

/// The message body of `batch`: [`encode_raw`], compressed.
pub(crate) fn encode(origin: &Origin, batch: &WriteBatch) -> Vec<u8> {
    let raw = encode_raw(origin, batch);
    // zstd's in-memory compression of a Vec fails only on allocation failure
    zstd::bulk::compress(&raw, ZSTD_LEVEL).unwrap_or_else(|_| raw_frame(&raw))
}

/// `batch` as the next messages of `origin`, each body at most `limit` bytes: `(seq, part of
/// the batch, body)`, with `origin.seq` advanced past them. One message when it fits (encoded
/// once), else the messages of its halves ([`WriteBatch::split`]), halved again until each
/// fits or holds a single row (a row over `limit` travels alone, and the server refuses it).
/// Each part is a batch of its own, with its own sequence number, so the workers' claim by
/// origin (instance, run, seq) takes every part once.
pub(crate) fn encode_to_fit(
    origin: &mut Origin,
    batch: WriteBatch,
    limit: usize,
) -> Vec<(u64, WriteBatch, Vec<u8>)> {
    origin.seq += 1;
    let body = encode(origin, &batch);
    if body.len() <= limit || batch.rows() <= 1 {
        return vec![(origin.seq, batch, body)];
    }
    origin.seq -= 1;
    let (first, second) = batch.split();
    let mut parts = encode_to_fit(origin, first, limit);
    parts.extend(encode_to_fit(origin, second, limit));
    parts
}

/// `raw` as an uncompressed zstd frame (never reached in practice: see [`encode`]).
fn raw_frame(raw: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(raw, 0).unwrap_or_default()
}

/// Most bytes a message may decompress to (a batch of 10,000 records of the longest fields is
/// far below).
const MAX_RAW: usize = 256 << 20;

/// Reads a message body written by [`encode`].
pub(crate) fn decode(body: &[u8]) -> Result<(Origin, WriteBatch), WireError> {
    // the frame states its size ([`encode`] writes it): decompress into exactly that much
    // instead of reserving the bound for every message; a frame that states more than the
    // bound, or less than it holds, is an error
    let capacity = match zstd::zstd_safe::get_frame_content_size(body) {
        Ok(Some(n)) if n > MAX_RAW as u64 => {
            return Err(WireError::Decompress(std::io::Error::other(format!(
                "the frame states {n} bytes, more than the {MAX_RAW} a message may hold"
            ))))
        }
        Ok(Some(n)) => n as usize,
        _ => MAX_RAW,
    };
    let raw = zstd::bulk::decompress(body, capacity).map_err(WireError::Decompress)?;
    decode_raw(&raw)
}

fn f64_at(r: &mut Reader<'_>) -> Result<f64, WireError> {
    Ok(r.f64()?)
}

/// Reads the uncompressed encoding.
pub(crate) fn decode_raw(raw: &[u8]) -> Result<(Origin, WriteBatch), WireError> {
    let mut r = Reader::new(raw);
    let version = r.byte()?;
    if !(1..=VERSION).contains(&version) {
        return Err(WireError::Version(version));
    }
    let origin = Origin {
        instance: get_str(&mut r)?.to_string(),
        run: r.varint()?,
        seq: r.varint()?,
    };
    let mut batch = WriteBatch::default();
    let n = r.varint()? as usize;
    batch.records.reserve(n.min(r.remaining()));
    let mut last_ts = 0i64;
    for _ in 0..n {
        let packed = r.byte()?;
        let flags = r.byte()?;
        let kind = *KINDS
            .get(usize::from(packed & 7))
            .ok_or(WireError::Invalid("record kind"))?;
        let priority = *PRIORITIES
            .get(usize::from(packed >> 3 & 3))
            .ok_or(WireError::Invalid("record priority"))?;
        let success = match packed >> 5 & 3 {
            0 => None,
            1 => Some(false),
            2 => Some(true),
            _ => return Err(WireError::Invalid("record success")),
        };
        let ts_ms = last_ts.wrapping_add(unzigzag(r.varint()?));
        last_ts = ts_ms;
        let rate = if flags & 4 != 0 { f64_at(&mut r)? } else { 1.0 };
        let duration = if flags & 1 != 0 {
            f64_at(&mut r)?
        } else {
            f64::NAN
        };
        let value = if flags & 2 != 0 {
            f64_at(&mut r)?
        } else {
            f64::NAN
        };
        let mut lens = [ABSENT; FIELDS];
        let mut total = 0usize;
        for len in lens.iter_mut() {
            let v = r.varint()?;
            if v > 0 {
                let l = u32::try_from(v - 1).map_err(|_| WireError::Invalid("field length"))?;
                *len = l;
                total += l as usize;
            }
        }
        let text = std::str::from_utf8(r.bytes(total)?)
            .map_err(|_| WireError::Invalid("record text is not UTF-8"))?;
        let record = Record::from_wire_parts(
            ts_ms, rate, duration, value, lens, text, kind, priority, success,
        )
        .ok_or(WireError::Invalid("record field lengths"))?;
        batch.records.push(record);
    }
    let n = r.varint()? as usize;
    for _ in 0..n {
        let key = get_key(&mut r)?;
        let start_ms = unzigzag(r.varint()?);
        let end_ms = start_ms.wrapping_add(unzigzag(r.varint()?));
        let epoch = r.varint()?;
        let is_final = r.byte()? != 0;
        let len = r.varint()? as usize;
        let state = WindowState::from_bytes(r.bytes(len)?)
            .map_err(|_| WireError::Invalid("window state"))?;
        batch.windows.push(WindowSnapshot {
            // the state's bytes carry its kind (distribution, counter, gauge)
            key: key.with_kind(state.kind()),
            start_ms,
            end_ms,
            epoch,
            state,
            is_final,
        });
    }
    let n = r.varint()? as usize;
    for _ in 0..n {
        batch.errors.push(ErrorCountSnapshot {
            error_hash: get_str(&mut r)?.to_string(),
            error_type: get_str(&mut r)?.to_string(),
            error_category: get_opt_str(&mut r)?,
            start_ms: unzigzag(r.varint()?),
            epoch: r.varint()?,
            count: r.varint()?,
            first_ts_ms: unzigzag(r.varint()?),
            last_ts_ms: unzigzag(r.varint()?),
            is_final: r.byte()? != 0,
        });
    }
    let n = r.varint()? as usize;
    for _ in 0..n {
        let key = get_key(&mut r)?;
        let kind = *PatternKind::ALL
            .get(usize::from(r.byte()?))
            .ok_or(WireError::Invalid("pattern kind"))?;
        let confidence = f64_at(&mut r)?;
        let start_ms = unzigzag(r.varint()?);
        let end_ms = unzigzag(r.varint()?);
        let observed = f64_at(&mut r)?;
        let baseline = f64_at(&mut r)?;
        let description = get_str(&mut r)?.to_string();
        let detected_at_ms = unzigzag(r.varint()?);
        let statistics = serde_json::from_str(get_str(&mut r)?)
            .map_err(|_| WireError::Invalid("pattern statistics"))?;
        batch.patterns.push(PatternRecord {
            key,
            kind,
            confidence,
            start_ms,
            end_ms,
            observed,
            baseline,
            description,
            detected_at_ms,
            statistics,
        });
    }
    if version >= 2 {
        read_users(&mut r, &mut batch)?;
    }
    r.finish()?;
    Ok((origin, batch))
}

/// The distinct-user sketches of a version 2 batch.
fn read_users(r: &mut Reader<'_>, batch: &mut WriteBatch) -> Result<(), WireError> {
    let n = r.varint()? as usize;
    batch.users.reserve(n.min(r.remaining()));
    for _ in 0..n {
        let command = get_str(r)?.to_string();
        let context = get_str(r)?.to_string();
        let start_ms = unzigzag(r.varint()?);
        let window_ms = unzigzag(r.varint()?);
        if window_ms <= 0 {
            return Err(WireError::Invalid("user sketch window"));
        }
        let len = r.varint()? as usize;
        let sketch = UserSketch::from_bytes(r.bytes(len)?)?;
        batch.users.push(UserWindow {
            command,
            context,
            start_ms,
            window_ms,
            sketch,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::TrackEvent;
    use crate::model::PatternStatistic;

    fn batch() -> WriteBatch {
        let events = [
            TrackEvent::command("help")
                .user("ü1")
                .server("s")
                .success(false)
                .duration_ms(3.5)
                .at(1_000),
            TrackEvent::engagement("reaction").at(900),
            TrackEvent::custom("checkout")
                .value(12.0)
                .tag("plan", "pro")
                .at(2_000),
            TrackEvent::error("timeout", "api")
                .message("slow")
                .at(2_001),
        ];
        let mut state = WindowState::new();
        for v in 0..1000 {
            state.observe(f64::from(v), 1.0);
        }
        WriteBatch {
            records: events
                .iter()
                .enumerate()
                .map(|(i, e)| Record::from_event(e, if i == 2 { 0.25 } else { 1.0 }))
                .collect(),
            windows: vec![WindowSnapshot {
                key: SeriesKey::new("lat", Some("api")),
                start_ms: 60_000,
                end_ms: 120_000,
                epoch: 7,
                state,
                is_final: true,
            }],
            errors: vec![ErrorCountSnapshot {
                error_hash: "abc".into(),
                error_type: "timeout".into(),
                error_category: None,
                start_ms: 0,
                epoch: 3,
                count: 9,
                first_ts_ms: 5,
                last_ts_ms: 50,
                is_final: false,
            }],
            patterns: vec![PatternRecord {
                key: SeriesKey::new("lat", None),
                kind: PatternKind::TrendUp,
                confidence: 0.9,
                start_ms: 0,
                end_ms: 60_000,
                observed: 3.0,
                baseline: 1.0,
                description: "up".into(),
                detected_at_ms: 61_000,
                statistics: vec![PatternStatistic {
                    statistic: "mean".into(),
                    kind: PatternKind::TrendUp,
                    confidence: 0.9,
                    observed: 3.0,
                    baseline: 1.0,
                    evidence: crate::stats::detect::Evidence {
                        z: 4.5,
                        surprise_decades: 5.0,
                        ..Default::default()
                    },
                }],
            }],
            users: vec![UserWindow {
                command: "help".into(),
                context: String::new(),
                start_ms: 0,
                window_ms: 60_000,
                sketch: {
                    let mut s = UserSketch::new();
                    s.insert(b"u1");
                    s.insert(b"u2");
                    s
                },
            }],
            from_queue: true,
            own_transaction: false,
        }
    }

    #[test]
    fn a_version_1_batch_reads_without_user_sketches() {
        let origin = Origin {
            instance: "api-1".into(),
            run: 1,
            seq: 2,
        };
        let sent = WriteBatch {
            users: Vec::new(),
            ..batch()
        };
        let mut raw = encode_raw(&origin, &sent);
        // version 1: no user section (an empty one is its count, one byte, at the end)
        raw[0] = 1;
        assert_eq!(raw.pop(), Some(0));
        let (_, got) = decode_raw(&raw).unwrap();
        assert_eq!(got.patterns, sent.patterns);
        assert!(got.users.is_empty());
        raw[0] = 3;
        assert!(matches!(decode_raw(&raw), Err(WireError::Version(3))));
    }

    #[test]
    fn a_batch_reads_back_as_it_was_sent() {
        let origin = Origin {
            instance: "api-1".into(),
            run: u64::MAX - 3,
            seq: 42,
        };
        let sent = batch();
        let (o, got) = decode(&encode(&origin, &sent)).unwrap();
        assert_eq!(o, origin);
        // records hold NaN for absent values (unequal to itself): compare their encodings
        assert_eq!(got.records.len(), sent.records.len());
        assert_eq!(encode_raw(&o, &got), encode_raw(&origin, &sent));
        assert_eq!(got.records[0].wire_parts().3, "helpü1s");
        assert_eq!(got.errors, sent.errors);
        assert_eq!(got.patterns, sent.patterns);
        assert_eq!(got.users, sent.users);
        assert_eq!(got.windows.len(), 1);
        let (w, s) = (&got.windows[0], &sent.windows[0]);
        assert_eq!(
            (&w.key, w.start_ms, w.end_ms, w.epoch, w.is_final),
            (&s.key, s.start_ms, s.end_ms, s.epoch, s.is_final)
        );
        assert_eq!(w.state.to_bytes(), s.state.to_bytes());
        assert_eq!(origin.msg_id(), "api-1.fffffffffffffffc.42");
    }

    /// A counter's and a gauge's windows travel with their kind (read back from the state).
    #[test]
    fn counter_and_gauge_windows_keep_their_kind() {
        use crate::stats::window::SeriesKind;
        let origin = Origin {
            instance: "i".into(),
            run: 1,
            seq: 1,
        };
        let mut sent = WriteBatch::default();
        for kind in [SeriesKind::Counter, SeriesKind::Gauge] {
            let mut state = WindowState::of_kind(kind);
            state.observe_at(3.0, 4.0, 61_000);
            sent.windows.push(WindowSnapshot {
                key: SeriesKey::new("requests", None).with_kind(kind),
                start_ms: 60_000,
                end_ms: 120_000,
                epoch: 1,
                state,
                is_final: true,
            });
        }
        let (_, got) = decode(&encode(&origin, &sent)).unwrap();
        assert_eq!(got.windows.len(), 2);
        for (w, s) in got.windows.iter().zip(&sent.windows) {
            assert_eq!(w.key, s.key);
            assert_eq!(w.state.to_bytes(), s.state.to_bytes());
        }
        assert_eq!(got.windows[0].state.corrected_sum(), Some(12.0));
        assert_eq!(got.windows[1].state.last().map(|l| l.ts_ms), Some(61_000));
    }

    /// A batch whose message would be over the server's limit travels in parts that each fit
    /// and, read back and put together in order, are the batch.
    #[test]
    fn a_batch_over_the_limit_travels_in_parts_that_fit_and_add_up() {
        let mut origin = Origin {
            instance: "i".into(),
            run: 1,
            seq: 9,
        };
        let mut sent = batch();
        // tags of pseudo-random text: compression cannot bring the message under the limit
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let mut noise = |n: usize| -> String {
            (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    char::from(b'a' + (x % 26) as u8)
                })
                .collect()
        };
        for i in 0..300 {
            let e = TrackEvent::command("deploy")
                .tag("a", noise(200))
                .tag("b", noise(200))
                .at(3_000 + i);
            sent.records.push(Record::from_event(&e, 1.0));
        }
        let limit = 16 * 1024;
        let whole = encode(&origin, &sent);
        assert!(whole.len() > 4 * limit, "the test's batch is too small");
        let parts = encode_to_fit(&mut origin, sent.clone(), limit);
        assert!(parts.len() >= 5, "{} parts", parts.len());
        // each part the next message of the origin
        let seqs: Vec<u64> = parts.iter().map(|(seq, _, _)| *seq).collect();
        assert_eq!(seqs, (10..10 + parts.len() as u64).collect::<Vec<_>>());
        assert_eq!(origin.seq, 9 + parts.len() as u64);
        let mut together = WriteBatch {
            from_queue: sent.from_queue,
            ..WriteBatch::default()
        };
        for (seq, part, body) in &parts {
            assert!(body.len() <= limit, "a part of {} bytes", body.len());
            let (o, got) = decode(body).unwrap();
            assert_eq!(o.seq, *seq);
            assert_eq!(encode_raw(&o, &got), encode_raw(&o, part));
            together.records.extend(got.records);
            together.windows.extend(got.windows);
            together.errors.extend(got.errors);
            together.patterns.extend(got.patterns);
            together.users.extend(got.users);
        }
        assert_eq!(encode_raw(&origin, &together), encode_raw(&origin, &sent));
        let folded: u64 = parts.iter().map(|(_, p, _)| p.folded()).sum();
        assert_eq!(folded, sent.folded());
        // a batch that fits is one message, encoded as before
        let small = batch();
        let one = encode_to_fit(&mut origin, small.clone(), limit);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].2, encode(&origin, &small));
    }

    #[test]
    fn damaged_messages_are_errors_never_panics() {
        let origin = Origin {
            instance: "i".into(),
            run: 1,
            seq: 1,
        };
        let raw = encode_raw(&origin, &batch());
        for cut in 0..raw.len() {
            assert!(decode_raw(&raw[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = raw.clone();
        for i in 0..flipped.len() {
            flipped[i] ^= 0xff;
            let _ = decode_raw(&flipped);
            flipped[i] ^= 0xff;
        }
        assert!(matches!(decode(b"not zstd"), Err(WireError::Decompress(_))));
        let mut v3 = raw;
        v3[0] = 3;
        assert!(matches!(decode_raw(&v3), Err(WireError::Version(3))));
    }
}

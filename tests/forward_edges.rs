//! Durable forwarding at its edges (issue 19): the journal's outbox on a full disk (a real
//! tmpfs), and an outbox left behind by a forwarding run met by a start without `forward`.
//! Real parts: `nats-server -js` processes (tests/common/nats.rs), a real PostgreSQL database
//! for the workers (tests/common/pg.rs), the real actor system.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use common::forward::{event, serial, WINDOW_MS};
use common::nats::NatsServer;
use common::pg::TestDb;
use common::tmpfs::Tmpfs;
use eventbatch::forward::worker::{self, WorkerOptions, WorkerReport};
use eventbatch::{
    start, Config, Error, Flush, Forward, GetStats, PipelineError, Shutdown, Store, TrackBatch,
    TrackError, TrackEvent,
};

const T0: i64 = common::T0;
/// Events a test may send at most: event `i`'s time spreads them over 30 windows.
const N: usize = 1_000_000;
/// Events per `TrackBatch`.
const BATCH: usize = 100;

/// Events `range` of the mixed workload ([`common::forward::event`]) of [`N`].
fn events(range: std::ops::Range<usize>) -> Vec<TrackEvent> {
    range.map(|i| event(i, N)).collect()
}

/// Durable forwarding to `stream` on `url`, the journal at `journal`: a checkpoint every
/// 50 ms (`batch_interval_ms`), `fsync_interval_ms` 50.
fn durable_forward(url: &str, stream: &str, journal: &Path) -> Config {
    Config {
        instance_id: Some("edge".into()),
        aggregation_window_ms: WINDOW_MS as u64,
        max_batch_size: 1000,
        forward: Some(Forward::new(url, stream)),
        durable: true,
        journal_path: Some(journal.to_path_buf()),
        fsync_interval_ms: 50,
        batch_interval_ms: 50,
        store_retry_budget_ms: 3_000,
        metrics_interval_ms: 0,
        stats_log_interval_ms: 0,
        ..Config::default()
    }
}

/// A worker until the stream has been idle for a second.
fn drain(url: &str, stream: &str, db: &TestDb) -> WorkerReport {
    let mut opts = WorkerOptions::new(url, stream, Store::postgres(db.url()));
    opts.ack_wait = Duration::from_secs(3);
    opts.idle_exit = Some(Duration::from_secs(1));
    opts.rollup_interval = None;
    worker::run(opts, Arc::new(AtomicBool::new(false))).expect("worker")
}

/// What the workers stored is the effect of exactly the events `accepted` (their indices),
/// once: every command and engagement once, each metric window's count the samples accepted
/// into it, every error counted once, one error record per (hash, window): with `restarted`,
/// up to one more for each of the two hashes (a run that replays events inside a window
/// records its first error again, ARCHITECTURE.md, "Durable mode", "Re-derived on replay").
fn check_store(db: &TestDb, accepted: &[usize], restarted: bool) {
    let of = |residue: usize| accepted.iter().filter(|i| *i % 10 == residue).count() as i64;
    assert_eq!(
        db.count("events WHERE kind = 'command'"),
        of(6),
        "every accepted command once"
    );
    assert_eq!(
        db.count("events WHERE kind = 'engagement'"),
        of(7),
        "every accepted engagement once"
    );
    let window = |i: usize| {
        let ts = T0 + (i as i64 * 30 * WINDOW_MS) / N as i64;
        ts - ts.rem_euclid(WINDOW_MS)
    };
    let first_errors: std::collections::BTreeSet<(bool, i64)> = accepted
        .iter()
        .filter(|i| *i % 10 == 8)
        .map(|&i| (i % 3 == 0, window(i)))
        .collect();
    let firsts = first_errors.len() as i64;
    let error_records = db.count("events WHERE kind = 'error'");
    let most = firsts + if restarted { 2 } else { 0 };
    assert!(
        (firsts..=most).contains(&error_records),
        "{error_records} error records for {firsts} (hash, window) pairs"
    );
    assert_eq!(
        db.scalar("SELECT COALESCE(SUM(count), 0) FROM error_counts"),
        of(8),
        "every accepted error counted once"
    );
    let mut expected = BTreeMap::new();
    for &i in accepted {
        let key = match i % 10 {
            0..=3 => ("latency", "api"),
            4 | 5 => ("latency", ""),
            9 => ("datastore.load", "conversation"),
            _ => continue,
        };
        *expected
            .entry((key.0.to_string(), key.1.to_string(), window(i)))
            .or_insert(0i64) += 1;
    }
    let mut stored = BTreeMap::new();
    use diesel::prelude::*;
    use eventbatch::db::schema::metric_windows::dsl as w;
    let rows: Vec<(String, String, i64, i64)> = w::metric_windows
        .select((w::metric, w::context_key, w::window_start_ms, w::count))
        .load(&mut db.conn())
        .unwrap();
    for (metric, context, start, count) in rows {
        *stored.entry((metric, context, start)).or_insert(0) += count;
    }
    assert_eq!(stored, expected, "window counts = samples accepted");
}

/// Sends batch after batch from event `next` on (10 ms apart) until one is refused; returns
/// the refusal, and the indices of the events acknowledged, each batch whole or not at all.
async fn send_until_refused(
    t: &actix::Addr<eventbatch::Tracker>,
    next: &mut usize,
    accepted: &mut Vec<usize>,
) -> TrackError {
    loop {
        assert!(
            *next < N / 2,
            "{} events acknowledged while the journal cannot commit",
            accepted.len()
        );
        let range = *next..*next + BATCH;
        *next += BATCH;
        match t.send(TrackBatch(events(range.clone()))).await.unwrap() {
            Ok(ack) => {
                assert_eq!((ack.accepted, ack.dropped), (BATCH, 0));
                accepted.extend(range);
            }
            Err(e) => return e,
        }
        actix::clock::sleep(Duration::from_millis(10)).await;
    }
}

/// Item 1: durable forwarding with its journal on a tmpfs that fills while events come in.
/// What the user expects: an event is acknowledged only while the journal's failure is younger
/// than `fsync_interval_ms` (the documented window), refused with `JournalUnavailable` after;
/// `Flush` does not answer `Ok` while anything accepted is neither in the outbox nor
/// acknowledged by JetStream; no checkpoint is counted while the outbox cannot take one; once
/// the disk has room, every accepted event reaches the workers' PostgreSQL exactly once, none
/// dropped, none of the refused ones.
#[test]
fn a_full_disk_under_the_outbox_loses_nothing_accepted_and_forwards_it_once_when_room_comes_back() {
    let _serial = serial();
    let nats = NatsServer::start();
    let db = TestDb::create("fwdedge_full");
    let fs = Tmpfs::new(4 << 20);
    let local = tempfile::tempdir().unwrap();
    let stream = "fulldisk";
    let config = durable_forward(&nats.url(), stream, &fs.path().join("edge.journal"));
    let store = Store::sqlite(local.path().join("local.db"));
    let stats = actix::System::new().block_on(async move {
        let t = start(config, store).expect("start");
        let mut accepted = Vec::new();
        let mut next = 0;
        // a first part, forwarded while the disk has room
        for _ in 0..20 {
            let range = next..next + BATCH;
            next += BATCH;
            let ack = t.send(TrackBatch(events(range.clone()))).await.unwrap();
            assert_eq!(ack.unwrap().accepted, BATCH);
            accepted.extend(range);
        }
        t.send(Flush).await.unwrap().expect("flushed with room");
        let before = t.send(GetStats).await.unwrap();
        assert!(
            before.journal_healthy && before.checkpoints > 0,
            "{before:?}"
        );

        fs.fill();
        let refusal = send_until_refused(&t, &mut next, &mut accepted).await;
        let TrackError::JournalUnavailable { reason } = &refusal else {
            panic!("not a journal refusal: {refusal:?}");
        };
        assert!(reason.contains("full"), "SQLite's own error: {reason}");
        // the refusal asked for a checkpoint; the outbox cannot take it
        let s = common::wait_for(&t, |s| !s.journal_healthy && s.journal_errors > 0).await;
        let full = t.send(Flush).await.unwrap();
        assert!(
            matches!(full, Err(PipelineError::Journal { .. })),
            "Flush while the outbox cannot take the accepted events: {full:?}"
        );
        let s2 = t.send(GetStats).await.unwrap();
        assert_eq!(
            s2.checkpoints, s.checkpoints,
            "no checkpoint counted while the outbox refuses it: {s2:?}"
        );
        assert_eq!(s2.events_dropped, 0, "{s2:?}");
        let one = t.send(TrackEvent::command("one").at(T0)).await.unwrap();
        assert!(
            matches!(one, Err(TrackError::JournalUnavailable { .. })),
            "{one:?}"
        );

        fs.free();
        common::wait_for(&t, |s| s.journal_healthy).await;
        // a last part once the disk has room again
        for _ in 0..20 {
            let range = next..next + BATCH;
            next += BATCH;
            let ack = t.send(TrackBatch(events(range.clone()))).await.unwrap();
            assert_eq!(ack.unwrap().accepted, BATCH);
            accepted.extend(range);
        }
        t.send(Flush)
            .await
            .unwrap()
            .expect("flushed once the disk has room");
        let s = t.send(Shutdown).await.unwrap();
        (s, accepted)
    });
    let (stats, accepted) = stats;
    assert_eq!(stats.events_dropped, 0, "{stats:?}");
    assert_eq!(stats.events_unwritten_at_stop, 0, "{stats:?}");
    assert_eq!(
        stats.events_received,
        accepted.len() as u64 + BATCH as u64 + 1,
        "the accepted, the refused batch and the refused event: {stats:?}"
    );
    assert_eq!(stats.events_rejected, BATCH as u64 + 1, "{stats:?}");
    common::conservation(&stats);
    let report = drain(&nats.url(), stream, &db);
    assert_eq!(report.malformed + report.failed, 0, "{report:?}");
    assert_eq!(
        report.messages, stats.batches_written,
        "every message once: {report:?}"
    );
    check_store(&db, &accepted, false);
}

/// Item 2: a durable forwarding run stops while NATS is unreachable, its checkpoints in the
/// journal's outbox. A start on that journal without `forward` would never send them: it is
/// refused with a `ConfigError` on `forward` saying how many messages wait and what to do, and
/// leaves the journal as it was. Started with `forward` again, the instance sends them, and the
/// workers store every accepted event once.
#[test]
fn a_start_without_forward_on_a_journal_whose_outbox_waits_is_refused_and_loses_nothing() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::create("fwdedge_outbox");
    let stream = "leftover";
    // nothing listens there until the outbox is to be sent
    let port = common::nats::free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let journal = dir.path().join("edge.journal");
    let local = dir.path().join("local.db");
    let n = 3_000;
    let config = Config {
        store_retry_budget_ms: 1_000,
        ..durable_forward(&url, stream, &journal)
    };
    let stats = actix::System::new().block_on(async {
        let t = start(config.clone(), Store::sqlite(&local)).expect("start");
        for first in (0..n).step_by(BATCH) {
            let ack = t.send(TrackBatch(events(first..first + BATCH))).await;
            assert_eq!(ack.unwrap().unwrap().accepted, BATCH);
        }
        let flushed = t.send(Flush).await.unwrap();
        assert!(flushed.is_err(), "NATS is down: {flushed:?}");
        t.send(Shutdown).await.unwrap()
    });
    assert!(stats.checkpoints > 0, "{stats:?}");

    let without = Config {
        forward: None,
        ..config.clone()
    };
    let refused = actix::System::new()
        .block_on(async { start(without.clone(), Store::sqlite(&local)).map(|_| ()) });
    let Err(Error::Config(e)) = refused else {
        panic!("started without `forward` on an outbox that waits: {refused:?}");
    };
    assert_eq!(e.field, "forward", "{e}");
    let waiting: usize = e
        .reason
        .split(" holds ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("how many messages wait: {e}"));
    assert!(waiting > 0, "{e}");
    assert!(e.reason.contains("start with `forward`"), "{e}");
    // refused again: the journal is as it was (and its lock released)
    let again = actix::System::new()
        .block_on(async { start(without.clone(), Store::sqlite(&local)).map(|_| ()) });
    assert!(
        matches!(&again, Err(Error::Config(e2)) if e2.reason == e.reason),
        "{again:?}"
    );

    let _nats = NatsServer::start_on(port);
    let stats = actix::System::new().block_on(async {
        let t = start(config, Store::sqlite(&local)).expect("start with forward");
        t.send(Flush)
            .await
            .unwrap()
            .expect("flush acknowledged by JetStream");
        t.send(Shutdown).await.unwrap()
    });
    assert_eq!(
        stats.batches_resent, waiting as u64,
        "the messages the refusal counted, sent: {stats:?}"
    );
    let report = drain(&url, stream, &db);
    assert_eq!(report.malformed + report.failed, 0, "{report:?}");
    assert_eq!(
        report.messages,
        stats.batches_resent + stats.batches_written,
        "{report:?}"
    );
    check_store(&db, &(0..n).collect::<Vec<_>>(), false);
    // the outbox is empty now: a start without `forward` is no longer refused
    actix::System::new().block_on(async {
        let t = start(without, Store::sqlite(&local)).expect("nothing waits any more");
        t.send(Shutdown).await.unwrap();
    });
}

/// Sends events `range` in batches, every one accepted.
async fn send_range(t: &actix::Addr<eventbatch::Tracker>, range: std::ops::Range<usize>) {
    for first in range.clone().step_by(BATCH) {
        let batch = events(first..(first + BATCH).min(range.end));
        let n = batch.len();
        let ack = t.send(TrackBatch(batch)).await.unwrap().unwrap();
        assert_eq!((ack.accepted, ack.dropped), (n, 0));
    }
}

/// Runs a durable forwarding instance on `journal` in a System of its own: `range` sent, then
/// `Flush` (its answer) and `Shutdown` (the stats).
fn run(
    config: &Config,
    local: &Path,
    range: std::ops::Range<usize>,
) -> (Result<(), PipelineError>, eventbatch::Stats) {
    let (config, local) = (config.clone(), local.to_path_buf());
    actix::System::new().block_on(async move {
        let t = start(config, Store::sqlite(local)).expect("start");
        send_range(&t, range).await;
        let flushed = t.send(Flush).await.unwrap().map(|_| ());
        (flushed, t.send(Shutdown).await.unwrap())
    })
}

/// Item 1, the outbox refusing while the journal's entries commit (a disk with room for the
/// small entry writes and not for the checkpoints' messages; here a trigger of the test's in
/// the journal file refuses every outbox row, a real SQLite error in the real file): the
/// accepted events are journaled, so nothing is lost, but none is on its way to NATS, and
/// `Flush` must say so rather than answer `Ok`. The next start, the outbox taking checkpoints
/// again, replays them: every accepted event reaches the workers once.
#[test]
fn a_flush_whose_checkpoint_the_outbox_refuses_is_an_error_and_the_next_start_forwards_it_all_once()
{
    let _serial = serial();
    let nats = NatsServer::start();
    let db = TestDb::create("fwdedge_refused");
    let dir = tempfile::tempdir().unwrap();
    let stream = "refused";
    let journal = dir.path().join("edge.journal");
    let local = dir.path().join("local.db");
    let config = durable_forward(&nats.url(), stream, &journal);
    let (flushed, first) = run(&config, &local, 0..1_000);
    flushed.expect("the first run's Flush");
    common::conservation(&first);

    let outbox = |sql: &str| {
        use diesel::{Connection, RunQueryDsl};
        let mut c = diesel::SqliteConnection::establish(journal.to_str().unwrap()).unwrap();
        diesel::sql_query(sql).execute(&mut c).unwrap();
    };
    outbox(
        "CREATE TRIGGER refuse_outbox BEFORE INSERT ON forward_outbox \
         BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
    );
    let (flushed, second) = run(&config, &local, 1_000..2_000);
    match &flushed {
        Err(PipelineError::Journal { path, reason }) => {
            assert!(path.ends_with("edge.journal"), "{path}");
            assert!(
                reason.contains("outbox") && reason.contains("refused by the test"),
                "{reason}"
            );
        }
        other => panic!("Flush with its checkpoint refused by the outbox answered {other:?}"),
    }
    assert_eq!(second.batches_written, 0, "nothing published: {second:?}");
    assert!(second.journal_errors > 0, "{second:?}");

    outbox("DROP TRIGGER refuse_outbox");
    let (flushed, third) = run(&config, &local, 2_000..2_500);
    flushed.expect("the third run's Flush");
    assert_eq!(
        third.events_replayed, 1_000,
        "the second run's events, journaled, replayed: {third:?}"
    );
    assert_eq!(third.events_dropped, 0, "{third:?}");
    common::conservation(&third);
    let report = drain(&nats.url(), stream, &db);
    assert_eq!(report.malformed + report.failed, 0, "{report:?}");
    assert_eq!(
        report.messages,
        first.batches_written + third.batches_written + third.batches_resent,
        "{report:?}"
    );
    check_store(&db, &(0..2_500).collect::<Vec<_>>(), true);
}

/// Item 1, a clean stop while the disk is still full: what was acknowledged within the
/// journal's window and neither journaled nor in the outbox cannot be kept anywhere. It must
/// be counted (`events_unwritten_at_stop`, in `events_dropped`), and nothing may be stored
/// twice: after the disk has room, the next start replays what the journal holds and the
/// workers store at least every accepted record but the counted ones, none twice.
#[test]
fn a_stop_on_a_full_disk_counts_what_it_cannot_keep_and_the_next_start_stores_the_rest_once() {
    let _serial = serial();
    let nats = NatsServer::start();
    let db = TestDb::create("fwdedge_fullstop");
    let fs = Tmpfs::new(4 << 20);
    let local = tempfile::tempdir().unwrap();
    let local = local.path().join("local.db");
    let stream = "fullstop";
    let config = durable_forward(&nats.url(), stream, &fs.path().join("edge.journal"));
    let (first, accepted) = actix::System::new().block_on({
        let (config, local, fs) = (config.clone(), local.clone(), &fs);
        async move {
            let t = start(config, Store::sqlite(local)).expect("start");
            send_range(&t, 0..2_000).await;
            t.send(Flush).await.unwrap().expect("flushed with room");
            fs.fill();
            let mut accepted: Vec<usize> = (0..2_000).collect();
            let mut next = 2_000;
            let refusal = send_until_refused(&t, &mut next, &mut accepted).await;
            assert!(
                matches!(refusal, TrackError::JournalUnavailable { .. }),
                "{refusal:?}"
            );
            (t.send(Shutdown).await.unwrap(), accepted)
        }
    });
    // what it gave up is counted, and only once (it was counted twice before: a held final
    // window's events stayed in `events_aggregated` as they were added to `events_dropped`)
    common::conservation(&first);
    assert_eq!(
        first.events_dropped, first.events_unwritten_at_stop,
        "{first:?}"
    );
    fs.free();
    let (flushed, second) = run(&config, &local, 0..0);
    flushed.expect("flushed once the disk has room");
    common::conservation(&second);
    let report = drain(&nats.url(), stream, &db);
    assert_eq!(report.malformed + report.failed, 0, "{report:?}");
    let records = |residue: usize| accepted.iter().filter(|i| *i % 10 == residue).count() as i64;
    let commands = db.count("events WHERE kind = 'command'");
    let engagements = db.count("events WHERE kind = 'engagement'");
    assert!(
        commands <= records(6) && engagements <= records(7),
        "none twice: {commands} commands of {}, {engagements} engagements of {}",
        records(6),
        records(7)
    );
    let samples = accepted
        .iter()
        .filter(|i| matches!(*i % 10, 0..=5 | 9))
        .count() as i64;
    let counted = db.scalar("SELECT COALESCE(SUM(count), 0) FROM metric_windows");
    assert!(
        counted <= samples,
        "{counted} samples counted of {samples} accepted"
    );
    let missing = (records(6) - commands + records(7) - engagements) as u64;
    assert!(
        missing <= first.events_unwritten_at_stop,
        "{missing} records missing, {} counted unwritten at the stop",
        first.events_unwritten_at_stop
    );
}

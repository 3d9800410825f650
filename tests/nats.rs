//! Scale-out through NATS JetStream (docs/scale-out.md): instances in forwarding mode, real
//! `nats-server` processes on free ports (tests/common/nats.rs), workers writing to a real
//! PostgreSQL database of the test's own.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::forward::{event, serial, WINDOW_MS};
use common::nats::NatsServer;
use common::pg::{Proxy, TestDb};
use eventbatch::forward::worker::{self, WorkerOptions, WorkerReport};
use eventbatch::{start, Config, Flush, Forward, Shutdown, Stats, Store, TrackBatch, TrackEvent};

const T0: i64 = common::T0;

/// The samples each metric window should count: `(metric, context, window start) -> count`,
/// for `instances` instances of `n` events.
fn expected_windows(instances: usize, n: usize) -> BTreeMap<(String, String, i64), i64> {
    let mut out = BTreeMap::new();
    for i in 0..n {
        let ts = T0 + (i as i64 * 30 * WINDOW_MS) / n as i64;
        let start = ts - ts.rem_euclid(WINDOW_MS);
        let key = match i % 10 {
            0..=3 => ("latency", "api"),
            4 | 5 => ("latency", ""),
            9 => ("datastore.load", "conversation"),
            _ => continue,
        };
        *out.entry((key.0.to_string(), key.1.to_string(), start))
            .or_insert(0) += instances as i64;
    }
    out
}

fn config(instance: &str, nats: &str, stream: &str) -> Config {
    Config {
        instance_id: Some(instance.to_string()),
        aggregation_window_ms: WINDOW_MS as u64,
        max_batch_size: 1000,
        forward: Some(Forward::new(nats, stream)),
        metrics_interval_ms: 0,
        stats_log_interval_ms: 0,
        ..Config::default()
    }
}

/// Runs an instance in forwarding mode on a thread of its own: `n` events in batches of
/// 1,000, calling `between(batch)` after each, then `Flush` and `Shutdown`.
fn instance(
    config: Config,
    n: usize,
    between: impl Fn(usize) + Send + 'static,
) -> JoinHandle<Stats> {
    instance_of(config, n, event, between)
}

/// [`instance`] with events `make(i, n)`.
fn instance_of(
    config: Config,
    n: usize,
    make: fn(usize, usize) -> TrackEvent,
    between: impl Fn(usize) + Send + 'static,
) -> JoinHandle<Stats> {
    patient_instance(config, n, make, between, 1)
}

/// [`instance_of`] that asks `Flush` up to `flushes` times: an application whose `Flush`
/// answers `Err` (JetStream did not acknowledge everything within the retry budget) still
/// holds what was not acknowledged, and asks again.
fn patient_instance(
    config: Config,
    n: usize,
    make: fn(usize, usize) -> TrackEvent,
    between: impl Fn(usize) + Send + 'static,
    flushes: usize,
) -> JoinHandle<Stats> {
    std::thread::spawn(move || {
        let dir = tempfile::tempdir().unwrap();
        let local = Store::sqlite(dir.path().join("local.db"));
        actix::System::new().block_on(async move {
            let tracker = start(config, local).expect("start in forwarding mode");
            for (b, first) in (0..n).step_by(1000).enumerate() {
                let batch = (first..(first + 1000).min(n)).map(|i| make(i, n)).collect();
                let ack = tracker.send(TrackBatch(batch)).await.unwrap().unwrap();
                assert_eq!(ack.dropped, 0);
                between(b);
            }
            for attempt in 1..=flushes {
                match tracker.send(Flush).await.unwrap() {
                    Ok(_) => break,
                    Err(e) if attempt < flushes => eprintln!("Flush {attempt} of {flushes}: {e}"),
                    Err(e) => panic!("flush acknowledged by JetStream: {e}"),
                }
            }
            tracker.send(Shutdown).await.unwrap()
        })
    })
}

/// One instance forwards `n` events to `stream`, then one worker writes them all: the
/// instance's stats and the worker's report.
fn forward_then_drain(
    url: &str,
    db: &TestDb,
    stream: &str,
    instance_id: &str,
    n: usize,
) -> (Stats, WorkerReport) {
    let stats = instance(config(instance_id, url, stream), n, |_| {})
        .join()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let w = spawn_worker(worker_opts(url, stream, &db.url()), stop.clone());
    wait_applied(db, stats.batches_written);
    stop.store(true, Ordering::Relaxed);
    (stats, w.join().unwrap())
}

/// A worker on a thread of its own, until `stop`.
fn spawn_worker(opts: WorkerOptions, stop: Arc<AtomicBool>) -> JoinHandle<WorkerReport> {
    std::thread::spawn(move || worker::run(opts, stop).expect("worker"))
}

fn worker_opts(nats: &str, stream: &str, url: &str) -> WorkerOptions {
    let mut o = WorkerOptions::new(nats, stream, Store::postgres(url));
    o.ack_wait = Duration::from_secs(3);
    o
}

/// Messages committed (0 while the workers have not created the table yet).
fn applied(db: &TestDb) -> u64 {
    use diesel::prelude::*;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    diesel::sql_query("SELECT count(*) AS n FROM nats_applied")
        .get_result::<N>(&mut db.conn())
        .map(|r| r.n as u64)
        .unwrap_or(0)
}

/// Waits until `db` holds `messages` committed messages (60 s at most).
fn wait_applied(db: &TestDb, messages: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let applied = applied(db);
        if applied >= messages {
            assert_eq!(applied, messages, "more messages committed than published");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{applied} of {messages} messages committed after 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every record stored once, every window's count the samples sent to it, every error
/// counted once.
fn check_store(db: &TestDb, stats: &[Stats], instances: usize, n: usize) {
    for s in stats {
        assert_eq!(s.events_dropped, 0);
        assert_eq!(s.events_received, n as u64);
        common::conservation(s);
    }
    let records: u64 = stats.iter().map(|s| s.records_written).sum();
    assert_eq!(db.count("events") as u64, records, "every record once");
    // commands, engagements, and the first error of each hash in each window
    let commands = (0..n).filter(|i| i % 10 == 6 || i % 10 == 7).count() as u64;
    assert!(records > commands * instances as u64);
    let mut stored = BTreeMap::new();
    let mut conn = db.conn();
    use diesel::prelude::*;
    use eventbatch::db::schema::metric_windows::dsl as w;
    let rows: Vec<(String, String, i64, i64)> = w::metric_windows
        .select((w::metric, w::context_key, w::window_start_ms, w::count))
        .load(&mut conn)
        .unwrap();
    for (metric, context, start, count) in rows {
        *stored.entry((metric, context, start)).or_insert(0) += count;
    }
    assert_eq!(
        stored,
        expected_windows(instances, n),
        "window counts = samples sent"
    );
    let errors = (0..n).filter(|i| i % 10 == 8).count() * instances;
    assert_eq!(
        db.scalar("SELECT COALESCE(SUM(count), 0) FROM error_counts"),
        errors as i64,
        "every error counted once"
    );
    // Every `help` of every instance is user u1: the sketches came on the wire and merged.
    let reader = eventbatch::StoreReader::open(&eventbatch::Store::postgres(db.url())).unwrap();
    for resolution in [eventbatch::Resolution::Window, eventbatch::Resolution::Day] {
        let q = eventbatch::QueryUsers::command("help").resolution(resolution);
        let users = reader.users(&q).unwrap();
        assert!(
            !users.is_empty() && users.iter().all(|u| u.users == 1),
            "{users:?}"
        );
    }
}

#[test]
fn two_instances_through_two_workers_store_every_record_and_sample_once() {
    let _serial = serial();
    let nats = NatsServer::start();
    let db = TestDb::create("nats_two");
    let stream = "two";
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..2)
        .map(|_| spawn_worker(worker_opts(&nats.url(), stream, &db.url()), stop.clone()))
        .collect();
    let n = 100_000;
    let instances: Vec<_> = ["inst-a", "inst-b"]
        .iter()
        .map(|id| instance(config(id, &nats.url(), stream), n, |_| {}))
        .collect();
    let stats: Vec<Stats> = instances.into_iter().map(|h| h.join().unwrap()).collect();
    let messages: u64 = stats.iter().map(|s| s.batches_written).sum();
    wait_applied(&db, messages);
    stop.store(true, Ordering::Relaxed);
    let reports: Vec<WorkerReport> = workers.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(reports.iter().map(|r| r.messages).sum::<u64>(), messages);
    check_store(&db, &stats, 2, n);
}

#[test]
fn nats_unreachable_for_10_s_then_back_delivers_every_event_once() {
    let _serial = serial();
    let nats = Arc::new(std::sync::Mutex::new(NatsServer::start()));
    let url = nats.lock().unwrap().url();
    let db = TestDb::create("nats_outage");
    let stream = "outage";
    let n = 40_000;
    let outage = nats.clone();
    // the server goes away after the 10th batch and comes back 10 s later
    let handle = instance(config("inst-o", &url, stream), n, move |b| match b {
        10 => outage.lock().unwrap().stop(),
        20 => {
            std::thread::sleep(Duration::from_secs(10));
            outage.lock().unwrap().resume();
        }
        _ => {}
    });
    let stats = handle.join().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let w = spawn_worker(worker_opts(&url, stream, &db.url()), stop.clone());
    wait_applied(&db, stats.batches_written);
    stop.store(true, Ordering::Relaxed);
    let report = w.join().unwrap();
    assert_eq!(report.messages, stats.batches_written);
    check_store(&db, &[stats], 1, n);
}

#[test]
fn a_worker_whose_postgres_is_down_acknowledges_nothing_it_has_not_committed() {
    let _serial = serial();
    let nats = NatsServer::start();
    let db = TestDb::create("nats_pgdown");
    let stream = "pgdown";
    let proxy = Proxy::start();
    let mut opts = worker_opts(&nats.url(), stream, &db.url_via(proxy.port));
    opts.ack_wait = Duration::from_secs(2);
    proxy.cut();
    assert!(
        worker::run(opts.clone(), Arc::new(AtomicBool::new(false))).is_err(),
        "a worker cannot start without its store"
    );
    proxy.restore();
    let stop = Arc::new(AtomicBool::new(false));
    let w = spawn_worker(opts, stop.clone());
    // the worker has opened its store once its consumer exists; then the store goes away
    while consumer_acked(&nats.url(), stream).is_none() {
        std::thread::sleep(Duration::from_millis(50));
    }
    proxy.cut();
    let n = 20_000;
    let stats = instance(config("inst-p", &nats.url(), stream), n, |_| {})
        .join()
        .unwrap();
    // past two acknowledgement timeouts: every message delivered, none committed
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(applied(&db), 0);
    assert_eq!(
        consumer_acked(&nats.url(), stream),
        Some(0),
        "nothing acknowledged"
    );
    proxy.restore();
    wait_applied(&db, stats.batches_written);
    stop.store(true, Ordering::Relaxed);
    let report = w.join().unwrap();
    assert!(report.failed > 0, "the worker met the outage");
    assert_eq!(report.messages, stats.batches_written);
    check_store(&db, &[stats], 1, n);
}

/// The stream sequence through which the workers' consumer has every message acknowledged
/// (its ack floor); `None` while the stream or the consumer does not exist.
fn consumer_acked(url: &str, stream: &str) -> Option<u64> {
    let (url, stream) = (url.to_string(), stream.to_string());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let client = async_nats::connect(url).await.ok()?;
        let js = async_nats::jetstream::new(client);
        let s = js.get_stream(&stream).await.ok()?;
        let mut consumer: async_nats::jetstream::consumer::PullConsumer =
            s.get_consumer(worker::DEFAULT_CONSUMER).await.ok()?;
        let info = consumer.info().await.ok()?;
        Some(info.ack_floor.stream_sequence)
    })
}

/// The replicas of `stream` (as JetStream reports its configuration), once it exists (30 s
/// at most).
/// The stream's replica count and the name of the node leading it, once it exists and has a
/// leader (at most 30 s).
fn stream_replicas_and_leader(url: &str, stream: &str) -> (usize, String) {
    let (url, stream) = (url.to_string(), stream.to_string());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let client = async_nats::ConnectOptions::new()
            .connect(eventbatch_addrs(&url))
            .await
            .unwrap();
        let js = async_nats::jetstream::new(client);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut s) = js.get_stream(&stream).await {
                if let Ok(info) = s.info().await {
                    if let Some(leader) = info.cluster.as_ref().and_then(|c| c.leader.clone()) {
                        return (info.config.num_replicas, leader);
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no stream {stream} with a leader after 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

fn eventbatch_addrs(url: &str) -> Vec<async_nats::ServerAddr> {
    url.split(',').map(|u| u.parse().unwrap()).collect()
}

/// Prints the cluster's server logs when the test fails (a panic), so that a failure in CI
/// says what the cluster was doing.
struct LogsOnFailure(Arc<std::sync::Mutex<common::nats::Cluster>>);

impl Drop for LogsOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let cluster = self.0.lock().unwrap_or_else(|e| e.into_inner());
            eprintln!("{}", cluster.log_tails(80));
        }
    }
}

#[test]
fn a_three_node_cluster_with_an_r3_stream_loses_nothing_when_a_node_stops() {
    let _serial = serial();
    let cluster = common::nats::Cluster::start();
    let url = cluster.url();
    let cluster = Arc::new(std::sync::Mutex::new(cluster));
    let _logs = LogsOnFailure(cluster.clone());
    let stream = "r3";
    let db = TestDb::create("nats_r3");
    let stop = Arc::new(AtomicBool::new(false));
    // the stream is created with three replicas by whichever of the workers and instances
    // comes first (`WorkerOptions::replicas`, `Forward::replicas`)
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let mut opts = worker_opts(&url, stream, &db.url());
            opts.replicas = 3;
            spawn_worker(opts, stop.clone())
        })
        .collect();
    // as an operator would, the workers come first: the stream exists before the instances
    // publish (a stream still forming when a node stops is not what this test is about)
    let (replicas, leader) = stream_replicas_and_leader(&url, stream);
    assert_eq!(replicas, 3, "created with three replicas");
    let r3 = |instance: &str| {
        let mut c = config(instance, &url, stream);
        c.forward = c.forward.map(|f| f.with_replicas(3));
        c
    };
    let n = 60_000;
    let stopped = Arc::new(AtomicBool::new(false));
    // the node stopped is the stream's leader: the publishes outstanding on it are never
    // acknowledged (up to 32 at once), and the others must elect a new one and carry on
    let leader = leader
        .strip_prefix('n')
        .and_then(|i| i.parse::<usize>().ok())
        .expect("nodes are named n0, n1, n2");
    let (cluster2, stopped2) = (cluster.clone(), stopped.clone());
    // the remaining two elect a new leader in seconds here, but twice in CI nothing was
    // acknowledged within one `Flush`'s 30 s budget (issue 19; the cause is not established,
    // the servers' logs are printed if it happens again): the instances ask again, as an
    // application would; what this test holds is that nothing is lost or doubled
    let a = patient_instance(
        r3("inst-r1"),
        n,
        event,
        move |b| {
            if b == 20 {
                cluster2.lock().unwrap().nodes[leader].stop();
                stopped2.store(true, Ordering::Relaxed);
            }
        },
        3,
    );
    let b = patient_instance(r3("inst-r2"), n, event, |_| {}, 3);
    let stats = vec![a.join().unwrap(), b.join().unwrap()];
    assert!(
        stopped.load(Ordering::Relaxed),
        "a node was stopped mid-stream"
    );
    let messages: u64 = stats.iter().map(|s| s.batches_written).sum();
    wait_applied(&db, messages);
    stop.store(true, Ordering::Relaxed);
    let reports: Vec<WorkerReport> = workers.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(reports.iter().map(|r| r.messages).sum::<u64>(), messages);
    check_store(&db, &stats, 2, n);
}

/// Command `i` with 16 tags of 250 bytes of pseudo-random letters: 4 KB that compression
/// cannot shrink much, so a batch of 1,000 is a message of several MB.
fn bulky_command(i: usize, n: usize) -> TrackEvent {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64 ^ (i as u64 + 1);
    let mut noise = || -> String {
        (0..250)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b'a' + (x % 26) as u8)
            })
            .collect()
    };
    let mut e = TrackEvent::command("deploy").user("u1");
    for t in 0..16 {
        e = e.tag(format!("t{t}"), noise());
    }
    e.at(T0 + (i as i64 * 30 * WINDOW_MS) / n as i64)
}

/// A batch whose message is over the server's `max_payload` (1 MB, nats-server's default)
/// is sent in parts that fit: every record stored once, the queue's batches all confirmed
/// (it would hold the batch and refuse its publish until the retry budget, then lose it).
#[test]
fn a_batch_over_the_servers_max_payload_travels_in_parts() {
    let _serial = serial();
    let nats = NatsServer::start();
    let db = TestDb::create("nats_bulky");
    let stream = "bulky";
    let n = 3_000;
    let stats = instance_of(
        config("inst-b", &nats.url(), stream),
        n,
        bulky_command,
        |_| {},
    )
    .join()
    .unwrap();
    assert_eq!((stats.events_dropped, stats.records_written), (0, n as u64));
    common::conservation(&stats);
    assert!(
        stats.batches_written >= 6,
        "3 batches of 1,000 records of 4 KB each travel in parts: {} messages",
        stats.batches_written
    );
    let stop = Arc::new(AtomicBool::new(false));
    let w = spawn_worker(worker_opts(&nats.url(), stream, &db.url()), stop.clone());
    wait_applied(&db, stats.batches_written);
    stop.store(true, Ordering::Relaxed);
    let report = w.join().unwrap();
    assert_eq!(report.messages, stats.batches_written);
    assert_eq!(db.count("events"), n as i64, "every record once");
}

/// Event `i` of [`event`]'s workload, except that one command in a thousand is `refused`.
fn with_refused(i: usize, n: usize) -> TrackEvent {
    match i % 1000 {
        506 => TrackEvent::command("refused")
            .user("u1")
            .at(T0 + (i as i64 * 30 * WINDOW_MS) / n as i64),
        _ => event(i, n),
    }
}

/// A row PostgreSQL refuses (a trigger's exception) is set aside in the quarantine table, and
/// the rest of its message is committed once and acknowledged: the message is not delivered
/// again for ever, and nothing else is lost.
#[test]
fn a_row_postgres_refuses_is_quarantined_by_the_worker_and_the_rest_committed() {
    let _serial = serial();
    let nats = NatsServer::start();
    let db = TestDb::create("nats_refuse");
    let stream = "refuse";
    let stop = Arc::new(AtomicBool::new(false));
    let w = spawn_worker(worker_opts(&nats.url(), stream, &db.url()), stop.clone());
    // the worker has migrated its store once its consumer exists
    while consumer_acked(&nats.url(), stream).is_none() {
        std::thread::sleep(Duration::from_millis(50));
    }
    use diesel::connection::SimpleConnection;
    db.conn()
        .batch_execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN IF NEW.name = 'refused' THEN RAISE EXCEPTION 'refused by policy'; END IF; \
             RETURN NEW; END $$; \
             CREATE TRIGGER refuse BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION refuse();",
        )
        .unwrap();
    let n = 20_000;
    let refused = (0..n).filter(|i| i % 1000 == 506).count() as u64;
    let stats = instance_of(
        config("inst-q", &nats.url(), stream),
        n,
        with_refused,
        |_| {},
    )
    .join()
    .unwrap();
    wait_applied(&db, stats.batches_written);
    stop.store(true, Ordering::Relaxed);
    let report = w.join().unwrap();
    assert_eq!(report.messages, stats.batches_written, "each message once");
    assert_eq!(report.quarantined, refused);
    assert_eq!(
        db.count("quarantine WHERE error LIKE '%refused by policy%'"),
        refused as i64
    );
    assert_eq!(
        db.count("events") as u64,
        stats.records_written - refused,
        "every other record once"
    );
    assert_eq!(db.count("events WHERE name = 'refused'"), 0);
}

#[test]
fn a_worker_with_retention_prunes_the_rows_older_than_their_maximum_age() {
    let _serial = serial();
    let nats = NatsServer::start();
    let db = TestDb::create("nats_retention");
    let stream = "retention";
    let n = 20_000;
    let (stats, report) = forward_then_drain(&nats.url(), &db, stream, "inst-t", n);
    assert_eq!(report.pruned, 0, "no retention: nothing pruned");
    check_store(&db, &[stats], 1, n);

    // the 30 windows' events span T0 .. T0 + 30 min; cut in the middle of window 15 (the
    // seconds between here and the round move the cut-off by less than half a window)
    let cut = T0 + 15 * WINDOW_MS + WINDOW_MS / 2;
    let age = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - cut) as u64;
    // the windows' age also prunes the window rows of distinct users (`command_users`)
    let rows =
        |db: &TestDb| db.count("events") + db.count("metric_windows") + db.count("command_users");
    let user_windows = |op: &str, start: i64| {
        db.count(&format!(
            "command_users WHERE resolution = 'window' AND window_start_ms {op} {start}"
        ))
    };
    let user_buckets = || db.count("command_users WHERE resolution <> 'window'");
    let (before, kept_events, kept_windows, kept_users, buckets) = (
        rows(&db),
        db.scalar(&format!(
            "SELECT count(*) FROM events WHERE ts_ms >= {}",
            cut + WINDOW_MS / 2
        )),
        db.scalar(&format!(
            "SELECT count(*) FROM metric_windows WHERE window_start_ms >= {}",
            T0 + 16 * WINDOW_MS
        )),
        user_windows(">=", T0 + 16 * WINDOW_MS),
        user_buckets(),
    );
    assert!(
        user_windows("<", T0 + 15 * WINDOW_MS) > 0 && kept_users > 0,
        "users' windows on both sides of the cut"
    );
    let mut opts = worker_opts(&nats.url(), stream, &db.url());
    opts.retention.events_max_age_ms = age;
    opts.retention.windows_max_age_ms = age;
    opts.retention.batch_size = 500;
    opts.rollup_interval = None;
    opts.idle_exit = Some(Duration::from_millis(500));
    let report = worker::run(opts, Arc::new(AtomicBool::new(false))).expect("worker");
    let after = rows(&db);
    assert!(report.pruned > 0, "old rows pruned");
    assert_eq!(
        report.pruned as i64,
        before - after,
        "every pruned row counted"
    );
    assert!(
        db.scalar(&format!(
            "SELECT count(*) FROM events WHERE ts_ms < {}",
            cut - WINDOW_MS / 2
        )) == 0
            && db.scalar(&format!(
                "SELECT count(*) FROM metric_windows WHERE window_start_ms < {}",
                T0 + 15 * WINDOW_MS
            )) == 0,
        "nothing older than the maximum age is left"
    );
    assert_eq!(
        db.scalar(&format!(
            "SELECT count(*) FROM events WHERE ts_ms >= {}",
            cut + WINDOW_MS / 2
        )),
        kept_events,
        "younger events kept"
    );
    assert_eq!(
        db.scalar(&format!(
            "SELECT count(*) FROM metric_windows WHERE window_start_ms >= {}",
            T0 + 16 * WINDOW_MS
        )),
        kept_windows,
        "younger windows kept"
    );
    assert_eq!(
        (
            user_windows("<", T0 + 15 * WINDOW_MS),
            user_windows(">=", T0 + 16 * WINDOW_MS)
        ),
        (0, kept_users),
        "users' windows: the old pruned, the younger kept"
    );
    assert_eq!(user_buckets(), buckets, "hour roll-ups kept: no age set");
}

/// Claims older than `applied_max_age` are deleted, the younger kept, with no other retention
/// set. The old claims are rows whose `applied_at_ms` the test sets in the past: 20 per table,
/// deleted one per chunk (`batch_size` 1), so the pass at start (16 chunks) leaves 4 and the
/// next pass, which follows at once, deletes them.
#[test]
fn a_worker_deletes_the_claims_older_than_applied_max_age_and_keeps_the_younger() {
    use diesel::connection::SimpleConnection;
    let _serial = serial();
    let nats = NatsServer::start();
    let db = TestDb::create("nats_claims");
    let stream = "claims";
    let (stats, report) = forward_then_drain(&nats.url(), &db, stream, "inst-c", 5_000);
    assert_eq!(report.claims_pruned, 0, "every claim younger than 7 days");
    let messages = stats.batches_written as i64;
    assert!(messages > 0);
    assert_eq!(db.count("nats_applied"), messages);
    assert_eq!(db.count("forward_applied"), messages);

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let max_age = worker::MIN_APPLIED_MAX_AGE.as_millis() as i64;
    // 20 old claims per table (a minute past the age), 5 young ones (a minute short of it),
    // and the real claims, seconds old
    let (old, young) = (now - max_age - 60_000, now - max_age + 60_000);
    let mut sql = String::new();
    for seq in 1..=25 {
        let at = if seq <= 20 { old } else { young };
        sql += &format!(
            "INSERT INTO nats_applied VALUES ('earlier', {seq}, {at});
             INSERT INTO forward_applied VALUES ('inst-earlier', 1, {seq}, {at});"
        );
    }
    db.conn().batch_execute(&sql).unwrap();
    let mut opts = worker_opts(&nats.url(), stream, &db.url());
    opts.applied_max_age = worker::MIN_APPLIED_MAX_AGE;
    opts.retention.batch_size = 1;
    opts.rollup_interval = None;
    opts.idle_exit = Some(Duration::from_millis(500));
    let report = worker::run(opts, Arc::new(AtomicBool::new(false))).expect("worker");
    assert_eq!(report.claims_pruned, 40, "the old claims of both tables");
    assert_eq!(report.pruned, 0, "no other retention");
    assert_eq!(
        db.count(&format!(
            "nats_applied WHERE applied_at_ms < {}",
            now - max_age
        )),
        0
    );
    assert_eq!(
        db.count(&format!(
            "forward_applied WHERE applied_at_ms < {}",
            now - max_age
        )),
        0
    );
    assert_eq!(
        db.scalar("SELECT COALESCE(SUM(seq), 0) FROM nats_applied WHERE stream = 'earlier'"),
        (21..=25).sum::<i64>(),
        "the young claims kept"
    );
    assert_eq!(
        db.scalar(
            "SELECT COALESCE(SUM(seq), 0) FROM forward_applied WHERE instance_id = 'inst-earlier'"
        ),
        (21..=25).sum::<i64>(),
        "the young claims kept"
    );
    assert_eq!(db.count("nats_applied WHERE stream = 'claims'"), messages);
    assert_eq!(
        db.count("forward_applied WHERE instance_id <> 'inst-earlier'"),
        messages
    );
}

/// Publishes `count` messages that are not forwarded batches to `stream` (created as the
/// instances create it).
fn publish_garbage(url: &str, stream: &str, count: usize) {
    let (url, stream) = (url.to_string(), stream.to_string());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let js = async_nats::jetstream::new(async_nats::connect(url).await.unwrap());
        js.get_or_create_stream(async_nats::jetstream::stream::Config {
            name: stream.clone(),
            subjects: vec![format!("{stream}.>")],
            ..Default::default()
        })
        .await
        .unwrap();
        for i in 0..count {
            js.publish(
                format!("{stream}.batches"),
                format!("not a batch {i}").into(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        }
    })
}

#[test]
fn a_malformed_message_among_a_fetch_is_set_aside_and_the_others_committed_once() {
    let _serial = serial();
    let nats = NatsServer::start();
    let db = TestDb::create("nats_malformed");
    let stream = "malformed";
    // garbage first, then an instance's batches: the worker's first fetch mixes them (its
    // one-transaction-per-fetch path falls back to one message at a time), the later ones
    // commit a fetch at a time
    publish_garbage(&nats.url(), stream, 3);
    let n = 20_000;
    let (stats, report) = forward_then_drain(&nats.url(), &db, stream, "inst-m", n);
    assert_eq!(report.malformed, 3, "every malformed message set aside");
    assert_eq!(report.messages, stats.batches_written);
    assert_eq!(report.failed, 0);
    check_store(&db, &[stats], 1, n);
}

// Durable forwarding (`durable` with `forward`): the journal is the outage buffer. A child
// process runs the instance and is killed with SIGKILL; the test restarts the instance on the
// same files, then a worker drains the stream.

const DURABLE_DIR: &str = "EVENTBATCH_TEST_DURFWD_DIR";
const DURABLE_NATS: &str = "EVENTBATCH_TEST_DURFWD_NATS";
const DURABLE_STREAM: &str = "EVENTBATCH_TEST_DURFWD_STREAM";
/// Events of the durable tests: the first half flushed (a checkpoint into the journal's
/// outbox), the second half only journaled when the child is killed.
const DURABLE_N: usize = 20_000;
/// The stream's duplicate window in the durable tests: short, so that a re-publish after the
/// restart falls after it.
const DUPLICATE_WINDOW_MS: u64 = 1_000;

fn durable_config(url: &str, stream: &str, dir: &std::path::Path) -> Config {
    let mut c = config("inst-d", url, stream);
    c.durable = true;
    c.journal_path = Some(dir.join("local.journal"));
    c.fsync_interval_ms = 20;
    // no checkpoint but the ones the test asks for (Flush), and none every 25,000 records
    c.batch_interval_ms = 3_600_000;
    c.max_queued_events = 200_000;
    c.store_retry_budget_ms = 2_000;
    c.forward = c.forward.map(|f| Forward {
        duplicate_window_ms: DUPLICATE_WINDOW_MS,
        ..f
    });
    c
}

/// The child of the durable forwarding tests: accepts the first half of the events, flushes
/// (answered `Ok` when NATS is up, `Err` after the retry budget when it is down: either way
/// the checkpoint is in the journal's outbox), accepts the second half, waits three fsync
/// intervals, says DURABLE and waits to be killed.
#[test]
#[ignore = "run by the durable forwarding tests"]
fn durable_forward_child() {
    let (Ok(dir), Ok(url), Ok(stream)) = (
        std::env::var(DURABLE_DIR),
        std::env::var(DURABLE_NATS),
        std::env::var(DURABLE_STREAM),
    ) else {
        return;
    };
    let _ = env_logger::builder().is_test(true).try_init();
    let dir = std::path::PathBuf::from(dir);
    actix::System::new().block_on(async move {
        let config = durable_config(&url, &stream, &dir);
        let t = start(config, Store::sqlite(dir.join("local.db"))).expect("start");
        let send = |range: std::ops::Range<usize>| {
            let t = t.clone();
            async move {
                for first in range.step_by(1000) {
                    let batch: Vec<TrackEvent> =
                        (first..first + 1000).map(|i| event(i, DURABLE_N)).collect();
                    let ack = t.send(TrackBatch(batch)).await.unwrap().unwrap();
                    assert_eq!((ack.accepted, ack.dropped), (1000, 0));
                }
            }
        };
        send(0..DURABLE_N / 2).await;
        let flushed = t.send(Flush).await.unwrap();
        println!("FLUSHED {}", flushed.is_ok());
        send(DURABLE_N / 2..DURABLE_N).await;
        actix::clock::sleep(Duration::from_millis(60)).await;
        println!("DURABLE");
        use std::io::Write;
        std::io::stdout().flush().unwrap();
        std::future::pending::<()>().await;
    });
}

/// Runs [`durable_forward_child`] against `url` until it says DURABLE, then kills it with
/// SIGKILL; returns whether its `Flush` was answered `Ok`.
#[cfg(unix)]
fn run_and_kill_child(dir: &std::path::Path, url: &str, stream: &str) -> bool {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "durable_forward_child",
            "--ignored",
            "--nocapture",
        ])
        .env(DURABLE_DIR, dir)
        .env(DURABLE_NATS, url)
        .env(DURABLE_STREAM, stream)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the child");
    let mut flushed = None;
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.expect("child output");
        if let Some(ok) = line.trim().strip_prefix("FLUSHED ") {
            flushed = Some(ok == "true");
        }
        if line.trim() == "DURABLE" {
            break;
        }
    }
    child.kill().expect("SIGKILL");
    assert!(!child.wait().expect("wait").success(), "killed, not ended");
    flushed.expect("the child flushed")
}

/// Starts the instance again on the child's files: it publishes its outbox again and
/// replays its journal; then `Flush` (answered once JetStream has everything) and `Shutdown`.
fn restart(dir: &std::path::Path, url: &str, stream: &str) -> Stats {
    let config = durable_config(url, stream, dir);
    let local = Store::sqlite(dir.join("local.db"));
    actix::System::new().block_on(async move {
        let t = start(config, local).expect("restart");
        t.send(Flush)
            .await
            .unwrap()
            .expect("flush acknowledged by JetStream");
        t.send(Shutdown).await.unwrap()
    })
}

/// A worker until the stream has been idle for a second.
fn drain(url: &str, stream: &str, db: &TestDb) -> WorkerReport {
    let mut opts = worker_opts(url, stream, &db.url());
    opts.idle_exit = Some(Duration::from_secs(1));
    opts.rollup_interval = None;
    worker::run(opts, Arc::new(AtomicBool::new(false))).expect("worker")
}

/// What the workers stored for [`DURABLE_N`] events of one instance that was killed and
/// restarted: every command and engagement once, each window's count the samples sent to it,
/// every error counted once. The first error of a hash in a window is a record of the window
/// (not of the event): the restarted run, whose replay begins inside a window, records it
/// again for that window as after a late event (ARCHITECTURE.md, "Durable mode",
/// "Re-derived on replay"); at most one window, two hashes.
fn check_durable_store(db: &TestDb) {
    let n = DURABLE_N;
    let per_kind = |kind: &str, residue: usize| {
        (
            db.count(&format!("events WHERE kind = '{kind}'")),
            (0..n).filter(|i| i % 10 == residue).count() as i64,
        )
    };
    let (stored, sent) = per_kind("command", 6);
    assert_eq!(stored, sent, "every command once");
    let (stored, sent) = per_kind("engagement", 7);
    assert_eq!(stored, sent, "every engagement once");
    let first_errors: std::collections::BTreeSet<(usize, i64)> = (0..n)
        .filter(|i| i % 10 == 8)
        .map(|i| {
            let ts = T0 + (i as i64 * 30 * WINDOW_MS) / n as i64;
            (usize::from(i % 3 == 0), ts - ts.rem_euclid(WINDOW_MS))
        })
        .collect();
    let error_records = db.count("events WHERE kind = 'error'");
    let firsts = first_errors.len() as i64;
    assert!(
        (firsts..=firsts + 2).contains(&error_records),
        "{error_records} error records for {firsts} (hash, window) pairs"
    );
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
    assert_eq!(
        stored,
        expected_windows(1, n),
        "window counts = samples sent"
    );
    assert_eq!(
        db.scalar("SELECT COALESCE(SUM(count), 0) FROM error_counts"),
        (0..n).filter(|i| i % 10 == 8).count() as i64,
        "every error counted once"
    );
}

#[cfg(unix)]
#[test]
fn a_durable_instance_killed_while_nats_is_down_forwards_every_accepted_event_once_after_restart() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::create("nats_durable_down");
    let stream = "durdown";
    // nothing listens there until the child is dead
    let port = common::nats::free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let flushed = run_and_kill_child(dir.path(), &url, stream);
    assert!(
        !flushed,
        "NATS was down: the Flush could not be acknowledged"
    );
    let _nats = NatsServer::start_on(port);
    let stats = restart(dir.path(), &url, stream);
    assert!(
        stats.batches_resent > 0,
        "the first half, committed to the outbox, sent now: {stats:?}"
    );
    assert_eq!(
        stats.events_replayed,
        (DURABLE_N / 2) as u64,
        "the second half, after the outbox's checkpoint, replayed"
    );
    assert_eq!(stats.events_dropped, 0);
    common::conservation(&stats);
    let report = drain(&url, stream, &db);
    assert_eq!(report.malformed + report.failed, 0, "{report:?}");
    assert_eq!(
        report.messages,
        stats.batches_resent + stats.batches_written,
        "every message once: {report:?}"
    );
    check_durable_store(&db);
}

#[cfg(unix)]
#[test]
fn a_durable_instance_killed_after_jetstream_acknowledged_sends_its_outbox_again_and_nothing_is_stored_twice(
) {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::create("nats_durable_acked");
    let stream = "duracked";
    let nats = NatsServer::start();
    let flushed = run_and_kill_child(dir.path(), &nats.url(), stream);
    assert!(flushed, "JetStream acknowledged the first half");
    // The first half's messages are acknowledged, and still in the outbox (they leave it with
    // the next checkpoint, which the kill came before): the restart publishes them again,
    // after the stream's duplicate window, so JetStream stores them a second time.
    std::thread::sleep(Duration::from_millis(3 * DUPLICATE_WINDOW_MS));
    let stats = restart(dir.path(), &nats.url(), stream);
    assert!(stats.batches_resent > 0, "{stats:?}");
    assert_eq!(stats.events_replayed, (DURABLE_N / 2) as u64);
    assert_eq!(stats.events_dropped, 0);
    common::conservation(&stats);
    let report = drain(&nats.url(), stream, &db);
    assert_eq!(report.malformed + report.failed, 0, "{report:?}");
    assert_eq!(
        report.duplicates, stats.batches_resent,
        "each message sent again found by its origin, not written: {report:?}"
    );
    assert_eq!(
        report.messages,
        stats.batches_resent + stats.batches_written,
        "the first half's messages (once) and the restarted run's: {report:?}"
    );
    check_durable_store(&db);
}

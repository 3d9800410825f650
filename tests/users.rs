//! Distinct users (issue 18, item 4) through the real pipeline on SQLite and on PostgreSQL:
//! counted from every accepted command before sampling, per window and per hour, day and week
//! roll-up, two instances' sketches merged equal to one instance that saw the union, open
//! windows in the answer before they are written, a window written again (a restart sending
//! the same users) counted once, and with `identity_key` no raw id in the store's files.
//! (The sketch's error at 1,000,000 ids is the unit test `stats::hll`'s.)

mod common;
use common::pg;

use std::sync::Arc;

use common::{Db, TempDb, T0};
use eventbatch::*;
use pg::TestDb;

const MINUTE: i64 = 60_000;

fn start(db: &Db, instance: &str, config: Config) -> actix::Addr<Tracker> {
    let _ = env_logger::builder().is_test(true).try_init();
    let clock = ManualClock::new(T0 + 10 * MINUTE);
    let config = Config {
        instance_id: Some(instance.into()),
        batch_interval_ms: 3_600_000,
        ..config
    };
    start_with_clock(config, db.store(), Arc::new(clock)).expect("start")
}

/// `help` commands of users `ids` in the window starting `minute` minutes after `T0`, some in
/// the context `eu` (the same users: contexts merge when no context is asked for).
fn help(ids: std::ops::Range<u32>, minute: i64) -> Vec<TrackEvent> {
    ids.map(|i| {
        let e = TrackEvent::command("help")
            .user(format!("user-{i}"))
            .at(T0 + minute * MINUTE + i64::from(i % 1000));
        if i % 3 == 0 {
            e.context("eu")
        } else {
            e
        }
    })
    .collect()
}

async fn send(t: &actix::Addr<Tracker>, events: Vec<TrackEvent>) {
    common::send_all(t, events, 1_000).await;
}

async fn users(t: &actix::Addr<Tracker>, resolution: Resolution) -> Vec<(i64, u64)> {
    let q = QueryUsers::command("help").resolution(resolution);
    let counts = t.send(q).await.unwrap().unwrap();
    counts.iter().map(|c| (c.start_ms, c.users)).collect()
}

fn within(got: u64, truth: u64, bound: f64) {
    let e = (got as f64 - truth as f64).abs() / truth as f64;
    assert!(e <= bound, "{got} distinct users for {truth}: {e}");
}

/// Two instances, each seeing part of the users, sampled at 10%; a third, in a store of its
/// own, seeing all of them unsampled: the merged answers equal the third's, window by window
/// and in every roll-up.
async fn two_instances_merge_to_the_union(db: Db, union_db: Db) {
    let sampled = Config {
        sampling_rates: [("help".to_string(), 0.1)].into(),
        ..common::quiet_config()
    };
    let a = start(&db, "a", sampled.clone());
    let b = start(&db, "b", sampled);
    let all = start(&union_db, "all", common::quiet_config());
    // a: users 0..3000 in minute 0, 1000..4000 in minute 1; b: 2000..6000 in minute 0.
    send(&a, help(0..3_000, 0)).await;
    send(&a, help(1_000..4_000, 1)).await;
    send(&b, help(2_000..6_000, 0)).await;
    send(&all, help(0..6_000, 0)).await;
    send(&all, help(1_000..4_000, 1)).await;

    // Before any write: the open windows answer.
    let open = users(&a, Resolution::Window).await;
    assert_eq!(open.len(), 2, "{open:?}");
    within(open[0].1, 3_000, 0.02);

    for t in [&a, &b, &all] {
        let stats = t.send(Flush).await.unwrap().unwrap();
        common::conservation(&stats);
    }
    let stats = a.send(GetStats).await.unwrap();
    assert!(
        stats.events_sampled_out > 5_000,
        "sampling dropped most: {stats:?}"
    );
    assert_eq!(db.count("command_users WHERE resolution = 'window'"), 6);

    for resolution in [
        Resolution::Window,
        Resolution::Hour,
        Resolution::Day,
        Resolution::Week,
    ] {
        let merged = users(&a, resolution).await;
        assert_eq!(merged, users(&all, resolution).await, "{resolution:?}");
        assert_eq!(merged, users(&b, resolution).await, "{resolution:?}");
    }
    let windows = users(&a, Resolution::Window).await;
    assert_eq!(
        windows.iter().map(|w| w.0).collect::<Vec<_>>(),
        [T0, T0 + MINUTE]
    );
    within(windows[0].1, 6_000, 0.02);
    within(windows[1].1, 3_000, 0.02);
    let hour = users(&a, Resolution::Hour).await;
    assert_eq!(hour.len(), 1);
    within(hour[0].1, 6_000, 0.02);

    // One context only: a third of the users of minute 0.
    let eu = a
        .send(
            QueryUsers::command("help")
                .context("eu")
                .between(T0, T0 + 1),
        )
        .await
        .unwrap()
        .unwrap();
    within(eu[0].users, 2_000, 0.02);

    // A restart of `a` sending its users again, and late: written again, counted once.
    a.send(Shutdown).await.unwrap();
    let a = start(&db, "a", common::quiet_config());
    send(&a, help(0..3_000, 0)).await;
    a.send(Flush).await.unwrap().unwrap();
    assert_eq!(users(&a, Resolution::Window).await, windows);
    assert_eq!(users(&a, Resolution::Hour).await, hour);

    // What the report reads: the store, without a pipeline.
    let reader = StoreReader::open(&db.store()).unwrap();
    assert_eq!(reader.user_commands().unwrap(), ["help"]);
    let stored = reader.users(&QueryUsers::command("help")).unwrap();
    assert_eq!(
        stored
            .iter()
            .map(|c| (c.start_ms, c.users))
            .collect::<Vec<_>>(),
        windows
    );
    for t in [a, b, all] {
        t.send(Shutdown).await.unwrap();
    }
}

#[actix_rt::test]
async fn two_instances_merge_to_the_union_sqlite() {
    two_instances_merge_to_the_union(Db::Sqlite(TempDb::new()), Db::Sqlite(TempDb::new())).await;
}

#[actix_rt::test]
async fn two_instances_merge_to_the_union_postgres() {
    two_instances_merge_to_the_union(
        Db::Pg(TestDb::create("users")),
        Db::Pg(TestDb::create("users_union")),
    )
    .await;
}

/// With an identity key the sketches count pseudonyms (as many as the users), and no raw id
/// reaches any file of the store (database, journal).
#[actix_rt::test]
async fn with_an_identity_key_pseudonyms_are_counted_and_no_raw_id_is_stored() {
    let db = Db::Sqlite(TempDb::new());
    let keyed = Config {
        identity_key: Some("k3y-for-the-distinct-users-test-0123456789".into()),
        durable: true,
        ..common::quiet_config()
    };
    let t = start(&db, "keyed", keyed);
    let events: Vec<TrackEvent> = (0..500)
        .map(|i| {
            TrackEvent::command("help")
                .user(format!("raw-person-{i:04}"))
                .at(T0 + i)
        })
        .collect();
    send(&t, events).await;
    t.send(Flush).await.unwrap().unwrap();
    let counts = users(&t, Resolution::Day).await;
    within(counts[0].1, 500, 0.01);
    t.send(Shutdown).await.unwrap();
    assert_eq!(db.count("command_users"), 4);
    let Db::Sqlite(db) = db else { unreachable!() };
    for entry in std::fs::read_dir(db.dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap_or_default();
        assert!(
            !bytes.windows(11).any(|w| w == b"raw-person-"),
            "a raw id in the store"
        );
    }
}

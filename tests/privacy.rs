//! Nothing leaked (issue 16, items 7, 8, 11, 12): with an identity key no raw user or server
//! id reaches any file (store, WAL, journal, quarantine) and one user keeps one pseudonym
//! whatever the batch timing; no PostgreSQL password reaches a log line, an error, `Debug` or
//! a description of the store, whatever form the URL gives it in; the identity key is never
//! serialised in clear nor echoed by an environment error; an event missing a field its kind
//! needs is refused; the store and its WAL are created readable by their owner only. Real
//! SQLite files, the local PostgreSQL server, the real pipeline.

mod common;
use common::pg;

use std::path::Path;
use std::sync::Arc;

use common::{captured_log, conservation, pseudonym, TempDb, T0};
use diesel::prelude::*;
use eventbatch::*;

const KEY: &str = "the identity key of the privacy tests";

/// A pipeline on a manual clock at `now_ms`, the log captured.
fn start_at(config: Config, store: Store, now_ms: i64) -> (actix::Addr<Tracker>, ManualClock) {
    captured_log();
    let clock = ManualClock::new(now_ms);
    let t = start_with_clock(config, store, Arc::new(clock.clone())).expect("start");
    (t, clock)
}

fn quiet(instance: &str) -> Config {
    Config {
        instance_id: Some(instance.into()),
        batch_interval_ms: 3_600_000,
        ..Config::default()
    }
}

/// The files of `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap_or_default();
        if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
            found.push(path.display().to_string());
        }
    }
    found
}

fn quarantine_payloads(db: &TempDb) -> Vec<String> {
    use eventbatch::db::schema::quarantine::dsl::*;
    quarantine.select(payload).load(&mut db.conn()).unwrap()
}

/// Item 7: durable mode (the journal), an identity key, a row the store refuses: the raw ids
/// are in no file (store, WAL, journal, their WALs), while running and after shutdown, and the
/// quarantined row carries the pseudonyms.
#[actix_rt::test]
async fn with_an_identity_key_no_raw_id_reaches_any_file_or_the_quarantine() {
    const USER: &str = "raw-user-4f1c9e";
    const SERVER: &str = "raw-guild-77a0d2";
    let db = TempDb::new();
    let config = Config {
        identity_key: Some(KEY.into()),
        durable: true,
        ..quiet("keyed")
    };
    let (t, _) = start_at(config, db.store(), T0);
    t.send(Flush).await.unwrap().unwrap(); // the schema exists
    db.poison_commands();
    let mut events = vec![TrackEvent::command("poison")
        .user(USER)
        .server(SERVER)
        .at(T0)];
    for i in 0..200 {
        events.push(
            TrackEvent::command("help")
                .user(USER)
                .server(SERVER)
                .at(T0 + i),
        );
        events.push(TrackEvent::error("timeout", "api").user(USER).at(T0 + i));
    }
    t.send(TrackBatch(events)).await.unwrap().unwrap();
    let s = t.send(Flush).await.unwrap().unwrap();
    assert_eq!(s.rows_quarantined, 1, "{s:?}");
    for raw in [USER, SERVER] {
        assert_eq!(files_containing(db.dir.path(), raw), Vec::<String>::new());
    }
    let payloads = quarantine_payloads(&db);
    assert_eq!(payloads.len(), 1);
    assert!(
        payloads[0].contains(&pseudonym(KEY, USER))
            && payloads[0].contains(&pseudonym(KEY, SERVER)),
        "{payloads:?}"
    );
    let s = t.send(Shutdown).await.unwrap();
    conservation(&s);
    for raw in [USER, SERVER] {
        assert_eq!(files_containing(db.dir.path(), raw), Vec::<String>::new());
    }
    assert_eq!(
        db.count(&format!(
            "events WHERE user_hash = '{}'",
            pseudonym(KEY, USER)
        )),
        201,
        "200 commands and the first error of the window"
    );
}

/// Item 7: retention prunes `quarantine` rows (by the time they were set aside) once older
/// than `retention.quarantine_max_age_ms`, and keeps younger ones.
#[actix_rt::test]
async fn retention_prunes_old_quarantine_rows() {
    const DAY: i64 = 86_400_000;
    // quarantined_at_ms is wall-clock time: the manual clock starts at it
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let db = TempDb::new();
    let config = Config {
        retention: Retention {
            quarantine_max_age_ms: DAY as u64,
            interval_ms: 60_000,
            ..Retention::default()
        },
        ..quiet("prune")
    };
    let (t, clock) = start_at(config, db.store(), now);
    t.send(Flush).await.unwrap().unwrap(); // the schema exists
    db.poison_commands();
    for i in 0..3 {
        t.send(TrackEvent::command("poison").at(now + i))
            .await
            .unwrap()
            .unwrap();
        t.send(Flush).await.unwrap().unwrap();
    }
    assert_eq!(db.count("quarantine"), 3);
    clock.advance(DAY / 2);
    t.send(Flush).await.unwrap().unwrap();
    assert_eq!(db.count("quarantine"), 3, "younger than a day: kept");
    clock.advance(DAY);
    let s = t.send(Flush).await.unwrap().unwrap();
    assert_eq!(db.count("quarantine"), 0);
    assert_eq!(s.rows_pruned, 3, "{s:?}");
    conservation(&t.send(Shutdown).await.unwrap());
}

fn stored_users(db: &TempDb) -> Vec<(String, Option<String>)> {
    use eventbatch::db::schema::events::dsl::*;
    events
        .select((name, user_hash))
        .order(ts_ms)
        .load(&mut db.conn())
        .unwrap()
}

/// Item 7: an event accepted before `Configure(identity_key)` is stored as given, one accepted
/// after it as the pseudonym, whenever the writer writes them (here: both at the same flush).
#[actix_rt::test]
async fn an_event_accepted_before_the_key_is_configured_is_stored_as_given() {
    let db = TempDb::new();
    let (t, _) = start_at(quiet("configure"), db.store(), T0);
    t.send(TrackEvent::command("before").user("u1").at(T0))
        .await
        .unwrap()
        .unwrap();
    let patch = ConfigPatch {
        identity_key: Some(KEY.into()),
        ..ConfigPatch::default()
    };
    t.send(Configure(patch)).await.unwrap().unwrap();
    t.send(TrackEvent::command("after").user("u1").at(T0 + 1))
        .await
        .unwrap()
        .unwrap();
    let s = t.send(Shutdown).await.unwrap();
    conservation(&s);
    assert_eq!(
        stored_users(&db),
        vec![
            ("before".into(), Some("u1".into())),
            ("after".into(), Some(pseudonym(KEY, "u1")))
        ]
    );
}

/// Item 8: the places a password could show.
fn assert_secret_nowhere(secret: &str, shown: &[String]) {
    for text in shown {
        assert!(!text.contains(secret), "{secret} shown in: {text}");
    }
    let log = captured_log().lock().unwrap();
    for line in log.iter() {
        assert!(!line.contains(secret), "{secret} logged: {line}");
    }
}

/// Item 8: a password in the URL's userinfo, in its query string, in a key=value connection
/// string (plain and quoted), behind a mistyped scheme, toward a server that is down: the
/// password is in no log line (all levels), no error, no `Debug` and no description.
#[actix_rt::test]
async fn a_postgres_password_is_never_logged_shown_or_in_an_error() {
    captured_log();
    let pg = pg::TestDb::create("password");
    let db = &pg.name;
    let reachable = [
        (
            "pw-userinfo-5c1",
            format!("postgres://root:pw-userinfo-5c1@127.0.0.1:5432/{db}"),
        ),
        (
            "pw-query-8e2",
            format!("postgres://root@127.0.0.1:5432/{db}?password=pw-query-8e2&connect_timeout=2"),
        ),
        (
            "pw-keyvalue-3a7",
            format!("host=127.0.0.1 port=5432 user=root dbname={db} password=pw-keyvalue-3a7"),
        ),
        (
            "pw-quoted-9d4",
            format!("host=127.0.0.1 user=root password='pw-quoted-9d4' dbname={db}"),
        ),
    ];
    for (secret, url) in &reachable {
        let store = if url.contains("://") {
            Store::from_url(url)
        } else {
            Store::postgres(url)
        };
        let shown = vec![format!("{store:?}"), store.describe()];
        let t = start(quiet("pw"), store.clone()).expect("start");
        t.send(TrackEvent::command("c").user("u"))
            .await
            .unwrap()
            .unwrap();
        let flushed = t.send(Flush).await.unwrap();
        let s = t.send(Shutdown).await.unwrap();
        assert!(
            flushed.is_ok() && s.records_written == 1,
            "{flushed:?} {s:?}"
        );
        let read = StoreReader::open(&store)
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert_eq!(read, Ok(()));
        assert_secret_nowhere(secret, &shown);
    }
    let failing = [
        (
            "pw-scheme-1b6",
            Store::from_url("postgress://root:pw-scheme-1b6@127.0.0.1/x"),
        ),
        (
            "pw-down-6f0",
            Store::from_url("postgres://root:pw-down-6f0@127.0.0.1:1/x?password=pw-down-6f0"),
        ),
        (
            "pw-kvdown-2c8",
            Store::postgres("host=127.0.0.1 port=1 password=pw-kvdown-2c8 user=root"),
        ),
        (
            "pw-garbled-4e3",
            Store::postgres("host=127.0.0.1 password pw-garbled-4e3 user=root"),
        ),
    ];
    for (secret, store) in failing {
        let err = start(quiet("pw"), store.clone()).expect_err("no such store");
        let read = StoreReader::open(&store)
            .map(|_| ())
            .expect_err("no such store");
        let shown = vec![
            format!("{store:?}"),
            store.describe(),
            err.to_string(),
            format!("{err:?}"),
            read.to_string(),
            format!("{read:?}"),
        ];
        assert_secret_nowhere(secret, &shown);
    }
}

/// Item 8: the identity key is in no serialisation of a configuration (JSON, TOML, the answers
/// to `GetConfig` and `Configure`), no `Debug`, and no error about an environment variable.
#[actix_rt::test]
async fn the_identity_key_is_never_serialised_or_echoed() {
    const SECRET: &str = "identity key 0d9e44b1 never shown";
    let config = Config {
        identity_key: Some(SECRET.into()),
        ..quiet("serde")
    };
    let db = TempDb::new();
    let (t, _) = start_at(config.clone(), db.store(), T0);
    let in_force = t.send(GetConfig).await.unwrap();
    let patch = ConfigPatch {
        identity_key: Some(format!("{SECRET} (changed)")),
        ..ConfigPatch::default()
    };
    let configured = t.send(Configure(patch.clone())).await.unwrap().unwrap();
    t.send(Shutdown).await.unwrap();
    let mut shown = vec![
        format!("{config:?}"),
        format!("{patch:?}"),
        config.to_toml(),
        serde_json::to_string(&config).unwrap(),
        serde_json::to_string(&in_force).unwrap(),
        serde_json::to_string(&configured).unwrap(),
        toml::to_string(&configured).unwrap(),
        serde_json::to_string(&patch).unwrap(),
    ];
    for (name, value) in [
        ("EVENTBATCH_IDENTITY_KY", SECRET),
        ("EVENTBATCH_IDENTITY_KEY", "key 0d9e44b1"),
        ("EVENTBATCH_MAX_BATCH_SIZE", SECRET),
        ("EVENTBATCH_SAMPLING_RATES", SECRET),
        ("EVENTBATCH_DETECTION_SPIKE_RATIO", SECRET),
    ] {
        let err = Config::default()
            .with_overrides([(name, value)])
            .unwrap_err();
        assert!(
            err.to_string().contains(name) || err.field.contains("identity_key"),
            "{err}"
        );
        shown.push(err.to_string());
        shown.push(format!("{err:?}"));
    }
    assert_secret_nowhere("0d9e44b1", &shown);
    // the key set survives an override of another field
    let kept = config
        .with_overrides([("EVENTBATCH_MAX_BATCH_SIZE", "7")])
        .unwrap();
    assert_eq!(kept.identity_key.as_deref(), Some(SECRET));
}

/// Item 11: JSON events without a field their kind needs are refused naming it, counted, and
/// never reach the store.
#[actix_rt::test]
async fn an_event_without_a_field_its_kind_needs_is_refused_naming_it() {
    let db = TempDb::new();
    let (t, _) = start_at(quiet("fields"), db.store(), T0);
    let cases = [
        (
            serde_json::json!({"kind": "Performance", "name": "rt", "tags": []}),
            "value",
        ),
        (
            serde_json::json!({"kind": "Datastore", "name": "save", "context": "db", "tags": []}),
            "latency_ms",
        ),
        (
            serde_json::json!({"kind": "Datastore", "name": "save", "value": 1.5, "tags": []}),
            "store type",
        ),
    ];
    for (json, field) in &cases {
        let event: TrackEvent = serde_json::from_value(json.clone()).unwrap();
        let err = t.send(event.clone()).await.unwrap().unwrap_err();
        assert!(err.to_string().contains(field), "{json}: {err}");
        let ack = t.send(TrackBatch(vec![event])).await.unwrap().unwrap();
        assert_eq!((ack.accepted, ack.rejected), (0, 1), "{json}");
    }
    let good: TrackEvent = serde_json::from_value(
        serde_json::json!({"kind": "Performance", "name": "rt", "value": 3.0, "tags": []}),
    )
    .unwrap();
    t.send(good).await.unwrap().unwrap();
    let s = t.send(Shutdown).await.unwrap();
    conservation(&s);
    assert_eq!((s.events_rejected, s.events_aggregated), (6, 1), "{s:?}");
    assert_eq!(db.scalar("SELECT sum(count) AS n FROM metric_windows"), 1);
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Item 12: a new SQLite store and its WAL are readable and writable by their owner only
/// (whatever the umask); an existing file keeps its mode.
#[cfg(unix)]
#[actix_rt::test]
async fn a_new_store_and_its_wal_are_created_owner_only_an_existing_file_keeps_its_mode() {
    use std::os::unix::fs::PermissionsExt;
    let db = TempDb::new();
    let (t, _) = start_at(quiet("modes"), db.store(), T0);
    t.send(TrackEvent::command("c").at(T0))
        .await
        .unwrap()
        .unwrap();
    t.send(Flush).await.unwrap().unwrap();
    let wal = db.path.with_extension("db-wal");
    assert!(wal.exists(), "the WAL exists while the pipeline runs");
    assert_eq!((mode(&db.path), mode(&wal)), (0o600, 0o600));
    t.send(Shutdown).await.unwrap();
    assert_eq!(mode(&db.path), 0o600);

    let shared = TempDb::new();
    std::fs::write(&shared.path, b"").unwrap();
    std::fs::set_permissions(&shared.path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let (t, _) = start_at(quiet("modes"), shared.store(), T0);
    t.send(TrackEvent::command("c").at(T0))
        .await
        .unwrap()
        .unwrap();
    t.send(Shutdown).await.unwrap();
    assert_eq!(mode(&shared.path), 0o640);
    assert_eq!(shared.count("events"), 1);
}

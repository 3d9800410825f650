//! What the build options (Cargo features, docs/build.md "Build options") change, checked against
//! the real stores: a PostgreSQL connection over TLS when this build's libpq has it (the `tls`
//! feature, or a system libpq: Debian's is built with OpenSSL), a clear error naming the feature
//! when it has not (the default `bundled-libpq`), and the pipeline on whichever SQLite is linked.
//!
//! `.ci/run` runs this file in the default build, with `--features tls`, and with the system
//! libraries (`--no-default-features`); it also turns `ssl` on in the local server if it is off.

mod common;
use common::pg;

use common::{conservation, TempDb};
use diesel::prelude::*;
use diesel::sql_types::Text;
use eventbatch::{start, Config, Flush, Shutdown, Store, TrackEvent};

/// Two commands and two latency samples: two records, one metric window.
fn events() -> Vec<TrackEvent> {
    vec![
        TrackEvent::command("help").user("u1").success(true),
        TrackEvent::command("deploy").user("u2").success(false),
        TrackEvent::performance("api_latency", 120.0).context("api"),
        TrackEvent::performance("api_latency", 180.0).context("api"),
    ]
}

/// `sslmode=require`: the pipeline connects, migrates and writes over TLS, and the server's
/// `pg_stat_ssl` shows every pipeline connection encrypted, next to this test's own connection
/// made with `sslmode=disable` (which it shows unencrypted, so the check can tell them apart).
#[cfg(any(feature = "tls", not(feature = "bundled-libpq")))]
#[actix_rt::test]
async fn postgres_sslmode_require_writes_over_tls() {
    writes_over_tls().await;
}

// The bodies are compiled in every build (so the default build's clippy checks them too); only
// the test that fits this build's libpq runs.
#[cfg_attr(
    not(any(feature = "tls", not(feature = "bundled-libpq"))),
    allow(dead_code)
)]
async fn writes_over_tls() {
    #[derive(QueryableByName, Debug)]
    struct SslRow {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        ssl: bool,
        #[diesel(sql_type = Text)]
        version: String,
    }
    let db = pg::TestDb::create("tls");
    let url = format!("{}&sslmode=require", db.url());
    let t = start(
        Config {
            instance_id: Some("tls".into()),
            ..Config::default()
        },
        Store::postgres(url.as_str()),
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}\nthe server must accept TLS: `psql -h 127.0.0.1 -c 'show ssl'` must say on \
             (.ci/run turns it on)"
        )
    });
    for e in events() {
        t.send(e).await.unwrap().unwrap();
    }
    let s = t.send(Flush).await.unwrap().unwrap();
    conservation(&s);
    assert_eq!((s.events_received, s.records_written), (4, 2), "{s:?}");
    assert_eq!(db.count("events"), 2);
    assert_eq!(db.count("metric_windows WHERE metric = 'api_latency'"), 1);

    // The pool keeps the writer's connection open after the Flush.
    let mut plain = PgConnection::establish(&format!("{}&sslmode=disable", db.url()))
        .expect("connect without TLS");
    let ssl_of = |filter: &str, c: &mut PgConnection| -> Vec<SslRow> {
        diesel::sql_query(format!(
            "SELECT s.ssl, coalesce(s.version, '') AS version FROM pg_stat_ssl s \
             JOIN pg_stat_activity a USING (pid) WHERE a.datname = current_database() AND {filter}"
        ))
        .load(c)
        .expect("pg_stat_ssl")
    };
    let own = ssl_of("a.pid = pg_backend_pid()", &mut plain);
    assert!(
        own.len() == 1 && !own[0].ssl,
        "the sslmode=disable connection: {own:?}"
    );
    let pipeline = ssl_of("a.pid <> pg_backend_pid()", &mut plain);
    assert!(!pipeline.is_empty(), "no pipeline connection is open");
    assert!(
        pipeline
            .iter()
            .all(|r| r.ssl && r.version.starts_with("TLS")),
        "pipeline connections: {pipeline:?}"
    );
    let s = t.send(Shutdown).await.unwrap();
    conservation(&s);
    assert_eq!(s.db_errors, 0);
}

/// Without TLS in libpq (the default build), `sslmode=require` is an `Err` from `start` that
/// names the way out. libpq refuses the option before connecting: no server is needed.
#[cfg(all(feature = "bundled-libpq", not(feature = "tls")))]
#[actix_rt::test]
async fn sslmode_require_without_tls_names_the_feature() {
    refused_without_tls();
}

#[cfg_attr(
    not(all(feature = "bundled-libpq", not(feature = "tls"))),
    allow(dead_code)
)]
fn refused_without_tls() {
    let url = format!(
        "postgres://root@{}:{}/eb_no_such_db?sslmode=require",
        pg::PG_HOST,
        pg::PG_PORT
    );
    match start(Config::default(), Store::postgres(url)) {
        Ok(_) => panic!("started over TLS with a libpq compiled without it"),
        Err(e) => {
            let text = e.to_string();
            assert!(
                matches!(e, eventbatch::Error::Store { .. })
                    && text.contains("SSL support is not compiled in")
                    && text.contains("`tls` feature"),
                "{text}"
            );
        }
    }
}

/// The pipeline on the linked SQLite (bundled, or the system's with `--no-default-features`):
/// events in, rows out, counted.
#[actix_rt::test]
async fn sqlite_pipeline_round_trip_on_the_linked_library() {
    let db = TempDb::new();
    let t = start(Config::default(), db.store()).expect("start on SQLite");
    for e in events() {
        t.send(e).await.unwrap().unwrap();
    }
    let s = t.send(Flush).await.unwrap().unwrap();
    conservation(&s);
    assert_eq!((s.events_received, s.records_written), (4, 2), "{s:?}");
    assert_eq!(db.count("events"), 2);
    assert_eq!(db.count("metric_windows WHERE metric = 'api_latency'"), 1);
    #[derive(QueryableByName)]
    struct V {
        #[diesel(sql_type = Text)]
        v: String,
    }
    let version: V = diesel::sql_query("SELECT sqlite_version() AS v")
        .get_result(&mut db.conn())
        .expect("sqlite_version()");
    eprintln!("SQLite {}", version.v);
    let s = t.send(Shutdown).await.unwrap();
    conservation(&s);
    assert_eq!(s.db_errors, 0);
}

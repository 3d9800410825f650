//! The pipeline end to end, against a real SQLite file and the real actor system.

mod common;

use std::collections::HashMap;

use common::*;
use diesel::connection::SimpleConnection;
use eventbatch::*;
use statrs::statistics::{Data, Distribution, OrderStatistics};

async fn track(t: &actix::Addr<Tracker>, e: TrackEvent) {
    t.send(e).await.expect("mailbox").expect("accepted");
}

#[actix_rt::test]
async fn records_wait_in_the_queue_until_flush() {
    let db = TempDb::new();
    let (t, _) = start_manual(quiet_config(), &db);
    for i in 0..5 {
        track(
            &t,
            TrackEvent::command("help")
                .user(format!("u{i}"))
                .success(true),
        )
        .await;
    }
    // the stages run on their own thread: wait until all five are queued
    let s = wait_for(&t, |s| s.events_queued == 5).await;
    assert_eq!((s.events_received, s.records_written), (5, 0));
    assert_eq!(db.count("events"), 0);
    let s = t.send(Flush).await.unwrap().unwrap();
    assert_eq!(s.records_written, 5);
    assert_eq!(s.events_queued, 0);
    assert_eq!(
        db.count("events WHERE kind = 'command' AND name = 'help' AND success = 1"),
        5
    );
    conservation(&s);
}

#[actix_rt::test]
async fn full_batches_are_written_without_a_flush_and_never_exceed_the_limit() {
    let db = TempDb::new();
    let (t, _) = start_manual(
        Config {
            max_batch_size: 10,
            ..quiet_config()
        },
        &db,
    );
    for _ in 0..25 {
        track(&t, TrackEvent::command("play")).await;
    }
    let s = wait_for(&t, |s| s.records_written == 20).await;
    assert_eq!(s.batches_written, 2);
    assert_eq!(s.events_queued, 5);
    let s = t.send(Flush).await.unwrap().unwrap();
    assert_eq!((s.records_written, s.batches_written), (25, 3));
    // Batches that wait for the writer together share a transaction: the two full ones do if
    // the writer had not taken the first before the second arrived.
    assert!((2..=3).contains(&s.transactions), "{}", s.transactions);
    assert!(s.avg_batch_size <= 10.0);
}

#[actix_rt::test]
async fn the_interval_writes_on_the_clock() {
    let db = TempDb::new();
    let (t, clock) = start_manual(
        Config {
            batch_interval_ms: 1000,
            ..Config::default()
        },
        &db,
    );
    track(&t, TrackEvent::command("help")).await;
    // queued (on the stages' thread) at the clock's current time
    wait_for(&t, |s| s.events_queued == 1).await;
    t.send(Tick).await.unwrap();
    assert_eq!(t.send(GetStats).await.unwrap().records_written, 0);
    clock.advance(1000);
    t.send(Tick).await.unwrap();
    wait_for(&t, |s| s.records_written == 1).await;
}

#[actix_rt::test]
async fn high_priority_is_written_at_the_threshold_and_before_normal_and_low() {
    let db = TempDb::new();
    let config = Config {
        high_priority_flush_threshold: 3,
        ..quiet_config()
    };
    let (t, _) = start_manual(config, &db);
    track(&t, TrackEvent::command("low").priority(Priority::Low)).await;
    track(&t, TrackEvent::command("normal")).await;
    track(&t, TrackEvent::command("failed").success(false)).await;
    track(&t, TrackEvent::error("timeout", "api")).await;
    assert_eq!(t.send(GetStats).await.unwrap().records_written, 0);
    track(&t, TrackEvent::custom("vip").priority(Priority::High)).await;
    let s = wait_for(&t, |s| s.records_written == 3).await;
    assert_eq!(s.events_queued, 2);
    assert_eq!(db.count("events WHERE priority = 'high'"), 3);
    t.send(Flush).await.unwrap().unwrap();
    // ids follow write order
    let max_high = db.scalar("SELECT max(id) AS n FROM events WHERE priority = 'high'");
    let normal = db.scalar("SELECT id AS n FROM events WHERE priority = 'normal'");
    let low = db.scalar("SELECT id AS n FROM events WHERE priority = 'low'");
    assert!(
        max_high < normal && normal < low,
        "{max_high} {normal} {low}"
    );
}

#[actix_rt::test]
async fn priority_order_within_one_flush() {
    let db = TempDb::new();
    let (t, _) = start_manual(
        Config {
            high_priority_flush_threshold: 1000,
            ..quiet_config()
        },
        &db,
    );
    for i in 0..30 {
        let p = [Priority::Low, Priority::Normal, Priority::High][i % 3];
        track(&t, TrackEvent::command(format!("c{i}")).priority(p)).await;
    }
    t.send(Flush).await.unwrap().unwrap();
    let order = |p: &str| {
        (
            db.scalar(&format!(
                "SELECT min(id) AS n FROM events WHERE priority = '{p}'"
            )),
            db.scalar(&format!(
                "SELECT max(id) AS n FROM events WHERE priority = '{p}'"
            )),
        )
    };
    let (high, normal, low) = (order("high"), order("normal"), order("low"));
    assert!(
        high.1 < normal.0 && normal.1 < low.0,
        "{high:?} {normal:?} {low:?}"
    );
}

#[actix_rt::test]
async fn sampling_keeps_the_configured_share_and_counts_scale_back() {
    let db = TempDb::new();
    let rates: HashMap<String, f64> = [
        ("help".to_string(), 0.2),
        ("performance.rt".to_string(), 0.25),
    ]
    .into_iter()
    .collect();
    let (t, _) = start_manual(
        Config {
            sampling_rates: rates,
            max_batch_size: 1000,
            ..quiet_config()
        },
        &db,
    );
    let n = 20_000;
    let batch: Vec<TrackEvent> = (0..n).map(|_| TrackEvent::command("help")).collect();
    let ack = t.send(TrackBatch(batch)).await.unwrap().unwrap();
    assert_eq!(
        ack,
        BatchAck {
            accepted: n,
            rejected: 0,
            dropped: 0
        }
    );
    let batch: Vec<TrackEvent> = (0..n)
        .map(|i| TrackEvent::performance("rt", i as f64).at(T0 + 1))
        .collect();
    t.send(TrackBatch(batch)).await.unwrap().unwrap();
    let s = t.send(Flush).await.unwrap().unwrap();
    conservation(&s);
    let kept_help = db.count("events WHERE name = 'help'") as f64;
    // binomial(20000, 0.2): sd ~ 56.6; allow 5 sd
    assert!((kept_help - 4000.0).abs() < 283.0, "kept {kept_help}");
    assert_eq!(
        db.count("events WHERE name = 'help' AND sample_rate = 0.2") as f64,
        kept_help
    );
    let w = &t.send(QueryWindows::metric("rt")).await.unwrap().unwrap()[0];
    assert!((w.count as f64 - 5000.0).abs() < 5.0 * (n as f64 * 0.25 * 0.75).sqrt());
    assert!((w.estimated_count - w.count as f64 * 4.0).abs() < 1e-6);
    // errors are not sampled without a rate of their own
    t.send(Configure(ConfigPatch {
        sampling_rates: Some([("timeout".to_string(), 0.0)].into_iter().collect()),
        ..ConfigPatch::default()
    }))
    .await
    .unwrap()
    .unwrap();
    for _ in 0..10 {
        track(&t, TrackEvent::error("timeout", "api").at(T0)).await;
    }
    let s = t.send(Flush).await.unwrap().unwrap();
    assert_eq!(db.scalar("SELECT sum(count) AS n FROM error_counts"), 10);
    conservation(&s);
}

#[actix_rt::test]
async fn window_stats_are_exact_and_percentiles_within_one_percent() {
    let db = TempDb::new();
    let (t, _) = start_manual(quiet_config(), &db);
    let values: Vec<f64> = (0..5000)
        .map(|i| 1.0 + ((i * 7919) % 5000) as f64 * 0.2)
        .collect();
    let batch: Vec<TrackEvent> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            TrackEvent::performance("response_time", v)
                .context("api")
                .at(T0 + (i as i64 % 60_000))
        })
        .collect();
    t.send(TrackBatch(batch)).await.unwrap().unwrap();
    let windows = t
        .send(
            QueryWindows::metric("response_time")
                .context("api")
                .between(T0, T0 + 60_000),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(windows.len(), 1);
    let w = &windows[0];
    assert_eq!(
        (w.series.as_str(), w.metric.as_str()),
        ("response_time.api", "response_time")
    );
    assert_eq!((w.window_start_ms, w.window_end_ms), (T0, T0 + 60_000));
    let mut data = Data::new(values.clone());
    assert_eq!(w.count, 5000);
    assert_eq!(w.estimated_count, 5000.0);
    assert!((w.sum - values.iter().sum::<f64>()).abs() < 1e-6);
    assert_eq!((w.min, w.max), (1.0, 1.0 + 4999.0 * 0.2));
    assert!((w.mean - data.mean().unwrap()).abs() < 1e-9);
    assert!((w.stddev - data.std_dev().unwrap()).abs() < 1e-9);
    let mut sorted = values.clone();
    sorted.sort_by(f64::total_cmp);
    for (q, got) in [
        (0.5, w.p50),
        (0.9, w.p90),
        (0.95, w.p95),
        (0.99, w.p99),
        (0.999, w.quantile(0.999)),
    ] {
        let exact = sorted[((sorted.len() - 1) as f64 * q).floor() as usize];
        assert!(
            (got - exact).abs() <= 0.01 * exact,
            "q {q}: {got} vs {exact}"
        );
    }
    let _ = data.median();
    // the query wrote nothing; after a flush the stored row carries the same numbers and the sketch
    assert_eq!(db.count("metric_windows"), 0);
    t.send(Flush).await.unwrap().unwrap();
    assert_eq!(db.count("metric_windows WHERE series = 'response_time.api' AND count = 5000 AND sketch IS NOT NULL"), 1);
}

#[actix_rt::test]
async fn late_events_are_folded_into_the_written_window() {
    let db = TempDb::new();
    let (t, _) = start_manual(
        Config {
            allowed_lateness_ms: 0,
            ..quiet_config()
        },
        &db,
    );
    track(&t, TrackEvent::performance("rt", 10.0).at(T0 + 5)).await;
    track(&t, TrackEvent::performance("rt", 20.0).at(T0 + 60_000)).await; // closes the first window
    let s = t.send(Flush).await.unwrap().unwrap();
    assert!(s.windows_written >= 2);
    assert_eq!(
        db.count("metric_windows WHERE window_start_ms = 1764000000000 AND is_final = 1"),
        1
    );
    track(&t, TrackEvent::performance("rt", 30.0).at(T0 + 7)).await; // late
    let windows = t
        .send(QueryWindows::metric("rt").between(T0, T0 + 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(windows.len(), 1);
    assert_eq!(
        (windows[0].count, windows[0].sum, windows[0].max),
        (2, 40.0, 30.0)
    );
    let s = t.send(Shutdown).await.unwrap();
    conservation(&s);
    assert_eq!(
        db.count("metric_windows WHERE window_start_ms = 1764000000000"),
        1
    );
}

#[test]
fn restart_on_the_same_file_merges_windows_across_runs() {
    let db = TempDb::new();
    for (run, instance) in [(0, Some("api-1")), (1, Some("api-1")), (2, None)] {
        actix::System::new().block_on(async {
            let config = Config {
                instance_id: instance.map(String::from),
                ..quiet_config()
            };
            let (t, _) = start_manual(config, &db);
            for v in [1.0, 2.0, 3.0] {
                track(
                    &t,
                    TrackEvent::performance("rt", v + run as f64 * 10.0).at(T0 + 1000),
                )
                .await;
            }
            track(&t, TrackEvent::command("help")).await;
            let windows = t.send(QueryWindows::metric("rt")).await.unwrap().unwrap();
            assert_eq!(windows.len(), 1, "one window per slot, whatever wrote it");
            assert_eq!(windows[0].count, 3 * (run + 1));
            t.send(Shutdown).await.unwrap();
        });
    }
    assert_eq!(db.count("events"), 3);
    // runs 0 and 1 share an instance id (one row, merged); run 2 has its own row
    assert_eq!(db.count("metric_windows"), 2);
    let sum = db.scalar("SELECT CAST(sum(sum) AS INTEGER) AS n FROM metric_windows");
    assert_eq!(sum, 6 + 36 + 66);
}

#[test]
fn stopping_the_system_without_shutdown_loses_nothing() {
    let db = TempDb::new();
    let n = 3000;
    {
        let sys = actix::System::new();
        sys.block_on(async {
            let (t, _) = start_manual(quiet_config(), &db);
            for i in 0..n {
                let e = match i % 3 {
                    0 => TrackEvent::command("help").user("u"),
                    1 => TrackEvent::performance("rt", i as f64).at(T0 + i as i64),
                    _ => TrackEvent::error("timeout", "api").at(T0),
                };
                t.send(e).await.unwrap().unwrap();
            }
            actix::System::current().stop();
        });
        sys.run().unwrap();
    }
    assert_eq!(db.count("events WHERE kind = 'command'"), 1000);
    assert_eq!(
        db.scalar("SELECT sum(count) AS n FROM metric_windows"),
        1000
    );
    assert_eq!(db.scalar("SELECT sum(count) AS n FROM error_counts"), 1000);
    assert_eq!(db.count("events WHERE kind = 'error'"), 1);
}

#[test]
fn concurrent_producers_on_several_threads() {
    let db = TempDb::new();
    actix::System::new().block_on(async {
        let (t, _) = start_manual(
            Config {
                max_batch_size: 256,
                ..quiet_config()
            },
            &db,
        );
        let threads: Vec<_> = (0..4)
            .map(|k| {
                let t = t.clone();
                std::thread::spawn(move || {
                    for i in 0..5000 {
                        if i % 2 == 0 {
                            t.do_send(TrackEvent::command(format!("thread{k}")));
                        } else {
                            t.do_send(
                                TrackEvent::performance("rt", i as f64)
                                    .context(format!("t{k}"))
                                    .at(T0 + i),
                            );
                        }
                    }
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
        let s = t.send(Flush).await.unwrap().unwrap();
        assert_eq!(s.events_received, 20_000);
        conservation(&s);
        assert_eq!(db.count("events"), 10_000);
        for k in 0..4 {
            assert_eq!(db.count(&format!("events WHERE name = 'thread{k}'")), 2500);
            let w = t
                .send(QueryWindows::metric("rt").context(format!("t{k}")))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(w.iter().map(|w| w.count).sum::<u64>(), 2500);
        }
    });
}

#[actix_rt::test]
async fn a_locked_database_is_retried_and_nothing_is_lost() {
    let db = TempDb::new();
    let config = Config {
        sqlite_busy_timeout_ms: 5,
        store_retry_budget_ms: 50,
        ..quiet_config()
    };
    let (t, _) = start_manual(config, &db);
    let mut blocker = db.conn();
    blocker.batch_execute("BEGIN EXCLUSIVE").unwrap();
    for _ in 0..50 {
        track(&t, TrackEvent::command("help")).await;
        track(&t, TrackEvent::performance("rt", 1.0).at(T0)).await;
    }
    let err = t.send(Flush).await.unwrap().unwrap_err();
    assert!(matches!(err, PipelineError::Store(_)), "{err}");
    let s = t.send(GetStats).await.unwrap();
    assert!(s.db_errors > 0 && s.retries > 0, "{s:?}");
    assert_eq!(s.records_written, 0);
    blocker.batch_execute("COMMIT").unwrap();
    let s = t.send(Flush).await.unwrap().unwrap();
    assert_eq!(s.records_written, 50);
    conservation(&s);
    assert_eq!(db.count("events"), 50);
    assert_eq!(db.scalar("SELECT sum(count) AS n FROM metric_windows"), 50);
}

#[actix_rt::test]
async fn overflow_drops_low_first_and_counts_it() {
    let db = TempDb::new();
    let config = Config {
        max_queued_events: 10,
        max_batch_size: 1000,
        high_priority_flush_threshold: 1000,
        ..quiet_config()
    };
    let (t, _) = start_manual(config, &db);
    for _ in 0..5 {
        track(&t, TrackEvent::command("low").priority(Priority::Low)).await;
    }
    for _ in 0..10 {
        track(&t, TrackEvent::command("normal")).await;
    }
    let s = t.send(Flush).await.unwrap().unwrap();
    assert_eq!(s.events_dropped, 5);
    assert_eq!(db.count("events WHERE name = 'normal'"), 10);
    assert_eq!(db.count("events WHERE name = 'low'"), 0);
    conservation(&s);
}

#[actix_rt::test]
async fn a_batch_ack_says_how_many_the_overflow_policy_dropped() {
    let db = TempDb::new();
    let config = Config {
        max_queued_events: 1_000,
        max_batch_size: 100_000,
        high_priority_flush_threshold: 100_000,
        ..quiet_config()
    };
    let (t, _) = start_manual(config, &db);
    let batch: Vec<TrackEvent> = (0..10_000)
        .map(|i| TrackEvent::command("c").at(T0 + i))
        .collect();
    let ack = t.send(TrackBatch(batch)).await.unwrap().unwrap();
    assert_eq!(
        (ack.accepted, ack.rejected, ack.dropped),
        (10_000, 0, 9_000)
    );
    let fits: Vec<TrackEvent> = (0..10)
        .map(|_| TrackEvent::performance("rt", 1.0))
        .collect();
    let ack = t.send(TrackBatch(fits)).await.unwrap().unwrap();
    assert_eq!(
        ack.dropped, 0,
        "metric samples are aggregated, never queued"
    );
    let s = t.send(Flush).await.unwrap().unwrap();
    assert_eq!(s.events_dropped, 9_000);
    conservation(&s);
}

#[actix_rt::test]
async fn bad_input_is_rejected_counted_and_never_stored() {
    let db = TempDb::new();
    let (t, _) = start_manual(quiet_config(), &db);
    let bad = vec![
        TrackEvent::command(""),
        TrackEvent::command("x".repeat(300)),
        TrackEvent::performance("rt", f64::NAN),
        TrackEvent::performance("rt", f64::INFINITY),
        TrackEvent::command("c").duration_ms(-1.0),
        TrackEvent::datastore("save", "db", -3.0),
        TrackEvent::command("c").at(900_000_000_000),
        TrackEvent::command("c").at(T0 + 2 * 86_400_000),
    ];
    for e in bad.clone() {
        let err = t.send(e).await.unwrap().unwrap_err();
        assert!(!err.to_string().is_empty());
    }
    let ack = t
        .send(TrackBatch(
            bad.into_iter().chain([TrackEvent::command("ok")]).collect(),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ack,
        BatchAck {
            accepted: 1,
            rejected: 8,
            dropped: 0
        }
    );
    // strings are bound, never spliced into SQL
    track(
        &t,
        TrackEvent::command("x'); DROP TABLE events; --").user("Robert'); --"),
    )
    .await;
    let s = t.send(Flush).await.unwrap().unwrap();
    assert_eq!(s.events_rejected, 16);
    conservation(&s);
    assert_eq!(db.count("events"), 2);
    assert_eq!(
        db.count("events WHERE name = 'x''); DROP TABLE events; --'"),
        1
    );
}

#[test]
fn bad_config_and_bad_stores_are_errors_from_start() {
    actix::System::new().block_on(async {
        let db = TempDb::new();
        let err = start(
            Config {
                max_batch_size: 0,
                ..Config::default()
            },
            db.store(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("max_batch_size") && err.to_string().contains('0'),
            "{err}"
        );
        let rates = [("help".to_string(), 1.5)].into_iter().collect();
        let err = start(
            Config {
                sampling_rates: rates,
                ..Config::default()
            },
            db.store(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("sampling_rates") && err.to_string().contains("1.5"),
            "{err}"
        );
        assert!(matches!(
            start(Config::default(), Store::from_url("mysql://x")),
            Err(Error::InvalidUrl { .. })
        ));
        let missing = db.dir.path().join("missing/dir/a.db");
        assert!(matches!(
            start(Config::default(), Store::sqlite(missing)),
            Err(Error::Store { .. })
        ));
        assert!(matches!(
            start(
                Config::default(),
                Store::from_url("postgres://nobody@127.0.0.1:1/none")
            ),
            Err(Error::Store { .. })
        ));
        let url = format!("sqlite://{}", db.path.display());
        assert!(start(Config::default(), Store::from_url(&url)).is_ok());
    });
}

#[actix_rt::test]
async fn configure_validates_and_applies_at_run_time() {
    let db = TempDb::new();
    let (t, _) = start_manual(quiet_config(), &db);
    let err = t
        .send(Configure(ConfigPatch {
            batch_interval_ms: Some(0),
            ..ConfigPatch::default()
        }))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        (err.field.as_str(), err.value.as_str()),
        ("batch_interval_ms", "0")
    );
    let rates: HashMap<String, f64> = [("help".to_string(), 0.0)].into_iter().collect();
    let c = t
        .send(Configure(ConfigPatch {
            sampling_rates: Some(rates.clone()),
            ..ConfigPatch::default()
        }))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.sampling_rates, rates);
    assert_eq!(t.send(GetConfig).await.unwrap().sampling_rates, rates);
    track(&t, TrackEvent::command("help")).await;
    let s = t.send(Flush).await.unwrap().unwrap();
    assert_eq!((s.events_sampled_out, s.records_written), (1, 0));
}

#[actix_rt::test]
async fn a_latency_spike_is_detected_and_a_steady_series_raises_nothing() {
    let db = TempDb::new();
    let (t, clock) = start_manual(quiet_config(), &db);
    let minute = 60_000;
    for w in 0..80i64 {
        let spike = w == 60;
        let batch: Vec<TrackEvent> = (0..20)
            .flat_map(|i| {
                let noise = ((w * 31 + i * 17) % 11) as f64;
                let v = if spike { 500.0 + noise } else { 100.0 + noise };
                let ts = T0 + w * minute + i * 1000;
                [
                    TrackEvent::performance("api_latency", v).at(ts),
                    TrackEvent::performance("steady", 50.0 + noise).at(ts),
                ]
            })
            .collect();
        t.send(TrackBatch(batch)).await.unwrap().unwrap();
        clock.set(T0 + (w + 1) * minute);
    }
    let patterns = t
        .send(QueryPatterns::all().metric("api_latency"))
        .await
        .unwrap()
        .unwrap();
    // one pattern for the event: the mean and the p99 watched besides it both moved
    let spikes: Vec<_> = patterns
        .iter()
        .filter(|p| p.kind == PatternKind::Spike)
        .collect();
    assert_eq!(spikes.len(), 1, "{patterns:?}");
    assert_eq!(patterns.len(), 1, "one pattern per event: {patterns:?}");
    let moved: Vec<&str> = spikes[0]
        .statistics
        .iter()
        .map(|s| s.statistic.as_str())
        .collect();
    assert_eq!(moved.len(), 2, "{patterns:?}");
    assert!(
        moved.contains(&"mean") && moved.contains(&"p99"),
        "{moved:?}"
    );
    assert_eq!(spikes[0].window_start_ms, T0 + 60 * minute);
    assert!(spikes[0].confidence > 0.5 && spikes[0].confidence <= 1.0);
    assert!(spikes[0].observed > 2.0 * spikes[0].baseline);
    assert!(t
        .send(QueryPatterns::all().metric("steady"))
        .await
        .unwrap()
        .unwrap()
        .is_empty());
    let s = t.send(GetStats).await.unwrap();
    assert!(s.patterns_detected >= 1);
    assert_eq!(
        db.count("patterns WHERE kind = 'spike' AND series = 'api_latency'"),
        1
    );
}

#[actix_rt::test]
async fn a_mostly_metric_workload_cuts_writes_by_over_95_percent() {
    let db = TempDb::new();
    let (t, _) = start_manual(
        Config {
            max_batch_size: 500,
            ..quiet_config()
        },
        &db,
    );
    let n = 50_000i64;
    let batch: Vec<TrackEvent> = (0..n)
        .map(|i| {
            let ts = T0 + i * 10; // 500 s of event time: 9 windows
            match i % 50 {
                0 => TrackEvent::command("help").at(ts),
                1 => TrackEvent::error("timeout", "api")
                    .message("upstream")
                    .at(ts),
                2..=10 => TrackEvent::datastore("load", "conversation", (i % 17) as f64).at(ts),
                _ => TrackEvent::performance("response_time", (i % 300) as f64)
                    .context("api")
                    .at(ts),
            }
        })
        .collect();
    t.send(TrackBatch(batch)).await.unwrap().unwrap();
    let s = t.send(Shutdown).await.unwrap();
    conservation(&s);
    assert_eq!(
        s.rows_written as i64,
        db.count("events")
            + db.count("metric_windows")
            + db.count("error_counts")
            + db.count("patterns")
            + (s.windows_written as i64 - db.count("metric_windows"))
            + (s.error_counts_written as i64 - db.count("error_counts"))
    );
    assert!(s.write_reduction() > 0.95, "{}", s.write_reduction());
    assert_eq!(
        db.count("events WHERE kind = 'error'"),
        9,
        "first error of each window"
    );
    assert_eq!(db.scalar("SELECT sum(count) AS n FROM error_counts"), 1000);
}

#[actix_rt::test]
async fn a_row_the_store_refuses_is_quarantined_and_writes_keep_flowing() {
    let db = TempDb::new();
    let (t, _) = start_manual(quiet_config(), &db);
    t.send(Flush).await.unwrap().unwrap(); // the schema exists
    db.poison_commands();
    track(&t, TrackEvent::command("poison").at(T0)).await;
    for i in 0..1000 {
        track(&t, TrackEvent::command("after").at(T0 + i)).await;
    }
    let s = t.send(Flush).await.unwrap().unwrap();
    assert_eq!((s.rows_quarantined, s.events_quarantined), (1, 1));
    assert_eq!(db.count("events WHERE name = 'after'"), 1000);
    assert_eq!(db.count("quarantine WHERE kind = 'event'"), 1);
    conservation(&s);
    let s = t.send(Shutdown).await.unwrap();
    conservation(&s);
    assert!(s.db_errors >= 1);
    assert_eq!(
        s.retries, 0,
        "a refusal is isolated at once, not retried with backoff"
    );
}

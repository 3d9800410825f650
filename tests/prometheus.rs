//! The opt-in Prometheus endpoint (feature `prometheus`): started on a free port, scraped with
//! a plain HTTP GET over TCP while the real pipeline runs on an SQLite file; the text parses
//! as the Prometheus exposition format (HELP and TYPE lines, names, the `instance_id` label)
//! and its values equal the pipeline's `Stats`.
//!
//! `cargo test -p eventbatch --features prometheus --test prometheus`

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;

use common::{conservation, start_manual, TempDb, T0};
use eventbatch::metrics_exporter_prometheus::BuildError;
use eventbatch::{Flush, Shutdown, Stats};

/// A port nobody listens on now.
fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    probe.local_addr().expect("local addr").port()
}

/// `GET /metrics` over a plain TCP connection: the status line and the body.
fn scrape(port: u16) -> (String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("a header and a body");
    let status = head.lines().next().unwrap_or_default().to_string();
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    (status, body.to_string())
}

/// The exposition text, parsed: HELP and TYPE per name, and every sample by name and labels.
#[derive(Debug, Default)]
struct Exposition {
    help: HashMap<String, String>,
    kind: HashMap<String, String>,
    samples: HashMap<(String, Vec<(String, String)>), f64>,
}

/// `{a="x",b="y\"z"}` as pairs, with the format's escapes (`\\`, `\"`, `\n`) undone.
fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"").expect("name=\"value\"");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().expect("a closing quote") {
                (i, '"') => break i,
                (_, '\\') => match chars.next().expect("an escaped character").1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((name.trim_start_matches(',').to_string(), value));
        rest = &after[end + 1..];
    }
    labels.sort();
    labels
}

fn parse(body: &str) -> Exposition {
    let mut e = Exposition::default();
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(help) = line.strip_prefix("# HELP ") {
            let (name, text) = help.split_once(' ').expect("# HELP name text");
            e.help.insert(name.into(), text.into());
        } else if let Some(kind) = line.strip_prefix("# TYPE ") {
            let (name, kind) = kind.split_once(' ').expect("# TYPE name kind");
            e.kind.insert(name.into(), kind.into());
        } else if line.starts_with('#') {
            continue;
        } else {
            let (series, value) = line.rsplit_once(' ').expect("series value");
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("not a number: {line}")),
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, parse_labels(labels.strip_suffix('}').unwrap())),
                None => (series, Vec::new()),
            };
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "bad metric name in {line}"
            );
            e.samples.insert((name.to_string(), labels), value);
        }
    }
    e
}

impl Exposition {
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut labels: Vec<_> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        labels.sort();
        self.samples.get(&(name.to_string(), labels)).copied()
    }
}

fn equal_to_stats(e: &Exposition, instance: &str, stats: &Stats) {
    let label = [("instance_id", instance)];
    for (name, value) in common::metrics::expected(stats) {
        let gauge = common::metrics::GAUGES
            .iter()
            .any(|g| name == format!("eventbatch_{g}"));
        let kind = if gauge { "gauge" } else { "counter" };
        assert_eq!(e.kind.get(&name).map(String::as_str), Some(kind), "{name}");
        assert!(
            e.help.get(&name).is_some_and(|h| h.len() > 10),
            "{name} has no HELP"
        );
        assert_eq!(
            e.value(&name, &label),
            Some(value as f64),
            "{name}: {stats:?}"
        );
    }
}

#[actix_rt::test]
async fn the_endpoint_serves_the_pipeline_metrics_as_prometheus_text() {
    let port = free_port();
    let handle = eventbatch::serve_prometheus(("127.0.0.1", port)).expect("serve");
    // a second exporter in the same process is an error, not a panic
    let again = eventbatch::serve_prometheus(("127.0.0.1", free_port()));
    assert!(
        matches!(again, Err(BuildError::FailedToSetGlobalRecorder(_))),
        "{again:?}"
    );

    // an instance id the text format must escape
    let instance = r#"web "7" \ eu"#;
    let db = TempDb::new();
    let config = common::metrics::config(instance);
    let (t, _clock) = start_manual(config, &db);
    common::metrics::workload(&t, T0).await;
    let stats = t.send(Flush).await.unwrap().unwrap();
    conservation(&stats);
    common::metrics::moved(&stats);

    let (status, body) = scrape(port);
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    let e = parse(&body);
    equal_to_stats(&e, instance, &stats);
    assert_eq!(
        e.value("eventbatch_batch_rows_total", &[("instance_id", instance)]),
        Some(stats.avg_batch_size * stats.batches_written as f64)
    );

    // the writer's histograms, with buckets: one sample per transaction
    for (name, sum) in [
        (
            "eventbatch_transaction_rows",
            Some(stats.avg_batch_size * stats.batches_written as f64),
        ),
        ("eventbatch_transaction_duration_seconds", None),
    ] {
        assert_eq!(
            e.kind.get(name).map(String::as_str),
            Some("histogram"),
            "{name}"
        );
        assert!(e.help.contains_key(name), "{name}");
        let label = [("instance_id", instance)];
        let count = e.value(&format!("{name}_count"), &label);
        assert_eq!(count, Some(stats.transactions as f64), "{name}");
        let total = e.value(&format!("{name}_sum"), &label).expect("a sum");
        match sum {
            Some(rows) => assert_eq!(total, rows, "{name}"),
            None => assert!(total > 0.0 && total.is_finite(), "{name}"),
        }
        let mut buckets: Vec<(f64, f64)> = e
            .samples
            .iter()
            .filter(|((n, _), _)| *n == format!("{name}_bucket"))
            .map(|((_, labels), v)| {
                assert!(labels.contains(&("instance_id".into(), instance.into())));
                let le = &labels.iter().find(|(k, _)| k == "le").expect("le").1;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                (le, *v)
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(buckets.len() >= 10, "{name}: {buckets:?}");
        assert!(
            buckets.windows(2).all(|w| w[0].1 <= w[1].1),
            "{name}: cumulative"
        );
        assert_eq!(
            buckets.last(),
            Some(&(f64::INFINITY, stats.transactions as f64))
        );
    }
    // the handle renders the same text without HTTP
    assert!(handle.render().contains("eventbatch_events_received_total"));

    let last = t.send(Shutdown).await.unwrap();
    let (_, body) = scrape(port);
    let e = parse(&body);
    equal_to_stats(&e, instance, &last);
    assert_eq!(
        e.value("eventbatch_actors_running", &[("instance_id", instance)]),
        Some(0.0)
    );
}

#[test]
fn a_bad_address_is_an_error_not_a_panic() {
    assert!(matches!(
        eventbatch::serve_prometheus("not an address"),
        Err(BuildError::FailedToCreateHTTPListener(_))
    ));
}

#[test]
fn the_builder_renders_the_writer_histograms_with_buckets() {
    let recorder = eventbatch::prometheus_builder().unwrap().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        metrics::histogram!("eventbatch_transaction_rows", "instance_id" => "i").record(120.0);
        metrics::histogram!("eventbatch_transaction_duration_seconds", "instance_id" => "i")
            .record(0.002);
    });
    let e = parse(&handle.render());
    let bucket = |name: &str, le: &str| e.value(name, &[("instance_id", "i"), ("le", le)]);
    assert_eq!(
        bucket("eventbatch_transaction_rows_bucket", "100"),
        Some(0.0)
    );
    assert_eq!(
        bucket("eventbatch_transaction_rows_bucket", "250"),
        Some(1.0)
    );
    assert_eq!(
        bucket("eventbatch_transaction_duration_seconds_bucket", "0.001"),
        Some(0.0)
    );
    assert_eq!(
        bucket("eventbatch_transaction_duration_seconds_bucket", "0.0025"),
        Some(1.0)
    );
}

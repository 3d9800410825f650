//! A Prometheus text endpoint for applications that have no metrics exporter of their own
//! (feature `prometheus`): metrics-rs' own exporter, `metrics-exporter-prometheus`, with its
//! HTTP listener (hyper) on a thread of its own.
//!
//! Why this exporter: it is the metrics-rs project's own, so it renders what the facade records
//! (counters, gauges, histograms with buckets, help texts, label escaping) the way the
//! Prometheus text format wants; and its listener is a minimal hyper server, much lighter
//! than a web framework. An application that already runs actix-web can serve the same text
//! from a route of its own instead: install [`prometheus_builder`]`()?.install_recorder()` and
//! answer with the returned handle's `render()`.

use std::net::{SocketAddr, ToSocketAddrs};

use metrics_exporter_prometheus::{
    BuildError, ExporterFuture, Matcher, PrometheusBuilder, PrometheusHandle,
};

use crate::telemetry::{TRANSACTION_ROWS, TRANSACTION_SECONDS};

/// Buckets for `eventbatch_transaction_duration_seconds` (an SQLite commit of a few hundred
/// rows takes about a millisecond; a retried one up to the retry budget).
const TRANSACTION_SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Buckets for `eventbatch_transaction_rows` (batches up to `max_batch_size`, coalesced
/// records-only batches up to 10,000 rows).
const TRANSACTION_ROWS_BUCKETS: &[f64] = &[
    1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];

/// The exporter's builder with buckets for eventbatch's histograms, so they are rendered as
/// Prometheus histograms (which add up across instances) rather than as summaries. Configure
/// it further (`add_allowed_address`, `add_global_label`, ...) and install it yourself, or
/// let [`serve_prometheus`] do it. (The exporter refuses only an empty bucket list.)
pub fn prometheus_builder() -> Result<PrometheusBuilder, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(TRANSACTION_SECONDS.into()),
            TRANSACTION_SECONDS_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(TRANSACTION_ROWS.into()),
            TRANSACTION_ROWS_BUCKETS,
        )
}

/// Serves every metric recorded through the `metrics` facade (the pipeline's `eventbatch_*`
/// metrics and any of the application's own) as Prometheus text at `http://ADDR/` (any path;
/// `/health` answers `OK`), from a thread of its own, for the rest of the process. Installs
/// the exporter as the process's global recorder: call it once, before [`crate::start`] or
/// after (the pipeline publishes every `Config::metrics_interval_ms`).
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let handle = eventbatch::serve_prometheus("127.0.0.1:9464")?;
/// // ... start the pipeline; `curl http://127.0.0.1:9464/metrics` shows eventbatch_* ...
/// println!("{}", handle.render()); // the same text, without HTTP
/// # Ok(())
/// # }
/// ```
///
/// Errors: the address does not resolve or cannot be bound, or a global recorder is already
/// installed (an application with its own exporter already gets the pipeline's metrics).
pub fn serve_prometheus(addr: impl ToSocketAddrs) -> Result<PrometheusHandle, BuildError> {
    let addr = resolve(addr)?;
    let thread_failed = |e: std::io::Error| BuildError::FailedToCreateRuntime(e.to_string());
    // The exporter's runtime is made, run and (on an error) dropped on its own thread: a
    // runtime must not be dropped inside another one, as an application's actix System is.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("eventbatch-prometheus".into())
        .spawn(move || {
            let (runtime, exporter) = match install(addr) {
                Ok((runtime, handle, exporter)) => {
                    let _ = tx.send(Ok(handle));
                    (runtime, exporter)
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            if let Err(e) = runtime.block_on(exporter) {
                log::error!("the Prometheus endpoint on {addr} stopped: {e:?}");
            }
        })
        .map_err(thread_failed)?;
    let handle = rx.recv().map_err(|_| {
        BuildError::FailedToCreateRuntime("the exporter's thread ended before starting".into())
    })??;
    log::info!("serving Prometheus metrics on http://{addr}/metrics");
    Ok(handle)
}

/// On the exporter's thread: its runtime, the listener bound (an error if the address is
/// taken), the recorder installed as the global one (an error if there is one already).
fn install(
    addr: SocketAddr,
) -> Result<(tokio::runtime::Runtime, PrometheusHandle, ExporterFuture), BuildError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BuildError::FailedToCreateRuntime(e.to_string()))?;
    // `build` spawns the exporter's upkeep on the runtime it is called in
    let (recorder, exporter) = {
        let _in_runtime = runtime.enter();
        prometheus_builder()?.with_http_listener(addr).build()?
    };
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)?;
    Ok((runtime, handle, exporter))
}

/// The first address `addr` resolves to.
fn resolve(addr: impl ToSocketAddrs) -> Result<SocketAddr, BuildError> {
    let unusable = |reason: String| BuildError::FailedToCreateHTTPListener(reason);
    addr.to_socket_addrs()
        .map_err(|e| unusable(e.to_string()))?
        .next()
        .ok_or_else(|| unusable("the address resolves to nothing".into()))
}

//! [`StoreReader`]: what a store holds, read without starting a pipeline.
//!
//! A report or a dashboard looks at windows and patterns that pipelines (of this process or of
//! others sharing the database) wrote; starting a pipeline for that would register an
//! instance, run roll-ups and hold windows of its own. The reader runs the same queries as
//! [`QueryWindows`] and [`QueryPatterns`] against what is stored, and writes nothing.

use std::time::Duration;

use crate::config::Config;
use crate::db::open::{open_with, OpenOptions};
use crate::db::pool::Pool;
use crate::db::Store;
use crate::error::{Error, PipelineError, StoreError};
use crate::messages::{Pattern, QueryPatterns, QueryUsers, QueryWindows};
use crate::users::UserCount;
use crate::window_stats::WindowStats;

/// Reads the windows and patterns stored in a store, without a pipeline.
///
/// Opening checks the store as [`crate::start`] does (an existing SQLite file with
/// `PRAGMA quick_check`) and runs any pending migrations, so a store written by an older
/// version reads like a new one; it never creates an SQLite file. After that it only reads.
/// Windows still open in a running pipeline are not in the store until that pipeline flushes
/// them (its own [`QueryWindows`] sees them).
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("analytics.db");
/// # actix::System::new().block_on(async {
/// #     let tracker = eventbatch::start(eventbatch::Config::default(), eventbatch::Store::sqlite(&path))?;
/// #     tracker.send(eventbatch::TrackEvent::performance("response_time", 12.0).context("api")).await??;
/// #     tracker.send(eventbatch::Shutdown).await?;
/// #     Ok::<_, Box<dyn std::error::Error>>(())
/// # })?;
/// use eventbatch::{QueryPatterns, Store, StoreReader};
///
/// let reader = StoreReader::open(&Store::sqlite(&path))?;
/// for series in reader.series()? {
///     let windows = reader.windows(&series.query())?;
///     let patterns = reader.patterns(&QueryPatterns::all())?;
///     println!("{}: {} windows, {} patterns", series.series, windows.len(), patterns.len());
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct StoreReader {
    /// The same pool type the writer uses; only read from.
    pool: Pool,
}

/// A series that has at least one stored window (see [`StoreReader::series`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StoredSeries {
    /// `metric` or `metric.context`, for display, as in [`WindowStats::series`] and
    /// [`Pattern::series`]: two series can share it (the metric `a.b`, and the metric `a` in
    /// context `b`); `metric` and `context` tell them apart.
    pub series: String,
    /// The metric name.
    pub metric: String,
    /// The context, if the series has one.
    pub context: Option<String>,
    /// The label set (empty for a series without tags): each label set of a metric is a
    /// series of its own.
    pub labels: crate::model::Labels,
    /// What the series measures: a distribution, a counter or a gauge (the counter `x` and
    /// the distribution `x` are two series).
    pub kind: crate::stats::window::SeriesKind,
}

impl StoredSeries {
    /// A [`QueryWindows`] for every window of this series (narrow it with
    /// [`QueryWindows::between`] and [`QueryWindows::resolution`]).
    pub fn query(&self) -> QueryWindows {
        let mut q = QueryWindows::metric(&self.metric);
        if let Some(c) = &self.context {
            q = q.context(c);
        }
        q.labels = self.labels.clone();
        q.kind(self.kind)
    }

    /// The display name with the labels, `series{k="v",...}` (just `series` without labels).
    pub fn labelled_name(&self) -> String {
        crate::model::labelled_name(&self.series, &self.labels)
    }
}

impl StoreReader {
    /// Opens `store` for reading. A missing SQLite file is an error (a reader never creates
    /// one), as is an invalid URL or an unreachable or corrupt store.
    pub fn open(store: &Store) -> Result<StoreReader, Error> {
        if let Some(path) = store.sqlite_path() {
            if !path.exists() {
                return Err(Error::Store {
                    store: store.describe(),
                    reason: "no such file".into(),
                    source: None,
                });
            }
        }
        let defaults = Config::default();
        let opts = OpenOptions {
            busy_timeout: Duration::from_millis(defaults.sqlite_busy_timeout_ms),
            retry_budget: Duration::from_millis(defaults.store_retry_budget_ms),
        };
        Ok(StoreReader {
            pool: open_with(store, &opts)?,
        })
    }

    /// Every series with at least one stored window, ordered by display name, then metric,
    /// then label set, then kind.
    pub fn series(&self) -> Result<Vec<StoredSeries>, PipelineError> {
        let rows = self.pool.get()?.stored_series().map_err(from_diesel)?;
        Ok(rows
            .into_iter()
            .map(|(series, metric, context, labels, kind)| StoredSeries {
                series,
                metric,
                context,
                labels: crate::model::parse_labels(&labels),
                kind: crate::model::parse_kind(&kind),
            })
            .collect())
    }

    /// The stored windows (or hour or day buckets) `query` asks for, merged over every
    /// instance and snapshot, as [`QueryWindows`] answers them.
    pub fn windows(&self, query: &QueryWindows) -> Result<Vec<WindowStats>, PipelineError> {
        self.pool.get()?.query_windows(query).map_err(from_diesel)
    }

    /// The stored patterns `query` asks for, as [`QueryPatterns`] answers them.
    pub fn patterns(&self, query: &QueryPatterns) -> Result<Vec<Pattern>, PipelineError> {
        self.pool.get()?.query_patterns(query).map_err(from_diesel)
    }

    /// The distinct users of a command per window or bucket, merged over the instances (what
    /// [`crate::QueryUsers`] answers, without the open windows of a running pipeline).
    pub fn users(&self, query: &QueryUsers) -> Result<Vec<UserCount>, PipelineError> {
        self.pool
            .get()?
            .query_users(query, Vec::new())
            .map_err(from_diesel)
    }

    /// The commands whose distinct users are stored, sorted.
    pub fn user_commands(&self) -> Result<Vec<String>, PipelineError> {
        self.pool.get()?.user_commands().map_err(from_diesel)
    }
}

fn from_diesel(e: diesel::result::Error) -> PipelineError {
    PipelineError::Store(StoreError::from_diesel(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_sqlite_file_is_an_error_and_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.db");
        let err = StoreReader::open(&Store::sqlite(&path)).unwrap_err();
        assert!(err.to_string().contains("no such file"), "{err}");
        assert!(!path.exists());
    }

    #[test]
    fn an_invalid_url_is_an_error() {
        let err = StoreReader::open(&Store::from_url("mysql://x")).unwrap_err();
        assert!(matches!(err, Error::InvalidUrl { .. }), "{err}");
    }

    #[test]
    fn series_lists_each_stored_series_once_and_queries_read_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        actix::System::new().block_on(async {
            let tracker = crate::start(Config::default(), Store::sqlite(&path)).unwrap();
            let t0 = 1_764_000_000_000;
            for (i, v) in [10.0, 20.0, 30.0].into_iter().enumerate() {
                let at = t0 + i as i64 * 60_000;
                let events = vec![
                    crate::TrackEvent::performance("lat", v)
                        .context("api")
                        .at(at),
                    crate::TrackEvent::performance("lat", v).at(at),
                    crate::TrackEvent::datastore("load", "conv", v).at(at),
                ];
                tracker
                    .send(crate::TrackBatch(events))
                    .await
                    .unwrap()
                    .unwrap();
            }
            tracker.send(crate::Shutdown).await.unwrap();
        });
        let reader = StoreReader::open(&Store::sqlite(&path)).unwrap();
        let series = reader.series().unwrap();
        let names: Vec<&str> = series.iter().map(|s| s.series.as_str()).collect();
        assert_eq!(names, ["datastore.load.conv", "lat", "lat.api"]);
        assert_eq!(series[2].context.as_deref(), Some("api"));
        for s in &series {
            let windows = reader.windows(&s.query()).unwrap();
            assert_eq!(windows.len(), 3, "{}", s.series);
            assert!(windows.iter().all(|w| w.series == s.series && w.count == 1));
        }
        let hours = reader
            .windows(&series[2].query().resolution(crate::Resolution::Hour))
            .unwrap();
        assert_eq!(hours.iter().map(|w| w.count).sum::<u64>(), 3);
        assert!(reader.patterns(&QueryPatterns::all()).unwrap().is_empty());
    }
}

//! The SQL the writer runs, compiled once per backend from one body (`backend!` below) so
//! SQLite and PostgreSQL share every query.

use diesel::prelude::*;
use diesel::Column;

use crate::db::backend::{txn_ended, InsertEvents, WriteTxn};
use crate::db::bookkeeping::*;
use crate::db::cached::Upsert;
use crate::db::models::{decode_state, merge_rows, to_patterns};
use crate::error::StoreError;
use crate::messages::{Pattern, QueryPatterns, QueryWindows};
use crate::model::{SeriesKey, WriteBatch};
use crate::window_stats::WindowStats;

/// One body of SQL code, compiled for each backend's connection type.
macro_rules! backend {
    ($module:ident, $Conn:ty) => {
        pub(crate) mod $module {
            use super::*;
            use crate::db::models::*;
            use crate::db::schema::{error_counts, metric_windows, patterns};
            use crate::model::{Field, Record};

            /// Writes one batch in one transaction (or as `txn` says). On error nothing is
            /// written (by it, with [`Txn::Enclosing`]: the enclosing transaction must roll
            /// back) and `bases` holds only what the store held.
            pub(crate) fn write_batch(
                c: &mut $Conn,
                instance: &str,
                batch: &WriteBatch,
                mark: BatchMark,
                bases: &mut Bases,
                txn: Txn,
            ) -> QueryResult<Written> {
                let written = in_txn(c, txn, |c| {
                    set_mark(c, instance, mark)?;
                    insert_records(c, instance, &[&batch.records])?;
                    for w in &batch.windows {
                        let key = (w.key.clone(), w.start_ms);
                        let base = match bases.windows.get(&key) {
                            Some((epoch, base)) if *epoch == w.epoch => base.clone(),
                            _ => {
                                let stored: Option<Option<Vec<u8>>> = metric_windows::table
                                    .filter(metric_windows::instance_id.eq(instance))
                                    .filter(of_series!(metric_windows, w.key))
                                    .filter(metric_windows::window_start_ms.eq(w.start_ms))
                                    .select(metric_windows::sketch)
                                    .first(c)
                                    .optional()?;
                                let base = decode_state(stored.flatten().as_deref());
                                bases.windows.insert(key, (w.epoch, base.clone()));
                                base
                            }
                        };
                        let mut merged = base;
                        merged.merge(&w.state);
                        let row = NewWindowRow::new(instance, w, &merged);
                        upsert_window!(&row).execute(c)?;
                    }
                    crate::db::rollup_sql::$module::mark_pending(c, instance, batch)?;
                    crate::db::users_sql::$module::write_users(c, instance, &batch.users)?;
                    for e in &batch.errors {
                        let key = (e.error_hash.clone(), e.start_ms);
                        let base = match bases.errors.get(&key) {
                            Some((epoch, base)) if *epoch == e.epoch => Some(*base),
                            _ => {
                                let stored: Option<(i64, i64, i64)> = error_counts::table
                                    .filter(error_counts::instance_id.eq(instance))
                                    .filter(error_counts::error_hash.eq(&e.error_hash))
                                    .filter(error_counts::window_start_ms.eq(e.start_ms))
                                    .select((
                                        error_counts::count,
                                        error_counts::first_ts_ms,
                                        error_counts::last_ts_ms,
                                    ))
                                    .first(c)
                                    .optional()?;
                                let base =
                                    stored.map(|(count, first_ts_ms, last_ts_ms)| ErrorBase {
                                        count,
                                        first_ts_ms,
                                        last_ts_ms,
                                    });
                                let cached = base.unwrap_or(ErrorBase::EMPTY);
                                bases.errors.insert(key, (e.epoch, cached));
                                base
                            }
                        };
                        let row = NewErrorCountRow::new(
                            instance,
                            e,
                            base.unwrap_or(ErrorBase::EMPTY),
                        );
                        upsert_error_count!(&row).execute(c)?;
                    }
                    if !batch.patterns.is_empty() {
                        let names: Vec<(String, String)> = batch
                            .patterns
                            .iter()
                            .map(|p| (p.key.name(), p.key.labels_text()))
                            .collect();
                        let rows: Vec<NewPatternRow<'_>> = batch
                            .patterns
                            .iter()
                            .zip(&names)
                            .map(|(p, (series, labels))| NewPatternRow {
                                instance_id: instance,
                                series,
                                metric: &p.key.metric,
                                context: p.key.context.as_deref(),
                                kind: p.kind.as_str(),
                                confidence: p.confidence,
                                window_start_ms: p.start_ms,
                                window_end_ms: p.end_ms,
                                observed: p.observed,
                                baseline: p.baseline,
                                description: &p.description,
                                detected_at_ms: p.detected_at_ms,
                                statistics: serde_json::to_string(&p.statistics).ok(),
                                labels: labels.clone(),
                            })
                            .collect();
                        for chunk in rows.chunks(1000) {
                            diesel::insert_into(patterns::table)
                                .values(chunk)
                                .execute(c)?;
                        }
                    }
                    Ok(Written::of(batch))
                })?;
                bases.forget_final(batch);
                Ok(written)
            }

            /// Writes the records of several records-only batches in one transaction, marked
            /// `mark` (the last batch's: commits are in order, so it stands for them all).
            /// Returns the number of records written.
            pub(crate) fn write_records(
                c: &mut $Conn,
                instance: &str,
                records: &[&[Record]],
                mark: BatchMark,
            ) -> QueryResult<u64> {
                c.write_txn(|c| {
                    set_mark(c, instance, mark)?;
                    insert_records(c, instance, records)
                })
            }

            /// Puts the rows of `batch` (refused by the store) in `quarantine` with `error`,
            /// marked `mark`, in one transaction (or as `txn` says).
            pub(crate) fn quarantine(
                c: &mut $Conn,
                instance: &str,
                batch: &WriteBatch,
                error: &str,
                mark: BatchMark,
                txn: Txn,
            ) -> QueryResult<()> {
                use crate::db::schema::quarantine;
                let error = error.replace('\0', "\\0");
                let now = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
                let rows = quarantine_payloads(batch);
                in_txn(c, txn, |c| {
                    set_mark(c, instance, mark)?;
                    for (kind, payload) in &rows {
                        diesel::insert_into(quarantine::table)
                            .values(&NewQuarantineRow {
                                instance_id: instance,
                                kind,
                                payload,
                                error: &error,
                                quarantined_at_ms: now,
                            })
                            .execute(c)?;
                    }
                    Ok(())
                })
            }

            /// Records in `writer_runs` that batch `mark` is committed (see [`BatchMark`]).
            fn set_mark(c: &mut $Conn, instance: &str, mark: BatchMark) -> QueryResult<()> {
                let run = WriterRunRow {
                    instance_id: instance,
                    run_id: mark.run_id,
                    last_seq: mark.seq,
                    updated_at_ms: crate::clock::Clock::now_ms(&crate::clock::SystemClock),
                };
                Upsert::new(
                    diesel::insert_into(writer_runs::table).values(&run),
                    &[writer_runs::instance_id::NAME, writer_runs::run_id::NAME],
                    &run,
                )
                .execute(c)?;
                Ok(())
            }

            /// The last batch of writer run `run_id` that committed, if any.
            pub(crate) fn committed_seq(
                c: &mut $Conn,
                instance: &str,
                run_id: i64,
            ) -> QueryResult<Option<i64>> {
                writer_runs::table
                    .filter(writer_runs::instance_id.eq(instance))
                    .filter(writer_runs::run_id.eq(run_id))
                    .select(writer_runs::last_seq)
                    .first(c)
                    .optional()
            }

            /// Durable mode: writes `batches` (each with its mark, in order) and the checkpoint
            /// in one transaction, so the store holds the effect of every event up to the
            /// checkpoint's position and of none after it. If the store refuses a row, the
            /// transaction is done again with each batch in a savepoint: one the store refuses
            /// is split until the refused rows are isolated, and those go to `quarantine`,
            /// inside the same transaction (savepoints cost a copy of every page a batch
            /// changes, so only then). If the store rolls back that whole transaction as it
            /// refuses a row (SQLite's `RAISE(ROLLBACK)`), the pass starts again in a new one,
            /// knowing the pieces refused so far ([`Refused`]): nothing is written twice or
            /// taken as written. What became of each batch is in `outcomes` (also when the
            /// COMMIT reports a failure, in case it took effect).
            pub(crate) fn write_durable(
                c: &mut $Conn,
                instance: &str,
                batches: &[(&WriteBatch, BatchMark)],
                bases: &mut Bases,
                checkpoint: Checkpoint<'_>,
                outcomes: &mut Vec<Outcome>,
            ) -> QueryResult<()> {
                outcomes.clear();
                let all = c.write_txn(|c| {
                    for &(batch, mark) in batches {
                        write_batch(c, instance, batch, mark, bases, Txn::Enclosing)?;
                        let mut outcome = Outcome::default();
                        outcome.written(batch);
                        outcomes.push(outcome);
                    }
                    set_checkpoint(c, instance, checkpoint)
                });
                match all {
                    Err(e) if StoreError::refuses(&e) => {
                        log::warn!("the store refused a row of a checkpoint ({e}); isolating it");
                    }
                    other => return other,
                }
                let mut refused = Refused::default();
                loop {
                    outcomes.clear();
                    let known = refused.len();
                    let pass = c.write_txn(|c| {
                        for (i, &(batch, mark)) in batches.iter().enumerate() {
                            let mut outcome = Outcome::default();
                            let piece = (i, 1);
                            write_isolating(c, instance, batch, mark, bases, &mut outcome, piece, &mut refused)?;
                            outcomes.push(outcome);
                        }
                        set_checkpoint(c, instance, checkpoint)
                    });
                    match pass {
                        Err(e) if refused.len() > known => log::warn!(
                            "the store refused a row of a checkpoint ({e}) and rolled back the whole transaction; isolating it again from the start"
                        ),
                        other => return other,
                    }
                }
            }

            /// The `durable_checkpoints` row of `checkpoint`.
            fn set_checkpoint(
                c: &mut $Conn,
                instance: &str,
                checkpoint: Checkpoint<'_>,
            ) -> QueryResult<()> {
                    let row = CheckpointRow {
                        journal_id: checkpoint.journal_id,
                        instance_id: instance,
                        position: checkpoint.position as i64,
                        updated_at_ms: crate::clock::Clock::now_ms(&crate::clock::SystemClock),
                    };
                    diesel::insert_into(durable_checkpoints::table)
                        .values(&row)
                        .on_conflict(durable_checkpoints::journal_id)
                        .do_update()
                        .set(&row)
                        .execute(c)?;
                    Ok(())
            }

            /// Writes `batch` (piece `piece`, see [`Refused`]) in a savepoint; if the store
            /// refuses it, halves it until the refused rows are single, which go to
            /// `quarantine` (all in the open transaction). A piece `refused` holds is not
            /// tried again. If the store refused it and ended the whole transaction (SQLite's
            /// `RAISE(ROLLBACK)`), the piece goes to `refused` and the error is returned: what
            /// this transaction wrote is gone, and nothing more may run outside it.
            #[allow(clippy::too_many_arguments)]
            fn write_isolating(
                c: &mut $Conn,
                instance: &str,
                batch: &WriteBatch,
                mark: BatchMark,
                bases: &mut Bases,
                outcome: &mut Outcome,
                piece: (usize, u64),
                refused: &mut Refused,
            ) -> QueryResult<()> {
                let e = match refused.get(piece) {
                    Some(e) => e.to_owned(),
                    None => match write_batch(c, instance, batch, mark, bases, Txn::Savepoint) {
                        Ok(_) => {
                            outcome.written(batch);
                            return Ok(());
                        }
                        Err(e) if StoreError::refuses(&e) && txn_ended(c) => {
                            refused.learn(piece, e.to_string());
                            return Err(e);
                        }
                        Err(e) if StoreError::refuses(&e) => e.to_string(),
                        Err(e) => return Err(e),
                    },
                };
                if batch.rows() <= 1 {
                    quarantine(c, instance, batch, &e, mark, Txn::Savepoint)?;
                    log::error!(
                        "the store refused a row ({e}); it is in the quarantine table and the rest is written"
                    );
                    outcome.quarantined(batch);
                    return Ok(());
                }
                let (first, second) = batch.clone().split();
                let (i, p) = piece;
                write_isolating(c, instance, &first, mark, bases, outcome, (i, 2 * p), refused)?;
                write_isolating(c, instance, &second, mark, bases, outcome, (i, 2 * p + 1), refused)
            }

            /// The position the store holds journal `journal_id` through, if any.
            pub(crate) fn checkpoint_of(
                c: &mut $Conn,
                journal_id: &str,
            ) -> QueryResult<Option<i64>> {
                durable_checkpoints::table
                    .filter(durable_checkpoints::journal_id.eq(journal_id))
                    .select(durable_checkpoints::position)
                    .first(c)
                    .optional()
            }

            /// Inserts `records` (several batches' in order) as `events` rows; returns how many.
            fn insert_records(
                c: &mut $Conn,
                instance: &str,
                records: &[&[Record]],
            ) -> QueryResult<u64> {
                let records = || records.iter().flat_map(|batch| batch.iter());
                let mut rows: Vec<NewEventRow<'_>> = records()
                    .map(|r| NewEventRow {
                        instance_id: instance,
                        ts_ms: r.ts_ms,
                        kind: r.kind.as_str(),
                        name: r.name(),
                        priority: r.priority.as_str(),
                        // pseudonymised at the front door when `identity_key` is set
                        user_hash: r.field(Field::User),
                        server_hash: r.field(Field::Server),
                        success: r.success,
                        duration_ms: r.duration_ms(),
                        value: r.value(),
                        error_type: r.field(Field::ErrorType),
                        error_category: r.field(Field::ErrorCategory),
                        sample_rate: r.sample_rate,
                        tags: r.field(Field::Tags),
                        payload: r.field(Field::Payload),
                    })
                    .collect();
                if rows.is_empty() {
                    return Ok(0);
                }
                // In event-time order within the transaction (a stable sort: the queue hands
                // over high priority first, and in one transaction that order is not
                // observable): the `events` index on (kind, ts_ms) then grows at its end, which
                // SQLite does without searching the b-tree (a failed command every 50 events
                // cost the record-heavy bench 14% of the writer's instructions), and
                // PostgreSQL's BRIN ranges stay tight.
                if !rows.is_sorted_by_key(|r| r.ts_ms) {
                    rows.sort_by_key(|r| r.ts_ms);
                }
                c.insert_events(&rows)?;
                Ok(rows.len() as u64)
            }

            /// Windows of one series starting in the query's range, merged per start over
            /// every instance and snapshot row.
            pub(crate) fn query_windows(
                c: &mut $Conn,
                q: &QueryWindows,
            ) -> QueryResult<Vec<WindowStats>> {
                if q.resolution.bucket_ms().is_some() {
                    return crate::db::rollup_sql::$module::query_buckets(c, q, q.resolution);
                }
                Ok(merge_rows(window_rows(c, &q.key(), q.from_ms, q.to_ms)?))
            }

            /// The stored windows of several series starting in `[from_ms, to_ms)`, merged
            /// over instances: one element per series and window, by series (metric, then
            /// context) then start.
            pub(crate) fn recent_windows(
                c: &mut $Conn,
                keys: &[SeriesKey],
                from_ms: i64,
                to_ms: i64,
            ) -> QueryResult<Vec<WindowStats>> {
                // every metric and every context asked for, then exactly the pairs asked for
                let mut metrics: Vec<&str> = keys.iter().map(|k| k.metric.as_str()).collect();
                let mut contexts: Vec<&str> = keys.iter().map(SeriesKey::context_key).collect();
                for v in [&mut metrics, &mut contexts] {
                    v.sort_unstable();
                    v.dedup();
                }
                let mut labels: Vec<i64> = keys.iter().map(SeriesKey::labels_key).collect();
                labels.sort_unstable();
                labels.dedup();
                let mut kinds: Vec<&str> = keys.iter().map(|k| k.kind.as_str()).collect();
                kinds.sort_unstable();
                kinds.dedup();
                let wanted: std::collections::HashSet<&SeriesKey> = keys.iter().collect();
                let rows: Vec<WindowRow> = metric_windows::table
                    .filter(metric_windows::metric.eq_any(&metrics))
                    .filter(metric_windows::context_key.eq_any(&contexts))
                    .filter(metric_windows::labels_key.eq_any(&labels))
                    .filter(metric_windows::kind.eq_any(kinds))
                    .filter(metric_windows::window_start_ms.ge(from_ms))
                    .filter(metric_windows::window_start_ms.lt(to_ms))
                    .order((
                        metric_windows::metric,
                        metric_windows::context_key,
                        metric_windows::labels_key,
                        metric_windows::kind,
                        metric_windows::window_start_ms,
                        metric_windows::id,
                    ))
                    .select(WindowRow::as_select())
                    .load(c)?;
                let mut out = Vec::new();
                let mut run: Vec<WindowRow> = Vec::new();
                for row in rows.into_iter().filter(|r| wanted.contains(&r.key())) {
                    let same = |r: &WindowRow| {
                        (&r.metric, &r.context, &r.labels, &r.kind)
                            == (&row.metric, &row.context, &row.labels, &row.kind)
                    };
                    if run.last().is_some_and(|r| !same(r)) {
                        out.extend(merge_rows(std::mem::take(&mut run)));
                    }
                    run.push(row);
                }
                out.extend(merge_rows(run));
                Ok(out)
            }

            /// The stored rows of one series starting in `[from_ms, to_ms)`, every instance,
            /// ordered by start.
            pub(crate) fn window_rows(
                c: &mut $Conn,
                key: &SeriesKey,
                from_ms: i64,
                to_ms: i64,
            ) -> QueryResult<Vec<WindowRow>> {
                metric_windows::table
                    .filter(of_series!(metric_windows, key))
                    .filter(metric_windows::window_start_ms.ge(from_ms))
                    .filter(metric_windows::window_start_ms.lt(to_ms))
                    .order((metric_windows::window_start_ms, metric_windows::id))
                    .select(WindowRow::as_select())
                    .load(c)
            }

            /// Every series with at least one stored window: `(series, metric, context,
            /// labels, kind)`, by series name, then metric, then label set, then kind.
            pub(crate) fn stored_series(
                c: &mut $Conn,
            ) -> QueryResult<Vec<crate::db::models::StoredSeriesRow>> {
                metric_windows::table
                    .select((
                        metric_windows::series,
                        metric_windows::metric,
                        metric_windows::context,
                        metric_windows::labels,
                        metric_windows::kind,
                    ))
                    .distinct()
                    .order((
                        metric_windows::series,
                        metric_windows::metric,
                        metric_windows::labels,
                        metric_windows::kind,
                    ))
                    .load(c)
            }

            /// The label sets stored for the series of `metric` in `context` of `kind` (any
            /// labels), each once, in windows and roll-ups of `resolution`.
            pub(crate) fn label_sets(
                c: &mut $Conn,
                metric: &str,
                context_key: &str,
                kind: &str,
                resolution: crate::rollup::Resolution,
            ) -> QueryResult<Vec<String>> {
                let mut sets: Vec<String> = metric_windows::table
                    .filter(metric_windows::metric.eq(metric))
                    .filter(metric_windows::context_key.eq(context_key))
                    .filter(metric_windows::kind.eq(kind))
                    .select(metric_windows::labels)
                    .distinct()
                    .load(c)?;
                if resolution.bucket_ms().is_some() {
                    use crate::db::schema::metric_rollups;
                    sets.extend(
                        metric_rollups::table
                            .filter(metric_rollups::resolution.eq(resolution.as_str()))
                            .filter(metric_rollups::metric.eq(metric))
                            .filter(metric_rollups::context_key.eq(context_key))
                            .filter(metric_rollups::kind.eq(kind))
                            .select(metric_rollups::labels)
                            .distinct()
                            .load::<String>(c)?,
                    );
                }
                sets.sort_unstable();
                sets.dedup();
                Ok(sets)
            }

            /// Patterns, filtered.
            pub(crate) fn query_patterns(
                c: &mut $Conn,
                q: &QueryPatterns,
            ) -> QueryResult<Vec<Pattern>> {
                let mut query = patterns::table.into_boxed();
                if let Some(since) = q.since_ms {
                    query = query.filter(patterns::window_start_ms.ge(since));
                }
                if let Some(kind) = q.kind {
                    query = query.filter(patterns::kind.eq(kind.as_str()));
                }
                if let Some(m) = &q.metric {
                    query = query.filter(patterns::metric.eq(m.clone()));
                }
                if let Some(context) = &q.context {
                    query = query.filter(patterns::context.eq(context.clone()));
                }
                if let Some(labels) = &q.labels {
                    query = query.filter(patterns::labels.eq(crate::model::labels_text(labels)));
                }
                let rows: Vec<PatternRow> = query
                    .order((patterns::window_start_ms, patterns::id))
                    .select(PatternRow::as_select())
                    .load(c)?;
                // a row that does not read is the store's data failing, named in the error
                to_patterns(rows).map_err(|e| {
                    diesel::result::Error::DeserializationError(Box::new(e))
                })
            }
        }
    };
}

backend!(sqlite, SqliteConnection);
backend!(pg, PgConnection);

/// Each row of `batch` as `(kind, JSON)` for the `quarantine` table: every field, for a
/// window its whole state (`state_hex`, as in `metric_windows.sketch`) and for a window's
/// distinct users its sketch (`sketch_hex`, as in `command_users.registers`), so it can be
/// recovered. JSON escapes what the store may refuse (a NUL byte becomes `\u0000`).
fn quarantine_payloads(batch: &WriteBatch) -> Vec<(&'static str, String)> {
    use crate::model::Field;
    use serde_json::json;
    let hex = |bytes: Vec<u8>| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let mut out = Vec::with_capacity(batch.rows());
    for r in &batch.records {
        let v = json!({
            "ts_ms": r.ts_ms, "kind": r.kind.as_str(), "name": r.name(),
            "priority": r.priority.as_str(), "user": r.field(Field::User),
            "server": r.field(Field::Server), "success": r.success,
            "duration_ms": r.duration_ms(), "value": r.value(),
            "error_type": r.field(Field::ErrorType),
            "error_category": r.field(Field::ErrorCategory), "sample_rate": r.sample_rate,
            "tags": r.field(Field::Tags), "payload": r.field(Field::Payload),
        });
        out.push(("event", v.to_string()));
    }
    for w in &batch.windows {
        let v = json!({
            "series": w.key.name(), "metric": w.key.metric, "context": w.key.context,
            "labels": w.key.labels,
            "window_start_ms": w.start_ms, "window_end_ms": w.end_ms, "epoch": w.epoch,
            "count": w.state.count(), "is_final": w.is_final,
            "state_hex": hex(w.state.to_bytes()),
        });
        out.push(("window", v.to_string()));
    }
    for e in &batch.errors {
        let v = json!({
            "error_hash": e.error_hash, "error_type": e.error_type,
            "error_category": e.error_category, "window_start_ms": e.start_ms,
            "count": e.count, "first_ts_ms": e.first_ts_ms, "last_ts_ms": e.last_ts_ms,
        });
        out.push(("error_count", v.to_string()));
    }
    for p in &batch.patterns {
        let v = json!({
            "series": p.key.name(), "metric": p.key.metric, "context": p.key.context,
            "labels": p.key.labels,
            "kind": p.kind.as_str(), "confidence": p.confidence,
            "window_start_ms": p.start_ms, "window_end_ms": p.end_ms,
            "observed": p.observed, "baseline": p.baseline, "description": p.description,
            "statistics": p.statistics,
        });
        out.push(("pattern", v.to_string()));
    }
    for u in &batch.users {
        // one window's sketch; the store would merge it into its window, hour, day and week
        // rows (`crate::users::rows_of`)
        let v = json!({
            "command": u.command, "context": u.context,
            "window_start_ms": u.start_ms, "window_ms": u.window_ms,
            "users": u.sketch.count(), "estimate": u.sketch.estimate(),
            "sketch_hex": hex(u.sketch.to_bytes()),
        });
        out.push(("users", v.to_string()));
    }
    out
}

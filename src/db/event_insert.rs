//! The SQLite INSERT of [`EVENT_CHUNK`] `events` rows, written as a diesel query fragment of
//! its own: one statement whose SQL is fixed, so diesel prepares it once per connection and
//! keeps it, and whose walk binds the rows' fields straight from the borrowed
//! [`NewEventRow`]s.
//!
//! What this saves against `insert_into(events).values(&[row; N])` (the derived `Insertable`),
//! per row, measured with callgrind on `examples/do_send_vs_loop` (the README's one-`do_send`
//! path): the derived form keeps a prepared statement only for a `'static` row type, so the
//! text had to be copied into owned rows first; and every execute walks the derived values
//! twice more (the cache check and the "is this column defaulted" checks) through 15 nested
//! generic wrappers. Here the cache check and the bind walk are one flat loop each.

use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Bool, Double, Nullable, Text};
use diesel::sqlite::Sqlite;
use diesel::QueryResult;

use crate::db::models::NewEventRow;

/// `events` rows per INSERT statement: 15 bound columns x 500 = 7,500 parameters, under
/// SQLite's 32,766 and PostgreSQL's 65,535.
pub(crate) const EVENT_CHUNK: usize = 500;

/// The columns the INSERT names, in bind order (the order of the binds in `walk_ast`).
macro_rules! columns {
    () => {
        "instance_id, ts_ms, kind, name, priority, user_hash, server_hash, success, \
         duration_ms, value, error_type, error_category, sample_rate, tags, payload"
    };
}

/// One full chunk of `events` rows to insert on SQLite, with a prepared statement diesel
/// caches (its query id is static: the SQL depends on nothing but the chunk size).
pub(crate) struct EventChunk<'r, 'a>(pub &'r [NewEventRow<'a>; EVENT_CHUNK]);

/// The query id of every [`EventChunk`].
pub(crate) struct EventChunkId;

impl QueryId for EventChunk<'_, '_> {
    type QueryId = EventChunkId;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl QueryFragment<Sqlite> for EventChunk<'_, '_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        // the SQL goes only to the pass that builds it (once per connection: the statement is
        // cached); each bind writes its own `?`
        out.push_sql(concat!("INSERT INTO events (", columns!(), ") VALUES "));
        for (i, r) in self.0.iter().enumerate() {
            out.push_sql(if i == 0 { "(" } else { ", (" });
            out.push_bind_param::<Text, _>(r.instance_id)?;
            out.push_sql(", ");
            out.push_bind_param::<BigInt, _>(&r.ts_ms)?;
            out.push_sql(", ");
            out.push_bind_param::<Text, _>(r.kind)?;
            out.push_sql(", ");
            out.push_bind_param::<Text, _>(r.name)?;
            out.push_sql(", ");
            out.push_bind_param::<Text, _>(r.priority)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<Text>, _>(&r.user_hash)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<Text>, _>(&r.server_hash)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<Bool>, _>(&r.success)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<Double>, _>(&r.duration_ms)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<Double>, _>(&r.value)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<Text>, _>(&r.error_type)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<Text>, _>(&r.error_category)?;
            out.push_sql(", ");
            out.push_bind_param::<Double, _>(&r.sample_rate)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<Text>, _>(&r.tags)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<Text>, _>(&r.payload)?;
            out.push_sql(")");
        }
        Ok(())
    }
}

impl diesel::RunQueryDsl<diesel::SqliteConnection> for EventChunk<'_, '_> {}

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection;
    use diesel::prelude::*;

    use super::*;
    use crate::db::schema::events;

    /// A row with every column set or left out, depending on `i`.
    fn row(i: usize, names: &[String]) -> NewEventRow<'_> {
        let some = |s: &'static str| i.is_multiple_of(2).then_some(s);
        NewEventRow {
            instance_id: "unit",
            ts_ms: 1_764_000_000_000 + i as i64,
            kind: if i.is_multiple_of(3) {
                "command"
            } else {
                "error"
            },
            name: &names[i],
            priority: "normal",
            user_hash: some("u1"),
            server_hash: some("s1"),
            success: i.is_multiple_of(4).then_some(i.is_multiple_of(8)),
            duration_ms: i.is_multiple_of(5).then_some(i as f64 * 0.25),
            value: i.is_multiple_of(7).then_some(-(i as f64)),
            error_type: (!i.is_multiple_of(3)).then_some("Timeout"),
            error_category: some("network"),
            sample_rate: 1.0 / (1 + i % 4) as f64,
            tags: i.is_multiple_of(6).then_some(r#"{"a":"b"}"#),
            payload: i.is_multiple_of(9).then_some("{}"),
        }
    }

    /// An `events` row read back, every column but `id`.
    #[derive(Debug, PartialEq, Queryable)]
    struct Stored {
        instance_id: String,
        ts_ms: i64,
        kind: String,
        name: String,
        priority: String,
        user_hash: Option<String>,
        server_hash: Option<String>,
        success: Option<bool>,
        duration_ms: Option<f64>,
        value: Option<f64>,
        error_type: Option<String>,
        error_category: Option<String>,
        sample_rate: f64,
        tags: Option<String>,
        payload: Option<String>,
    }

    fn stored(c: &mut SqliteConnection) -> Vec<Stored> {
        use events::*;
        table
            .order(id)
            .select((
                instance_id,
                ts_ms,
                kind,
                name,
                priority,
                user_hash,
                server_hash,
                success,
                duration_ms,
                value,
                error_type,
                error_category,
                sample_rate,
                tags,
                payload,
            ))
            .load(c)
            .unwrap()
    }

    fn connection() -> SqliteConnection {
        let mut c = SqliteConnection::establish(":memory:").unwrap();
        c.batch_execute(include_str!(
            "../../migrations/sqlite/2026-11-26-000000_create/up.sql"
        ))
        .unwrap();
        c
    }

    /// The chunk statement stores exactly what diesel's derived insert stores, column by
    /// column, NULLs included; a second execute reuses the statement and adds the rows again.
    #[test]
    fn a_chunk_stores_what_the_derived_insert_stores() {
        let names: Vec<String> = (0..EVENT_CHUNK).map(|i| format!("name {i}")).collect();
        let rows: Vec<NewEventRow<'_>> = (0..EVENT_CHUNK).map(|i| row(i, &names)).collect();
        let chunk: &[NewEventRow<'_>; EVENT_CHUNK] = rows.as_slice().try_into().unwrap();

        let mut derived = connection();
        diesel::insert_into(events::table)
            .values(&rows)
            .execute(&mut derived)
            .unwrap();
        let mut ours = connection();
        assert_eq!(EventChunk(chunk).execute(&mut ours).unwrap(), EVENT_CHUNK);
        let expected = stored(&mut derived);
        assert_eq!(expected.len(), EVENT_CHUNK);
        assert_eq!(stored(&mut ours), expected);

        assert_eq!(EventChunk(chunk).execute(&mut ours).unwrap(), EVENT_CHUNK);
        let twice = stored(&mut ours);
        assert_eq!(&twice[EVENT_CHUNK..], &expected[..]);
    }

    /// The statement's SQL: every column once, one `?` per column and row.
    #[test]
    fn the_statement_binds_every_column_of_every_row() {
        let names: Vec<String> = (0..EVENT_CHUNK).map(|i| format!("name {i}")).collect();
        let rows: Vec<NewEventRow<'_>> = (0..EVENT_CHUNK).map(|i| row(i, &names)).collect();
        let chunk: &[NewEventRow<'_>; EVENT_CHUNK] = rows.as_slice().try_into().unwrap();
        let sql = diesel::debug_query::<Sqlite, _>(&EventChunk(chunk)).to_string();
        let columns = columns!().split(", ").count();
        assert_eq!(columns, 15);
        assert_eq!(
            sql.matches('?').count(),
            columns * EVENT_CHUNK,
            "{sql:.300}"
        );
        assert!(sql.starts_with(concat!(
            "INSERT INTO events (",
            columns!(),
            ") VALUES (?, ?"
        )));
    }
}

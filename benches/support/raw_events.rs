//! The `events` table and a borrowed row type for the benches' hand-written diesel baselines,
//! shared by `pipeline` (SQLite) and `pg_write` (PostgreSQL).

use diesel::prelude::*;

diesel::table! {
    events (id) {
        id -> BigInt, instance_id -> Text, ts_ms -> BigInt, kind -> Text, name -> Text,
        priority -> Text, user_hash -> Nullable<Text>, server_hash -> Nullable<Text>,
        success -> Nullable<Bool>, duration_ms -> Nullable<Double>, value -> Nullable<Double>,
        error_type -> Nullable<Text>, error_category -> Nullable<Text>, sample_rate -> Double,
        tags -> Nullable<Text>, payload -> Nullable<Text>,
    }
}

/// An `events` row, borrowing its strings.
#[derive(Insertable)]
#[diesel(table_name = events, treat_none_as_default_value = false)]
pub struct Row<'a> {
    pub instance_id: &'a str,
    pub ts_ms: i64,
    pub kind: &'a str,
    pub name: &'a str,
    pub priority: &'a str,
    pub user_hash: Option<&'a str>,
    pub server_hash: Option<&'a str>,
    pub success: Option<bool>,
    pub duration_ms: Option<f64>,
    pub value: Option<f64>,
    pub error_type: Option<&'a str>,
    pub error_category: Option<&'a str>,
    pub sample_rate: f64,
    pub tags: Option<&'a str>,
    pub payload: Option<&'a str>,
}

/// `n` rows of the benches' command event (`help`, hashed user and server, 250 ms, one in 50
/// failed), starting at `t0` ms, one per ms: what the pipeline writes for the same events.
pub fn command_rows(n: usize, t0: i64) -> Vec<Row<'static>> {
    (0..n)
        .map(|i| Row {
            instance_id: "raw",
            ts_ms: t0 + i as i64,
            kind: "command",
            name: "help",
            priority: "normal",
            user_hash: Some("a3f1c0ffee123456"),
            server_hash: Some("b3f1c0ffee123456"),
            success: Some(!i.is_multiple_of(50)),
            duration_ms: Some(250.0),
            value: None,
            error_type: None,
            error_category: None,
            sample_rate: 1.0,
            tags: None,
            payload: None,
        })
        .collect()
}

/// An `events` row owning its strings: a fixed-size array of these has a cached statement
/// (one of borrowing rows does not: its query id is not `'static`).
#[allow(dead_code)] // used by the pipeline bench and the do_send example, not pg_write
#[derive(Insertable, Default)]
#[diesel(table_name = events, treat_none_as_default_value = false)]
pub struct OwnedRow {
    pub instance_id: String,
    pub ts_ms: i64,
    pub kind: String,
    pub name: String,
    pub priority: String,
    pub user_hash: Option<String>,
    pub server_hash: Option<String>,
    pub success: Option<bool>,
    pub duration_ms: Option<f64>,
    pub value: Option<f64>,
    pub error_type: Option<String>,
    pub error_category: Option<String>,
    pub sample_rate: f64,
    pub tags: Option<String>,
    pub payload: Option<String>,
}

#[allow(dead_code)] // the pipeline bench's conversion; pg_write does not use it
impl From<&Row<'_>> for OwnedRow {
    fn from(r: &Row<'_>) -> Self {
        let own = |s: Option<&str>| s.map(str::to_string);
        OwnedRow {
            instance_id: r.instance_id.to_string(),
            ts_ms: r.ts_ms,
            kind: r.kind.to_string(),
            name: r.name.to_string(),
            priority: r.priority.to_string(),
            user_hash: own(r.user_hash),
            server_hash: own(r.server_hash),
            success: r.success,
            duration_ms: r.duration_ms,
            value: r.value,
            error_type: own(r.error_type),
            error_category: own(r.error_category),
            sample_rate: r.sample_rate,
            tags: own(r.tags),
            payload: own(r.payload),
        }
    }
}

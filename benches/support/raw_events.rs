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

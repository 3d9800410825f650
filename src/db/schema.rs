// @generated automatically by Diesel CLI, then unified by hand for both backends:
// only BigInt, Text, Double, Bool and Binary, which SQLite and PostgreSQL both map.

diesel::table! {
    events (id) {
        id -> BigInt,
        instance_id -> Text,
        ts_ms -> BigInt,
        kind -> Text,
        name -> Text,
        priority -> Text,
        user_hash -> Nullable<Text>,
        server_hash -> Nullable<Text>,
        success -> Nullable<Bool>,
        duration_ms -> Nullable<Double>,
        value -> Nullable<Double>,
        error_type -> Nullable<Text>,
        error_category -> Nullable<Text>,
        sample_rate -> Double,
        tags -> Nullable<Text>,
        payload -> Nullable<Text>,
    }
}

diesel::table! {
    metric_windows (id) {
        id -> BigInt,
        instance_id -> Text,
        series -> Text,
        metric -> Text,
        context -> Nullable<Text>,
        window_start_ms -> BigInt,
        window_end_ms -> BigInt,
        count -> BigInt,
        estimated_count -> Double,
        sum -> Double,
        min -> Double,
        max -> Double,
        mean -> Double,
        stddev -> Double,
        p50 -> Double,
        p90 -> Double,
        p95 -> Double,
        p99 -> Double,
        sketch -> Nullable<Binary>,
        is_final -> Bool,
    }
}

diesel::table! {
    error_counts (instance_id, error_hash, window_start_ms) {
        instance_id -> Text,
        error_hash -> Text,
        error_type -> Text,
        error_category -> Nullable<Text>,
        window_start_ms -> BigInt,
        count -> BigInt,
        first_ts_ms -> BigInt,
        last_ts_ms -> BigInt,
    }
}

diesel::table! {
    patterns (id) {
        id -> BigInt,
        instance_id -> Text,
        series -> Text,
        kind -> Text,
        confidence -> Double,
        window_start_ms -> BigInt,
        window_end_ms -> BigInt,
        observed -> Double,
        baseline -> Double,
        description -> Text,
        detected_at_ms -> BigInt,
    }
}

diesel::table! {
    metric_rollups (id) {
        id -> BigInt,
        resolution -> Text,
        series -> Text,
        metric -> Text,
        context -> Nullable<Text>,
        window_start_ms -> BigInt,
        window_end_ms -> BigInt,
        count -> BigInt,
        estimated_count -> Double,
        sum -> Double,
        min -> Double,
        max -> Double,
        mean -> Double,
        stddev -> Double,
        p50 -> Double,
        p90 -> Double,
        p95 -> Double,
        p99 -> Double,
        sketch -> Nullable<Binary>,
        source_rows -> BigInt,
        computed_at_ms -> BigInt,
    }
}

diesel::table! {
    rollup_pending (resolution, series, bucket_start_ms, instance_id) {
        resolution -> Text,
        series -> Text,
        bucket_start_ms -> BigInt,
        instance_id -> Text,
        gen -> BigInt,
    }
}

diesel::table! {
    quarantine (id) {
        id -> BigInt,
        instance_id -> Text,
        kind -> Text,
        payload -> Text,
        error -> Text,
        quarantined_at_ms -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    events,
    metric_windows,
    error_counts,
    patterns,
    metric_rollups,
    rollup_pending,
    quarantine
);

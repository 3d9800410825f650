//! The SQL of distinct users (`command_users`, `crate::users`), one body per backend: a
//! window's sketch merged into its window, hour, day and week rows, in the writer's
//! transaction; the rows of a query, merged over instances and contexts.

use diesel::prelude::*;
use diesel::Column;

use crate::cores::users::UserWindow;
use crate::db::cached::Upsert;
use crate::messages::QueryUsers;
use crate::stats::hll::UserSketch;
use crate::users::rows_to_merge;

diesel::table! {
    /// One HyperLogLog sketch of a command's users per instance, context (`''` for none),
    /// resolution (`window`, `hour`, `day`, `week`) and window or bucket start.
    command_users (instance_id, command, context, resolution, window_start_ms) {
        instance_id -> Text,
        command -> Text,
        context -> Text,
        resolution -> Text,
        window_start_ms -> BigInt,
        window_ms -> BigInt,
        registers -> Binary,
        estimate -> Double,
    }
}

/// A stored sketch, or the error that says it is damaged (the transaction fails: a merge into
/// a damaged row would lose what it held).
fn decode(bytes: &[u8]) -> QueryResult<UserSketch> {
    UserSketch::from_bytes(bytes)
        .map_err(|e| diesel::result::Error::DeserializationError(Box::new(e)))
}

macro_rules! users_backend {
    ($module:ident, $Conn:ty) => {
        pub(crate) mod $module {
            use super::command_users::dsl::*;
            use super::*;

            /// Merges each window's sketch into its rows of `instance` (register maximum): the
            /// window's and its hour, day and week buckets', each row read and written once
            /// per batch ([`rows_to_merge`]). Writing a sketch twice changes nothing.
            pub(crate) fn write_users(
                c: &mut $Conn,
                instance: &str,
                users: &[UserWindow],
            ) -> QueryResult<()> {
                for ((cmd, ctx, res, start), (width, sketch)) in rows_to_merge(users) {
                    let stored: Option<Vec<u8>> = command_users
                        .filter(instance_id.eq(instance))
                        .filter(command.eq(cmd))
                        .filter(context.eq(ctx))
                        .filter(resolution.eq(res))
                        .filter(window_start_ms.eq(start))
                        .select(registers)
                        .first(c)
                        .optional()?;
                    let merged = match stored {
                        Some(bytes) => {
                            let mut merged = decode(&bytes)?;
                            merged.merge(&sketch);
                            merged
                        }
                        None => sketch,
                    };
                    let bytes = merged.to_bytes();
                    let row = (
                        window_ms.eq(width),
                        registers.eq(&bytes),
                        estimate.eq(merged.estimate()),
                    );
                    Upsert::new(
                        diesel::insert_into(command_users).values((
                            instance_id.eq(instance),
                            command.eq(cmd),
                            context.eq(ctx),
                            resolution.eq(res),
                            window_start_ms.eq(start),
                            row,
                        )),
                        &[
                            instance_id::NAME,
                            command::NAME,
                            context::NAME,
                            resolution::NAME,
                            window_start_ms::NAME,
                        ],
                        row,
                    )
                    .execute(c)?;
                }
                Ok(())
            }

            /// The stored sketches a query reads, every instance's: `(start, width, sketch)`.
            pub(crate) fn read_users(
                c: &mut $Conn,
                q: &QueryUsers,
            ) -> QueryResult<Vec<(i64, i64, UserSketch)>> {
                let mut query = command_users
                    .filter(command.eq(&q.command))
                    .filter(resolution.eq(q.resolution.as_str()))
                    .filter(window_start_ms.ge(q.from_ms))
                    .filter(window_start_ms.lt(q.to_ms))
                    .into_boxed();
                if let Some(ctx) = &q.context {
                    query = query.filter(context.eq(ctx.clone()));
                }
                let rows: Vec<(i64, i64, Vec<u8>)> = query
                    .select((window_start_ms, window_ms, registers))
                    .load(c)?;
                rows.into_iter()
                    .map(|(s, w, b)| Ok((s, w, decode(&b)?)))
                    .collect()
            }

            /// The commands with stored distinct-user rows, each once, sorted.
            pub(crate) fn user_commands(c: &mut $Conn) -> QueryResult<Vec<String>> {
                command_users
                    .select(command)
                    .distinct()
                    .order(command)
                    .load(c)
            }
        }
    };
}

users_backend!(sqlite, diesel::sqlite::SqliteConnection);
users_backend!(pg, diesel::pg::PgConnection);

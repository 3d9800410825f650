//! The journal file: a local SQLite database in WAL mode with `synchronous = FULL` (each commit
//! is on disk when it returns) and an exclusive lock (one pipeline per journal file).
//!
//! ```sql
//! journal_meta    (key TEXT PRIMARY KEY, value TEXT)          -- 'journal_id': a random id
//! journal_entries (last_pos INTEGER PRIMARY KEY, first_pos INTEGER, events BLOB)
//! ```
//!
//! An entry holds the encoded events at positions `first_pos..=last_pos` (see
//! [`super::codec`]). Keyed by its last position, entries are read and deleted in position
//! order with range scans of the table's own b-tree.

use std::path::{Path, PathBuf};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Binary, Text};

use super::codec::Entry;

/// How long opening waits for a journal file another pipeline (or one still stopping) holds.
const LOCK_WAIT: Duration = Duration::from_millis(500);

/// An open journal file (see the module docs).
pub(crate) struct JournalFile {
    conn: SqliteConnection,
    path: PathBuf,
}

impl std::fmt::Debug for JournalFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

#[derive(QueryableByName)]
struct Value {
    #[diesel(sql_type = Text)]
    value: String,
}

#[derive(QueryableByName)]
struct Position {
    #[diesel(sql_type = diesel::sql_types::Nullable<BigInt>)]
    position: Option<i64>,
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = BigInt)]
    first_pos: i64,
    #[diesel(sql_type = BigInt)]
    last_pos: i64,
    #[diesel(sql_type = Binary)]
    events: Vec<u8>,
}

impl JournalFile {
    /// Opens (creating it if missing) the journal at `path`, takes its lock, and returns it
    /// with its id (made when the file was created). An error says what went wrong in words.
    pub(crate) fn open(path: &Path) -> Result<(JournalFile, String), String> {
        let url = path
            .to_str()
            .ok_or_else(|| "the path is not valid UTF-8".to_string())?;
        if path.is_dir() {
            return Err("the path is a directory".into());
        }
        let existed = std::fs::metadata(path).is_ok_and(|m| m.len() > 0);
        let mut conn = SqliteConnection::establish(url).map_err(|e| e.to_string())?;
        conn.batch_execute(&format!(
            "PRAGMA busy_timeout = {}; PRAGMA locking_mode = EXCLUSIVE; \
             PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;",
            LOCK_WAIT.as_millis()
        ))
        .map_err(|e| in_use(e.to_string()))?;
        if existed {
            let checks: Vec<QuickCheck> = diesel::sql_query("PRAGMA quick_check(3)")
                .load(&mut conn)
                .map_err(|e| {
                    format!(
                        "the file is corrupt or unreadable: {}",
                        in_use(e.to_string())
                    )
                })?;
            if !matches!(checks.as_slice(), [only] if only.quick_check == "ok") {
                let found: Vec<String> = checks.into_iter().map(|c| c.quick_check).collect();
                return Err(format!(
                    "the journal file is corrupt (PRAGMA quick_check: {})",
                    found.join("; ")
                ));
            }
        }
        // The first write takes the exclusive lock, held until the connection closes.
        let new_id = format!("{:016x}", crate::util::os_random_u64());
        conn.immediate_transaction(|c| {
            c.batch_execute(
                "CREATE TABLE IF NOT EXISTS journal_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS journal_entries (
                     last_pos INTEGER PRIMARY KEY, first_pos INTEGER NOT NULL, events BLOB NOT NULL);",
            )?;
            diesel::sql_query(
                "INSERT INTO journal_meta (key, value) VALUES ('journal_id', ?) ON CONFLICT DO NOTHING",
            )
            .bind::<Text, _>(&new_id)
            .execute(c)?;
            diesel::sql_query("SELECT value FROM journal_meta WHERE key = 'journal_id'")
                .get_result::<Value>(c)
        })
        .map(|id| {
            (
                JournalFile {
                    conn,
                    path: path.to_path_buf(),
                },
                id.value,
            )
        })
        .map_err(|e| in_use(e.to_string()))
    }

    /// Writes `entries` in one transaction; on disk when it returns.
    pub(crate) fn write(&mut self, entries: &[Entry]) -> QueryResult<()> {
        self.conn.immediate_transaction(|c| {
            for e in entries {
                diesel::sql_query(
                    "INSERT INTO journal_entries (last_pos, first_pos, events) VALUES (?, ?, ?)",
                )
                .bind::<BigInt, _>(e.last as i64)
                .bind::<BigInt, _>(e.first as i64)
                .bind::<Binary, _>(&e.bytes)
                .execute(c)?;
            }
            Ok(())
        })
    }

    /// Deletes the entries whose events all have positions up to `position` (the store holds
    /// them). Returns how many.
    pub(crate) fn truncate_through(&mut self, position: u64) -> QueryResult<usize> {
        diesel::sql_query("DELETE FROM journal_entries WHERE last_pos <= ?")
            .bind::<BigInt, _>(position as i64)
            .execute(&mut self.conn)
    }

    /// The entries holding events after `position`, in position order.
    pub(crate) fn entries_after(&mut self, position: u64) -> QueryResult<Vec<Entry>> {
        let rows: Vec<Row> = diesel::sql_query(
            "SELECT first_pos, last_pos, events FROM journal_entries WHERE last_pos > ? ORDER BY last_pos",
        )
        .bind::<BigInt, _>(position as i64)
        .load(&mut self.conn)?;
        Ok(rows
            .into_iter()
            .map(|r| Entry {
                first: r.first_pos as u64,
                last: r.last_pos as u64,
                bytes: r.events,
            })
            .collect())
    }

    /// The position of the last event in the file (0 when empty).
    pub(crate) fn last_position(&mut self) -> QueryResult<u64> {
        let p: Position =
            diesel::sql_query("SELECT max(last_pos) AS position FROM journal_entries")
                .get_result(&mut self.conn)?;
        Ok(p.position.unwrap_or(0) as u64)
    }

    /// Entries in the file.
    #[cfg(test)]
    pub(crate) fn len(&mut self) -> QueryResult<u64> {
        let p: Position = diesel::sql_query("SELECT count(*) AS position FROM journal_entries")
            .get_result(&mut self.conn)?;
        Ok(p.position.unwrap_or(0) as u64)
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

#[derive(QueryableByName)]
struct QuickCheck {
    #[diesel(sql_type = Text)]
    quick_check: String,
}

/// SQLite's "database is locked" said in the journal's terms.
fn in_use(e: String) -> String {
    if e.contains("locked") || e.contains("busy") {
        format!("{e} (the journal file is in use by another pipeline)")
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::codec::{decode, Appender};
    use crate::TrackEvent;

    fn entries(first: u64, n: u64) -> Vec<Entry> {
        let mut a = Appender::new(first);
        for i in 0..n {
            a.append(&TrackEvent::command(format!("c{}", first + i)));
        }
        a.take()
    }

    #[test]
    fn entries_are_kept_read_after_a_position_and_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (mut f, id) = JournalFile::open(&path).unwrap();
        assert_eq!(id.len(), 16);
        assert_eq!(f.last_position().unwrap(), 0);
        f.write(&entries(1, 3)).unwrap();
        f.write(&entries(4, 2)).unwrap();
        f.write(&entries(6, 4)).unwrap();
        assert_eq!((f.len().unwrap(), f.last_position().unwrap()), (3, 9));
        let after: Vec<(u64, u64)> = f
            .entries_after(4)
            .unwrap()
            .iter()
            .map(|e| (e.first, e.last))
            .collect();
        assert_eq!(
            after,
            [(4, 5), (6, 9)],
            "an entry straddling 4 is read whole"
        );
        let names: Vec<String> = decode(&f.entries_after(5).unwrap()[0].bytes)
            .unwrap()
            .iter()
            .map(|e| e.name().to_string())
            .collect();
        assert_eq!(names, ["c6", "c7", "c8", "c9"]);
        assert_eq!(f.truncate_through(4).unwrap(), 1, "(4, 5) stays");
        assert_eq!(f.truncate_through(9).unwrap(), 2);
        assert_eq!(f.len().unwrap(), 0);
        drop(f);
        // reopened: the same id; an empty file keeps no position (the store's checkpoint does)
        let (mut f, again) = JournalFile::open(&path).unwrap();
        assert_eq!(again, id);
        f.write(&entries(10, 1)).unwrap();
        assert_eq!(f.last_position().unwrap(), 10);
    }

    #[test]
    fn one_pipeline_per_journal_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (_held, _) = JournalFile::open(&path).unwrap();
        let err = JournalFile::open(&path).unwrap_err();
        assert!(err.contains("in use by another pipeline"), "{err}");
    }

    #[test]
    fn a_damaged_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        {
            let (mut f, _) = JournalFile::open(&path).unwrap();
            for i in 0..40 {
                let mut a = Appender::new(1 + i * 100);
                for k in 0..100 {
                    a.append(&TrackEvent::command("c").tag("k", format!("{k:0200}")));
                }
                f.write(&a.take()).unwrap();
            }
        }
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        for (i, b) in bytes[mid..mid + 8192].iter_mut().enumerate() {
            *b = (i * 7 % 251) as u8;
        }
        std::fs::write(&path, bytes).unwrap();
        let err = JournalFile::open(&path).unwrap_err();
        assert!(err.contains("corrupt"), "{err}");
    }
}

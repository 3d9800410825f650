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
//!
//! ```sql
//! journal_rejected (id INTEGER PRIMARY KEY, first_pos INTEGER, last_pos INTEGER, events BLOB,
//!                   reason TEXT, rejected_at_ms INTEGER)  -- entries set aside at start
//! ```
//!
//! An entry that fails its checksum or cannot be decoded is moved to `journal_rejected` at
//! start (the newest [`MAX_REJECTED`] are kept there for inspection), so it is counted once.
//!
//! ```sql
//! forward_outbox (id INTEGER PRIMARY KEY, msg_id TEXT UNIQUE, body BLOB)
//!                 -- durable forwarding: messages committed with a checkpoint, not yet acknowledged
//! ```
//!
//! (see [`super::outbox`]; its checkpoint is the `journal_meta` row `forward_checkpoint`).
//!
//! The file is created with mode 0600 (SQLite gives its `-wal` the same mode), and uses
//! `secure_delete`: the entries deleted once the store holds them are overwritten with zeros,
//! and a clean stop truncates the WAL (`wal_checkpoint(TRUNCATE)`), so what was checkpointed
//! does not stay readable in the files.
//!
//! The file's identity (and its `-wal`'s) is recorded at open, and [`JournalFile::commit`]
//! checks before each commit that the path still names it: a journal deleted (or replaced)
//! under the running pipeline would otherwise take every commit into its unlinked inode, on no
//! disk once the process ends.

use std::path::{Path, PathBuf};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Binary, Text};

use super::codec::Entry;
use crate::util::{FileChange, FileIdentity};

/// How long opening waits for a journal file another pipeline (or one still stopping) holds.
const LOCK_WAIT: Duration = Duration::from_millis(500);

/// Rejected entries kept in `journal_rejected` (the oldest go first).
const MAX_REJECTED: i64 = 1_000;

/// Why a journal file could not be opened or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OpenError {
    /// The file is damaged (SQLite says so, or `PRAGMA quick_check` finds faults): see
    /// [`move_aside`].
    #[error("the journal file is corrupt: {0}")]
    Corrupt(String),
    /// Anything else (in use by another pipeline, no permission, a full disk, ...).
    #[error("{0}")]
    Other(String),
}

impl OpenError {
    /// An SQLite error said in the journal's terms: corruption, or something else.
    fn of(e: impl ToString) -> OpenError {
        let e = e.to_string();
        let m = e.to_ascii_lowercase();
        if ["malformed", "not a database", "corrupt"]
            .iter()
            .any(|w| m.contains(w))
        {
            OpenError::Corrupt(e)
        } else {
            OpenError::Other(in_use(e))
        }
    }
}

/// `path` with `suffix` appended to its file name (`-wal`, `-shm`).
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// Moves a corrupt journal file (and its `-wal` and `-shm`) aside, to
/// `<path>.corrupt-<unix ms>`, so a new one can be started; returns the new name.
pub(crate) fn move_aside(path: &Path) -> std::io::Result<PathBuf> {
    let stamp = crate::util::unix_ms();
    let with = |suffix: &str| with_suffix(path, suffix);
    let aside = with(&format!(".corrupt-{stamp}"));
    std::fs::rename(path, &aside)?;
    for side in ["-wal", "-shm"] {
        let mut to = aside.as_os_str().to_owned();
        to.push(side);
        // absent when SQLite has not made them
        let _ = std::fs::rename(with(side), to);
    }
    Ok(aside)
}

/// Refuses a journal path that is the store's SQLite file, or one of its side files (`-wal`,
/// `-shm`, `-journal`), however it is spelled (`./`, `..`, a symbolic or hard link): checked
/// before anything is created, naming both.
pub(crate) fn check_path(journal: &Path, store: &Path) -> Result<(), crate::ConfigError> {
    let (j, s) = (resolve(journal), resolve(store));
    let side = |suffix: &str| {
        let mut p = s.as_os_str().to_owned();
        p.push(suffix);
        PathBuf::from(p)
    };
    let clash =
        j == s || same_file(&j, &s) || ["-wal", "-shm", "-journal"].iter().any(|x| j == side(x));
    if !clash {
        return Ok(());
    }
    Err(crate::ConfigError::new(
        "journal_path",
        journal.display(),
        format!(
            "is the store's own file {} (both resolve to {}): the journal needs a file of its own",
            store.display(),
            j.display()
        ),
    ))
}

/// `path` absolute, with its symbolic links resolved as far as it exists (through its
/// directory when the file does not exist yet).
fn resolve(path: &Path) -> PathBuf {
    let mut path = path.to_path_buf();
    // a link to a file not created yet: follow it by hand (a few links deep at most)
    for _ in 0..8 {
        if let Ok(p) = std::fs::canonicalize(&path) {
            return p;
        }
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        match std::fs::read_link(&path) {
            Ok(target) => path = parent.join(target),
            Err(_) => {
                return match (std::fs::canonicalize(&parent), path.file_name()) {
                    (Ok(dir), Some(name)) => dir.join(name),
                    _ => path,
                }
            }
        }
    }
    path
}

/// Two existing paths name one file (a hard link).
#[cfg(unix)]
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_: &Path, _: &Path) -> bool {
    false
}

/// An open journal file (see the module docs).
pub(crate) struct JournalFile {
    pub(super) conn: SqliteConnection,
    path: PathBuf,
    /// The file the path named once opened (see [`JournalFile::check_identity`]).
    identity: FileIdentity,
    /// Its `-wal` and the file that path named once opened (absent if SQLite had made none).
    wal: Option<(PathBuf, FileIdentity)>,
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

#[cfg(test)]
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
    /// Opens (creating it, mode 0600, if missing) the journal at `path`, takes its lock, and
    /// returns it with its id (made when the file was created).
    pub(crate) fn open(path: &Path) -> Result<(JournalFile, String), OpenError> {
        let other = |e: &str| OpenError::Other(e.to_string());
        let url = path
            .to_str()
            .ok_or_else(|| other("the path is not valid UTF-8"))?;
        if path.is_dir() {
            return Err(other("the path is a directory"));
        }
        let existed = std::fs::metadata(path).is_ok_and(|m| m.len() > 0);
        crate::util::create_owner_only(path)
            .map_err(|e| other(&format!("cannot create the file: {e}")))?;
        let mut conn = SqliteConnection::establish(url).map_err(OpenError::of)?;
        conn.batch_execute(&format!(
            "PRAGMA busy_timeout = {}; PRAGMA locking_mode = EXCLUSIVE; \
             PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA secure_delete = ON;",
            LOCK_WAIT.as_millis()
        ))
        .map_err(OpenError::of)?;
        if existed {
            quick_check(&mut conn)?;
        }
        // The first write takes the exclusive lock, held until the connection closes.
        let new_id = format!("{:016x}", crate::util::os_random_u64());
        let id = conn.immediate_transaction(|c| {
            c.batch_execute(
                "CREATE TABLE IF NOT EXISTS journal_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS journal_entries (
                     last_pos INTEGER PRIMARY KEY, first_pos INTEGER NOT NULL, events BLOB NOT NULL);
                 CREATE TABLE IF NOT EXISTS forward_outbox (
                     id INTEGER PRIMARY KEY, msg_id TEXT NOT NULL UNIQUE, body BLOB NOT NULL);",
            )?;
            diesel::sql_query(
                "INSERT INTO journal_meta (key, value) VALUES ('journal_id', ?) ON CONFLICT DO NOTHING",
            )
            .bind::<Text, _>(&new_id)
            .execute(c)?;
            diesel::sql_query("SELECT value FROM journal_meta WHERE key = 'journal_id'")
                .get_result::<Value>(c)
        })
        .map_err(OpenError::of)?;
        // the lock is held: from now on nobody else writes this file through SQLite
        let identity = FileIdentity::of(path)
            .map_err(|e| other(&format!("cannot stat the file once opened: {e}")))?;
        let wal = with_suffix(path, "-wal");
        let wal = FileIdentity::of(&wal).ok().map(|i| (wal, i));
        let file = JournalFile {
            conn,
            path: path.to_path_buf(),
            identity,
            wal,
        };
        Ok((file, id.value))
    }

    /// `Ok` if the path (and its `-wal`) still names the file opened; otherwise why not, for
    /// the journal's health (the caller names the journal's path). One `stat(2)` each, a few
    /// microseconds: run before each commit.
    pub(crate) fn check_identity(&self) -> Result<(), String> {
        let main = std::iter::once((&self.path, self.identity, "file"));
        let wal = self.wal.iter().map(|(p, i)| (p, *i, "WAL file"));
        for (path, opened, what) in main.chain(wal) {
            let why = match opened.check(path) {
                Ok(()) => continue,
                Err(FileChange::Deleted) => "was deleted",
                Err(FileChange::Replaced) => "was replaced by another file",
                Err(FileChange::Unknown(e)) => {
                    return Err(format!("cannot stat its {what} {}: {e}", path.display()))
                }
            };
            return Err(format!(
                "its {what} {} {why} since the journal was opened; refusing to commit into it \
                 (commits would reach no file on disk); restart the pipeline to start a journal \
                 at the path",
                path.display()
            ));
        }
        Ok(())
    }

    /// The journal thread's group commit: writes `entries` (a [`Self::probe`] when there are
    /// none) once [`Self::check_identity`] finds the path still names the file; SQLite's
    /// error, or why not. A file deleted or replaced fails every commit until a restart.
    pub(crate) fn commit(&mut self, entries: &[Entry]) -> Result<(), String> {
        self.check_identity()?;
        match entries {
            [] => self.probe(),
            _ => self.write(entries),
        }
        .map_err(|e| e.to_string())
    }

    /// Runs `body` in one `BEGIN IMMEDIATE` transaction. The error returned is the first one:
    /// when a COMMIT fails with a full disk SQLite has rolled back already, and the ROLLBACK
    /// that follows fails too ("no transaction is active"), which must not hide the cause.
    pub(super) fn in_transaction(
        &mut self,
        body: impl FnOnce(&mut SqliteConnection) -> QueryResult<()>,
    ) -> QueryResult<()> {
        self.conn.batch_execute("BEGIN IMMEDIATE")?;
        let done = body(&mut self.conn).and_then(|()| self.conn.batch_execute("COMMIT"));
        if done.is_err() {
            let _ = self.conn.batch_execute("ROLLBACK");
        }
        done
    }

    /// Whether the file takes a write again (after failed ones, when nothing waits to be
    /// written): rewrites one row of `journal_meta`.
    pub(crate) fn probe(&mut self) -> QueryResult<()> {
        self.in_transaction(|c| {
            c.batch_execute(
                "INSERT INTO journal_meta (key, value) VALUES ('probe', '1')
                 ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
            )
        })
    }

    /// Moves `entries` (each with why) to `journal_rejected`, in one transaction, keeping the
    /// newest [`MAX_REJECTED`] there.
    pub(crate) fn set_aside(&mut self, entries: &[(Entry, String)]) -> QueryResult<()> {
        let now_ms = crate::util::unix_ms() as i64;
        self.in_transaction(|c| {
            c.batch_execute(
                "CREATE TABLE IF NOT EXISTS journal_rejected (id INTEGER PRIMARY KEY,
                     first_pos INTEGER, last_pos INTEGER, events BLOB, reason TEXT,
                     rejected_at_ms INTEGER)",
            )?;
            for (e, reason) in entries {
                diesel::sql_query(
                    "INSERT INTO journal_rejected (first_pos, last_pos, events, reason, rejected_at_ms)
                     VALUES (?, ?, ?, ?, ?)",
                )
                .bind::<BigInt, _>(e.first as i64)
                .bind::<BigInt, _>(e.last as i64)
                .bind::<Binary, _>(&e.bytes)
                .bind::<Text, _>(reason)
                .bind::<BigInt, _>(now_ms)
                .execute(c)?;
                diesel::sql_query("DELETE FROM journal_entries WHERE last_pos = ?")
                    .bind::<BigInt, _>(e.last as i64)
                    .execute(c)?;
            }
            diesel::sql_query(
                "DELETE FROM journal_rejected WHERE id <= (SELECT max(id) FROM journal_rejected) - ?",
            )
            .bind::<BigInt, _>(MAX_REJECTED)
            .execute(c)
            .map(drop)
        })
    }

    /// Folds the WAL into the file and truncates it to zero bytes (at a clean stop): with
    /// `secure_delete`, no deleted entry stays readable in either file.
    pub(crate) fn truncate_wal(&mut self) -> QueryResult<()> {
        self.conn.batch_execute("PRAGMA wal_checkpoint(TRUNCATE)")
    }

    /// Writes `entries` in one transaction; on disk when it returns.
    pub(crate) fn write(&mut self, entries: &[Entry]) -> QueryResult<()> {
        self.in_transaction(|c| {
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

    /// Every entry, in position order (each is checked at start, those the store holds too:
    /// a damaged position could otherwise hide an entry behind the checkpoint).
    pub(crate) fn entries(&mut self) -> Result<Vec<Entry>, OpenError> {
        let rows: Vec<Row> = diesel::sql_query(
            "SELECT first_pos, last_pos, events FROM journal_entries ORDER BY last_pos",
        )
        .load(&mut self.conn)
        .map_err(OpenError::of)?;
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
    #[cfg(test)]
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

/// `PRAGMA quick_check`: the file's b-trees and pages are sound.
fn quick_check(conn: &mut SqliteConnection) -> Result<(), OpenError> {
    let checks: Vec<QuickCheck> = diesel::sql_query("PRAGMA quick_check(3)")
        .load(conn)
        .map_err(OpenError::of)?;
    if matches!(checks.as_slice(), [only] if only.quick_check == "ok") {
        return Ok(());
    }
    let found: Vec<String> = checks.into_iter().map(|c| c.quick_check).collect();
    Err(OpenError::Corrupt(format!(
        "PRAGMA quick_check: {}",
        found.join("; ")
    )))
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
        let all: Vec<(u64, u64)> = f
            .entries()
            .unwrap()
            .iter()
            .map(|e| (e.first, e.last))
            .collect();
        assert_eq!(all, [(1, 3), (4, 5), (6, 9)], "in position order");
        let names: Vec<String> = decode(&f.entries().unwrap()[2].bytes)
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

    /// Mode 0600 for the file (and its WAL); entries set aside leave `journal_entries`.
    #[cfg(unix)]
    #[test]
    fn the_file_is_private_and_entries_can_be_set_aside() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (mut f, _) = JournalFile::open(&path).unwrap();
        f.write(&entries(1, 3)).unwrap();
        f.write(&entries(4, 2)).unwrap();
        for p in [path.clone(), dir.path().join("j-wal")] {
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
        let first = f.entries().unwrap().remove(0);
        f.set_aside(&[(first, "damaged".into())]).unwrap();
        assert_eq!(f.len().unwrap(), 1);
        f.probe().unwrap();
        f.truncate_wal().unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_journal_path_that_is_the_store_is_refused_however_spelled() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("a.db");
        let dotted = dir.path().join(".").join("sub").join("..").join("a.db");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let link = dir.path().join("link.db");
        std::os::unix::fs::symlink(&store, &link).unwrap();
        for journal in [store.clone(), dotted, link, dir.path().join("a.db-wal")] {
            let e = check_path(&journal, &store).unwrap_err();
            assert_eq!(e.field, "journal_path");
            assert!(e.reason.contains("a.db"), "{e}");
        }
        std::fs::write(&store, b"").unwrap();
        let hard = dir.path().join("hard.db");
        std::fs::hard_link(&store, &hard).unwrap();
        assert!(check_path(&hard, &store).is_err(), "a hard link");
        check_path(&dir.path().join("a.db.journal"), &store).unwrap();
    }

    /// The path no longer naming the file opened (or its WAL) is seen, and said.
    #[test]
    fn a_file_deleted_or_replaced_under_the_journal_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (mut f, _) = JournalFile::open(&path).unwrap();
        f.write(&entries(1, 3)).unwrap();
        f.check_identity().unwrap();
        std::fs::remove_file(dir.path().join("j-wal")).unwrap();
        let err = f.check_identity().unwrap_err();
        assert!(
            err.contains("WAL file") && err.contains("was deleted"),
            "{err}"
        );
        drop(f);
        let (f, _) = JournalFile::open(&path).unwrap();
        f.check_identity().unwrap();
        std::fs::write(dir.path().join("other"), b"x").unwrap();
        std::fs::rename(dir.path().join("other"), &path).unwrap();
        let err = f.check_identity().unwrap_err();
        assert!(
            err.contains("its file") && err.contains("was replaced"),
            "{err}"
        );
        std::fs::remove_file(&path).unwrap();
        let err = f.check_identity().unwrap_err();
        assert!(err.contains("was deleted"), "{err}");
        assert!(!err.contains("c1"), "no event data: {err}");
    }

    #[test]
    fn one_pipeline_per_journal_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (_held, _) = JournalFile::open(&path).unwrap();
        let err = JournalFile::open(&path).unwrap_err().to_string();
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
        assert!(matches!(err, OpenError::Corrupt(_)), "{err}");
        let aside = move_aside(&path).unwrap();
        assert!(aside.to_str().unwrap().contains("j.corrupt-"), "{aside:?}");
        assert!(!path.exists());
        JournalFile::open(&path).expect("a new journal in its place");
    }
}

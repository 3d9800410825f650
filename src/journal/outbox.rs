//! Durable forwarding's outbox (`durable` with `forward`; ARCHITECTURE.md, "Durable mode"): in
//! forwarding mode there is no store transaction to commit a checkpoint with, so the journal
//! file is that store. At a checkpoint `P` the sink encodes every batch the checkpoint covers
//! into its NATS messages (ids and bytes fixed once and for all) and commits them to the
//! file's `forward_outbox` table in one transaction with the `journal_meta` row
//! `forward_checkpoint = P`; only then are they published. A message leaves the outbox in a
//! later transaction (the next checkpoint's, or the clean stop's) once JetStream has
//! acknowledged it.
//!
//! After a crash the next start publishes what the outbox holds again, byte for byte under the
//! same `Nats-Msg-Id` (JetStream's duplicate window drops a copy it stored within the window;
//! past it, the workers' `forward_applied` claim of the message's origin does), and replays
//! the journal's events after `P`. So what reaches the workers is the effect of exactly the
//! events up to `P`, once, followed by the replay's: nothing derived from an event after `P`
//! was published before the crash, since nothing is published before its checkpoint commits.

use diesel::prelude::*;
use diesel::sql_types::{Binary, Text};

use super::file::{JournalFile, OpenError};

/// One message of the outbox: its de-duplication id and its body, as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutboxMessage {
    /// The `Nats-Msg-Id`.
    pub msg_id: String,
    /// The compressed batch (`crate::forward::wire`).
    pub body: Vec<u8>,
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    msg_id: String,
    #[diesel(sql_type = Binary)]
    body: Vec<u8>,
}

#[derive(QueryableByName)]
struct Value {
    #[diesel(sql_type = Text)]
    value: String,
}

impl JournalFile {
    /// In one transaction (on disk when it returns): adds `messages` to the outbox, records
    /// the checkpoint `position` (never lowering it), and removes the messages named in
    /// `acknowledged`.
    pub(crate) fn commit_outbox(
        &mut self,
        position: u64,
        messages: &[OutboxMessage],
        acknowledged: &[String],
    ) -> QueryResult<()> {
        self.in_transaction(|c| {
            for m in messages {
                diesel::sql_query("INSERT INTO forward_outbox (msg_id, body) VALUES (?, ?)")
                    .bind::<Text, _>(&m.msg_id)
                    .bind::<Binary, _>(&m.body)
                    .execute(c)?;
            }
            diesel::sql_query(
                "INSERT INTO journal_meta (key, value) VALUES ('forward_checkpoint', ?)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value
                 WHERE CAST(excluded.value AS INTEGER) > CAST(value AS INTEGER)",
            )
            .bind::<Text, _>(position.to_string())
            .execute(c)?;
            for id in acknowledged {
                diesel::sql_query("DELETE FROM forward_outbox WHERE msg_id = ?")
                    .bind::<Text, _>(id)
                    .execute(c)?;
            }
            Ok(())
        })
    }

    /// The checkpoint the outbox holds everything up to (0 when none was recorded: not a
    /// forwarding journal).
    pub(crate) fn forward_checkpoint(&mut self) -> Result<u64, OpenError> {
        let rows: Vec<Value> =
            diesel::sql_query("SELECT value FROM journal_meta WHERE key = 'forward_checkpoint'")
                .load(&mut self.conn)
                .map_err(|e| OpenError::Other(e.to_string()))?;
        match rows.first() {
            None => Ok(0),
            Some(v) => v.value.parse().map_err(|_| {
                OpenError::Corrupt(format!(
                    "forward_checkpoint {:?} is not a position",
                    v.value
                ))
            }),
        }
    }

    /// The messages in the outbox, in the order they were committed.
    pub(crate) fn outbox(&mut self) -> Result<Vec<OutboxMessage>, OpenError> {
        let rows: Vec<Row> =
            diesel::sql_query("SELECT msg_id, body FROM forward_outbox ORDER BY id")
                .load(&mut self.conn)
                .map_err(|e| OpenError::Other(e.to_string()))?;
        Ok(rows
            .into_iter()
            .map(|r| OutboxMessage {
                msg_id: r.msg_id,
                body: r.body,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }

    fn message(id: &str) -> OutboxMessage {
        OutboxMessage {
            msg_id: id.to_string(),
            body: id.as_bytes().to_vec(),
        }
    }

    #[test]
    fn messages_and_the_checkpoint_commit_together_and_leave_once_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (mut f, _) = JournalFile::open(&path).unwrap();
        assert_eq!(f.forward_checkpoint().unwrap(), 0);
        assert!(f.outbox().unwrap().is_empty());
        f.commit_outbox(10, &[message("a.1"), message("a.2")], &[])
            .unwrap();
        f.commit_outbox(25, &[message("a.3")], &["a.1".into()])
            .unwrap();
        drop(f);
        let (mut f, _) = JournalFile::open(&path).unwrap();
        assert_eq!(f.forward_checkpoint().unwrap(), 25);
        assert_eq!(f.outbox().unwrap(), [message("a.2"), message("a.3")]);
        // a checkpoint never goes back; acknowledging what is not there does nothing
        f.commit_outbox(20, &[], &["a.2".into(), "gone".into()])
            .unwrap();
        assert_eq!(f.forward_checkpoint().unwrap(), 25);
        assert_eq!(f.outbox().unwrap(), [message("a.3")]);
        // a message id twice is refused, and the transaction with it: nothing changed
        assert!(f.commit_outbox(30, &[message("a.3")], &[]).is_err());
        assert_eq!(f.forward_checkpoint().unwrap(), 25);
        let n: Count = diesel::sql_query("SELECT count(*) AS n FROM forward_outbox")
            .get_result(&mut f.conn)
            .unwrap();
        assert_eq!(n.n, 1);
    }
}

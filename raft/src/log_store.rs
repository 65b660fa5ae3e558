//! Durable Raft log and vote store on redb (`RaftLogReader` + `RaftLogStorage`).
//!
//! Keys: `log` table by index; `meta` table holds `vote`, `committed`, `last_purged`.
//! Each mutating call is exactly one fsynced write transaction, executed in submission
//! order because openraft awaits each call before issuing the next.
//!
//! The store also keeps its last entry's id in memory (`LastLog`) for the pre-vote,
//! which compares logs without a round trip to the Raft core or the disk.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogId, RaftLogReader, StorageIOError};
use redb::ReadableTable;

use crate::codec;
use crate::db::{self, Db, DbError, LOG, META};
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_LAST_PURGED: &str = "last_purged";

/// The id of the last entry in the log as (term, index), shared by the store that
/// writes it and the pre-vote that reads it (`None`: empty log).
#[derive(Clone, Default)]
pub struct LastLog(Arc<Mutex<Option<(u64, u64)>>>);

impl LastLog {
    pub fn get(&self) -> Option<(u64, u64)> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, id: Option<LogId>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = id.map(|l| (l.leader_id.term, l.index));
    }

    /// After a purge: the log now ends at least at `purged` (an installed snapshot's
    /// last entry purges everything before it; the log may be empty afterwards).
    fn at_least(&self, purged: LogId) {
        let mut last = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let purged = Some((purged.leader_id.term, purged.index));
        if *last < purged {
            *last = purged;
        }
    }
}

/// The log + vote store. Cheap to clone: clones share the same database.
#[derive(Clone)]
pub struct LogStore {
    db: Db,
    last: LastLog,
}

impl LogStore {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            last: LastLog::default(),
        }
    }

    /// Reads the last entry's id from disk into `last_log()` (once, at start).
    pub async fn load_last_log(&mut self) -> Result<LastLog, StorageError> {
        let state = self.get_log_state().await?;
        self.last.set(state.last_log_id);
        Ok(self.last.clone())
    }

    /// True when nothing was ever written: no vote and no log (a fresh node).
    pub async fn is_pristine(&self) -> Result<bool, DbError> {
        db::read(&self.db, |tx| {
            let meta = tx.open_table(META)?;
            let log = tx.open_table(LOG)?;
            let vote: Option<Vote> = db::get_decoded(&meta, KEY_VOTE)?;
            let purged: Option<LogId> = db::get_decoded(&meta, KEY_LAST_PURGED)?;
            Ok(vote.is_none() && purged.is_none() && log.first()?.is_none())
        })
        .await
    }

    async fn read_meta<T>(&self, key: &'static str) -> Result<Option<T>, DbError>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
    {
        db::read(&self.db, move |tx| {
            db::get_decoded(&tx.open_table(META)?, key)
        })
        .await
    }
}

fn to_bounds(range: impl RangeBounds<u64>) -> (Bound<u64>, Bound<u64>) {
    (range.start_bound().cloned(), range.end_bound().cloned())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let bounds = to_bounds(range);
        db::read(&self.db, move |tx| {
            let log = tx.open_table(LOG)?;
            let mut out = Vec::new();
            for item in log.range::<u64>(bounds)? {
                let (_, v) = item?;
                out.push(codec::decode::<Entry>(v.value())?);
            }
            Ok(out)
        })
        .await
        .map_err(|e| StorageIOError::read_logs(&e).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        db::read(&self.db, |tx| {
            let log = tx.open_table(LOG)?;
            let meta = tx.open_table(META)?;
            let last_purged: Option<LogId> = db::get_decoded(&meta, KEY_LAST_PURGED)?;
            let last = match log.last()? {
                Some((_, v)) => Some(*codec::decode::<Entry>(v.value())?.get_log_id()),
                None => last_purged,
            };
            Ok(LogState {
                last_purged_log_id: last_purged,
                last_log_id: last,
            })
        })
        .await
        .map_err(|e| StorageIOError::read_logs(&e).into())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let vote = *vote;
        db::write(&self.db, move |tx| {
            db::put_encoded(tx, META, KEY_VOTE, &vote)
        })
        .await
        .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.read_meta(KEY_VOTE)
            .await
            .map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        db::write(&self.db, move |tx| {
            db::put_encoded(tx, META, KEY_COMMITTED, &committed)
        })
        .await
        .map_err(|e| StorageIOError::write(&e).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let v: Option<Option<LogId>> = self
            .read_meta(KEY_COMMITTED)
            .await
            .map_err(|e| StorageIOError::read(&e))?;
        Ok(v.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // Encode on the async side (cheap), commit + fsync on the blocking pool.
        let mut encoded = Vec::new();
        let mut newest = None;
        for e in entries {
            let bytes = codec::encode(&e).map_err(|err| StorageIOError::write_logs(&err))?;
            encoded.push((e.get_log_id().index, bytes));
            newest = Some(*e.get_log_id());
        }
        let res = db::write(&self.db, move |tx| {
            let mut log = tx.open_table(LOG)?;
            for (idx, bytes) in &encoded {
                log.insert(*idx, bytes.as_slice())?;
            }
            Ok(())
        })
        .await;
        match res {
            Ok(()) => {
                if newest.is_some() {
                    self.last.set(newest);
                }
                // Only now is the data on disk: tell openraft it may count it.
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(&e).into())
            }
        }
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        db::write(&self.db, move |tx| {
            let mut log = tx.open_table(LOG)?;
            log.retain_in(log_id.index.., |_, _| false)?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&e))?;
        // Rare (a new leader overwrote this node's unreplicated tail): read the new end.
        let state = self.get_log_state().await?;
        self.last.set(state.last_log_id);
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Record last_purged and delete in the same transaction: either both happen or
        // neither, so the log never appears to have a hole.
        db::write(&self.db, move |tx| {
            db::put_encoded(tx, META, KEY_LAST_PURGED, &log_id)?;
            let mut log = tx.open_table(LOG)?;
            log.retain_in(..=log_id.index, |_, _| false)?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&e))?;
        self.last.at_least(log_id);
        Ok(())
    }
}

//! The single redb file behind one node: table definitions, opening, and the
//! blocking-transaction helpers used by the log store and the state machine.
//!
//! Every write is one redb write transaction with the default `Durability::Immediate`
//! (fsync before `commit` returns), run on tokio's blocking pool so an fsync never
//! stalls the async runtime.

use std::path::Path;
use std::sync::Arc;

use crate::codec::CodecError;
use redb::{Database, ReadTransaction, TableDefinition, WriteTransaction};

/// Log entries by index.
pub const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// `vote`, `committed`, `last_purged`.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// `state` (the applied state machine), `snapshot` (the current snapshot), `snapshot_seq`.
pub const SM: TableDefinition<&str, &[u8]> = TableDefinition::new("sm");

/// Anything that can go wrong inside a store transaction.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("redb: {0}")]
    Redb(#[from] redb::Error),
    #[error("codec: {0}")]
    Codec(#[from] CodecError),
    #[error("blocking task failed: {0}")]
    Join(String),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for DbError {
            fn from(e: $t) -> Self {
                DbError::Redb(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::DatabaseError
);

/// Shared handle to the node's database.
pub type Db = Arc<Database>;

/// Open (or create) the database and make sure every table exists, so readers never
/// see `TableDoesNotExist`.
pub fn open(path: &Path) -> Result<Db, DbError> {
    let db = Database::create(path)?;
    let tx = db.begin_write()?;
    tx.open_table(LOG)?;
    tx.open_table(META)?;
    tx.open_table(SM)?;
    tx.commit()?;
    Ok(Arc::new(db))
}

/// Run `f` inside one durable write transaction on the blocking pool.
pub async fn write<T, F>(db: &Db, f: F) -> Result<T, DbError>
where
    T: Send + 'static,
    F: FnOnce(&WriteTransaction) -> Result<T, DbError> + Send + 'static,
{
    let db = db.clone();
    let joined = tokio::task::spawn_blocking(move || {
        let tx = db.begin_write()?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    })
    .await;
    joined.unwrap_or_else(|e| Err(DbError::Join(e.to_string())))
}

/// Run `f` inside a read transaction on the blocking pool.
pub async fn read<T, F>(db: &Db, f: F) -> Result<T, DbError>
where
    T: Send + 'static,
    F: FnOnce(&ReadTransaction) -> Result<T, DbError> + Send + 'static,
{
    use redb::ReadableDatabase;
    let db = db.clone();
    let joined = tokio::task::spawn_blocking(move || {
        let tx = db.begin_read()?;
        f(&tx)
    })
    .await;
    joined.unwrap_or_else(|e| Err(DbError::Join(e.to_string())))
}

/// Read and decode `key` from a `&str -> bytes` table.
pub fn get_decoded<T, Tab>(table: &Tab, key: &str) -> Result<Option<T>, DbError>
where
    T: serde::de::DeserializeOwned,
    Tab: redb::ReadableTable<&'static str, &'static [u8]>,
{
    match table.get(key)? {
        Some(guard) => Ok(Some(crate::codec::decode(guard.value())?)),
        None => Ok(None),
    }
}

/// Encode `value` and store it under `key` in the `table` of write transaction `tx`.
pub fn put_encoded<T: serde::Serialize>(
    tx: &WriteTransaction,
    table: TableDefinition<&str, &[u8]>,
    key: &str,
    value: &T,
) -> Result<(), DbError> {
    let bytes = crate::codec::encode(value)?;
    let mut t = tx.open_table(table)?;
    t.insert(key, bytes.as_slice())?;
    Ok(())
}

//! The Raft state machine (`RaftStateMachine` + `RaftSnapshotBuilder`) around
//! `ClusterState`, persisted in the node's redb file.
//!
//! The applied state (`ClusterState` + last_applied + last_membership) is written in the
//! same fsynced transaction as each `apply` batch, so a restart resumes exactly where it
//! stopped. The current snapshot is stored too, so `get_current_snapshot` survives a
//! restart. Every apply / install publishes the new state on a watch channel.
//!
//! The stored snapshot never goes backwards: openraft runs the snapshot builder on a
//! copy of the state, concurrently with snapshot installation, so a build that started
//! before a newer snapshot was installed would otherwise overwrite it with an older one.
//! Every snapshot write compares last log ids inside its own (serialised) redb write
//! transaction and keeps the newer snapshot (`keep_newest_snapshot`).

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{
    EntryPayload, OptionalSend, RaftLogId, RaftSnapshotBuilder, SnapshotMeta as Meta,
    StorageIOError,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::codec;
use crate::db::{self, Db, DbError, SM};
use crate::state::ClusterState;
use crate::types::{
    Entry, LogId, Response, Snapshot, SnapshotData, SnapshotMeta, StorageError, StoredMembership,
    TypeConfig,
};
use redb::WriteTransaction;

const KEY_STATE: &str = "state";
const KEY_SNAPSHOT: &str = "snapshot";
const KEY_SNAPSHOT_SEQ: &str = "snapshot_seq";

/// Everything the state machine persists.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SmData {
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    state: ClusterState,
}

/// Decodes a state (or `SmData`, which ends with one) that may have been written before
/// `ClusterState::applied` (or `vip_assignment`, `live_nodes`, `drained_nodes`, `splits`,
/// `discovered`) existed: such bytes lack only those last collections, and an empty one is
/// one zero byte in bincode's standard config.
fn decode_state<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, codec::CodecError> {
    codec::decode(bytes).or_else(|e| {
        (1..=6)
            .find_map(|missing| {
                let mut older = bytes.to_vec();
                older.resize(bytes.len() + missing, 0);
                codec::decode(&older).ok()
            })
            .ok_or(e)
    })
}

/// A snapshot as stored in redb: its metadata plus the encoded `ClusterState`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

impl StoredSnapshot {
    fn into_snapshot(self) -> Snapshot {
        Snapshot {
            meta: self.meta,
            snapshot: Box::new(Cursor::new(self.data)),
        }
    }
}

/// The state machine. Owned by openraft once handed to `Raft::new`; observe it through
/// the watch receiver given at construction.
pub struct StateMachineStore {
    db: Db,
    data: SmData,
    state_tx: Arc<watch::Sender<Arc<ClusterState>>>,
}

impl StateMachineStore {
    /// Load the persisted state (or start empty) and publish it on a new watch channel.
    pub async fn open(db: Db) -> Result<(Self, watch::Receiver<Arc<ClusterState>>), DbError> {
        let data: Option<SmData> = db::read(&db, |tx| match tx.open_table(SM)?.get(KEY_STATE)? {
            Some(bytes) => Ok(Some(decode_state(bytes.value())?)),
            None => Ok(None),
        })
        .await?;
        let data = data.unwrap_or_default();
        let (tx, rx) = watch::channel(Arc::new(data.state.clone()));
        let sm = Self {
            db,
            data,
            state_tx: Arc::new(tx),
        };
        Ok((sm, rx))
    }

    /// The last applied log id as persisted (used at start-up).
    pub fn last_applied(&self) -> Option<LogId> {
        self.data.last_applied
    }

    async fn persist(&self, snapshot: Option<StoredSnapshot>) -> Result<(), DbError> {
        let data = self.data.clone();
        db::write(&self.db, move |tx| {
            db::put_encoded(tx, SM, KEY_STATE, &data)?;
            if let Some(s) = snapshot {
                keep_newest_snapshot(tx, s)?;
            }
            Ok(())
        })
        .await
    }

    fn publish(&self) {
        self.state_tx
            .send_replace(Arc::new(self.data.state.clone()));
    }

    fn apply_one(&mut self, entry: Entry) -> Response {
        let log_id = *entry.get_log_id();
        self.data.last_applied = Some(log_id);
        match entry.payload {
            EntryPayload::Blank => {}
            EntryPayload::Normal(cmd) => self.data.state.apply(&cmd),
            EntryPayload::Membership(m) => {
                self.data.last_membership = StoredMembership::new(Some(log_id), m);
            }
        }
        Response {
            config_version: self.data.state.config_version,
            log_index: log_id.index,
        }
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.data.last_applied, self.data.last_membership.clone()))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let responses: Vec<Response> = entries.into_iter().map(|e| self.apply_one(e)).collect();
        if responses.is_empty() {
            return Ok(responses);
        }
        self.persist(None)
            .await
            .map_err(|e| StorageIOError::write_state_machine(&e))?;
        self.publish();
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            db: self.db.clone(),
            data: self.data.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotData>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    #[tracing::instrument(level = "info", skip_all, fields(last = ?meta.last_log_id))]
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<SnapshotData>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let state: ClusterState = decode_state(&bytes)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        self.data = SmData {
            last_applied: meta.last_log_id,
            last_membership: meta.last_membership.clone(),
            state,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: bytes,
        };
        self.persist(Some(stored))
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        self.publish();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let stored: Option<StoredSnapshot> = db::read(&self.db, |tx| {
            db::get_decoded(&tx.open_table(SM)?, KEY_SNAPSHOT)
        })
        .await
        .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(stored.map(StoredSnapshot::into_snapshot))
    }
}

/// Stores `candidate` as the current snapshot unless the stored one is at least as new
/// (by last log id); returns the snapshot that is current afterwards.
fn keep_newest_snapshot(
    tx: &WriteTransaction,
    candidate: StoredSnapshot,
) -> Result<StoredSnapshot, DbError> {
    let current: Option<StoredSnapshot> = db::get_decoded(&tx.open_table(SM)?, KEY_SNAPSHOT)?;
    match current {
        Some(current) if current.meta.last_log_id >= candidate.meta.last_log_id => {
            tracing::info!(
                kept = ?current.meta.last_log_id,
                skipped = ?candidate.meta.last_log_id,
                "a newer snapshot is already stored; the older one is not written"
            );
            Ok(current)
        }
        _ => {
            db::put_encoded(tx, SM, KEY_SNAPSHOT, &candidate)?;
            Ok(candidate)
        }
    }
}

/// Builds a snapshot from a copy of the state taken when openraft asked for a builder.
pub struct SnapshotBuilder {
    db: Db,
    data: SmData,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    #[tracing::instrument(level = "info", skip_all, fields(last = ?self.data.last_applied))]
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let bytes = codec::encode(&self.data.state)
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        let last = self.data.last_applied;
        let membership = self.data.last_membership.clone();
        let stored = db::write(&self.db, move |tx| {
            // A per-store sequence keeps snapshot ids unique even for the same log id.
            let seq: Option<u64> = db::get_decoded(&tx.open_table(SM)?, KEY_SNAPSHOT_SEQ)?;
            let seq = seq.unwrap_or(0) + 1;
            db::put_encoded(tx, SM, KEY_SNAPSHOT_SEQ, &seq)?;
            let snapshot_id = match last {
                Some(l) => format!("{}-{}-{seq}", l.leader_id, l.index),
                None => format!("--{seq}"),
            };
            let built = StoredSnapshot {
                meta: Meta {
                    last_log_id: last,
                    last_membership: membership,
                    snapshot_id,
                },
                data: bytes,
            };
            // A snapshot installed while this one was being built may be newer: it stays,
            // and openraft is handed that one (its engine ignores metadata it already has).
            keep_newest_snapshot(tx, built)
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        Ok(stored.into_snapshot())
    }
}

#[cfg(test)]
mod tests {
    //! The builder/installer interleaving, forced by call order on one real redb file.
    use super::*;
    use crate::types::{Command, Entry};
    use openraft::{CommittedLeaderId, EntryPayload, LogId as RaftLogId};

    fn log_id(index: u64) -> LogId {
        RaftLogId::new(CommittedLeaderId::new(1, 1), index)
    }

    fn set_config(index: u64, toml: &str) -> Entry {
        Entry {
            log_id: log_id(index),
            payload: EntryPayload::Normal(Command::SetConfig { toml: toml.into() }),
        }
    }

    async fn open(dir: &tempfile::TempDir) -> StateMachineStore {
        let db = db::open(&dir.path().join("raft.redb")).unwrap();
        StateMachineStore::open(db).await.unwrap().0
    }

    /// A snapshot of a state whose last entry (index `index`) set config `toml`.
    fn snapshot_at(index: u64, toml: &str) -> (SnapshotMeta, Box<SnapshotData>) {
        let mut state = ClusterState::default();
        state.apply(&Command::SetConfig { toml: toml.into() });
        let meta = Meta {
            last_log_id: Some(log_id(index)),
            last_membership: StoredMembership::default(),
            snapshot_id: format!("leader-{index}"),
        };
        let data = codec::encode(&state).unwrap();
        (meta, Box::new(Cursor::new(data)))
    }

    fn config_of(snapshot: &Snapshot) -> String {
        let state: ClusterState = codec::decode(snapshot.snapshot.get_ref()).unwrap();
        state.config_toml
    }

    /// A state stored before `ClusterState::applied` existed still opens, with it empty.
    #[test]
    fn a_state_from_before_apply_reports_decodes() {
        use crate::types::NodeId;
        use std::collections::BTreeMap;
        #[derive(Serialize)]
        struct Before {
            last_applied: Option<LogId>,
            last_membership: StoredMembership,
            config_toml: String,
            config_version: u64,
            nodes: BTreeMap<NodeId, crate::types::PeerNode>,
            health: BTreeMap<String, BTreeMap<String, BTreeMap<NodeId, crate::state::Observation>>>,
            drained: BTreeMap<String, std::collections::BTreeSet<String>>,
            vip_holder: Option<NodeId>,
        }
        let before = Before {
            last_applied: Some(log_id(7)),
            last_membership: StoredMembership::default(),
            config_toml: "old".into(),
            config_version: 4,
            nodes: BTreeMap::new(),
            health: BTreeMap::new(),
            drained: BTreeMap::new(),
            vip_holder: Some(2),
        };
        let bytes = codec::encode(&before).unwrap();
        assert!(
            codec::decode::<SmData>(&bytes).is_err(),
            "the shape did change"
        );
        let data: SmData = decode_state(&bytes).unwrap();
        assert_eq!(data.last_applied, Some(log_id(7)));
        assert_eq!(data.state.config_toml, "old");
        assert_eq!(data.state.config_version, 4);
        assert_eq!(data.state.vip_holder, Some(2));
        assert!(data.state.applied.is_empty());
        assert!(data.state.live_nodes.is_empty() && data.state.drained_nodes.is_empty());
    }

    /// openraft asks for a builder at index 2, a snapshot up to index 9 is installed
    /// from the leader, then the builder finishes: the stored snapshot stays at 9.
    #[tokio::test]
    async fn a_slow_builder_does_not_overwrite_a_newer_installed_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = open(&dir).await;
        sm.apply(vec![set_config(1, "v1"), set_config(2, "v2")])
            .await
            .unwrap();
        let mut slow_builder = sm.get_snapshot_builder().await;

        let (meta, data) = snapshot_at(9, "from-leader");
        sm.install_snapshot(&meta, data).await.unwrap();
        let built = slow_builder.build_snapshot().await.unwrap();

        let current = sm
            .get_current_snapshot()
            .await
            .unwrap()
            .expect("a snapshot");
        assert_eq!(current.meta.last_log_id, Some(log_id(9)));
        assert_eq!(config_of(&current), "from-leader");
        assert_eq!(
            built.meta.last_log_id,
            Some(log_id(9)),
            "openraft is handed the snapshot that is really stored"
        );
        // The installed state is still what a restart resumes from.
        drop((sm, slow_builder));
        let reopened = open(&dir).await;
        assert_eq!(reopened.last_applied(), Some(log_id(9)));
    }

    /// The normal order still works: a build after newer entries replaces the snapshot.
    #[tokio::test]
    async fn a_newer_build_replaces_an_older_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = open(&dir).await;
        let (meta, data) = snapshot_at(3, "installed");
        sm.install_snapshot(&meta, data).await.unwrap();
        sm.apply(vec![set_config(4, "v4")]).await.unwrap();
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        let current = sm
            .get_current_snapshot()
            .await
            .unwrap()
            .expect("a snapshot");
        assert_eq!(current.meta.last_log_id, Some(log_id(4)));
        assert_eq!(config_of(&current), "v4");
    }
}

//! openraft's own storage conformance suite against the redb log store and state machine.

use fulcrum_raft::db;
use fulcrum_raft::log_store::LogStore;
use fulcrum_raft::state_machine::StateMachineStore;
use fulcrum_raft::types::{StorageError, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageIOError;
use tempfile::TempDir;

struct RedbBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for RedbBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(&e))?;
        let db = db::open(&dir.path().join("raft.redb")).map_err(|e| StorageIOError::write(&e))?;
        let (sm, _rx) = StateMachineStore::open(db.clone())
            .await
            .map_err(|e| StorageIOError::read(&e))?;
        Ok((dir, LogStore::new(db), sm))
    }
}

#[test]
fn openraft_storage_suite_passes() {
    if let Err(e) = Suite::test_all(RedbBuilder) {
        panic!("storage suite failed: {e}");
    }
}

mod snapshot {
    use super::*;
    use fulcrum_raft::types::{Command, Entry};
    use openraft::storage::RaftStateMachine;
    use openraft::{CommittedLeaderId, EntryPayload, LogId, RaftSnapshotBuilder};

    fn entry(index: u64, cmd: Command) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(cmd),
        }
    }

    /// Build a snapshot, reopen the file (restart), read it back, install it elsewhere:
    /// the follower ends with the same state and publishes it on its watch channel.
    #[tokio::test]
    async fn snapshot_survives_restart_and_installs_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.redb");
        {
            let db = db::open(&path).unwrap();
            let (mut sm, _rx) = StateMachineStore::open(db).await.unwrap();
            let cmds = vec![
                entry(1, Command::SetConfig { toml: "v1".into() }),
                entry(
                    2,
                    Command::SetDrain {
                        pool: "p".into(),
                        backend: "b".into(),
                        drained: true,
                    },
                ),
            ];
            let resp = sm.apply(cmds).await.unwrap();
            assert_eq!(resp[1].config_version, 1);
            sm.get_snapshot_builder()
                .await
                .build_snapshot()
                .await
                .unwrap();
        }
        // "Restart": a new Database over the same file.
        let db = db::open(&path).unwrap();
        let (mut sm, rx) = StateMachineStore::open(db).await.unwrap();
        assert_eq!(rx.borrow().config_version, 1, "applied state reloaded");
        let snap = sm
            .get_current_snapshot()
            .await
            .unwrap()
            .expect("snapshot kept");
        assert_eq!(snap.meta.last_log_id.map(|l| l.index), Some(2));

        let dir2 = tempfile::tempdir().unwrap();
        let db2 = db::open(&dir2.path().join("raft.redb")).unwrap();
        let (mut sm2, rx2) = StateMachineStore::open(db2).await.unwrap();
        sm2.install_snapshot(&snap.meta, snap.snapshot)
            .await
            .unwrap();
        let st = rx2.borrow().clone();
        assert_eq!(st.config_toml, "v1");
        assert!(st.is_drained("p", "b"));
        let (applied, _) = sm2.applied_state().await.unwrap();
        assert_eq!(applied.map(|l| l.index), Some(2));
    }
}

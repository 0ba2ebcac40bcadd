//! openraft's own storage test suite, run against the real log engine and state machine.

use openraft::testing::StoreBuilder;
use openraft::testing::Suite;
use raftchat_raft::state_machine::GroupStateMachine;
use raftchat_raft::state_machine::Listeners;
use raftchat_raft::types::TypeConfig;
use raftchat_storage::chat_store::StateDb;
use raftchat_storage::log_store::GroupLog;
use raftchat_storage::wal::LogEngine;

struct Builder;

impl StoreBuilder<TypeConfig, GroupLog<TypeConfig>, GroupStateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, GroupLog<TypeConfig>, GroupStateMachine), openraft::StorageError<u64>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = LogEngine::open(&dir.path().join("wal"), 1 << 20).expect("wal");
        let db =
            StateDb::open(&dir.path().join("state"), &dir.path().join("messages"), 1 << 20, 1 << 20).expect("state");
        let sm = GroupStateMachine::open(7, &db, &dir.path().join("snapshots"), Listeners::default()).expect("sm");
        Ok((dir, GroupLog::new(engine, 7), sm))
    }
}

#[test]
fn openraft_storage_suite() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("info").try_init();
    Suite::test_all(Builder).expect("openraft storage suite");
}

//! The control plane: openraft with a file-backed store and a QUIC network.

mod crc32;
pub(crate) mod error;
pub(crate) mod log_store;
pub(crate) mod network;
pub(crate) mod node;
pub(crate) mod state;
pub(crate) mod state_machine;
#[cfg(test)]
mod test_dir;
pub(crate) mod types;

#[cfg(test)]
mod suite {
    use openraft::StorageError;
    use openraft::testing::{StoreBuilder, Suite};

    use super::log_store::LogStore;
    use super::state_machine::StateMachineStore;
    use super::test_dir::TestDir;
    use super::types::TypeConfig;

    /// Fresh stores in a fresh directory per openraft test case; the
    /// directory goes with the guard.
    struct FileStores;

    impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TestDir> for FileStores {
        async fn build(&self) -> Result<(TestDir, LogStore, StateMachineStore), StorageError<u64>> {
            let dir = TestDir::new("suite");
            let log = LogStore::open(dir.path()).expect("open log");
            let sm = StateMachineStore::open(dir.path()).expect("open state machine");
            Ok((dir, log, sm))
        }
    }

    #[test]
    fn stores_pass_openraft_storage_suite() {
        Suite::test_all(FileStores).expect("openraft storage suite");
    }
}

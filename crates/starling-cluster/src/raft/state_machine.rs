//! [`StateMachineStore`]: the applied [`ClusterState`] in memory, its
//! snapshots on disk.
//!
//! The state is not written on every apply: on restart it is the last
//! snapshot (`raft/snapshot`, replaced atomically) plus the committed log
//! entries after it, which openraft applies again. A snapshot file is the
//! rmp-serde encoding of `{meta, data}`, `data` being the rmp-serde
//! encoding of the [`ClusterState`].

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, Entry, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::raft::error::StoreError;
use crate::raft::log_store::write_atomically;
use crate::raft::state::ClusterState;
use crate::raft::types::{ClusterResponse, NodeInfo, TypeConfig};

/// The snapshot file's name inside the Raft directory.
pub const SNAPSHOT_FILE: &str = "snapshot";

/// A snapshot as stored: its metadata and the encoded state.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<u64, NodeInfo>,
    data: Vec<u8>,
}

/// The state machine: applies entries to a [`ClusterState`], publishes each
/// new state on a watch channel, and keeps the current snapshot on disk.
#[derive(Debug)]
pub struct StateMachineStore {
    state: ClusterState,
    shared: Arc<Shared>,
    published: watch::Sender<Arc<ClusterState>>,
}

/// What the state machine and its snapshot builders share.
#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    current: Mutex<Option<StoredSnapshot>>,
}

impl Shared {
    fn current(&self) -> MutexGuard<'_, Option<StoredSnapshot>> {
        // Only whole values are stored under this lock, so a panic elsewhere
        // cannot leave it half-written.
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes `snapshot` current (on disk first) unless a newer one already
    /// is: a slow builder must not replace an installed, newer snapshot.
    fn store(&self, snapshot: StoredSnapshot) -> Result<(), StoreError> {
        let mut current = self.current();
        if let Some(existing) = current.as_ref()
            && existing.meta.last_log_id > snapshot.meta.last_log_id
        {
            return Ok(());
        }
        let bytes = rmp_serde::to_vec(&snapshot).map_err(|source| StoreError::Encode {
            what: "snapshot",
            source,
        })?;
        write_atomically(&self.dir, SNAPSHOT_FILE, &bytes)?;
        *current = Some(snapshot);
        Ok(())
    }
}

impl StateMachineStore {
    /// Opens the state machine in `dir`: the state of the last snapshot, or
    /// an empty state.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(crate::raft::log_store::io("create", dir))?;
        let path = dir.join(SNAPSHOT_FILE);
        let (state, current) = match std::fs::read(&path) {
            Ok(bytes) => {
                let snapshot: StoredSnapshot =
                    rmp_serde::from_slice(&bytes).map_err(|source| StoreError::Decode {
                        what: "snapshot",
                        path: path.clone(),
                        source,
                    })?;
                let state = decode_state(&snapshot, &path)?;
                (state, Some(snapshot))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (ClusterState::default(), None),
            Err(source) => {
                return Err(StoreError::Io {
                    op: "read",
                    path,
                    source,
                });
            }
        };
        let (published, _) = watch::channel(Arc::new(state.clone()));
        Ok(StateMachineStore {
            state,
            shared: Arc::new(Shared {
                dir: dir.to_path_buf(),
                current: Mutex::new(current),
            }),
            published,
        })
    }

    /// A receiver of every applied state, starting with the current one.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterState>> {
        self.published.subscribe()
    }

    /// The applied state.
    pub fn state(&self) -> &ClusterState {
        &self.state
    }

    fn publish(&self) {
        // `send_replace` stores the value even when nobody listens yet.
        self.published.send_replace(Arc::new(self.state.clone()));
    }
}

fn decode_state(snapshot: &StoredSnapshot, path: &Path) -> Result<ClusterState, StoreError> {
    let mut state: ClusterState =
        rmp_serde::from_slice(&snapshot.data).map_err(|source| StoreError::Decode {
            what: "cluster state",
            path: path.to_path_buf(),
            source,
        })?;
    // The metadata is what openraft reasons with; keep the state in step.
    state.last_applied = snapshot.meta.last_log_id;
    state.membership = snapshot.meta.last_membership.clone();
    Ok(state)
}

fn snapshot_error(e: StoreError) -> StorageError<u64> {
    StorageIOError::write_snapshot(None, AnyError::new(&e)).into()
}

/// Builds a snapshot of the state as it was when the builder was made.
#[derive(Debug)]
pub struct SnapshotBuilder {
    state: ClusterState,
    shared: Arc<Shared>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let data = rmp_serde::to_vec(&self.state).map_err(|source| {
            snapshot_error(StoreError::Encode {
                what: "cluster state",
                source,
            })
        })?;
        let snapshot_id = match self.state.last_applied {
            Some(log_id) => format!("{}-{}", log_id.leader_id, log_id.index),
            None => "empty".to_string(),
        };
        let meta = SnapshotMeta {
            last_log_id: self.state.last_applied,
            last_membership: self.state.membership.clone(),
            snapshot_id,
        };
        self.shared
            .store(StoredSnapshot {
                meta: meta.clone(),
                data: data.clone(),
            })
            .map_err(snapshot_error)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, NodeInfo>), StorageError<u64>> {
        Ok((self.state.last_applied, self.state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ClusterResponse>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let responses: Vec<_> = entries
            .into_iter()
            .map(|entry| self.state.apply(&entry))
            .collect();
        if !responses.is_empty() {
            self.publish();
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            state: self.state.clone(),
            shared: self.shared.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, NodeInfo>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: snapshot.into_inner(),
        };
        let path = self.shared.dir.join(SNAPSHOT_FILE);
        let state = decode_state(&stored, &path).map_err(|e| {
            StorageIOError::read_snapshot(Some(meta.signature()), AnyError::new(&e))
        })?;
        self.shared.store(stored).map_err(snapshot_error)?;
        self.state = state;
        self.publish();
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        Ok(self.shared.current().as_ref().map(|s| Snapshot {
            meta: s.meta.clone(),
            snapshot: Box::new(Cursor::new(s.data.clone())),
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::{CommittedLeaderId, EntryPayload, Membership};

    use super::*;
    use crate::raft::test_dir::TestDir;
    use crate::raft::types::ClusterCommand;

    fn log_id(index: u64) -> LogId<u64> {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    fn entries() -> Vec<Entry<TypeConfig>> {
        let nodes = BTreeMap::from([(1, NodeInfo::default())]);
        vec![
            Entry {
                log_id: log_id(1),
                payload: EntryPayload::Membership(Membership::new(
                    vec![BTreeSet::from([1])],
                    nodes,
                )),
            },
            Entry {
                log_id: log_id(2),
                payload: EntryPayload::Normal(ClusterCommand::SetSetting {
                    key: "a".into(),
                    value: "b".into(),
                }),
            },
        ]
    }

    #[tokio::test]
    async fn built_snapshot_is_the_state_after_reopen() {
        let dir = TestDir::new("sm-snapshot");
        let mut sm = StateMachineStore::open(dir.path()).expect("open");
        let mut watch = sm.subscribe();
        sm.apply(entries()).await.expect("apply");
        assert!(watch.has_changed().expect("watch"));
        assert_eq!(watch.borrow_and_update().settings["a"], "b");
        let snapshot = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("build");
        assert_eq!(snapshot.meta.last_log_id, Some(log_id(2)));
        let applied = sm.state().clone();
        drop(sm);

        let mut sm = StateMachineStore::open(dir.path()).expect("reopen");
        assert_eq!(sm.state(), &applied);
        let current = sm
            .get_current_snapshot()
            .await
            .expect("current")
            .expect("some");
        assert_eq!(current.meta, snapshot.meta);
    }

    #[tokio::test]
    async fn installed_snapshot_replaces_the_state() {
        let leader_dir = TestDir::new("sm-leader");
        let follower_dir = TestDir::new("sm-follower");
        let mut leader = StateMachineStore::open(leader_dir.path()).expect("open");
        leader.apply(entries()).await.expect("apply");
        let snapshot = leader
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("build");
        let mut follower = StateMachineStore::open(follower_dir.path()).expect("open");
        follower
            .install_snapshot(&snapshot.meta, snapshot.snapshot)
            .await
            .expect("install");
        assert_eq!(follower.state(), leader.state());
        drop(follower);
        let follower = StateMachineStore::open(follower_dir.path()).expect("reopen");
        assert_eq!(follower.state(), leader.state());
    }

    #[tokio::test]
    async fn garbage_snapshot_is_refused_and_state_kept() {
        let dir = TestDir::new("sm-garbage");
        let mut sm = StateMachineStore::open(dir.path()).expect("open");
        sm.apply(entries()).await.expect("apply");
        let before = sm.state().clone();
        let meta = SnapshotMeta {
            last_log_id: Some(log_id(9)),
            last_membership: StoredMembership::default(),
            snapshot_id: "x".into(),
        };
        let result = sm
            .install_snapshot(&meta, Box::new(Cursor::new(vec![0xc1, 0xc1])))
            .await;
        assert!(result.is_err());
        assert_eq!(sm.state(), &before);
    }
}

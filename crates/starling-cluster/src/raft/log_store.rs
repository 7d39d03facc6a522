//! [`LogStore`]: the Raft log and vote in the data directory.
//!
//! `raft/log` is an append-only file: an 8-byte header (`STRLOG1\n`), then
//! records, each
//!
//! ```text
//! +---------------------+----------------------+---------------------------+
//! | len: u32 big-endian | crc32(body): u32 BE  | body: rmp-serde LogRecord |
//! +---------------------+----------------------+---------------------------+
//! ```
//!
//! Replaying the records in order rebuilds the log: entries, truncations
//! ("delete from index i") and purges ("everything up to log id l is in a
//! snapshot"). Appends are fsynced before openraft is told they are
//! durable. A record cut short or failing its checksum ends the log: a crash
//! mid-append leaves exactly that, so reopening truncates the file there and
//! says so in the log. When dead records outnumber live ones the file is
//! rewritten (temp file, fsync, rename).
//!
//! `raft/vote` holds the vote alone, replaced atomically (temp file, fsync,
//! rename, fsync of the directory).
//!
//! The file work is synchronous: control-plane writes are few and small, and
//! openraft awaits each of them anyway.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, Entry, LogId, OptionalSend, StorageError, StorageIOError, Vote};
use serde::{Deserialize, Serialize};

use crate::raft::crc32::crc32;
use crate::raft::error::StoreError;
use crate::raft::types::TypeConfig;

/// Magic bytes at the start of the log file; the digit is the format.
const LOG_HEADER: &[u8; 8] = b"STRLOG1\n";

/// Bytes in front of each record body: length and checksum.
const RECORD_HEADER: usize = 8;

/// The largest record accepted (64 MiB): a length beyond it is corruption,
/// not a record.
const MAX_RECORD: usize = 64 * 1024 * 1024;

/// The log is rewritten when it holds more than this many records beyond
/// twice its live entries.
const COMPACT_SLACK: u64 = 1024;

/// The log file's name inside the Raft directory.
pub const LOG_FILE: &str = "log";
/// The vote file's name inside the Raft directory.
pub const VOTE_FILE: &str = "vote";

/// One record of the log file.
#[derive(Debug, Serialize, Deserialize)]
enum LogRecord {
    /// An appended entry (replaces any entry at its index).
    Entry(Entry<TypeConfig>),
    /// Entries at `since` and after are deleted.
    Truncate { since: u64 },
    /// Entries up to `upto` are deleted; they live on in a snapshot.
    Purge { upto: LogId<u64> },
    /// The last known committed log id (a hint; not fsynced on its own).
    Committed { log_id: Option<LogId<u64>> },
}

/// The Raft log and vote, persisted in a directory. Cloning shares the same
/// store (openraft reads through a clone while it appends).
#[derive(Debug, Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    file: File,
    entries: BTreeMap<u64, Entry<TypeConfig>>,
    purged: Option<LogId<u64>>,
    committed: Option<LogId<u64>>,
    vote: Option<Vote<u64>>,
    /// Records in the file, for deciding when to rewrite it.
    records: u64,
}

impl LogStore {
    /// Opens (or creates) the log and vote in `dir`, replaying the log and
    /// cutting off a torn tail.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        let log_path = dir.join(LOG_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&log_path)
            .map_err(io("open", &log_path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(io("read", &log_path))?;
        let mut inner = Inner {
            dir: dir.to_path_buf(),
            file,
            entries: BTreeMap::new(),
            purged: None,
            committed: None,
            vote: read_vote(dir)?,
            records: 0,
        };
        if bytes.is_empty() {
            inner.write_all(LOG_HEADER, "write header to")?;
            inner.sync()?;
        } else if bytes.len() < LOG_HEADER.len() || &bytes[..LOG_HEADER.len()] != LOG_HEADER {
            return Err(StoreError::BadHeader { path: log_path });
        } else {
            let good = inner.replay(&bytes[LOG_HEADER.len()..])? + LOG_HEADER.len();
            if good < bytes.len() {
                tracing::warn!(
                    path = %log_path.display(),
                    kept = good,
                    dropped = bytes.len() - good,
                    "raft log ends in a torn or corrupt record; truncating it there"
                );
                inner
                    .file
                    .set_len(good as u64)
                    .map_err(io("truncate", &log_path))?;
                inner.sync()?;
            }
        }
        Ok(LogStore {
            inner: Arc::new(Mutex::new(inner)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the in-memory log as it was
        // before the failed call (every change is written to the file
        // first), so the data is still usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Entries in `range`, in order.
    pub fn entries<R: RangeBounds<u64>>(&self, range: R) -> Vec<Entry<TypeConfig>> {
        self.lock()
            .entries
            .range(range)
            .map(|(_, e)| e.clone())
            .collect()
    }

    /// The last purged log id and the last log id.
    pub fn log_state(&self) -> LogState<TypeConfig> {
        let inner = self.lock();
        let last = inner
            .entries
            .last_key_value()
            .map(|(_, e)| e.log_id)
            .or(inner.purged);
        LogState {
            last_purged_log_id: inner.purged,
            last_log_id: last,
        }
    }

    /// Appends entries durably (fsync) and keeps them in memory.
    pub fn append_entries(
        &self,
        entries: impl IntoIterator<Item = Entry<TypeConfig>>,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let entries: Vec<_> = entries.into_iter().collect();
        let mut buf = Vec::new();
        for entry in &entries {
            encode_record(&LogRecord::Entry(entry.clone()), &mut buf)?;
        }
        inner.write_all(&buf, "append to")?;
        inner.sync()?;
        inner.records += entries.len() as u64;
        for entry in entries {
            inner.entries.insert(entry.log_id.index, entry);
        }
        Ok(())
    }

    /// Deletes the entries at `since` and after.
    pub fn truncate_since(&self, since: u64) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.append_record(&LogRecord::Truncate { since })?;
        inner.entries.split_off(&since);
        inner.maybe_compact()
    }

    /// Deletes the entries up to `upto`, which a snapshot now covers.
    pub fn purge_upto(&self, upto: LogId<u64>) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.append_record(&LogRecord::Purge { upto })?;
        inner.apply_purge(upto);
        inner.maybe_compact()
    }

    /// Saves the vote atomically.
    pub fn write_vote(&self, vote: &Vote<u64>) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let bytes = rmp_serde::to_vec(vote).map_err(|source| StoreError::Encode {
            what: "vote",
            source,
        })?;
        write_atomically(&inner.dir, VOTE_FILE, &bytes)?;
        inner.vote = Some(*vote);
        Ok(())
    }

    /// The saved vote.
    pub fn vote(&self) -> Option<Vote<u64>> {
        self.lock().vote
    }

    /// Records the committed log id (not fsynced: the next append is).
    pub fn write_committed(&self, log_id: Option<LogId<u64>>) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.committed == log_id {
            return Ok(());
        }
        let mut buf = Vec::new();
        encode_record(&LogRecord::Committed { log_id }, &mut buf)?;
        inner.write_all(&buf, "append to")?;
        inner.records += 1;
        inner.committed = log_id;
        Ok(())
    }

    /// The last recorded committed log id.
    pub fn committed(&self) -> Option<LogId<u64>> {
        self.lock().committed
    }
}

impl Inner {
    fn log_path(&self) -> PathBuf {
        self.dir.join(LOG_FILE)
    }

    /// Applies the records in `bytes`; returns how many bytes held whole,
    /// valid records.
    fn replay(&mut self, bytes: &[u8]) -> Result<usize, StoreError> {
        let mut at = 0;
        while let Some((record, used)) = decode_record(&bytes[at..]) {
            match record {
                LogRecord::Entry(entry) => {
                    self.entries.insert(entry.log_id.index, entry);
                }
                LogRecord::Truncate { since } => {
                    self.entries.split_off(&since);
                }
                LogRecord::Purge { upto } => self.apply_purge(upto),
                LogRecord::Committed { log_id } => self.committed = log_id,
            }
            self.records += 1;
            at += used;
        }
        Ok(at)
    }

    fn apply_purge(&mut self, upto: LogId<u64>) {
        if self.purged.is_some_and(|p| p.index >= upto.index) {
            return;
        }
        self.purged = Some(upto);
        self.entries = self.entries.split_off(&(upto.index + 1));
    }

    fn append_record(&mut self, record: &LogRecord) -> Result<(), StoreError> {
        let mut buf = Vec::new();
        encode_record(record, &mut buf)?;
        self.write_all(&buf, "append to")?;
        self.sync()?;
        self.records += 1;
        Ok(())
    }

    fn write_all(&mut self, bytes: &[u8], op: &'static str) -> Result<(), StoreError> {
        let path = self.log_path();
        self.file.write_all(bytes).map_err(io(op, &path))
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        let path = self.log_path();
        self.file.sync_data().map_err(io("fsync", &path))
    }

    /// Rewrites the file with only the live state once dead records
    /// dominate.
    fn maybe_compact(&mut self) -> Result<(), StoreError> {
        if self.records <= 2 * self.entries.len() as u64 + COMPACT_SLACK {
            return Ok(());
        }
        let mut buf = LOG_HEADER.to_vec();
        let mut records = 0;
        if let Some(upto) = self.purged {
            encode_record(&LogRecord::Purge { upto }, &mut buf)?;
            records += 1;
        }
        if self.committed.is_some() {
            encode_record(
                &LogRecord::Committed {
                    log_id: self.committed,
                },
                &mut buf,
            )?;
            records += 1;
        }
        for entry in self.entries.values() {
            encode_record(&LogRecord::Entry(entry.clone()), &mut buf)?;
            records += 1;
        }
        write_atomically(&self.dir, LOG_FILE, &buf)?;
        let path = self.log_path();
        self.file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io("reopen", &path))?;
        self.records = records;
        tracing::debug!(records, "raft log rewritten");
        Ok(())
    }
}

fn encode_record(record: &LogRecord, out: &mut Vec<u8>) -> Result<(), StoreError> {
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER]);
    rmp_serde::encode::write(out, record).map_err(|source| StoreError::Encode {
        what: "log record",
        source,
    })?;
    let len = out.len() - start - RECORD_HEADER;
    let Some(len32) = u32::try_from(len).ok().filter(|_| len <= MAX_RECORD) else {
        out.truncate(start);
        return Err(StoreError::RecordTooLarge {
            len,
            max: MAX_RECORD,
        });
    };
    let crc = crc32(&out[start + RECORD_HEADER..]);
    out[start..start + 4].copy_from_slice(&len32.to_be_bytes());
    out[start + 4..start + RECORD_HEADER].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// The first record in `bytes` and its size, or `None` when `bytes` does
/// not start with a whole, valid record (the end of the log).
fn decode_record(bytes: &[u8]) -> Option<(LogRecord, usize)> {
    let (header, rest) = bytes.split_first_chunk::<RECORD_HEADER>()?;
    let (len, crc) = header.split_at(4);
    let len = u32::from_be_bytes(len.try_into().ok()?) as usize;
    let crc = u32::from_be_bytes(crc.try_into().ok()?);
    if len > MAX_RECORD {
        return None;
    }
    let body = rest.get(..len)?;
    if crc32(body) != crc {
        return None;
    }
    let record = rmp_serde::from_slice(body).ok()?;
    Some((record, RECORD_HEADER + len))
}

fn read_vote(dir: &Path) -> Result<Option<Vote<u64>>, StoreError> {
    let path = dir.join(VOTE_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => rmp_serde::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StoreError::Decode {
                what: "vote",
                path,
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StoreError::Io {
            op: "read",
            path,
            source,
        }),
    }
}

/// Replaces `dir/name` with `bytes`: temp file, fsync, rename, fsync of the
/// directory, so a crash leaves the old file or the new one, never a mix.
pub(crate) fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut file = File::create(&tmp).map_err(io("create", &tmp))?;
    file.write_all(bytes).map_err(io("write", &tmp))?;
    file.sync_all().map_err(io("fsync", &tmp))?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(io("rename", &tmp))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync", dir))
}

pub(crate) fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { op, path, source }
}

fn write_error(e: StoreError) -> StorageError<u64> {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<u64>> {
        let start = range.start_bound().cloned();
        let end = range.end_bound().cloned();
        Ok(self.entries((start, end)))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<u64>> {
        Ok(self.log_state())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        self.write_vote(vote)
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        Ok(self.vote())
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<u64>>,
    ) -> Result<(), StorageError<u64>> {
        self.write_committed(committed).map_err(write_error)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        Ok(self.committed())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.append_entries(entries).map_err(write_error)?;
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.truncate_since(log_id.index).map_err(write_error)
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.purge_upto(log_id).map_err(write_error)
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::raft::test_dir::TestDir;
    use crate::raft::types::ClusterCommand;

    fn entry(term: u64, index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(ClusterCommand::SetSetting {
                key: format!("k{index}"),
                value: "v".repeat(index as usize % 7),
            }),
        }
    }

    fn indexes(store: &LogStore) -> Vec<u64> {
        store.entries(..).iter().map(|e| e.log_id.index).collect()
    }

    #[test]
    fn appended_entries_survive_reopen() {
        let dir = TestDir::new("append-reopen");
        let store = LogStore::open(dir.path()).expect("open");
        store
            .append_entries((1..=5).map(|i| entry(1, i)))
            .expect("append");
        drop(store);
        let store = LogStore::open(dir.path()).expect("reopen");
        assert_eq!(indexes(&store), vec![1, 2, 3, 4, 5]);
        assert_eq!(store.entries(2..4), vec![entry(1, 2), entry(1, 3)]);
        let state = store.log_state();
        assert_eq!(state.last_log_id.map(|l| l.index), Some(5));
        assert_eq!(state.last_purged_log_id, None);
    }

    #[test]
    fn truncation_survives_reopen_and_later_appends_win() {
        let dir = TestDir::new("truncate");
        let store = LogStore::open(dir.path()).expect("open");
        store
            .append_entries((1..=5).map(|i| entry(1, i)))
            .expect("append");
        store.truncate_since(3).expect("truncate");
        store.append_entries([entry(2, 3)]).expect("append");
        drop(store);
        let store = LogStore::open(dir.path()).expect("reopen");
        assert_eq!(indexes(&store), vec![1, 2, 3]);
        assert_eq!(store.entries(3..), vec![entry(2, 3)]);
    }

    #[test]
    fn purge_survives_reopen_and_keeps_the_last_purged_id() {
        let dir = TestDir::new("purge");
        let store = LogStore::open(dir.path()).expect("open");
        store
            .append_entries((1..=5).map(|i| entry(1, i)))
            .expect("append");
        let upto = entry(1, 3).log_id;
        store.purge_upto(upto).expect("purge");
        drop(store);
        let store = LogStore::open(dir.path()).expect("reopen");
        assert_eq!(indexes(&store), vec![4, 5]);
        assert_eq!(store.log_state().last_purged_log_id, Some(upto));
        store.purge_upto(entry(1, 5).log_id).expect("purge all");
        let state = store.log_state();
        assert_eq!(state.last_log_id, Some(entry(1, 5).log_id));
        assert!(store.entries(..).is_empty());
    }

    #[test]
    fn torn_last_record_is_cut_off_on_open() {
        let dir = TestDir::new("torn");
        let store = LogStore::open(dir.path()).expect("open");
        store
            .append_entries((1..=3).map(|i| entry(1, i)))
            .expect("append");
        drop(store);
        let path = dir.path().join(LOG_FILE);
        let len = std::fs::metadata(&path).expect("meta").len();
        let file = OpenOptions::new().write(true).open(&path).expect("open");
        file.set_len(len - 3).expect("tear");
        drop(file);
        let store = LogStore::open(dir.path()).expect("reopen");
        assert_eq!(indexes(&store), vec![1, 2]);
        // The file was cut back to whole records: a new append lands cleanly.
        store.append_entries([entry(1, 3)]).expect("append");
        drop(store);
        let store = LogStore::open(dir.path()).expect("reopen again");
        assert_eq!(indexes(&store), vec![1, 2, 3]);
    }

    #[test]
    fn corrupt_checksum_ends_the_log_there() {
        let dir = TestDir::new("crc");
        let store = LogStore::open(dir.path()).expect("open");
        store
            .append_entries((1..=3).map(|i| entry(1, i)))
            .expect("append");
        drop(store);
        let path = dir.path().join(LOG_FILE);
        let mut bytes = std::fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).expect("write");
        let store = LogStore::open(dir.path()).expect("reopen");
        assert_eq!(indexes(&store), vec![1, 2]);
    }

    #[test]
    fn foreign_file_is_refused() {
        let dir = TestDir::new("header");
        std::fs::create_dir_all(dir.path()).expect("mkdir");
        std::fs::write(dir.path().join(LOG_FILE), b"not a raft log at all").expect("write");
        assert!(matches!(
            LogStore::open(dir.path()),
            Err(StoreError::BadHeader { .. })
        ));
    }

    #[test]
    fn vote_and_committed_survive_reopen() {
        let dir = TestDir::new("vote");
        let store = LogStore::open(dir.path()).expect("open");
        assert_eq!(store.vote(), None);
        let vote = Vote::new(3, 2);
        store.write_vote(&vote).expect("vote");
        store
            .append_entries((1..=2).map(|i| entry(1, i)))
            .expect("append");
        store
            .write_committed(Some(entry(1, 2).log_id))
            .expect("committed");
        store.append_entries([entry(1, 3)]).expect("append");
        drop(store);
        let store = LogStore::open(dir.path()).expect("reopen");
        assert_eq!(store.vote(), Some(vote));
        assert_eq!(store.committed(), Some(entry(1, 2).log_id));
        assert!(!dir.path().join("vote.tmp").exists());
    }

    #[test]
    fn many_purges_rewrite_the_file_and_keep_the_log() {
        let dir = TestDir::new("compact");
        let store = LogStore::open(dir.path()).expect("open");
        for batch in 0..300 {
            store
                .append_entries((1..=10).map(|i| entry(1, batch * 10 + i)))
                .expect("append");
        }
        let before = std::fs::metadata(dir.path().join(LOG_FILE))
            .expect("meta")
            .len();
        store.purge_upto(entry(1, 2990).log_id).expect("purge");
        let after = std::fs::metadata(dir.path().join(LOG_FILE))
            .expect("meta")
            .len();
        assert!(after < before / 10, "{after} vs {before}");
        drop(store);
        let store = LogStore::open(dir.path()).expect("reopen");
        assert_eq!(indexes(&store), (2991..=3000).collect::<Vec<_>>());
        assert_eq!(
            store.log_state().last_purged_log_id,
            Some(entry(1, 2990).log_id)
        );
    }
}

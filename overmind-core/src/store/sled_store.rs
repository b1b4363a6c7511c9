//! The embedded store: sled on local disk.
//!
//! Writes are made durable by **group commit**: a save applies its change in memory, then
//! waits for the next flush; one flusher thread runs flushes back to back, so however many
//! actors save at once, each flush covers all of them. (One flusher is also required by
//! sled 0.34.7: concurrent `flush_async` calls deadlock in that release. Its `flush` also
//! needs an epoch guard held around it; see `flush_pinned`.)
//!
//! Each key is [`ActorKey::storage_key`] (the kind, a NUL, the id), so a kind's entries are
//! one range of the tree, in byte order of the id; the tree holds nothing else (epoch floors
//! have their own). Each value is the entry's version (8 bytes, big endian) followed by the
//! caller's bytes.
//! Versions come from sled's `generate_id`, which is monotonic across restarts, so a version
//! is never reused, not even after a delete.

use std::{
    ops::Bound,
    path::{Path, PathBuf},
    sync::Arc,
    thread,
};

use parking_lot::{Condvar, Mutex, RwLock};
use tokio::sync::oneshot;

use super::{BoxFuture, StateStore, StoreError, Stored, Version};
use crate::ActorKey;

const NAME: &str = "sled";
const TREE: &str = "overmind.states";
/// Cluster name → epoch floor (8 bytes, big endian).
const EPOCHS: &str = "overmind.epochs";

/// A [`StateStore`] in a sled database directory. One process may open a directory at a time;
/// [`StateStore::close`] releases it.
pub struct SledStore {
    path: PathBuf,
    open: RwLock<Option<Open>>,
}

struct Open {
    db: sled::Db,
    tree: sled::Tree,
    epochs: sled::Tree,
    flusher: Flusher,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SledStore {
    /// Opens (creating if needed) the database in `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = dir.as_ref().to_path_buf();
        let open_err = |reason: String| StoreError::Open {
            store: NAME,
            location: path.display().to_string(),
            reason,
        };
        let db = open_db(&path).map_err(|e| open_err(describe_open_error(&e)))?;
        let tree = db.open_tree(TREE).map_err(|e| open_err(e.to_string()))?;
        let epochs = db.open_tree(EPOCHS).map_err(|e| open_err(e.to_string()))?;
        let flusher = Flusher::start(db.clone()).map_err(|e| open_err(e.to_string()))?;
        Ok(Self {
            path,
            open: RwLock::new(Some(Open {
                db,
                tree,
                epochs,
                flusher,
            })),
        })
    }

    /// Runs `f` on the open database, or fails if the store was closed.
    fn with_open<T>(
        &self,
        f: impl FnOnce(&Open) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match &*self.open.read() {
            Some(open) => f(open),
            None => Err(StoreError::Closed { store: NAME }),
        }
    }

    /// The directory this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn split(key: &ActorKey, value: &[u8]) -> Result<(Version, Vec<u8>), StoreError> {
        if value.len() < 8 {
            return Err(StoreError::Corrupt {
                store: NAME,
                key: key.clone(),
                reason: format!("entry of {} bytes has no version header", value.len()),
            });
        }
        let (version, bytes) = value.split_at(8);
        let mut v = [0; 8];
        v.copy_from_slice(version);
        Ok((Version(u64::from_be_bytes(v)), bytes.to_vec()))
    }

    /// Reads a stored epoch floor; anything but 8 bytes is damage, reported rather than
    /// taken for 0 (which would let epochs be reused).
    fn floor_of(cluster: &str, value: Option<&[u8]>) -> Result<u64, StoreError> {
        match value {
            None => Ok(0),
            Some(bytes) => <[u8; 8]>::try_from(bytes)
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Backend {
                    store: NAME,
                    reason: format!(
                        "the epoch floor of cluster {cluster:?} is damaged ({} bytes, not 8)",
                        bytes.len()
                    ),
                    source: None,
                }),
        }
    }

    /// The ids of `kind` after `after`, at most `limit`: a range scan of the keys from
    /// `kind NUL after` (exclusive) to `kind 0x01` (exclusive), which holds exactly the keys
    /// `kind NUL …`. Kinds contain no NUL, so a longer kind ("ab" beside "a") sorts after
    /// `a 0x01` and is never reached.
    fn list_in(
        tree: &sled::Tree,
        kind: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let bound = |separator: u8, id: &str| {
            let mut key = Vec::with_capacity(kind.len() + 1 + id.len());
            key.extend_from_slice(kind.as_bytes());
            key.push(separator);
            key.extend_from_slice(id.as_bytes());
            key
        };
        let start = match after {
            Some(after) => Bound::Excluded(bound(0, after)),
            None => Bound::Included(bound(0, "")),
        };
        let end = Bound::Excluded(bound(1, ""));
        let mut ids = Vec::new();
        for found in tree.range::<Vec<u8>, _>((start, end)) {
            let (key, _) = found.map_err(|e| StoreError::backend(NAME, e))?;
            // Every key in the range starts with `kind NUL`.
            let id = &key[kind.len() + 1..];
            let id = std::str::from_utf8(id).map_err(|_| StoreError::Backend {
                store: NAME,
                reason: format!(
                    "a key of kind {kind:?} has an id that is not UTF-8: {:?}",
                    String::from_utf8_lossy(id)
                ),
                source: None,
            })?;
            ids.push(id.to_owned());
            if ids.len() == limit {
                break;
            }
        }
        Ok(ids)
    }

    fn current_version(key: &ActorKey, value: Option<&sled::IVec>) -> Result<Version, StoreError> {
        match value {
            None => Ok(Version::ABSENT),
            Some(v) => Self::split(key, v).map(|(version, _)| version),
        }
    }
}

impl Open {
    /// Applies a conditional change in memory (not yet durable).
    fn apply(
        &self,
        key: &ActorKey,
        expected: Version,
        bytes: Option<&[u8]>,
    ) -> Result<Version, StoreError> {
        let storage_key = key.storage_key();
        loop {
            let current = self
                .tree
                .get(&storage_key)
                .map_err(|e| StoreError::backend(NAME, e))?;
            let actual = SledStore::current_version(key, current.as_ref())?;
            if actual != expected {
                return Err(StoreError::Conflict {
                    key: key.clone(),
                    expected,
                    actual,
                });
            }
            let (version, new) = match bytes {
                Some(bytes) => {
                    // generate_id starts at 0; shift by one so no entry ever has version 0 (ABSENT).
                    let id = self
                        .db
                        .generate_id()
                        .map_err(|e| StoreError::backend(NAME, e))?;
                    let version = Version(id + 1);
                    let mut value = Vec::with_capacity(8 + bytes.len());
                    value.extend_from_slice(&version.0.to_be_bytes());
                    value.extend_from_slice(bytes);
                    (version, Some(value))
                }
                None => (Version::ABSENT, None),
            };
            match self
                .tree
                .compare_and_swap(&storage_key, current, new)
                .map_err(|e| StoreError::backend(NAME, e))?
            {
                Ok(()) => return Ok(version),
                // Someone changed the entry between our read and our swap: read again, which
                // reports the conflict (or retries if it was a no-op change).
                Err(_) => continue,
            }
        }
    }
}

/// How long `open` waits for a directory lock held by a store this process just closed: sled
/// releases its files through deferred (epoch-based) reclamation, a moment after the drop.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

fn is_lock_error(e: &sled::Error) -> bool {
    e.to_string().contains("could not acquire lock")
}

fn open_db(path: &Path) -> sled::Result<sled::Db> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    let mut pause = std::time::Duration::from_millis(1);
    loop {
        match sled::Config::new().path(path).open() {
            Err(e) if is_lock_error(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(50));
            }
            result => return result,
        }
    }
}

fn describe_open_error(e: &sled::Error) -> String {
    let text = e.to_string();
    if is_lock_error(e) {
        format!("the directory is in use by another process or another store instance ({text})")
    } else {
        text
    }
}

impl StateStore for SledStore {
    fn name(&self) -> &'static str {
        NAME
    }

    fn load<'a>(&'a self, key: &'a ActorKey) -> BoxFuture<'a, Result<Option<Stored>, StoreError>> {
        let result = self.with_open(|open| {
            let found = open
                .tree
                .get(key.storage_key())
                .map_err(|e| StoreError::backend(NAME, e))?;
            found
                .map(|value| {
                    Self::split(key, &value).map(|(version, bytes)| Stored { version, bytes })
                })
                .transpose()
        });
        Box::pin(async move { result })
    }

    fn save<'a>(
        &'a self,
        key: &'a ActorKey,
        expected: Version,
        bytes: &'a [u8],
    ) -> BoxFuture<'a, Result<Version, StoreError>> {
        let applied = self.with_open(|open| {
            let version = open.apply(key, expected, Some(bytes))?;
            Ok((version, open.flusher.durable()))
        });
        Box::pin(async move {
            let (version, durable) = applied?;
            durable.await?;
            Ok(version)
        })
    }

    fn delete<'a>(
        &'a self,
        key: &'a ActorKey,
        expected: Version,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let applied = self.with_open(|open| {
            open.apply(key, expected, None)?;
            Ok(open.flusher.durable())
        });
        Box::pin(async move { applied?.await })
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        let durable = self.with_open(|open| Ok(open.flusher.durable()));
        Box::pin(async move { durable?.await })
    }

    fn epoch_floor<'a>(&'a self, cluster: &'a str) -> BoxFuture<'a, Result<u64, StoreError>> {
        let result = self.with_open(|open| {
            let found = open
                .epochs
                .get(cluster.as_bytes())
                .map_err(|e| StoreError::backend(NAME, e))?;
            Self::floor_of(cluster, found.as_deref())
        });
        Box::pin(async move { result })
    }

    fn raise_epoch_floor<'a>(
        &'a self,
        cluster: &'a str,
        epoch: u64,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        let applied = self.with_open(|open| {
            loop {
                let current = open
                    .epochs
                    .get(cluster.as_bytes())
                    .map_err(|e| StoreError::backend(NAME, e))?;
                let floor = Self::floor_of(cluster, current.as_deref())?;
                if floor >= epoch {
                    // Already there; it may not be flushed yet if its raise is in flight, so
                    // wait for a flush all the same.
                    return Ok((floor, open.flusher.durable()));
                }
                let swapped = open
                    .epochs
                    .compare_and_swap(cluster.as_bytes(), current, Some(&epoch.to_be_bytes()[..]))
                    .map_err(|e| StoreError::backend(NAME, e))?;
                if swapped.is_ok() {
                    return Ok((epoch, open.flusher.durable()));
                }
            }
        });
        Box::pin(async move {
            let (floor, durable) = applied?;
            durable.await?;
            Ok(floor)
        })
    }

    fn list<'a>(
        &'a self,
        kind: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        let result = self.with_open(|open| Self::list_in(&open.tree, kind, after, limit));
        Box::pin(async move { result })
    }

    fn close(&self) {
        // Dropped outside the lock: the flusher finishes its batch and the file lock is released.
        let open = self.open.write().take();
        if let Some(open) = &open {
            // Dropping the last handle flushes without a guard (see `flush_pinned`); leave it
            // nothing to write.
            if let Err(error) = flush_pinned(&open.db) {
                tracing::warn!(%error, "the last flush before closing the sled store failed");
            }
        }
        drop(open);
    }
}

type FlushResult = Result<(), StoreError>;

/// Flushes while holding an epoch guard of sled's memory reclamation.
///
/// sled 0.34.7's `flush` reads the current I/O buffer's pointer and only then takes a
/// reference to it, without a guard (`IoBufs::current_iobuf`, called by `make_stable_inner`).
/// A writer that seals that buffer in between schedules it to be freed, and without a guard
/// nothing holds the free back: a use-after-free, seen as a rare SIGSEGV or heap corruption
/// under many writers (reproduced with the window widened: 3 of 3 runs of this store's access
/// pattern corrupted the heap unguarded, 0 of 3 guarded). The guard only delays frees, so it
/// cannot deadlock; sled itself flushes under one in `generate_id`.
fn flush_pinned(db: &sled::Db) -> FlushResult {
    let _guard = sled::pin();
    db.flush()
        .map(drop)
        .map_err(|e| StoreError::backend(NAME, e))
}

/// The group-commit flusher: one thread, flushes back to back while anyone waits.
struct Flusher {
    shared: Arc<FlusherShared>,
    thread: Option<thread::JoinHandle<()>>,
}

struct FlusherShared {
    state: Mutex<FlusherState>,
    wake: Condvar,
}

#[derive(Default)]
struct FlusherState {
    waiting: Vec<oneshot::Sender<FlushResult>>,
    closed: bool,
}

impl Flusher {
    fn start(db: sled::Db) -> std::io::Result<Self> {
        let shared = Arc::new(FlusherShared {
            state: Mutex::new(FlusherState::default()),
            wake: Condvar::new(),
        });
        let thread_shared = shared.clone();
        let thread = thread::Builder::new()
            .name("overmind-sled-flush".into())
            .spawn(move || Self::run(&thread_shared, &db))?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    fn run(shared: &FlusherShared, db: &sled::Db) {
        loop {
            let batch = {
                let mut state = shared.state.lock();
                while state.waiting.is_empty() && !state.closed {
                    shared.wake.wait(&mut state);
                }
                if state.waiting.is_empty() {
                    return;
                }
                std::mem::take(&mut state.waiting)
            };
            // Every waiter in the batch registered after its write was applied, and this flush
            // starts after they registered, so it covers all of their writes.
            let result = flush_pinned(db);
            for waiter in batch {
                let _ = waiter.send(result.clone());
            }
        }
    }

    /// Resolves once a flush that started after this call completes.
    fn durable(&self) -> impl std::future::Future<Output = FlushResult> + Send + use<> {
        let (tx, rx) = oneshot::channel();
        let registered = {
            let mut state = self.shared.state.lock();
            if state.closed {
                false
            } else {
                state.waiting.push(tx);
                true
            }
        };
        if registered {
            self.shared.wake.notify_one();
        }
        async move {
            if !registered {
                return Err(StoreError::Closed { store: NAME });
            }
            rx.await.unwrap_or(Err(StoreError::Closed { store: NAME }))
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.shared.state.lock().closed = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            // The thread finishes the batch it holds, then exits.
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_locked_directory_is_a_clear_error_until_closed() {
        let dir = tempfile::tempdir().unwrap();
        let first = SledStore::open(dir.path()).unwrap();
        let key = ActorKey::new("k", "x").unwrap();
        first.save(&key, Version::ABSENT, b"v").await.unwrap();
        let err = SledStore::open(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("in use by another process"),
            "{err}"
        );
        first.close();
        assert!(matches!(
            first.load(&key).await,
            Err(StoreError::Closed { .. })
        ));
        let second = SledStore::open(dir.path()).unwrap();
        assert_eq!(second.load(&key).await.unwrap().unwrap().bytes, b"v");
    }

    #[tokio::test]
    async fn a_short_entry_is_reported_corrupt_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let key = ActorKey::new("k", "x").unwrap();
        store
            .with_open(|open| Ok(open.tree.insert(key.storage_key(), &b"abc"[..])))
            .unwrap()
            .unwrap();
        let err = store.load(&key).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    }
}

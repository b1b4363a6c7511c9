//! The in-memory reference store: the contract with nothing in the way. For tests and for
//! actors whose state may vanish with the process.

use std::collections::HashMap;

use parking_lot::Mutex;

use super::{BoxFuture, StateStore, StoreError, Stored, Version};
use crate::ActorKey;

/// A [`StateStore`] in memory. Cloning an `Arc<MemoryStore>` shares the data.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<ActorKey, Stored>,
    last_version: u64,
    floors: HashMap<String, u64>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many entries the store holds.
    pub fn len(&self) -> usize {
        self.inner.lock().entries.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn check(&self, key: &ActorKey, expected: Version) -> Result<(), StoreError> {
        let actual = self.entries.get(key).map_or(Version::ABSENT, |s| s.version);
        if actual == expected {
            Ok(())
        } else {
            Err(StoreError::Conflict {
                key: key.clone(),
                expected,
                actual,
            })
        }
    }
}

impl StateStore for MemoryStore {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn load<'a>(&'a self, key: &'a ActorKey) -> BoxFuture<'a, Result<Option<Stored>, StoreError>> {
        let found = self.inner.lock().entries.get(key).cloned();
        Box::pin(async move { Ok(found) })
    }

    fn save<'a>(
        &'a self,
        key: &'a ActorKey,
        expected: Version,
        bytes: &'a [u8],
    ) -> BoxFuture<'a, Result<Version, StoreError>> {
        let result = {
            let mut inner = self.inner.lock();
            inner.check(key, expected).map(|()| {
                inner.last_version += 1;
                let version = Version(inner.last_version);
                inner.entries.insert(
                    key.clone(),
                    Stored {
                        version,
                        bytes: bytes.to_vec(),
                    },
                );
                version
            })
        };
        Box::pin(async move { result })
    }

    fn delete<'a>(
        &'a self,
        key: &'a ActorKey,
        expected: Version,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let result = {
            let mut inner = self.inner.lock();
            inner.check(key, expected).map(|()| {
                inner.entries.remove(key);
            })
        };
        Box::pin(async move { result })
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }

    fn epoch_floor<'a>(&'a self, cluster: &'a str) -> BoxFuture<'a, Result<u64, StoreError>> {
        let floor = self.inner.lock().floors.get(cluster).copied().unwrap_or(0);
        Box::pin(async move { Ok(floor) })
    }

    fn raise_epoch_floor<'a>(
        &'a self,
        cluster: &'a str,
        epoch: u64,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        let floor = {
            let mut inner = self.inner.lock();
            let floor = inner.floors.entry(cluster.to_owned()).or_insert(0);
            *floor = (*floor).max(epoch);
            *floor
        };
        Box::pin(async move { Ok(floor) })
    }
}

//! The in-memory reference store: the contract with nothing in the way. For tests and for
//! actors whose state may vanish with the process.

use std::{
    collections::{BTreeMap, HashMap, btree_map::Entry},
    ops::Bound,
};

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
    /// Kind → id → entry, in byte order, so listing a kind is a range. A kind without entries
    /// has no map.
    kinds: BTreeMap<&'static str, BTreeMap<Box<str>, Stored>>,
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
        self.inner.lock().kinds.values().map(BTreeMap::len).sum()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn get(&self, key: &ActorKey) -> Option<&Stored> {
        self.kinds.get(key.kind())?.get(key.id())
    }

    fn remove(&mut self, key: &ActorKey) {
        if let Entry::Occupied(mut ids) = self.kinds.entry(key.kind()) {
            ids.get_mut().remove(key.id());
            if ids.get().is_empty() {
                ids.remove();
            }
        }
    }

    fn check(&self, key: &ActorKey, expected: Version) -> Result<(), StoreError> {
        let actual = self.get(key).map_or(Version::ABSENT, |s| s.version);
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
        let found = self.inner.lock().get(key).cloned();
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
                inner.kinds.entry(key.kind()).or_default().insert(
                    key.id().into(),
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
                inner.remove(key);
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

    fn list<'a>(
        &'a self,
        kind: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        let ids = match self.inner.lock().kinds.get(kind) {
            Some(ids) => {
                let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
                ids.range::<str, _>((lower, Bound::Unbounded))
                    .take(limit)
                    .map(|(id, _)| id.to_string())
                    .collect()
            }
            None => Vec::new(),
        };
        Box::pin(async move { Ok(ids) })
    }
}

//! State stores: where activations load their state from and save it to.
//!
//! A [`StateStore`] is a durable map from [`ActorKey`] to bytes with **conditional writes**:
//! every entry carries a [`Version`], and a save names the version it expects to replace.
//! A writer that lost track of the entry — a stale activation — is refused with
//! [`StoreError::Conflict`] instead of silently overwriting a newer state. Cluster fencing is
//! built on exactly this check.
//!
//! # The contract
//! - `load` returns the bytes and version of the last successful `save`, or `None`.
//! - `save(key, expected, bytes)` succeeds only if the entry's current version is `expected`
//!   ([`Version::ABSENT`] when there is no entry). It returns the new version, which is
//!   different from every version the key ever had, even across a delete (no ABA).
//! - `delete(key, expected)` is conditional the same way.
//! - A successful `save` or `delete` is durable when it returns: a crash afterwards does not
//!   undo it.
//! - Concurrent conditional writes to one key: exactly one of those expecting the same version wins.
//! - Per cluster name, an **epoch floor**: `raise_epoch_floor(cluster, e)` makes the floor at
//!   least `e`, durably, and returns it; `epoch_floor(cluster)` returns the highest value ever
//!   raised to (0 for a cluster never seen). The floor never goes down, not even across a
//!   restart. Cluster membership keeps its high-water mark here, beside the leases it fences
//!   with, so an epoch is never reused even if ZooKeeper loses its data.
//! - `list(kind, after, limit)` returns the ids of kind `kind` that have an entry, in ascending
//!   **byte order** of the id (the order of `str`'s `Ord`, not a database collation), only those
//!   strictly after `after` (from the first when `None`; `after` need not be an existing id):
//!   the first `limit` of them, or all if there are fewer, so a short page is the last one.
//!   Only that kind's ids: never another kind's, even one whose name starts with this one, and
//!   never a store's own metadata; a string that is not a valid kind lists nothing. A caller
//!   pages through a kind by passing the last id of one page as `after` of the next. Paging
//!   takes no snapshot: entries written or deleted meanwhile may or may not be listed, but an
//!   id that has an entry for the whole paging is listed exactly once.
//!
//! The `testkit` module (feature `testkit`) holds the suite every implementation must pass.

use std::{fmt, future::Future, pin::Pin, sync::Arc};

use crate::ActorKey;

mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sled")]
mod sled_store;

pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
#[cfg(feature = "sled")]
pub use sled_store::SledStore;

/// A boxed future, as returned by the object-safe [`StateStore`] methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The version of a stored entry: opaque, unique per store, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Version(pub u64);

impl Version {
    /// The version of an entry that does not exist.
    pub const ABSENT: Version = Version(0);

    /// Whether this names an absent entry.
    pub fn is_absent(self) -> bool {
        self == Self::ABSENT
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_absent() {
            f.write_str("absent")
        } else {
            write!(f, "v{}", self.0)
        }
    }
}

/// An entry as loaded from a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The entry's current version; pass it to the next `save`.
    pub version: Version,
    /// The bytes last saved.
    pub bytes: Vec<u8>,
}

/// Why a store operation failed. Cheap to clone: one failure is often reported to many callers.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The entry is not at the version the writer expected: someone else wrote it.
    #[error("version conflict on {key}: expected {expected}, found {actual}")]
    Conflict {
        /// The entry.
        key: ActorKey,
        /// The version the writer expected.
        expected: Version,
        /// The version found.
        actual: Version,
    },
    /// The store could not be opened.
    #[error("cannot open the {store} store at {location}: {reason}")]
    Open {
        /// Which implementation.
        store: &'static str,
        /// Where it was opened (a path, a database address).
        location: String,
        /// What went wrong.
        reason: String,
    },
    /// An I/O or database error; the operation may or may not have taken effect.
    #[error("{store} store error: {reason}")]
    Backend {
        /// Which implementation.
        store: &'static str,
        /// What went wrong.
        reason: String,
        /// The underlying error.
        #[source]
        source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    },
    /// The store's own framing of an entry is damaged (not the record inside it).
    #[error("corrupt entry for {key} in the {store} store: {reason}")]
    Corrupt {
        /// Which implementation.
        store: &'static str,
        /// The entry.
        key: ActorKey,
        /// What is wrong.
        reason: String,
    },
    /// The store has been closed.
    #[error("the {store} store is closed")]
    Closed {
        /// Which implementation.
        store: &'static str,
    },
    /// The store does not implement an operation (a custom store without an epoch floor, say).
    #[error("the {store} store does not support {operation}")]
    Unsupported {
        /// Which implementation.
        store: &'static str,
        /// What it was asked to do.
        operation: &'static str,
    },
    /// A value is outside what the store can keep (an epoch beyond `i64::MAX` in PostgreSQL).
    #[error("the {store} store cannot keep {what}")]
    OutOfRange {
        /// Which implementation.
        store: &'static str,
        /// What was refused.
        what: String,
    },
}

impl StoreError {
    /// A backend error with its cause.
    pub fn backend<E: std::error::Error + Send + Sync + 'static>(
        store: &'static str,
        source: E,
    ) -> Self {
        Self::Backend {
            store,
            reason: source.to_string(),
            source: Some(Arc::new(source)),
        }
    }

    /// Whether this is a version conflict (a fenced-off writer).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }
}

/// What a store's default method answers for an operation it does not implement.
fn unsupported<'a, T: Send + 'a>(
    store: &'static str,
    operation: &'static str,
) -> BoxFuture<'a, Result<T, StoreError>> {
    Box::pin(std::future::ready(Err(StoreError::Unsupported {
        store,
        operation,
    })))
}

/// A durable, versioned map from actor key to state bytes. See the [module docs](self) for the contract.
pub trait StateStore: Send + Sync + 'static {
    /// A short name for errors and logs, such as `"sled"`.
    fn name(&self) -> &'static str;

    /// The entry for `key`, if any.
    fn load<'a>(&'a self, key: &'a ActorKey) -> BoxFuture<'a, Result<Option<Stored>, StoreError>>;

    /// Replaces the entry at version `expected` by `bytes`; durable on return.
    fn save<'a>(
        &'a self,
        key: &'a ActorKey,
        expected: Version,
        bytes: &'a [u8],
    ) -> BoxFuture<'a, Result<Version, StoreError>>;

    /// Removes the entry at version `expected`; durable on return.
    fn delete<'a>(
        &'a self,
        key: &'a ActorKey,
        expected: Version,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Makes every completed write durable (they already are; this is for shutdown hygiene).
    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Releases the store's resources (files, locks, connections). Later operations fail with
    /// [`StoreError::Closed`]. The default does nothing.
    fn close(&self) {}

    /// The epoch floor of cluster `cluster`: the highest epoch it was ever raised to, 0 if
    /// never. A cluster needs a store that keeps it; the default says it is unsupported.
    fn epoch_floor<'a>(&'a self, cluster: &'a str) -> BoxFuture<'a, Result<u64, StoreError>> {
        let _ = cluster;
        unsupported(self.name(), "an epoch floor (needed by a cluster)")
    }

    /// Raises cluster `cluster`'s epoch floor to at least `epoch`, durably, and returns the
    /// floor (which may be higher). Never lowers it.
    fn raise_epoch_floor<'a>(
        &'a self,
        cluster: &'a str,
        epoch: u64,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        let _ = (cluster, epoch);
        unsupported(self.name(), "an epoch floor (needed by a cluster)")
    }

    /// The ids of kind `kind` that have an entry, in ascending byte order of the id, strictly
    /// after `after` (from the first when `None`), at most `limit` of them. A caller pages
    /// through a kind by passing the last id it got. Entries written or deleted while paging
    /// may or may not be seen (no snapshot), but an id present for the whole paging is listed
    /// exactly once. The default says it is unsupported.
    fn list<'a>(
        &'a self,
        kind: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        let _ = (kind, after, limit);
        unsupported(self.name(), "listing the actors of a kind")
    }
}

impl<S: StateStore + ?Sized> StateStore for Arc<S> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn load<'a>(&'a self, key: &'a ActorKey) -> BoxFuture<'a, Result<Option<Stored>, StoreError>> {
        (**self).load(key)
    }
    fn save<'a>(
        &'a self,
        key: &'a ActorKey,
        expected: Version,
        bytes: &'a [u8],
    ) -> BoxFuture<'a, Result<Version, StoreError>> {
        (**self).save(key, expected, bytes)
    }
    fn delete<'a>(
        &'a self,
        key: &'a ActorKey,
        expected: Version,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).delete(key, expected)
    }
    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        (**self).flush()
    }
    fn close(&self) {
        (**self).close()
    }
    fn epoch_floor<'a>(&'a self, cluster: &'a str) -> BoxFuture<'a, Result<u64, StoreError>> {
        (**self).epoch_floor(cluster)
    }
    fn raise_epoch_floor<'a>(
        &'a self,
        cluster: &'a str,
        epoch: u64,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        (**self).raise_epoch_floor(cluster, epoch)
    }
    fn list<'a>(
        &'a self,
        kind: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        (**self).list(kind, after, limit)
    }
}

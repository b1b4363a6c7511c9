//! [`Overmind`]: the handle to a running Overmind on this node.

use std::{
    any::Any,
    collections::HashMap,
    sync::{Arc, OnceLock, atomic::Ordering},
};

use overmind_core::{ActorKey, StateStore, StoreError};
use ractor::{ActorCell, ActorRef};
use tokio::sync::watch;

use crate::{
    Error, OvermindBuilder, VirtualActor, VirtualRef,
    engine::registry::{AnyKind, Kind},
    engine::runtime::Runtime,
    engine::supervisor::SupervisorMsg,
};

/// A running Overmind. Cheap to clone.
#[derive(Clone)]
pub struct Overmind {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) rt: Arc<Runtime>,
    pub(crate) kinds: HashMap<&'static str, Arc<dyn AnyKind>>,
    pub(crate) supervisor: OnceLock<ActorRef<SupervisorMsg>>,
    /// The one graceful shutdown: started once, on its own task; its outcome, once known.
    pub(crate) finished: OnceLock<watch::Receiver<Option<Result<(), StoreError>>>>,
}

/// Whether a shutting-down cluster node hands its actors over first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leave {
    /// Leave the cluster and drain before stopping (a node that joined).
    Gracefully,
    /// Stop at once (a node whose start failed before it joined).
    Skip,
}

impl Inner {
    /// Shuts down once; every caller, concurrent or later, gets the outcome of that one run.
    /// The run is a task of its own, so a caller that stops waiting does not cut it short,
    /// and a later caller waits for the same run rather than starting another.
    pub(crate) async fn shutdown(self: &Arc<Self>, leave: Leave) -> Result<(), StoreError> {
        let mut outcome = self
            .finished
            .get_or_init(|| {
                let (done, outcome) = watch::channel(None);
                let inner = self.clone();
                tokio::spawn(async move {
                    done.send_replace(Some(shut_down(inner, leave).await));
                });
                outcome
            })
            .clone();
        match outcome.wait_for(Option::is_some).await {
            Ok(result) => result.clone().unwrap_or(Ok(())),
            Err(_) => Err(StoreError::Backend {
                store: self.rt.store.name(),
                reason: "the shutdown task ended without an outcome (it panicked)".into(),
                source: None,
            }),
        }
    }
}

async fn shut_down(inner: Arc<Inner>, leave: Leave) -> Result<(), StoreError> {
    let distribution = inner.rt.distribution().cloned();
    if let (Some(distribution), Leave::Gracefully) = (&distribution, leave) {
        distribution.leave().await;
    }
    let flushed = shutdown_runtime(&inner.rt).await;
    if let Some(distribution) = &distribution {
        distribution.close();
    }
    if let Some(hosts) = inner.rt.supervisor.get() {
        let _ = hosts.stop_and_wait(None, None).await;
    }
    if let Some(supervisor) = inner.supervisor.get() {
        let _ = supervisor.stop_and_wait(None, None).await;
    }
    flushed
}

/// How this node sees its cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    /// This node's name.
    pub node: String,
    /// The current epoch (0 before any view).
    pub epoch: u64,
    /// The newest epoch every member has applied.
    pub stable: u64,
    /// The members of the current epoch: name and address.
    pub members: Vec<(String, String)>,
    /// Whether this node is a member of the current epoch.
    pub is_member: bool,
    /// Whether this node's lease is valid (it may serve).
    pub serving: bool,
}

/// A snapshot of this node's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Activations running now.
    pub active: u64,
    /// Activations started since launch.
    pub activations: u64,
    /// Activations stopped for being idle.
    pub passivations: u64,
    /// Handler runs that failed (error, panic, or a failed save).
    pub handler_failures: u64,
    /// Activations that could not start (unreadable state, store down, pre_start error).
    pub activation_failures: u64,
    /// States written.
    pub writes: u64,
    /// Handler runs that left the state's encoding unchanged, so wrote nothing.
    pub skipped_writes: u64,
    /// Ids that currently have a slot on this node (an activation, or a live handle).
    pub slots: u64,
    /// Activations stopped because their actor moved to another node.
    pub moved: u64,
}

impl std::fmt::Debug for Overmind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overmind")
            .field("kinds", &self.inner.kinds.keys().collect::<Vec<_>>())
            .field("store", &self.inner.rt.store.name())
            .finish_non_exhaustive()
    }
}

impl Overmind {
    /// Starts configuring an Overmind.
    pub fn builder() -> OvermindBuilder {
        OvermindBuilder::default()
    }

    pub(crate) fn from_inner(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    /// A handle to the actor `(A::KIND, id)`. Nothing is spawned until a message is sent;
    /// an unregistered kind or an invalid id is reported by the first send.
    pub fn actor<A: VirtualActor>(&self, id: impl Into<String>) -> VirtualRef<A> {
        let resolved = self.kind::<A>().and_then(|kind| {
            let key = ActorKey::new(A::KIND, id)?;
            Ok((kind, key))
        });
        match resolved {
            Err(error) => VirtualRef::invalid(error),
            Ok((kind, key)) if self.inner.rt.placement.distributed() => {
                VirtualRef::routed(kind, key)
            }
            Ok((kind, key)) => VirtualRef::local(kind.slot(key)),
        }
    }

    fn kind<A: VirtualActor>(&self) -> Result<Arc<Kind<A>>, Error> {
        let not_registered = || Error::NotRegistered {
            kind: A::KIND,
            type_name: std::any::type_name::<A>(),
        };
        let kind = self.inner.kinds.get(A::KIND).ok_or_else(not_registered)?;
        let any: Arc<dyn Any + Send + Sync> = kind.clone().into_any();
        any.downcast::<Kind<A>>().map_err(|_| not_registered())
    }

    /// Deletes the actor `(A::KIND, id)`; see [`VirtualRef::delete`].
    pub async fn delete<A: VirtualActor>(&self, id: impl Into<String>) -> Result<(), Error> {
        self.actor::<A>(id).delete().await
    }

    /// The ids of kind `A` that have a stored record, in ascending byte order, strictly
    /// after `after` (from the first when `None`), at most `limit` of them. Page through a
    /// kind by passing the last id of each page; ids stored or deleted meanwhile may or may
    /// not be seen, and an id stored for the whole walk is listed exactly once. In a
    /// cluster, an actor that was activated but never stored a state is listed too (its
    /// record holds only a lease).
    pub async fn list<A: VirtualActor>(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, Error> {
        self.kind::<A>()?;
        self.inner
            .rt
            .store
            .list(A::KIND, after, limit)
            .await
            .map_err(Error::Store)
    }

    /// Migrates every stored state of kind `A` that an older `state_version` wrote, now,
    /// instead of when each actor is next activated. Resumable: it walks the kind in
    /// [`Self::list`] order after `after` (pass the `last_id` of an interrupted run), and
    /// calls `progress` after every page of ids. Each rewrite is conditional on the version
    /// it read, like every save, and keeps the record's lease; a state that fails to migrate
    /// is counted in [`crate::MigrationProgress::failures`] and left as it is. A store failure ends
    /// the run with the error (progress so far was reported).
    ///
    /// Run it once every node runs the release that declares the new version: a node still
    /// on the old release cannot read the new states.
    pub async fn migrate<A: VirtualActor>(
        &self,
        after: Option<String>,
        mut progress: impl FnMut(&crate::MigrationProgress) + Send,
    ) -> Result<crate::MigrationProgress, Error> {
        let kind = self.kind::<A>()?;
        overmind_core::migration::migrate_kind(
            &*self.inner.rt.store,
            A::KIND,
            &kind.schema,
            after,
            &mut progress,
        )
        .await
        .map_err(Error::Store)
    }

    /// How this node sees its cluster (a single node sees itself alone).
    pub fn cluster_info(&self) -> ClusterInfo {
        let placement = &self.inner.rt.placement;
        let view = placement.view();
        ClusterInfo {
            node: placement.node().to_owned(),
            epoch: view.as_ref().map_or(0, |v| v.view.epoch()),
            stable: view.as_ref().map_or(0, |v| v.view.stable()),
            members: view
                .as_ref()
                .map(|v| {
                    v.view
                        .members()
                        .iter()
                        .map(|m| (m.name.clone(), m.addr.clone()))
                        .collect()
                })
                .unwrap_or_default(),
            is_member: view.as_ref().is_some_and(|v| v.is_member()),
            serving: placement.serving(),
        }
    }

    /// How many stubs for actors on other nodes ractor_cluster holds here. Overmind keeps
    /// activations local, so this stays at about one per peer (its router) however many actors
    /// run. Always 0 on a single node.
    pub async fn remote_actor_count(&self) -> usize {
        match self.inner.rt.distribution() {
            Some(distribution) => distribution.remote_actor_count().await,
            None => 0,
        }
    }

    /// The node that owns actor `(A::KIND, id)` in the current view.
    pub fn owner_of<A: VirtualActor>(&self, id: &str) -> Option<String> {
        let key = ActorKey::new(A::KIND, id).ok()?;
        self.inner.rt.placement.owner(&key.to_string())
    }

    /// Stops every activation after it has handled the messages it already accepted, refuses
    /// new ones, flushes the store (closing it if Overmind opened it, from `data_dir`) and
    /// stops the supervisor. In a cluster the node leaves first: its actors move to the other
    /// members without a failed call.
    ///
    /// Stopping the supervisor (or a parent it is linked to) starts the same shutdown; calling
    /// this afterwards waits for it to finish. Every call returns the one outcome.
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        self.inner.shutdown(Leave::Gracefully).await
    }

    /// The supervisor actor, to link into your own supervision tree or to monitor.
    pub fn supervisor(&self) -> ActorCell {
        match self.inner.supervisor.get() {
            Some(supervisor) => supervisor.get_cell(),
            None => unreachable!("the supervisor is set before an Overmind is handed out"),
        }
    }

    /// The state store in use.
    pub fn store(&self) -> Arc<dyn StateStore> {
        self.inner.rt.store.clone()
    }

    /// This node's counters.
    pub fn stats(&self) -> Stats {
        let c = &self.inner.rt.stats;
        Stats {
            active: c.active.load(Ordering::Relaxed),
            activations: c.activations.load(Ordering::Relaxed),
            passivations: c.passivations.load(Ordering::Relaxed),
            handler_failures: c.handler_failures.load(Ordering::Relaxed),
            activation_failures: c.activation_failures.load(Ordering::Relaxed),
            writes: c.writes.load(Ordering::Relaxed),
            skipped_writes: c.skipped_writes.load(Ordering::Relaxed),
            moved: c.moved.load(Ordering::Relaxed),
            slots: self
                .inner
                .kinds
                .values()
                .map(|k| k.slot_count() as u64)
                .sum(),
        }
    }
}

/// Lets every lifecycle finish its queue, then flushes (and closes) the store.
async fn shutdown_runtime(rt: &Runtime) -> Result<(), StoreError> {
    rt.begin_shutdown();
    rt.lifecycles_ended().await;
    let flushed = rt.store.flush().await;
    if rt.owns_store {
        // Release the data directory, even if handles to this Overmind outlive it.
        rt.store.close();
    }
    flushed
}

//! The per-node registry of live activations: one [`Kind`] per registered actor type, each
//! mapping ids to their [`Slot`].
//!
//! The map holds weak references. A slot lives while a handle or its activation holds it, and
//! removes itself when the last one lets go — so there is never more than one slot, and so
//! never more than one activation, per id on a node.

use std::{
    any::Any,
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    sync::{Arc, OnceLock, Weak},
};

use overmind_core::{ActorKey, migration::KindSchema};
use parking_lot::Mutex;

use crate::{
    Overmind, VirtualActor,
    engine::{distribution::Elsewhere, overmind::Inner, runtime::Runtime, slot::Slot},
};

/// Makes the user's actor value for each activation.
pub(crate) type Factory<A> = Box<dyn Fn(&Overmind) -> A + Send + Sync>;

const SHARDS: usize = 32;

/// Ids to their slots, for the ids whose hash falls in one shard.
type Shard<A> = Mutex<HashMap<Box<str>, Weak<Slot<A>>>>;

/// One registered actor type.
pub(crate) struct Kind<A: VirtualActor> {
    pub(crate) rt: Arc<Runtime>,
    /// The state's schema and how older ones are read.
    pub(crate) schema: KindSchema<A::PersistedState>,
    factory: Factory<A>,
    /// Weak: the Overmind owns its kinds. Its supervisor keeps it alive until shutdown.
    overmind: OnceLock<Weak<Inner>>,
    hasher: RandomState,
    shards: Box<[Shard<A>]>,
    /// Activations other nodes said have stopped, per id: the lease each held. Needed only
    /// while an epoch is not stable (cleared when one is), and bounded.
    released: Mutex<HashMap<Box<str>, ReleasedLease>>,
    /// How messages reach this kind's actors on other nodes, once this node joined them.
    elsewhere: OnceLock<Arc<dyn Elsewhere<A::Msg>>>,
}

/// The activation an actor's old owner said has stopped: the lease it held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReleasedLease {
    /// The node that held the lease.
    pub(crate) node: String,
    /// The lease's activation number.
    pub(crate) activation: u64,
}

/// The most release notices a kind keeps between stable epochs; later ones are dropped (the
/// actors they name are taken over once the epoch is stable instead).
const MAX_RELEASE_NOTICES: usize = 1 << 20;

impl<A: VirtualActor> Kind<A> {
    pub(crate) fn new(
        rt: Arc<Runtime>,
        schema: KindSchema<A::PersistedState>,
        factory: Factory<A>,
    ) -> Self {
        Self {
            rt,
            schema,
            factory,
            overmind: OnceLock::new(),
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            released: Mutex::new(HashMap::new()),
            elsewhere: OnceLock::new(),
        }
    }

    /// Connects the kind to the nodes its actors may live on (once).
    pub(crate) fn connect(&self, elsewhere: Arc<dyn Elsewhere<A::Msg>>) {
        let _ = self.elsewhere.set(elsewhere);
    }

    /// How messages reach this kind's actors on other nodes, once this node joined them.
    pub(crate) fn elsewhere(&self) -> Option<&Arc<dyn Elsewhere<A::Msg>>> {
        self.elsewhere.get()
    }

    /// A new actor value for an activation; None once the Overmind is gone.
    pub(crate) fn make_actor(&self) -> Option<A> {
        let inner = self.overmind.get()?.upgrade()?;
        Some((self.factory)(&Overmind::from_inner(inner)))
    }

    fn shard(&self, id: &str) -> &Shard<A> {
        &self.shards[self.hasher.hash_one(id) as usize % SHARDS]
    }

    /// The slot for `key`, creating it if no one holds it.
    pub(crate) fn slot(self: &Arc<Self>, key: ActorKey) -> Arc<Slot<A>> {
        let mut shard = self.shard(key.id()).lock();
        if let Some(slot) = shard.get(key.id()).and_then(Weak::upgrade) {
            return slot;
        }
        let id: Box<str> = key.id().into();
        let slot = Arc::new(Slot::new(key, self.clone()));
        shard.insert(id, Arc::downgrade(&slot));
        slot
    }

    /// Another node says the activation holding `lease` on `id` has stopped: remember it,
    /// and wake the actor's lifecycle if one waits to take it over.
    pub(crate) fn note_release(&self, id: &str, lease: ReleasedLease) {
        {
            let mut released = self.released.lock();
            if released.len() >= MAX_RELEASE_NOTICES && !released.contains_key(id) {
                return;
            }
            released.insert(id.into(), lease);
        }
        let slot = self.shard(id).lock().get(id).and_then(Weak::upgrade);
        if let Some(slot) = slot {
            slot.released.notify_one();
        }
    }

    /// Another node waits to take `id` over: stop its activation here as soon as it is
    /// retired (now, if it already is).
    pub(crate) fn expedite(&self, id: &str) {
        let slot = self.shard(id).lock().get(id).and_then(Weak::upgrade);
        if let Some(slot) = slot {
            slot.ask_release();
        }
    }

    /// Whether another node said the activation holding `lease` on `id` has stopped.
    pub(crate) fn was_released(&self, id: &str, lease: &overmind_core::codec::Lease) -> bool {
        self.released
            .lock()
            .get(id)
            .is_some_and(|r| r.node == lease.node && r.activation == lease.activation)
    }

    /// Called as a slot is dropped: removes its entry unless a new slot took its place.
    pub(crate) fn forget(&self, id: &str) {
        let mut shard = self.shard(id).lock();
        if shard.get(id).is_some_and(|w| w.strong_count() == 0) {
            shard.remove(id);
        }
    }

    /// How many ids have a slot (held by a handle or an activation).
    pub(crate) fn slot_count(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// Every slot someone holds.
    pub(crate) fn live_slots(&self) -> Vec<Arc<Slot<A>>> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            out.extend(shard.lock().values().filter_map(Weak::upgrade));
        }
        out
    }
}

/// A registered kind with its actor type erased.
pub(crate) trait AnyKind: Send + Sync + 'static {
    fn set_overmind(&self, overmind: Weak<Inner>);
    /// Retires every activation not settled on this node in `epoch`; pushes a future per
    /// activation that must stop first. An activation is drained when its future is first
    /// polled (or when its new owner asks, [`Kind::expedite`]), so the caller decides how
    /// many stop at once.
    fn retire_unsettled(
        &self,
        epoch: u64,
        retiring: &mut Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
    );
    /// Stops every activation now (the lease is lost).
    fn stop_all(&self);
    /// Forgets the release notices (an epoch is stable: every owner is settled).
    fn forget_releases(&self);
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
    fn slot_count(&self) -> usize;
}

impl<A: VirtualActor> AnyKind for Kind<A> {
    fn set_overmind(&self, overmind: Weak<Inner>) {
        let _ = self.overmind.set(overmind);
    }

    fn retire_unsettled(
        &self,
        epoch: u64,
        retiring: &mut Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
    ) {
        let placement = &self.rt.placement;
        for slot in self.live_slots() {
            // A running host may go on if this node kept the actor since it was granted; a
            // lifecycle still deciding must decide again unless the actor is settled here.
            let granted = slot.host_epoch().unwrap_or(0);
            if placement.holds_here(&slot.key.to_string(), granted) {
                continue;
            }
            if slot.retire(epoch) {
                self.rt
                    .stats
                    .moved
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                retiring.push(Box::pin(async move {
                    slot.stop_retired();
                    slot.retired(epoch).await
                }));
            }
        }
    }

    fn forget_releases(&self) {
        let mut released = self.released.lock();
        released.clear();
        released.shrink_to(0);
    }

    fn stop_all(&self) {
        for slot in self.live_slots() {
            slot.stop_now();
        }
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }

    fn slot_count(&self) -> usize {
        Kind::slot_count(self)
    }
}

//! What every slot and activation on this node shares: the store, the activations' supervisor, the count of
//! running activation lifecycles (which shutdown waits for) and the statistics.

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use overmind_core::StateStore;
use ractor::ActorCell;
use tokio::{runtime::Handle, sync::Notify, time::Instant};

use crate::engine::{distribution::Distribution, placement::Placement};

/// Receives activation events.
pub(crate) type ActivationHook = Arc<dyn Fn(&crate::ActivationEvent) + Send + Sync>;

/// Set in [`Runtime::lifecycles`] once shutdown has begun: no new lifecycle may start.
const CLOSED: usize = 1 << (usize::BITS - 1);

pub(crate) struct Runtime {
    pub(crate) placement: Arc<dyn Placement>,
    /// The layer connecting this node to others, once it has joined them.
    distribution: OnceLock<Arc<dyn Distribution>>,
    pub(crate) store: Arc<dyn StateStore>,
    /// Whether Overmind opened the store itself, and so closes it at shutdown.
    pub(crate) owns_store: bool,
    pub(crate) tokio: Handle,
    pub(crate) supervisor: OnceLock<ActorCell>,
    /// Running lifecycles, plus the [`CLOSED`] bit.
    lifecycles: AtomicUsize,
    lifecycles_done: Notify,
    shutdown: tokio::sync::watch::Sender<bool>,
    epoch: Instant,
    pub(crate) stats: Counters,
    pub(crate) on_activation: Option<ActivationHook>,
}

/// Counters behind [`crate::Stats`].
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) active: AtomicU64,
    pub(crate) activations: AtomicU64,
    pub(crate) passivations: AtomicU64,
    pub(crate) handler_failures: AtomicU64,
    pub(crate) activation_failures: AtomicU64,
    pub(crate) moved: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) skipped_writes: AtomicU64,
}

impl Runtime {
    pub(crate) fn new(
        placement: Arc<dyn Placement>,
        store: Arc<dyn StateStore>,
        owns_store: bool,
        tokio: Handle,
        on_activation: Option<ActivationHook>,
    ) -> Self {
        Self {
            placement,
            distribution: OnceLock::new(),
            store,
            owns_store,
            tokio,
            supervisor: OnceLock::new(),
            lifecycles: AtomicUsize::new(0),
            lifecycles_done: Notify::new(),
            shutdown: tokio::sync::watch::channel(false).0,
            epoch: Instant::now(),
            stats: Counters::default(),
            on_activation,
        }
    }

    /// Reports an activation event to the hook, if any. A stop after the activation's
    /// registration lost the lease is dated when the lease ran out.
    pub(crate) fn activation_event(
        &self,
        key: &overmind_core::ActorKey,
        activation: u64,
        member: u64,
        kind: crate::ActivationEventKind,
    ) {
        let Some(hook) = &self.on_activation else {
            return;
        };
        let now = std::time::SystemTime::now();
        let at = match (kind, self.placement.lease_ended(member)) {
            (crate::ActivationEventKind::Stopped, Some(ended)) => {
                now - std::time::Instant::now().saturating_duration_since(ended)
            }
            _ => now,
        };
        hook(&crate::ActivationEvent {
            key: key.clone(),
            activation,
            kind,
            at,
        });
    }

    /// Connects this node to others; once, before it serves what another node could own.
    pub(crate) fn distribute(&self, distribution: Arc<dyn Distribution>) {
        let _ = self.distribution.set(distribution);
    }

    /// The layer connecting this node to others, once it joined them.
    pub(crate) fn distribution(&self) -> Option<&Arc<dyn Distribution>> {
        self.distribution.get()
    }

    /// Admits a new activation lifecycle, unless shutdown has begun.
    pub(crate) fn try_start_lifecycle(&self) -> bool {
        self.lifecycles
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n & CLOSED == 0).then_some(n + 1)
            })
            .is_ok()
    }

    pub(crate) fn lifecycle_ended(&self) {
        let before = self.lifecycles.fetch_sub(1, Ordering::AcqRel);
        if before & !CLOSED == 1 {
            self.lifecycles_done.notify_waiters();
        }
    }

    /// How many lifecycles run (each holds messages for its actor, or serves them).
    pub(crate) fn lifecycles_running(&self) -> usize {
        self.lifecycles.load(Ordering::Acquire) & !CLOSED
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.lifecycles.load(Ordering::Acquire) & CLOSED != 0
    }

    /// Refuses new lifecycles and tells running ones to stop once their queues are empty.
    pub(crate) fn begin_shutdown(&self) {
        self.lifecycles.fetch_or(CLOSED, Ordering::AcqRel);
        self.shutdown.send_replace(true);
    }

    /// Waits until every lifecycle has ended (after [`Self::begin_shutdown`]).
    pub(crate) async fn lifecycles_ended(&self) {
        loop {
            let done = self.lifecycles_done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            if self.lifecycles.load(Ordering::Acquire) & !CLOSED == 0 {
                return;
            }
            done.await;
        }
    }

    pub(crate) fn shutdown_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Milliseconds since this runtime started, on tokio's clock (so tests can pause it).
    pub(crate) fn now_ms(&self) -> u64 {
        Instant::now().duration_since(self.epoch).as_millis() as u64
    }

    pub(crate) fn instant_at(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }
}

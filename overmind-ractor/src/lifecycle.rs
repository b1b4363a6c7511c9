//! The lifecycle of one actor id's activations on this node: one task per busy slot.
//!
//! ```text
//!            first message
//!   Idle ───────────────────▶ Starting ──load + spawn ok──▶ Active
//!    ▲                          │  ▲                          │ idle for passivate_after,
//!    │        load/start failed │  │ messages queued          │ shutdown, or a failed handler
//!    │  (queued calls get the   │  │ while stopping           ▼
//!    │   activation error)      │  └──────────────────── Stopping (draining the mailbox)
//!    └──────────────────────────┘                             │ mailbox drained, actor stopped
//!    ◀────────────────────────────── nothing queued ──────────┘
//! ```

use std::sync::{Arc, atomic::Ordering};

use overmind_core::codec::{self, Record};
use ractor::{Actor, ActorRef, SpawnErr};
use tokio::task::JoinHandle;

use crate::{
    ActivationError, Error, VirtualActor,
    host::{Host, Loaded},
    reply,
    slot::{AfterStop, Slot},
};

/// Runs activations for `slot` until it goes idle. Started by the slot on its first message.
pub(crate) async fn run<A: VirtualActor>(slot: Arc<Slot<A>>) {
    let rt = slot.kind.rt.clone();
    loop {
        match activate(&slot).await {
            Err(cause) => {
                rt.stats.activation_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(key = %slot.key, %cause, "activation failed");
                let error = Error::ActivationFailed {
                    key: slot.key.clone(),
                    cause,
                };
                let (queued, handed_over) = slot.activation_failed();
                for q in queued {
                    if let Some(relay) = &q.relay {
                        reply::fail(relay, error.clone());
                    }
                }
                drop(handed_over);
                break;
            }
            Ok((actor, join)) => {
                rt.stats.activations.fetch_add(1, Ordering::Relaxed);
                rt.stats.active.fetch_add(1, Ordering::Relaxed);
                slot.activated(&actor);
                serve(&slot, &actor, join).await;
                rt.stats.active.fetch_sub(1, Ordering::Relaxed);
                if let AfterStop::Done = slot.stopped() {
                    break;
                }
            }
        }
    }
    drop(slot);
    rt.lifecycle_ended();
}

/// Loads the stored state and spawns the host.
async fn activate<A: VirtualActor>(
    slot: &Arc<Slot<A>>,
) -> Result<(ActorRef<A::Msg>, JoinHandle<()>), ActivationError> {
    let rt = &slot.kind.rt;
    let loaded = match rt
        .store
        .load(&slot.key)
        .await
        .map_err(ActivationError::Store)?
    {
        None => Loaded {
            version: overmind_core::Version::ABSENT,
            stored: None,
        },
        Some(stored) => {
            let record = Record::decode_for(&stored.bytes, A::KIND)
                .map_err(ActivationError::CorruptRecord)?;
            let state = codec::decode_state::<A::PersistedState>(&record.payload)
                .map_err(ActivationError::UndecodableState)?;
            Loaded {
                version: stored.version,
                stored: Some((state, record.payload)),
            }
        }
    };
    let actor = slot
        .kind
        .make_actor()
        .ok_or_else(|| ActivationError::StartFailed("the Overmind was dropped".into()))?;
    let host = Host {
        actor,
        slot: slot.clone(),
    };
    let spawned = match rt.supervisor.get() {
        Some(supervisor) => Actor::spawn_linked(None, host, loaded, supervisor.clone()).await,
        None => Actor::spawn(None, host, loaded).await,
    };
    spawned.map_err(|e| {
        ActivationError::StartFailed(match e {
            SpawnErr::StartupFailed(reason) => reason.to_string(),
            other => other.to_string(),
        })
    })
}

/// Waits for the activation to end, passivating it when idle and draining it at shutdown.
async fn serve<A: VirtualActor>(
    slot: &Slot<A>,
    actor: &ActorRef<A::Msg>,
    mut join: JoinHandle<()>,
) {
    let rt = &slot.kind.rt;
    let mut shutdown = rt.shutdown_signal();
    let mut stopping = false;
    let stop = |why: &str| {
        if slot.begin_stop() {
            tracing::debug!(key = %slot.key, why, "stopping activation");
            let _ = actor.drain();
        }
    };
    loop {
        if !stopping && rt.is_closing() {
            stop("shutdown");
            stopping = true;
        }
        // Idle means no handler ran for `after`. While a handler runs, look again one `after`
        // from now (a deadline in the past would spin).
        let idle_deadline = match A::PASSIVATE_AFTER {
            Some(after) if !stopping => Some(if slot.gate.in_handler() {
                tokio::time::Instant::now() + after
            } else {
                rt.instant_at(slot.last_active_ms()) + after
            }),
            _ => None,
        };
        tokio::select! {
            _ = &mut join => return,
            _ = sleep_until(idle_deadline) => {
                let idle_ms = rt.now_ms().saturating_sub(slot.last_active_ms());
                let after_ms = A::PASSIVATE_AFTER.map_or(u64::MAX, |d| d.as_millis() as u64);
                if idle_ms >= after_ms && !slot.gate.in_handler() {
                    rt.stats.passivations.fetch_add(1, Ordering::Relaxed);
                    stop("idle");
                    stopping = true;
                }
            }
            changed = shutdown.changed(), if !stopping => {
                if changed.is_err() {
                    // The runtime is gone: stop as at shutdown.
                    stop("runtime dropped");
                    stopping = true;
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

//! The activation host: a ractor actor with the user's message type that runs the user's actor
//! inside it, so the user's `handle` gets its own `ActorRef` and `&mut State` unchanged.
//!
//! Around each handler run it
//! 1. opens the slot's reply gate (replies wait for the outcome),
//! 2. runs the handler, catching errors and panics,
//! 3. stores the new state if its encoding changed (conditional on the version it loaded),
//! 4. closes the gate: replies are released, or failed if the handler or the store failed.
//!
//! After a failure the in-memory state can no longer be trusted: the host stops taking
//! messages, hands what is left in its mailbox to the next activation, and drains. The next
//! activation starts from the last stored state.

use std::{panic::AssertUnwindSafe, sync::Arc, sync::atomic::Ordering};

use futures::FutureExt;
use overmind_core::{
    ActorKey, Version,
    codec::{self, Lease},
};
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};

use crate::{
    Activation, Error, PersistError, VirtualActor, engine::reply::Outcome, engine::slot::Slot,
};

type State<A> = <A as VirtualActor>::PersistedState;

pub(crate) struct Host<A: VirtualActor> {
    pub(crate) actor: A,
    pub(crate) slot: Arc<Slot<A>>,
}

/// What the lifecycle loaded before spawning the host.
pub(crate) struct Loaded<S> {
    pub(crate) version: Version,
    /// The state and its encoding as the store holds it (in the current schema: a migrated
    /// or stamped state was stored before the host was spawned).
    pub(crate) stored: Option<(S, Vec<u8>)>,
    /// In a cluster, the lease this activation took; every record it writes carries it.
    pub(crate) lease: Option<Lease>,
    /// The activation's number (its lease's, in a cluster).
    pub(crate) activation: u64,
    /// The registration (member id) the activation belongs to; it serves only while that
    /// registration holds the node's lease. 0 on a single node.
    pub(crate) member: u64,
}

pub(crate) struct HostState<A: VirtualActor> {
    user: State<A>,
    /// The version of the stored record; the next save expects it. In a cluster the record
    /// holds this activation's lease, so a save succeeds only while no one took it over.
    version: Version,
    lease: Option<Lease>,
    activation: u64,
    member: u64,
    /// The state's encoding as the store holds it (or, for a new actor, the initial state's
    /// encoding): a handler that leaves the encoding unchanged writes nothing. The store
    /// holds it in the current schema: the activation stored a migrated or stamped state
    /// before it started.
    saved: Vec<u8>,
    /// Where each handled message's state is encoded, reused so a read-only message
    /// allocates nothing.
    scratch: Vec<u8>,
    /// The actor's key, lent to [`crate::VirtualActorRef::actor_key`] during each call into
    /// the user's actor (`None` only while lent).
    key: Option<ActorKey>,
    /// Set when a handler or a save failed, or post_start failed.
    failed: Option<Failure>,
}

enum Failure {
    /// Hand the rest of the mailbox to the next activation.
    HandOver,
    /// This activation never started properly: fail the rest of the mailbox.
    StartFailed(Error),
}

fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = panic.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".to_owned()
    }
}

impl<A: VirtualActor> Host<A> {
    /// Stores the state if its encoding changed since the last save.
    async fn persist(&self, st: &mut HostState<A>) -> Result<(), PersistError> {
        let rt = &self.slot.kind.rt;
        codec::encode_state_into(&st.user, &mut st.scratch)?;
        if st.scratch == st.saved {
            rt.stats.skipped_writes.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        // A state that encodes but does not decode (serde shapes bincode cannot read back)
        // would be a lost write: refuse it before anyone is told it was stored.
        codec::decode_state::<State<A>>(&st.scratch)?;
        let schema = self.slot.kind.schema.current();
        let record = codec::encode_record(A::KIND, st.lease.as_ref(), Some((schema, &st.scratch)));
        let version = rt.store.save(&self.slot.key, st.version, &record).await?;
        st.version = version;
        std::mem::swap(&mut st.saved, &mut st.scratch);
        rt.stats.writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Runs one handler under the reply gate, then stores. On failure, starts the hand-over.
    async fn run<F>(&self, myself: &ActorRef<A::Msg>, st: &mut HostState<A>, handler: F)
    where
        F: AsyncFnOnce(&mut State<A>) -> Result<(), ActorProcessingErr>,
    {
        let key = &self.slot.key;
        let placement = &self.slot.kind.rt.placement;
        self.slot.gate.open();
        let ran = crate::engine::current::scope(
            myself.get_id(),
            &mut st.key,
            AssertUnwindSafe(handler(&mut st.user)).catch_unwind(),
        )
        .await;
        let mut outcome: Outcome = match ran {
            Ok(Ok(())) => self
                .persist(st)
                .await
                .map_err(|cause| Error::PersistFailed {
                    key: key.clone(),
                    cause,
                }),
            Ok(Err(e)) => Err(Error::HandlerFailed {
                key: key.clone(),
                reason: e.to_string(),
            }),
            Err(panic) => Err(Error::HandlerFailed {
                key: key.clone(),
                reason: panic_message(panic),
            }),
        };
        if outcome.is_ok() && !placement.serving_as(st.member) {
            // The lease ran out while the handler ran: another node may own the actor by now,
            // so nothing may be acknowledged (what was stored stays; the outcome is unknown).
            outcome = Err(Error::OutcomeUnknown {
                key: key.clone(),
                reason: "this node's lease expired while handling the message".into(),
            });
        }
        self.slot.gate.close(&outcome);
        self.slot.touch();
        if let Err(error) = outcome {
            let rt = &self.slot.kind.rt;
            rt.stats.handler_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(key = %key, %error, "handler failed; restarting the activation from storage");
            st.failed = Some(Failure::HandOver);
            self.slot.begin_stop();
            let _ = myself.drain();
        }
    }
}

impl<A: VirtualActor> Actor for Host<A> {
    type Msg = A::Msg;
    type State = HostState<A>;
    type Arguments = Loaded<State<A>>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        loaded: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let (stored, saved) = match loaded.stored {
            Some((state, payload)) => (Some(state), Some(payload)),
            None => (None, None),
        };
        let mut key = Some(self.slot.key.clone());
        let activation = Activation::new(self.slot.key.clone(), stored);
        let user = crate::engine::current::scope(
            myself.get_id(),
            &mut key,
            self.actor.pre_start(myself.clone(), activation),
        )
        .await?;
        // A new actor's initial state is not written until a handler changes it.
        let saved = match saved {
            Some(bytes) => bytes,
            None => codec::encode_state(&user).unwrap_or_default(),
        };
        Ok(HostState {
            user,
            version: loaded.version,
            lease: loaded.lease,
            activation: loaded.activation,
            member: loaded.member,
            scratch: Vec::with_capacity(saved.len()),
            saved,
            key,
            failed: None,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let started = crate::engine::current::scope(
            myself.get_id(),
            &mut st.key,
            AssertUnwindSafe(self.actor.post_start(myself.clone(), &mut st.user)).catch_unwind(),
        )
        .await;
        let reason = match started {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(panic) => panic_message(panic),
        };
        let error = Error::ActivationFailed {
            key: self.slot.key.clone(),
            cause: crate::ActivationError::StartFailed(format!("post_start: {reason}")),
        };
        tracing::error!(key = %self.slot.key, %error, "post_start failed");
        st.failed = Some(Failure::StartFailed(error));
        self.slot.begin_stop();
        let _ = myself.drain();
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if st.failed.is_none() && !self.slot.kind.rt.placement.serving_as(st.member) {
            // This node may not serve now (its lease ran out): pass the message on, unhandled,
            // to wherever the actor is placed next.
            tracing::warn!(key = %self.slot.key, "lease expired: stopping the activation without handling");
            st.failed = Some(Failure::HandOver);
            self.slot.begin_stop();
            let _ = myself.drain();
        }
        match &st.failed {
            None => {
                let me = myself.clone();
                self.run(&myself, st, async move |user| {
                    self.actor.handle(me, msg, user).await
                })
                .await;
            }
            Some(Failure::HandOver) => self.slot.hand_over(msg),
            Some(Failure::StartFailed(error)) => {
                // Dropping the message inside the gate fails its caller with this error.
                self.slot.gate.open();
                drop(msg);
                self.slot.gate.close(&Err(error.clone()));
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if st.failed.is_none() {
            let me = myself.clone();
            self.run(&myself, st, async move |user| {
                self.actor.handle_supervisor_evt(me, event, user).await
            })
            .await;
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Every handled message is already stored; passivation has nothing left to write.
        self.slot.kind.rt.activation_event(
            &self.slot.key,
            st.activation,
            st.member,
            crate::ActivationEventKind::Stopped,
        );
        let stopped = crate::engine::current::scope(
            myself.get_id(),
            &mut st.key,
            AssertUnwindSafe(self.actor.post_stop(myself.clone(), &mut st.user)).catch_unwind(),
        )
        .await;
        match stopped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(key = %self.slot.key, error = %e, "post_stop failed"),
            Err(panic) => {
                tracing::warn!(key = %self.slot.key, error = %panic_message(panic), "post_stop panicked")
            }
        }
        // Stopped for good: the actor's owner, if another node, may take it over now.
        if let (Some(lease), Some(distribution)) = (&st.lease, self.slot.kind.rt.distribution()) {
            distribution.released(&self.slot.key, lease);
        }
        Ok(())
    }
}

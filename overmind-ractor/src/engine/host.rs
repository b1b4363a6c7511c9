//! The activation host: runs the user's actor for one activation, taking its messages from
//! the activation's [`Mailbox`] on the lifecycle's task. The user's `handle` gets an ordinary
//! ractor `ActorRef` as `myself` (a [`Proxy`] that puts what it receives in the mailbox) and
//! its `&mut State`.
//!
//! Around each handler run it
//! 1. opens the slot's reply gate (replies wait for the outcome),
//! 2. runs the handler, catching errors and panics,
//! 3. stores the new state if its encoding changed (conditional on the version it loaded),
//! 4. closes the gate: replies are released, or failed if the handler or the store failed.
//!
//! After a failure the in-memory state can no longer be trusted: the host stops taking
//! messages and hands what is left in its mailbox to the next activation, which starts from
//! the last stored state. It also stops when it has been idle for `passivate_after`, at
//! shutdown, when its slot drains it (the actor moved, or is deleted), and when the user
//! stops `myself`.

use std::{panic::AssertUnwindSafe, sync::Arc, sync::atomic::Ordering};

use futures::FutureExt;
use overmind_core::{
    ActorKey, Version,
    applied::AppliedCalls,
    codec::{self, CodecError, Lease},
};
use ractor::{Actor, ActorProcessingErr, ActorRef, SpawnErr, SupervisionEvent};
use tokio::task::JoinHandle;

use crate::{
    Activation, ActivationError, Error, PersistError, VirtualActor,
    engine::current::Chain,
    engine::mailbox::{Delivery, Inbox, Letter, Mailbox},
    engine::proxy::{Forward, Proxy},
    engine::reply::{self, Outcome, Settle},
    engine::slot::Slot,
};

type State<A> = <A as VirtualActor>::PersistedState;

/// What runs one activation: the user's actor and where it is reached.
pub(crate) struct Host<A: VirtualActor> {
    actor: A,
    slot: Arc<Slot<A>>,
    /// The proxy: the `ActorRef` the user's actor is given.
    myself: ActorRef<A::Msg>,
    mailbox: Mailbox<A::Msg>,
}

/// A host whose `pre_start` succeeded, ready to serve.
pub(crate) struct Running<A: VirtualActor> {
    host: Host<A>,
    st: HostState<A>,
    inbox: Inbox<A::Msg>,
    /// Ends when the proxy stops.
    proxy: JoinHandle<()>,
    proxy_ended: bool,
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
    /// The idempotent calls the actor applied, as stored (decoded, and their encoding).
    pub(crate) applied: (AppliedCalls, Vec<u8>),
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
    /// The idempotent calls applied, stored with the state.
    applied: AppliedCalls,
    /// Their encoding as the store holds it, or as the next save writes it.
    applied_bytes: Vec<u8>,
    /// Whether a call was applied since the last save, so the next save must write.
    applied_changed: bool,
    /// Kept empty between handlers, for the gate's parked replies.
    parked: Vec<Arc<dyn Settle>>,
}

/// Why a host stopped taking messages, which says what becomes of the rest of its mailbox.
enum Ending {
    /// It reached the drain marker (passivation, shutdown, a move, a delete): everything
    /// sent before was handled, and what is left was sent to `myself` since. It goes to the
    /// next activation, unless the node is shutting down: then it is dropped (logged), so a
    /// handler that keeps sending to itself cannot keep the shutdown from ending.
    Drained,
    /// Stopped by the user, or a handler or a save failed: the rest goes to the next
    /// activation.
    HandOver,
    /// This activation never started properly (post_start failed): the rest fails.
    StartFailed(Error),
}

pub(crate) fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = panic.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".to_owned()
    }
}

/// Spawns the proxy and runs the user's `pre_start` for `loaded`: a host ready to serve, and
/// its mailbox for the slot.
pub(crate) async fn start<A: VirtualActor>(
    slot: &Arc<Slot<A>>,
    loaded: Loaded<State<A>>,
) -> Result<(Running<A>, Mailbox<A::Msg>), ActivationError> {
    let rt = &slot.kind.rt;
    let actor = slot
        .kind
        .make_actor()
        .ok_or_else(|| ActivationError::StartFailed("the Overmind was dropped".into()))?;
    let (mailbox, inbox) = Mailbox::new();
    let forward = Forward {
        mailbox: mailbox.clone(),
        slot: slot.clone(),
    };
    let name = rt.distribution().and_then(|d| d.activation_name());
    let spawned = match rt.supervisor.get() {
        Some(supervisor) => {
            Actor::spawn_linked(name, Proxy::<A>::new(), forward, supervisor.clone()).await
        }
        None => Actor::spawn(name, Proxy::<A>::new(), forward).await,
    };
    let (myself, proxy) = spawned.map_err(|e| {
        ActivationError::StartFailed(match e {
            SpawnErr::StartupFailed(reason) => reason.to_string(),
            other => other.to_string(),
        })
    })?;
    let host = Host {
        actor,
        slot: slot.clone(),
        myself,
        mailbox,
    };
    match host.pre_start(loaded).await {
        Ok(st) => {
            let mailbox = host.mailbox.clone();
            let running = Running {
                host,
                st,
                inbox,
                proxy,
                proxy_ended: false,
            };
            Ok((running, mailbox))
        }
        Err(reason) => {
            host.myself.stop(None);
            let _ = proxy.await;
            Err(ActivationError::StartFailed(reason))
        }
    }
}

impl<A: VirtualActor> Host<A> {
    /// Runs the user's `pre_start` on the loaded state.
    async fn pre_start(&self, loaded: Loaded<State<A>>) -> Result<HostState<A>, String> {
        let (stored, saved) = match loaded.stored {
            Some((state, payload)) => (Some(state), Some(payload)),
            None => (None, None),
        };
        let mut key = Some(self.slot.key.clone());
        let activation = Activation::new(self.slot.key.clone(), stored);
        let started = crate::engine::current::scope(
            self.myself.get_id(),
            &mut key,
            Chain::default(),
            AssertUnwindSafe(self.actor.pre_start(self.myself.clone(), activation)).catch_unwind(),
        )
        .await;
        let user = match started {
            Ok(Ok(user)) => user,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(panic) => return Err(format!("pre_start {}", panic_message(panic))),
        };
        // A new actor's initial state is not written until a handler changes it.
        let saved = match saved {
            Some(bytes) => bytes,
            None => {
                let encoded = AssertUnwindSafe(|| codec::encode_state(&user));
                match std::panic::catch_unwind(encoded) {
                    Ok(encoded) => encoded.unwrap_or_default(),
                    Err(panic) => {
                        return Err(format!("the state's Serialize {}", panic_message(panic)));
                    }
                }
            }
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
            applied: loaded.applied.0,
            applied_bytes: loaded.applied.1,
            applied_changed: false,
            parked: Vec::new(),
        })
    }

    /// Runs the user's `post_start`; an error if it failed.
    async fn post_start(&self, st: &mut HostState<A>) -> Option<Ending> {
        let started = crate::engine::current::scope(
            self.myself.get_id(),
            &mut st.key,
            Chain::default(),
            AssertUnwindSafe(self.actor.post_start(self.myself.clone(), &mut st.user))
                .catch_unwind(),
        )
        .await;
        let reason = match started {
            Ok(Ok(())) => return None,
            Ok(Err(e)) => e.to_string(),
            Err(panic) => panic_message(panic),
        };
        let error = Error::ActivationFailed {
            key: self.slot.key.clone(),
            cause: crate::ActivationError::StartFailed(format!("post_start: {reason}")),
        };
        tracing::error!(key = %self.slot.key, %error, "post_start failed");
        self.slot.begin_stop();
        Some(Ending::StartFailed(error))
    }

    /// Stores the state if its encoding changed since the last save.
    async fn persist(&self, st: &mut HostState<A>) -> Result<(), PersistError> {
        let rt = &self.slot.kind.rt;
        codec::encode_state_into(&st.user, &mut st.scratch)?;
        if st.scratch == st.saved && !st.applied_changed {
            rt.stats.skipped_writes.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        // A state that encodes but does not decode (serde shapes bincode cannot read back)
        // would be a lost write: refuse it before anyone is told it was stored.
        codec::decode_state::<State<A>>(&st.scratch)?;
        if st.applied_changed {
            st.applied_bytes = st.applied.encode()?;
        }
        let schema = self.slot.kind.schema.current();
        let record = codec::encode_record(
            A::KIND,
            st.lease.as_ref(),
            Some((schema, &st.scratch)),
            &st.applied_bytes,
        );
        let version = rt.store.save(&self.slot.key, st.version, &record).await?;
        st.version = version;
        st.applied_changed = false;
        std::mem::swap(&mut st.saved, &mut st.scratch);
        rt.stats.writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Runs one handler (for a message that came with `relay`, if a call or an acknowledged
    /// cast) under the reply gate, then stores. A call with an idempotency key is recorded as
    /// applied in the same save. A failure ends the activation.
    async fn run<F>(
        &self,
        st: &mut HostState<A>,
        relay: Option<&Arc<dyn Settle>>,
        handler: F,
    ) -> Option<Ending>
    where
        F: AsyncFnOnce(&mut State<A>) -> Result<(), ActorProcessingErr>,
    {
        let key = &self.slot.key;
        let placement = &self.slot.kind.rt.placement;
        let chain = relay.map(|r| r.meta().chain.clone()).unwrap_or_default();
        self.slot.gate.open();
        let ran = crate::engine::current::scope(
            self.myself.get_id(),
            &mut st.key,
            chain,
            AssertUnwindSafe(handler(&mut st.user)).catch_unwind(),
        )
        .await;
        let mut outcome: Outcome = match ran {
            Ok(Ok(())) => {
                if let Some(relay) = relay {
                    if let Some(call) = &relay.meta().idempotency_key {
                        let reply = relay.capture();
                        st.applied
                            .record(call.to_string(), reply, A::REMEMBERED_CALLS);
                        st.applied_changed = true;
                    }
                }
                // The state's serde code is the application's: a panic in it fails the save.
                match AssertUnwindSafe(self.persist(st)).catch_unwind().await {
                    Ok(saved) => saved,
                    Err(panic) => Err(PersistError::Codec(CodecError::Encode {
                        type_name: std::any::type_name::<State<A>>(),
                        reason: panic_message(panic),
                    })),
                }
                .map_err(|cause| Error::PersistFailed {
                    key: key.clone(),
                    cause,
                })
            }
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
        // The message's own relay first: one whose reply was taken to be kept is settled
        // with this outcome before any late wake could find the gate closed.
        if let Some(relay) = relay {
            relay.handled(&outcome);
        }
        self.slot.gate.close(&outcome, &mut st.parked);
        self.slot.touch();
        let error = outcome.err()?;
        let rt = &self.slot.kind.rt;
        rt.stats.handler_failures.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(key = %key, %error, "handler failed; restarting the activation from storage");
        self.slot.begin_stop();
        Some(Ending::HandOver)
    }

    /// Handles one message, unless this node may not serve now.
    async fn handle(&self, st: &mut HostState<A>, letter: Letter<A::Msg>) -> Option<Ending> {
        if !self.slot.kind.rt.placement.serving_as(st.member) {
            // This node may not serve now (its lease ran out): pass the message on, unhandled,
            // to wherever the actor is placed next.
            tracing::warn!(key = %self.slot.key, "lease expired: stopping the activation without handling");
            self.slot.begin_stop();
            self.slot.hand_over(letter);
            return Some(Ending::HandOver);
        }
        let Letter { msg, relay } = letter;
        // A call's relay stays registered as its reply port's waker; here it says whether
        // the call may still start, which handlers wait for it, and whether it was applied.
        if let Some(relay) = &relay {
            let applied =
                (relay.meta().idempotency_key.as_ref()).and_then(|call| st.applied.find(call));
            if let Some(applied) = applied {
                // Applied before: answer with what it answered (even past its timeout: it
                // did take effect), and do not apply it again.
                relay.replay(applied.reply.as_deref());
                self.slot.touch();
                return None;
            }
            if !relay.begin() {
                return None;
            }
        }
        let me = self.myself.clone();
        self.run(st, relay.as_ref(), async move |user| {
            self.actor.handle(me, msg, user).await
        })
        .await
    }

    /// Handles what the mailbox gave (`None`: it is closed).
    async fn deliver(
        &self,
        st: &mut HostState<A>,
        delivery: Option<Delivery<A::Msg>>,
    ) -> Option<Ending> {
        match delivery {
            Some(Delivery::Letter(letter)) => self.handle(st, letter).await,
            Some(Delivery::Supervision(event)) => self.supervise(st, event).await,
            Some(Delivery::Drain) | None => Some(Ending::Drained),
        }
    }

    /// Passes a child's supervision event to the user's actor.
    async fn supervise(&self, st: &mut HostState<A>, event: SupervisionEvent) -> Option<Ending> {
        let me = self.myself.clone();
        self.run(st, None, async move |user| {
            self.actor.handle_supervisor_evt(me, event, user).await
        })
        .await
    }

    /// Stops routing to this activation and asks it to drain what it has.
    fn stop(&self, why: &str) {
        if self.slot.begin_stop() {
            tracing::debug!(key = %self.slot.key, why, "stopping activation");
            self.mailbox.drain();
        }
    }

    /// Runs the user's `post_stop` and tells the distribution the lease is free.
    async fn post_stop(&self, st: &mut HostState<A>) {
        // Every handled message is already stored; passivation has nothing left to write.
        self.slot.kind.rt.activation_event(
            &self.slot.key,
            st.activation,
            st.member,
            crate::ActivationEventKind::Stopped,
        );
        let stopped = crate::engine::current::scope(
            self.myself.get_id(),
            &mut st.key,
            Chain::default(),
            AssertUnwindSafe(self.actor.post_stop(self.myself.clone(), &mut st.user))
                .catch_unwind(),
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
    }
}

impl<A: VirtualActor> Running<A> {
    /// Serves the activation until it stops: idle for `passivate_after`, at shutdown, drained
    /// by its slot, stopped by the user, or after a failure.
    pub(crate) async fn serve(mut self) {
        let ending = match self.host.post_start(&mut self.st).await {
            Some(ending) => ending,
            None => self.take_messages().await,
        };
        self.finish(ending).await;
    }

    /// Takes messages until the host must stop.
    async fn take_messages(&mut self) -> Ending {
        let Self {
            host,
            st,
            inbox,
            proxy,
            proxy_ended,
        } = self;
        let rt = host.slot.kind.rt.clone();
        let mut shutdown = rt.shutdown_signal();
        let shutdown = shutdown.changed();
        tokio::pin!(shutdown);
        let mut stopping = false;
        let idle = tokio::time::sleep_until(idle_deadline::<A>(&host.slot));
        tokio::pin!(idle);
        // Messages taken in a row without waiting: the host yields after a batch, so a busy
        // mailbox cannot keep the thread from its other tasks.
        let mut in_a_row = 0u32;
        loop {
            if !stopping && rt.is_closing() {
                host.stop("shutdown");
                stopping = true;
            }
            // Fast path: a message already waiting is taken without the timers.
            if in_a_row < BATCH && !*proxy_ended && !proxy.is_finished() {
                if let Ok(delivery) = inbox.try_recv() {
                    in_a_row += 1;
                    if let Some(ending) = host.deliver(st, Some(delivery)).await {
                        return ending;
                    }
                    continue;
                }
            }
            if in_a_row >= BATCH {
                tokio::task::yield_now().await;
            }
            in_a_row = 0;
            // Biased: a stopped `myself` is noticed before the next message, and a busy
            // mailbox is served before the timers are looked at.
            let ending = tokio::select! {
                biased;
                _ = &mut *proxy, if !*proxy_ended => {
                    *proxy_ended = true;
                    // The user stopped `myself`: this activation ends after the handler that
                    // asked, and what it has not taken waits for the next one.
                    tracing::debug!(key = %host.slot.key, "the activation stopped itself");
                    host.slot.begin_stop();
                    Some(Ending::HandOver)
                }
                delivery = inbox.recv() => host.deliver(st, delivery).await,
                _ = &mut idle, if !stopping && A::PASSIVATE_AFTER.is_some() => {
                    let after_ms = A::PASSIVATE_AFTER.map_or(u64::MAX, |d| d.as_millis() as u64);
                    if rt.now_ms().saturating_sub(host.slot.last_active_ms()) >= after_ms {
                        rt.stats.passivations.fetch_add(1, Ordering::Relaxed);
                        host.stop("idle");
                        stopping = true;
                    } else {
                        idle.as_mut().reset(idle_deadline::<A>(&host.slot));
                    }
                    None
                }
                _ = &mut shutdown, if !stopping => {
                    // The runtime closes, or is gone: stop as at shutdown.
                    host.stop("shutdown");
                    stopping = true;
                    None
                }
            };
            if let Some(ending) = ending {
                return ending;
            }
        }
    }

    /// Hands on or fails what is left in the mailbox, runs `post_stop`, stops the proxy.
    async fn finish(self, ending: Ending) {
        let Self {
            host,
            mut st,
            mut inbox,
            proxy,
            proxy_ended,
        } = self;
        // The proxy can no longer put anything in: what it receives from now on is sent
        // through the slot, behind what is handed over here.
        inbox.close();
        while let Ok(delivery) = inbox.try_recv() {
            let Delivery::Letter(letter) = delivery else {
                continue;
            };
            match &ending {
                Ending::Drained if letter.relay.is_none() && host.slot.kind.rt.is_closing() => {
                    tracing::debug!(key = %host.slot.key, "a message sent to myself during shutdown was dropped");
                }
                Ending::Drained | Ending::HandOver => host.slot.hand_over(letter),
                Ending::StartFailed(error) => fail(letter, error),
            }
        }
        host.post_stop(&mut st).await;
        // Drained, not stopped: ractor takes a stop before queued messages, and what the
        // handlers just sent to `myself` must still reach the slot.
        let _ = host.myself.drain();
        if !proxy_ended {
            let _ = proxy.await;
        }
    }
}

/// How many waiting messages a host takes in a row before it yields.
const BATCH: u32 = 64;

/// When the activation counts as idle if nothing runs before.
fn idle_deadline<A: VirtualActor>(slot: &Slot<A>) -> tokio::time::Instant {
    let rt = &slot.kind.rt;
    let after = A::PASSIVATE_AFTER.unwrap_or(std::time::Duration::from_secs(86_400));
    rt.instant_at(slot.last_active_ms()) + after
}

/// Fails a message that will not be handled: its caller, if it is a call, gets `error`.
fn fail<M>(letter: Letter<M>, error: &Error) {
    if let Some(relay) = &letter.relay {
        reply::fail(relay, error.clone());
    }
}

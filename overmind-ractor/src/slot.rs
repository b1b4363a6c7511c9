//! One actor id on this node: where its messages go right now.
//!
//! A slot is in one of four phases:
//!
//! - `Idle`: no activation. The first message starts a lifecycle task and queues.
//! - `Starting`: the lifecycle is loading the state and spawning; messages queue.
//! - `Active`: messages go straight into the activation's mailbox.
//! - `Stopping`: the activation is draining (passivation, shutdown, or a failed handler);
//!   new messages queue for the next activation.
//!
//! Every send takes the slot's lock, so queueing and phase changes are ordered: a sender's
//! messages reach activations in the order it sent them, and none is lost between two
//! activations.

use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use overmind_core::ActorKey;
use parking_lot::Mutex;
use ractor::{ActorRef, MessagingErr};

use crate::{
    Error, SendError, VirtualActor, lifecycle,
    registry::Kind,
    reply::{Gate, Settle},
};

type Msg<A> = <A as ractor::Actor>::Msg;

pub(crate) struct Slot<A: VirtualActor> {
    pub(crate) key: ActorKey,
    pub(crate) kind: Arc<Kind<A>>,
    pub(crate) gate: Arc<Gate>,
    state: Mutex<SlotState<Msg<A>>>,
    /// When the last handler finished, in [`crate::runtime::Runtime::now_ms`] time.
    last_active_ms: AtomicU64,
}

enum Phase<M> {
    Idle,
    Starting,
    Active(ActorRef<M>),
    Stopping,
}

/// A message waiting for an activation, with its call's reply relay if it is a call.
pub(crate) struct Queued<M> {
    pub(crate) msg: M,
    pub(crate) relay: Option<Arc<dyn Settle>>,
}

struct SlotState<M> {
    phase: Phase<M>,
    /// Messages taken out of a failed activation's mailbox; delivered before `pending`.
    handover: VecDeque<M>,
    /// Messages sent while no activation was taking them.
    pending: VecDeque<Queued<M>>,
}

/// What a lifecycle does after its activation stopped.
pub(crate) enum AfterStop {
    /// Messages are waiting: activate again.
    Reactivate,
    /// Nothing waits: the slot is idle and the lifecycle ends.
    Done,
}

impl<A: VirtualActor> Slot<A> {
    pub(crate) fn new(key: ActorKey, kind: Arc<Kind<A>>) -> Self {
        let now = kind.rt.now_ms();
        Self {
            gate: Arc::new(Gate::new(key.clone())),
            key,
            kind,
            state: Mutex::new(SlotState {
                phase: Phase::Idle,
                handover: VecDeque::new(),
                pending: VecDeque::new(),
            }),
            last_active_ms: AtomicU64::new(now),
        }
    }

    /// Delivers `msg` to the current activation, or queues it for the next one.
    pub(crate) fn send(
        self: &Arc<Self>,
        msg: Msg<A>,
        relay: Option<Arc<dyn Settle>>,
    ) -> Result<(), SendError<Msg<A>>> {
        let rt = &self.kind.rt;
        if rt.is_closing() {
            return Err(self.shutting_down(msg));
        }
        let mut state = self.state.lock();
        match &state.phase {
            Phase::Active(actor) => match actor.cast(msg) {
                Ok(()) => {}
                // The activation stopped by itself (its handler called `stop`, say). Its
                // lifecycle sees it end and serves the queue with a new activation.
                Err(MessagingErr::SendErr(msg)) => state.pending.push_back(Queued { msg, relay }),
                Err(other) => {
                    drop(state);
                    tracing::error!(key = %self.key, error = %other, "activation refused a message");
                    if let Some(relay) = relay {
                        crate::reply::fail(
                            &relay,
                            Error::NoReply {
                                key: self.key.clone(),
                            },
                        );
                    }
                }
            },
            Phase::Starting | Phase::Stopping => state.pending.push_back(Queued { msg, relay }),
            Phase::Idle => {
                if !rt.try_start_lifecycle() {
                    drop(state);
                    return Err(self.shutting_down(msg));
                }
                state.phase = Phase::Starting;
                state.pending.push_back(Queued { msg, relay });
                drop(state);
                rt.tokio.spawn(lifecycle::run(self.clone()));
            }
        }
        Ok(())
    }

    fn shutting_down(&self, message: Msg<A>) -> SendError<Msg<A>> {
        SendError {
            message,
            error: Error::ShuttingDown {
                key: self.key.clone(),
            },
        }
    }

    /// A new activation is running: give it the queued messages, in order, then route to it.
    pub(crate) fn activated(&self, actor: &ActorRef<Msg<A>>) {
        let mut state = self.state.lock();
        while let Some(msg) = state.handover.pop_front() {
            if let Err(MessagingErr::SendErr(msg)) = actor.cast(msg) {
                // Already stopping by itself; the lifecycle will see it end and retry.
                state.handover.push_front(msg);
                break;
            }
        }
        while state.handover.is_empty() {
            let Some(Queued { msg, relay }) = state.pending.pop_front() else {
                break;
            };
            if let Err(MessagingErr::SendErr(msg)) = actor.cast(msg) {
                state.pending.push_front(Queued { msg, relay });
                break;
            }
        }
        state.phase = Phase::Active(actor.clone());
    }

    /// Stops routing to the activation (it is about to drain). False if it was not active.
    pub(crate) fn begin_stop(&self) -> bool {
        let mut state = self.state.lock();
        if matches!(state.phase, Phase::Active(_)) {
            state.phase = Phase::Stopping;
            true
        } else {
            false
        }
    }

    /// A failed activation hands over a message from its mailbox to the next activation.
    pub(crate) fn hand_over(&self, msg: Msg<A>) {
        self.state.lock().handover.push_back(msg);
    }

    /// The activation has ended.
    pub(crate) fn stopped(&self) -> AfterStop {
        let mut state = self.state.lock();
        if state.handover.is_empty() && state.pending.is_empty() {
            state.phase = Phase::Idle;
            AfterStop::Done
        } else {
            state.phase = Phase::Starting;
            AfterStop::Reactivate
        }
    }

    /// Activation failed: the slot goes idle and every waiting message is returned, to be
    /// failed outside the lock.
    pub(crate) fn activation_failed(&self) -> (Vec<Queued<Msg<A>>>, Vec<Msg<A>>) {
        let mut state = self.state.lock();
        state.phase = Phase::Idle;
        (
            state.pending.drain(..).collect(),
            state.handover.drain(..).collect(),
        )
    }

    /// Records that a handler just finished.
    pub(crate) fn touch(&self) {
        self.last_active_ms
            .store(self.kind.rt.now_ms(), Ordering::Relaxed);
    }

    pub(crate) fn last_active_ms(&self) -> u64 {
        self.last_active_ms.load(Ordering::Relaxed)
    }
}

impl<A: VirtualActor> Drop for Slot<A> {
    fn drop(&mut self) {
        self.kind.forget(self.key.id());
    }
}

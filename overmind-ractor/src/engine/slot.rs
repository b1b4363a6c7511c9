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
use tokio::sync::Notify;

use crate::{
    Error, SendError, VirtualActor,
    engine::lifecycle,
    engine::mailbox::{Letter, Mailbox},
    engine::registry::Kind,
    engine::reply::{Gate, Settle},
};

type Msg<A> = <A as ractor::Actor>::Msg;

pub(crate) struct Slot<A: VirtualActor> {
    pub(crate) key: ActorKey,
    pub(crate) kind: Arc<Kind<A>>,
    pub(crate) gate: Arc<Gate>,
    state: Mutex<SlotState<Msg<A>>>,
    /// When the last handler finished, in [`crate::engine::runtime::Runtime::now_ms`] time.
    last_active_ms: AtomicU64,
    /// Signalled when a host starts or ends, for the rebalancer.
    host_changed: Notify,
    /// Signalled when a release notice for the actor arrives (its previous activation has
    /// stopped), for a lifecycle waiting to take it over (a stored permit covers a signal
    /// that comes first).
    pub(crate) released: Notify,
}

enum Phase<M> {
    Idle,
    Starting,
    Active(Mailbox<M>),
    Stopping,
}

/// What waits for the next activation, in the order it was sent.
pub(crate) enum Queued<M> {
    /// A message, with its call's reply relay if it is a call.
    Message(Letter<M>),
    /// A request to delete the actor: handled once every message sent before it was, and
    /// before any message sent after it.
    Delete(Deletion),
}

/// Where a delete request's outcome goes.
pub(crate) type Deletion = tokio::sync::oneshot::Sender<Result<(), Error>>;

struct SlotState<M> {
    phase: Phase<M>,
    /// The epoch under which the current host was allowed to activate; set when the decision
    /// is taken, before loading, so the rebalancer cannot miss a host about to start.
    host_epoch: Option<u64>,
    /// The newest epoch in which the rebalancer found this actor not settled here: a host
    /// allowed under an older epoch must stop.
    retired_at: u64,
    /// Another node, waiting to take the actor over, asked for the running host to stop
    /// once it is retired.
    release_asked: bool,
    /// Messages a stopped activation did not take; delivered before `pending`.
    handover: VecDeque<Letter<M>>,
    /// Messages sent while no activation was taking them.
    pending: VecDeque<Queued<M>>,
}

/// Drains the running host if it was allowed under an epoch older than the actor's
/// retirement.
fn drain_if_retired<M>(state: &mut SlotState<M>) {
    let retired = state.host_epoch.is_some_and(|e| e < state.retired_at);
    if let (true, Phase::Active(mailbox)) = (retired, &state.phase) {
        mailbox.drain();
        state.phase = Phase::Stopping;
    }
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
                host_epoch: None,
                retired_at: 0,
                release_asked: false,
                handover: VecDeque::new(),
                pending: VecDeque::new(),
            }),
            last_active_ms: AtomicU64::new(now),
            host_changed: Notify::new(),
            released: Notify::new(),
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
        let letter = Letter { msg, relay };
        let mut state = self.state.lock();
        match &state.phase {
            Phase::Active(mailbox) => {
                if let Err(letter) = mailbox.deliver(letter) {
                    // The host ended without stopping first (it panicked): its lifecycle
                    // sees it end and serves the queue with a new activation.
                    state.pending.push_back(Queued::Message(letter))
                }
            }
            Phase::Starting | Phase::Stopping => state.pending.push_back(Queued::Message(letter)),
            Phase::Idle => {
                if !rt.try_start_lifecycle() {
                    drop(state);
                    return Err(self.shutting_down(letter.msg));
                }
                state.phase = Phase::Starting;
                state.pending.push_back(Queued::Message(letter));
                drop(state);
                rt.tokio.spawn(lifecycle::run(self.clone()));
            }
        }
        Ok(())
    }

    /// Queues a delete of the actor behind the messages already sent: a running activation
    /// drains them and stops, then the lifecycle deletes the record and reports to `done`.
    pub(crate) fn delete(self: &Arc<Self>, done: Deletion) -> Result<(), Error> {
        let rt = &self.kind.rt;
        if rt.is_closing() {
            return Err(Error::ShuttingDown {
                key: self.key.clone(),
            });
        }
        let mut state = self.state.lock();
        state.pending.push_back(Queued::Delete(done));
        match &state.phase {
            Phase::Active(mailbox) => {
                mailbox.drain();
                state.phase = Phase::Stopping;
            }
            Phase::Starting | Phase::Stopping => {}
            Phase::Idle => {
                if !rt.try_start_lifecycle() {
                    state.pending.pop_back();
                    return Err(Error::ShuttingDown {
                        key: self.key.clone(),
                    });
                }
                state.phase = Phase::Starting;
                drop(state);
                rt.tokio.spawn(lifecycle::run(self.clone()));
            }
        }
        Ok(())
    }

    /// The delete request at the head of the queue, if one is due now (no message before it
    /// is still waiting).
    pub(crate) fn take_delete(&self) -> Option<Deletion> {
        let mut state = self.state.lock();
        if !state.handover.is_empty() || !matches!(state.pending.front(), Some(Queued::Delete(_))) {
            return None;
        }
        match state.pending.pop_front() {
            Some(Queued::Delete(done)) => Some(done),
            _ => None,
        }
    }

    /// Puts back a delete that could not run yet (the lease of a newer epoch stands in the
    /// way): it stays first in line.
    pub(crate) fn requeue_delete(&self, done: Deletion) {
        self.state.lock().pending.push_front(Queued::Delete(done));
    }

    fn shutting_down(&self, message: Msg<A>) -> SendError<Msg<A>> {
        SendError {
            message,
            error: Error::ShuttingDown {
                key: self.key.clone(),
            },
        }
    }

    /// Records the lifecycle's decision to activate under `epoch`, unless the actor was
    /// retired in a newer epoch meanwhile.
    pub(crate) fn claim(&self, epoch: u64) -> bool {
        let mut state = self.state.lock();
        if state.retired_at > epoch {
            return false;
        }
        state.host_epoch = Some(epoch);
        true
    }

    /// The epoch the current host was allowed under, if one runs or is starting.
    pub(crate) fn host_epoch(&self) -> Option<u64> {
        self.state.lock().host_epoch
    }

    /// The rebalancer found this actor not settled here in `epoch`: a host allowed under an
    /// older epoch must stop ([`Self::stop_retired`]; at once if its new owner asked), and no
    /// lifecycle may start one under such an epoch. Returns true if such a host is running or
    /// starting.
    pub(crate) fn retire(&self, epoch: u64) -> bool {
        let mut state = self.state.lock();
        state.retired_at = state.retired_at.max(epoch);
        if state.release_asked {
            drain_if_retired(&mut state);
        }
        state.host_epoch.is_some_and(|e| e < epoch)
    }

    /// Drains the running host if it was retired (it stops once its mailbox is handled).
    /// Until then it serves as before: the actor's new owner waits for it to stop.
    pub(crate) fn stop_retired(&self) {
        drain_if_retired(&mut self.state.lock());
    }

    /// The actor's new owner waits for the running host to stop: stop it as soon as it is
    /// retired (now, if it already is).
    pub(crate) fn ask_release(&self) {
        let mut state = self.state.lock();
        state.release_asked = true;
        drain_if_retired(&mut state);
    }

    /// Waits until no host allowed under an epoch older than `epoch` runs.
    pub(crate) async fn retired(&self, epoch: u64) {
        loop {
            let notified = self.host_changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.state.lock().host_epoch.is_none_or(|e| e >= epoch) {
                return;
            }
            notified.await;
        }
    }

    /// A new activation is running: give it the queued messages, in order, then route to it.
    /// If it was retired while starting, it is drained at once instead.
    pub(crate) fn activated(&self, mailbox: &Mailbox<Msg<A>>) {
        let mut state = self.state.lock();
        state.release_asked = false;
        if state.host_epoch.is_some_and(|e| state.retired_at > e) {
            state.phase = Phase::Stopping;
            mailbox.drain();
            return;
        }
        // The host has not started taking messages, so its mailbox takes every one.
        while let Some(letter) = state.handover.pop_front() {
            if let Err(letter) = mailbox.deliver(letter) {
                state.handover.push_front(letter);
                break;
            }
        }
        while state.handover.is_empty() {
            match state.pending.pop_front() {
                None => break,
                Some(Queued::Message(letter)) => {
                    if let Err(letter) = mailbox.deliver(letter) {
                        state.pending.push_front(Queued::Message(letter));
                        break;
                    }
                }
                Some(delete @ Queued::Delete(_)) => {
                    state.pending.push_front(delete);
                    break;
                }
            }
        }
        if state.pending.iter().any(|q| matches!(q, Queued::Delete(_))) {
            // The messages before the delete are in the mailbox: the activation handles them
            // and stops, and the lifecycle deletes after it. Later messages wait behind.
            state.phase = Phase::Stopping;
            mailbox.drain();
            return;
        }
        state.phase = Phase::Active(mailbox.clone());
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

    /// Stops the activation, if any, without retiring the actor (the lease is lost: it comes
    /// back here once the lease is regained, if this node still owns it).
    pub(crate) fn stop_now(&self) {
        let mut state = self.state.lock();
        if let Phase::Active(mailbox) = &state.phase {
            mailbox.drain();
            state.phase = Phase::Stopping;
        }
    }

    /// A stopping activation hands over a message it did not take to the next activation.
    pub(crate) fn hand_over(&self, letter: Letter<Msg<A>>) {
        self.state.lock().handover.push_back(letter);
    }

    /// The activation has ended.
    pub(crate) fn stopped(&self) -> AfterStop {
        let after = {
            let mut state = self.state.lock();
            state.host_epoch = None;
            if state.handover.is_empty() && state.pending.is_empty() {
                state.phase = Phase::Idle;
                AfterStop::Done
            } else {
                state.phase = Phase::Starting;
                AfterStop::Reactivate
            }
        };
        self.host_changed.notify_waiters();
        after
    }

    /// Nothing will be activated here for now (activation failed, the actor lives elsewhere,
    /// or it cannot be placed): the slot goes idle and every waiting message is returned, to
    /// be failed or forwarded outside the lock. Handed-over messages come first.
    pub(crate) fn give_up(&self) -> Vec<Queued<Msg<A>>> {
        let taken = {
            let mut state = self.state.lock();
            state.phase = Phase::Idle;
            state.host_epoch = None;
            let handed_over = std::mem::take(&mut state.handover);
            let handed_over = handed_over.into_iter().map(Queued::Message);
            handed_over.chain(state.pending.drain(..)).collect()
        };
        self.host_changed.notify_waiters();
        taken
    }

    /// The activation failed: returns what waited before the first delete request
    /// (handed-over messages first), to be failed, and whether a delete is next. If one is,
    /// the lifecycle runs it (a damaged record can still be deleted); if not, the slot goes
    /// idle.
    pub(crate) fn give_up_until_delete(&self) -> (Vec<Queued<Msg<A>>>, bool) {
        let taken = {
            let mut state = self.state.lock();
            let handed_over = std::mem::take(&mut state.handover);
            let mut before: Vec<_> = handed_over.into_iter().map(Queued::Message).collect();
            while let Some(queued) = state.pending.pop_front() {
                if let Queued::Delete(_) = queued {
                    state.pending.push_front(queued);
                    break;
                }
                before.push(queued);
            }
            let delete_next = !state.pending.is_empty();
            state.host_epoch = None;
            if !delete_next {
                state.phase = Phase::Idle;
            }
            (before, delete_next)
        };
        self.host_changed.notify_waiters();
        taken
    }

    /// Withdraws a claim whose activation did not start; the lifecycle decides again, with
    /// the queue as it is.
    pub(crate) fn unclaim(&self) {
        self.state.lock().host_epoch = None;
        self.host_changed.notify_waiters();
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

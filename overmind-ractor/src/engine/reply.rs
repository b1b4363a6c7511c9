//! Reply gating: a call's reply reaches the caller only after the state that produced it is
//! stored.
//!
//! The user's handler answers through an ordinary ractor `RpcReplyPort`. Overmind keeps the
//! receiving end, wrapped in a [`Relay`] registered as the channel's waker. When the handler
//! replies, the relay wakes and reports to its slot's [`Gate`]:
//!
//! - if a handler is running, the reply may depend on that handler's state change, so it is
//!   parked until the handler's outcome is known: released when the new state is stored, or
//!   turned into an error if the handler or the store failed;
//! - if no handler is running, every state the reply can depend on is already stored, so it is
//!   released at once (a reply sent later from a spawned task, say).
//!
//! No polling, no extra task per call: the relay runs inside the handler's `reply.send()`.

use std::{
    future::Future,
    panic::AssertUnwindSafe,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
    },
    task::{Context, Wake, Waker},
    time::Duration,
};

use overmind_core::ActorKey;
use parking_lot::Mutex;
use tokio::{sync::oneshot, time::Instant};

use crate::{Error, engine::current::Chain};

/// What a call carries besides its message.
#[derive(Clone, Default)]
pub(crate) struct CallMeta {
    /// The caller's timeout: once it has passed, the call's handler is not started.
    pub(crate) timeout: Option<Timeout>,
    /// The actors whose handlers wait for this call.
    pub(crate) chain: Chain,
    /// The call's idempotency key, if it has one: an actor applies a call with a given key
    /// once, and answers a repeat with the first reply.
    pub(crate) idempotency_key: Option<Arc<str>>,
    /// A cast whose sender waits until it was handled and stored (an [`Ack`]).
    pub(crate) acknowledged: bool,
}

/// How a call's reply is kept with the actor's state, for a repeat of an idempotent call.
pub(crate) struct ReplyCodec<T> {
    encode: fn(&T) -> Option<Vec<u8>>,
    decode: fn(&[u8]) -> Result<T, String>,
}

impl<T> Clone for ReplyCodec<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for ReplyCodec<T> {}

impl<T: serde::Serialize + serde::de::DeserializeOwned> ReplyCodec<T> {
    /// The reply's serde encoding, as states are encoded. The type's serde code is the
    /// application's: a panic in it is an encoding that failed, not a dead host.
    pub(crate) fn serde() -> Self {
        Self {
            encode: |value| {
                let encoded = AssertUnwindSafe(|| overmind_core::codec::encode_state(value).ok());
                std::panic::catch_unwind(encoded).ok().flatten()
            },
            decode: |bytes| {
                let decoded = AssertUnwindSafe(|| overmind_core::codec::decode_state(bytes));
                match std::panic::catch_unwind(decoded) {
                    Ok(decoded) => decoded.map_err(|e| e.to_string()),
                    Err(_) => Err("its Deserialize panicked".into()),
                }
            },
        }
    }
}

/// A call's timeout and when it ends.
#[derive(Clone, Copy)]
pub(crate) struct Timeout {
    pub(crate) after: Duration,
    pub(crate) deadline: Instant,
}

impl CallMeta {
    pub(crate) fn new(timeout: Option<Duration>, chain: Chain) -> Self {
        Self {
            // A timeout too far off to be an instant is as good as none.
            timeout: timeout.and_then(|after| {
                Some(Timeout {
                    after,
                    deadline: Instant::now().checked_add(after)?,
                })
            }),
            chain,
            idempotency_key: None,
            acknowledged: false,
        }
    }

    /// This metadata, for a cast whose sender waits for its acknowledgement.
    pub(crate) fn acknowledged(self) -> Self {
        Self {
            acknowledged: true,
            ..self
        }
    }

    /// This call's metadata with an idempotency key.
    pub(crate) fn with_idempotency_key(self, key: Option<Arc<str>>) -> Self {
        Self {
            idempotency_key: key,
            ..self
        }
    }

    /// What time is left of the timeout (zero once it passed); `None` without one.
    pub(crate) fn remaining(&self) -> Option<Duration> {
        self.timeout
            .map(|t| t.deadline.saturating_duration_since(Instant::now()))
    }
}

/// The outcome of one handler run, as replies see it.
pub(crate) type Outcome = Result<(), Error>;

/// Per-slot gate: is a handler running, and which replies wait for its outcome.
pub(crate) struct Gate {
    key: ActorKey,
    inner: Mutex<GateInner>,
}

#[derive(Default)]
struct GateInner {
    in_handler: bool,
    parked: Vec<Arc<dyn Settle>>,
}

impl Gate {
    pub(crate) fn new(key: ActorKey) -> Self {
        Self {
            key,
            inner: Mutex::new(GateInner::default()),
        }
    }

    pub(crate) fn key(&self) -> &ActorKey {
        &self.key
    }

    /// A handler starts: replies from now on wait for its outcome.
    pub(crate) fn open(&self) {
        self.inner.lock().in_handler = true;
    }

    /// The handler's outcome is known (its state stored, or not): settle the parked replies.
    /// `spare` is an empty vector the caller keeps between handlers: the parked replies are
    /// swapped into it, so neither side allocates once both have grown.
    pub(crate) fn close(&self, outcome: &Outcome, spare: &mut Vec<Arc<dyn Settle>>) {
        {
            let mut inner = self.inner.lock();
            inner.in_handler = false;
            std::mem::swap(&mut inner.parked, spare);
        }
        // Outside the lock: settling drops reply values, which may drop other ports.
        for relay in spare.drain(..) {
            relay.settle(outcome);
        }
    }

    fn arrived(&self, relay: Arc<dyn Settle>) {
        {
            let mut inner = self.inner.lock();
            if inner.in_handler {
                inner.parked.push(relay);
                return;
            }
        }
        relay.settle(&Ok(()));
    }
}

/// A reply that can be released or failed once.
pub(crate) trait Settle: Send + Sync {
    /// Releases the reply to the caller if `outcome` is Ok, or reports the failure instead.
    fn settle(&self, outcome: &Outcome);
    /// What the call carries.
    fn meta(&self) -> &CallMeta;
    /// The host is about to run the call's handler: false if it must not, because the caller
    /// withdrew the call or its timeout passed (the caller is then told it was not handled).
    fn begin(&self) -> bool;
    /// The reply the handler sent, encoded to be kept with the state (for an idempotent
    /// call, after its handler returned); `None` if it sent none or it cannot be kept.
    fn capture(&self) -> Option<Vec<u8>>;
    /// Answers a repeat of an idempotent call that was applied: with its kept reply, or, if
    /// none was kept, with an error saying it was applied.
    fn replay(&self, reply: Option<&[u8]>);
    /// The message's handler ran and its outcome is known (its state stored, or not). A
    /// call's reply is settled by the gate instead, when its port wakes it.
    fn handled(&self, _outcome: &Outcome) {}
}

/// The acknowledgement of a cast whose sender waits until it was handled and stored: it has
/// no reply port, so the host settles it when the handler's outcome is known.
pub(crate) struct Ack {
    key: ActorKey,
    meta: CallMeta,
    phase: AtomicU8,
    to_sender: Mutex<Option<oneshot::Sender<Result<(), Error>>>>,
}

impl Ack {
    /// An acknowledgement for a cast to `key`, and the sender's end.
    pub(crate) fn new(
        key: ActorKey,
        meta: CallMeta,
    ) -> (Arc<Self>, oneshot::Receiver<Result<(), Error>>) {
        let (to_sender, sender) = oneshot::channel();
        let ack = Arc::new(Self {
            key,
            meta: meta.acknowledged(),
            phase: AtomicU8::new(QUEUED),
            to_sender: Mutex::new(Some(to_sender)),
        });
        (ack, sender)
    }

    /// The sender stops waiting: true if the handler had not started, and now never will.
    pub(crate) fn withdraw(&self) -> bool {
        withdraw(&self.phase)
    }
}

impl Settle for Ack {
    fn settle(&self, outcome: &Outcome) {
        if let Some(to_sender) = self.to_sender.lock().take() {
            let _ = to_sender.send(outcome.clone());
        }
    }

    fn meta(&self) -> &CallMeta {
        &self.meta
    }

    fn begin(&self) -> bool {
        begin(&self.phase, &self.meta, || {
            self.settle(&Err(expired(&self.key, &self.meta)));
        })
    }

    fn capture(&self) -> Option<Vec<u8>> {
        // Applied, with nothing to answer but that.
        Some(Vec::new())
    }

    fn replay(&self, _reply: Option<&[u8]>) {
        self.settle(&Ok(()));
    }

    fn handled(&self, outcome: &Outcome) {
        self.settle(outcome);
    }
}

/// Moves a call from queued to withdrawn: true if it had not started (or was withdrawn).
fn withdraw(phase: &AtomicU8) -> bool {
    match phase.compare_exchange(QUEUED, WITHDRAWN, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => true,
        Err(phase) => phase == WITHDRAWN,
    }
}

/// Moves a call from queued to started, unless its timeout has passed (then `expired` tells
/// its caller) or its caller withdrew it.
fn begin(phase: &AtomicU8, meta: &CallMeta, expired: impl FnOnce()) -> bool {
    if let Some(timeout) = meta.timeout {
        if Instant::now() >= timeout.deadline && withdraw(phase) {
            expired();
            return false;
        }
    }
    phase
        .compare_exchange(QUEUED, STARTED, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
}

/// The error for a call whose timeout passed before its handler started.
fn expired(key: &ActorKey, meta: &CallMeta) -> Error {
    Error::Expired {
        key: key.clone(),
        timeout: meta.timeout.map(|t| t.after).unwrap_or_default(),
    }
}

/// Where a call is, between its caller and its handler.
const QUEUED: u8 = 0;
const STARTED: u8 = 1;
const WITHDRAWN: u8 = 2;

/// Carries one call's reply from the handler's port to the caller, through the gate.
pub(crate) struct Relay<T> {
    gate: Arc<Gate>,
    meta: CallMeta,
    /// For a call whose reply may be kept (an idempotent call).
    codec: Option<ReplyCodec<T>>,
    /// [`QUEUED`], [`STARTED`] or [`WITHDRAWN`]: whichever of the host and the caller moves
    /// it from `QUEUED` first decides whether the handler runs.
    phase: AtomicU8,
    state: Mutex<RelayState<T>>,
}

enum RelayState<T> {
    Waiting {
        from_handler: oneshot::Receiver<T>,
        to_caller: oneshot::Sender<Result<T, Error>>,
    },
    /// The reply, taken out of the handler's channel to be kept with the state; released
    /// like one still in the channel.
    Replied {
        value: T,
        to_caller: oneshot::Sender<Result<T, Error>>,
    },
    Settled,
}

impl<T: Send + 'static> Relay<T> {
    /// A relay for a new call: the port to put in the message, the relay, and the caller's end.
    /// `codec` is given for a call whose reply may be kept with the state (an idempotent one).
    #[allow(clippy::type_complexity)] // reason: three distinct ends of one call, named at the call site
    pub(crate) fn new(
        gate: Arc<Gate>,
        meta: CallMeta,
        codec: Option<ReplyCodec<T>>,
    ) -> (
        oneshot::Sender<T>,
        Arc<Self>,
        oneshot::Receiver<Result<T, Error>>,
    ) {
        let (port, from_handler) = oneshot::channel();
        let (to_caller, caller) = oneshot::channel();
        let relay = Arc::new(Self {
            gate,
            meta,
            codec,
            phase: AtomicU8::new(QUEUED),
            state: Mutex::new(RelayState::Waiting {
                from_handler,
                to_caller,
            }),
        });
        relay.clone().listen();
        (port, relay, caller)
    }

    /// Registers this relay as the waker of the handler's channel. Called before the port is
    /// handed out, so the poll always finds the channel empty.
    fn listen(self: Arc<Self>) {
        let waker = Waker::from(self.clone());
        let mut cx = Context::from_waker(&waker);
        let mut state = self.state.lock();
        if let RelayState::Waiting { from_handler, .. } = &mut *state {
            // Unconstrained: tokio's cooperative budget could otherwise refuse the poll and
            // wake us at once, leaving no waker registered.
            let mut recv = tokio::task::unconstrained(from_handler);
            let polled = Pin::new(&mut recv).poll(&mut cx);
            debug_assert!(polled.is_pending(), "the port has not been handed out yet");
        }
    }
}

impl<T> Relay<T> {
    /// The caller stops waiting: true if the handler had not started, and now never will.
    pub(crate) fn withdraw(&self) -> bool {
        withdraw(&self.phase)
    }
}

impl<T: Send + 'static> Wake for Relay<T> {
    fn wake(self: Arc<Self>) {
        self.gate.clone().arrived(self);
    }
}

impl<T: Send + 'static> Settle for Relay<T> {
    fn settle(&self, outcome: &Outcome) {
        let (reply, to_caller) = {
            let mut state = self.state.lock();
            match (std::mem::replace(&mut *state, RelayState::Settled), outcome) {
                (RelayState::Settled, _) => return,
                // A failure settles the call whether or not a reply was sent.
                (
                    RelayState::Waiting { to_caller, .. } | RelayState::Replied { to_caller, .. },
                    Err(e),
                ) => (Err(e.clone()), to_caller),
                (RelayState::Replied { value, to_caller }, Ok(())) => (Ok(value), to_caller),
                (
                    RelayState::Waiting {
                        mut from_handler,
                        to_caller,
                    },
                    Ok(()),
                ) => match from_handler.try_recv() {
                    Ok(value) => (Ok(value), to_caller),
                    // A wake with nothing sent yet: keep waiting (the waker stays registered).
                    Err(oneshot::error::TryRecvError::Empty) => {
                        *state = RelayState::Waiting {
                            from_handler,
                            to_caller,
                        };
                        return;
                    }
                    Err(oneshot::error::TryRecvError::Closed) => (
                        Err(Error::NoReply {
                            key: self.gate.key().clone(),
                        }),
                        to_caller,
                    ),
                },
            }
        };
        // The caller may have given up (timeout, dropped future): nothing to do then.
        let _ = to_caller.send(reply);
    }

    fn capture(&self) -> Option<Vec<u8>> {
        let codec = self.codec?;
        let mut state = self.state.lock();
        match std::mem::replace(&mut *state, RelayState::Settled) {
            RelayState::Waiting {
                mut from_handler,
                to_caller,
            } => match from_handler.try_recv() {
                Ok(value) => {
                    let kept = (codec.encode)(&value);
                    *state = RelayState::Replied { value, to_caller };
                    kept
                }
                Err(_) => {
                    *state = RelayState::Waiting {
                        from_handler,
                        to_caller,
                    };
                    None
                }
            },
            RelayState::Replied { value, to_caller } => {
                let kept = (codec.encode)(&value);
                *state = RelayState::Replied { value, to_caller };
                kept
            }
            RelayState::Settled => None,
        }
    }

    fn handled(&self, outcome: &Outcome) {
        // A reply taken out of its channel to be kept is settled by the host, with the
        // outcome of the save that keeps it: a wake that arrives after the gate closed must
        // not release it as if nothing had failed.
        // Only a relay with a codec (an idempotent call's) is ever captured.
        if self.codec.is_some() && matches!(*self.state.lock(), RelayState::Replied { .. }) {
            self.settle(outcome);
        }
    }

    fn replay(&self, reply: Option<&[u8]>) {
        let key = self.gate.key();
        let not_kept = |reason: String| Error::ReplyNotSent {
            key: key.clone(),
            reason: format!("the call was already applied under its idempotency key, {reason}"),
        };
        let result = match (reply, self.codec) {
            (Some(bytes), Some(codec)) => (codec.decode)(bytes)
                .map_err(|e| not_kept(format!("and its kept reply does not decode: {e}"))),
            _ => Err(not_kept(
                "and its reply was not kept (none was sent before the handler returned, or it was too long)".into(),
            )),
        };
        let to_caller = match std::mem::replace(&mut *self.state.lock(), RelayState::Settled) {
            RelayState::Waiting { to_caller, .. } | RelayState::Replied { to_caller, .. } => {
                to_caller
            }
            RelayState::Settled => return,
        };
        let _ = to_caller.send(result);
    }

    fn meta(&self) -> &CallMeta {
        &self.meta
    }

    fn begin(&self) -> bool {
        begin(&self.phase, &self.meta, || {
            self.settle(&Err(expired(self.gate.key(), &self.meta)));
        })
    }
}

/// Fails a call that never reached a handler.
pub(crate) fn fail(relay: &Arc<dyn Settle>, error: Error) {
    relay.settle(&Err(error));
}

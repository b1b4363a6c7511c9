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
    pin::Pin,
    sync::Arc,
    task::{Context, Wake, Waker},
};

use overmind_core::ActorKey;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::Error;

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
    /// Handler runs so far.
    runs: u64,
    /// The newest run that failed, and its error.
    last_failure: Option<(u64, Error)>,
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
        let mut inner = self.inner.lock();
        inner.in_handler = true;
        inner.runs += 1;
    }

    /// The handler's outcome is known (its state stored, or not): settle the parked replies.
    pub(crate) fn close(&self, outcome: &Outcome) {
        let parked = {
            let mut inner = self.inner.lock();
            inner.in_handler = false;
            if let Err(e) = outcome {
                inner.last_failure = Some((inner.runs, e.clone()));
            }
            std::mem::take(&mut inner.parked)
        };
        // Outside the lock: settling drops reply values, which may drop other ports.
        for relay in parked {
            relay.settle(outcome);
        }
    }

    pub(crate) fn in_handler(&self) -> bool {
        self.inner.lock().in_handler
    }

    fn runs(&self) -> u64 {
        self.inner.lock().runs
    }

    /// The error of a handler run after `since` that failed, if any.
    fn failure_after(&self, since: u64) -> Option<Error> {
        match &self.inner.lock().last_failure {
            Some((run, e)) if *run > since => Some(e.clone()),
            _ => None,
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
}

/// Carries one call's reply from the handler's port to the caller, through the gate.
pub(crate) struct Relay<T> {
    gate: Arc<Gate>,
    state: Mutex<RelayState<T>>,
    /// For a call from another node: the gate's run count when the call arrived. Its reply
    /// reaches the relay through a conversion task that ractor's derive spawns, so it may
    /// arrive after the run that produced it was closed; it is released only if no run since
    /// the call arrived failed.
    remote_since: Option<u64>,
}

enum RelayState<T> {
    Waiting {
        from_handler: oneshot::Receiver<T>,
        to_caller: oneshot::Sender<Result<T, Error>>,
    },
    Settled,
}

impl<T: Send + 'static> Relay<T> {
    /// A relay for a new call: the port to put in the message, the relay, and the caller's end.
    #[allow(clippy::type_complexity)] // reason: three distinct ends of one call, named at the call site
    pub(crate) fn new(
        gate: Arc<Gate>,
    ) -> (
        oneshot::Sender<T>,
        Arc<Self>,
        oneshot::Receiver<Result<T, Error>>,
    ) {
        Self::make(gate, false)
    }

    /// A relay for a call that arrived from another node; see `remote_since`.
    #[allow(clippy::type_complexity)] // reason: as for `new`
    pub(crate) fn remote(
        gate: Arc<Gate>,
    ) -> (
        oneshot::Sender<T>,
        Arc<Self>,
        oneshot::Receiver<Result<T, Error>>,
    ) {
        Self::make(gate, true)
    }

    #[allow(clippy::type_complexity)] // reason: as for `new`
    fn make(
        gate: Arc<Gate>,
        remote: bool,
    ) -> (
        oneshot::Sender<T>,
        Arc<Self>,
        oneshot::Receiver<Result<T, Error>>,
    ) {
        let (port, from_handler) = oneshot::channel();
        let (to_caller, caller) = oneshot::channel();
        let remote_since = remote.then(|| gate.runs());
        let relay = Arc::new(Self {
            gate,
            state: Mutex::new(RelayState::Waiting {
                from_handler,
                to_caller,
            }),
            remote_since,
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

impl<T: Send + 'static> Wake for Relay<T> {
    fn wake(self: Arc<Self>) {
        self.gate.clone().arrived(self);
    }
}

impl<T: Send + 'static> Settle for Relay<T> {
    fn settle(&self, outcome: &Outcome) {
        // A remote call's reply may come late: if any run since the call arrived failed, it
        // may be that run's reply, so it is not released.
        let late_failure = match (outcome, self.remote_since) {
            (Ok(()), Some(since)) => self.gate.failure_after(since).map(|e| match e {
                Error::HandlerFailed { key, reason } => Error::HandlerFailed {
                    key,
                    reason: format!("{reason} (a handler run failed while this reply was on its way; the call's outcome is unknown)"),
                },
                other => other,
            }),
            _ => None,
        };
        let failed;
        let outcome = match late_failure {
            Some(e) => {
                failed = Err(e);
                &failed
            }
            None => outcome,
        };
        let (reply, to_caller) = {
            let mut state = self.state.lock();
            let RelayState::Waiting { from_handler, .. } = &mut *state else {
                return;
            };
            let reply = match (outcome, from_handler.try_recv()) {
                (Ok(()), Ok(value)) => Ok(value),
                // A wake with nothing sent yet: keep waiting (the waker stays registered).
                (Ok(()), Err(oneshot::error::TryRecvError::Empty)) => return,
                (Ok(()), Err(oneshot::error::TryRecvError::Closed)) => Err(Error::NoReply {
                    key: self.gate.key().clone(),
                }),
                // A failure settles the call whether or not a reply was sent.
                (Err(e), _) => Err(e.clone()),
            };
            match std::mem::replace(&mut *state, RelayState::Settled) {
                RelayState::Waiting { to_caller, .. } => (reply, to_caller),
                RelayState::Settled => return,
            }
        };
        // The caller may have given up (timeout, dropped future): nothing to do then.
        let _ = to_caller.send(reply);
    }
}

/// Fails a call that never reached a handler.
pub(crate) fn fail(relay: &Arc<dyn Settle>, error: Error) {
    relay.settle(&Err(error));
}

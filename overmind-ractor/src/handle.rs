//! [`VirtualRef`]: how users talk to a virtual actor.

use std::{fmt, sync::Arc, time::Duration};

use overmind_core::ActorKey;
use ractor::RpcReplyPort;

use crate::{Error, SendError, VirtualActor, reply::Relay, slot::Slot};

/// A handle to the virtual actor `(A::KIND, id)`. Cheap to clone; creating one spawns
/// nothing: the actor is activated by the first message and may come and go behind the handle.
pub struct VirtualRef<A: VirtualActor> {
    target: Result<Arc<Slot<A>>, Error>,
}

impl<A: VirtualActor> Clone for VirtualRef<A> {
    fn clone(&self) -> Self {
        Self {
            target: self.target.clone(),
        }
    }
}

impl<A: VirtualActor> fmt::Debug for VirtualRef<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Ok(slot) => write!(f, "VirtualRef({})", slot.key),
            Err(e) => write!(f, "VirtualRef(<invalid: {e}>)"),
        }
    }
}

impl<A: VirtualActor> VirtualRef<A> {
    pub(crate) fn new(target: Result<Arc<Slot<A>>, Error>) -> Self {
        Self { target }
    }

    /// The actor's key, unless the handle is invalid (unregistered kind, bad id).
    pub fn key(&self) -> Result<&ActorKey, Error> {
        self.target.as_ref().map(|s| &s.key).map_err(Clone::clone)
    }

    /// Sends a message without waiting. Ok means Overmind accepted it: it will be handled
    /// unless the actor cannot be activated (which is logged).
    pub fn cast(&self, message: A::Msg) -> Result<(), SendError<A::Msg>> {
        match &self.target {
            Ok(slot) => slot.send(message, None),
            Err(error) => Err(SendError {
                message,
                error: error.clone(),
            }),
        }
    }

    /// Sends a message built around a reply port and waits for the reply, which arrives only
    /// after the state the handler left behind is stored. Mirrors ractor's `ActorRef::call`.
    ///
    /// With a timeout, [`Error::Timeout`] means the outcome is unknown: the message may still
    /// be handled and stored.
    pub async fn call<T, F>(&self, build: F, timeout: Option<Duration>) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(RpcReplyPort<T>) -> A::Msg,
    {
        let slot = self.target.as_ref().map_err(Clone::clone)?;
        let (port, relay, reply) = Relay::<T>::new(slot.gate.clone());
        let port = match timeout {
            Some(t) => RpcReplyPort::from((port, t)),
            None => RpcReplyPort::from(port),
        };
        slot.send(build(port), Some(relay)).map_err(|e| e.error)?;
        let reply = match timeout {
            None => reply.await,
            Some(t) => tokio::time::timeout(t, reply)
                .await
                .map_err(|_| Error::Timeout {
                    key: slot.key.clone(),
                    timeout: t,
                })?,
        };
        reply.unwrap_or_else(|_| {
            Err(Error::NoReply {
                key: slot.key.clone(),
            })
        })
    }
}

//! How a distribution layer (the cluster) plugs into the engine: the engine calls these traits
//! and never names what implements them. A single node installs none.

use std::sync::Arc;

use futures::future::BoxFuture;
use overmind_core::{ActorKey, codec::Lease, membership::Member};

use crate::{
    Error, SendError,
    engine::{
        reply::{self, Settle},
        slot::{Deletion, Queued},
    },
};

/// The outcome of a call sent to another node: Ok once the reply reached the message's port.
pub(crate) type Outcome = tokio::sync::oneshot::Receiver<Result<(), Error>>;

/// What the engine asks of the layer that connects this node to others. Installed once,
/// before this node serves anything another node could own.
pub(crate) trait Distribution: Send + Sync + 'static {
    /// The name an activation's ractor actor is spawned under (None: unnamed).
    fn activation_name(&self) -> Option<String>;
    /// The activation that held `lease` on `key` has stopped for good: the actor's owner, if
    /// another node, may take it over.
    fn released(&self, key: &ActorKey, lease: &Lease);
    /// This node waits to take `key` over from `node`: ask `node` to stop its activation as
    /// soon as it may.
    fn ask_release(&self, key: &ActorKey, node: &str);
    /// A graceful shutdown, before the engine stops: hands this node's actors over and lets
    /// what is on its way through this node finish.
    fn leave(&self) -> BoxFuture<'_, ()>;
    /// After the engine stopped: closes the links and the membership.
    fn close(&self);
    /// How many remote actors this node's ractor knows (one router per peer, normally).
    fn remote_actor_count(&self) -> BoxFuture<'_, usize>;
}

/// How the engine sends one kind's messages (message type `M`) to the node that owns the
/// actor. Installed per kind, together with the [`Distribution`].
pub(crate) trait Elsewhere<M>: Send + Sync + 'static {
    /// Sends `msg` for `key` to `owner`. For a call the reply completes the message's own
    /// reply port, and the returned receiver tells the outcome; a failure also fails `relay`,
    /// when the message came with one.
    fn send(
        &self,
        key: &ActorKey,
        owner: &Member,
        msg: M,
        relay: Option<Arc<dyn Settle>>,
    ) -> Result<Option<Outcome>, NotSent<M>>;
    /// Asks `owner` to delete `key`; `done` gets the outcome.
    fn delete(&self, key: &ActorKey, owner: &Member, done: Deletion);
}

/// Why a message for another node did not leave.
pub(crate) enum NotSent<M> {
    /// Refused before it was encoded: the message comes back.
    Refused(SendError<M>),
    /// Lost while it was encoded or handed to a link.
    Lost(Error),
}

impl<M> NotSent<M> {
    pub(crate) fn into_error(self) -> Error {
        match self {
            Self::Refused(e) => e.error,
            Self::Lost(e) => e,
        }
    }

    pub(crate) fn error(&self) -> &Error {
        match self {
            Self::Refused(e) => &e.error,
            Self::Lost(e) => e,
        }
    }
}

/// The error for a message to another node before this node joined its cluster.
pub(crate) fn not_connected(key: &ActorKey) -> Error {
    Error::Unavailable {
        key: key.clone(),
        reason: "this node is not connected to its cluster yet".into(),
    }
}

/// Sends the messages a lifecycle held to the actor's owner, in order: first those a failed
/// activation handed over, then the queue.
pub(crate) fn forward<M: 'static>(
    elsewhere: Option<&Arc<dyn Elsewhere<M>>>,
    key: &ActorKey,
    owner: &Member,
    handed_over: Vec<M>,
    queued: Vec<Queued<M>>,
) {
    let send = |message, relay| match elsewhere {
        Some(e) => e.send(key, owner, message, relay).map(drop),
        None => Err(NotSent::Refused(SendError {
            message,
            error: not_connected(key),
        })),
    };
    for msg in handed_over {
        if let Err(e) = send(msg, None) {
            let error = e.into_error();
            tracing::warn!(%key, %error, "could not forward a message to the actor's new node");
        }
    }
    for queued in queued {
        let (msg, relay) = match queued {
            Queued::Message { msg, relay } => (msg, relay),
            Queued::Delete(done) => {
                match elsewhere {
                    Some(e) => e.delete(key, owner, done),
                    None => {
                        let _ = done.send(Err(not_connected(key)));
                    }
                }
                continue;
            }
        };
        if let Err(not_sent) = send(msg, relay.clone()) {
            let error = not_sent.error().clone();
            match relay {
                Some(relay) => reply::fail(&relay, error),
                None => {
                    tracing::warn!(%key, %error, "could not forward a cast to the actor's node")
                }
            }
            // A refused call's reply port closes only now, so its caller sees the error
            // above rather than a bare "no reply".
            drop(not_sent);
        }
    }
}

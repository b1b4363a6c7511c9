//! How a distribution layer (the cluster) plugs into the engine: the engine calls these traits
//! and never names what implements them. A single node installs none.

use std::sync::Arc;

use futures::future::BoxFuture;
use overmind_core::{ActorKey, codec::Lease, membership::Member};

use crate::{
    Error, SendError,
    engine::{
        mailbox::Letter,
        reply::{self, CallMeta, Settle},
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
    /// Sends `msg` for `key` to `owner`, with what its call carries (`meta`; empty for a
    /// cast). For a call the reply completes the message's own reply port, and the returned
    /// receiver tells the outcome; a failure also fails `relay`, when the message came with
    /// one.
    fn send(
        &self,
        key: &ActorKey,
        owner: &Member,
        msg: M,
        relay: Option<Arc<dyn Settle>>,
        meta: &CallMeta,
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

/// Sends the messages a lifecycle held to the actor's owner, in order.
pub(crate) fn forward<M: 'static>(
    elsewhere: Option<&Arc<dyn Elsewhere<M>>>,
    key: &ActorKey,
    owner: &Member,
    queued: Vec<Queued<M>>,
) {
    let send = |message, relay: Option<Arc<dyn Settle>>| match elsewhere {
        Some(e) => {
            let meta = relay.as_ref().map(|r| r.meta().clone()).unwrap_or_default();
            e.send(key, owner, message, relay, &meta).map(drop)
        }
        None => Err(NotSent::Refused(SendError {
            message,
            error: not_connected(key),
        })),
    };
    for queued in queued {
        let Letter { msg, relay } = match queued {
            // A call whose timeout passed is not sent on (its caller is told so).
            Queued::Message(Letter {
                relay: Some(relay), ..
            }) if !relay.begin() => continue,
            Queued::Message(letter) => letter,
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

//! Typed errors. Every error names the actor it concerns.

use std::time::Duration;

use overmind_core::{ActorKey, KeyError, StoreError, codec::CodecError, codec::RecordError};

/// Why a message could not be delivered, handled or answered.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The actor type was not registered on the builder.
    #[error(
        "actor kind {kind:?} ({type_name}) is not registered with this Overmind: add `.register::<{type_name}>()` to the builder"
    )]
    NotRegistered {
        /// The kind asked for.
        kind: &'static str,
        /// The Rust type asked for.
        type_name: &'static str,
    },
    /// The id is not a valid actor id.
    #[error(transparent)]
    InvalidKey(#[from] KeyError),
    /// Overmind is shutting down and takes no new messages.
    #[error("Overmind is shutting down: the message to {key} was not accepted")]
    ShuttingDown {
        /// The addressee.
        key: ActorKey,
    },
    /// The actor could not be activated; the message was not handled.
    #[error("cannot activate {key}: {cause}")]
    ActivationFailed {
        /// The actor.
        key: ActorKey,
        /// Why.
        cause: ActivationError,
    },
    /// The actor's handler returned an error or panicked. Nothing was stored; the next message
    /// is handled by a fresh activation from the last stored state.
    #[error("{key} failed handling the message (nothing was stored): {reason}")]
    HandlerFailed {
        /// The actor.
        key: ActorKey,
        /// The handler's error or panic message.
        reason: String,
    },
    /// The handler succeeded but its new state could not be stored, so its reply is withheld.
    #[error("{key} could not store its new state, so its reply is withheld: {cause}")]
    PersistFailed {
        /// The actor.
        key: ActorKey,
        /// Why.
        cause: PersistError,
    },
    /// The message was handled (or dropped) without a reply being sent.
    #[error(
        "{key} did not reply: the handler dropped the reply port, or the activation stopped before handling the message"
    )]
    NoReply {
        /// The actor.
        key: ActorKey,
    },
    /// No node can serve the actor now: this node's lease expired, the owner is unreachable,
    /// or ownership is moving for longer than the cluster allows. Consistency comes first:
    /// the message was not handled here.
    #[error("{key} is unavailable: {reason}")]
    Unavailable {
        /// The actor.
        key: ActorKey,
        /// Why.
        reason: String,
    },
    /// Whether the message was handled is not known: the link to the actor's node closed
    /// after the message was sent and before its reply came, or the node's lease ran out
    /// while the handler ran (its state may be stored, but a node outside its lease may not
    /// acknowledge anything). Retrying may apply the message twice.
    #[error("the outcome of the message to {key} is unknown (it may have been handled): {reason}")]
    OutcomeUnknown {
        /// The actor.
        key: ActorKey,
        /// Why.
        reason: String,
    },
    /// The message could not be encoded for the node that owns the actor.
    #[error("cannot send the message to {key} on another node: {reason}")]
    Encode {
        /// The actor.
        key: ActorKey,
        /// Why.
        reason: String,
    },
    /// The message was handled and the state it produced stored, but its reply could not be
    /// sent back from the actor's node: it could not be encoded, or it is longer than a
    /// frame between nodes may be. Retrying repeats what the message did.
    #[error(
        "{key} handled the message and stored its state, but could not send the reply back: {reason}"
    )]
    ReplyNotSent {
        /// The actor.
        key: ActorKey,
        /// Why.
        reason: String,
    },
    /// A frame between nodes could not be decoded.
    #[error("undecodable frame between nodes: {reason}")]
    BadFrame {
        /// What could not be decoded.
        reason: String,
    },
    /// The state store failed an operation on a whole kind (listing, an eager migration).
    #[error("{0}")]
    Store(#[source] StoreError),
    /// An actor's handler asked to delete the actor itself and wait: the delete waits for
    /// that handler to finish, so it would wait for ever. Nothing was deleted.
    #[error(
        "{key} cannot delete itself and wait from its own handler: the delete runs after the handler returns. Spawn it on another task (`tokio::spawn`) instead"
    )]
    DeleteFromOwnHandler {
        /// The actor.
        key: ActorKey,
    },
    /// The actor could not be deleted; its record is as it was.
    #[error("cannot delete {key}: {cause}")]
    DeleteFailed {
        /// The actor.
        key: ActorKey,
        /// Why.
        cause: ActivationError,
    },
    /// No reply within the caller's timeout. The message may still be handled and stored.
    #[error("no reply from {key} within {timeout:?}; the message may still be handled")]
    Timeout {
        /// The actor.
        key: ActorKey,
        /// The caller's timeout.
        timeout: Duration,
    },
    /// The call's timeout passed before its handler started, so it was withdrawn: it was not
    /// handled and never will be. Safe to retry.
    #[error(
        "{key} did not start handling the message within {timeout:?}: it was withdrawn and will not be handled"
    )]
    Expired {
        /// The actor.
        key: ActorKey,
        /// The caller's timeout.
        timeout: Duration,
    },
    /// The idempotency key given to [`crate::VirtualRef::call_idempotent`] is not valid. The
    /// message was not sent.
    #[error("invalid idempotency key for a call to {key}: {cause}")]
    InvalidIdempotencyKey {
        /// The actor.
        key: ActorKey,
        /// What is wrong with the key.
        cause: overmind_core::applied::IdempotencyKeyError,
    },
    /// The call would wait for an actor whose handler is already waiting for it: `chain` is
    /// the chain of handlers waiting, each on a call to the next, and `key` is in it (an actor
    /// calling itself, or A calling B while B's handler calls A). It would wait until its
    /// timeout, so it is refused at once; the message was not sent. Use a cast for one
    /// direction, or reply first and call later.
    #[error(
        "calling {key} would wait for itself: {key} is already waiting in this chain of calls: {chain} → {key}"
    )]
    CallCycle {
        /// The actor called.
        key: ActorKey,
        /// The actors waiting, each on a call to the next, outermost first (`kind/id`).
        chain: String,
    },
}

impl Error {
    /// Whether the message may have taken effect although the call failed: `true` when its
    /// handler may have run and its state may be stored (a timeout, an unknown outcome, a
    /// reply lost or not sent, a reply that did not decode, a store that failed mid-write),
    /// `false` when it certainly did not (not registered, shutting down, unavailable, a
    /// handler that failed, an activation that failed, a message that could not be encoded,
    /// a call withdrawn when its timeout passed, a call cycle).
    /// Retry a call that failed with `true` only if repeating it is harmless.
    pub fn may_have_taken_effect(&self) -> bool {
        match self {
            Self::Timeout { .. }
            | Self::OutcomeUnknown { .. }
            | Self::NoReply { .. }
            | Self::ReplyNotSent { .. }
            | Self::PersistFailed { .. }
            | Self::BadFrame { .. } => true,
            Self::NotRegistered { .. }
            | Self::InvalidKey(_)
            | Self::ShuttingDown { .. }
            | Self::ActivationFailed { .. }
            | Self::HandlerFailed { .. }
            | Self::Unavailable { .. }
            | Self::Encode { .. }
            | Self::Store(_)
            | Self::DeleteFromOwnHandler { .. }
            | Self::DeleteFailed { .. }
            | Self::Expired { .. }
            | Self::CallCycle { .. }
            | Self::InvalidIdempotencyKey { .. } => false,
        }
    }
}

/// Why an activation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ActivationError {
    /// The store could not be read.
    #[error("loading its state failed: {0}")]
    Store(#[source] StoreError),
    /// The stored record is damaged or not ours. It is left untouched for inspection.
    #[error("its stored record is unreadable and was left untouched: {0}")]
    CorruptRecord(#[source] RecordError),
    /// The stored state does not decode as the actor's state type. It is left untouched.
    #[error("its stored state does not decode and was left untouched: {0}")]
    UndecodableState(#[source] CodecError),
    /// The stored state was written by another schema than this build's, and no migration
    /// reads it. It is left untouched.
    #[error("{0}; the record was left untouched")]
    Schema(#[source] crate::SchemaError),
    /// The actor's own `pre_start` or `post_start` failed.
    #[error("its pre_start failed: {0}")]
    StartFailed(String),
    /// Activation failed on the node that owns the actor.
    #[error("on its node: {0}")]
    Remote(String),
    /// The stored lease belongs to an activation from a newer epoch than this node's view.
    #[error("its lease is held under epoch {held}, newer than this node's epoch {ours}")]
    Superseded {
        /// The epoch of the lease in the store.
        held: u64,
        /// This node's epoch.
        ours: u64,
    },
    /// Another writer changed the record while the lease was being taken.
    #[error("another writer changed its record while its lease was being taken")]
    Contended,
    /// The actor moved to this node in an epoch that is not stable yet, and its previous
    /// activation has not released it: it is activated here once that one stops (or once the
    /// epoch is stable).
    #[error("its previous activation on node {node} (epoch {epoch}) has not released it yet")]
    NotReleased {
        /// The node of the activation holding the lease.
        node: String,
        /// The epoch that activation was granted in.
        epoch: u64,
    },
}

/// Why a new state could not be stored.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PersistError {
    /// The state does not encode, or would not decode again.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The store refused or failed the write.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Storing failed on the node that owns the actor.
    #[error("on its node: {0}")]
    Remote(String),
}

/// A message that was not accepted, handed back with the reason.
#[derive(thiserror::Error)]
#[error("{error}")]
pub struct SendError<M> {
    /// The message, unsent.
    pub message: M,
    /// Why it was not accepted.
    pub error: Error,
}

impl<M> std::fmt::Debug for SendError<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendError")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl<M> From<SendError<M>> for Error {
    fn from(e: SendError<M>) -> Self {
        e.error
    }
}

/// Why an Overmind could not be built or started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// Neither `data_dir` nor `store` was given.
    #[error(
        "no state store: call `.data_dir(path)` (embedded sled) or `.store(...)` on the builder"
    )]
    NoStore,
    /// Two actor types claim one kind.
    #[error("actor kind {kind:?} is registered twice ({first} and {second})")]
    DuplicateKind {
        /// The kind.
        kind: &'static str,
        /// The first type registered under it.
        first: &'static str,
        /// The second.
        second: &'static str,
    },
    /// A kind's `state_version` or migrations are declared wrongly.
    #[error("actor kind {kind:?} declares its state schema wrongly: {reason}")]
    InvalidSchema {
        /// The kind.
        kind: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A hand-written `VirtualActor` impl has an invalid kind.
    #[error(transparent)]
    InvalidKind(#[from] KeyError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The supervisor actor could not be spawned.
    #[error("cannot spawn the Overmind supervisor: {0}")]
    Spawn(String),
    /// The node could not join its cluster (only with the `cluster` feature).
    #[error(transparent)]
    Membership(#[from] overmind_core::membership::MembershipError),
    /// The cluster parts of the node could not start (only with the `cluster` feature).
    #[error("cannot start the cluster node: {0}")]
    Cluster(String),
    /// `spawn` was called outside a tokio runtime.
    #[error("Overmind must be started inside a tokio runtime")]
    NoRuntime,
}

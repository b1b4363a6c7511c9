//! [`VirtualRef`]: how users talk to a virtual actor.

use std::{fmt, sync::Arc, time::Duration};

use overmind_core::ActorKey;
use ractor::RpcReplyPort;
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    Error, SendError, VirtualActor,
    engine::{
        distribution::NotSent,
        reply::{Ack, CallMeta, Relay, ReplyCodec},
        slot::Slot,
    },
};

/// A handle to the virtual actor `(A::KIND, id)`. Cheap to clone; creating one spawns
/// nothing: the actor is activated by the first message and may come and go behind the handle.
///
/// In a cluster the handle remembers which node owns the actor for the current epoch, so a
/// message costs no ring lookup until the view changes.
pub struct VirtualRef<A: VirtualActor> {
    target: Target<A>,
}

enum Target<A: VirtualActor> {
    Invalid(Error),
    /// A single node: the actor is always local.
    Local(Arc<Slot<A>>),
    Routed(Arc<routed::Routed<A>>),
}

impl<A: VirtualActor> Clone for Target<A> {
    fn clone(&self) -> Self {
        match self {
            Self::Invalid(e) => Self::Invalid(e.clone()),
            Self::Local(slot) => Self::Local(slot.clone()),
            Self::Routed(r) => Self::Routed(r.clone()),
        }
    }
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
        match self.key() {
            Ok(key) => write!(f, "VirtualRef({key})"),
            Err(e) => write!(f, "VirtualRef(<invalid: {e}>)"),
        }
    }
}

/// Where one message goes.
pub(crate) enum Route<A: VirtualActor> {
    Local(Arc<Slot<A>>),
    /// To `owner`'s node, through the handle's routed target.
    Remote {
        via: Arc<routed::Routed<A>>,
        owner: overmind_core::membership::Member,
    },
}

impl<A: VirtualActor> VirtualRef<A> {
    pub(crate) fn invalid(error: Error) -> Self {
        Self {
            target: Target::Invalid(error),
        }
    }

    pub(crate) fn local(slot: Arc<Slot<A>>) -> Self {
        Self {
            target: Target::Local(slot),
        }
    }

    pub(crate) fn routed(kind: Arc<crate::engine::registry::Kind<A>>, key: ActorKey) -> Self {
        Self {
            target: Target::Routed(Arc::new(routed::Routed::new(kind, key))),
        }
    }

    /// The actor's key, unless the handle is invalid (unregistered kind, bad id).
    pub fn key(&self) -> Result<&ActorKey, Error> {
        match &self.target {
            Target::Invalid(e) => Err(e.clone()),
            Target::Local(slot) => Ok(&slot.key),
            Target::Routed(r) => Ok(&r.key),
        }
    }

    /// The node's runtime, unless the handle is invalid.
    fn runtime(&self) -> Result<&Arc<crate::engine::runtime::Runtime>, Error> {
        match &self.target {
            Target::Invalid(e) => Err(e.clone()),
            Target::Local(slot) => Ok(&slot.kind.rt),
            Target::Routed(r) => Ok(&r.kind.rt),
        }
    }

    fn route(&self) -> Result<Route<A>, Error> {
        match &self.target {
            Target::Invalid(e) => Err(e.clone()),
            Target::Local(slot) => Ok(Route::Local(slot.clone())),
            Target::Routed(r) => Ok(r.route()),
        }
    }

    /// Sends a message without waiting. Ok means Overmind accepted it: it will be handled
    /// unless the actor cannot be activated (which is logged). A cast to an actor on another
    /// node is sent over the link to that node; if the link drops first, it is lost (logged) —
    /// use [`Self::cast_acknowledged`] to know, or [`Self::cast_reliably`] to have it
    /// repeated until it arrives.
    pub fn cast(&self, message: A::Msg) -> Result<(), SendError<A::Msg>> {
        let route = match self.route() {
            Ok(route) => route,
            Err(error) => return Err(SendError { message, error }),
        };
        match route {
            Route::Local(slot) => slot.send(message, None),
            Route::Remote { via: r, owner } => {
                match r.send_remote(&owner, message, &CallMeta::default()) {
                    Ok(_) => Ok(()),
                    Err(NotSent::Refused(e)) => Err(e),
                    // Encoding consumed the message and failed: nothing to hand back.
                    Err(NotSent::Lost(error)) => {
                        tracing::warn!(key = %r.key, %error, "a cast to another node was lost");
                        Ok(())
                    }
                }
            }
        }
    }

    /// Sends a cast and waits until it was handled and the state its handler left behind is
    /// stored, on whichever node owns the actor: a cast acknowledged like a call. The
    /// idempotency key makes it safe to send again after a failure whose
    /// [`Error::may_have_taken_effect`] is true: the actor applies a message with a given key
    /// once (see [`Self::call_idempotent`] for how long keys are kept). The timeout travels
    /// with it as a call's does ([`Error::Expired`], [`Error::Timeout`]).
    ///
    /// [`Self::cast_reliably`] repeats it in the background until it is acknowledged.
    pub async fn cast_acknowledged(
        &self,
        idempotency_key: impl Into<String>,
        message: A::Msg,
        timeout: Option<Duration>,
    ) -> Result<(), Error> {
        let key = self.key()?.clone();
        let idempotency_key = checked_idempotency_key(&key, idempotency_key.into())?;
        let route = self.route()?;
        let chain = waiting_chain(&key)?;
        let meta = CallMeta::new(timeout, chain)
            .with_idempotency_key(Some(idempotency_key))
            .acknowledged();
        let mut withdrawable = None;
        let acknowledged = async {
            match route {
                Route::Local(slot) => {
                    let (ack, acknowledged) = Ack::new(key.clone(), meta);
                    withdrawable = Some(ack.clone());
                    slot.send(message, Some(ack)).map_err(|e| e.error)?;
                    acknowledged
                        .await
                        .unwrap_or(Err(Error::NoReply { key: key.clone() }))
                }
                Route::Remote { via: r, owner } => {
                    match r
                        .send_remote(&owner, message, &meta)
                        .map_err(NotSent::into_error)?
                    {
                        Some(outcome) => outcome
                            .await
                            .unwrap_or(Err(Error::NoReply { key: key.clone() })),
                        None => Err(Error::NoReply { key: key.clone() }),
                    }
                }
            }
        };
        let Some(timeout) = timeout else {
            return acknowledged.await;
        };
        match tokio::time::timeout(timeout, acknowledged).await {
            Ok(outcome) => outcome,
            Err(_) => match withdrawable {
                Some(ack) if ack.withdraw() => Err(Error::Expired { key, timeout }),
                _ => Err(Error::Timeout { key, timeout }),
            },
        }
    }

    /// Delivers a cast at least once and applies it once: [`Self::cast_acknowledged`],
    /// repeated in the background with its idempotency key until the actor's owner has
    /// handled and stored it, through lost links, killed owners and moves. `make` builds the
    /// message for each attempt.
    ///
    /// It returns at once; attempts wait [`RELIABLE_ATTEMPT_TIMEOUT`] each and are retried
    /// after a pause that doubles from 100 ms up to 5 s. It gives up (logging an error) only
    /// when the message itself is refused: its handler returned an error or panicked, or it
    /// cannot be encoded. The attempts live in this process's memory: if this node shuts down
    /// or crashes first, the cast is not delivered (logged at shutdown). For delivery that
    /// survives the sender, record the intent in an actor's state and send from there.
    pub fn cast_reliably<F>(&self, idempotency_key: impl Into<String>, make: F) -> Result<(), Error>
    where
        F: Fn() -> A::Msg + Send + 'static,
    {
        let key = self.key()?.clone();
        let idempotency_key: String = idempotency_key.into();
        checked_idempotency_key(&key, idempotency_key.clone())?;
        let rt = self.runtime()?.clone();
        let target = self.clone();
        rt.clone().tokio.spawn(async move {
            let mut pause = Duration::from_millis(100);
            for attempt in 1u64.. {
                let sent = target.cast_acknowledged(
                    idempotency_key.as_str(),
                    make(),
                    Some(RELIABLE_ATTEMPT_TIMEOUT),
                );
                let error = match sent.await {
                    Ok(()) => return,
                    Err(error) => error,
                };
                if matches!(error, Error::HandlerFailed { .. } | Error::Encode { .. }) {
                    tracing::error!(%key, %idempotency_key, %error, "a reliable cast was refused; giving up");
                    return;
                }
                if rt.is_closing() {
                    tracing::warn!(%key, %idempotency_key, %error, "this node shuts down: a reliable cast was not delivered");
                    return;
                }
                tracing::debug!(%key, %idempotency_key, attempt, %error, "a reliable cast will be sent again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        });
        Ok(())
    }

    /// Sends a message built around a reply port and waits for the reply, which arrives only
    /// after the state the handler left behind is stored. Mirrors ractor's `ActorRef::call`.
    ///
    /// The timeout travels with the call: its handler is not started once it has passed. If
    /// the caller knows the handler had not started, the call fails with [`Error::Expired`]
    /// (it was withdrawn and will not be handled: safe to retry); otherwise with
    /// [`Error::Timeout`], whose outcome is unknown (the message may still be handled and
    /// stored). On one node the caller always knows; a call to another node that times out is
    /// a `Timeout`.
    ///
    /// A call from a virtual actor's handler to an actor that is waiting in the same chain of
    /// calls (itself, or one whose handler is waiting for this one) would wait for ever: it
    /// fails at once with [`Error::CallCycle`], across nodes too.
    pub async fn call<T, F>(&self, build: F, timeout: Option<Duration>) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(RpcReplyPort<T>) -> A::Msg,
    {
        self.call_with(build, timeout, None).await
    }

    /// [`Self::call`] with an idempotency key: the actor applies a call with a given key
    /// once. A repeat — a retry after [`Error::Timeout`], [`Error::OutcomeUnknown`] or any
    /// error whose [`Error::may_have_taken_effect`] is true, from this node or another — is
    /// answered with the first call's reply and changes nothing.
    ///
    /// The actor keeps its most recent keys (`remembered_calls`, default 128) with their
    /// replies in its stored record, written in the same save as the state the call
    /// produced, so the promise holds across crashes and moves. A repeat that arrives after
    /// that many newer idempotent calls is applied again. The reply is kept only if the
    /// handler sends it before it returns and it encodes in at most 64 KiB; otherwise a
    /// repeat fails with [`Error::ReplyNotSent`], which says the call was applied. Keys are
    /// 1 to 256 bytes ([`Error::InvalidIdempotencyKey`]); one key names one operation, so
    /// reusing it for a different message returns the first one's reply.
    pub async fn call_idempotent<T, F>(
        &self,
        idempotency_key: impl Into<String>,
        build: F,
        timeout: Option<Duration>,
    ) -> Result<T, Error>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce(RpcReplyPort<T>) -> A::Msg,
    {
        let idempotency_key = checked_idempotency_key(self.key()?, idempotency_key.into())?;
        let codec = ReplyCodec::<T>::serde();
        self.call_with(build, timeout, Some((idempotency_key, codec)))
            .await
    }

    async fn call_with<T, F>(
        &self,
        build: F,
        timeout: Option<Duration>,
        idempotent: Option<(Arc<str>, ReplyCodec<T>)>,
    ) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(RpcReplyPort<T>) -> A::Msg,
    {
        let route = self.route()?;
        let chain = waiting_chain(self.key()?)?;
        let (idempotency_key, codec) = idempotent.unzip();
        let meta = CallMeta::new(timeout, chain).with_idempotency_key(idempotency_key);
        // The local relay, so a call that times out can be withdrawn.
        let mut withdrawable = None;
        let reply = async {
            match route {
                Route::Local(slot) => {
                    let (port, relay, reply) = Relay::<T>::new(slot.gate.clone(), meta, codec);
                    withdrawable = Some(relay.clone());
                    let port = port_with(port, timeout);
                    slot.send(build(port), Some(relay)).map_err(|e| e.error)?;
                    reply.await.unwrap_or_else(|_| {
                        Err(Error::NoReply {
                            key: slot.key.clone(),
                        })
                    })
                }
                Route::Remote { via: r, owner } => {
                    let (port, reply) = tokio::sync::oneshot::channel();
                    let outcome = r
                        .send_remote(&owner, build(port_with(port, timeout)), &meta)
                        .map_err(NotSent::into_error)?;
                    match outcome {
                        Some(outcome) => outcome
                            .await
                            .unwrap_or(Err(Error::NoReply { key: r.key.clone() }))?,
                        // The builder made a cast: there is no reply to wait for.
                        None => return Err(Error::NoReply { key: r.key.clone() }),
                    }
                    reply
                        .await
                        .map_err(|_| Error::NoReply { key: r.key.clone() })
                }
            }
        };
        let outcome = match timeout {
            None => return reply.await,
            Some(t) => tokio::time::timeout(t, reply).await,
        };
        match (outcome, timeout) {
            (Ok(outcome), _) => outcome,
            // The key is copied only for the error: a call allocates nothing for it.
            (Err(_), Some(timeout)) => {
                let key = self.key()?.clone();
                match withdrawable {
                    Some(relay) if relay.withdraw() => Err(Error::Expired { key, timeout }),
                    _ => Err(Error::Timeout { key, timeout }),
                }
            }
            (Err(_), None) => Err(Error::NoReply {
                key: self.key()?.clone(),
            }),
        }
    }

    /// Deletes the actor: once the messages sent to it before are handled, its activation
    /// stops and its stored record is deleted, fenced like a save (an activation that lost
    /// the actor can no longer write it back). The next message starts a new actor, as for
    /// an id never seen. Durable when it returns `Ok`; deleting an actor that has no stored
    /// state is `Ok` too.
    ///
    /// On one node it waits as long as the messages before it take (no timeout). In a
    /// cluster the owner's node does it, and the wait is bounded by the cluster's
    /// `remote_timeout`: [`Error::Timeout`] then means the delete may still happen.
    /// Messages sent from this node before it are handled first; across a view change, a
    /// message still on its way between nodes may arrive after it. From the actor's own
    /// handler it fails with [`Error::DeleteFromOwnHandler`]: spawn it on another task.
    /// After `shutdown` began it fails with [`Error::ShuttingDown`].
    pub async fn delete(&self) -> Result<(), Error> {
        let (done, outcome) = tokio::sync::oneshot::channel();
        let key = self.key()?.clone();
        if crate::engine::current::in_handler_of(&key) {
            return Err(Error::DeleteFromOwnHandler { key });
        }
        match self.route()? {
            Route::Local(slot) => slot.delete(done)?,
            Route::Remote { via: r, owner } => r.delete_remote(&owner, done),
        }
        outcome.await.unwrap_or(Err(Error::NoReply { key }))
    }
}

/// How long each attempt of [`VirtualRef::cast_reliably`] waits for its acknowledgement.
pub const RELIABLE_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The chain a message made here waits in, unless `key` already waits in it: then the
/// message could only wait for its own handler, and is refused.
fn waiting_chain(key: &ActorKey) -> Result<crate::engine::current::Chain, Error> {
    let chain = crate::engine::current::outgoing();
    if chain.contains(key) {
        return Err(Error::CallCycle {
            key: key.clone(),
            chain: chain.to_string(),
        });
    }
    Ok(chain)
}

/// An idempotency key for a message to `key`, if it is a valid one.
fn checked_idempotency_key(key: &ActorKey, idempotency_key: String) -> Result<Arc<str>, Error> {
    match overmind_core::applied::validate_key(&idempotency_key) {
        Ok(()) => Ok(idempotency_key.into()),
        Err(cause) => Err(Error::InvalidIdempotencyKey {
            key: key.clone(),
            cause,
        }),
    }
}

fn port_with<T>(
    port: tokio::sync::oneshot::Sender<T>,
    timeout: Option<Duration>,
) -> RpcReplyPort<T> {
    match timeout {
        Some(t) => RpcReplyPort::from((port, t)),
        None => RpcReplyPort::from(port),
    }
}

mod routed {
    use std::sync::Arc;

    use overmind_core::{ActorKey, membership::Member, ring::key_hash};
    use parking_lot::Mutex;

    use super::Route;
    use crate::{
        SendError, VirtualActor,
        engine::{
            distribution::{NotSent, Outcome, not_connected},
            registry::Kind,
            reply::CallMeta,
            slot::{Deletion, Slot},
        },
    };

    /// A handle's target in a cluster, with the owner it resolved for the current epoch.
    pub(crate) struct Routed<A: VirtualActor> {
        pub(crate) key: ActorKey,
        hash: u64,
        pub(crate) kind: Arc<Kind<A>>,
        cache: Mutex<Option<(u64, Cached<A>)>>,
    }

    enum Cached<A: VirtualActor> {
        Local(Arc<Slot<A>>),
        Remote(Member),
    }

    impl<A: VirtualActor> Cached<A> {
        fn route(&self, via: &Arc<Routed<A>>) -> Route<A> {
            match self {
                Cached::Local(slot) => Route::Local(slot.clone()),
                Cached::Remote(owner) => Route::Remote {
                    via: via.clone(),
                    owner: owner.clone(),
                },
            }
        }
    }

    impl<A: VirtualActor> Routed<A> {
        pub(crate) fn new(kind: Arc<Kind<A>>, key: ActorKey) -> Self {
            Self {
                hash: key_hash(&key.to_string()),
                key,
                kind,
                cache: Mutex::new(None),
            }
        }

        /// Where a message goes now: cached until the epoch changes.
        pub(crate) fn route(self: &Arc<Self>) -> Route<A> {
            let placement = &self.kind.rt.placement;
            let epoch = placement.epoch();
            let mut cache = self.cache.lock();
            if let Some((e, cached)) = &*cache {
                if *e == epoch {
                    return cached.route(self);
                }
            }
            let cached = match placement.remote_owner_by_hash(self.hash) {
                Some(owner) => Cached::Remote(owner),
                None => Cached::Local(self.kind.slot(self.key.clone())),
            };
            let route = cached.route(self);
            *cache = Some((epoch, cached));
            route
        }

        /// Sends to the owner's node.
        pub(crate) fn send_remote(
            &self,
            owner: &Member,
            message: A::Msg,
            meta: &CallMeta,
        ) -> Result<Option<Outcome>, NotSent<A::Msg>> {
            match self.kind.elsewhere() {
                Some(elsewhere) => elsewhere.send(&self.key, owner, message, None, meta),
                None => Err(NotSent::Refused(SendError {
                    message,
                    error: not_connected(&self.key),
                })),
            }
        }

        /// Asks the owner's node to delete the actor.
        pub(crate) fn delete_remote(&self, owner: &Member, done: Deletion) {
            match self.kind.elsewhere() {
                Some(elsewhere) => elsewhere.delete(&self.key, owner, done),
                None => {
                    let _ = done.send(Err(not_connected(&self.key)));
                }
            }
        }
    }
}

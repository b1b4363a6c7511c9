//! Messages for actors on other nodes: sending them to the owner's router, and delivering the
//! ones that arrive here.
//!
//! A user message crosses the wire in ractor's own serialization (the `RactorClusterMessage`
//! derive): its variant name and fields go in an [`Envelope`]; a call's reply port becomes a
//! byte port the receiving router answers through. The reply gate runs on the owner's node,
//! so a reply crosses back only after the owner stored the state that produced it.

use std::{panic::AssertUnwindSafe, sync::Arc, time::Duration};

use overmind_core::{ActorKey, membership::Member};
use ractor::{Message, RpcReplyPort, message::SerializedMessage};
use tokio::sync::oneshot;

use super::{
    ClusterLink, release,
    router::{RouterMsg, respond},
    wire::{Envelope, Reply},
};
use crate::{
    Error, VirtualActor,
    registry::Kind,
    reply::{self, Relay, Settle},
    runtime::Runtime,
    slot::{Deletion, Queued, Slot},
};

/// The variant name of a delete request. No message of a user's type has it: ractor's
/// variant names are Rust identifiers.
pub(crate) const DELETE_VARIANT: &str = "\0overmind:delete";

/// Most routers an envelope may pass through before it is refused. Each forward carries a
/// newer view than the last (see [`route`]), so this bounds how many view changes a message
/// chases; it is a guard against loops, not a limit a planned move comes near.
const MAX_HOPS: u8 = 8;

/// The outcome of a call sent to another node: Ok once the reply reached the message's port.
pub(crate) type Outcome = oneshot::Receiver<Result<(), Error>>;

fn link(rt: &Runtime, key: &ActorKey) -> Result<Arc<ClusterLink>, Error> {
    rt.cluster.get().cloned().ok_or_else(|| Error::Unavailable {
        key: key.clone(),
        reason: "this node is not connected to its cluster yet".into(),
    })
}

/// Sends `msg` for `key` to the router of `owner`. For a call, the reply completes the
/// message's own reply port, and the returned receiver tells the outcome; a failure also
/// fails `relay`, when the message came with one.
pub(crate) fn send<A: VirtualActor>(
    rt: &Runtime,
    key: &ActorKey,
    owner: &Member,
    msg: A::Msg,
    relay: Option<Arc<dyn Settle>>,
) -> Result<Option<Outcome>, Error> {
    let encode_error = |reason: &str| Error::Encode {
        key: key.clone(),
        reason: reason.to_owned(),
    };
    if !<A::Msg as Message>::serializable() {
        return Err(encode_error(
            "its message type is not serializable: derive RactorClusterMessage for it (with #[rpc] on call variants)",
        ));
    }
    let (variant, args, port) = match msg.serialize() {
        Ok(SerializedMessage::Cast { variant, args, .. }) => (variant, args, None),
        Ok(SerializedMessage::Call {
            variant,
            args,
            reply,
            ..
        }) => (variant, args, Some(reply)),
        Ok(_) => return Err(encode_error("not a cast or a call")),
        Err(_) => return Err(encode_error("a field could not be serialized")),
    };
    let envelope = Envelope {
        kind: A::KIND.to_owned(),
        id: key.id().to_owned(),
        epoch: rt.placement.epoch(),
        hops: 0,
        variant,
        args,
    };
    send_envelope(&link(rt, key)?, key, &owner.name, &envelope, port, relay)
}

fn unavailable(key: &ActorKey, reason: String) -> Error {
    Error::Unavailable {
        key: key.clone(),
        reason,
    }
}

fn send_envelope(
    link: &Arc<ClusterLink>,
    key: &ActorKey,
    node: &str,
    envelope: &Envelope,
    port: Option<RpcReplyPort<Vec<u8>>>,
    relay: Option<Arc<dyn Settle>>,
) -> Result<Option<Outcome>, Error> {
    let bytes = envelope.encode().map_err(|reason| Error::Encode {
        key: key.clone(),
        reason,
    })?;
    let Some(port) = port else {
        link.outbox(node).send(link, bytes, None);
        return Ok(None);
    };
    let (reply_tx, reply_rx) = oneshot::channel::<Vec<u8>>();
    link.outbox(node).send(link, bytes, Some(reply_tx));
    let (done_tx, done_rx) = oneshot::channel();
    let timeout = link.config.remote_timeout;
    let (key, node) = (key.clone(), node.to_owned());
    let in_flight = link.call_in_flight();
    tokio::spawn(async move {
        let _in_flight = in_flight;
        let outcome = match tokio::time::timeout(timeout, reply_rx).await {
            Err(_) => Err(Error::Timeout {
                key: key.clone(),
                timeout,
            }),
            Ok(Err(_)) => Err(unavailable(
                &key,
                format!(
                    "no reply from node {node}: the link closed, or the node could not be reached in time"
                ),
            )),
            Ok(Ok(bytes)) => match Reply::decode(&bytes) {
                Ok(Reply::Ok(payload)) => port
                    .send(payload)
                    .map_err(|_| Error::NoReply { key: key.clone() }),
                Ok(Reply::Err(e)) => Err(e.into_error(&key, &node, timeout)),
                Err(e) => Err(e),
            },
        };
        // Fail the relay before the port is dropped, so the caller sees this error rather
        // than a bare "no reply".
        if let (Err(e), Some(relay)) = (&outcome, &relay) {
            reply::fail(relay, e.clone());
        }
        let _ = done_tx.send(outcome);
    });
    Ok(Some(done_rx))
}

/// Frames for one peer, in the order they were sent. They go straight to the peer's router
/// when it is linked and nothing waits; otherwise they wait here, in order, until the link is
/// up, or fail after `unavailable_after` (a waiting call's reply port is dropped, which its
/// sender reports as unavailable).
pub(crate) struct Outbox {
    node: String,
    state: parking_lot::Mutex<OutboxState>,
}

#[derive(Default)]
struct OutboxState {
    waiting: std::collections::VecDeque<Outbound>,
    draining: bool,
}

struct Outbound {
    msg: RouterMsg,
    since: tokio::time::Instant,
}

impl Outbound {
    /// Hands the frame to the router, or gives it back if the router is gone.
    fn try_send(self, router: &ractor::ActorRef<RouterMsg>) -> Result<(), Outbound> {
        let since = self.since;
        router.cast(self.msg).map_err(|e| match e {
            ractor::MessagingErr::SendErr(msg) => Outbound { msg, since },
            // A typed router ref only refuses with the message handed back; anything else
            // is dropped (and a call's caller hears "unavailable").
            _ => Outbound {
                msg: RouterMsg::Cast(Vec::new()),
                since,
            },
        })
    }
}

impl Outbox {
    pub(crate) fn new(node: String) -> Self {
        Self {
            node,
            state: parking_lot::Mutex::new(OutboxState::default()),
        }
    }

    /// Whether every frame given to this outbox was handed to a link (or failed).
    pub(crate) fn is_empty(&self) -> bool {
        self.state.lock().waiting.is_empty()
    }

    pub(crate) fn send(
        self: &Arc<Self>,
        link: &Arc<ClusterLink>,
        bytes: Vec<u8>,
        reply: Option<oneshot::Sender<Vec<u8>>>,
    ) {
        let msg = match reply {
            None => RouterMsg::Cast(bytes),
            Some(reply) => RouterMsg::Call(bytes, reply.into()),
        };
        let mut outbound = Outbound {
            msg,
            since: tokio::time::Instant::now(),
        };
        let mut state = self.state.lock();
        if state.waiting.is_empty() && !state.draining {
            if let Some(router) = link.router_of(&self.node) {
                // The common case: linked, nothing queued.
                match outbound.try_send(&router) {
                    Ok(()) => return,
                    Err(back) => outbound = back,
                }
            }
        }
        state.waiting.push_back(outbound);
        if !state.draining {
            state.draining = true;
            drop(state);
            tokio::spawn(self.clone().drain(link.clone()));
        }
    }

    async fn drain(self: Arc<Self>, link: Arc<ClusterLink>) {
        let patience = link.config.unavailable_after;
        let mut pause = std::time::Duration::from_millis(5);
        loop {
            // A peer that left the view will not take these: route them again, by the current
            // view, through this node's own router.
            let router = if link.in_view(&self.node) {
                link.router_of(&self.node)
            } else {
                link.local_router()
            };
            let expired: Vec<Outbound> = {
                let mut state = self.state.lock();
                if let Some(router) = &router {
                    // Send in order; stop at the first refusal and keep the rest queued.
                    while let Some(outbound) = state.waiting.pop_front() {
                        if let Err(back) = outbound.try_send(router) {
                            state.waiting.push_front(back);
                            break;
                        }
                    }
                }
                if state.waiting.is_empty() {
                    state.draining = false;
                    return;
                }
                let now = tokio::time::Instant::now();
                let n = state
                    .waiting
                    .iter()
                    .take_while(|o| now.duration_since(o.since) > patience)
                    .count();
                state.waiting.drain(..n).collect()
            };
            if !expired.is_empty() {
                tracing::warn!(peer = %self.node, failed = expired.len(), "no link to the peer in time; failing the messages that waited for it");
            }
            // Dropped outside the lock: a call's reply port closes, and its sender reports it.
            drop(expired);
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_millis(100));
        }
    }
}

/// Sends the messages a slot held to the actor's new owner, in order.
pub(crate) fn forward<A: VirtualActor>(
    rt: &Runtime,
    key: &ActorKey,
    owner: &Member,
    handed_over: Vec<A::Msg>,
    queued: Vec<Queued<A::Msg>>,
) {
    for msg in handed_over {
        if let Err(error) = send::<A>(rt, key, owner, msg, None) {
            tracing::warn!(%key, %error, "could not forward a message to the actor's new node");
        }
    }
    for queued in queued {
        let (msg, relay) = match queued {
            Queued::Message { msg, relay } => (msg, relay),
            Queued::Delete(done) => {
                send_delete(rt, key, owner, done);
                continue;
            }
        };
        if let Err(error) = send::<A>(rt, key, owner, msg, relay.clone()) {
            match relay {
                Some(relay) => reply::fail(&relay, error),
                None => {
                    tracing::warn!(%key, %error, "could not forward a cast to the actor's node")
                }
            }
        }
    }
}

/// Asks the router of `owner` to delete `key`; `done` gets the outcome.
pub(crate) fn send_delete(rt: &Runtime, key: &ActorKey, owner: &Member, done: Deletion) {
    let envelope = Envelope {
        kind: key.kind().to_owned(),
        id: key.id().to_owned(),
        epoch: rt.placement.epoch(),
        hops: 0,
        variant: DELETE_VARIANT.to_owned(),
        args: Vec::new(),
    };
    // The reply's bytes (empty) are not needed, but the port must stay open until they
    // arrive: the outcome reports a closed port as no reply.
    let (port, answer) = oneshot::channel::<Vec<u8>>();
    let sent = link(rt, key).and_then(|link| {
        send_envelope(&link, key, &owner.name, &envelope, Some(port.into()), None)
    });
    let outcome = match sent {
        Ok(Some(outcome)) => outcome,
        // A call always has an outcome; without one, nothing will answer.
        Ok(None) => {
            let _ = done.send(Err(Error::NoReply { key: key.clone() }));
            return;
        }
        Err(error) => {
            let _ = done.send(Err(error));
            return;
        }
    };
    let key = key.clone();
    tokio::spawn(async move {
        let result = outcome.await.unwrap_or(Err(Error::NoReply { key }));
        drop(answer);
        let _ = done.send(result);
    });
}

/// Whether an envelope stamped `epoch` must wait for this node's view (`here`) to catch up
/// before it is routed: the sender saw a newer view.
pub(crate) fn must_catch_up(epoch: u64, here: u64) -> bool {
    epoch > here
}

/// What a router does with an envelope that arrived, by its own view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route<M> {
    /// This node owns the actor by its view.
    Here,
    /// Pass it on to `to`, stamped with `epoch` and `hops`.
    Forward { to: M, epoch: u64, hops: u8 },
    /// It was passed on too often: ownership moves faster than the message can chase it.
    GiveUp,
}

/// The routing rule, without I/O, once the node caught up ([`must_catch_up`]) or waited as
/// long as it will. An envelope stamped `epoch` after `hops` forwards is at a node whose view
/// is `here`; `owner_elsewhere` is the owner by that view when it is another node.
///
/// A forward is stamped with the newer of the two epochs. The sender chose the owner by the
/// epoch it stamped, so a receiver at exactly that epoch owns the actor; one that is behind
/// catches up first; so every forward carries a strictly newer view than the one before, and
/// a message passes at most one router more than the view changes it chases. Stamping the
/// sender's epoch instead lets a lagging node send the message back where it came from, and
/// the two bounce it until one catches up.
pub(crate) fn route<M>(epoch: u64, hops: u8, here: u64, owner_elsewhere: Option<M>) -> Route<M> {
    match owner_elsewhere {
        None => Route::Here,
        Some(_) if hops >= MAX_HOPS => Route::GiveUp,
        Some(to) => Route::Forward {
            to,
            epoch: epoch.max(here),
            hops: hops + 1,
        },
    }
}

/// Delivers an envelope that arrived from another node.
pub(crate) fn deliver<A: VirtualActor>(
    kind: Arc<Kind<A>>,
    rt: &Arc<Runtime>,
    envelope: Envelope,
    reply: Option<RpcReplyPort<Vec<u8>>>,
) {
    if envelope.variant == release::RELEASE_VARIANT {
        tracing::debug!(kind = A::KIND, id = %envelope.id, "asked to release");
        kind.expedite(&envelope.id);
        return respond(reply, Ok(Vec::new()));
    }
    if envelope.variant == release::RELEASED_VARIANT {
        match release::ReleaseBatch::decode(&envelope.args) {
            Ok(batch) => {
                tracing::debug!(kind = A::KIND, node = %batch.node, count = batch.released.len(), "release notices");
                for (id, activation) in batch.released {
                    let node = batch.node.clone();
                    kind.note_release(&id, release::ReleasedLease { node, activation });
                }
            }
            Err(error) => tracing::warn!(kind = A::KIND, %error, "dropping release notices"),
        }
        return respond(reply, Ok(Vec::new()));
    }
    if !must_catch_up(envelope.epoch, rt.placement.epoch()) {
        return deliver_now(kind, rt, envelope, reply);
    }
    // The sender saw a newer view: catch up before deciding where the actor lives.
    let rt = rt.clone();
    tokio::spawn(async move {
        let mut changes = rt.placement.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while rt.placement.epoch() < envelope.epoch {
                if changes.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        deliver_now(kind, &rt, envelope, reply);
    });
}

fn decode<A: VirtualActor>(serialized: SerializedMessage) -> Result<A::Msg, Error> {
    decode_message::<A::Msg>(A::KIND, serialized)
}

/// Decodes a user message from a peer with ractor's serialization (the `RactorClusterMessage`
/// derive). What that can do with hostile bytes, as of ractor 0.16.5: the derive checks each
/// field's u64 length against the bytes that remain before slicing (so nothing is allocated
/// by a declared length) and catches a panic in each field's `from_bytes`; the built-in
/// `from_bytes` impls allocate at most their input (numbers, `String`, `Vec<number>`) but
/// panic on short input, bad UTF-8 or a bad `char`, and a user's own impl may do anything.
/// So the frame's size is bounded before (it came in one frame, at most
/// [`super::wire::MAX_FRAME_LEN`]) and every panic is caught here too.
pub(crate) fn decode_message<M: Message>(
    kind: &str,
    serialized: SerializedMessage,
) -> Result<M, Error> {
    let bad = |why: &str| Error::BadFrame {
        reason: format!(
            "a message for kind {kind:?} {why} as {}",
            std::any::type_name::<M>()
        ),
    };
    let (SerializedMessage::Cast { args, .. } | SerializedMessage::Call { args, .. }) = &serialized
    else {
        return Err(bad("is neither a cast nor a call"));
    };
    if args.len() > super::wire::MAX_FRAME_LEN {
        return Err(bad("is longer than a frame may be"));
    }
    match std::panic::catch_unwind(AssertUnwindSafe(|| M::deserialize(serialized))) {
        Ok(Ok(msg)) => Ok(msg),
        Ok(Err(_)) => Err(bad("does not decode (unknown variant, or bad fields)")),
        Err(_) => Err(bad("panicked while decoding")),
    }
}

fn deliver_now<A: VirtualActor>(
    kind: Arc<Kind<A>>,
    rt: &Arc<Runtime>,
    envelope: Envelope,
    reply: Option<RpcReplyPort<Vec<u8>>>,
) {
    let key = match ActorKey::new(A::KIND, envelope.id.clone()) {
        Ok(key) => key,
        Err(e) => return respond(reply, Err(e.into())),
    };
    // The caller has caught up, or waited as long as it will (`deliver`).
    let here = rt.placement.epoch();
    let owner = rt.placement.remote_owner(&key.to_string());
    match route(envelope.epoch, envelope.hops, here, owner) {
        Route::Here => {}
        Route::GiveUp => {
            return respond(
                reply,
                Err(unavailable(
                    &key,
                    "its ownership kept moving while the message chased it".into(),
                )),
            );
        }
        // Our view differs from the sender's: pass it on.
        Route::Forward { to, epoch, hops } => {
            let forwarded = Envelope {
                epoch,
                hops,
                ..envelope
            };
            return relay_on(rt, &key, &to, &forwarded, reply);
        }
    }
    let slot = kind.slot(key.clone());
    if envelope.variant == DELETE_VARIANT {
        return deliver_delete(&slot, reply);
    }
    let Envelope { variant, args, .. } = envelope;
    match reply {
        None => {
            let msg = match decode::<A>(SerializedMessage::Cast {
                variant,
                args,
                metadata: None,
            }) {
                Ok(msg) => msg,
                Err(error) => return tracing::warn!(%key, %error, "dropping an undecodable cast"),
            };
            if let Err(e) = slot.send(msg, None) {
                tracing::warn!(%key, error = %e.error, "could not deliver a cast from another node");
            }
        }
        Some(reply) => {
            let (port, relay, caller) = Relay::<Vec<u8>>::remote(slot.gate.clone());
            let msg = match decode::<A>(SerializedMessage::Call {
                variant,
                args,
                reply: port.into(),
                metadata: None,
            }) {
                Ok(msg) => msg,
                Err(error) => {
                    tracing::warn!(%key, %error, "answering an undecodable call with an error");
                    return respond(Some(reply), Err(error));
                }
            };
            if let Err(e) = slot.send(msg, Some(relay)) {
                return respond(Some(reply), Err(e.error));
            }
            let key = key.clone();
            let in_flight = rt.cluster.get().map(|link| link.call_in_flight());
            tokio::spawn(async move {
                let _in_flight = in_flight;
                let result = caller.await.unwrap_or(Err(Error::NoReply { key }));
                respond(Some(reply), result);
            });
        }
    }
}

/// Deletes the actor here, its owner, and answers when the record is gone.
fn deliver_delete<A: VirtualActor>(slot: &Arc<Slot<A>>, reply: Option<RpcReplyPort<Vec<u8>>>) {
    let (done, outcome) = oneshot::channel();
    if let Err(error) = slot.delete(done) {
        return respond(reply, Err(error));
    }
    let key = slot.key.clone();
    // Counted like a call, so a leaving node keeps its links until the delete answered.
    let in_flight = slot.kind.rt.cluster.get().map(|link| link.call_in_flight());
    tokio::spawn(async move {
        let _in_flight = in_flight;
        let result = outcome.await.unwrap_or(Err(Error::NoReply { key }));
        respond(reply, result.map(|()| Vec::new()));
    });
}

/// Passes an envelope on to `owner`, piping a call's reply back.
fn relay_on(
    rt: &Runtime,
    key: &ActorKey,
    owner: &Member,
    envelope: &Envelope,
    reply: Option<RpcReplyPort<Vec<u8>>>,
) {
    let link = match link(rt, key) {
        Ok(link) => link,
        Err(e) => return respond(reply, Err(e)),
    };
    let bytes = match envelope.encode() {
        Ok(bytes) => bytes,
        Err(reason) => {
            let key = key.clone();
            return respond(reply, Err(Error::Encode { key, reason }));
        }
    };
    let Some(reply) = reply else {
        link.outbox(&owner.name).send(&link, bytes, None);
        return;
    };
    let (tx, rx) = oneshot::channel::<Vec<u8>>();
    link.outbox(&owner.name).send(&link, bytes, Some(tx));
    let timeout = link.config.remote_timeout;
    let (key, node) = (key.clone(), owner.name.clone());
    let in_flight = link.call_in_flight();
    tokio::spawn(async move {
        let _in_flight = in_flight;
        match tokio::time::timeout(timeout, rx).await {
            // The owner's reply frame goes back unchanged.
            Ok(Ok(bytes)) => {
                let _ = reply.send(bytes);
            }
            Ok(Err(_)) => respond(
                Some(reply),
                Err(unavailable(
                    &key,
                    format!("the link to node {node} closed before it replied"),
                )),
            ),
            Err(_) => respond(Some(reply), Err(Error::Timeout { key, timeout })),
        }
    });
}

#[cfg(test)]
mod tests {
    use overmind_core::ring::Ring;
    use proptest::prelude::*;

    use super::*;

    const NODES: [&str; 4] = ["n0", "n1", "n2", "n3"];

    /// Messages chase an actor through nodes whose views lag behind by different amounts.
    /// `views[e - 1]` is the member set (a bit mask) of epoch `e`; `lag` says, before each
    /// step, which node catches up by how many epochs.
    fn chase(
        views: &[u8],
        start: &[usize],
        sender: usize,
        key: &str,
        lag: &[(usize, usize)],
    ) -> Result<(u8, u64), TestCaseError> {
        let rings: Vec<Ring> = views
            .iter()
            .map(|mask| {
                let members = (0..NODES.len()).filter(|i| mask & (1 << i) != 0);
                Ring::new(members.map(|i| NODES[i]), 16)
            })
            .collect();
        let latest = rings.len() as u64;
        let owner = |epoch: u64| rings[epoch as usize - 1].owner(key).map(str::to_owned);
        let mut epoch_of: Vec<u64> = start.iter().map(|&e| (e as u64 % latest) + 1).collect();
        let sent_at = epoch_of[sender];
        let Some(first) = owner(sent_at) else {
            return Err(TestCaseError::fail("every view has members"));
        };
        let (mut at, mut epoch, mut hops) = (first, sent_at, 0u8);
        for step in 0.. {
            let (node, by) = lag[step % lag.len()];
            epoch_of[node] = (epoch_of[node] + by as u64).min(latest);
            let i = NODES.iter().position(|n| *n == at).unwrap_or_default();
            if must_catch_up(epoch, epoch_of[i]) {
                // Catching up is waiting for views the node will see: it reaches `epoch`.
                epoch_of[i] = epoch;
            }
            let here = epoch_of[i];
            let elsewhere = owner(here).filter(|o| *o != at);
            match route(epoch, hops, here, elsewhere) {
                Route::Here => {
                    prop_assert_eq!(owner(here), Some(at.clone()), "delivered to a non-owner");
                    return Ok((hops, sent_at));
                }
                Route::Forward {
                    to,
                    epoch: e,
                    hops: h,
                } => {
                    prop_assert!(e > epoch, "a forward must carry a newer view");
                    (at, epoch, hops) = (to, e, h);
                }
                Route::GiveUp => return Ok((hops, sent_at)),
            }
        }
        unreachable!()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// A message passes at most one router per view change it chases, however far behind
        /// the nodes it meets are, so it never gives up while views change less often than
        /// the hop limit. (Stamping forwards with the sender's epoch instead lets two nodes
        /// bounce a message until one catches up, and fails this.)
        #[test]
        fn a_message_crosses_at_most_one_router_per_view_change(
            views in prop::collection::vec(1u8..16, 1..8),
            start in prop::collection::vec(0usize..8, 4),
            sender in 0usize..4,
            key in "[a-z]{1,8}",
            lag in prop::collection::vec((0usize..4, prop_oneof![3 => Just(0usize), 1 => 1usize..3]), 1..16),
        ) {
            let (hops, sent_at) = chase(&views, &start, sender, &key, &lag)?;
            let changes = views.len() as u64 - sent_at;
            prop_assert!(u64::from(hops) <= changes, "{hops} hops for {changes} view changes");
        }
    }
}

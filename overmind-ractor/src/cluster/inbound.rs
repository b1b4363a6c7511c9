//! Envelopes that arrive from other nodes: release notices and requests, deletes, and user
//! messages, delivered to the actor here or passed on to its owner.

use std::{panic::AssertUnwindSafe, sync::Arc, time::Duration};

use overmind_core::{ActorKey, membership::Member};
use ractor::RpcReplyPort;
use tokio::sync::oneshot;

use super::{
    ClusterLink, release,
    remote::{Answer, DELETE_VARIANT, ask, outcome_unknown, unavailable},
    router::respond,
    routing::{Route, must_catch_up, route},
    wire::Envelope,
};
use crate::{
    Error, VirtualActor,
    engine::{
        message::{Incoming, VirtualMessage},
        registry::{Kind, ReleasedLease},
        reply::Ack,
        slot::Slot,
    },
};

/// Delivers an envelope that arrived from another node.
pub(crate) fn deliver<A: VirtualActor>(
    kind: Arc<Kind<A>>,
    link: &Arc<ClusterLink>,
    envelope: Envelope,
    reply: Option<RpcReplyPort<Vec<u8>>>,
) where
    A::Msg: VirtualMessage,
{
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
                    kind.note_release(&id, ReleasedLease { node, activation });
                }
            }
            Err(error) => tracing::warn!(kind = A::KIND, %error, "dropping release notices"),
        }
        return respond(reply, Ok(Vec::new()));
    }
    let rt = &kind.rt;
    if !must_catch_up(envelope.epoch, rt.placement.epoch()) {
        return deliver_now(kind, link, envelope, reply);
    }
    // The sender saw a newer view: catch up before deciding where the actor lives.
    let link = link.clone();
    let arrived = tokio::time::Instant::now();
    let mut envelope = envelope;
    tokio::spawn(async move {
        let rt = kind.rt.clone();
        let mut changes = rt.placement.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while rt.placement.epoch() < envelope.epoch {
                if changes.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        // A call's timeout runs from the frame's arrival, the wait included.
        envelope.call.spend(arrived.elapsed());
        deliver_now(kind, &link, envelope, reply);
    });
}

/// Decodes a user message from a peer (`VirtualMessage`'s encoding). The decoding is bounded
/// by the bytes received (the frame is at most [`super::wire::MAX_FRAME_LEN`]); a user's
/// `Deserialize` impl may still panic (a validating `TryFrom`, say), so a panic is caught too.
pub(crate) fn decode_message<M: VirtualMessage>(
    kind: &str,
    variant: &str,
    args: &[u8],
    call: Option<&mut Incoming>,
) -> Result<M, Error> {
    let bad = |why: String| Error::BadFrame {
        reason: format!(
            "a message for kind {kind:?} does not decode as {}: {why}",
            std::any::type_name::<M>()
        ),
    };
    match std::panic::catch_unwind(AssertUnwindSafe(|| M::__decode(variant, args, call))) {
        Ok(Ok(msg)) => Ok(msg),
        Ok(Err(e)) => Err(bad(e.to_string())),
        Err(_) => Err(bad("its decoding panicked".into())),
    }
}

fn deliver_now<A: VirtualActor>(
    kind: Arc<Kind<A>>,
    link: &Arc<ClusterLink>,
    envelope: Envelope,
    reply: Option<RpcReplyPort<Vec<u8>>>,
) where
    A::Msg: VirtualMessage,
{
    let rt = &kind.rt;
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
            return relay_on(link, &key, &to, &forwarded, reply);
        }
    }
    let slot = kind.slot(key.clone());
    if envelope.variant == DELETE_VARIANT {
        return deliver_delete(&slot, link, reply);
    }
    let Envelope {
        variant,
        args,
        call,
        ..
    } = envelope;
    match reply {
        None => {
            let msg = match decode_message::<A::Msg>(A::KIND, &variant, &args, None) {
                Ok(msg) => msg,
                Err(error) => return tracing::warn!(%key, %error, "dropping an undecodable cast"),
            };
            if let Err(e) = slot.send(msg, None) {
                tracing::warn!(%key, error = %e.error, "could not deliver a cast from another node");
            }
        }
        Some(reply) if call.acknowledged => {
            // A cast whose sender waits until it is stored: answered with an empty reply.
            let msg = match decode_message::<A::Msg>(A::KIND, &variant, &args, None) {
                Ok(msg) => msg,
                Err(error) => return respond(Some(reply), Err(error)),
            };
            let (ack, stored) = Ack::new(key.clone(), call.into_meta());
            if let Err(e) = slot.send(msg, Some(ack)) {
                return respond(Some(reply), Err(e.error));
            }
            let in_flight = link.call_in_flight();
            tokio::spawn(async move {
                let _in_flight = in_flight;
                let outcome = stored.await.unwrap_or(Err(Error::NoReply { key }));
                respond(Some(reply), outcome.map(|()| Vec::new()));
            });
        }
        Some(reply) => {
            let mut incoming = Incoming::new(slot.gate.clone(), call.into_meta());
            let decoded = decode_message::<A::Msg>(A::KIND, &variant, &args, Some(&mut incoming));
            let msg = match decoded {
                Ok(msg) => msg,
                Err(error) => {
                    tracing::warn!(%key, %error, "answering an undecodable call with an error");
                    return respond(Some(reply), Err(error));
                }
            };
            // A decoder that accepted a call made its reply port (the derive's always does).
            let Some(call) = incoming.take() else {
                let error = Error::BadFrame {
                    reason: format!("{variant} arrived as a call but made no reply port"),
                };
                return respond(Some(reply), Err(error));
            };
            if let Err(e) = slot.send(msg, Some(call.relay)) {
                return respond(Some(reply), Err(e.error));
            }
            let in_flight = link.call_in_flight();
            tokio::spawn(async move {
                let _in_flight = in_flight;
                respond(Some(reply), call.answer.await);
            });
        }
    }
}

/// Deletes the actor here, its owner, and answers when the record is gone.
fn deliver_delete<A: VirtualActor>(
    slot: &Arc<Slot<A>>,
    link: &Arc<ClusterLink>,
    reply: Option<RpcReplyPort<Vec<u8>>>,
) {
    let (done, outcome) = oneshot::channel();
    if let Err(error) = slot.delete(done) {
        return respond(reply, Err(error));
    }
    let key = slot.key.clone();
    // Counted like a call, so a leaving node keeps its links until the delete answered.
    let in_flight = link.call_in_flight();
    tokio::spawn(async move {
        let _in_flight = in_flight;
        let result = outcome.await.unwrap_or(Err(Error::NoReply { key }));
        respond(reply, result.map(|()| Vec::new()));
    });
}

/// Passes an envelope on to `owner`, piping a call's reply back.
fn relay_on(
    link: &Arc<ClusterLink>,
    key: &ActorKey,
    owner: &Member,
    envelope: &Envelope,
    reply: Option<RpcReplyPort<Vec<u8>>>,
) {
    let bytes = match envelope.encode() {
        Ok(bytes) => bytes,
        Err(reason) => {
            let key = key.clone();
            return respond(reply, Err(Error::Encode { key, reason }));
        }
    };
    let Some(reply) = reply else {
        link.outbox(&owner.name).send(link, bytes, None);
        return;
    };
    let answer = ask(link, &owner.name, bytes);
    let (key, node) = (key.clone(), owner.name.clone());
    tokio::spawn(async move {
        match answer.await {
            // The owner's reply frame goes back unchanged.
            Answer::Replied(bytes, _) => {
                let _ = reply.send(bytes);
            }
            Answer::Closed => respond(
                Some(reply),
                Err(outcome_unknown(
                    &key,
                    format!("the link to node {node} closed before it replied"),
                )),
            ),
            Answer::TimedOut(timeout) => respond(Some(reply), Err(Error::Timeout { key, timeout })),
        }
    });
}

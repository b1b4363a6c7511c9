//! Messages for actors on other nodes: sending them, and the messages a slot held, to the
//! owner's router (what arrives is [`super::inbound`]'s).
//!
//! A user message crosses the wire as its `VirtualMessage` encoding: its variant name and
//! fields go in an [`Envelope`]; a call's reply port stays here, and the reply's bytes are
//! decoded into it. The reply gate runs on the owner's node, so a reply crosses back only
//! after the owner stored the state that produced it.

use std::sync::Arc;

use overmind_core::{ActorKey, membership::Member};
use tokio::sync::oneshot;

use super::{
    ClusterLink,
    wire::{CallInfo, Envelope, Reply},
};
use crate::{
    Error, SendError, VirtualActor,
    engine::{
        distribution::{NotSent, Outcome},
        message::{ReplyFailed, ReplyTo, VirtualMessage},
        reply::{self, CallMeta, Settle},
        runtime::Runtime,
        slot::Deletion,
    },
};

/// The variant name of a delete request. No message of a user's type has it: ractor's
/// variant names are Rust identifiers.
pub(crate) const DELETE_VARIANT: &str = "\0overmind:delete";

/// Sends `msg` for `key` to the router of `owner`. For a call, the reply completes the
/// message's own reply port, and the returned receiver tells the outcome; a failure also
/// fails `relay`, when the message came with one.
pub(crate) fn send<A: VirtualActor>(
    rt: &Runtime,
    link: &Arc<ClusterLink>,
    key: &ActorKey,
    owner: &Member,
    msg: A::Msg,
    relay: Option<Arc<dyn Settle>>,
    meta: &CallMeta,
) -> Result<Option<Outcome>, NotSent<A::Msg>>
where
    A::Msg: VirtualMessage,
{
    let encoded = match msg.__encode() {
        Ok(encoded) => encoded,
        Err(unsent) => {
            return Err(NotSent::Refused(SendError {
                message: unsent.message,
                error: Error::Encode {
                    key: key.clone(),
                    reason: unsent.reason,
                },
            }));
        }
    };
    // An acknowledged cast is sent like a call whose reply says only that it was stored.
    let reply_to = match encoded.reply {
        Some(reply_to) => Some(reply_to),
        None if meta.acknowledged => Some(Box::new(|_: &[u8]| Ok(())) as ReplyTo),
        None => None,
    };
    let envelope = Envelope {
        kind: A::KIND.to_owned(),
        id: key.id().to_owned(),
        epoch: rt.placement.epoch(),
        hops: 0,
        variant: encoded.variant.to_owned(),
        args: encoded.args,
        call: match reply_to {
            Some(_) => CallInfo::from_meta(meta),
            None => CallInfo::default(),
        },
    };
    send_envelope(link, key, &owner.name, &envelope, reply_to, relay).map_err(NotSent::Lost)
}

/// A message sent, whose reply was lost with the link: it may have been handled.
pub(super) fn outcome_unknown(key: &ActorKey, reason: String) -> Error {
    Error::OutcomeUnknown {
        key: key.clone(),
        reason,
    }
}

pub(super) fn unavailable(key: &ActorKey, reason: String) -> Error {
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
    reply_to: Option<ReplyTo>,
    relay: Option<Arc<dyn Settle>>,
) -> Result<Option<Outcome>, Error> {
    let bytes = envelope.encode().map_err(|reason| Error::Encode {
        key: key.clone(),
        reason,
    })?;
    let Some(reply_to) = reply_to else {
        link.outbox(node).send(link, bytes, None);
        return Ok(None);
    };
    let answer = ask(link, node, bytes);
    let (done_tx, done_rx) = oneshot::channel();
    let (key, node) = (key.clone(), node.to_owned());
    tokio::spawn(async move {
        // The caller's port, if a reply came that is not of its type: kept until the relay
        // has failed with that error.
        let mut unanswered = None;
        let outcome = match answer.await {
            Answer::TimedOut(timeout) => Err(Error::Timeout {
                key: key.clone(),
                timeout,
            }),
            Answer::Closed => Err(outcome_unknown(
                &key,
                format!("the link to node {node} closed before it replied"),
            )),
            Answer::Replied(bytes, timeout) => match Reply::decode(&bytes) {
                Ok(Reply::Ok(payload)) => match reply_to(&payload) {
                    Ok(()) => Ok(()),
                    Err(ReplyFailed::Decode { reason, port }) => {
                        unanswered = Some(port);
                        Err(Error::BadFrame {
                            reason: format!("the reply from node {node} for {key}: {reason}"),
                        })
                    }
                    Err(ReplyFailed::CallerGone) => Err(Error::NoReply { key: key.clone() }),
                },
                Ok(Reply::Err(e)) => Err(e.into_error(&key, &node, timeout)),
                Err(e) => Err(e),
            },
        };
        // Fail the relay before the port is dropped, so the caller sees this error rather
        // than a bare "no reply". (A call's relay is released by its port; an acknowledged
        // cast's has none, so it is told here.)
        match (&outcome, &relay) {
            (Err(e), Some(relay)) => reply::fail(relay, e.clone()),
            (Ok(()), Some(relay)) => relay.handled(&Ok(())),
            (_, None) => {}
        }
        drop(unanswered);
        let _ = done_tx.send(outcome);
    });
    Ok(Some(done_rx))
}

/// What became of a frame sent to a peer that expects a reply.
pub(super) enum Answer {
    /// The peer's reply frame, and the bound it arrived within.
    Replied(Vec<u8>, std::time::Duration),
    /// The frame was handed to the link, and the link closed before the reply came. (A frame
    /// that never reached a link in time is answered with an `Unavailable` error reply by
    /// its outbox.)
    Closed,
    /// No reply within the link's remote timeout.
    TimedOut(std::time::Duration),
}

/// Sends `bytes` to `node` now, in order with what was sent to it before, and returns the
/// wait for its reply within the link's remote timeout; the call counts as in flight (a
/// leaving node drains it) until the wait ends.
pub(super) fn ask(
    link: &Arc<ClusterLink>,
    node: &str,
    bytes: Vec<u8>,
) -> impl std::future::Future<Output = Answer> + Send + 'static {
    let (tx, rx) = oneshot::channel::<Vec<u8>>();
    link.outbox(node).send(link, bytes, Some(tx));
    let timeout = link.config.remote_timeout;
    let in_flight = link.call_in_flight();
    async move {
        let _in_flight = in_flight;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(bytes)) => Answer::Replied(bytes, timeout),
            Ok(Err(_)) => Answer::Closed,
            Err(_) => Answer::TimedOut(timeout),
        }
    }
}

/// Asks the router of `owner` to delete `key`; `done` gets the outcome.
pub(crate) fn send_delete(
    rt: &Runtime,
    link: &Arc<ClusterLink>,
    key: &ActorKey,
    owner: &Member,
    done: Deletion,
) {
    let envelope = Envelope {
        kind: key.kind().to_owned(),
        id: key.id().to_owned(),
        epoch: rt.placement.epoch(),
        hops: 0,
        variant: DELETE_VARIANT.to_owned(),
        args: Vec::new(),
        call: CallInfo::default(),
    };
    // The reply's bytes (empty) are not needed: its outcome is.
    let ignore: ReplyTo = Box::new(|_: &[u8]| Ok(()));
    let sent = send_envelope(link, key, &owner.name, &envelope, Some(ignore), None);
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
        let _ = done.send(result);
    });
}

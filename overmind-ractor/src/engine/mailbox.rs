//! An activation's mailbox: what its host takes, in order.
//!
//! Overmind's own queue rather than a ractor mailbox, so every message arrives with what
//! Overmind knows about it (its call's relay), and the host decides per message whether to
//! run it, hand it on, or fail it. The user's actor still has an ordinary ractor `ActorRef`
//! as `myself` (see [`crate::engine::proxy`]): what is sent to it directly, and its
//! children's supervision events, are put in this mailbox too.

use std::sync::Arc;

use ractor::SupervisionEvent;
use tokio::sync::mpsc;

use crate::engine::reply::Settle;

/// One message for a virtual actor, with its call's relay if it is a call made through a
/// `VirtualRef` (or from another node).
pub(crate) struct Letter<M> {
    pub(crate) msg: M,
    pub(crate) relay: Option<Arc<dyn Settle>>,
}

impl<M> Letter<M> {
    /// A message sent without a relay: a cast, or a send to `myself`.
    pub(crate) fn plain(msg: M) -> Self {
        Self { msg, relay: None }
    }
}

/// What a host takes from its mailbox.
pub(crate) enum Delivery<M> {
    Letter(Letter<M>),
    /// A supervision event of one of the actor's children.
    Supervision(SupervisionEvent),
    /// Stop once everything before this is handled.
    Drain,
}

/// The sending end of an activation's mailbox. Cheap to clone.
pub(crate) struct Mailbox<M> {
    tx: mpsc::UnboundedSender<Delivery<M>>,
}

impl<M> Clone for Mailbox<M> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

/// The receiving end, held by the host.
pub(crate) type Inbox<M> = mpsc::UnboundedReceiver<Delivery<M>>;

impl<M> Mailbox<M> {
    pub(crate) fn new() -> (Self, Inbox<M>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { tx }, rx)
    }

    /// Puts a message in; hands it back if the host has stopped taking messages.
    pub(crate) fn deliver(&self, letter: Letter<M>) -> Result<(), Letter<M>> {
        match self.tx.send(Delivery::Letter(letter)) {
            Err(mpsc::error::SendError(Delivery::Letter(letter))) => Err(letter),
            // A letter was sent, so only a letter comes back.
            _ => Ok(()),
        }
    }

    /// Passes on a child's supervision event (dropped if the host has stopped).
    pub(crate) fn supervise(&self, event: SupervisionEvent) {
        let _ = self.tx.send(Delivery::Supervision(event));
    }

    /// Asks the host to stop once what is in the mailbox now is handled.
    pub(crate) fn drain(&self) {
        let _ = self.tx.send(Delivery::Drain);
    }
}

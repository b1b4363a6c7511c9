//! `myself`: the ractor actor a virtual actor's handlers get as their own `ActorRef`.
//!
//! An activation takes its messages from Overmind's [`Mailbox`], not from a ractor mailbox,
//! but the user's actor is an ordinary ractor actor and keeps every use of its `ActorRef`:
//! sending to itself, spawning linked children, registering in a process group, stopping
//! itself. This small actor stands for it: what is sent to it, and its children's
//! supervision events, go into the activation's mailbox; when it stops (the user called
//! `myself.stop()`), the activation stops after the handler that asked. It lives exactly as
//! long as the activation.

use std::{marker::PhantomData, sync::Arc};

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};

use crate::{
    VirtualActor,
    engine::mailbox::{Letter, Mailbox},
    engine::slot::Slot,
};

/// Stands for one activation as a ractor actor.
pub(crate) struct Proxy<A>(PhantomData<fn() -> A>);

impl<A> Proxy<A> {
    pub(crate) fn new() -> Self {
        Self(PhantomData)
    }
}

/// Where the proxy puts what it receives.
pub(crate) struct Forward<A: VirtualActor> {
    pub(crate) mailbox: Mailbox<A::Msg>,
    pub(crate) slot: Arc<Slot<A>>,
}

impl<A: VirtualActor> Actor for Proxy<A> {
    type Msg = A::Msg;
    type State = Forward<A>;
    type Arguments = Forward<A>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        forward: Forward<A>,
    ) -> Result<Forward<A>, ActorProcessingErr> {
        Ok(forward)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        forward: &mut Forward<A>,
    ) -> Result<(), ActorProcessingErr> {
        if let Err(letter) = forward.mailbox.deliver(Letter::plain(msg)) {
            // The activation is stopping: the message waits for the next one, like any other.
            if let Err(e) = forward.slot.send(letter.msg, None) {
                tracing::debug!(key = %forward.slot.key, error = %e.error, "a message sent to a stopped activation was dropped");
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        forward: &mut Forward<A>,
    ) -> Result<(), ActorProcessingErr> {
        forward.mailbox.supervise(event);
        Ok(())
    }
}

//! Each registered kind's connection to the cluster: how its messages leave for other nodes
//! (the engine's [`Elsewhere`]) and how what arrives for it is delivered. The builder makes
//! one per kind, where the kind's types are known; the router holds them by kind name.

use std::{marker::PhantomData, sync::Arc};

use overmind_core::{ActorKey, membership::Member};
use ractor::RpcReplyPort;

use super::{ClusterLink, inbound, remote, wire::Envelope};
use crate::{
    VirtualActor, VirtualMessage,
    engine::{
        distribution::{Elsewhere, NotSent, Outcome},
        registry::{AnyKind, Kind},
        reply::{CallMeta, Settle},
        runtime::Runtime,
        slot::Deletion,
    },
};

/// A kind, its actor type erased, as the cluster uses it.
pub(crate) trait KindPort: Send + Sync + 'static {
    /// The kind's name.
    fn name(&self) -> &'static str;
    /// The engine's side of the kind (retiring and stopping its activations).
    fn engine(&self) -> Arc<dyn AnyKind>;
    /// From now on, the kind's messages for other nodes go over `link`.
    fn connect(&self, link: &Arc<ClusterLink>);
    /// Delivers an envelope that arrived from another node.
    fn deliver(
        &self,
        link: &Arc<ClusterLink>,
        envelope: Envelope,
        reply: Option<RpcReplyPort<Vec<u8>>>,
    );
}

/// The cluster's port for a kind.
pub(crate) fn port<A: VirtualActor>(kind: Arc<Kind<A>>) -> Arc<dyn KindPort>
where
    A::Msg: VirtualMessage,
{
    Arc::new(Port { kind })
}

struct Port<A: VirtualActor> {
    kind: Arc<Kind<A>>,
}

impl<A: VirtualActor> KindPort for Port<A>
where
    A::Msg: VirtualMessage,
{
    fn name(&self) -> &'static str {
        A::KIND
    }

    fn engine(&self) -> Arc<dyn AnyKind> {
        self.kind.clone()
    }

    fn connect(&self, link: &Arc<ClusterLink>) {
        self.kind.connect(Arc::new(Sender::<A> {
            rt: self.kind.rt.clone(),
            link: link.clone(),
            actor: PhantomData,
        }));
    }

    fn deliver(
        &self,
        link: &Arc<ClusterLink>,
        envelope: Envelope,
        reply: Option<RpcReplyPort<Vec<u8>>>,
    ) {
        inbound::deliver(self.kind.clone(), link, envelope, reply);
    }
}

/// Sends a kind's messages to the nodes that own their actors.
struct Sender<A> {
    rt: Arc<Runtime>,
    link: Arc<ClusterLink>,
    actor: PhantomData<fn() -> A>,
}

impl<A: VirtualActor> Elsewhere<A::Msg> for Sender<A>
where
    A::Msg: VirtualMessage,
{
    fn send(
        &self,
        key: &ActorKey,
        owner: &Member,
        msg: A::Msg,
        relay: Option<Arc<dyn Settle>>,
        meta: &CallMeta,
    ) -> Result<Option<Outcome>, NotSent<A::Msg>> {
        remote::send::<A>(&self.rt, &self.link, key, owner, msg, relay, meta)
    }

    fn delete(&self, key: &ActorKey, owner: &Member, done: Deletion) {
        remote::send_delete(&self.rt, &self.link, key, owner, done);
    }
}

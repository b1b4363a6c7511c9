//! The router: one actor per node that takes messages from other nodes and delivers them to
//! the local activation (or forwards them to the owner, when the sender's view was stale).
//!
//! Routers are found through a process group per registration,
//! `overmind/<cluster>/router/<node>/<member id>`; ractor_cluster makes a peer's router visible
//! here once the link is up. Virtual actors are
//! never announced to peers: they stay local, and only routers cross the wire.

use std::{collections::HashMap, sync::Arc};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;

use super::wire::{Envelope, Reply, WireError};
use super::{ClusterLink, port::KindPort};
use crate::{Error, engine::registry::AnyKind};

/// Messages between routers. Both carry an envelope (the actor, the sender's epoch and the
/// message as ractor serializes it); calls get a reply frame back.
#[derive(RactorClusterMessage)]
pub(crate) enum RouterMsg {
    /// A cast for an actor on this node.
    Cast(Vec<u8>),
    /// A call for an actor on this node; the reply is an encoded reply frame.
    #[rpc]
    Call(Vec<u8>, RpcReplyPort<Vec<u8>>),
}

/// The process group of one registration's router. The member id tells incarnations of a
/// node apart: a message never reaches the router of a node's previous life.
pub(crate) fn group(cluster: &str, node: &str, member: u64) -> String {
    format!("overmind/{cluster}/router/{node}/{member}")
}

/// The router of one registration, if it is visible (the local one, or a peer's once linked).
pub(crate) fn router_of(cluster: &str, node: &str, member: u64) -> Option<ActorRef<RouterMsg>> {
    ractor::pg::get_members(&group(cluster, node, member))
        .into_iter()
        .find(|cell| cell.get_status() < ractor::ActorStatus::Stopping)
        .map(ActorRef::from)
}

pub(crate) type Kinds = Arc<HashMap<&'static str, Arc<dyn AnyKind>>>;

/// The registered kinds by name, as the cluster delivers to them.
pub(crate) type Ports = Arc<HashMap<&'static str, Arc<dyn KindPort>>>;

pub(crate) struct Router {
    pub(crate) link: Arc<ClusterLink>,
    pub(crate) kinds: Ports,
}

/// Answers a call (nothing to do for a cast).
pub(crate) fn respond(reply: Option<RpcReplyPort<Vec<u8>>>, result: Result<Vec<u8>, Error>) {
    if let Some(reply) = reply {
        let _ = reply.send(Reply::from_result(result).encode());
    }
}

impl Router {
    fn deliver(&self, bytes: Vec<u8>, reply: Option<RpcReplyPort<Vec<u8>>>) {
        self.link.arrived();
        let envelope = match Envelope::decode(&bytes) {
            Ok(envelope) => envelope,
            Err(error) => {
                tracing::warn!(%error, "a router received an undecodable frame");
                return respond(reply, Err(error));
            }
        };
        let Some(kind) = self.kinds.get(envelope.kind.as_str()) else {
            let reason = format!(
                "actor kind {:?} is not registered on this node",
                envelope.kind
            );
            tracing::warn!(%reason, "a router received a message for an unknown kind");
            if let Some(reply) = reply {
                let _ = reply.send(Reply::Err(WireError::Other(reason)).encode());
            }
            return;
        };
        kind.deliver(&self.link, envelope, reply);
    }
}

impl Actor for Router {
    type Msg = RouterMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<RouterMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<RouterMsg>,
        msg: RouterMsg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        // Never fails: a bad frame is answered and logged, and the router carries on.
        match msg {
            RouterMsg::Cast(bytes) => self.deliver(bytes, None),
            RouterMsg::Call(bytes, reply) => self.deliver(bytes, Some(reply)),
        }
        Ok(())
    }
}

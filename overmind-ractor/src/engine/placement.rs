//! Where an actor may live right now, as this node sees it. The engine asks a [`Placement`]
//! before it activates, routes or keeps an activation; [`SingleNode`] owns everything and
//! never changes its mind, and a distribution layer brings its own.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use overmind_core::{
    codec::Lease,
    membership::{Member, Membership, NodeView},
    ring::key_hash,
};
use tokio::sync::watch;

/// What may happen to an actor on this node now.
#[derive(Debug, Clone)]
pub(crate) enum Decision {
    /// This node may activate it, on the condition `handover` names. The activation belongs
    /// to registration `member` and may serve only while it holds the lease.
    Activate {
        /// The epoch of the view that decided.
        epoch: u64,
        /// The registration (member id) the decision was made under.
        member: u64,
        /// What must be true of the stored record first.
        handover: Handover,
    },
    /// Another node owns it: send it there.
    Elsewhere(Member),
    /// Not yet: the lease is not held, or no view is known.
    Wait(&'static str),
}

/// On what condition the owner may activate an actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handover {
    /// Unconditionally: this node has owned it in every epoch since the last stable one, so
    /// no other node can hold an activation.
    Settled,
    /// The actor moved here in an epoch that is not stable yet: activating waits until the
    /// stored record holds no lease, or one whose activation its node said has stopped (a
    /// release notice). The lease write that follows is conditional on the record read, so it
    /// fails if anyone took the actor meanwhile.
    IfReleased,
}

/// Where actors live, as this node sees it now.
pub(crate) trait Placement: Send + Sync + 'static {
    /// This node's name.
    fn node(&self) -> &str;
    /// The epoch of the installed view; handles re-resolve when it changes.
    fn epoch(&self) -> u64;
    /// The installed view.
    fn view(&self) -> Option<NodeView>;
    /// Changes whenever placement may decide differently (a new view, a lease change).
    fn subscribe(&self) -> watch::Receiver<u64>;
    /// How long a message waits for its actor to become placeable before failing.
    fn unavailable_after(&self) -> Duration;
    /// Whether actors may live on other nodes: handles then route each message.
    fn distributed(&self) -> bool;
    /// The node that owns `key` in the installed view.
    fn owner(&self, key: &str) -> Option<String>;
    /// A lease fencing a new activation of registration `member` under `epoch`, or None where
    /// activations are not fenced (one node owns every actor for good).
    fn new_lease(&self, epoch: u64, member: u64) -> Option<Lease>;
    /// A number for a new activation that takes no lease.
    fn next_activation(&self) -> u64;
    /// When registration `member`'s lease ran out, if it may not serve now.
    fn lease_ended(&self, member: u64) -> Option<std::time::Instant>;
    /// Whether this node may serve right now: it holds the lease, for the registration its
    /// current view belongs to.
    fn serving(&self) -> bool;
    /// Whether an activation of registration `member` may serve right now. After a session
    /// expired, the node's new registration holds the lease, and activations of the old one
    /// may never serve again.
    fn serving_as(&self, member: u64) -> bool;
    /// The current owner of the key with hash `hash`, if it is another node.
    fn remote_owner_by_hash(&self, hash: u64) -> Option<Member>;
    /// The current owner of `key`, if it is another node.
    fn remote_owner(&self, key: &str) -> Option<Member> {
        self.remote_owner_by_hash(key_hash(key))
    }
    /// What may happen to `key` on this node now.
    fn decide(&self, key: &str) -> Decision;
    /// Whether an activation of `key` granted in epoch `granted` may go on existing here:
    /// this node has owned the key in every epoch since then (since the last stable epoch,
    /// for an activation granted before it). Activations for which this is false are
    /// retired; `granted` 0 asks whether the key is settled here.
    fn holds_here(&self, key: &str, granted: u64) -> bool;
}

/// One node that owns every actor, for good: nothing is ever elsewhere, nothing needs a lease.
pub(crate) struct SingleNode {
    node: String,
    view: Option<NodeView>,
    activations: AtomicU64,
    /// Never changes; waiters subscribe to it all the same.
    changes: watch::Sender<u64>,
    unavailable_after: Duration,
}

impl SingleNode {
    /// A single node named `node`.
    pub(crate) fn new(node: &str) -> Self {
        let membership = overmind_core::membership::SingleNode::new(node);
        let view = membership.views().borrow().clone();
        Self {
            node: node.to_owned(),
            view,
            activations: AtomicU64::new(0),
            changes: watch::channel(0).0,
            unavailable_after: Duration::from_secs(30),
        }
    }
}

impl Placement for SingleNode {
    fn node(&self) -> &str {
        &self.node
    }

    fn epoch(&self) -> u64 {
        self.view.as_ref().map_or(0, |v| v.view.epoch())
    }

    fn view(&self) -> Option<NodeView> {
        self.view.clone()
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn unavailable_after(&self) -> Duration {
        self.unavailable_after
    }

    fn distributed(&self) -> bool {
        false
    }

    fn owner(&self, _: &str) -> Option<String> {
        Some(self.node.clone())
    }

    fn new_lease(&self, _: u64, _: u64) -> Option<Lease> {
        None
    }

    fn next_activation(&self) -> u64 {
        self.activations.fetch_add(1, Ordering::Relaxed)
    }

    fn lease_ended(&self, _: u64) -> Option<std::time::Instant> {
        None
    }

    fn serving(&self) -> bool {
        true
    }

    fn serving_as(&self, _: u64) -> bool {
        true
    }

    fn remote_owner_by_hash(&self, _: u64) -> Option<Member> {
        None
    }

    fn decide(&self, _: &str) -> Decision {
        Decision::Activate {
            epoch: self.epoch(),
            member: 0,
            handover: Handover::Settled,
        }
    }

    fn holds_here(&self, _: &str, _: u64) -> bool {
        true
    }
}

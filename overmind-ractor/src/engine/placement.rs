//! Where an actor may live right now, as this node sees it: the current view, its epoch, and
//! the node's lease.
//!
//! A single node owns everything and never changes its mind. In a cluster the view comes from
//! the membership provider; the rebalancer installs each new view here, and everything that
//! routes or activates asks this module.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use overmind_core::membership::{Lease, Member, Membership, NodeView};
use parking_lot::RwLock;
use tokio::sync::watch;

/// What may happen to an actor on this node now.
#[derive(Debug, Clone)]
pub(crate) enum Decision {
    /// This node may activate it, on the condition `handover` names. The activation belongs
    /// to registration `member` and may serve only while it holds the lease.
    Activate {
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

pub(crate) struct Placement {
    node: String,
    lease: Arc<Lease>,
    /// Whether the view can ever change (a single node): then every check short-circuits.
    fixed: bool,
    current: RwLock<Option<NodeView>>,
    epoch: AtomicU64,
    /// Activations started on this node, for lease numbers.
    activations: AtomicU64,
    /// Bumped whenever the view or the lease changes, for waiters.
    changes: watch::Sender<u64>,
    /// How long a message waits for its actor to become placeable before failing.
    pub(crate) unavailable_after: Duration,
}

impl Placement {
    /// Placement for a membership provider. `fixed` for one that never changes.
    pub(crate) fn new(
        membership: Arc<dyn Membership>,
        fixed: bool,
        unavailable_after: Duration,
    ) -> Self {
        let current = membership.views().borrow().clone();
        let epoch = current.as_ref().map_or(0, |v| v.view.epoch());
        Self {
            node: membership.node().to_owned(),
            lease: membership.lease(),
            fixed,
            current: RwLock::new(current),
            epoch: AtomicU64::new(epoch),
            activations: AtomicU64::new(0),
            changes: watch::channel(0).0,
            unavailable_after,
        }
    }

    pub(crate) fn node(&self) -> &str {
        &self.node
    }

    /// A lease for a new activation of registration `member` under `epoch`: this node, and an
    /// activation number unique to the registration (its member id in the high half).
    pub(crate) fn new_lease(&self, epoch: u64, member: u64) -> overmind_core::codec::Lease {
        let n = self.activations.fetch_add(1, Ordering::Relaxed);
        overmind_core::codec::Lease {
            epoch,
            node: self.node.clone(),
            activation: (member << 32) | (n & 0xffff_ffff),
        }
    }

    pub(crate) fn is_fixed(&self) -> bool {
        self.fixed
    }

    /// The epoch of the installed view; handles re-resolve when it changes.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub(crate) fn view(&self) -> Option<NodeView> {
        self.current.read().clone()
    }

    /// Whether `node` is a member of the installed view.
    pub(crate) fn has_member(&self, node: &str) -> bool {
        self.current
            .read()
            .as_ref()
            .is_some_and(|nv| nv.view.member(node).is_some())
    }

    /// Installs a new view (the rebalancer does this before retiring what moved).
    pub(crate) fn install(&self, view: Option<NodeView>) {
        let epoch = view.as_ref().map_or(0, |v| v.view.epoch());
        *self.current.write() = view;
        self.epoch.store(epoch, Ordering::Release);
        self.changed();
    }

    /// Wakes everything waiting for placement to change (a new view, a lease change).
    pub(crate) fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// When registration `member`'s lease ran out, if it may not serve now.
    pub(crate) fn lease_ended(&self, member: u64) -> Option<std::time::Instant> {
        if self.fixed {
            None
        } else {
            self.lease.ended_for(member)
        }
    }

    /// A number for a new activation (single node) .
    pub(crate) fn next_activation(&self) -> u64 {
        self.activations.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether this node may serve right now: it holds the lease, for the registration its
    /// current view belongs to.
    pub(crate) fn serving(&self) -> bool {
        self.fixed
            || self
                .current
                .read()
                .as_ref()
                .and_then(|nv| nv.member.as_ref())
                .is_some_and(|m| self.lease.is_valid_for(m.id))
    }

    /// Whether an activation of registration `member` may serve right now. After a session
    /// expired, the node's new registration holds the lease, and activations of the old one
    /// may never serve again.
    pub(crate) fn serving_as(&self, member: u64) -> bool {
        self.fixed || self.lease.is_valid_for(member)
    }

    /// The current owner of `key`, if it is another node.
    pub(crate) fn remote_owner(&self, key: &str) -> Option<Member> {
        self.remote_owner_by_hash(overmind_core::ring::key_hash(key))
    }

    /// The current owner of the key with hash `hash`, if it is another node.
    pub(crate) fn remote_owner_by_hash(&self, hash: u64) -> Option<Member> {
        if self.fixed {
            return None;
        }
        let current = self.current.read();
        let view = &current.as_ref()?.view;
        let owner = view.ring().owner_of_hash(hash)?;
        (owner != self.node)
            .then(|| view.member(owner).cloned())
            .flatten()
    }

    /// What may happen to `key` on this node now, and the epoch of the view that decided.
    pub(crate) fn decide(&self, key: &str) -> (u64, Decision) {
        if self.fixed {
            return (
                self.epoch(),
                Decision::Activate {
                    member: 0,
                    handover: Handover::Settled,
                },
            );
        }
        let current = self.current.read();
        let Some(nv) = current.as_ref() else {
            return (0, Decision::Wait("this node has no view of the cluster"));
        };
        let view = &nv.view;
        let decision = match view.owner(key) {
            None => Decision::Wait("the cluster has no members"),
            Some(owner) if owner != self.node => match view.member(owner) {
                Some(m) => Decision::Elsewhere(m.clone()),
                None => Decision::Wait("the owner is not in the view"),
            },
            Some(_) if !nv.is_member() => {
                Decision::Wait("this node is not a member of the current view")
            }
            Some(_) if !self.lease.is_valid() => Decision::Wait("this node's lease has expired"),
            // A view read under an earlier registration (the session expired and the node
            // rejoined): the cluster may have handed this node's actors over since.
            Some(_)
                if !nv
                    .member
                    .as_ref()
                    .is_some_and(|m| self.lease.is_valid_for(m.id)) =>
            {
                Decision::Wait(
                    "this node rejoined the cluster and waits for a view of its new registration",
                )
            }
            Some(_) => Decision::Activate {
                member: nv.member.as_ref().map_or(0, |m| m.id),
                handover: if view.settled_owner(key, &self.node) {
                    Handover::Settled
                } else {
                    Handover::IfReleased
                },
            },
        };
        (view.epoch(), decision)
    }

    /// Whether an activation of `key` granted in epoch `granted` may go on existing here:
    /// this node has owned the key in every epoch since then (since the last stable epoch,
    /// for an activation granted before it). The rebalancer retires every activation for
    /// which this is false; `granted` 0 asks whether the key is settled here.
    pub(crate) fn holds_here(&self, key: &str, granted: u64) -> bool {
        if self.fixed {
            return true;
        }
        let current = self.current.read();
        current
            .as_ref()
            .is_some_and(|nv| nv.is_member() && nv.view.holds_since(key, &self.node, granted))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use overmind_core::membership::{MembershipError, View, ViewRecord, view::Epoch};

    use super::*;

    /// Membership whose lease the test grants and revokes by hand; views are installed
    /// directly, as the rebalancer would.
    struct Manual {
        lease: Arc<Lease>,
        views: watch::Sender<Option<NodeView>>,
    }

    impl Membership for Manual {
        fn node(&self) -> &str {
            "n0"
        }
        fn views(&self) -> watch::Receiver<Option<NodeView>> {
            self.views.subscribe()
        }
        fn lease(&self) -> Arc<Lease> {
            self.lease.clone()
        }
        fn applied(&self, _epoch: u64) {}
        fn leave(&self) -> futures::future::BoxFuture<'_, Result<(), MembershipError>> {
            Box::pin(async { Ok(()) })
        }
    }

    fn view_with(id: u64, epoch: u64) -> NodeView {
        let me = Member {
            id,
            name: "n0".into(),
            addr: String::new(),
        };
        let view = Arc::new(View::new(
            ViewRecord {
                epoch,
                stable: epoch,
                history: vec![Epoch {
                    epoch,
                    members: vec![me.clone()],
                }],
            },
            16,
        ));
        NodeView {
            view,
            member: Some(me),
        }
    }

    #[test]
    fn a_view_from_an_expired_registration_decides_nothing() {
        let lease = Arc::new(Lease::new());
        let membership = Arc::new(Manual {
            lease: lease.clone(),
            views: watch::channel(None).0,
        });
        let placement = Placement::new(membership, false, Duration::from_secs(1));
        let later = || Instant::now() + Duration::from_secs(60);
        lease.grant(3, later());
        placement.install(Some(view_with(3, 7)));
        assert!(matches!(
            placement.decide("k").1,
            Decision::Activate { member: 3, .. }
        ));
        assert!(placement.serving() && placement.serving_as(3));
        // The session expires and the node rejoins as member 5 before its first new view.
        lease.revoke();
        lease.grant(5, later());
        assert!(
            matches!(placement.decide("k").1, Decision::Wait(_)),
            "the old registration's view must not decide"
        );
        assert!(!placement.serving(), "no view of the new registration yet");
        assert!(
            !placement.serving_as(3),
            "an activation of the old registration may not serve"
        );
        placement.install(Some(view_with(5, 9)));
        assert!(matches!(
            placement.decide("k").1,
            Decision::Activate { member: 5, .. }
        ));
        assert!(placement.serving_as(5) && !placement.serving_as(3));
    }
}

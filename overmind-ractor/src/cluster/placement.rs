//! Where an actor may live right now, as this node sees it in a cluster: the installed view
//! (on the ring), its epoch, and the node's lease. The rebalancer installs each new view here.

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

use crate::engine::placement::{Decision, Handover, Placement};

/// The cluster's placement: the ring of the installed view, and the node's lease.
pub(crate) struct RingPlacement {
    node: String,
    lease: Arc<Lease>,
    current: RwLock<Option<NodeView>>,
    epoch: AtomicU64,
    /// Activations started on this node, for lease numbers.
    activations: AtomicU64,
    /// Bumped whenever the view or the lease changes, for waiters.
    changes: watch::Sender<u64>,
    /// How long a message waits for its actor to become placeable before failing.
    unavailable_after: Duration,
}

impl RingPlacement {
    /// Placement by the views and the lease of `membership`.
    pub(crate) fn new(membership: Arc<dyn Membership>, unavailable_after: Duration) -> Self {
        let current = membership.views().borrow().clone();
        let epoch = current.as_ref().map_or(0, |v| v.view.epoch());
        Self {
            node: membership.node().to_owned(),
            lease: membership.lease(),
            current: RwLock::new(current),
            epoch: AtomicU64::new(epoch),
            activations: AtomicU64::new(0),
            changes: watch::channel(0).0,
            unavailable_after,
        }
    }

    /// Whether `node` is a member of the installed view.
    pub(crate) fn has_member(&self, node: &str) -> bool {
        self.current
            .read()
            .as_ref()
            .is_some_and(|nv| nv.view.member(node).is_some())
    }

    /// The member id of `node`'s registration in the installed view.
    pub(crate) fn member_id(&self, node: &str) -> Option<u64> {
        let current = self.current.read();
        current.as_ref()?.view.member(node).map(|m| m.id)
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
}

impl Placement for RingPlacement {
    fn node(&self) -> &str {
        &self.node
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    fn view(&self) -> Option<NodeView> {
        self.current.read().clone()
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn unavailable_after(&self) -> Duration {
        self.unavailable_after
    }

    fn distributed(&self) -> bool {
        true
    }

    fn owner(&self, key: &str) -> Option<String> {
        let current = self.current.read();
        current.as_ref()?.view.owner(key).map(str::to_owned)
    }

    /// This node, and an activation number unique to the registration (its member id in the
    /// high half).
    fn new_lease(&self, epoch: u64, member: u64) -> Option<overmind_core::codec::Lease> {
        let n = self.activations.fetch_add(1, Ordering::Relaxed);
        Some(overmind_core::codec::Lease {
            epoch,
            node: self.node.clone(),
            activation: (member << 32) | (n & 0xffff_ffff),
        })
    }

    fn next_activation(&self) -> u64 {
        self.activations.fetch_add(1, Ordering::Relaxed)
    }

    fn lease_ended(&self, member: u64) -> Option<std::time::Instant> {
        self.lease.ended_for(member)
    }

    fn serving(&self) -> bool {
        self.current
            .read()
            .as_ref()
            .and_then(|nv| nv.member.as_ref())
            .is_some_and(|m| self.lease.is_valid_for(m.id))
    }

    fn serving_as(&self, member: u64) -> bool {
        self.lease.is_valid_for(member)
    }

    fn remote_owner_by_hash(&self, hash: u64) -> Option<Member> {
        let current = self.current.read();
        let view = &current.as_ref()?.view;
        let owner = view.ring().owner_of_hash(hash)?;
        (owner != self.node)
            .then(|| view.member(owner).cloned())
            .flatten()
    }

    fn decide(&self, key: &str) -> Decision {
        let current = self.current.read();
        let Some(nv) = current.as_ref() else {
            return Decision::Wait("this node has no view of the cluster");
        };
        let view = &nv.view;
        match view.owner(key) {
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
                epoch: view.epoch(),
                member: nv.member.as_ref().map_or(0, |m| m.id),
                handover: if view.settled_owner(key, &self.node) {
                    Handover::Settled
                } else {
                    Handover::IfReleased
                },
            },
        }
    }

    fn holds_here(&self, key: &str, granted: u64) -> bool {
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
        let placement = RingPlacement::new(membership, Duration::from_secs(1));
        let later = || Instant::now() + Duration::from_secs(60);
        lease.grant(3, later());
        placement.install(Some(view_with(3, 7)));
        assert!(matches!(
            placement.decide("k"),
            Decision::Activate { member: 3, .. }
        ));
        assert!(placement.serving() && placement.serving_as(3));
        // The session expires and the node rejoins as member 5 before its first new view.
        lease.revoke();
        lease.grant(5, later());
        assert!(
            matches!(placement.decide("k"), Decision::Wait(_)),
            "the old registration's view must not decide"
        );
        assert!(!placement.serving(), "no view of the new registration yet");
        assert!(
            !placement.serving_as(3),
            "an activation of the old registration may not serve"
        );
        placement.install(Some(view_with(5, 9)));
        assert!(matches!(
            placement.decide("k"),
            Decision::Activate { member: 5, .. }
        ));
        assert!(placement.serving_as(5) && !placement.serving_as(3));
    }
}

//! Applying views, and reacting to the lease.
//!
//! For each new view the rebalancer
//! 1. installs it, so handles and lifecycles route and decide by it;
//! 2. retires every activation whose actor is not *settled* here in the view (this node owns
//!    it in every epoch since the last stable one) — exactly the activations a new owner could
//!    otherwise overlap with; settled ones are not touched;
//! 3. stops those activations, [`RETIRE_AT_ONCE`] at a time (each drains its mailbox; one
//!    whose new owner asks for it goes first), and waits until they have stopped;
//! 4. reports the epoch as applied. The leader marks an epoch stable once every live member
//!    has applied it; only then may new owners activate what moved.
//!
//! When the lease runs out, every activation is stopped: the node may not serve, and its
//! actors may be handed to others once its session expires.

use std::sync::Arc;

use overmind_core::membership::Membership;

use super::{ClusterLink, router::Kinds, stopped};

/// How many retired activations are stopping at once while a view is applied.
const RETIRE_AT_ONCE: usize = 64;

pub(crate) async fn apply_views(kinds: Kinds, link: Arc<ClusterLink>) {
    let membership = link.membership.clone();
    let mut views = membership.views();
    let mut stop = link.stop.subscribe();
    let mut registered: Option<String> = None;
    loop {
        let current = views.borrow_and_update().clone();
        if let Some(nv) = current {
            let epoch = nv.view.epoch();
            // Peers find the router under this registration's member id.
            if let (Some(me), Some(router)) = (&nv.member, link.router.get()) {
                let group = super::router::group(&link.config.cluster, &link.config.node, me.id);
                if registered.as_deref() != Some(group.as_str()) {
                    if let Some(old) = registered.take() {
                        ractor::pg::leave(old, vec![router.get_cell()]);
                    }
                    ractor::pg::join(group.clone(), vec![router.get_cell()]);
                    registered = Some(group);
                }
            }
            let stable = nv.view.stable() == epoch;
            link.placement.install(Some(nv));
            if stable {
                for kind in kinds.values() {
                    kind.forget_releases();
                }
            }
            let mut retiring = Vec::new();
            for kind in kinds.values() {
                kind.retire_unsettled(epoch, &mut retiring);
            }
            let moving = retiring.len();
            let started = std::time::Instant::now();
            if moving > 0 {
                tracing::info!(node = %link.config.node, epoch, moving, "handing over actors");
            }
            // A few at a time, so calls to actors that stay are not starved meanwhile; one
            // that another node is waiting for is stopped at once (`expedite`).
            futures::StreamExt::for_each(
                futures::StreamExt::buffer_unordered(
                    futures::stream::iter(retiring),
                    RETIRE_AT_ONCE,
                ),
                |()| async {},
            )
            .await;
            if moving > 0 {
                tracing::info!(node = %link.config.node, epoch, moving, took = ?started.elapsed(), "handed over actors");
            }
            membership.applied(epoch);
        } else if !link.leaving.load(std::sync::atomic::Ordering::Acquire) {
            // The session ended: the old view no longer says who owns anything. Until the
            // new registration's first view, nothing may be activated or routed by it.
            link.placement.install(None);
        }
        // A node that left keeps the stable view without it: messages still arriving are
        // passed on to their owners by it while the node drains. (The lease is gone, so
        // nothing is activated here.)
        tokio::select! {
            changed = views.changed() => if changed.is_err() { return },
            _ = stopped(&mut stop) => return,
        }
    }
}

/// Stops every activation when the lease is lost, and wakes waiting lifecycles when it
/// changes either way.
pub(crate) async fn watch_lease(kinds: Kinds, link: Arc<ClusterLink>) {
    let lease = link.membership.lease();
    let mut changes = lease.subscribe();
    let mut stop = link.stop.subscribe();
    let mut was_valid = lease.is_valid();
    let mut holder = lease.holder();
    loop {
        let valid = lease.is_valid();
        let now_holder = lease.holder();
        if now_holder != holder {
            if holder.is_some() {
                // A new registration (the session expired and the node rejoined): activations
                // of the old one may never serve again, so stop them now rather than at their
                // next message.
                tracing::warn!(node = %link.config.node, member = ?now_holder, "rejoined as a new member: stopping the old registration's activations");
                for kind in kinds.values() {
                    kind.stop_all();
                }
            }
            holder = now_holder;
            link.placement.changed();
        }
        if valid != was_valid {
            if valid {
                tracing::info!(node = %link.config.node, "lease regained: serving again");
            } else {
                tracing::warn!(node = %link.config.node, "lease lost: stopping every activation");
                for kind in kinds.values() {
                    kind.stop_all();
                }
            }
            link.placement.changed();
            was_valid = valid;
        }
        let expiry = lease.expires_at().map(tokio::time::Instant::from_std);
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = async {
                match expiry {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {}
            _ = stopped(&mut stop) => return,
        }
    }
}

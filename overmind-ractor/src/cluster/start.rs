//! Bringing a cluster node up, in an order that never exposes a half-started node: the router
//! and the node server exist before this node can appear in a view, and the view is applied
//! before anything is served.

use std::sync::Arc;

use overmind_core::membership::{Membership, MembershipError, NodeView, ZooKeeperMembership};
use ractor::Actor;

use super::{
    ClusterConfig, ClusterLink, connect, listen, membership_config, rebalance,
    router::{Kinds, Router},
    transport,
};
use crate::{StartError, overmind::Inner, placement::Placement, runtime::Runtime};

/// A node whose membership has started registering.
pub(crate) struct Prepared {
    config: ClusterConfig,
    listener: std::net::TcpListener,
    advertise: String,
    membership: Arc<ZooKeeperMembership>,
}

/// Binds the listener and starts registering in ZooKeeper. Membership keeps the cluster's
/// epoch floor in `store`, the store the actors' leases are in.
pub(crate) fn prepare(
    config: ClusterConfig,
    store: Arc<dyn overmind_core::StateStore>,
) -> Result<Prepared, StartError> {
    let (listener, advertise) = listen(&config)
        .map_err(|e| StartError::Cluster(format!("cannot listen on {}: {e}", config.listen)))?;
    let membership = ZooKeeperMembership::start(membership_config(&config, &advertise), store)?;
    Ok(Prepared {
        config,
        listener,
        advertise,
        membership,
    })
}

impl Prepared {
    pub(crate) fn placement(&self) -> Placement {
        Placement::new(
            self.membership.clone() as Arc<dyn Membership>,
            false,
            self.config.unavailable_after,
        )
    }

    /// Starts the router and the node server, waits to be in a view, then starts the links,
    /// the rebalancer and the lease monitor.
    pub(crate) async fn start(
        self,
        rt: &Arc<Runtime>,
        inner: &Arc<Inner>,
    ) -> Result<(), StartError> {
        let Self {
            config,
            listener,
            advertise,
            membership,
        } = self;
        let fail = |e: StartError, membership: &ZooKeeperMembership| {
            membership.close();
            e
        };
        let kinds: Kinds = Arc::new(inner.kinds.clone());
        let supervisor = rt
            .supervisor
            .get()
            .cloned()
            .ok_or_else(|| StartError::Cluster("the supervisor is not running".into()))?;
        let (router_ref, _) = Actor::spawn_linked(
            None,
            Router {
                rt: rt.clone(),
                kinds: kinds.clone(),
            },
            (),
            supervisor,
        )
        .await
        .map_err(|e| {
            fail(
                StartError::Cluster(format!("cannot start the router: {e}")),
                &membership,
            )
        })?;
        let node_server = connect::start_server(&config)
            .await
            .map_err(|e| fail(StartError::Cluster(e), &membership))?;
        let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| {
            fail(
                StartError::Cluster(format!("cannot listen: {e}")),
                &membership,
            )
        })?;
        let accepting = tokio::spawn(transport::accept(
            listener,
            config.tls.clone(),
            node_server.clone(),
        ));
        let link = Arc::new(ClusterLink::new(
            config,
            membership.clone(),
            node_server.clone(),
            advertise,
            Arc::downgrade(rt),
        ));
        let _ = link.router.set(router_ref.clone());
        let _ = rt.cluster.set(link.clone());
        tokio::spawn(connect::maintain(link.clone()));
        // The accept loop ends with the cluster parts.
        let mut stop = link.stop.subscribe();
        tokio::spawn(async move {
            super::stopped(&mut stop).await;
            accepting.abort();
        });
        let joined = match serving_view(&membership, &link.config).await {
            Ok(view) => view,
            Err(e) => {
                link.stop.send_replace(true);
                node_server.stop(None);
                router_ref.stop(None);
                return Err(fail(e.into(), &membership));
            }
        };
        // Route by the view this node joined with from the first message on; the rebalancer
        // takes over from here.
        rt.placement.install(Some(joined));
        tokio::spawn(rebalance::apply_views(
            rt.clone(),
            kinds.clone(),
            link.clone(),
        ));
        tokio::spawn(rebalance::watch_lease(rt.clone(), kinds, link.clone()));
        tracing::info!(node = %link.config.node, addr = %link.addr, cluster = %link.config.cluster, "joined the cluster");
        Ok(())
    }
}

/// Waits (within `timeout`) until this node is a member of a published view and holds the
/// lease for that registration: only then may `spawn` return, so a caller never sees a node
/// that is not yet serving.
async fn serving_view(
    membership: &ZooKeeperMembership,
    config: &ClusterConfig,
) -> Result<NodeView, MembershipError> {
    let timeout = config.join_timeout;
    let deadline = tokio::time::Instant::now() + timeout;
    // Typed failures (a wrong cookie, ZooKeeper unreachable) come from here.
    tokio::time::timeout_at(deadline, membership.ready())
        .await
        .unwrap_or_else(|_| Err(not_serving(config)))?;
    let lease = membership.lease();
    let mut views = membership.views();
    let mut lease_changes = lease.subscribe();
    loop {
        let current = views.borrow_and_update().clone();
        if let Some(view) =
            current.filter(|v| v.member.as_ref().is_some_and(|m| lease.is_valid_for(m.id)))
        {
            return Ok(view);
        }
        tokio::select! {
            changed = views.changed() => {
                if changed.is_err() {
                    return Err(MembershipError::Closed);
                }
            }
            _ = lease_changes.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {
                return Err(not_serving(config));
            }
        }
    }
}

fn not_serving(config: &ClusterConfig) -> MembershipError {
    MembershipError::Unreachable {
        connect: config.zookeeper.clone(),
        reason: format!(
            "this node was not serving in a published view within {:?}",
            config.join_timeout
        ),
    }
}

/// Leaves the cluster (handing every actor over), then stops the cluster parts.
pub(crate) async fn leave(link: &ClusterLink) {
    link.leaving
        .store(true, std::sync::atomic::Ordering::Release);
    let timeout = link.config.join_timeout;
    match tokio::time::timeout(timeout, link.membership.leave()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "could not leave the cluster cleanly"),
        Err(_) => tracing::warn!(
            ?timeout,
            "leaving the cluster timed out; its actors move once the session expires"
        ),
    }
}

/// How long a node that left keeps relaying for calls still on their way.
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// After leaving: lets calls still on their way through this node finish.
pub(crate) async fn drain(link: &ClusterLink) {
    link.drain(DRAIN_LIMIT).await;
}

/// Stops the links and the node server, and closes the membership.
pub(crate) fn stop(link: &ClusterLink) {
    link.stop.send_replace(true);
    link.node_server.stop(None);
    link.membership.close();
}

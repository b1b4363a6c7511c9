//! Bringing a cluster node up, in an order that never exposes a half-started node: the router
//! and the node server exist before this node can appear in a view, and the view is applied
//! before anything is served.

use std::sync::Arc;

use overmind_core::membership::{Membership, ZooKeeperMembership};
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

/// Binds the listener and starts registering in ZooKeeper.
pub(crate) fn prepare(config: ClusterConfig) -> Result<Prepared, StartError> {
    let (listener, advertise) = listen(&config)
        .map_err(|e| StartError::Cluster(format!("cannot listen on {}: {e}", config.listen)))?;
    let membership = ZooKeeperMembership::start(membership_config(&config, &advertise))?;
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
        if let Err(e) = membership.ready().await {
            link.stop.send_replace(true);
            node_server.stop(None);
            router_ref.stop(None);
            return Err(fail(e.into(), &membership));
        }
        // Route by the view this node joined with from the first message on; the rebalancer
        // takes over from here.
        rt.placement.install(membership.views().borrow().clone());
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

/// Leaves the cluster (handing every actor over), then stops the cluster parts.
pub(crate) async fn leave(link: &ClusterLink) {
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

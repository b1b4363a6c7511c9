//! Bringing a cluster node up, in an order that never exposes a half-started node: the router
//! and the node server exist before this node can appear in a view, and the view is applied
//! before anything is served.

use std::sync::Arc;

use overmind_core::membership::{Membership, MembershipError, NodeView, ZooKeeperMembership};
use ractor::Actor;

use super::port::KindPort;
use super::{
    ClusterConfig, ClusterLink, connect, listen, membership_config,
    placement::RingPlacement,
    rebalance,
    router::{Kinds, Ports, Router},
    transport,
};
use crate::{
    StartError,
    engine::{distribution::Distribution, placement::Placement, runtime::Runtime},
};

/// A node whose membership has started registering.
pub(crate) struct Prepared {
    config: ClusterConfig,
    listener: std::net::TcpListener,
    advertise: String,
    membership: Arc<ZooKeeperMembership>,
    placement: Arc<RingPlacement>,
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
    let placement = Arc::new(RingPlacement::new(
        membership.clone() as Arc<dyn Membership>,
        config.unavailable_after,
    ));
    Ok(Prepared {
        config,
        listener,
        advertise,
        membership,
        placement,
    })
}

impl Prepared {
    /// Where actors live, as this node sees the cluster.
    pub(crate) fn placement(&self) -> Arc<dyn Placement> {
        self.placement.clone()
    }

    /// Starts the node server and the router, connects `kinds` to the cluster, waits to be
    /// in a view, then starts the links, the rebalancer and the lease monitor.
    pub(crate) async fn start(
        self,
        rt: &Arc<Runtime>,
        kinds: Vec<Arc<dyn KindPort>>,
    ) -> Result<(), StartError> {
        let Self {
            config,
            listener,
            advertise,
            membership,
            placement,
        } = self;
        let fail = |e: StartError, membership: &ZooKeeperMembership| {
            membership.close();
            e
        };
        let supervisor = rt
            .supervisor
            .get()
            .cloned()
            .ok_or_else(|| StartError::Cluster("the supervisor is not running".into()))?;
        let node_server = connect::start_server(&config)
            .await
            .map_err(|e| fail(StartError::Cluster(e), &membership))?;
        let tls = config.tls.clone();
        let link = Arc::new(ClusterLink::new(
            config,
            membership.clone(),
            node_server.clone(),
            advertise,
            placement,
            Arc::downgrade(rt),
        ));
        for kind in &kinds {
            kind.connect(&link);
        }
        let engine: Kinds = Arc::new(kinds.iter().map(|k| (k.name(), k.engine())).collect());
        let ports: Ports = Arc::new(kinds.into_iter().map(|k| (k.name(), k)).collect());
        let spawned = Actor::spawn_linked(
            None,
            Router {
                link: link.clone(),
                kinds: ports,
            },
            (),
            supervisor,
        )
        .await;
        let router_ref = match spawned {
            Ok((router_ref, _)) => router_ref,
            Err(e) => {
                node_server.stop(None);
                let e = StartError::Cluster(format!("cannot start the router: {e}"));
                return Err(fail(e, &membership));
            }
        };
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(e) => {
                node_server.stop(None);
                router_ref.stop(None);
                let e = StartError::Cluster(format!("cannot listen: {e}"));
                return Err(fail(e, &membership));
            }
        };
        let accepting = tokio::spawn(transport::accept(listener, tls, node_server.clone()));
        let _ = link.router.set(router_ref.clone());
        rt.distribute(Arc::new(Cluster { link: link.clone() }));
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
        link.placement.install(Some(joined));
        tokio::spawn(rebalance::apply_views(engine.clone(), link.clone()));
        tokio::spawn(rebalance::watch_lease(engine, link.clone()));
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

/// The cluster as the engine sees it.
struct Cluster {
    link: Arc<ClusterLink>,
}

impl Distribution for Cluster {
    fn activation_name(&self) -> Option<String> {
        // A marker name, so activations are never announced to peers.
        Some(transport::activation_name())
    }

    fn released(&self, key: &overmind_core::ActorKey, lease: &overmind_core::codec::Lease) {
        if let Some(rt) = self.link.rt.upgrade() {
            super::release::announce(&self.link, &rt, key, lease);
        }
    }

    fn ask_release(&self, key: &overmind_core::ActorKey, node: &str) {
        if let Some(rt) = self.link.rt.upgrade() {
            super::release::request(&self.link, &rt, key, node);
        }
    }

    fn leave(&self) -> futures::future::BoxFuture<'_, ()> {
        Box::pin(async {
            leave(&self.link).await;
            // Its actors live elsewhere now; calls still on their way through this node (sent
            // under an older view, or relayed) finish before the links close.
            self.link.drain(DRAIN_LIMIT).await;
        })
    }

    fn close(&self) {
        let link = &self.link;
        link.stop.send_replace(true);
        link.node_server.stop(None);
        link.membership.close();
    }

    fn remote_actor_count(&self) -> futures::future::BoxFuture<'_, usize> {
        Box::pin(connect::remote_actor_count(&self.link.node_server))
    }
}

/// Leaves the cluster, handing every actor over.
async fn leave(link: &ClusterLink) {
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

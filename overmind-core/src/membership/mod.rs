//! Cluster membership: who the members are, which epoch is current, and whether this node
//! may serve.
//!
//! [`Membership`] is what the runtime consumes. Two providers:
//! - [`SingleNode`]: the embedded default, one node that owns every actor, forever;
//! - `ZooKeeperMembership` (feature `zookeeper`): members register ephemeral nodes, the
//!   lowest-numbered one leads and publishes the view with version-conditional writes.
//!
//! The decisions are in [`protocol`] (no I/O); [`view`] holds what is published; [`lease`]
//! is the node's right to serve.

pub mod lease;
pub mod protocol;
#[cfg(test)]
mod simulation;
pub mod view;
#[cfg(feature = "zookeeper")]
pub mod zookeeper;

use std::sync::Arc;

use tokio::sync::watch;

pub use lease::Lease;
pub use view::{Member, MemberId, View, ViewRecord};
#[cfg(feature = "zookeeper")]
pub use zookeeper::{LinkSecurity, ZooKeeperConfig, ZooKeeperMembership};

use crate::store::BoxFuture;

/// The view as this node sees it, with its own registration in it.
#[derive(Debug, Clone)]
pub struct NodeView {
    /// The published view.
    pub view: Arc<View>,
    /// This node's registration, if it is a ring member of the current epoch.
    pub member: Option<Member>,
}

impl NodeView {
    /// Whether this node is a ring member of the current epoch.
    pub fn is_member(&self) -> bool {
        self.member.is_some()
    }
}

/// Why membership failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum MembershipError {
    /// The coordination service did not answer.
    #[error("cannot reach ZooKeeper at {connect}: {reason}")]
    Unreachable {
        /// The connection string.
        connect: String,
        /// What went wrong.
        reason: String,
    },
    /// This node's cookie is not the cluster's.
    #[error(
        "this node's cookie does not match cluster {cluster:?}'s: every node of a cluster must use the same cookie"
    )]
    CookieMismatch {
        /// The cluster.
        cluster: String,
    },
    /// This node links to its peers differently from the cluster (TLS on one, not the other).
    #[error(
        "cluster {cluster:?} links its nodes with {cluster_links}, but this node is configured for {node_links}: every node of a cluster must use the same (set or remove the TLS configuration)"
    )]
    LinkSecurityMismatch {
        /// The cluster.
        cluster: String,
        /// What the cluster uses.
        cluster_links: String,
        /// What this node was configured for.
        node_links: String,
    },
    /// A live member already uses this node's name.
    #[error(
        "node name {node:?} is already a live member of cluster {cluster:?}; waited {waited:?} for its session to end"
    )]
    NameInUse {
        /// The cluster.
        cluster: String,
        /// The name.
        node: String,
        /// How long this node waited.
        waited: std::time::Duration,
    },
    /// Invalid configuration.
    #[error("invalid membership configuration: {0}")]
    Config(String),
    /// A coordination-service operation failed.
    #[error("ZooKeeper error at {path}: {reason}")]
    Coordination {
        /// The znode.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The membership was shut down.
    #[error("membership is closed")]
    Closed,
}

/// A membership provider. See the [module docs](self).
pub trait Membership: Send + Sync + 'static {
    /// This node's name.
    fn node(&self) -> &str;

    /// The current view, updated as the leader publishes; `None` while this node is not
    /// registered (before joining, or between an expired session and rejoining).
    fn views(&self) -> watch::Receiver<Option<NodeView>>;

    /// The node's lease: it serves nothing while the lease is not valid.
    fn lease(&self) -> Arc<Lease>;

    /// Reports that this node has applied `epoch`: it stopped every activation it does not
    /// own in that epoch, and will activate only what it owns from then on.
    fn applied(&self, epoch: u64);

    /// Leaves the cluster gracefully: gives up every actor, waits until the cluster has
    /// applied the epoch without this node, then deregisters.
    fn leave(&self) -> BoxFuture<'_, Result<(), MembershipError>>;
}

/// The embedded default: one node, always the owner of everything.
#[derive(Debug)]
pub struct SingleNode {
    name: String,
    views: watch::Sender<Option<NodeView>>,
    lease: Arc<Lease>,
}

impl SingleNode {
    /// A single node called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        let view = View::single(&name, 1);
        let member = view.members().first().cloned();
        Self {
            views: watch::channel(Some(NodeView { view, member })).0,
            name,
            lease: Arc::new(Lease::forever()),
        }
    }
}

impl Membership for SingleNode {
    fn node(&self) -> &str {
        &self.name
    }

    fn views(&self) -> watch::Receiver<Option<NodeView>> {
        self.views.subscribe()
    }

    fn lease(&self) -> Arc<Lease> {
        self.lease.clone()
    }

    fn applied(&self, _epoch: u64) {}

    fn leave(&self) -> BoxFuture<'_, Result<(), MembershipError>> {
        Box::pin(async { Ok(()) })
    }
}

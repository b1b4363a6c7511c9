//! Membership in ZooKeeper.
//!
//! ```text
//! /overmind/<cluster>                 data: ClusterRecord (JSON): the cookie's fingerprint and
//!                                     how members link (plain TCP or mutual TLS)
//! /overmind/<cluster>/members/m-<seq> ephemeral sequential; data: MemberData (JSON)
//! /overmind/<cluster>/view            data: ViewRecord (JSON), written only by the leader,
//!                                     always conditional on the version it read
//! ```
//!
//! - **Registration.** A node registers an ephemeral sequential member node once no live member
//!   carries its name, so a restarted node never overlaps its previous incarnation. A process
//!   never registers twice under one sequence number (they start again when ZooKeeper loses
//!   its data).
//! - **Election.** The member with the lowest sequence number leads. Every other member watches
//!   only its predecessor, so a leader change wakes one node, not the cluster.
//! - **The leader** watches the members (one persistent recursive watch) and publishes what
//!   [`protocol::leader_step`] decides, with a version-conditional write (two leaders can never
//!   both publish), after raising the store's epoch floor to the epoch it publishes. A view
//!   it cannot continue from (lost, rolled back, or written by no leader) is replaced by a
//!   recovery view once the leases granted under it can have run out.
//! - **Every member** watches the view with one-shot watches and re-reads it after every
//!   reconnection (events are lost while disconnected). It adopts only what
//!   [`protocol::check_successor`] and [`protocol::check_floor`] allow, and reports the epochs
//!   it has applied in its member node's data.
//! - **The lease** is renewed by a read every fifth of the session timeout; see [`Lease`].
//! - **An expired session** revokes the lease at once; the node rejoins as a new member.
//!
//! One-shot and persistent watches are never set on the same path in one session: ZooKeeper 3.8
//! does not fire the one-shot watch then.
//!
//! # Access control
//! Every session authenticates with ZooKeeper's `digest` scheme as `overmind-<cluster>`, with a
//! password derived from the cluster name and cookie ([`ZooKeeperConfig::credential`]), and
//! every znode of the cluster is created with the ACL `auth` (all rights to that identity and
//! no one else). So only holders of the cookie can create, change or delete members or the
//! view.
//!
//! **Unauthenticated clients can read nothing** of a cluster (not even its ACL: ZooKeeper
//! answers `getAcl` only to clients that may read). The root holds a SHA-256 fingerprint of
//! the cookie, and the ACL holds a SHA-1 digest of the credential; both are fast to compute,
//! so a readable one would let anyone test guesses of a weak cookie offline, as fast as their
//! hardware allows. Without read access a guess costs a round trip to ZooKeeper. The view and
//! member records also name every node's address, which an outsider need not learn.
//!
//! The shared parent `/overmind` gives everyone `create`, `read` and `delete` (no `write`, no
//! `admin`), so a second cluster with another cookie can create its own root beside this one,
//! and an operator can remove a cluster whose znodes were deleted. ZooKeeper deletes only
//! empty nodes, and a cluster's root always holds its members and view nodes, so no one
//! without the cookie can delete a live cluster's root. Anyone can create a root before the
//! cluster's first node does: to rule that out, give `/overmind` (or a chroot in the connect
//! string) ACLs of your own before the first start.
//!
//! A cluster whose znodes an older release created open (`world:anyone:cdrwa`) is secured by
//! its first authenticated node, once its cookie matches the cluster's: the root, members and
//! view nodes get the `auth` ACL. Nodes of the older release can then no longer read the view
//! and stop with a ZooKeeper authorization error, so upgrade every node together.

use std::{
    collections::BTreeSet,
    sync::Arc,
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::{sync::watch, task::JoinHandle};
use zookeeper_client as zk;

use super::{
    Lease, Membership, MembershipError, NodeView,
    protocol::{self, LeaderStep, LiveMember},
    view::{MemberId, View, ViewRecord},
};
use crate::{
    ring::DEFAULT_VNODES,
    store::{BoxFuture, StateStore, StoreError},
};

/// How to join a cluster through ZooKeeper.
#[derive(Debug, Clone)]
pub struct ZooKeeperConfig {
    /// ZooKeeper connection string, such as `127.0.0.1:2181`.
    pub connect: String,
    /// The cluster's name: nodes with the same name form one cluster.
    pub cluster: String,
    /// This node's name, unique in the cluster and stable across restarts.
    pub node: String,
    /// Where this node's ractor_cluster server can be reached, `host:port`.
    pub addr: String,
    /// The cluster cookie. Only its fingerprint is stored in ZooKeeper.
    pub cookie: String,
    /// How this node links to its peers. Every member of a cluster must use the same: a
    /// node that could not talk to the others would own actors nobody can reach.
    pub links: LinkSecurity,
    /// Requested session timeout (the server may clamp it).
    pub session_timeout: Duration,
    /// Virtual nodes per member on the ring.
    pub vnodes: u32,
    /// How long `join` waits for ZooKeeper, and for a live member with this node's name to go.
    pub join_timeout: Duration,
    /// How long `join` waits for a first ZooKeeper session before it fails with
    /// [`MembershipError::Unreachable`] (a wrong address, ZooKeeper down). Once connected, a
    /// lost session is retried for as long as the node runs.
    pub connect_timeout: Duration,
}

impl ZooKeeperConfig {
    /// A configuration with defaults: plain links, 6 s sessions, 256 virtual nodes, 30 s to
    /// join, 5 s to connect.
    pub fn new(
        connect: impl Into<String>,
        cluster: impl Into<String>,
        node: impl Into<String>,
        addr: impl Into<String>,
        cookie: impl Into<String>,
    ) -> Self {
        Self {
            connect: connect.into(),
            cluster: cluster.into(),
            node: node.into(),
            addr: addr.into(),
            cookie: cookie.into(),
            links: LinkSecurity::Plain,
            session_timeout: Duration::from_secs(6),
            vnodes: DEFAULT_VNODES,
            join_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// The ZooKeeper `digest` credential, `user:password`, derived from the cluster name and
    /// cookie: what every node authenticates with, and what an operator gives `zkCli.sh`
    /// (`addauth digest <credential>`) to inspect or remove the cluster's znodes. The password
    /// is the hex SHA-256 of `"overmind-zookeeper\0<cluster>\0<cookie>"`, so
    /// `printf 'overmind-zookeeper\0%s\0%s' "$CLUSTER" "$COOKIE" | sha256sum` computes it
    /// too.
    pub fn credential(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"overmind-zookeeper\0");
        h.update(self.cluster.as_bytes());
        h.update(b"\0");
        h.update(self.cookie.as_bytes());
        format!("overmind-{}:{}", self.cluster, hex(&h.finalize()))
    }

    fn validate(&self) -> Result<(), MembershipError> {
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 128
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        };
        if !name_ok(&self.cluster) {
            return Err(MembershipError::Config(format!(
                "cluster name {:?}: use 1 to 128 characters from A-Z, a-z, 0-9, '_', '-', '.'",
                self.cluster
            )));
        }
        if !name_ok(&self.node) {
            return Err(MembershipError::Config(format!(
                "node name {:?}: use 1 to 128 characters from A-Z, a-z, 0-9, '_', '-', '.'",
                self.node
            )));
        }
        if self.addr.is_empty() {
            return Err(MembershipError::Config("the node address is empty".into()));
        }
        if self.vnodes == 0 {
            return Err(MembershipError::Config("vnodes must be at least 1".into()));
        }
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How the members of a cluster link to each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkSecurity {
    /// Plain TCP, authenticated by the cookie.
    Plain,
    /// Mutual TLS, and the cookie.
    MutualTls,
}

impl std::fmt::Display for LinkSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Plain => "plain TCP",
            Self::MutualTls => "mutual TLS",
        })
    }
}

/// What the cluster's root node holds: set by the first node, checked by every other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ClusterRecord {
    /// SHA-256 of the cluster name and cookie, hex.
    cookie: String,
    links: LinkSecurity,
}

/// What a member publishes about itself in its member node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct MemberData {
    name: String,
    addr: String,
    /// The newest epoch this member has applied.
    applied: u64,
    /// Leaving: give my actors away, then I deregister.
    leaving: bool,
}

/// What the runtime asks the driver to publish.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Progress {
    applied: u64,
    leaving: bool,
}

struct Paths {
    root: String,
    members: String,
    member_prefix: String,
    view: String,
}

impl Paths {
    fn new(cluster: &str) -> Self {
        let root = format!("/overmind/{cluster}");
        Self {
            members: format!("{root}/members"),
            member_prefix: format!("{root}/members/m-"),
            view: format!("{root}/view"),
            root,
        }
    }

    fn member(&self, id: MemberId) -> String {
        if id <= i32::MAX as u64 {
            format!("{}{id:010}", self.member_prefix)
        } else {
            format!("{}{id:019}", self.member_prefix)
        }
    }

    fn parse_child(child: &str) -> Option<MemberId> {
        child.strip_prefix("m-")?.parse().ok()
    }
}

/// How a session ended.
enum Ended {
    /// The server expired the session: rejoin as a new member.
    Expired,
    /// Lost contact before or while setting up: retry.
    Lost(String),
    /// Cannot go on (wrong cookie, say).
    Fatal(MembershipError),
    /// Left the cluster gracefully.
    Left,
    /// Closed by the owner.
    Closed,
}

fn classify(path: &str, e: zk::Error) -> Ended {
    match e {
        zk::Error::SessionExpired => Ended::Expired,
        zk::Error::AuthFailed | zk::Error::NoAuth => Ended::Fatal(MembershipError::Coordination {
            path: path.to_owned(),
            reason: format!(
                "{e}: the znode's ACL does not admit this cluster's credential (derived from its cookie)"
            ),
        }),
        other => Ended::Lost(format!("{path}: {other}")),
    }
}

/// How joining is going.
#[derive(Debug, Clone)]
enum JoinStatus {
    Joining,
    Joined,
    Failed(MembershipError),
}

struct Shared {
    cfg: ZooKeeperConfig,
    /// Keeps the cluster's epoch floor.
    store: Arc<dyn StateStore>,
    /// `user:password` for ZooKeeper's digest scheme.
    credential: String,
    /// Every member id this process registered under. After ZooKeeper loses its data its
    /// sequence numbers start again, and a lease check that names an old registration must
    /// never pass for a new one, so no id is taken twice.
    registrations: Mutex<BTreeSet<MemberId>>,
    status: watch::Sender<JoinStatus>,
    paths: Paths,
    fingerprint: String,
    lease: Arc<Lease>,
    views: watch::Sender<Option<NodeView>>,
    progress: watch::Sender<Progress>,
    closed: watch::Sender<bool>,
    left: watch::Sender<bool>,
    last_error: Mutex<Option<String>>,
    /// Set once a ZooKeeper session was established.
    connected: watch::Sender<bool>,
}

/// ZooKeeper-backed [`Membership`]. See the [module docs](self).
pub struct ZooKeeperMembership {
    shared: Arc<Shared>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for ZooKeeperMembership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZooKeeperMembership")
            .field("cluster", &self.shared.cfg.cluster)
            .field("node", &self.shared.cfg.node)
            .finish_non_exhaustive()
    }
}

/// The lease a request sent at `t0` and answered grants.
fn lease_until(t0: Instant, session_timeout: Duration) -> Instant {
    t0 + session_timeout * 4 / 5
}

impl ZooKeeperMembership {
    /// Joins the cluster: registers this node and waits until a published view includes it.
    /// `store` keeps the cluster's epoch floor: every node of a cluster must use the same
    /// (shared) store.
    pub async fn join(
        cfg: ZooKeeperConfig,
        store: Arc<dyn StateStore>,
    ) -> Result<Arc<Self>, MembershipError> {
        let this = Self::start(cfg, store)?;
        match this.ready().await {
            Ok(()) => Ok(this),
            Err(e) => {
                this.close();
                Err(e)
            }
        }
    }

    /// Starts joining in the background; [`Self::ready`] tells when this node is in a view.
    /// `store` keeps the cluster's epoch floor (see [`protocol`]).
    pub fn start(
        cfg: ZooKeeperConfig,
        store: Arc<dyn StateStore>,
    ) -> Result<Arc<Self>, MembershipError> {
        cfg.validate()?;
        let fingerprint = Self::fingerprint(&cfg);
        let shared = Arc::new(Shared {
            store,
            credential: cfg.credential(),
            registrations: Mutex::new(BTreeSet::new()),
            status: watch::channel(JoinStatus::Joining).0,
            paths: Paths::new(&cfg.cluster),
            fingerprint,
            lease: Arc::new(Lease::new()),
            views: watch::channel(None).0,
            progress: watch::channel(Progress::default()).0,
            closed: watch::channel(false).0,
            left: watch::channel(false).0,
            last_error: Mutex::new(None),
            connected: watch::channel(false).0,
            cfg,
        });
        let task = tokio::spawn(run(shared.clone()));
        Ok(Arc::new(Self {
            shared,
            task: Mutex::new(Some(task)),
        }))
    }

    /// The cookie's fingerprint, stored in the cluster's root.
    fn fingerprint(cfg: &ZooKeeperConfig) -> String {
        let mut h = Sha256::new();
        h.update(b"overmind-cookie\0");
        h.update(cfg.cluster.as_bytes());
        h.update(b"\0");
        h.update(cfg.cookie.as_bytes());
        hex(&h.finalize())
    }

    /// Waits (at most the join timeout) until a published view includes this node; fails
    /// sooner, after the connect timeout, if no ZooKeeper session could be established.
    pub async fn ready(&self) -> Result<(), MembershipError> {
        let shared = &self.shared;
        let join_timeout = shared.cfg.join_timeout;
        let connect_timeout = shared.cfg.connect_timeout;
        let mut status = shared.status.subscribe();
        let mut connected = shared.connected.subscribe();
        let never_connected = async {
            let answered = tokio::time::timeout(connect_timeout, connected.wait_for(|c| *c))
                .await
                .is_ok();
            if answered {
                // Connected (or closed): the join timeout alone bounds the rest.
                std::future::pending::<()>().await;
            }
        };
        let settled = tokio::select! {
            settled = tokio::time::timeout(
                join_timeout,
                status.wait_for(|s| !matches!(s, JoinStatus::Joining)),
            ) => settled,
            () = never_connected => {
                let reason = shared.last_error.lock().clone().unwrap_or_else(|| {
                    format!("no ZooKeeper server answered within {connect_timeout:?}")
                });
                return Err(MembershipError::Unreachable {
                    connect: shared.cfg.connect.clone(),
                    reason,
                });
            }
        };
        match settled {
            Ok(Ok(s)) => match &*s {
                JoinStatus::Failed(e) => Err(e.clone()),
                _ => Ok(()),
            },
            Ok(Err(_)) => Err(MembershipError::Closed),
            Err(_) => {
                let reason = shared.last_error.lock().clone().unwrap_or_else(|| {
                    format!("no view including this node within {join_timeout:?}")
                });
                Err(MembershipError::Unreachable {
                    connect: shared.cfg.connect.clone(),
                    reason,
                })
            }
        }
    }

    /// Stops taking part: the session is closed (its member node vanishes at once) and the
    /// lease revoked. Use [`Membership::leave`] to hand actors over first.
    pub fn close(&self) {
        self.shared.closed.send_replace(true);
        self.shared.lease.revoke();
    }

    /// The session timeout asked for.
    pub fn session_timeout(&self) -> Duration {
        self.shared.cfg.session_timeout
    }
}

impl Drop for ZooKeeperMembership {
    fn drop(&mut self) {
        self.close();
        if let Some(task) = self.task.lock().take() {
            task.abort();
        }
    }
}

impl Membership for ZooKeeperMembership {
    fn node(&self) -> &str {
        &self.shared.cfg.node
    }

    fn views(&self) -> watch::Receiver<Option<NodeView>> {
        self.shared.views.subscribe()
    }

    fn lease(&self) -> Arc<Lease> {
        self.shared.lease.clone()
    }

    fn applied(&self, epoch: u64) {
        // Acknowledgements belong to a registration: the rebalancer may finish applying a view
        // read before the session ended, and that epoch must not be reported for the new one
        // (after ZooKeeper lost its data, it can be newer than anything the new one adopted).
        let adopted = self.shared.views.borrow().as_ref().map(|v| v.view.epoch());
        if adopted.is_none_or(|adopted| epoch > adopted) {
            return;
        }
        self.shared.progress.send_if_modified(|p| {
            let newer = epoch > p.applied;
            if newer {
                p.applied = epoch;
            }
            newer
        });
    }

    fn leave(&self) -> BoxFuture<'_, Result<(), MembershipError>> {
        Box::pin(async move {
            let mut left = self.shared.left.subscribe();
            self.shared.progress.send_modify(|p| p.leaving = true);
            loop {
                if *left.borrow_and_update() {
                    return Ok(());
                }
                if left.changed().await.is_err() || *self.shared.closed.borrow() {
                    return Err(MembershipError::Closed);
                }
            }
        })
    }
}

async fn run(shared: Arc<Shared>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        if *shared.closed.borrow() {
            break;
        }
        let ended = session(&shared).await;
        shared.lease.revoke();
        shared.views.send_replace(None);
        match ended {
            Ended::Left => {
                shared.left.send_replace(true);
                tracing::info!(node = %shared.cfg.node, "left the cluster");
                break;
            }
            Ended::Closed => break,
            Ended::Fatal(e) => {
                tracing::error!(node = %shared.cfg.node, error = %e, "membership cannot continue");
                *shared.last_error.lock() = Some(e.to_string());
                shared.status.send_replace(JoinStatus::Failed(e));
                break;
            }
            Ended::Expired => {
                tracing::warn!(node = %shared.cfg.node, "ZooKeeper session expired: stopped serving; rejoining as a new member");
                backoff = Duration::from_millis(50);
            }
            Ended::Lost(reason) => {
                tracing::warn!(node = %shared.cfg.node, %reason, "lost ZooKeeper; retrying");
                *shared.last_error.lock() = Some(reason);
                let mut closed = shared.closed.subscribe();
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = closed.wait_for(|c| *c) => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

async fn session(shared: &Shared) -> Ended {
    let cfg = &shared.cfg;
    let paths = &shared.paths;
    let connect = zk::Client::connector()
        .with_session_timeout(cfg.session_timeout)
        .with_connection_timeout(cfg.session_timeout)
        .with_auth("digest", shared.credential.as_bytes())
        .connect(&cfg.connect);
    let client = match tokio::time::timeout(cfg.session_timeout * 2, connect).await {
        Ok(Ok(client)) => {
            shared.connected.send_replace(true);
            client
        }
        Ok(Err(e)) => return Ended::Lost(format!("connect: {e}")),
        Err(_) => return Ended::Lost("connect: timed out".into()),
    };
    let timeout = client.session_timeout();
    // A store without an epoch floor could never let a view be published: say so now.
    match shared.store.epoch_floor(&cfg.cluster).await {
        Ok(_) => {}
        Err(e @ StoreError::Unsupported { .. }) => {
            return Ended::Fatal(MembershipError::Config(format!(
                "a cluster keeps its epoch floor in the state store: {e}"
            )));
        }
        Err(e) => return Ended::Lost(format!("reading the epoch floor: {e}")),
    }
    if let Err(ended) = prepare(&client, shared).await {
        return ended;
    }
    if let Err(ended) = wait_for_name(&client, shared).await {
        return ended;
    }
    // A new registration has applied nothing yet.
    shared.progress.send_modify(|p| p.applied = 0);
    let data = MemberData {
        name: cfg.node.clone(),
        addr: cfg.addr.clone(),
        applied: 0,
        leaving: shared.progress.borrow().leaving,
    };
    let (me, t0) = match register(&client, shared, &data).await {
        Ok(registered) => registered,
        Err(ended) => return ended,
    };
    // The lease belongs to this registration: nothing decided under an earlier one (an
    // expired session) can serve under it.
    shared.lease.grant(me, lease_until(t0, timeout));
    let my_path = paths.member(me);
    tracing::info!(node = %cfg.node, member = me, "registered in cluster {}", cfg.cluster);

    let mut closed = shared.closed.subscribe();
    let ended = tokio::select! {
        e = watch_views(&client, shared, me) => e,
        e = renew_lease(&client, shared, timeout) => e,
        e = elect_and_lead(&client, shared, me, timeout) => e,
        e = report_progress(&client, shared, &my_path, data) => e,
        e = watch_session(&client) => e,
        _ = closed.wait_for(|c| *c) => Ended::Closed,
    };
    if matches!(ended, Ended::Left | Ended::Closed) {
        // Deregister now rather than when the session times out.
        let _ = client.delete(&my_path, None).await;
    }
    ended
}

/// Registers this node's ephemeral sequential member node under an id this process never
/// held before; returns the id and when the creating request was sent (the lease's start).
async fn register(
    client: &zk::Client,
    shared: &Shared,
    data: &MemberData,
) -> Result<(MemberId, Instant), Ended> {
    let paths = &shared.paths;
    let bytes = serde_json::to_vec(data).unwrap_or_default();
    let mode = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::creator_all());
    loop {
        let t0 = Instant::now();
        let (_, seq) = client
            .create(&paths.member_prefix, &bytes, &mode)
            .await
            .map_err(|e| classify(&paths.member_prefix, e))?;
        let id = seq.into_i64() as MemberId;
        if shared.registrations.lock().insert(id) {
            return Ok((id, t0));
        }
        // ZooKeeper's sequence numbers started again (it lost its data), and this process
        // held this id before: decisions of that registration name it, so it must not become
        // valid again. Each attempt advances the sequence, so this ends.
        tracing::info!(node = %shared.cfg.node, member = id, "ZooKeeper handed out a member id this node held before (its data was lost); registering again");
        let path = paths.member(id);
        client
            .delete(&path, None)
            .await
            .map_err(|e| classify(&path, e))?;
    }
}

/// The ACL of the shared parent `/overmind`: anyone may create a cluster's root, list the
/// clusters and delete an empty root; no one may change it. See the [module docs](self).
fn parent_acls() -> [zk::Acl; 1] {
    [zk::Acl::new(
        zk::Permission::CREATE | zk::Permission::READ | zk::Permission::DELETE,
        zk::AuthId::anyone(),
    )]
}

/// Whether an ACL lets clients without the cluster's credential in.
fn is_open(acls: &[zk::Acl]) -> bool {
    acls.iter().any(|acl| acl.scheme() == "world")
}

/// Creates the cluster's nodes if needed, checks that this node's cookie and link security
/// are the cluster's, and secures nodes an older release created open.
async fn prepare(client: &zk::Client, shared: &Shared) -> Result<(), Ended> {
    let paths = &shared.paths;
    let mine = ClusterRecord {
        cookie: shared.fingerprint.clone(),
        links: shared.cfg.links,
    };
    let record = serde_json::to_vec(&mine).map_err(|e| {
        Ended::Fatal(MembershipError::Coordination {
            path: paths.root.clone(),
            reason: e.to_string(),
        })
    })?;
    let parent = paths.root.rsplit_once('/').map_or("", |(p, _)| p);
    let parent_acls = parent_acls();
    let shared_parent = zk::CreateMode::Persistent.with_acls(zk::Acls::new(&parent_acls));
    match client.create(parent, &[], &shared_parent).await {
        Ok(_) | Err(zk::Error::NodeExists) => {}
        Err(zk::Error::NoNode) => {
            return Err(Ended::Fatal(MembershipError::Config(format!(
                "the chroot in ZooKeeper connect string {:?} does not exist: create it first",
                shared.cfg.connect
            ))));
        }
        Err(e) => return Err(classify(parent, e)),
    }
    tighten_legacy_parent(client, parent, &parent_acls).await?;
    // The root is created with its record, so it is never there without one (an older release
    // set the record afterwards; that case is handled below).
    let private = zk::CreateMode::Persistent.with_acls(zk::Acls::creator_all());
    match client.create(&paths.root, &record, &private).await {
        Ok(_) | Err(zk::Error::NodeExists) => {}
        Err(e) => return Err(classify(&paths.root, e)),
    }
    loop {
        let (data, stat) = match client.get_data(&paths.root).await {
            Ok(read) => read,
            // Only the cluster's credential may read its root, and the credential comes from
            // the cookie.
            Err(zk::Error::NoAuth) => {
                return Err(Ended::Fatal(MembershipError::CookieMismatch {
                    cluster: shared.cfg.cluster.clone(),
                }));
            }
            Err(e) => return Err(classify(&paths.root, e)),
        };
        if data.is_empty() {
            match client
                .set_data(&paths.root, &record, Some(stat.version))
                .await
            {
                Ok(_) => break,
                Err(zk::Error::BadVersion) => continue,
                Err(e) => return Err(classify(&paths.root, e)),
            }
        }
        check_cluster_record(&data, &mine, &shared.cfg.cluster, &paths.root)
            .map_err(Ended::Fatal)?;
        break;
    }
    for path in [&paths.members, &paths.view] {
        match client.create(path, &[], &private).await {
            Ok(_) | Err(zk::Error::NodeExists) => {}
            Err(e) => return Err(classify(path, e)),
        }
    }
    // The cookie matched, so the cluster is ours to secure.
    for path in [&paths.root, &paths.members, &paths.view] {
        secure_legacy(client, shared, path).await?;
    }
    Ok(())
}

/// Gives a node an older release created open the cluster's ACL.
async fn secure_legacy(client: &zk::Client, shared: &Shared, path: &str) -> Result<(), Ended> {
    let (acls, stat) = match client.get_acl(path).await {
        Ok(read) => read,
        Err(zk::Error::NoNode) => return Ok(()),
        Err(e) => return Err(classify(path, e)),
    };
    if !is_open(&acls) {
        return Ok(());
    }
    match client
        .set_acl(path, &zk::Acls::creator_all(), Some(stat.aversion))
        .await
    {
        Ok(_) => {
            tracing::warn!(node = %shared.cfg.node, %path, "secured a znode an older release created world-writable; nodes of that release can no longer take part");
            Ok(())
        }
        // Another node secured it meanwhile.
        Err(zk::Error::BadVersion) => Ok(()),
        Err(e) => Err(classify(path, e)),
    }
}

/// An older release created the shared parent with `world:anyone:cdrwa`; narrow it to what
/// [`parent_acls`] allows. An ACL someone else chose is left alone.
async fn tighten_legacy_parent(
    client: &zk::Client,
    parent: &str,
    wanted: &[zk::Acl],
) -> Result<(), Ended> {
    let (acls, stat) = match client.get_acl(parent).await {
        Ok(read) => read,
        // Not ours to read: someone gave it ACLs of their own.
        Err(zk::Error::NoAuth | zk::Error::NoNode) => return Ok(()),
        Err(e) => return Err(classify(parent, e)),
    };
    let legacy = acls.as_slice() == &*zk::Acls::anyone_all();
    if legacy {
        match client.set_acl(parent, wanted, Some(stat.aversion)).await {
            Ok(_) | Err(zk::Error::BadVersion | zk::Error::NoAuth) => {}
            Err(e) => return Err(classify(parent, e)),
        }
    }
    Ok(())
}

/// Compares the cluster's record with this node's.
fn check_cluster_record(
    data: &[u8],
    mine: &ClusterRecord,
    cluster: &str,
    path: &str,
) -> Result<(), MembershipError> {
    let theirs: ClusterRecord =
        serde_json::from_slice(data).map_err(|e| MembershipError::Coordination {
            path: path.to_owned(),
            reason: format!("cluster record: {e}"),
        })?;
    if theirs.cookie != mine.cookie {
        return Err(MembershipError::CookieMismatch {
            cluster: cluster.to_owned(),
        });
    }
    if theirs.links != mine.links {
        return Err(MembershipError::LinkSecurityMismatch {
            cluster: cluster.to_owned(),
            cluster_links: theirs.links.to_string(),
            node_links: mine.links.to_string(),
        });
    }
    Ok(())
}

/// Reads every live member's registration.
async fn live_members(client: &zk::Client, paths: &Paths) -> Result<Vec<LiveMember>, zk::Error> {
    let children = client.list_children(&paths.members).await?;
    let mut live = Vec::with_capacity(children.len());
    for child in children {
        let Some(id) = Paths::parse_child(&child) else {
            continue;
        };
        let data = match client.get_data(&paths.member(id)).await {
            Ok((data, _)) => data,
            Err(zk::Error::NoNode) => continue, // gone meanwhile
            Err(e) => return Err(e),
        };
        match serde_json::from_slice::<MemberData>(&data) {
            Ok(m) => live.push(LiveMember {
                id,
                name: m.name,
                addr: m.addr,
                applied: m.applied,
                leaving: m.leaving,
            }),
            Err(e) => {
                tracing::warn!(member = id, error = %e, "ignoring an unreadable member registration")
            }
        }
    }
    Ok(live)
}

/// Waits until no live member carries this node's name (a previous incarnation whose session
/// has not expired yet).
async fn wait_for_name(client: &zk::Client, shared: &Shared) -> Result<(), Ended> {
    let started = Instant::now();
    let paths = &shared.paths;
    loop {
        let live = live_members(client, paths)
            .await
            .map_err(|e| classify(&paths.members, e))?;
        let Some(previous) = live.iter().find(|m| m.name == shared.cfg.node) else {
            return Ok(());
        };
        let waited = started.elapsed();
        if waited > shared.cfg.join_timeout {
            return Err(Ended::Fatal(MembershipError::NameInUse {
                cluster: shared.cfg.cluster.clone(),
                node: shared.cfg.node.clone(),
                waited,
            }));
        }
        tracing::info!(node = %shared.cfg.node, member = previous.id, "a previous registration of this node is still live; waiting for its session to end");
        let path = paths.member(previous.id);
        match client.check_and_watch_stat(&path).await {
            Ok((None, _)) => {}
            Ok((Some(_), watcher)) => {
                let _ = tokio::time::timeout(Duration::from_secs(1), watcher.changed()).await;
            }
            Err(e) => return Err(classify(&path, e)),
        }
    }
}

/// Publishes every view the leader writes; re-reads after each reconnection. A record is
/// adopted only if the protocol allows it ([`protocol::check_successor`],
/// [`protocol::check_floor`]); otherwise it is logged and the node keeps the view it has.
async fn watch_views(client: &zk::Client, shared: &Shared, me: MemberId) -> Ended {
    let path = &shared.paths.view;
    let mut state = client.state_watcher();
    // The view this registration adopted last, and the epoch floor as last read (it only
    // rises, so a view at or below it needs no store read).
    let mut adopted: Option<ViewRecord> = None;
    let mut floor = 0;
    loop {
        let (data, _, watcher) = match client.get_and_watch_data(path).await {
            Ok(read) => read,
            Err(zk::Error::NoNode) => {
                // Deleted (the leader creates it again): wait for it to come back.
                match client.check_and_watch_stat(path).await {
                    Ok((Some(_), _)) => {}
                    Ok((None, created)) => {
                        tokio::select! {
                            event = created.changed() => if is_terminal(&event) {
                                return Ended::Expired;
                            },
                            _ = reconnected(&mut state) => {}
                        }
                    }
                    Err(e) => match classify(path, e) {
                        Ended::Lost(_) => reconnected(&mut state).await,
                        other => return other,
                    },
                }
                continue;
            }
            Err(e) => match classify(path, e) {
                Ended::Lost(_) => {
                    reconnected(&mut state).await;
                    continue;
                }
                other => return other,
            },
        };
        let decided = match ViewRecord::decode(&data) {
            Ok(record) => adoptable(shared, adopted.as_ref(), record, &mut floor).await,
            Err(reason) => Ok(Err(protocol::Refusal::Unreadable(reason))),
        };
        match decided {
            Ok(Ok(record)) => {
                adopted = Some(record.clone());
                let view = Arc::new(View::new(record, shared.cfg.vnodes));
                let member = view.members().iter().find(|m| m.id == me).cloned();
                let joined = member.is_some();
                tracing::debug!(node = %shared.cfg.node, epoch = view.epoch(), stable = view.stable(), "view");
                // The view first: whoever `ready` wakes finds this node in it.
                shared.views.send_replace(Some(NodeView { view, member }));
                if joined {
                    shared.status.send_if_modified(|s| {
                        let joining = matches!(s, JoinStatus::Joining);
                        if joining {
                            *s = JoinStatus::Joined;
                        }
                        joining
                    });
                }
            }
            Ok(Err(refusal)) => {
                let kept = adopted.as_ref().map(|r| r.epoch);
                tracing::error!(node = %shared.cfg.node, %path, kept_epoch = ?kept, "refusing the view record: {refusal}. This node keeps the view it has; the leader replaces a record no leader published. If it persists, check who writes to ZooKeeper with the cluster's credentials");
            }
            Err(error) => {
                // Without the floor the view cannot be checked; read both again shortly.
                tracing::warn!(node = %shared.cfg.node, %error, "cannot read the epoch floor from the store; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        }
        tokio::select! {
            event = watcher.changed() => {
                if event.event_type == zk::EventType::Session && event.session_state.is_terminated() {
                    return Ended::Expired;
                }
            }
            _ = reconnected(&mut state) => {}
        }
    }
}

/// Whether this node may adopt `record`: the protocol's checks, reading the store's floor only
/// when the record is above the floor last read.
async fn adoptable(
    shared: &Shared,
    adopted: Option<&ViewRecord>,
    record: ViewRecord,
    floor: &mut u64,
) -> Result<Result<ViewRecord, protocol::Refusal>, StoreError> {
    if let Err(refusal) = protocol::check_successor(adopted, &record) {
        return Ok(Err(refusal));
    }
    if record.epoch > *floor {
        *floor = shared.store.epoch_floor(&shared.cfg.cluster).await?;
    }
    Ok(protocol::check_floor(&record, *floor).map(|()| record))
}

/// Completes when the session reconnects after a disconnection.
async fn reconnected(state: &mut zk::StateWatcher) {
    let mut was_disconnected = false;
    loop {
        match state.changed().await {
            zk::SessionState::Disconnected => was_disconnected = true,
            zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly
                if was_disconnected =>
            {
                return;
            }
            s if s.is_terminated() => return std::future::pending().await,
            _ => {}
        }
    }
}

/// Ends when the session does.
async fn watch_session(client: &zk::Client) -> Ended {
    let mut state = client.state_watcher();
    loop {
        match state.changed().await {
            zk::SessionState::Expired => return Ended::Expired,
            zk::SessionState::Closed => return Ended::Lost("session closed".into()),
            zk::SessionState::AuthFailed => {
                return Ended::Fatal(MembershipError::Coordination {
                    path: "/".into(),
                    reason: "authentication failed".into(),
                });
            }
            _ => {}
        }
    }
}

/// Renews the lease with a read every fifth of the session timeout.
async fn renew_lease(client: &zk::Client, shared: &Shared, timeout: Duration) -> Ended {
    let every = timeout / 5;
    let mut next = tokio::time::Instant::now() + every;
    loop {
        tokio::time::sleep_until(next).await;
        let t0 = Instant::now();
        let sent = tokio::time::Instant::now();
        match tokio::time::timeout(timeout / 2, client.check_stat(&shared.paths.view)).await {
            Ok(Ok(_)) => {
                shared.lease.extend(lease_until(t0, timeout));
                // A fifth after this request was sent, not after its answer: a slow answer
                // must not stretch the cadence while the lease runs down.
                next = sent + every;
            }
            Ok(Err(zk::Error::SessionExpired)) => return Ended::Expired,
            // Disconnected or slow: the lease runs down on its own; try again soon, so it is
            // renewed as soon as ZooKeeper answers again.
            _ => next = tokio::time::Instant::now() + every / 4,
        }
    }
}

/// Writes this member's progress (applied epoch, leaving) to its member node; completes the
/// leave once the cluster is stable without this node.
async fn report_progress(
    client: &zk::Client,
    shared: &Shared,
    my_path: &str,
    mut written: MemberData,
) -> Ended {
    let mut progress = shared.progress.subscribe();
    let mut views = shared.views.subscribe();
    loop {
        let wanted = *progress.borrow_and_update();
        if wanted.applied != written.applied || wanted.leaving != written.leaving {
            let mut data = written.clone();
            data.applied = wanted.applied;
            data.leaving = wanted.leaving;
            match client
                .set_data(
                    my_path,
                    &serde_json::to_vec(&data).unwrap_or_default(),
                    None,
                )
                .await
            {
                Ok(_) => written = data,
                Err(e) => match classify(my_path, e) {
                    Ended::Lost(reason) => {
                        tracing::debug!(%reason, "retrying progress report");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    other => return other,
                },
            }
        }
        if written.leaving && left_cleanly(&views.borrow_and_update(), written.applied) {
            return Ended::Left;
        }
        tokio::select! {
            _ = progress.changed() => {}
            _ = views.changed() => {}
        }
    }
}

/// A leaving node may deregister once a stable epoch without it exists and it has applied it.
fn left_cleanly(view: &Option<NodeView>, applied: u64) -> bool {
    view.as_ref().is_some_and(|v| {
        v.member.is_none() && v.view.stable() == v.view.epoch() && applied >= v.view.epoch()
    })
}

/// Takes part in the election; leads when this member is the lowest.
async fn elect_and_lead(
    client: &zk::Client,
    shared: &Shared,
    me: MemberId,
    timeout: Duration,
) -> Ended {
    let paths = &shared.paths;
    loop {
        let children = match client.list_children(&paths.members).await {
            Ok(c) => c,
            Err(e) => match classify(&paths.members, e) {
                Ended::Lost(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                other => return other,
            },
        };
        let predecessor = children
            .iter()
            .filter_map(|c| Paths::parse_child(c))
            .filter(|id| *id < me)
            .max();
        let Some(predecessor) = predecessor else {
            return lead(client, shared, timeout).await;
        };
        let path = paths.member(predecessor);
        match client.check_and_watch_stat(&path).await {
            Ok((None, _)) => {}
            Ok((Some(_), watcher)) => {
                let event = watcher.changed().await;
                if event.event_type == zk::EventType::Session && event.session_state.is_terminated()
                {
                    return Ended::Expired;
                }
            }
            Err(e) => match classify(&path, e) {
                Ended::Lost(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                other => return other,
            },
        }
    }
}

/// The leader's loop: reconcile the view with the members on every change.
async fn lead(client: &zk::Client, shared: &Shared, timeout: Duration) -> Ended {
    let paths = &shared.paths;
    tracing::info!(node = %shared.cfg.node, "leading cluster {}", shared.cfg.cluster);
    let mut watch = match client
        .watch(&paths.members, zk::AddWatchMode::PersistentRecursive)
        .await
    {
        Ok(w) => w,
        Err(e) => return classify(&paths.members, e),
    };
    let mut state = client.state_watcher();
    let mut recovery = Recovery {
        since: None,
        wait: timeout,
    };
    loop {
        let wake = match reconcile(client, shared, &mut recovery).await {
            Ok(wake) => wake,
            Err(LeadError::Zk(zk::Error::SessionExpired)) => return Ended::Expired,
            Err(LeadError::Store(e)) => {
                tracing::warn!(error = %e, "cannot reach the epoch floor in the store; not publishing until it answers");
                None
            }
            Err(e) => {
                tracing::debug!(error = %e, "reconcile failed; retrying");
                None
            }
        };
        let wake = wake.map(tokio::time::Instant::from_std);
        tokio::select! {
            event = watch.changed() => {
                // After a terminal event the watcher must not be polled again.
                if is_terminal(&event) {
                    return Ended::Expired;
                }
                // One reconcile reads everything: fold a burst of events (a wave of
                // registrations) into it.
                while let Ok(event) = tokio::time::timeout(Duration::ZERO, watch.changed()).await {
                    if is_terminal(&event) {
                        return Ended::Expired;
                    }
                }
            }
            // A safety net for events lost while disconnected.
            _ = tokio::time::sleep(timeout / 2) => {}
            _ = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {}
            _ = reconnected(&mut state) => {}
        }
    }
}

fn is_terminal(event: &zk::WatchedEvent) -> bool {
    event.event_type == zk::EventType::Session && event.session_state.is_terminated()
}

/// The leader's memory of an unusable view record.
struct Recovery {
    /// When this leader found the view unusable.
    since: Option<Instant>,
    /// How long it waits before replacing it.
    wait: Duration,
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
enum LeadError {
    #[error("ZooKeeper: {0}")]
    Zk(#[from] zk::Error),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Reads the members, the view and the epoch floor, and publishes what the protocol decides,
/// conditional on the view's version. Returns when to look again if the leader is waiting to
/// replace an unusable view.
async fn reconcile(
    client: &zk::Client,
    shared: &Shared,
    recovery: &mut Recovery,
) -> Result<Option<Instant>, LeadError> {
    let paths = &shared.paths;
    let cluster = &shared.cfg.cluster;
    loop {
        let (data, stat) = match client.get_data(&paths.view).await {
            Ok(read) => read,
            Err(zk::Error::NoNode) => {
                // Deleted (ZooKeeper's data wiped, or by hand): an empty record again, which
                // the floor shows to be lost if the cluster had published before.
                let private = zk::CreateMode::Persistent.with_acls(zk::Acls::creator_all());
                match client.create(&paths.view, &[], &private).await {
                    Ok(_) | Err(zk::Error::NodeExists) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        };
        let read = ViewRecord::decode(&data);
        let live = live_members(client, &shared.paths).await?;
        let floor = shared.store.epoch_floor(cluster).await?;
        let step = match protocol::leader_step(read.as_ref().map_err(String::as_str), floor, &live)
        {
            Ok(step) => step,
            Err(error) => {
                tracing::error!(%cluster, %error, "cannot publish another view");
                return Ok(None);
            }
        };
        let next = match step {
            LeaderStep::Stand => {
                recovery.since = None;
                return Ok(None);
            }
            LeaderStep::Publish(next) => {
                recovery.since = None;
                next
            }
            LeaderStep::SeedFloor(epoch) => {
                tracing::info!(%cluster, epoch, "the store holds no epoch floor yet: seeding it from the current view");
                shared.store.raise_epoch_floor(cluster, epoch).await?;
                continue;
            }
            LeaderStep::Recover(why) => {
                // After ZooKeeper loses its data, sessions from before vanish at once instead of
                // expiring, so a paused node may still believe its lease valid. Every such lease
                // was granted before this leader found the loss and lasts 4/5 of a session
                // timeout: wait one out before any view lets a node activate.
                let since = *recovery.since.get_or_insert_with(|| {
                    tracing::error!(%cluster, path = %paths.view, "{why}. Publishing a recovery view above the floor (epoch {}) once every lease granted before can have run out, in {:?}; until then no node activates anything new", floor.saturating_add(1), recovery.wait);
                    Instant::now()
                });
                let due = since + recovery.wait;
                if Instant::now() < due {
                    return Ok(Some(due));
                }
                match protocol::recovery_view(floor, &live) {
                    Ok(next) => next,
                    Err(error) => {
                        tracing::error!(%cluster, %error, "cannot publish a recovery view");
                        return Ok(None);
                    }
                }
            }
        };
        if next.epoch > floor {
            // The floor first: an epoch is never published that the store does not cover.
            let raised = shared.store.raise_epoch_floor(cluster, next.epoch).await?;
            if raised != next.epoch {
                // Another leader got further meanwhile: decide again from what is there now.
                continue;
            }
        }
        match client
            .set_data(&paths.view, &next.encode(), Some(stat.version))
            .await
        {
            Ok(_) => {
                let recovered = recovery.since.take().is_some();
                tracing::info!(
                    epoch = next.epoch,
                    stable = next.stable,
                    recovered,
                    members = ?next.members().iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
                    "published view"
                );
            }
            // Someone else published since we read: read again.
            Err(zk::Error::BadVersion) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_paths_round_trip() {
        let paths = Paths::new("c");
        assert_eq!(paths.member(12), "/overmind/c/members/m-0000000012");
        assert_eq!(Paths::parse_child("m-0000000012"), Some(12));
        assert_eq!(Paths::parse_child("x-1"), None);
    }

    #[test]
    fn the_cluster_record_decides_who_may_join() {
        let record = |cookie: &str, links| ClusterRecord {
            cookie: cookie.into(),
            links,
        };
        let cluster = record("abc", LinkSecurity::Plain);
        let stored = serde_json::to_vec(&cluster).unwrap();
        let check = |mine: &ClusterRecord| check_cluster_record(&stored, mine, "c", "/overmind/c");
        assert!(check(&cluster).is_ok());
        assert!(matches!(
            check(&record("xyz", LinkSecurity::Plain)),
            Err(MembershipError::CookieMismatch { .. })
        ));
        assert!(matches!(
            check(&record("abc", LinkSecurity::MutualTls)),
            Err(MembershipError::LinkSecurityMismatch { .. })
        ));
        // A root that holds something else is reported, never overwritten.
        let err = check_cluster_record(b"garbage", &cluster, "c", "/overmind/c").unwrap_err();
        assert!(
            matches!(&err, MembershipError::Coordination { path, .. } if path == "/overmind/c"),
            "{err}"
        );
    }

    #[test]
    fn the_credential_is_what_the_readme_says() {
        // `printf 'overmind-zookeeper\0%s\0%s' c k | sha256sum`
        let cfg = ZooKeeperConfig::new("127.0.0.1:2181", "c", "n1", "127.0.0.1:1", "k");
        assert_eq!(
            cfg.credential(),
            "overmind-c:a09846797c40989adcd601da7b01dc8ea6f949fde92517f78b6263b4e80d0fd6"
        );
        let mut other = cfg.clone();
        other.cookie = "k2".into();
        assert_ne!(other.credential(), cfg.credential());
        // Domain-separated from the fingerprint stored in the root.
        assert!(
            !cfg.credential()
                .contains(&ZooKeeperMembership::fingerprint(&cfg))
        );
    }

    #[test]
    fn configs_are_checked() {
        let ok = ZooKeeperConfig::new("127.0.0.1:2181", "c", "n1", "127.0.0.1:1", "k");
        assert!(ok.validate().is_ok());
        let mut bad = ok.clone();
        bad.node = "bad name".into();
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("node name")
        );
        let mut bad = ok;
        bad.cluster = "a/b".into();
        assert!(bad.validate().is_err());
    }
}

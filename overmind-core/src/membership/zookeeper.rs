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
//!   carries its name, so a restarted node never overlaps its previous incarnation.
//! - **Election.** The member with the lowest sequence number leads. Every other member watches
//!   only its predecessor, so a leader change wakes one node, not the cluster.
//! - **The leader** watches the members (one persistent recursive watch) and publishes what
//!   [`protocol::next_view`] decides, with a version-conditional write: two leaders can never
//!   both publish, and no epoch is skipped or repeated.
//! - **Every member** watches the view with one-shot watches and re-reads it after every
//!   reconnection (events are lost while disconnected). It reports the epochs it has applied in
//!   its member node's data.
//! - **The lease** is renewed by a read every fifth of the session timeout; see [`Lease`].
//! - **An expired session** revokes the lease at once; the node rejoins as a new member.
//!
//! One-shot and persistent watches are never set on the same path in one session: ZooKeeper 3.8
//! does not fire the one-shot watch then.

use std::{
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
    protocol::{self, LiveMember},
    view::{MemberId, View, ViewRecord},
};
use crate::{ring::DEFAULT_VNODES, store::BoxFuture};

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
}

impl ZooKeeperConfig {
    /// A configuration with defaults: plain links, 6 s sessions, 256 virtual nodes, 30 s to
    /// join.
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
        }
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
            reason: e.to_string(),
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
    status: watch::Sender<JoinStatus>,
    paths: Paths,
    fingerprint: String,
    lease: Arc<Lease>,
    views: watch::Sender<Option<NodeView>>,
    progress: watch::Sender<Progress>,
    closed: watch::Sender<bool>,
    left: watch::Sender<bool>,
    last_error: Mutex<Option<String>>,
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
    pub async fn join(cfg: ZooKeeperConfig) -> Result<Arc<Self>, MembershipError> {
        let this = Self::start(cfg)?;
        match this.ready().await {
            Ok(()) => Ok(this),
            Err(e) => {
                this.close();
                Err(e)
            }
        }
    }

    /// Starts joining in the background; [`Self::ready`] tells when this node is in a view.
    pub fn start(cfg: ZooKeeperConfig) -> Result<Arc<Self>, MembershipError> {
        cfg.validate()?;
        let fingerprint = {
            let mut h = Sha256::new();
            h.update(b"overmind-cookie\0");
            h.update(cfg.cluster.as_bytes());
            h.update(b"\0");
            h.update(cfg.cookie.as_bytes());
            h.finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        let shared = Arc::new(Shared {
            status: watch::channel(JoinStatus::Joining).0,
            paths: Paths::new(&cfg.cluster),
            fingerprint,
            lease: Arc::new(Lease::new()),
            views: watch::channel(None).0,
            progress: watch::channel(Progress::default()).0,
            closed: watch::channel(false).0,
            left: watch::channel(false).0,
            last_error: Mutex::new(None),
            cfg,
        });
        let task = tokio::spawn(run(shared.clone()));
        Ok(Arc::new(Self {
            shared,
            task: Mutex::new(Some(task)),
        }))
    }

    /// Waits (at most the join timeout) until a published view includes this node.
    pub async fn ready(&self) -> Result<(), MembershipError> {
        let shared = &self.shared;
        let join_timeout = shared.cfg.join_timeout;
        let mut status = shared.status.subscribe();
        let settled = tokio::time::timeout(
            join_timeout,
            status.wait_for(|s| !matches!(s, JoinStatus::Joining)),
        )
        .await;
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
        .connect(&cfg.connect);
    let client = match tokio::time::timeout(cfg.session_timeout * 2, connect).await {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => return Ended::Lost(format!("connect: {e}")),
        Err(_) => return Ended::Lost("connect: timed out".into()),
    };
    let timeout = client.session_timeout();
    if let Err(ended) = prepare(&client, shared).await {
        return ended;
    }
    if let Err(ended) = wait_for_name(&client, shared).await {
        return ended;
    }
    let data = MemberData {
        name: cfg.node.clone(),
        addr: cfg.addr.clone(),
        applied: 0,
        leaving: shared.progress.borrow().leaving,
    };
    let t0 = Instant::now();
    let created = client
        .create(
            &paths.member_prefix,
            &serde_json::to_vec(&data).unwrap_or_default(),
            &zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all()),
        )
        .await;
    let me = match created {
        Ok((_, seq)) => seq.into_i64() as MemberId,
        Err(e) => return classify(&paths.member_prefix, e),
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

/// Creates the cluster's nodes if needed and checks that this node's cookie and link security
/// are the cluster's.
async fn prepare(client: &zk::Client, shared: &Shared) -> Result<(), Ended> {
    let paths = &shared.paths;
    let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    for path in [&paths.members, &paths.view] {
        match client.mkdir(path, &persistent).await {
            Ok(()) | Err(zk::Error::NodeExists) => {}
            Err(e) => return Err(classify(path, e)),
        }
    }
    loop {
        let (data, stat) = client
            .get_data(&paths.root)
            .await
            .map_err(|e| classify(&paths.root, e))?;
        let mine = ClusterRecord {
            cookie: shared.fingerprint.clone(),
            links: shared.cfg.links,
        };
        if data.is_empty() {
            let record = serde_json::to_vec(&mine).map_err(|e| {
                Ended::Fatal(MembershipError::Coordination {
                    path: paths.root.clone(),
                    reason: e.to_string(),
                })
            })?;
            match client
                .set_data(&paths.root, &record, Some(stat.version))
                .await
            {
                Ok(_) => return Ok(()),
                Err(zk::Error::BadVersion) => continue,
                Err(e) => return Err(classify(&paths.root, e)),
            }
        }
        return check_cluster_record(&data, &mine, &shared.cfg.cluster, &paths.root)
            .map_err(Ended::Fatal);
    }
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

/// Publishes every view the leader writes; re-reads after each reconnection.
async fn watch_views(client: &zk::Client, shared: &Shared, me: MemberId) -> Ended {
    let path = &shared.paths.view;
    let mut state = client.state_watcher();
    loop {
        let (data, _, watcher) = match client.get_and_watch_data(path).await {
            Ok(read) => read,
            Err(e) => match classify(path, e) {
                Ended::Lost(_) => {
                    reconnected(&mut state).await;
                    continue;
                }
                other => return other,
            },
        };
        match ViewRecord::decode(&data) {
            Ok(record) => {
                let view = Arc::new(View::new(record, shared.cfg.vnodes));
                let member = view.members().iter().find(|m| m.id == me).cloned();
                if member.is_some() {
                    shared.status.send_if_modified(|s| {
                        let joining = matches!(s, JoinStatus::Joining);
                        if joining {
                            *s = JoinStatus::Joined;
                        }
                        joining
                    });
                }
                tracing::debug!(node = %shared.cfg.node, epoch = view.epoch(), stable = view.stable(), "view");
                shared.views.send_replace(Some(NodeView { view, member }));
            }
            Err(reason) => tracing::error!(%path, %reason, "unreadable view record"),
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
    loop {
        tokio::time::sleep(every).await;
        let t0 = Instant::now();
        match tokio::time::timeout(timeout / 2, client.check_stat(&shared.paths.view)).await {
            Ok(Ok(_)) => shared.lease.extend(lease_until(t0, timeout)),
            Ok(Err(zk::Error::SessionExpired)) => return Ended::Expired,
            // Disconnected or slow: the lease runs down on its own.
            _ => {}
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
    loop {
        match reconcile(client, paths).await {
            Ok(()) => {}
            Err(zk::Error::SessionExpired) => return Ended::Expired,
            Err(e) => tracing::debug!(error = %e, "reconcile failed; retrying"),
        }
        tokio::select! {
            event = watch.changed() => {
                // After a terminal event the watcher must not be polled again.
                if event.event_type == zk::EventType::Session && event.session_state.is_terminated() {
                    return Ended::Expired;
                }
            }
            // A safety net for events lost while disconnected.
            _ = tokio::time::sleep(timeout / 2) => {}
            _ = reconnected(&mut state) => {}
        }
    }
}

/// Reads the members and the view and publishes what the protocol decides, conditional on the
/// view's version.
async fn reconcile(client: &zk::Client, paths: &Paths) -> Result<(), zk::Error> {
    loop {
        let (data, stat) = client.get_data(&paths.view).await?;
        let current = match ViewRecord::decode(&data) {
            Ok(record) => record,
            Err(reason) => {
                // Never guess an epoch: publishing from a made-up one could repeat epochs.
                tracing::error!(path = %paths.view, %reason, "the view record is unreadable; not publishing until it is fixed");
                return Ok(());
            }
        };
        let live = live_members(client, paths).await?;
        let Some(next) = protocol::next_view(&current, &live) else {
            return Ok(());
        };
        match client
            .set_data(&paths.view, &next.encode(), Some(stat.version))
            .await
        {
            Ok(_) => {
                tracing::info!(
                    epoch = next.epoch,
                    stable = next.stable,
                    members = ?next.members().iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
                    "published view"
                );
            }
            // Someone else published since we read: read again.
            Err(zk::Error::BadVersion) => continue,
            Err(e) => return Err(e),
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

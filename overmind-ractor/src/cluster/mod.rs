//! Clustering (feature `cluster`): membership in ZooKeeper, placement on the ring, routing
//! between nodes over ractor_cluster, and rebalancing when the view changes. It plugs into the
//! engine through the engine's traits (`Placement`, `Distribution`, `Elsewhere`); the builder
//! wires it in.
//!
//! - `start`: bringing a node up in a safe order; the engine's `Distribution`.
//! - `placement`: `RingPlacement`, the installed view and the lease: the one source of truth
//!   for routing and placement on this node.
//! - `port`: each kind's connection: the engine's `Elsewhere`, and delivery of what arrives.
//! - `remote`: encoding a message for the node that owns its actor, and waiting for a reply.
//! - `outbox`: the ordered frames waiting for each peer.
//! - `router`: one router actor per node, reachable from peers through a process group;
//!   virtual actors themselves stay local.
//! - `inbound`: what arrives: user messages, deletes, release notices and requests.
//! - `routing`: the pure rule for a message whose sender saw another view.
//! - `release`: release notices and requests between old and new owners.
//! - `rebalance`: applying each new view (retiring what moved), and the lease monitor.
//! - `connect`, `transport`: the node server and the links to the members (with backoff).
//! - `wire`: the frames routers exchange.

pub(crate) mod connect;
#[doc(hidden)]
pub mod fuzz;
pub(crate) mod inbound;
pub(crate) mod outbox;
pub(crate) mod placement;
pub(crate) mod port;
pub(crate) mod rebalance;
pub(crate) mod release;
pub(crate) mod remote;
pub(crate) mod router;
pub(crate) mod routing;
pub(crate) mod start;
pub(crate) mod transport;
pub(crate) mod wire;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use overmind_core::membership::{LinkSecurity, ZooKeeperConfig, ZooKeeperMembership};
use ractor::ActorRef;
use ractor_cluster::NodeServerMessage;
use router::RouterMsg;
use tokio::sync::watch;

// With ractor's `cluster` feature, every message type implements `ractor::Message` itself.
impl ractor::Message for crate::SupervisorMsg {}

/// Why [`Tls::from_pem`] could not configure TLS.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The certificate chain is not valid PEM.
    #[error("certificate chain: {0}")]
    CertChain(#[source] tokio_rustls::rustls::pki_types::pem::Error),
    /// The certificate chain's PEM holds no certificate.
    #[error("certificate chain: no certificate in the PEM")]
    NoCertificate,
    /// The private key is not valid PEM, or there is none.
    #[error("private key: {0}")]
    PrivateKey(#[source] tokio_rustls::rustls::pki_types::pem::Error),
    /// The CA bundle is not valid PEM.
    #[error("CA: {0}")]
    Ca(#[source] tokio_rustls::rustls::pki_types::pem::Error),
    /// A CA certificate was refused as a trust anchor.
    #[error("CA: {0}")]
    CaRejected(#[source] tokio_rustls::rustls::Error),
    /// No client verifier could be built from the CAs (none given, say).
    #[error("client verifier: {0}")]
    Verifier(#[source] tokio_rustls::rustls::server::VerifierBuilderError),
    /// The certificate and key do not make a server or client configuration (a key that
    /// does not match the certificate, say).
    #[error("certificate: {0}")]
    Certificate(#[source] tokio_rustls::rustls::Error),
    /// `server_name` is not a DNS name or an IP address.
    #[error("server name {name:?}: {source}")]
    ServerName {
        /// The name given.
        name: String,
        /// Why it is not one.
        source: tokio_rustls::rustls::pki_types::InvalidDnsNameError,
    },
}

/// TLS for the links between nodes.
#[derive(Clone)]
pub struct Tls {
    pub(crate) acceptor: tokio_rustls::TlsAcceptor,
    pub(crate) connector: tokio_rustls::TlsConnector,
    pub(crate) server_name: tokio_rustls::rustls::pki_types::ServerName<'static>,
}

impl Tls {
    /// Mutual TLS from PEM: every node presents `cert_chain` (with its `key`), and accepts only
    /// peers whose certificate is signed by `ca` and names `server_name`. One certificate for
    /// all nodes of a cluster, naming `server_name`, is enough.
    pub fn from_pem(
        cert_chain: &[u8],
        key: &[u8],
        ca: &[u8],
        server_name: &str,
    ) -> Result<Self, TlsError> {
        use tokio_rustls::rustls::{
            ClientConfig, RootCertStore, ServerConfig,
            pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
            server::WebPkiClientVerifier,
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_chain)
            .collect::<Result<_, _>>()
            .map_err(TlsError::CertChain)?;
        if certs.is_empty() {
            return Err(TlsError::NoCertificate);
        }
        let key = PrivateKeyDer::from_pem_slice(key).map_err(TlsError::PrivateKey)?;
        let mut roots = RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(ca) {
            roots
                .add(ca.map_err(TlsError::Ca)?)
                .map_err(TlsError::CaRejected)?;
        }
        let roots = Arc::new(roots);
        let verifier = WebPkiClientVerifier::builder(roots.clone())
            .build()
            .map_err(TlsError::Verifier)?;
        let server = ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(TlsError::Certificate)?;
        let client = ClientConfig::builder()
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(TlsError::Certificate)?;
        let server_name = ServerName::try_from(server_name.to_owned()).map_err(|source| {
            TlsError::ServerName {
                name: server_name.to_owned(),
                source,
            }
        })?;
        Ok(Self::new(
            tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            tokio_rustls::TlsConnector::from(Arc::new(client)),
            server_name,
        ))
    }

    /// TLS from rustls configurations: `acceptor` for incoming links, `connector` for outgoing
    /// ones, and the name peers' certificates must carry.
    pub fn new(
        acceptor: tokio_rustls::TlsAcceptor,
        connector: tokio_rustls::TlsConnector,
        server_name: tokio_rustls::rustls::pki_types::ServerName<'static>,
    ) -> Self {
        Self {
            acceptor,
            connector,
            server_name,
        }
    }
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// How a node joins a cluster. Start with [`ClusterConfig::new`].
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub(crate) zookeeper: String,
    pub(crate) cluster: String,
    pub(crate) node: String,
    pub(crate) cookie: String,
    pub(crate) listen: SocketAddr,
    pub(crate) advertise: Option<String>,
    pub(crate) session_timeout: Duration,
    pub(crate) vnodes: u32,
    pub(crate) join_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) unavailable_after: Duration,
    pub(crate) remote_timeout: Duration,
    pub(crate) tls: Option<Tls>,
    pub(crate) routes: std::collections::HashMap<String, String>,
}

impl ClusterConfig {
    /// Joins cluster `cluster` through the ZooKeeper ensemble `zookeeper`
    /// (`host:port[,host:port…]`) as node `node`, authenticating peers with `cookie`.
    /// The node server listens on loopback on a free port unless [`Self::listen`] says
    /// otherwise.
    pub fn new(
        zookeeper: impl Into<String>,
        cluster: impl Into<String>,
        node: impl Into<String>,
        cookie: impl Into<String>,
    ) -> Self {
        Self {
            zookeeper: zookeeper.into(),
            cluster: cluster.into(),
            node: node.into(),
            cookie: cookie.into(),
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            advertise: None,
            session_timeout: Duration::from_secs(6),
            vnodes: overmind_core::ring::DEFAULT_VNODES,
            join_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            unavailable_after: Duration::from_secs(30),
            remote_timeout: Duration::from_secs(60),
            tls: None,
            routes: std::collections::HashMap::new(),
        }
    }

    /// Reaches the peer that advertises `advertised` by dialling `via` instead (a port
    /// forward, a tunnel, or a test's proxy).
    pub fn route_peer(mut self, advertised: impl Into<String>, via: impl Into<String>) -> Self {
        self.routes.insert(advertised.into(), via.into());
        self
    }

    /// Where the node server listens (default `127.0.0.1:0`; port 0: a free port).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// The `host:port` peers connect to, if not the listen address (behind NAT, say). By
    /// default, the address the listener bound.
    pub fn advertise(mut self, host_port: impl Into<String>) -> Self {
        self.advertise = Some(host_port.into());
        self
    }

    /// The ZooKeeper session timeout (default 6 s). A node that loses ZooKeeper stops serving
    /// after 4/5 of it; its actors move after the server expires the session. The server caps
    /// it between 2 and 20 times its `tickTime`.
    pub fn session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }

    /// Virtual nodes per member on the ring (default 256; every member must use the same
    /// number).
    pub fn vnodes(mut self, vnodes: u32) -> Self {
        self.vnodes = vnodes;
        self
    }

    /// How long starting waits for ZooKeeper and for this node to appear in a view (default
    /// 30 s); also how long leaving at shutdown may take.
    pub fn join_timeout(mut self, timeout: Duration) -> Self {
        self.join_timeout = timeout;
        self
    }

    /// How long starting waits for a first ZooKeeper session before it fails with
    /// [`crate::StartError::Membership`] (`Unreachable`: a wrong address, ZooKeeper down),
    /// default 5 s. Once connected, a lost session is retried for as long as the node runs.
    pub fn zookeeper_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a message waits for its actor to become placeable (ownership moving, this
    /// node's lease lost) before it fails with [`crate::Error::Unavailable`] (default 30 s).
    pub fn unavailable_after(mut self, timeout: Duration) -> Self {
        self.unavailable_after = timeout;
        self
    }

    /// How long a call forwarded to another node may take at most (default 60 s), from the
    /// moment it is handed to the link until its reply arrives.
    pub fn remote_timeout(mut self, timeout: Duration) -> Self {
        self.remote_timeout = timeout;
        self
    }

    /// Encrypts and authenticates the links between nodes with TLS (default: plain TCP,
    /// authenticated by the cookie only).
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The node's name.
    pub fn node(&self) -> &str {
        &self.node
    }
}

/// The running cluster parts of a node, shared by the runtime.
pub(crate) struct ClusterLink {
    pub(crate) config: ClusterConfig,
    pub(crate) membership: Arc<ZooKeeperMembership>,
    pub(crate) node_server: ActorRef<NodeServerMessage>,
    pub(crate) addr: String,
    pub(crate) stop: watch::Sender<bool>,
    outboxes: parking_lot::Mutex<std::collections::HashMap<String, Arc<outbox::Outbox>>>,
    /// Release notices not yet handed to an outbox.
    pub(crate) releases: release::Outgoing,
    /// Calls waiting for a reply from another node (this node's own, or ones it relays).
    in_flight: std::sync::atomic::AtomicUsize,
    /// Set when this node starts leaving the cluster: once it has left, it keeps routing by
    /// the last view (the stable one without it) while it drains, instead of by none.
    pub(crate) leaving: std::sync::atomic::AtomicBool,
    /// When the router last received something, for draining at shutdown.
    last_arrival: parking_lot::Mutex<std::time::Instant>,
    /// This node's router.
    pub(crate) router: std::sync::OnceLock<ActorRef<RouterMsg>>,
    /// Where actors live: the view routing and placement follow on this node.
    pub(crate) placement: Arc<placement::RingPlacement>,
    /// The runtime this link serves (weak: the runtime holds the link).
    rt: std::sync::Weak<crate::engine::runtime::Runtime>,
}

impl ClusterLink {
    pub(crate) fn new(
        config: ClusterConfig,
        membership: Arc<ZooKeeperMembership>,
        node_server: ActorRef<NodeServerMessage>,
        addr: String,
        placement: Arc<placement::RingPlacement>,
        rt: std::sync::Weak<crate::engine::runtime::Runtime>,
    ) -> Self {
        Self {
            config,
            membership,
            node_server,
            addr,
            stop: watch::channel(false).0,
            outboxes: parking_lot::Mutex::new(std::collections::HashMap::new()),
            releases: release::Outgoing::default(),
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            leaving: std::sync::atomic::AtomicBool::new(false),
            last_arrival: parking_lot::Mutex::new(std::time::Instant::now()),
            router: std::sync::OnceLock::new(),
            placement,
            rt,
        }
    }

    /// Counts a call waiting for a reply until the guard is dropped.
    pub(crate) fn call_in_flight(self: &Arc<Self>) -> InFlight {
        self.in_flight
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// The router received something.
    pub(crate) fn arrived(&self) {
        *self.last_arrival.lock() = std::time::Instant::now();
    }

    /// After leaving: waits until no actor here holds a message (each lifecycle has passed
    /// what it held to the actor's owner), no call waits for a reply, every outbox has handed
    /// its frames (forwarded casts included) to a link, and the router has been quiet for a
    /// moment (stragglers sent under an older view), or `limit` passes.
    pub(crate) async fn drain(&self, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        let quiet = Duration::from_millis(300);
        while std::time::Instant::now() < deadline {
            let idle = self
                .rt
                .upgrade()
                .is_none_or(|rt| rt.lifecycles_running() == 0)
                && self.in_flight.load(std::sync::atomic::Ordering::Acquire) == 0
                && self.releases.is_empty()
                && self.outboxes.lock().values().all(|o| o.is_empty())
                && self.last_arrival.lock().elapsed() >= quiet;
            if idle {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether `node` is a member of the view this node routes by: the one installed in
    /// placement, which can lag the newest view membership has read while the rebalancer
    /// retires actors. An outbox re-routes what it holds for a node only once routing no
    /// longer names that node; asking the newest view instead let a frame go to the local
    /// router, back to the same outbox by the older installed view, and round again, one
    /// hop each time, until the rebalancer caught up.
    pub(crate) fn in_view(&self, node: &str) -> bool {
        self.placement.has_member(node)
    }

    /// This node's own router.
    pub(crate) fn local_router(&self) -> Option<ActorRef<RouterMsg>> {
        self.router.get().cloned()
    }

    /// The router of `node`'s registration in the installed view (the view this node routes
    /// by, like [`Self::in_view`]), once the link to it is up.
    pub(crate) fn router_of(&self, node: &str) -> Option<ActorRef<RouterMsg>> {
        let member = self.placement.member_id(node)?;
        router::router_of(&self.config.cluster, node, member)
    }

    /// The ordered outbox for `node`.
    pub(crate) fn outbox(&self, node: &str) -> Arc<outbox::Outbox> {
        self.outboxes
            .lock()
            .entry(node.to_owned())
            .or_insert_with(|| Arc::new(outbox::Outbox::new(node.to_owned())))
            .clone()
    }
}

/// A call waiting for a reply from another node; see [`ClusterLink::call_in_flight`].
pub(crate) struct InFlight(Arc<ClusterLink>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Completes when the cluster parts are told to stop.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Binds the listener peers link to (port 0: a free port), and works out the address to
/// advertise.
pub(crate) fn listen(config: &ClusterConfig) -> std::io::Result<(std::net::TcpListener, String)> {
    let listener = std::net::TcpListener::bind(config.listen)?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let advertise = config
        .advertise
        .clone()
        .unwrap_or_else(|| bound.to_string());
    Ok((listener, advertise))
}

/// The ZooKeeper configuration for a node advertised at `addr`.
pub(crate) fn membership_config(config: &ClusterConfig, addr: &str) -> ZooKeeperConfig {
    let mut zk = ZooKeeperConfig::new(
        &config.zookeeper,
        &config.cluster,
        &config.node,
        addr,
        &config.cookie,
    );
    zk.links = if config.tls.is_some() {
        LinkSecurity::MutualTls
    } else {
        LinkSecurity::Plain
    };
    zk.session_timeout = config.session_timeout;
    zk.vnodes = config.vnodes;
    zk.join_timeout = config.join_timeout;
    zk.connect_timeout = config.connect_timeout;
    zk
}

#[cfg(test)]
mod tests {
    use super::{Tls, TlsError};

    #[test]
    fn bad_pem_is_a_typed_error() {
        let from = |cert: &[u8], key: &[u8]| Tls::from_pem(cert, key, b"", "overmind.test");
        assert!(matches!(from(b"", b""), Err(TlsError::NoCertificate)));
        let damaged = b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert!(matches!(from(damaged, b""), Err(TlsError::CertChain(_))));
        let cert = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let err = from(cert, b"").expect_err("no key");
        assert!(matches!(err, TlsError::PrivateKey(_)), "{err}");
        assert!(err.to_string().starts_with("private key: "), "{err}");
    }
}

//! The node server, and the links to the other members of the view: a link per member,
//! reopened with exponential backoff when it drops. ractor_cluster authenticates every link
//! with the cluster cookie (and TLS, if configured); a peer with the wrong cookie is refused.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use overmind_core::membership::{Membership, NodeView};

use ractor::{Actor, ActorId, ActorRef};
use ractor_cluster::{
    IncomingEncryptionMode, NodeEventSubscription, NodeServer, NodeServerMessage,
    node::{NodeConnectionMode, NodeServerSessionInformation},
};
use tokio::{sync::mpsc, time::Instant};

use super::{ClusterConfig, ClusterLink, stopped};

/// Starts the node server. It takes its links from Overmind's own listener and dialer
/// ([`super::transport`]); its built-in listener is bound to an unused loopback port.
pub(crate) async fn start_server(
    config: &ClusterConfig,
) -> Result<ActorRef<NodeServerMessage>, String> {
    let server = NodeServer::new(
        0,
        config.cookie.clone(),
        config.node.clone(),
        "overmind".into(),
        Some(IncomingEncryptionMode::Raw),
        Some(NodeConnectionMode::Isolated),
    )
    .with_listen_addr(std::net::Ipv4Addr::LOCALHOST.into());
    let (server, _) = Actor::spawn(None, server, ())
        .await
        .map_err(|e| format!("cannot start the node server: {e}"))?;
    Ok(server)
}

/// What the node server (and our own dials) tell us about links.
#[derive(Debug)]
enum LinkEvent {
    Ready {
        node: String,
        session: ActorId,
    },
    Closed {
        session: ActorId,
    },
    /// A dial failed before a session began (no connection, a TLS error).
    DialFailed {
        node: String,
    },
}

struct Events(mpsc::UnboundedSender<LinkEvent>);

fn node_of(ses: &NodeServerSessionInformation) -> Option<String> {
    ses.peer_name
        .as_ref()
        .map(|n| n.name.split('@').next().unwrap_or_default().to_owned())
}

/// How many `RemoteActor` stubs the node's sessions hold.
pub(crate) async fn remote_actor_count(server: &ActorRef<NodeServerMessage>) -> usize {
    let sessions = ractor::call!(server, NodeServerMessage::GetSessions).unwrap_or_default();
    sessions
        .values()
        .map(|s| {
            s.actor
                .get_cell()
                .get_children()
                .iter()
                .filter(|c| !c.get_id().is_local())
                .count()
        })
        .sum()
}

impl NodeEventSubscription for Events {
    fn node_session_opened(&self, _: NodeServerSessionInformation) {}

    fn node_session_disconnected(&self, ses: NodeServerSessionInformation) {
        let _ = self.0.send(LinkEvent::Closed {
            session: ses.actor.get_id(),
        });
    }

    fn node_session_authenticated(&self, _: NodeServerSessionInformation) {}

    fn node_session_ready(&self, ses: NodeServerSessionInformation) {
        if let Some(node) = node_of(&ses) {
            let _ = self.0.send(LinkEvent::Ready {
                node,
                session: ses.actor.get_id(),
            });
        }
    }
}

struct Peer {
    addr: String,
    next_attempt: Instant,
    backoff: Duration,
    /// Since when a dial is under way: its session is handshaking. No second dial starts
    /// meanwhile, since ractor_cluster closes one of two sessions to a peer and fails what
    /// was sent on it.
    dialing_since: Option<Instant>,
}

/// How long a dial may stay in its handshake before another is tried (ractor_cluster has no
/// handshake timeout of its own; a handshake on a loaded machine takes tens of ms).
const DIAL_PATIENCE: Duration = Duration::from_secs(3);

impl Peer {
    /// Whether to dial this peer now: it has no ready link, its back-off has passed, and no
    /// dial of ours is still handshaking (or the last one has taken too long).
    fn due(&self, linked: bool, now: Instant) -> bool {
        !linked
            && self.next_attempt <= now
            && self
                .dialing_since
                .is_none_or(|since| now >= since + DIAL_PATIENCE)
    }

    /// When this peer may next be due.
    fn wake_at(&self) -> Instant {
        match self.dialing_since {
            Some(since) => self.next_attempt.max(since + DIAL_PATIENCE),
            None => self.next_attempt,
        }
    }
}

const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long the node with the greater name waits for its peer to dial before it dials
/// itself. Two nodes dialing each other at once make ractor_cluster keep one session and
/// close the other, and messages already sent over the closed one are lost; so the node with
/// the smaller name dials, and the other only as a fallback (a one-way firewall, say).
const FALLBACK_DIAL: Duration = Duration::from_secs(2);

/// When to dial `peer` first, as node `me`.
fn first_attempt(me: &str, peer: &str) -> Instant {
    if me < peer {
        Instant::now()
    } else {
        Instant::now() + FALLBACK_DIAL
    }
}

/// Keeps a link open to every other member of the view until `link.stop` is set.
pub(crate) async fn maintain(link: Arc<ClusterLink>) {
    let (tx, mut events) = mpsc::unbounded_channel();
    let failed = tx.clone();
    let _ = link.node_server.cast(NodeServerMessage::SubscribeToEvents {
        id: "overmind-links".into(),
        subscription: Box::new(Events(tx)),
    });
    let mut views = link.membership.views();
    let mut stop = link.stop.subscribe();
    let mut peers: HashMap<String, Peer> = HashMap::new();
    // Ready links by peer name, whether or not the peer is in the view we know yet.
    let mut linked: HashMap<String, HashSet<ActorId>> = HashMap::new();
    loop {
        update_peers(&mut peers, &views.borrow_and_update(), &link.config.node);
        let now = Instant::now();
        let is_linked = |node: &str, linked: &HashMap<String, HashSet<ActorId>>| {
            linked.get(node).is_some_and(|s| !s.is_empty())
        };
        for (node, peer) in peers.iter_mut() {
            if peer.due(is_linked(node, &linked), now) {
                peer.next_attempt = now + peer.backoff;
                peer.backoff = (peer.backoff * 2).min(MAX_BACKOFF);
                peer.dialing_since = Some(now);
                tokio::spawn(dial(
                    link.clone(),
                    node.clone(),
                    peer.addr.clone(),
                    failed.clone(),
                ));
            }
        }
        let wake = peers
            .iter()
            .filter(|(node, _)| !is_linked(node, &linked))
            .map(|(_, p)| p.wake_at())
            .min()
            .unwrap_or(now + Duration::from_secs(1));
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            changed = views.changed() => if changed.is_err() { return },
            Some(event) = events.recv() => match event {
                LinkEvent::Ready { node, session } => {
                    tracing::debug!(peer = %node, "link ready");
                    if let Some(peer) = peers.get_mut(&node) {
                        peer.backoff = FIRST_BACKOFF;
                        peer.dialing_since = None;
                    }
                    linked.entry(node).or_default().insert(session);
                }
                LinkEvent::DialFailed { node } => {
                    if let Some(peer) = peers.get_mut(&node) {
                        peer.dialing_since = None;
                    }
                }
                LinkEvent::Closed { session } => {
                    for (name, sessions) in linked.iter_mut() {
                        if sessions.remove(&session) && sessions.is_empty() {
                            tracing::info!(peer = %name, "link closed; reconnecting");
                            if let Some(peer) = peers.get_mut(name) {
                                peer.next_attempt =
                                    first_attempt(&link.config.node, name).max(Instant::now() + peer.backoff);
                                peer.dialing_since = None;
                            }
                        }
                    }
                }
            },
            _ = stopped(&mut stop) => return,
        }
    }
}

fn update_peers(peers: &mut HashMap<String, Peer>, view: &Option<NodeView>, me: &str) {
    let Some(view) = view else {
        return;
    };
    let members: HashMap<&str, &str> = view
        .view
        .members()
        .iter()
        .filter(|m| m.name != me)
        .map(|m| (m.name.as_str(), m.addr.as_str()))
        .collect();
    peers.retain(|name, _| members.contains_key(name.as_str()));
    for (name, addr) in members {
        let peer = peers.entry(name.to_owned()).or_insert_with(|| Peer {
            addr: addr.to_owned(),
            next_attempt: first_attempt(me, name),
            backoff: FIRST_BACKOFF,
            dialing_since: None,
        });
        if peer.addr != addr {
            // Restarted elsewhere: dial the new address.
            peer.addr = addr.to_owned();
            peer.next_attempt = first_attempt(me, name);
            peer.backoff = FIRST_BACKOFF;
            peer.dialing_since = None;
        }
    }
}

async fn dial(
    link: Arc<ClusterLink>,
    node: String,
    addr: String,
    failed: mpsc::UnboundedSender<LinkEvent>,
) {
    if let Err(error) = super::transport::dial(&link.config, &link.node_server, &addr).await {
        tracing::debug!(peer = %node, %addr, %error, "cannot link to peer yet");
        let _ = failed.send(LinkEvent::DialFailed { node });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(next_attempt: Instant, dialing_since: Option<Instant>) -> Peer {
        Peer {
            addr: "127.0.0.1:1".into(),
            next_attempt,
            backoff: FIRST_BACKOFF,
            dialing_since,
        }
    }

    /// Issue 10: a second dial 50 ms into a slow handshake made ractor_cluster close one of
    /// the two sessions, failing the calls sent on it. A handshaking dial holds off the next
    /// one until it is ready, fails, or takes longer than `DIAL_PATIENCE`.
    #[tokio::test(start_paused = true)]
    async fn no_second_dial_while_one_handshakes() {
        let start = Instant::now();
        let backoff_passed = start + FIRST_BACKOFF;
        let dialing = peer(backoff_passed, Some(start));
        assert!(!dialing.due(false, backoff_passed));
        assert!(!dialing.due(false, start + DIAL_PATIENCE - Duration::from_millis(1)));
        assert!(
            dialing.due(false, start + DIAL_PATIENCE),
            "a hung handshake is retried"
        );
        assert_eq!(dialing.wake_at(), start + DIAL_PATIENCE);
        // Not dialing: the back-off alone decides; a linked peer is never dialed.
        let idle = peer(backoff_passed, None);
        assert!(!idle.due(false, start));
        assert!(idle.due(false, backoff_passed));
        assert!(!idle.due(true, backoff_passed));
    }
}

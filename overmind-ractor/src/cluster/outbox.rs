//! The ordered queue of frames for one peer.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::{
    ClusterLink,
    router::RouterMsg,
    wire::{Reply, WireError},
};

/// Frames for one peer, in the order they were sent. They go straight to the peer's router
/// when it is linked and nothing waits; otherwise they wait here, in order, until the link is
/// up, or fail after `unavailable_after` (a waiting call is answered with an `Unavailable`
/// error reply: it was never sent, so it was not handled).
pub(crate) struct Outbox {
    node: String,
    state: parking_lot::Mutex<OutboxState>,
}

#[derive(Default)]
struct OutboxState {
    waiting: std::collections::VecDeque<Outbound>,
    draining: bool,
}

struct Outbound {
    msg: RouterMsg,
    since: tokio::time::Instant,
}

impl Outbound {
    /// Hands the frame to the router, or gives it back if the router is gone.
    fn try_send(self, router: &ractor::ActorRef<RouterMsg>) -> Result<(), Outbound> {
        let since = self.since;
        router.cast(self.msg).map_err(|e| match e {
            ractor::MessagingErr::SendErr(msg) => Outbound { msg, since },
            // A typed router ref only refuses with the message handed back; anything else
            // is dropped (and a call's caller hears "unavailable").
            _ => Outbound {
                msg: RouterMsg::Cast(Vec::new()),
                since,
            },
        })
    }
}

impl Outbox {
    pub(crate) fn new(node: String) -> Self {
        Self {
            node,
            state: parking_lot::Mutex::new(OutboxState::default()),
        }
    }

    /// Whether every frame given to this outbox was handed to a link (or failed).
    pub(crate) fn is_empty(&self) -> bool {
        self.state.lock().waiting.is_empty()
    }

    pub(crate) fn send(
        self: &Arc<Self>,
        link: &Arc<ClusterLink>,
        bytes: Vec<u8>,
        reply: Option<oneshot::Sender<Vec<u8>>>,
    ) {
        let msg = match reply {
            None => RouterMsg::Cast(bytes),
            Some(reply) => RouterMsg::Call(bytes, reply.into()),
        };
        let mut outbound = Outbound {
            msg,
            since: tokio::time::Instant::now(),
        };
        let mut state = self.state.lock();
        if state.waiting.is_empty() && !state.draining {
            if let Some(router) = link.router_of(&self.node) {
                // The common case: linked, nothing queued.
                match outbound.try_send(&router) {
                    Ok(()) => return,
                    Err(back) => outbound = back,
                }
            }
        }
        state.waiting.push_back(outbound);
        if !state.draining {
            state.draining = true;
            drop(state);
            tokio::spawn(self.clone().drain(link.clone()));
        }
    }

    async fn drain(self: Arc<Self>, link: Arc<ClusterLink>) {
        let patience = link.config.unavailable_after;
        let mut pause = std::time::Duration::from_millis(5);
        loop {
            // A peer that left the view will not take these: route them again, by the current
            // view, through this node's own router.
            let router = if link.in_view(&self.node) {
                link.router_of(&self.node)
            } else {
                link.local_router()
            };
            let expired: Vec<Outbound> = {
                let mut state = self.state.lock();
                if let Some(router) = &router {
                    // Send in order; stop at the first refusal and keep the rest queued.
                    while let Some(outbound) = state.waiting.pop_front() {
                        if let Err(back) = outbound.try_send(router) {
                            state.waiting.push_front(back);
                            break;
                        }
                    }
                }
                if state.waiting.is_empty() {
                    state.draining = false;
                    return;
                }
                let now = tokio::time::Instant::now();
                let n = state
                    .waiting
                    .iter()
                    .take_while(|o| now.duration_since(o.since) > patience)
                    .count();
                state.waiting.drain(..n).collect()
            };
            if !expired.is_empty() {
                tracing::warn!(peer = %self.node, failed = expired.len(), "no link to the peer in time; failing the messages that waited for it");
            }
            // Outside the lock: answering drops reply ports, which may run other code.
            for outbound in expired {
                if let RouterMsg::Call(_, port) = outbound.msg {
                    let refusal = Reply::Err(WireError::Unavailable(format!(
                        "no link to node {} within {patience:?}: the message was not sent",
                        self.node
                    )));
                    let _ = port.send(refusal.encode());
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_millis(100));
        }
    }
}

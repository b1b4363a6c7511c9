//! Release notices and requests: how a moved actor's new owner learns that the activation
//! holding its lease has stopped, and asks for that stop when it waits.
//!
//! A notice names the stopped activation by its lease's node and activation number (unique
//! per registration, so a notice stays true forever). Notices are sent in batches, one frame
//! per owner and kind holding every notice made since the last frame left: a node handing
//! over thousands of actors sends a few frames, not one per actor.

use std::{collections::HashMap, sync::Arc};

use overmind_core::{ActorKey, MAX_ID_LEN, codec::Lease};

use super::{
    ClusterLink,
    wire::{CallInfo, Envelope},
};
use crate::engine::runtime::Runtime;

/// The variant name of a batch of release notices: each activation it names has stopped for
/// good. A cast to the router of the actors' owner; its arguments are [`ReleaseBatch`]'s
/// encoding, and the envelope's id is empty.
pub(crate) const RELEASED_VARIANT: &str = "\0overmind:released";

/// The variant name of a release request: the actor's new owner waits for the activation on
/// the receiving node to stop, which stops it as soon as it is retired. A cast with no
/// arguments; it cannot stop an activation that is not retired.
pub(crate) const RELEASE_VARIANT: &str = "\0overmind:release";

/// Most notices in one frame (each at most about 1 KiB, the longest id): well inside a frame.
const MAX_BATCH: usize = 4096;

/// Longest node name a notice carries (as a lease allows).
const MAX_NODE_LEN: usize = 255;

/// Notices for one kind's actors, all of activations on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReleaseBatch {
    pub(crate) node: String,
    /// The actor id and its stopped activation.
    pub(crate) released: Vec<(String, u64)>,
}

/// Why a batch's bytes were refused (a hostile or broken peer).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum BatchError {
    #[error("release notices end early")]
    Truncated,
    #[error("release notices: a node name is not UTF-8 or is longer than {MAX_NODE_LEN} bytes")]
    BadNode,
    #[error("release notices: an id is empty, not UTF-8, or longer than {MAX_ID_LEN} bytes")]
    BadId,
    #[error("release notices: more than {MAX_BATCH} in one frame")]
    TooMany,
}

impl ReleaseBatch {
    /// `[node len u8][node] ([activation u64 LE][id len u16 LE][id])*`
    pub(crate) fn encode(&self) -> Vec<u8> {
        let node = self.node.as_bytes();
        let node_len = node.len().min(MAX_NODE_LEN);
        let mut out = Vec::with_capacity(1 + node_len + self.released.len() * 24);
        out.push(node_len as u8);
        out.extend_from_slice(&node[..node_len]);
        for (id, activation) in &self.released {
            out.extend_from_slice(&activation.to_le_bytes());
            out.extend_from_slice(&(id.len() as u16).to_le_bytes());
            out.extend_from_slice(id.as_bytes());
        }
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, BatchError> {
        let (&node_len, rest) = bytes.split_first().ok_or(BatchError::Truncated)?;
        let (node, mut rest) = rest
            .split_at_checked(usize::from(node_len))
            .ok_or(BatchError::Truncated)?;
        let node = std::str::from_utf8(node).map_err(|_| BatchError::BadNode)?;
        let mut released = Vec::new();
        while !rest.is_empty() {
            if released.len() == MAX_BATCH {
                return Err(BatchError::TooMany);
            }
            let (activation, tail) = rest.split_first_chunk::<8>().ok_or(BatchError::Truncated)?;
            let (id_len, tail) = tail.split_first_chunk::<2>().ok_or(BatchError::Truncated)?;
            let id_len = usize::from(u16::from_le_bytes(*id_len));
            if id_len == 0 || id_len > MAX_ID_LEN {
                return Err(BatchError::BadId);
            }
            let (id, tail) = tail.split_at_checked(id_len).ok_or(BatchError::Truncated)?;
            let id = std::str::from_utf8(id).map_err(|_| BatchError::BadId)?;
            released.push((id.to_owned(), u64::from_le_bytes(*activation)));
            rest = tail;
        }
        Ok(Self {
            node: node.to_owned(),
            released,
        })
    }
}

/// Notices waiting to be sent, by owner node and kind, and whether a send is under way.
#[derive(Default)]
pub(crate) struct Outgoing {
    state: parking_lot::Mutex<OutgoingState>,
}

#[derive(Default)]
struct OutgoingState {
    /// By owner node, kind and the stopped activations' node.
    waiting: HashMap<(String, String, String), Vec<(String, u64)>>,
    sending: bool,
}

impl Outgoing {
    /// Whether every notice made so far was handed to an outbox.
    pub(crate) fn is_empty(&self) -> bool {
        let state = self.state.lock();
        state.waiting.is_empty() && !state.sending
    }
}

/// Tells the actor's owner in this node's view, if that is another node, that the
/// activation holding `lease` has stopped: the owner may take the actor over without waiting
/// for the epoch that moved it to be stable. Sent with the other notices made meanwhile.
pub(crate) fn announce(link: &Arc<ClusterLink>, rt: &Runtime, key: &ActorKey, lease: &Lease) {
    let Some(owner) = rt.placement.remote_owner(&key.to_string()) else {
        return;
    };
    let mut state = link.releases.state.lock();
    state
        .waiting
        .entry((owner.name, key.kind().to_owned(), lease.node.clone()))
        .or_default()
        .push((key.id().to_owned(), lease.activation));
    if !state.sending {
        state.sending = true;
        drop(state);
        tokio::spawn(send_batches(link.clone()));
    }
}

/// Sends what waits, until nothing does. Notices made while the runtime is busy (the
/// rebalancer stopping many activations) gather before this task runs.
async fn send_batches(link: Arc<ClusterLink>) {
    loop {
        tokio::task::yield_now().await;
        let waiting = {
            let mut state = link.releases.state.lock();
            if state.waiting.is_empty() {
                state.sending = false;
                return;
            }
            std::mem::take(&mut state.waiting)
        };
        let epoch = link.rt.upgrade().map_or(0, |rt| rt.placement.epoch());
        for ((owner, kind, node), released) in waiting {
            for chunk in released.chunks(MAX_BATCH) {
                let args = ReleaseBatch {
                    node: node.clone(),
                    released: chunk.to_vec(),
                }
                .encode();
                let envelope = Envelope {
                    kind: kind.clone(),
                    id: String::new(),
                    epoch,
                    hops: 0,
                    variant: RELEASED_VARIANT.to_owned(),
                    args,
                    call: CallInfo::default(),
                };
                match envelope.encode() {
                    Ok(bytes) => link.outbox(&owner).send(&link, bytes, None),
                    Err(error) => tracing::warn!(%error, "cannot send release notices"),
                }
            }
        }
    }
}

/// Asks `node`, whose activation of `key` holds the lease this node waits on, to stop it as
/// soon as it is retired (its release notice follows when it has stopped).
pub(crate) fn request(link: &Arc<ClusterLink>, rt: &Runtime, key: &ActorKey, node: &str) {
    if node == link.config.node || !link.placement.has_member(node) {
        return;
    }
    let envelope = Envelope {
        kind: key.kind().to_owned(),
        id: key.id().to_owned(),
        epoch: rt.placement.epoch(),
        hops: 0,
        variant: RELEASE_VARIANT.to_owned(),
        args: Vec::new(),
        call: CallInfo::default(),
    };
    if let Ok(bytes) = envelope.encode() {
        link.outbox(node).send(link, bytes, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(n: usize) -> ReleaseBatch {
        ReleaseBatch {
            node: "node-a".into(),
            released: (0..n)
                .map(|i| (format!("id-{i}"), (7 << 32) | i as u64))
                .collect(),
        }
    }

    #[test]
    fn a_batch_reads_back() {
        for n in [0, 1, 3, MAX_BATCH] {
            let b = batch(n);
            assert_eq!(ReleaseBatch::decode(&b.encode()), Ok(b));
        }
        let longest = ReleaseBatch {
            node: "n".repeat(MAX_NODE_LEN),
            released: vec![("x".repeat(MAX_ID_LEN), u64::MAX)],
        };
        assert_eq!(ReleaseBatch::decode(&longest.encode()), Ok(longest));
    }

    #[test]
    fn damaged_batches_are_refused() {
        let bytes = batch(2).encode();
        for cut in 0..bytes.len() {
            // Cutting inside the node name or an entry is refused; at an entry's end it is a
            // shorter batch.
            if let Ok(b) = ReleaseBatch::decode(&bytes[..cut]) {
                assert!(b.released.len() < 2, "cut at {cut}");
            }
        }
        assert_eq!(ReleaseBatch::decode(&[]), Err(BatchError::Truncated));
        assert_eq!(ReleaseBatch::decode(&[1, 0xff]), Err(BatchError::BadNode));
        let mut empty_id = vec![0];
        empty_id.extend_from_slice(&[0; 8]);
        empty_id.extend_from_slice(&0u16.to_le_bytes());
        assert_eq!(ReleaseBatch::decode(&empty_id), Err(BatchError::BadId));
        let mut long_id = vec![0];
        long_id.extend_from_slice(&[0; 8]);
        long_id.extend_from_slice(&((MAX_ID_LEN + 1) as u16).to_le_bytes());
        long_id.extend(std::iter::repeat_n(b'x', MAX_ID_LEN + 1));
        assert_eq!(ReleaseBatch::decode(&long_id), Err(BatchError::BadId));
        let mut too_many = batch(MAX_BATCH).encode();
        too_many.extend_from_slice(&batch(1).encode()[7..]);
        assert_eq!(ReleaseBatch::decode(&too_many), Err(BatchError::TooMany));
    }
}

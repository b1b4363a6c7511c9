//! The view: the authoritative member list with its epoch, as the leader publishes it.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::ring::Ring;

/// The largest epoch a view may carry. Epochs are stored beside leases (in PostgreSQL as a
/// `BIGINT`), and a view at this epoch could have no successor, so a record beyond it is
/// refused as damaged or hostile rather than adopted.
pub const MAX_EPOCH: u64 = i64::MAX as u64;

/// The member name of the placeholder epoch a recovery view carries (see
/// [`protocol::recovery_view`](super::protocol::recovery_view)): not a valid node name, so
/// the placeholder owns every key and no node is settled on anything until the recovery
/// epoch is stable.
pub const UNKNOWN_OWNERS: &str = "~unknown-owners";

/// Identifies one registration of a node: its ZooKeeper sequence number. A node that restarts
/// (or whose session expired) comes back as a new member with a new id but the same name.
pub type MemberId = u64;

/// A cluster member as the view lists it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Member {
    /// The registration's sequence number.
    pub id: MemberId,
    /// The node's name: what the ring places actors by, stable across restarts.
    pub name: String,
    /// Where its ractor_cluster node server listens, `host:port`.
    pub addr: String,
}

/// The members of one epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Epoch {
    /// The epoch number.
    pub epoch: u64,
    /// Its members, in registration order.
    pub members: Vec<Member>,
}

/// The record the leader publishes: the current epoch's members, and every epoch since the
/// last one known to be stable (all live members have applied it).
///
/// Carrying the history matters: a node may miss intermediate views (watches coalesce), yet it
/// must know every owner a key had since the last stable epoch before activating it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewRecord {
    /// The newest epoch.
    pub epoch: u64,
    /// The newest epoch every live member has applied.
    pub stable: u64,
    /// Epochs `stable..=epoch` that have members, oldest first; the last is the current one.
    pub history: Vec<Epoch>,
}

impl ViewRecord {
    /// The view before any leader published: epoch 0, no members, trivially stable.
    pub fn empty() -> Self {
        Self {
            epoch: 0,
            stable: 0,
            history: Vec::new(),
        }
    }

    /// The current members.
    pub fn members(&self) -> &[Member] {
        self.history
            .last()
            .filter(|e| e.epoch == self.epoch)
            .map_or(&[], |e| e.members.as_slice())
    }

    /// Encodes as JSON (readable with `zkCli.sh get`).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes; empty bytes are the empty view. A record whose epochs are out of range or
    /// inconsistent is an error, never a view.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        if bytes.is_empty() {
            return Ok(Self::empty());
        }
        let record: Self = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        record.check()?;
        Ok(record)
    }

    /// Checks the record's shape: epochs in range, stable not after the current epoch, the
    /// history ordered, within `stable..=epoch`, and ending with the current epoch.
    pub fn check(&self) -> Result<(), String> {
        if self.epoch > MAX_EPOCH {
            return Err(format!(
                "epoch {} is out of range (at most {MAX_EPOCH})",
                self.epoch
            ));
        }
        if self.stable > self.epoch {
            return Err(format!(
                "stable epoch {} is after epoch {}",
                self.stable, self.epoch
            ));
        }
        if self.history.windows(2).any(|w| w[0].epoch >= w[1].epoch)
            || self
                .history
                .iter()
                .any(|e| e.epoch < self.stable || e.epoch > self.epoch)
        {
            return Err("history epochs out of order or out of range".into());
        }
        match self.history.last() {
            None if self.epoch == 0 => Ok(()),
            Some(last) if last.epoch == self.epoch => Ok(()),
            _ => Err(format!(
                "the history does not end with the current epoch {}",
                self.epoch
            )),
        }
    }
}

/// A view as a node uses it: the record plus a ring per epoch in its history.
#[derive(Debug, Clone)]
pub struct View {
    record: ViewRecord,
    rings: Vec<Ring>,
}

impl View {
    /// Builds the rings of every epoch in the record.
    pub fn new(record: ViewRecord, vnodes: u32) -> Self {
        let rings = record
            .history
            .iter()
            .map(|e| Ring::new(e.members.iter().map(|m| m.name.clone()), vnodes))
            .collect();
        Self { record, rings }
    }

    /// A one-member view that is stable from the start: the embedded single-node default.
    pub fn single(name: &str, vnodes: u32) -> Arc<Self> {
        Arc::new(Self::new(
            ViewRecord {
                epoch: 1,
                stable: 1,
                history: vec![Epoch {
                    epoch: 1,
                    members: vec![Member {
                        id: 0,
                        name: name.to_owned(),
                        addr: String::new(),
                    }],
                }],
            },
            vnodes,
        ))
    }

    /// The record.
    pub fn record(&self) -> &ViewRecord {
        &self.record
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.record.epoch
    }

    /// The newest stable epoch.
    pub fn stable(&self) -> u64 {
        self.record.stable
    }

    /// The current members.
    pub fn members(&self) -> &[Member] {
        self.record.members()
    }

    /// The member named `name`, if it is in the current epoch.
    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members().iter().find(|m| m.name == name)
    }

    /// The current ring (empty if the current epoch has no members).
    pub fn ring(&self) -> &Ring {
        static EMPTY: std::sync::OnceLock<Ring> = std::sync::OnceLock::new();
        match (self.record.history.last(), self.rings.last()) {
            (Some(e), Some(ring)) if e.epoch == self.record.epoch => ring,
            _ => EMPTY.get_or_init(Ring::default),
        }
    }

    /// The current owner of `key`.
    pub fn owner(&self, key: &str) -> Option<&str> {
        self.ring().owner(key)
    }

    /// Whether `node` may activate `key` now: it owns the key in every epoch since the last
    /// stable one, so no other node can hold an activation of it.
    pub fn settled_owner(&self, key: &str, node: &str) -> bool {
        let h = crate::ring::key_hash(key);
        // An epoch with no members gave the key to no one, so it does not stand in the way.
        self.ring().owner_of_hash(h) == Some(node)
            && self
                .rings
                .iter()
                .all(|r| r.is_empty() || r.owner_of_hash(h) == Some(node))
    }

    /// Whether an activation of `key` that `node` took in epoch `granted` may go on: `node`
    /// has owned the key in every epoch since `granted` (or since the last stable epoch, if
    /// that is later). For an activation taken while settled this is [`Self::settled_owner`];
    /// one taken early, on a release notice, needs only the epochs since it was granted.
    pub fn holds_since(&self, key: &str, node: &str, granted: u64) -> bool {
        let h = crate::ring::key_hash(key);
        self.ring().owner_of_hash(h) == Some(node)
            && self
                .record
                .history
                .iter()
                .zip(&self.rings)
                .filter(|(e, _)| e.epoch >= granted)
                .all(|(_, r)| r.is_empty() || r.owner_of_hash(h) == Some(node))
    }

    /// Whether `node` owns `key` now but must wait for the epoch to become stable first.
    pub fn awaits_stability(&self, key: &str, node: &str) -> bool {
        self.owner(key) == Some(node) && !self.settled_owner(key, node)
    }
}

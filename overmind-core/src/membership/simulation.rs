//! Deterministic simulation of the membership protocol under faults.
//!
//! Thousands of seeded random schedules drive a model of ZooKeeper (sessions that expire, the
//! view record), of nodes (lease, applied view, activations, retiring, acknowledgements), of
//! the store (versioned cells, leases) and of clients, through crashes, restarts, pauses past
//! the session timeout, cuts from ZooKeeper and graceful leaves. The decisions are the real
//! ones: [`protocol::next_view`] for the leader, [`View::settled_owner`] for activation and
//! [`View::holds_since`] for retirement. An owner that is not settled yet may also activate
//! early, once the previous holder of the lease told it that its activation stopped (a
//! notice naming that activation; notices can be lost, and die with the node). After every
//! step the invariants are checked:
//!
//! 1. at most one node can serve an actor: no two live nodes with a valid lease hold an
//!    activation of the same key;
//! 2. no acknowledged write is lost: the store holds every acknowledged increment;
//! 3. no stale read: a read served returns at least every acknowledged increment;
//! 4. no epoch is reused: one epoch number never names two different member lists.
//!
//! ZooKeeper can also lose its data: sessions, members and the view vanish at once and
//! sequence numbers start again, while the store keeps the leases and the epoch floor. The
//! leader then follows [`protocol::leader_step`] and [`protocol::recovery_view`], and nodes
//! adopt views through [`protocol::check_successor`] and [`protocol::check_floor`].
//!
//! The same simulation run with a broken rule must find violations, so a green run means
//! something.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    protocol::{self, LiveMember},
    view::{MemberId, View, ViewRecord},
};

/// Ticks of 100 ms.
const SESSION_TIMEOUT: u64 = 20;
/// The node's lease: 4/5 of the session timeout after the last answered contact.
const LEASE: u64 = SESSION_TIMEOUT * 4 / 5;
const NODES: usize = 3;
const KEYS: usize = 8;
const VNODES: u32 = 16;

/// Which rules the simulated nodes follow (the real ones, or a deliberately broken one).
#[derive(Debug, Clone, Copy, Default)]
struct Rules {
    /// Bug: activate when owning the key in the current epoch only, ignoring the history.
    current_epoch_only: bool,
    /// Bug: acknowledge an epoch before the retired activations have stopped.
    ack_before_retiring: bool,
    /// Bug: serve whether or not the lease is valid.
    ignore_lease: bool,
    /// Bug: after rejoining, trust the view read under the old registration (the lease
    /// belongs to the node, not to a registration).
    trust_stale_view: bool,
    /// Bug: publish the recovery view as soon as ZooKeeper's data is found lost, without
    /// waiting out the leases granted before.
    no_recovery_wait: bool,
    /// Bug: send the release notice when retiring starts, before the activation stopped.
    notice_before_stopping: bool,
    /// Bug: activate early without a notice from the lease's holder.
    early_without_notice: bool,
    /// Bug: keep no epoch floor; after a loss the leader starts again from the empty view.
    no_epoch_floor: bool,
    /// Bug: accept a member id this node held before ZooKeeper lost its data.
    reuse_member_ids: bool,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

struct ZkMember {
    name: String,
    last_heard: u64,
    applied: u64,
    leaving: bool,
}

#[derive(Default)]
struct Zk {
    next_id: MemberId,
    members: BTreeMap<MemberId, ZkMember>,
    view: Option<ViewRecord>,
    /// How many times the data was lost: a session from an earlier life is unknown.
    life: u64,
    /// The leader that found the view unusable, and when.
    recovering: Option<(MemberId, u64)>,
}

struct Activation {
    /// The store version this activation's next save expects.
    version: u64,
    value: i64,
    /// The epoch it was granted in.
    epoch: u64,
    /// Its lease: the version its lease write created (unique, like a lease's activation).
    lease: u64,
}

struct Node {
    name: String,
    up: bool,
    paused: bool,
    zk_cut: bool,
    leaving: bool,
    member: Option<MemberId>,
    /// The ZooKeeper life the session belongs to.
    life: u64,
    /// Every member id this process registered under.
    held: BTreeSet<MemberId>,
    lease_until: u64,
    view: Option<View>,
    /// The registration under which `view` was read.
    view_member: Option<MemberId>,
    activations: BTreeMap<String, Activation>,
    retiring: BTreeSet<String>,
    /// Release notices received: the lease whose activation stopped, per key.
    notices: BTreeMap<String, u64>,
}

#[derive(Default, Clone, Copy)]
struct Cell {
    version: u64,
    value: i64,
    lease_epoch: u64,
    /// The lease written last (0: none ever).
    lease: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    steps: u64,
    served: u64,
    acked: u64,
    refused: u64,
    activations: u64,
    /// Activations taken before the epoch was stable, on a holder's notice.
    early: u64,
    faults: u64,
    wipes: u64,
}

struct Sim {
    rules: Rules,
    rng: Rng,
    now: u64,
    zk: Zk,
    nodes: Vec<Node>,
    store: BTreeMap<String, Cell>,
    /// The store's epoch floor.
    floor: u64,
    /// The members every published epoch had, for invariant 4.
    published: BTreeMap<u64, Vec<String>>,
    next_version: u64,
    /// The highest acknowledged value per key (increments count up from 0).
    acked: BTreeMap<String, i64>,
    violations: Vec<String>,
    stats: Stats,
}

impl Node {
    fn new(name: String) -> Self {
        Self {
            name,
            up: true,
            paused: false,
            zk_cut: false,
            leaving: false,
            member: None,
            life: 0,
            held: BTreeSet::new(),
            lease_until: 0,
            view: None,
            view_member: None,
            activations: BTreeMap::new(),
            retiring: BTreeSet::new(),
            notices: BTreeMap::new(),
        }
    }

    fn lease_valid(&self, now: u64, rules: Rules) -> bool {
        rules.ignore_lease || now < self.lease_until
    }

    fn stop_everything(&mut self) {
        self.activations.clear();
        self.retiring.clear();
    }

    /// The view, if this node is a member of it under the registration holding the lease.
    fn member_view(&self, rules: Rules) -> Option<&View> {
        let view = self.view.as_ref()?;
        // The real node checks that its view was read under the registration that holds the
        // lease; the broken rule trusts whichever registration read it.
        let me = if rules.trust_stale_view {
            self.view_member
        } else {
            self.member.filter(|id| self.view_member == Some(*id))
        };
        let member = me.is_some_and(|id| view.members().iter().any(|m| m.id == id));
        member.then_some(view)
    }

    /// May this node activate `key` unconditionally under its view?
    fn settled(&self, key: &str, rules: Rules) -> bool {
        self.member_view(rules).is_some_and(|view| {
            if rules.current_epoch_only {
                view.owner(key) == Some(self.name.as_str())
            } else {
                view.settled_owner(key, &self.name)
            }
        })
    }

    /// May this node activate `key` once the lease's holder has stopped?
    fn owns(&self, key: &str, rules: Rules) -> bool {
        self.member_view(rules)
            .is_some_and(|view| view.owner(key) == Some(self.name.as_str()))
    }

    /// May the activation of `key` granted in `granted` go on under the view?
    fn holds(&self, key: &str, granted: u64, rules: Rules) -> bool {
        self.member_view(rules).is_some_and(|view| {
            if rules.current_epoch_only {
                view.owner(key) == Some(self.name.as_str())
            } else {
                view.holds_since(key, &self.name, granted)
            }
        })
    }

    /// The owner of `key` in this node's view, if another node.
    fn owner_elsewhere(&self, key: &str) -> Option<String> {
        let owner = self.view.as_ref()?.owner(key)?;
        (owner != self.name).then(|| owner.to_owned())
    }
}

impl Sim {
    fn new(seed: u64, rules: Rules) -> Self {
        Self {
            rules,
            rng: Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1),
            now: 0,
            zk: Zk::default(),
            nodes: (0..NODES).map(|i| Node::new(format!("n{i}"))).collect(),
            store: BTreeMap::new(),
            floor: 0,
            published: BTreeMap::new(),
            next_version: 0,
            acked: BTreeMap::new(),
            violations: Vec::new(),
            stats: Stats::default(),
        }
    }

    fn violation(&mut self, what: String) {
        if self.violations.len() < 5 {
            self.violations.push(format!("t={} {what}", self.now));
        }
    }

    fn tick(&mut self) {
        self.now += 1;
        let now = self.now;
        // ZooKeeper expires sessions it has not heard from for a whole timeout.
        self.zk
            .members
            .retain(|_, m| now.saturating_sub(m.last_heard) <= SESSION_TIMEOUT);
    }

    fn node_step(&mut self, i: usize) {
        let (now, rules) = (self.now, self.rules);
        let node = &mut self.nodes[i];
        if !node.up || node.paused {
            return;
        }
        // The lease monitor: no lease, nothing runs. Each stopped activation tells the key's
        // owner in this node's view.
        if !node.lease_valid(now, rules) {
            let stopped = std::mem::take(&mut node.activations);
            node.stop_everything();
            for (key, a) in stopped {
                self.stopped(i, &key, a.lease);
            }
            return self.node_step_rest(i);
        }
        self.node_step_rest(i);
    }

    /// Tells the owner of `key` in node `i`'s view, if another node, that the activation
    /// holding `lease` stopped (most notices arrive).
    fn stopped(&mut self, i: usize, key: &str, lease: u64) {
        let Some(owner) = self.nodes[i].owner_elsewhere(key) else {
            return;
        };
        if !self.rng.chance(0.9) {
            return;
        }
        if let Some(o) = self.nodes.iter_mut().find(|n| n.name == owner && n.up) {
            o.notices.insert(key.to_owned(), lease);
        }
    }

    fn node_step_rest(&mut self, i: usize) {
        let (now, rules) = (self.now, self.rules);
        let node = &mut self.nodes[i];
        if node.zk_cut {
            return;
        }
        // The session: register, renew, or find it expired.
        match node.member {
            None => {
                if node.leaving {
                    return;
                }
                let name_free = !self.zk.members.values().any(|m| m.name == node.name);
                if name_free {
                    // A sequence number this process held before (ZooKeeper lost its data) is
                    // given back and another taken.
                    self.zk.next_id += 1;
                    while node.held.contains(&self.zk.next_id) && !rules.reuse_member_ids {
                        self.zk.next_id += 2;
                    }
                    let id = self.zk.next_id;
                    node.held.insert(id);
                    node.life = self.zk.life;
                    self.zk.members.insert(
                        id,
                        ZkMember {
                            name: node.name.clone(),
                            last_heard: now,
                            applied: 0,
                            leaving: false,
                        },
                    );
                    node.member = Some(id);
                    node.lease_until = now + LEASE;
                }
                return;
            }
            Some(id) => match self
                .zk
                .members
                .get_mut(&id)
                .filter(|_| node.life == self.zk.life)
            {
                Some(m) => {
                    m.last_heard = now;
                    m.leaving = node.leaving;
                    node.lease_until = now + LEASE;
                }
                None => {
                    // Expired: stop serving, rejoin as a new member.
                    node.member = None;
                    node.lease_until = 0;
                    let stopped = std::mem::take(&mut node.activations);
                    node.stop_everything();
                    for (key, a) in stopped {
                        self.stopped(i, &key, a.lease);
                    }
                    return;
                }
            },
        }
        let Some(id) = node.member else {
            return;
        };
        // Read and apply the view, if the protocol lets this node adopt it: retire whatever is
        // not settled here.
        if let Some(record) = &self.zk.view {
            let newer = node.view.as_ref().is_none_or(|v| v.record() != record);
            let adopted = node
                .view
                .as_ref()
                .filter(|_| node.view_member == Some(id))
                .map(View::record);
            let adoptable = protocol::check_successor(adopted, record).is_ok()
                && (rules.no_epoch_floor || protocol::check_floor(record, self.floor).is_ok());
            if adoptable && (newer || node.view_member != Some(id)) {
                node.view = Some(View::new(record.clone(), VNODES));
                node.view_member = Some(id);
                if record.stable == record.epoch {
                    // Everything owned here is settled: notices are no longer needed.
                    node.notices.clear();
                }
                let unsettled: Vec<(String, u64)> = node
                    .activations
                    .iter()
                    .filter(|(k, a)| !node.holds(k, a.epoch, rules))
                    .map(|(k, a)| (k.clone(), a.lease))
                    .collect();
                node.retiring
                    .extend(unsettled.iter().map(|(k, _)| k.clone()));
                if rules.notice_before_stopping {
                    for (key, lease) in unsettled {
                        self.stopped(i, &key, lease);
                    }
                }
            }
        }
        let node = &mut self.nodes[i];
        // Retiring activations drain and stop, one at a time, and tell the new owner.
        if let Some(key) = node.retiring.iter().next().cloned() {
            if self.rng.chance(0.6) {
                let stopped = node.activations.remove(&key);
                node.retiring.remove(&key);
                if let Some(a) = stopped {
                    if !rules.notice_before_stopping {
                        self.stopped(i, &key, a.lease);
                    }
                }
            }
        }
        let node = &mut self.nodes[i];
        // An idle activation passivates (telling the owner, if that is another node by now).
        if self.rng.chance(0.05) {
            let idle = node
                .activations
                .keys()
                .find(|k| !node.retiring.contains(*k))
                .cloned();
            if let Some((key, a)) = idle.and_then(|k| node.activations.remove_entry(&k)) {
                self.stopped(i, &key, a.lease);
            }
        }
        let node = &mut self.nodes[i];
        // Acknowledge the epoch once nothing it retired is left.
        if let Some(view) = &node.view {
            if node.retiring.is_empty() || rules.ack_before_retiring {
                if let Some(m) = self.zk.members.get_mut(&id) {
                    m.applied = m.applied.max(view.epoch());
                }
            }
            // Leaving: deregister once an epoch without this node is stable.
            let gone = !view.members().iter().any(|m| m.id == id);
            if node.leaving && gone && view.stable() == view.epoch() && node.retiring.is_empty() {
                self.zk.members.remove(&id);
                node.member = None;
                node.up = false;
                node.stop_everything();
            }
        }
    }

    fn leader_step(&mut self) {
        let Some((&leader, _)) = self.zk.members.iter().next() else {
            return;
        };
        let runs = self
            .nodes
            .iter()
            .any(|n| n.member == Some(leader) && n.up && !n.paused && !n.zk_cut);
        if !runs {
            return;
        }
        let live: Vec<LiveMember> = self
            .zk
            .members
            .iter()
            .map(|(&id, m)| LiveMember {
                id,
                name: m.name.clone(),
                addr: String::new(),
                applied: m.applied,
                leaving: m.leaving,
            })
            .collect();
        let current = self.zk.view.clone().unwrap_or_else(ViewRecord::empty);
        // Without a floor the leader can only trust the view it reads.
        let floor = if self.rules.no_epoch_floor {
            current.epoch
        } else {
            self.floor
        };
        let next = match protocol::leader_step(Ok(&current), floor, &live) {
            Ok(protocol::LeaderStep::Publish(next)) => next,
            Ok(protocol::LeaderStep::Recover(_)) => {
                let since = match self.zk.recovering {
                    Some((l, since)) if l == leader => since,
                    _ => {
                        self.zk.recovering = Some((leader, self.now));
                        self.now
                    }
                };
                let wait = if self.rules.no_recovery_wait {
                    0
                } else {
                    SESSION_TIMEOUT
                };
                if self.now < since + wait {
                    return;
                }
                match protocol::recovery_view(floor, &live) {
                    Ok(next) => next,
                    Err(e) => return self.violation(format!("no recovery view: {e}")),
                }
            }
            Ok(protocol::LeaderStep::Stand) => return,
            Ok(protocol::LeaderStep::SeedFloor(epoch)) => {
                self.floor = self.floor.max(epoch);
                return;
            }
            Err(e) => return self.violation(format!("no next view: {e}")),
        };
        // The floor is raised before the view is published.
        self.floor = self.floor.max(next.epoch);
        self.zk.recovering = None;
        // Invariant 4: an epoch keeps its members.
        let members: Vec<String> = next.members().iter().map(|m| m.name.clone()).collect();
        if let Some(before) = self.published.insert(next.epoch, members.clone()) {
            if before != members {
                self.violation(format!(
                    "epoch {} reused: {before:?}, then {members:?}",
                    next.epoch
                ));
            }
        }
        self.zk.view = Some(next);
    }

    /// ZooKeeper loses its data: sessions, members and the view vanish at once, and sequence
    /// numbers start again. The store keeps everything.
    fn wipe(&mut self) {
        let life = self.zk.life + 1;
        self.zk = Zk {
            life,
            ..Zk::default()
        };
    }

    fn request(&mut self, at: usize, key: String, increment: bool) {
        let (now, rules) = (self.now, self.rules);
        // Route by the receiving node's view (one hop).
        let target = {
            let node = &self.nodes[at];
            if !node.up || node.paused || !node.lease_valid(now, rules) {
                return;
            }
            let Some(owner) = node.view.as_ref().and_then(|v| v.owner(&key)) else {
                return;
            };
            match self.nodes.iter().position(|n| n.name == owner) {
                Some(t) => t,
                None => return,
            }
        };
        let h = target;
        {
            let node = &self.nodes[h];
            if !node.up
                || node.paused
                || !node.lease_valid(now, rules)
                || node.retiring.contains(&key)
            {
                self.stats.refused += 1;
                return;
            }
        }
        // Activate if needed: the node must be settled, or own the key and hold a notice that
        // the lease's holder stopped; it takes the lease in the store.
        if !self.nodes[h].activations.contains_key(&key) {
            let settled = self.nodes[h].settled(&key, rules);
            let early = !settled && self.nodes[h].owns(&key, rules);
            if !settled && !early {
                self.stats.refused += 1;
                return;
            }
            let epoch = self.nodes[h].view.as_ref().map_or(0, View::epoch);
            let noticed = self.nodes[h].notices.get(&key).copied();
            let cell = self.store.entry(key.clone()).or_default();
            let released = cell.lease == 0 || noticed == Some(cell.lease);
            if cell.lease_epoch > epoch || (early && !released && !rules.early_without_notice) {
                self.stats.refused += 1;
                return;
            }
            if early {
                self.stats.early += 1;
            }
            self.next_version += 1;
            cell.version = self.next_version;
            cell.lease_epoch = epoch;
            cell.lease = cell.version;
            let activation = Activation {
                version: cell.version,
                value: cell.value,
                epoch,
                lease: cell.lease,
            };
            self.nodes[h].activations.insert(key.clone(), activation);
            self.stats.activations += 1;
        }
        // Invariant 1: no other live node with a valid lease holds an activation of this key.
        let others: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(o, n)| {
                *o != h && n.up && n.lease_valid(now, rules) && n.activations.contains_key(&key)
            })
            .map(|(_, n)| n.name.clone())
            .collect();
        if !others.is_empty() {
            let server = self.nodes[h].name.clone();
            self.violation(format!(
                "{key}: {server} serves while {others:?} also hold activations"
            ));
        }
        self.stats.served += 1;
        let acked_so_far = self.acked.get(&key).copied().unwrap_or(0);
        let Some(activation) = self.nodes[h].activations.get_mut(&key) else {
            return;
        };
        if increment {
            activation.value += 1;
            let cell = self.store.entry(key.clone()).or_default();
            if cell.version == activation.version {
                self.next_version += 1;
                cell.version = self.next_version;
                cell.value = activation.value;
                activation.version = cell.version;
                let value = activation.value;
                // Acknowledged only while the lease holds.
                if self.nodes[h].lease_valid(now, rules) {
                    self.acked.insert(key.clone(), value.max(acked_so_far));
                    self.stats.acked += 1;
                }
            } else {
                // Fenced: refused, and the activation stops.
                self.nodes[h].activations.remove(&key);
                self.nodes[h].retiring.remove(&key);
                self.stats.refused += 1;
            }
        } else if activation.value < acked_so_far {
            // Invariant 3.
            let value = activation.value;
            self.violation(format!(
                "{key}: read {value}, but {acked_so_far} was acknowledged"
            ));
        }
    }

    fn fault(&mut self) {
        self.stats.faults += 1;
        if self.rng.chance(0.04) {
            self.stats.wipes += 1;
            return self.wipe();
        }
        let i = self.rng.below(NODES);
        let serving = self.nodes.iter().filter(|n| n.up && !n.leaving).count();
        let node = &mut self.nodes[i];
        match self.rng.below(8) {
            0 if node.up => {
                node.up = false; // crash: memory lost, the session lingers until it expires
                node.stop_everything();
            }
            1 if !node.up => {
                let name = node.name.clone();
                *node = Node::new(name); // restart: a new process, same name
            }
            2 => node.paused = true,
            3 => node.paused = false,
            4 => node.zk_cut = true,
            5 => node.zk_cut = false,
            6 if node.up && !node.leaving && serving > 1 => node.leaving = true,
            _ => {
                // heal everything on this node
                node.paused = false;
                node.zk_cut = false;
            }
        }
    }

    fn step(&mut self) {
        self.stats.steps += 1;
        match self.rng.below(100) {
            0..=24 => self.tick(),
            25..=54 => {
                let i = self.rng.below(NODES);
                self.node_step(i);
            }
            55..=64 => self.leader_step(),
            65..=96 => {
                let at = self.rng.below(NODES);
                let key = format!("k{}", self.rng.below(KEYS));
                let increment = self.rng.chance(0.6);
                self.request(at, key, increment);
            }
            _ => self.fault(),
        }
        // Invariant 2: the store holds every acknowledged increment.
        let lost: Vec<String> = self
            .acked
            .iter()
            .filter(|(k, a)| self.store.get(*k).map_or(0, |c| c.value) < **a)
            .map(|(k, a)| format!("{k}: {a} acknowledged, store has less"))
            .collect();
        for l in lost {
            self.violation(l);
        }
    }
}

/// Runs `seeds` schedules of `steps` steps; returns the totals and the first violations.
fn explore(rules: Rules, seeds: u64, steps: u64) -> (Stats, Vec<String>) {
    let mut total = Stats::default();
    for seed in 0..seeds {
        let mut sim = Sim::new(seed, rules);
        for _ in 0..steps {
            sim.step();
        }
        total.steps += sim.stats.steps;
        total.served += sim.stats.served;
        total.acked += sim.stats.acked;
        total.refused += sim.stats.refused;
        total.activations += sim.stats.activations;
        total.early += sim.stats.early;
        total.faults += sim.stats.faults;
        total.wipes += sim.stats.wipes;
        if !sim.violations.is_empty() {
            let found = sim
                .violations
                .iter()
                .map(|v| format!("seed {seed}: {v}"))
                .collect();
            return (total, found);
        }
    }
    (total, Vec::new())
}

#[test]
fn the_protocol_keeps_its_invariants_under_random_faults() {
    let (stats, violations) = explore(Rules::default(), 3000, 600);
    println!("3000 schedules x 600 steps: {stats:?}");
    assert!(violations.is_empty(), "{violations:#?}");
    // The schedules did exercise the protocol.
    assert!(
        stats.acked > 50_000
            && stats.activations > 5_000
            && stats.early > 500
            && stats.faults > 20_000
            && stats.wipes > 500,
        "{stats:?}"
    );
}

#[test]
fn broken_rules_are_caught() {
    for (name, rules) in [
        (
            "owner in the current epoch only",
            Rules {
                current_epoch_only: true,
                ..Rules::default()
            },
        ),
        (
            "acknowledging before retiring",
            Rules {
                ack_before_retiring: true,
                ..Rules::default()
            },
        ),
        (
            "serving without a lease",
            Rules {
                ignore_lease: true,
                ..Rules::default()
            },
        ),
        (
            "trusting a view read under an expired registration",
            Rules {
                trust_stale_view: true,
                ..Rules::default()
            },
        ),
        (
            "recovering from lost ZooKeeper data without waiting out the leases",
            Rules {
                no_recovery_wait: true,
                ..Rules::default()
            },
        ),
        (
            "telling the new owner before the activation stopped",
            Rules {
                notice_before_stopping: true,
                ..Rules::default()
            },
        ),
        (
            "activating early without a notice from the lease's holder",
            Rules {
                early_without_notice: true,
                ..Rules::default()
            },
        ),
        (
            "keeping no epoch floor",
            Rules {
                no_epoch_floor: true,
                ..Rules::default()
            },
        ),
        (
            "taking a member id again after ZooKeeper lost its data",
            Rules {
                reuse_member_ids: true,
                ..Rules::default()
            },
        ),
    ] {
        let (_, violations) = explore(rules, 3000, 600);
        assert!(
            !violations.is_empty(),
            "the simulation did not catch: {name}"
        );
        println!("{name}: caught, e.g. {}", violations[0]);
    }
}

//! The consistent-hash ring: which node owns each actor.
//!
//! Placement is `hash_ring`'s: every node contributes `vnodes` points, the XxHash64 (seed 0)
//! of `"<node>:<i>"`; a key belongs to the node of the first point at or after the XxHash64 of
//! the key, wrapping around. (On the astronomically rare equal point, the node listed later
//! wins, as in `hash_ring`.) Unlike `hash_ring` 0.2, which copies and scans every point on
//! each lookup, this ring answers by binary search without allocating, and can name a key's
//! next owners in ring order ([`Ring::successors`]).
//!
//! Every member builds its ring from the same view, so every member computes the same owner.

use std::hash::Hasher;

use twox_hash::XxHash64;

/// Points per node unless configured: keeps 3 nodes within a few percent of an even share.
pub const DEFAULT_VNODES: u32 = 256;

fn hash(bytes: &[u8]) -> u64 {
    let mut h = XxHash64::with_seed(0);
    h.write(bytes);
    h.finish()
}

/// The hash a key is placed by.
pub fn key_hash(key: &str) -> u64 {
    hash(key.as_bytes())
}

/// A consistent-hash ring over a set of node names.
#[derive(Debug, Clone, Default)]
pub struct Ring {
    /// Sorted by hash; the node index refers to `nodes`.
    points: Vec<(u64, u32)>,
    nodes: Vec<String>,
}

impl Ring {
    /// A ring of `nodes` with `vnodes` points each. Duplicate names count once.
    pub fn new<I, S>(nodes: I, vnodes: u32) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut names: Vec<String> = Vec::new();
        for n in nodes {
            let n = n.into();
            if !names.contains(&n) {
                names.push(n);
            }
        }
        let mut points = Vec::with_capacity(names.len() * vnodes as usize);
        let mut label = String::new();
        for (index, name) in names.iter().enumerate() {
            for i in 0..vnodes {
                label.clear();
                use std::fmt::Write;
                let _ = write!(label, "{name}:{i}");
                points.push((hash(label.as_bytes()), index as u32));
            }
        }
        // Stable sort keeps insertion order among equal hashes; keep the last, as hash_ring's
        // map insert does.
        points.sort_by_key(|&(h, _)| h);
        let mut deduped: Vec<(u64, u32)> = Vec::with_capacity(points.len());
        for p in points {
            match deduped.last_mut() {
                Some(last) if last.0 == p.0 => *last = p,
                _ => deduped.push(p),
            }
        }
        Self {
            points: deduped,
            nodes: names,
        }
    }

    /// The node names on the ring, in the order given.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// Whether the ring has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    fn first_at_or_after(&self, h: u64) -> usize {
        match self.points.partition_point(|&(p, _)| p < h) {
            i if i == self.points.len() => 0,
            i => i,
        }
    }

    /// The owner of a key given by its hash.
    pub fn owner_of_hash(&self, h: u64) -> Option<&str> {
        if self.points.is_empty() {
            return None;
        }
        let (_, node) = self.points[self.first_at_or_after(h)];
        Some(&self.nodes[node as usize])
    }

    /// The node that owns `key`.
    pub fn owner(&self, key: &str) -> Option<&str> {
        self.owner_of_hash(key_hash(key))
    }

    /// The distinct nodes in ring order starting at `key`'s owner: the owner first, then the
    /// nodes that would take over if the ones before them left.
    pub fn successors<'a>(&'a self, key: &str) -> Successors<'a> {
        let start = if self.points.is_empty() {
            0
        } else {
            self.first_at_or_after(key_hash(key))
        };
        Successors {
            ring: self,
            next: start,
            walked: 0,
            seen: Vec::new(),
        }
    }
}

/// Iterator over a key's owners in ring order; see [`Ring::successors`].
#[derive(Debug)]
pub struct Successors<'a> {
    ring: &'a Ring,
    next: usize,
    walked: usize,
    seen: Vec<u32>,
}

impl<'a> Iterator for Successors<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let points = &self.ring.points;
        while self.walked < points.len() && self.seen.len() < self.ring.nodes.len() {
            let (_, node) = points[self.next];
            self.next = (self.next + 1) % points.len();
            self.walked += 1;
            if !self.seen.contains(&node) {
                self.seen.push(node);
                return Some(&self.ring.nodes[node as usize]);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> impl Iterator<Item = String> {
        (0..n).map(|i| format!("account/user-{i}"))
    }

    #[test]
    fn places_keys_exactly_as_hash_ring_does() {
        for (nodes, vnodes) in [
            (vec!["a", "b", "c"], 160u32),
            (vec!["node-1", "node-2", "node-3", "node-4", "node-5"], 10),
            (vec!["solo"], 1),
        ] {
            let ours = Ring::new(nodes.clone(), vnodes);
            let oracle = hash_ring::HashRing::new(
                nodes.iter().map(|n| n.to_string()).collect(),
                vnodes as isize,
            );
            for key in keys(100_000) {
                assert_eq!(
                    ours.owner(&key),
                    oracle.get_node(key.clone()).map(String::as_str),
                    "{key} with {nodes:?} x{vnodes}"
                );
            }
        }
    }

    #[test]
    fn adding_a_node_moves_only_keys_to_it() {
        let before = Ring::new(["a", "b", "c"], DEFAULT_VNODES);
        let after = Ring::new(["a", "b", "c", "d"], DEFAULT_VNODES);
        let mut moved = 0;
        for key in keys(100_000) {
            let (was, is) = (before.owner(&key), after.owner(&key));
            if was != is {
                assert_eq!(is, Some("d"), "{key} moved between old nodes");
                moved += 1;
            }
        }
        let share = moved as f64 / 100_000.0;
        assert!((0.20..0.30).contains(&share), "moved {share}");
    }

    #[test]
    fn balance_and_successors() {
        let ring = Ring::new(["a", "b", "c"], DEFAULT_VNODES);
        let without = |gone: &str| {
            Ring::new(
                ["a", "b", "c"].into_iter().filter(|n| *n != gone),
                DEFAULT_VNODES,
            )
        };
        let rings_without: std::collections::HashMap<&str, Ring> = ["a", "b", "c"]
            .into_iter()
            .map(|n| (n, without(n)))
            .collect();
        let mut counts = std::collections::HashMap::new();
        for key in keys(30_000) {
            *counts.entry(ring.owner(&key).unwrap()).or_insert(0) += 1;
            let succ: Vec<_> = ring.successors(&key).collect();
            assert_eq!(succ.len(), 3, "every node exactly once");
            assert_eq!(Some(succ[0]), ring.owner(&key), "the owner comes first");
            // Removing the owner hands the key to the next successor.
            assert_eq!(rings_without[succ[0]].owner(&key), Some(succ[1]));
        }
        for (node, n) in counts {
            assert!((8_500..=11_500).contains(&n), "{node} has {n} of 30000");
        }
        assert_eq!(Ring::new(Vec::<String>::new(), 8).owner("x"), None);
        assert_eq!(
            Ring::new(Vec::<String>::new(), 8).successors("x").count(),
            0
        );
    }
}

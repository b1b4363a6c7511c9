//! The membership protocol's decisions, without I/O: what the leader publishes next.
//!
//! The ZooKeeper driver feeds these functions what it read and performs what they return, so
//! the rules can be tested (and model-checked) on their own.
//!
//! # Rules
//! - The ring members of a view are the live, non-leaving members, by registration order.
//!   If two live registrations carry one name, only the older one is a ring member.
//! - When the ring members change, the leader publishes the next epoch. The history keeps
//!   every epoch since the last stable one.
//! - When every live member (leaving ones included) reports it has applied the current epoch,
//!   the leader marks it stable and drops the older history.

use super::view::{Epoch, Member, MemberId, ViewRecord};

/// A member as the leader reads it from its registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveMember {
    /// Registration sequence number.
    pub id: MemberId,
    /// Node name.
    pub name: String,
    /// Node server address.
    pub addr: String,
    /// The newest epoch it has applied.
    pub applied: u64,
    /// It is leaving: it gives up its actors but stays until the epoch without it is stable.
    pub leaving: bool,
}

/// The ring members the live registrations call for.
pub fn ring_members(live: &[LiveMember]) -> Vec<Member> {
    let mut sorted: Vec<&LiveMember> = live.iter().collect();
    sorted.sort_by_key(|m| m.id);
    let mut members: Vec<Member> = Vec::new();
    for m in sorted {
        if m.leaving || members.iter().any(|x| x.name == m.name) {
            continue;
        }
        members.push(Member {
            id: m.id,
            name: m.name.clone(),
            addr: m.addr.clone(),
        });
    }
    members
}

/// The record the leader should publish next, or `None` if the current one stands.
pub fn next_view(current: &ViewRecord, live: &[LiveMember]) -> Option<ViewRecord> {
    let members = ring_members(live);
    if members != current.members() {
        let epoch = current.epoch + 1;
        let mut history: Vec<Epoch> = current
            .history
            .iter()
            .filter(|e| e.epoch >= current.stable)
            .cloned()
            .collect();
        history.push(Epoch { epoch, members });
        return Some(ViewRecord {
            epoch,
            stable: current.stable,
            history,
        });
    }
    let all_applied = live.iter().all(|m| m.applied >= current.epoch);
    if current.stable < current.epoch && all_applied {
        return Some(ViewRecord {
            epoch: current.epoch,
            stable: current.epoch,
            history: current
                .history
                .iter()
                .filter(|e| e.epoch == current.epoch)
                .cloned()
                .collect(),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(id: u64, name: &str, applied: u64) -> LiveMember {
        LiveMember {
            id,
            name: name.into(),
            addr: format!("127.0.0.1:{}", 4000 + id),
            applied,
            leaving: false,
        }
    }

    #[test]
    fn joins_make_epochs_and_acks_make_them_stable() {
        let v0 = ViewRecord::empty();
        let v1 = next_view(&v0, &[live(1, "a", 0)]).unwrap();
        assert_eq!((v1.epoch, v1.stable, v1.members().len()), (1, 0, 1));
        assert_eq!(
            next_view(&v1, &[live(1, "a", 0)]),
            None,
            "waits for the ack"
        );
        let v1s = next_view(&v1, &[live(1, "a", 1)]).unwrap();
        assert_eq!((v1s.epoch, v1s.stable, v1s.history.len()), (1, 1, 1));

        // b joins before anyone applied epoch 2: history keeps 1 and 2.
        let v2 = next_view(&v1s, &[live(1, "a", 1), live(2, "b", 0)]).unwrap();
        assert_eq!((v2.epoch, v2.stable), (2, 1));
        assert_eq!(
            v2.history.iter().map(|e| e.epoch).collect::<Vec<_>>(),
            [1, 2]
        );
        // c joins too: 1, 2, 3 are all kept until 3 is stable.
        let v3 = next_view(&v2, &[live(1, "a", 2), live(2, "b", 0), live(3, "c", 0)]).unwrap();
        assert_eq!(
            v3.history.iter().map(|e| e.epoch).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(
            next_view(&v3, &[live(1, "a", 3), live(2, "b", 3), live(3, "c", 2)]),
            None
        );
        let v3s = next_view(&v3, &[live(1, "a", 3), live(2, "b", 3), live(3, "c", 3)]).unwrap();
        assert_eq!((v3s.epoch, v3s.stable, v3s.history.len()), (3, 3, 1));
    }

    #[test]
    fn leaving_members_leave_the_ring_but_must_ack() {
        let v = ViewRecord {
            epoch: 4,
            stable: 4,
            history: vec![Epoch {
                epoch: 4,
                members: ring_members(&[live(1, "a", 4), live(2, "b", 4)]),
            }],
        };
        let mut b = live(2, "b", 4);
        b.leaving = true;
        let v5 = next_view(&v, &[live(1, "a", 4), b.clone()]).unwrap();
        assert_eq!(
            v5.members()
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>(),
            ["a"]
        );
        assert_eq!(
            next_view(&v5, &[live(1, "a", 5), b.clone()]),
            None,
            "b has not released"
        );
        b.applied = 5;
        assert_eq!(next_view(&v5, &[live(1, "a", 5), b]).unwrap().stable, 5);
    }

    #[test]
    fn a_duplicate_name_is_not_a_second_owner() {
        let members = ring_members(&[live(7, "a", 0), live(3, "a", 0), live(5, "b", 0)]);
        assert_eq!(
            members
                .iter()
                .map(|m| (m.id, m.name.as_str()))
                .collect::<Vec<_>>(),
            [(3, "a"), (5, "b")]
        );
    }

    #[test]
    fn records_round_trip_and_bad_ones_are_refused() {
        let v = next_view(&ViewRecord::empty(), &[live(1, "a", 0)]).unwrap();
        assert_eq!(ViewRecord::decode(&v.encode()).unwrap(), v);
        assert_eq!(ViewRecord::decode(b"").unwrap(), ViewRecord::empty());
        assert!(ViewRecord::decode(b"{").is_err());
        assert!(ViewRecord::decode(br#"{"epoch":1,"stable":2,"history":[]}"#).is_err());
    }
}

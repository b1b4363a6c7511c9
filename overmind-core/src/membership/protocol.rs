//! The membership protocol's decisions, without I/O: what the leader publishes next, and
//! which views a node adopts.
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
//!
//! # Epochs never wrap, jump or repeat
//! The store keeps the cluster's **epoch floor**, the highest epoch ever published (see
//! [`StateStore::raise_epoch_floor`](crate::store::StateStore::raise_epoch_floor)). Leases in
//! stored records carry epochs, so an epoch must never be reused.
//! - The leader raises the floor to an epoch, durably, *before* it publishes that epoch; every
//!   published epoch is therefore at most the floor. Epochs are computed with checked
//!   arithmetic and never exceed [`MAX_EPOCH`].
//! - A leader continues only from a view whose epoch *is* the floor ([`leader_step`]). One
//!   below it means ZooKeeper lost or rolled back its data (an epoch above it may already be
//!   in a stored lease); one above it, or one that does not decode, was not published by a
//!   leader. Either way the leader publishes a [`recovery_view`] at `floor + 1`, after
//!   waiting out every lease granted before (see [`Unusable`]).
//! - A node adopts a view only if its epoch is at most the floor, it does not go back, an
//!   epoch it already has is not rewritten, and its stable epoch is one the node has seen
//!   ([`check_successor`], [`check_floor`]).

use super::view::{Epoch, MAX_EPOCH, Member, MemberId, UNKNOWN_OWNERS, ViewRecord};

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

/// The epoch after `epoch`, if there is one.
fn successor(epoch: u64) -> Result<u64, EpochError> {
    epoch
        .checked_add(1)
        .filter(|next| *next <= MAX_EPOCH)
        .ok_or(EpochError::Exhausted { epoch })
}

/// Why no next epoch can be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EpochError {
    /// The epoch is the last one a view may carry.
    #[error(
        "epoch {epoch} has no successor (epochs end at {MAX_EPOCH}); the cluster cannot publish another view"
    )]
    Exhausted {
        /// The epoch without a successor.
        epoch: u64,
    },
}

/// The record the leader should publish next, or `None` if the current one stands.
pub fn next_view(
    current: &ViewRecord,
    live: &[LiveMember],
) -> Result<Option<ViewRecord>, EpochError> {
    let members = ring_members(live);
    if members != current.members() {
        let epoch = successor(current.epoch)?;
        let mut history: Vec<Epoch> = current
            .history
            .iter()
            .filter(|e| e.epoch >= current.stable)
            .cloned()
            .collect();
        history.push(Epoch { epoch, members });
        return Ok(Some(ViewRecord {
            epoch,
            stable: current.stable,
            history,
        }));
    }
    let all_applied = live.iter().all(|m| m.applied >= current.epoch);
    if current.stable < current.epoch && all_applied {
        return Ok(Some(ViewRecord {
            epoch: current.epoch,
            stable: current.epoch,
            history: current
                .history
                .iter()
                .filter(|e| e.epoch == current.epoch)
                .cloned()
                .collect(),
        }));
    }
    Ok(None)
}

/// Why the leader cannot continue from the view record it read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unusable {
    /// The record does not decode, or its epochs are out of range or inconsistent.
    #[error("the view record is unreadable ({0})")]
    Unreadable(String),
    /// The record's epoch is below the store's floor: ZooKeeper lost its data (or it was
    /// restored from an older copy), and later epochs may already be in stored leases.
    #[error(
        "the view's epoch {epoch} is below the store's epoch floor {floor}: ZooKeeper lost or rolled back its data"
    )]
    BelowFloor {
        /// The record's epoch.
        epoch: u64,
        /// The store's floor.
        floor: u64,
    },
    /// The record's epoch is above the store's floor: no leader published it, because a leader
    /// raises the floor first.
    #[error(
        "the view's epoch {epoch} is above the store's epoch floor {floor}: no leader published it (someone with the cluster's ZooKeeper credentials wrote it, or nodes use different stores)"
    )]
    AboveFloor {
        /// The record's epoch.
        epoch: u64,
        /// The store's floor.
        floor: u64,
    },
}

/// What the leader does after reading the view record and the store's epoch floor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaderStep {
    /// The current record stands.
    Stand,
    /// Raise the floor to the record's epoch, then publish it.
    Publish(ViewRecord),
    /// The current record cannot be continued from. Once every lease granted under it can
    /// have run out, publish [`recovery_view`] (raising the floor first).
    Recover(Unusable),
    /// The store has never held a floor (a store from a release before floors, or a new one)
    /// while the record is a well-formed view: raise the floor to its epoch, then decide again.
    /// Leases already stored carry epochs up to that view's, so continuing from it keeps them
    /// usable; restarting the epochs would lock every such record out.
    SeedFloor(u64),
}

/// The leader's decision, given the view record as read (or why it does not decode), the
/// store's epoch floor and the live members.
pub fn leader_step(
    read: Result<&ViewRecord, &str>,
    floor: u64,
    live: &[LiveMember],
) -> Result<LeaderStep, EpochError> {
    let current = match read {
        Ok(record) => record,
        Err(reason) => return Ok(LeaderStep::Recover(Unusable::Unreadable(reason.into()))),
    };
    if let Err(reason) = current.check() {
        return Ok(LeaderStep::Recover(Unusable::Unreadable(reason)));
    }
    let epoch = current.epoch;
    if floor == 0 && epoch > 0 {
        // A floor, once raised, is at least 1: 0 means it never was.
        return Ok(LeaderStep::SeedFloor(epoch));
    }
    if epoch < floor {
        return Ok(LeaderStep::Recover(Unusable::BelowFloor { epoch, floor }));
    }
    if epoch > floor {
        return Ok(LeaderStep::Recover(Unusable::AboveFloor { epoch, floor }));
    }
    Ok(next_view(current, live)?.map_or(LeaderStep::Stand, LeaderStep::Publish))
}

/// The view that replaces an unusable one: epoch `floor + 1`, the live ring members, and in
/// front of them a placeholder epoch (owned by [`UNKNOWN_OWNERS`]) standing for every epoch
/// whose owners are unknown. No node is settled on anything until every live member has
/// applied the recovery epoch and the leader marks it stable, so a node still serving under
/// a view from before has retired first. Its stable epoch is the lowest any live member has
/// applied, so no live node sees it as a jump past what it knows.
///
/// The caller must also have waited until every lease granted under the lost data can have
/// run out: after ZooKeeper loses its data, old sessions vanish at once instead of expiring,
/// so a paused node from before may still believe its lease valid.
pub fn recovery_view(floor: u64, live: &[LiveMember]) -> Result<ViewRecord, EpochError> {
    let epoch = successor(floor)?;
    let stable = live.iter().map(|m| m.applied).min().unwrap_or(0).min(floor);
    let unknown = Epoch {
        epoch: stable,
        members: vec![Member {
            id: MemberId::MAX,
            name: UNKNOWN_OWNERS.into(),
            addr: String::new(),
        }],
    };
    Ok(ViewRecord {
        epoch,
        stable,
        history: vec![
            unknown,
            Epoch {
                epoch,
                members: ring_members(live),
            },
        ],
    })
}

/// Why a node refuses a view record (it keeps the view it has, and logs this).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The record's epochs are out of range or inconsistent.
    #[error("the view record is unreadable ({0})")]
    Unreadable(String),
    /// The epoch is older than one this node already adopted.
    #[error(
        "view epoch {epoch} is older than epoch {previous}, which this node already adopted: ZooKeeper's data was rolled back or rewritten"
    )]
    Backwards {
        /// The record's epoch.
        epoch: u64,
        /// The epoch this node has.
        previous: u64,
    },
    /// An epoch this node already has, with other members.
    #[error(
        "view epoch {epoch} was rewritten with other members: an epoch's members never change once published"
    )]
    Rewritten {
        /// The epoch.
        epoch: u64,
    },
    /// The record calls stable an epoch this node never saw, so it cannot know who owned
    /// actors in between.
    #[error(
        "the view says epoch {stable} is stable, but this node has seen only up to epoch {previous}: it cannot know who owned actors in between"
    )]
    Unexplained {
        /// The record's stable epoch.
        stable: u64,
        /// The newest epoch this node has.
        previous: u64,
    },
    /// The epoch is above the store's floor: no leader published it.
    #[error(
        "view epoch {epoch} is above the store's epoch floor {floor}: no leader published it (a leader raises the floor first); someone with the cluster's ZooKeeper credentials wrote it, or the nodes use different stores"
    )]
    AboveFloor {
        /// The record's epoch.
        epoch: u64,
        /// The store's floor.
        floor: u64,
    },
}

/// Whether a node that adopted `previous` (in this registration) may adopt `next`.
///
/// A live member's acknowledgements never pass the newest view it adopted, and the leader
/// marks an epoch stable only once every live member acknowledged it. So a view the
/// protocol published never calls stable an epoch this node has not seen, and its history
/// (every epoch since the stable one) explains any jump in epochs.
pub fn check_successor(previous: Option<&ViewRecord>, next: &ViewRecord) -> Result<(), Refusal> {
    next.check().map_err(Refusal::Unreadable)?;
    let Some(previous) = previous else {
        return Ok(());
    };
    if next.epoch < previous.epoch {
        return Err(Refusal::Backwards {
            epoch: next.epoch,
            previous: previous.epoch,
        });
    }
    if next.epoch == previous.epoch && next.members() != previous.members() {
        return Err(Refusal::Rewritten { epoch: next.epoch });
    }
    if next.stable > previous.epoch {
        return Err(Refusal::Unexplained {
            stable: next.stable,
            previous: previous.epoch,
        });
    }
    Ok(())
}

/// Whether `next` can have been published by a leader: its epoch is at most the store's
/// epoch floor.
pub fn check_floor(next: &ViewRecord, floor: u64) -> Result<(), Refusal> {
    if next.epoch > floor {
        return Err(Refusal::AboveFloor {
            epoch: next.epoch,
            floor,
        });
    }
    Ok(())
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
        let v1 = next_view(&v0, &[live(1, "a", 0)]).unwrap().unwrap();
        assert_eq!((v1.epoch, v1.stable, v1.members().len()), (1, 0, 1));
        assert_eq!(
            next_view(&v1, &[live(1, "a", 0)]),
            Ok(None),
            "waits for the ack"
        );
        let v1s = next_view(&v1, &[live(1, "a", 1)]).unwrap().unwrap();
        assert_eq!((v1s.epoch, v1s.stable, v1s.history.len()), (1, 1, 1));

        // b joins before anyone applied epoch 2: history keeps 1 and 2.
        let v2 = next_view(&v1s, &[live(1, "a", 1), live(2, "b", 0)])
            .unwrap()
            .unwrap();
        assert_eq!((v2.epoch, v2.stable), (2, 1));
        assert_eq!(
            v2.history.iter().map(|e| e.epoch).collect::<Vec<_>>(),
            [1, 2]
        );
        // c joins too: 1, 2, 3 are all kept until 3 is stable.
        let v3 = next_view(&v2, &[live(1, "a", 2), live(2, "b", 0), live(3, "c", 0)])
            .unwrap()
            .unwrap();
        assert_eq!(
            v3.history.iter().map(|e| e.epoch).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(
            next_view(&v3, &[live(1, "a", 3), live(2, "b", 3), live(3, "c", 2)]),
            Ok(None)
        );
        let v3s = next_view(&v3, &[live(1, "a", 3), live(2, "b", 3), live(3, "c", 3)])
            .unwrap()
            .unwrap();
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
        let v5 = next_view(&v, &[live(1, "a", 4), b.clone()])
            .unwrap()
            .unwrap();
        assert_eq!(
            v5.members()
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>(),
            ["a"]
        );
        assert_eq!(
            next_view(&v5, &[live(1, "a", 5), b.clone()]),
            Ok(None),
            "b has not released"
        );
        b.applied = 5;
        assert_eq!(
            next_view(&v5, &[live(1, "a", 5), b])
                .unwrap()
                .unwrap()
                .stable,
            5
        );
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

    fn stable_view(epoch: u64, live_members: &[LiveMember]) -> ViewRecord {
        ViewRecord {
            epoch,
            stable: epoch,
            history: vec![Epoch {
                epoch,
                members: ring_members(live_members),
            }],
        }
    }

    #[test]
    fn epochs_never_wrap() {
        let last = stable_view(MAX_EPOCH, &[live(1, "a", MAX_EPOCH)]);
        assert_eq!(
            next_view(&last, &[live(1, "a", MAX_EPOCH), live(2, "b", 0)]),
            Err(EpochError::Exhausted { epoch: MAX_EPOCH })
        );
        // Marking it stable needs no new epoch.
        assert_eq!(next_view(&last, &[live(1, "a", MAX_EPOCH)]), Ok(None));
        assert_eq!(
            recovery_view(MAX_EPOCH, &[live(1, "a", 0)]),
            Err(EpochError::Exhausted { epoch: MAX_EPOCH })
        );
        // A record beyond the range never decodes, so nothing is ever computed from it.
        let huge = br#"{"epoch":18446744073709551615,"stable":0,"history":[{"epoch":18446744073709551615,"members":[]}]}"#;
        let err = ViewRecord::decode(huge).unwrap_err();
        assert!(err.contains("out of range"), "{err}");
        let huge_stable = br#"{"epoch":3,"stable":18446744073709551615,"history":[]}"#;
        assert!(ViewRecord::decode(huge_stable).is_err());
        assert!(matches!(
            leader_step(Err("garbage"), 3, &[]),
            Ok(LeaderStep::Recover(Unusable::Unreadable(_)))
        ));
    }

    #[test]
    fn the_leader_continues_only_from_the_floor() {
        let members = [live(1, "a", 4), live(2, "b", 4)];
        let v4 = stable_view(4, &members);
        let joined = [live(1, "a", 4), live(2, "b", 4), live(3, "c", 0)];
        // At the floor: the next epoch, whose floor the driver raises before publishing.
        match leader_step(Ok(&v4), 4, &joined) {
            Ok(LeaderStep::Publish(next)) => assert_eq!((next.epoch, next.stable), (5, 4)),
            other => panic!("{other:?}"),
        }
        assert_eq!(leader_step(Ok(&v4), 4, &members), Ok(LeaderStep::Stand));
        // Below the floor: ZooKeeper lost epochs a stored lease may carry.
        assert_eq!(
            leader_step(Ok(&ViewRecord::empty()), 9, &joined),
            Ok(LeaderStep::Recover(Unusable::BelowFloor {
                epoch: 0,
                floor: 9
            }))
        );
        assert_eq!(
            leader_step(Ok(&v4), 5, &joined),
            Ok(LeaderStep::Recover(Unusable::BelowFloor {
                epoch: 4,
                floor: 5
            })),
            "even one below: epoch 5 may have been published and then lost"
        );
        // Above the floor: no leader published it.
        assert_eq!(
            leader_step(Ok(&v4), 3, &joined),
            Ok(LeaderStep::Recover(Unusable::AboveFloor {
                epoch: 4,
                floor: 3
            }))
        );
        // A new cluster: empty view, no floor.
        match leader_step(Ok(&ViewRecord::empty()), 0, &[live(0, "a", 0)]) {
            Ok(LeaderStep::Publish(next)) => assert_eq!(next.epoch, 1),
            other => panic!("{other:?}"),
        }
        // A cluster from a release before floors: its view is continued from, not replaced
        // (records hold leases up to its epoch), once the floor is seeded from it.
        assert_eq!(
            leader_step(Ok(&v4), 0, &joined),
            Ok(LeaderStep::SeedFloor(4))
        );
        assert!(matches!(
            leader_step(Ok(&v4), 4, &joined),
            Ok(LeaderStep::Publish(_) | LeaderStep::Stand)
        ));
    }

    #[test]
    fn a_recovery_view_settles_nothing_until_every_member_applied_it() {
        use crate::membership::View;
        // b still serves under epoch 6 (applied 6); c is new (applied 0); the floor is 9.
        let members = [live(1, "b", 6), live(2, "c", 0)];
        let recovery = recovery_view(9, &members).unwrap();
        assert_eq!((recovery.epoch, recovery.stable), (10, 0));
        assert!(recovery.check().is_ok(), "{recovery:?}");
        let view = View::new(recovery.clone(), 16);
        for i in 0..200 {
            let key = format!("k{i}");
            let owner = view.owner(&key).expect("an owner").to_owned();
            assert!(["b", "c"].contains(&owner.as_str()));
            assert!(
                !view.settled_owner(&key, &owner),
                "{key} is settled on {owner} before the recovery epoch is stable"
            );
        }
        // No live node sees the recovery view as a jump, whatever it had adopted.
        let before = stable_view(6, &[live(1, "b", 6)]);
        assert_eq!(check_successor(Some(&before), &recovery), Ok(()));
        assert_eq!(check_floor(&recovery, 10), Ok(()));
        // Once both applied it, the leader marks it stable, and the placeholder goes.
        let applied = [live(1, "b", 10), live(2, "c", 10)];
        assert_eq!(
            leader_step(Ok(&recovery), 10, &members),
            Ok(LeaderStep::Stand)
        );
        let stable = match leader_step(Ok(&recovery), 10, &applied) {
            Ok(LeaderStep::Publish(next)) => next,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            (stable.epoch, stable.stable, stable.history.len()),
            (10, 10, 1)
        );
        let view = View::new(stable, 16);
        assert!((0..200).all(|i| {
            let key = format!("k{i}");
            let owner = view.owner(&key).expect("an owner").to_owned();
            view.settled_owner(&key, &owner)
        }));
        // A member joining meanwhile keeps the placeholder until a stable epoch passes it.
        let joined = [live(1, "b", 10), live(2, "c", 10), live(3, "d", 0)];
        let next = next_view(&recovery, &joined).unwrap().unwrap();
        assert_eq!(next.history.first().map(|e| e.epoch), Some(0));
        assert_eq!(next.history[0].members[0].name, UNKNOWN_OWNERS);
    }

    #[test]
    fn nodes_refuse_views_that_go_back_rewrite_or_jump() {
        let a = [live(1, "a", 5)];
        let ab = [live(1, "a", 5), live(2, "b", 0)];
        let v5 = stable_view(5, &a);
        let v6 = next_view(&v5, &ab).unwrap().unwrap();
        assert_eq!(
            check_successor(None, &v6),
            Ok(()),
            "a new registration takes any view"
        );
        assert_eq!(check_successor(Some(&v5), &v6), Ok(()));
        assert_eq!(
            check_successor(Some(&v6), &v6),
            Ok(()),
            "the same view again"
        );
        assert_eq!(
            check_successor(Some(&v6), &v5),
            Err(Refusal::Backwards {
                epoch: 5,
                previous: 6
            })
        );
        let mut rewritten = v6.clone();
        rewritten.history.last_mut().expect("epoch 6").members.pop();
        assert_eq!(
            check_successor(Some(&v6), &rewritten),
            Err(Refusal::Rewritten { epoch: 6 })
        );
        // A jump the history explains: a node at 5 learns 6 and 7 at once.
        let abc = [live(1, "a", 5), live(2, "b", 0), live(3, "c", 0)];
        let v7 = next_view(&v6, &abc).unwrap().unwrap();
        assert_eq!((v7.stable, v7.history.len()), (5, 3));
        assert_eq!(check_successor(Some(&v5), &v7), Ok(()));
        // One it does not: epoch 1000, stable 1000, from a node at 6.
        let jump = stable_view(1000, &abc);
        assert_eq!(
            check_successor(Some(&v6), &jump),
            Err(Refusal::Unexplained {
                stable: 1000,
                previous: 6
            })
        );
        assert_eq!(
            check_floor(&jump, 7),
            Err(Refusal::AboveFloor {
                epoch: 1000,
                floor: 7
            })
        );
        let mut wrapped = v7.clone();
        wrapped.epoch = u64::MAX;
        assert!(matches!(
            check_successor(Some(&v6), &wrapped),
            Err(Refusal::Unreadable(_))
        ));
    }

    /// Every view a leader publishes is adopted by every live node, wherever it lags: the
    /// refusals never stop the protocol itself.
    #[test]
    fn published_views_are_always_adoptable() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next_rand = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        for _ in 0..200 {
            let mut floor = 0;
            let mut current = ViewRecord::empty();
            // Each live member, and the view it adopted last (none yet when it is new).
            let mut members: Vec<(LiveMember, Option<ViewRecord>)> = Vec::new();
            let mut next_id = 0;
            for _ in 0..40 {
                match next_rand(4) {
                    0 => {
                        next_id += 1;
                        members.push((live(next_id, &format!("n{next_id}"), 0), None));
                    }
                    1 if !members.is_empty() => {
                        let i = next_rand(members.len() as u64) as usize;
                        members.remove(i);
                    }
                    _ => {
                        // Some members adopt and apply the current view.
                        for (m, adopted) in &mut members {
                            if next_rand(2) == 0 {
                                m.applied = current.epoch;
                                *adopted = Some(current.clone());
                            }
                        }
                    }
                }
                let live: Vec<LiveMember> = members.iter().map(|(m, _)| m.clone()).collect();
                if let Ok(LeaderStep::Publish(next)) = leader_step(Ok(&current), floor, &live) {
                    floor = floor.max(next.epoch);
                    current = next;
                }
                for (_, adopted) in &members {
                    assert_eq!(
                        check_successor(adopted.as_ref(), &current),
                        Ok(()),
                        "{adopted:?} -> {current:?}"
                    );
                }
                assert_eq!(check_floor(&current, floor), Ok(()));
            }
        }
    }

    #[test]
    fn records_round_trip_and_bad_ones_are_refused() {
        let v = next_view(&ViewRecord::empty(), &[live(1, "a", 0)])
            .unwrap()
            .unwrap();
        assert_eq!(ViewRecord::decode(&v.encode()).unwrap(), v);
        assert_eq!(ViewRecord::decode(b"").unwrap(), ViewRecord::empty());
        assert!(ViewRecord::decode(b"{").is_err());
        assert!(ViewRecord::decode(br#"{"epoch":1,"stable":2,"history":[]}"#).is_err());
    }
}

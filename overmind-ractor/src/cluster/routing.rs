//! The routing rule for an envelope that arrived: deliver here, pass it on, or give up. Pure,
//! so that it can be checked against every way views can lag (the test below).

/// Most routers an envelope may pass through before it is refused. Each forward carries a
/// newer view than the last (see [`route`]), so this bounds how many view changes a message
/// chases; it is a guard against loops, not a limit a planned move comes near.
const MAX_HOPS: u8 = 8;

/// Whether an envelope stamped `epoch` must wait for this node's view (`here`) to catch up
/// before it is routed: the sender saw a newer view.
pub(crate) fn must_catch_up(epoch: u64, here: u64) -> bool {
    epoch > here
}

/// What a router does with an envelope that arrived, by its own view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route<M> {
    /// This node owns the actor by its view.
    Here,
    /// Pass it on to `to`, stamped with `epoch` and `hops`.
    Forward { to: M, epoch: u64, hops: u8 },
    /// It was passed on too often: ownership moves faster than the message can chase it.
    GiveUp,
}

/// The routing rule, without I/O, once the node caught up ([`must_catch_up`]) or waited as
/// long as it will. An envelope stamped `epoch` after `hops` forwards is at a node whose view
/// is `here`; `owner_elsewhere` is the owner by that view when it is another node.
///
/// A forward is stamped with the newer of the two epochs. The sender chose the owner by the
/// epoch it stamped, so a receiver at exactly that epoch owns the actor; one that is behind
/// catches up first; so every forward carries a strictly newer view than the one before, and
/// a message passes at most one router more than the view changes it chases. Stamping the
/// sender's epoch instead lets a lagging node send the message back where it came from, and
/// the two bounce it until one catches up.
pub(crate) fn route<M>(epoch: u64, hops: u8, here: u64, owner_elsewhere: Option<M>) -> Route<M> {
    match owner_elsewhere {
        None => Route::Here,
        Some(_) if hops >= MAX_HOPS => Route::GiveUp,
        Some(to) => Route::Forward {
            to,
            epoch: epoch.max(here),
            hops: hops + 1,
        },
    }
}

#[cfg(test)]
mod tests {
    use overmind_core::ring::Ring;
    use proptest::prelude::*;

    use super::*;

    const NODES: [&str; 4] = ["n0", "n1", "n2", "n3"];

    /// Messages chase an actor through nodes whose views lag behind by different amounts.
    /// `views[e - 1]` is the member set (a bit mask) of epoch `e`; `lag` says, before each
    /// step, which node catches up by how many epochs.
    fn chase(
        views: &[u8],
        start: &[usize],
        sender: usize,
        key: &str,
        lag: &[(usize, usize)],
    ) -> Result<(u8, u64), TestCaseError> {
        let rings: Vec<Ring> = views
            .iter()
            .map(|mask| {
                let members = (0..NODES.len()).filter(|i| mask & (1 << i) != 0);
                Ring::new(members.map(|i| NODES[i]), 16)
            })
            .collect();
        let latest = rings.len() as u64;
        let owner = |epoch: u64| rings[epoch as usize - 1].owner(key).map(str::to_owned);
        let mut epoch_of: Vec<u64> = start.iter().map(|&e| (e as u64 % latest) + 1).collect();
        let sent_at = epoch_of[sender];
        let Some(first) = owner(sent_at) else {
            return Err(TestCaseError::fail("every view has members"));
        };
        let (mut at, mut epoch, mut hops) = (first, sent_at, 0u8);
        for step in 0.. {
            let (node, by) = lag[step % lag.len()];
            epoch_of[node] = (epoch_of[node] + by as u64).min(latest);
            let i = NODES.iter().position(|n| *n == at).unwrap_or_default();
            if must_catch_up(epoch, epoch_of[i]) {
                // Catching up is waiting for views the node will see: it reaches `epoch`.
                epoch_of[i] = epoch;
            }
            let here = epoch_of[i];
            let elsewhere = owner(here).filter(|o| *o != at);
            match route(epoch, hops, here, elsewhere) {
                Route::Here => {
                    prop_assert_eq!(owner(here), Some(at.clone()), "delivered to a non-owner");
                    return Ok((hops, sent_at));
                }
                Route::Forward {
                    to,
                    epoch: e,
                    hops: h,
                } => {
                    prop_assert!(e > epoch, "a forward must carry a newer view");
                    (at, epoch, hops) = (to, e, h);
                }
                Route::GiveUp => return Ok((hops, sent_at)),
            }
        }
        unreachable!()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// A message passes at most one router per view change it chases, however far behind
        /// the nodes it meets are, so it never gives up while views change less often than
        /// the hop limit. (Stamping forwards with the sender's epoch instead lets two nodes
        /// bounce a message until one catches up, and fails this.)
        #[test]
        fn a_message_crosses_at_most_one_router_per_view_change(
            views in prop::collection::vec(1u8..16, 1..8),
            start in prop::collection::vec(0usize..8, 4),
            sender in 0usize..4,
            key in "[a-z]{1,8}",
            lag in prop::collection::vec((0usize..4, prop_oneof![3 => Just(0usize), 1 => 1usize..3]), 1..16),
        ) {
            let (hops, sent_at) = chase(&views, &start, sender, &key, &lag)?;
            let changes = views.len() as u64 - sent_at;
            prop_assert!(u64::from(hops) <= changes, "{hops} hops for {changes} view changes");
        }
    }
}

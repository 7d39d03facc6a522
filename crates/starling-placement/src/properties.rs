//! Property tests for the movement and balance bounds the crate docs state.
//!
//! The bounds are statistical: with an ideal hash, the number of shards a
//! join moves is Binomial(S, 1/(N+1)) and a node's share is
//! Binomial(S, 1/N). The per-cluster tolerance is five standard deviations
//! of that binomial (see [`five_sigma_range`]); the exact binomial tail
//! beyond it is at most 3.5e-6 for every N in 1..=16 at S = 256. The seed is
//! fixed so a run is reproducible and CI cannot flake; a different seed is
//! still expected to pass.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngSeed};

use crate::testing::SplitMix;
use crate::{
    DEFAULT_SHARD_COUNT, NodeId, ShardId, ShardMap, assign, hrw_owner, plan_drain, plan_move,
    plan_rebalance, shard_of,
};

const S: u32 = DEFAULT_SHARD_COUNT;

fn config() -> Config {
    Config {
        cases: 256,
        rng_seed: RngSeed::Fixed(0x5354_4152_4C49_4E47),
        failure_persistence: None,
        ..Config::default()
    }
}

/// `floor(mean - 5 sd)..=ceil(mean + 5 sd)` of Binomial(`shards`, `p`),
/// clamped at zero.
fn five_sigma_range(shards: u32, p: f64) -> RangeInclusive<usize> {
    let n = f64::from(shards);
    let (mean, sd) = (n * p, (n * p * (1.0 - p)).sqrt());
    let low = (mean - 5.0 * sd).floor().max(0.0) as usize;
    let high = (mean + 5.0 * sd).ceil() as usize;
    low..=high
}

/// The most shards a join to a cluster of `n` may move: `S/(N+1)` plus five
/// standard deviations of the binomial spread.
fn join_bound(n: usize) -> usize {
    *five_sigma_range(S, 1.0 / (n as f64 + 1.0)).end()
}

fn ids(set: &BTreeSet<u64>) -> Vec<NodeId> {
    set.iter().copied().map(NodeId).collect()
}

/// A cluster of `n` distinct node ids for `n` in `sizes`.
fn cluster(sizes: RangeInclusive<usize>) -> impl Strategy<Value = Vec<NodeId>> {
    sizes
        .prop_flat_map(|n| prop::collection::btree_set(any::<u64>(), n))
        .prop_map(|set| ids(&set))
}

/// Moves when `joiner` joins `members`, starting from the HRW map of
/// `members`.
fn join_moves(members: &[NodeId], joiner: NodeId) -> Vec<crate::Move> {
    let map = assign(S, members, 1).unwrap();
    let mut all = members.to_vec();
    all.push(joiner);
    plan_rebalance(&map, &all, &BTreeMap::new()).unwrap().moves
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn adding_a_node_moves_about_one_in_n_plus_one_shards_all_to_it(
        all in cluster(2..=17),
        pick in any::<Index>(),
    ) {
        let mut members = all.clone();
        let joiner = members.remove(pick.index(members.len()));
        let map = assign(S, &members, 1).unwrap();
        let plan = plan_rebalance(&map, &all, &BTreeMap::new()).unwrap();

        prop_assert!(plan.moves.iter().all(|m| m.to == joiner), "a move went elsewhere: {plan:?}");
        prop_assert!(
            plan.moves.len() <= join_bound(members.len()),
            "{} of {S} shards moved joining a cluster of {}; bound {}",
            plan.moves.len(), members.len(), join_bound(members.len())
        );
        let after = map.with_moves(&plan).unwrap();
        let target = assign(S, &all, 1).unwrap();
        prop_assert_eq!(after.owners(), target.owners());
    }

    #[test]
    fn removing_a_node_moves_only_its_shards(
        all in cluster(2..=17),
        pick in any::<Index>(),
    ) {
        let map = assign(S, &all, 1).unwrap();
        let mut rest = all.clone();
        let leaver = rest.remove(pick.index(rest.len()));

        let plan = plan_rebalance(&map, &rest, &BTreeMap::new()).unwrap();
        let moved: Vec<ShardId> = plan.moves.iter().map(|m| m.shard).collect();
        prop_assert_eq!(moved, map.shards_of(leaver).collect::<Vec<_>>());
        prop_assert!(plan.moves.iter().all(|m| m.from == leaver && m.to != leaver));

        // Draining first picks the same targets, so drain-then-remove moves
        // each shard once.
        prop_assert_eq!(&plan_drain(&map, leaver, &all).unwrap(), &plan);
    }

    #[test]
    fn split_keeps_every_room_on_its_owner(
        owners in (0u32..=8).prop_flat_map(|exp| {
            prop::collection::vec(1u64..=5, 1usize << exp)
        }),
        rooms in prop::collection::vec(any::<String>(), 1..32),
    ) {
        let map = ShardMap::new(1, owners.into_iter().map(NodeId).collect()).unwrap();
        let split = map.split().unwrap();
        let count = map.shard_count();
        prop_assert_eq!(split.shard_count(), count * 2);
        prop_assert_eq!(split.version(), map.version() + 1);
        for room in &rooms {
            let before = shard_of(room, count);
            let after = shard_of(room, count * 2);
            prop_assert!(after == before || after.0 == before.0 + count, "{room:?}: {before} -> {after}");
            prop_assert_eq!(split.owner_of_room(room), map.owner_of_room(room));
        }
    }

    #[test]
    fn rebalance_reaches_the_hrw_assignment_and_honours_pins(
        owners in prop::collection::vec(1u64..=8, 64),
        member_set in prop::collection::btree_set(1u64..=8, 1..=8),
        pins in prop::collection::btree_map(0u32..64, 1u64..=8, 0..8),
    ) {
        let map = ShardMap::new(4, owners.into_iter().map(NodeId).collect()).unwrap();
        let members = ids(&member_set);
        let pins: BTreeMap<ShardId, NodeId> =
            pins.into_iter().map(|(s, n)| (ShardId(s), NodeId(n))).collect();

        let plan = plan_rebalance(&map, &members, &pins).unwrap();
        prop_assert!(plan.moves.iter().all(|m| m.from != m.to));
        let after = map.with_moves(&plan).unwrap();
        prop_assert_eq!(after.version(), map.version() + u64::from(!plan.is_empty()));
        prop_assert_eq!(after.validate(&members), Ok(()));
        for (shard, owner) in after.shards() {
            let expected = match pins.get(&shard) {
                Some(pin) if members.contains(pin) => Some(*pin),
                _ => hrw_owner(shard, &members),
            };
            prop_assert_eq!(Some(owner), expected, "shard {}", shard);
        }
        // Once there, there is nothing left to do.
        prop_assert!(plan_rebalance(&after, &members, &pins).unwrap().is_empty());
    }

    #[test]
    fn a_manual_move_lands_the_shard_on_its_target(
        members in cluster(1..=8),
        shard in 0u32..S,
        pick in any::<Index>(),
    ) {
        let map = assign(S, &members, 1).unwrap();
        let to = members[pick.index(members.len())];
        let plan = plan_move(&map, ShardId(shard), to, &members).unwrap();
        prop_assert!(plan.moves.len() <= 1);
        let after = map.with_moves(&plan).unwrap();
        prop_assert_eq!(after.owner(ShardId(shard)), Some(to));
        let others_kept = after
            .shards()
            .all(|(s, owner)| s == ShardId(shard) || map.owner(s) == Some(owner));
        prop_assert!(others_kept);
    }

    #[test]
    fn hrw_gives_every_node_about_its_share(members in cluster(1..=16)) {
        let counts = assign(S, &members, 1).unwrap().counts_per_node();
        let allowed = five_sigma_range(S, 1.0 / members.len() as f64);
        for node in &members {
            let count = counts.get(node).copied().unwrap_or(0) as usize;
            prop_assert!(
                allowed.contains(&count),
                "node {node} owns {count} of {S} shards among {} nodes; allowed {allowed:?}",
                members.len()
            );
        }
    }
}

/// The per-cluster bound above is loose because 256 shards give a wide
/// binomial spread; on average, though, a join must move 1/(N+1) of the
/// shards and no more. Over 64 fixed random clusters per size the mean is
/// held to within four standard errors.
#[test]
fn adding_a_node_moves_one_in_n_plus_one_shards_on_average() {
    const CLUSTERS: usize = 64;
    let mut rng = SplitMix(0x4A4F_494E);
    for n in 1..=16usize {
        let p = 1.0 / (n as f64 + 1.0);
        let mean = f64::from(S) * p;
        let std_err = (f64::from(S) * p * (1.0 - p) / CLUSTERS as f64).sqrt();
        let mut total = 0usize;
        for _ in 0..CLUSTERS {
            let mut all = rng.cluster(n + 1);
            let joiner = all.pop().unwrap();
            total += join_moves(&all, joiner).len();
        }
        let seen = total as f64 / CLUSTERS as f64;
        assert!(
            (seen - mean).abs() <= 4.0 * std_err,
            "N={n}: mean {seen:.2} shards moved, expected {mean:.2} ± {:.2}",
            4.0 * std_err
        );
    }
}

/// The common case of nodes numbered 1..=N, checked exactly.
#[test]
fn adding_node_n_plus_one_to_nodes_one_to_n_stays_within_the_bound() {
    for n in 1..=16u64 {
        let members: Vec<NodeId> = (1..=n).map(NodeId).collect();
        let moves = join_moves(&members, NodeId(n + 1));
        assert!(moves.iter().all(|m| m.to == NodeId(n + 1)));
        assert!(
            moves.len() <= join_bound(n as usize),
            "N={n}: {} moved",
            moves.len()
        );
    }
}

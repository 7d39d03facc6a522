//! Shard movement and balance of rendezvous placement, measured over many
//! random clusters: the figures quoted in starling-placement's crate docs.
//! A measurement, not a timing: it prints a table and asserts nothing
//! (the bounds themselves are property tests in
//! crates/starling-placement/src/properties.rs).
//!
//! `cargo bench -p starling-bench --bench placement_movement`

use std::collections::BTreeMap;

use starling_placement::testing::SplitMix;
use starling_placement::{DEFAULT_SHARD_COUNT, Move, NodeId, assign, plan_rebalance};

const S: u32 = DEFAULT_SHARD_COUNT;

/// Random clusters per size for the movement table.
const CLUSTERS: usize = 20_000;

/// Random clusters per size for the balance table.
const BALANCE_CLUSTERS: usize = 2_000;

/// `ceil(mean + 5 sd)` of Binomial(`S`, `p`): the property tests' bound.
fn five_sigma_high(p: f64) -> usize {
    let n = f64::from(S);
    (n * p + 5.0 * (n * p * (1.0 - p)).sqrt()).ceil() as usize
}

/// Moves when `joiner` joins `members`, from the HRW map of `members`.
fn join_moves(members: &[NodeId], joiner: NodeId) -> Vec<Move> {
    let map = assign(S, members, 1).expect("non-empty cluster");
    let mut all = members.to_vec();
    all.push(joiner);
    plan_rebalance(&map, &all, &BTreeMap::new())
        .expect("members are valid")
        .moves
}

fn main() {
    // The same seeds as the measurement these figures were first taken with.
    let mut rng = SplitMix(0x004D_4541_5355_5245);
    println!("join over {CLUSTERS} random clusters per N (S = {S})");
    println!(" N  expected-moved  mean-seen  max-seen  max-in-sd  test-bound");
    for n in 1..=16usize {
        let p = 1.0 / (n as f64 + 1.0);
        let mean = f64::from(S) * p;
        let sd = (f64::from(S) * p * (1.0 - p)).sqrt();
        let (mut total, mut max) = (0usize, 0usize);
        for _ in 0..CLUSTERS {
            let mut all = rng.cluster(n + 1);
            let joiner = all.pop().expect("n + 1 >= 2 nodes");
            let moved = join_moves(&all, joiner).len();
            total += moved;
            max = max.max(moved);
        }
        println!(
            "{n:2}  {mean:14.1}  {:9.2}  {max:8}  {:9.2}  {:10}",
            total as f64 / CLUSTERS as f64,
            (max as f64 - mean) / sd,
            five_sigma_high(p)
        );
    }
    println!();
    println!("balance over {BALANCE_CLUSTERS} random clusters per N: shards per node");
    println!(" N   share  min-seen  max-seen");
    for n in 1..=16usize {
        let (mut min, mut max) = (u32::MAX, 0u32);
        for _ in 0..BALANCE_CLUSTERS {
            let members = rng.cluster(n);
            let counts = assign(S, &members, 1)
                .expect("non-empty cluster")
                .counts_per_node();
            for node in &members {
                let count = counts.get(node).copied().unwrap_or(0);
                min = min.min(count);
                max = max.max(count);
            }
        }
        println!("{n:2}  {:6.1}  {min:8}  {max:8}", f64::from(S) / n as f64);
    }
}

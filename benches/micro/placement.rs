//! Placement lookups: room → shard ([`shard_of`]), room → owner through a
//! [`ShardMap`], shard → node by rendezvous hashing ([`hrw_owner`]), and a
//! whole map ([`assign`]), for small and larger clusters.
//!
//! `cargo bench -p starling-bench --bench placement`

use divan::{Bencher, black_box};
use starling_placement::{DEFAULT_SHARD_COUNT, NodeId, ShardId, assign, hrw_owner, shard_of};

/// Cluster sizes.
const NODES: [u64; 3] = [3, 16, 64];

/// Room names looked up per iteration, so the hash sees varied input.
const ROOMS: usize = 1024;

fn main() {
    divan::main();
}

fn rooms() -> Vec<String> {
    (0..ROOMS).map(|i| format!("chat:room-{i}")).collect()
}

fn members(n: u64) -> Vec<NodeId> {
    (1..=n).map(|i| NodeId(i * 0x9E37_79B9)).collect()
}

/// xxHash64 of the name, masked to the shard count. Per room.
#[divan::bench]
fn shard_of_room(bencher: Bencher) {
    let rooms = rooms();
    bencher
        .counter(divan::counter::ItemsCount::new(ROOMS))
        .bench(|| {
            for room in &rooms {
                black_box(shard_of(black_box(room), DEFAULT_SHARD_COUNT));
            }
        });
}

/// Room → owner through the map: the lookup every publish makes. Per room.
#[divan::bench(args = NODES)]
fn owner_of_room(bencher: Bencher, nodes: u64) {
    let map = assign(DEFAULT_SHARD_COUNT, &members(nodes), 1).expect("valid cluster");
    let rooms = rooms();
    bencher
        .counter(divan::counter::ItemsCount::new(ROOMS))
        .bench(|| {
            for room in &rooms {
                black_box(map.owner_of_room(black_box(room)));
            }
        });
}

/// The HRW winner of one shard: one score per member.
#[divan::bench(args = NODES)]
fn hrw_owner_of_shard(bencher: Bencher, nodes: u64) {
    let members = members(nodes);
    bencher.bench(|| hrw_owner(black_box(ShardId(77)), black_box(&members)));
}

/// A whole map of 256 shards, as the leader computes it on a membership change.
#[divan::bench(args = NODES)]
fn assign_all_shards(bencher: Bencher, nodes: u64) {
    let members = members(nodes);
    bencher.bench(|| assign(DEFAULT_SHARD_COUNT, black_box(&members), 1));
}

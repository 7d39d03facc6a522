//! Placement: which node sequences which room.
//!
//! Rooms are grouped into shards, and shards are what the cluster owns and
//! moves. Two mappings, both pure functions of fixed inputs:
//!
//! 1. **Room → shard**: [`shard_of`] takes the low bits of [`stable_hash`]
//!    (xxHash64, seed 0, implemented here from its specification and fixed
//!    forever) of the room name. The shard count is a power of two (default
//!    [`DEFAULT_SHARD_COUNT`] = 256), so doubling it ([`ShardMap::split`])
//!    sends every room of shard `i` to `i` or `i + old count`; the new half
//!    starts on the old owner and a split moves no room.
//! 2. **Shard → node**: a [`ShardMap`] (version, shard count, one owner per
//!    shard) that lives in the Raft state machine. The leader computes it
//!    with rendezvous hashing: each shard goes to the member with the
//!    highest [`hrw_score`] ([`hrw_owner`], [`assign`]).
//!
//! This crate has no I/O, no clock and no randomness. It answers "where
//! should things be" with data — a [`Plan`] of [`Move`]s from
//! [`plan_rebalance`], [`plan_drain`] or [`plan_move`] — and
//! [`ShardMap::with_moves`] applies a committed plan. Shipping room state
//! between owners is the cluster's job.
//!
//! # Why rendezvous hashing
//! A shard's owner depends only on the shard and the member set, never on
//! the previous map, so every node (and a restarted leader) computes the
//! same answer, and a membership change touches only the shards whose
//! winner changed:
//! - **Adding a node** to N moves exactly the shards the newcomer now wins:
//!   each does so with probability 1/(N+1), and every move goes *to* the new
//!   node — no reshuffling among the old ones.
//! - **Removing a node** moves only that node's shards, each to the member
//!   with the next-highest score ([`plan_drain`] picks the same targets, so
//!   drain-then-remove moves each shard once).
//!
//! A modulo assignment would reshuffle nearly everything on each change; a
//! hash ring needs virtual nodes to get the same balance. HRW's cost,
//! N hashes per shard, is nothing at 256 shards.
//!
//! # The bounds, and what the tests prove
//! With S shards the number a join moves is Binomial(S, 1/(N+1)) and each
//! node's share is Binomial(S, 1/N) — expected values exact, spread not
//! small at S = 256. The property tests (`src/properties.rs`) check, for
//! clusters of random node ids:
//! - a join to N = 1..=16 moves only shards *to* the new node, at most
//!   `ceil(S/(N+1) + 5σ)` of them, σ = √(S·p·(1−p)), p = 1/(N+1) (the exact
//!   binomial tail past that is below 3.5·10⁻⁶ for every N), and leaves the
//!   map equal to a fresh HRW assignment; over 64 clusters per N the mean
//!   moved is S/(N+1) within four standard errors;
//! - a leave moves exactly the leaver's shards, and the drain plan is the
//!   same plan;
//! - a split keeps every room on its owner and sends shard `i`'s rooms to
//!   `i` or `i + count`;
//! - a rebalance plan, applied, yields the HRW owner for every shard except
//!   pinned ones, which sit on their pin when it is a member; a second plan
//!   is empty;
//! - every node's share lies within `S/N ± 5σ` (p = 1/N).
//!
//! Measured over 20,000 random clusters per N (S = 256; `cargo bench -p
//! starling-bench --bench placement_movement` prints it):
//!
//! | N  | expected moved S/(N+1) | mean seen | worst seen | test bound |
//! |----|------------------------|-----------|------------|------------|
//! | 1  | 128.0                  | 128.0     | 158        | 168        |
//! | 3  | 64.0                   | 64.0      | 89         | 99         |
//! | 5  | 42.7                   | 42.8      | 71         | 73         |
//! | 10 | 23.3                   | 23.2      | 45         | 47         |
//! | 16 | 15.1                   | 15.1      | 32         | 34         |
//!
//! Balance over 2,000 random clusters per N: with 3 nodes a node owned
//! 58..=112 shards (share 85.3), with 10 nodes 9..=45 (share 25.6). Plain
//! HRW at 256 shards is therefore only roughly even; a larger shard count
//! narrows the spread relative to the share by √(count ratio).
//!
//! # Stability
//! [`stable_hash`] and the byte layout of [`hrw_score`] (shard as
//! little-endian `u32`, then node id as little-endian `u64`) decide where
//! every room lives. Changing either re-homes every room of every running
//! cluster; golden-value tests pin both.
//!
//! # Layout
//! - `hash` — [`stable_hash`], xxHash64 with its reference vectors.
//! - `ids` — [`NodeId`], [`ShardId`].
//! - `shard` — [`shard_of`], [`validate_shard_count`], the count limits.
//! - `map` — [`ShardMap`].
//! - `hrw` — [`hrw_score`], [`hrw_owner`], [`assign`].
//! - `plan` — [`Plan`], [`Move`], [`plan_rebalance`], [`plan_drain`],
//!   [`plan_move`].
//! - `error` — [`PlacementError`].

mod error;
mod hash;
mod hrw;
mod ids;
mod map;
mod plan;
mod shard;

#[cfg(test)]
mod properties;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use error::PlacementError;
pub use hash::stable_hash;
pub use hrw::{assign, hrw_owner, hrw_score};
pub use ids::{NodeId, ShardId};
pub use map::ShardMap;
pub use plan::{Move, Plan, plan_drain, plan_move, plan_rebalance};
pub use shard::{DEFAULT_SHARD_COUNT, MAX_SHARD_COUNT, shard_of, validate_shard_count};

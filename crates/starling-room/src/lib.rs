//! The room as a pure state machine.
//!
//! A room is a named stream of publications that one owner node sequences. This
//! crate holds everything the owner keeps per room — the offset counter and
//! epoch, the history ring with its size and TTL bounds, presence, and the
//! subscriber set — and answers history and recovery queries with Centrifugo's
//! semantics. It does no I/O and has no clock: the `RoomActor` in
//! `starling-node` owns a [`Room`], passes the current time in as Unix
//! milliseconds (`now_ms`) and does the sending itself.
//!
//! The central guarantee (design Promise 1) lives in [`Room::recover`]: a
//! subscriber coming back with a stream position gets *every* publication it
//! missed, or is told `recovered: false` — never a partial replay.
//!
//! # Layout
//! - `room` — [`Room`], the state machine the actor drives.
//! - `history` — the history ring, [`HistoryQuery`], [`HistoryPage`] and
//!   [`Recovery`].
//! - `presence` — who is in the room: [`PresenceStats`].
//! - `options` — [`RoomOptions`], the per-namespace settings a room runs with.
//! - `relay` — [`RelayCursor`], the order a relay passes an owner's frames on in, across
//!   shard hand-offs.
//! - `error` — [`RoomError`].

mod error;
mod history;
mod options;
mod presence;
mod relay;
mod room;

pub use error::RoomError;
pub use history::{HistoryPage, HistoryQuery, Recovery};
pub use options::RoomOptions;
pub use presence::PresenceStats;
pub use relay::{Frame as RelayFrame, Overflow as RelayOverflow, RelayCursor, Step as RelayStep};
pub use room::Room;

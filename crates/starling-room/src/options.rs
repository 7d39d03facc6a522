//! The settings a room runs with; they come from the room's namespace.

/// Per-room settings, taken from the room's namespace and replaceable on a
/// config reload with [`Room::set_options`](crate::Room::set_options).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RoomOptions {
    /// How many publications the history ring keeps. `0` keeps no history at
    /// all; offsets still increase.
    pub history_size: usize,
    /// How long each history entry lives after its publish time, in
    /// milliseconds. `0` (or less) means no time bound: the ring is bounded by
    /// `history_size` only.
    pub history_ttl_ms: i64,
    /// Whether the room keeps presence (who is subscribed). When `false`,
    /// [`Room::join`](crate::Room::join) stores nothing.
    pub presence: bool,
}

impl RoomOptions {
    /// The TTL as a bound, or `None` when entries never expire by time.
    pub(crate) fn ttl(&self) -> Option<i64> {
        (self.history_ttl_ms > 0).then_some(self.history_ttl_ms)
    }
}

//! Node counters. Plain atomics: cheap on hot paths, read by `/metrics` and by tests.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Counters and gauges of one node.
#[derive(Debug, Default)]
pub struct Metrics {
    connections: AtomicU64,
    connections_total: AtomicU64,
    subscriptions: AtomicU64,
    rooms: AtomicU64,
    channels: AtomicU64,
    publications_in: AtomicU64,
    publications_out: AtomicU64,
    push_encodings: AtomicU64,
    slow_consumer_disconnects: AtomicU64,
    errors: AtomicU64,
}

/// A point-in-time copy of [`Metrics`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Open client connections.
    pub connections: u64,
    /// Connections opened since start.
    pub connections_total: u64,
    /// Live subscriptions (connection × room).
    pub subscriptions: u64,
    /// Live room actors.
    pub rooms: u64,
    /// Rooms with at least one subscriber (Centrifugo's "channels").
    pub channels: u64,
    /// Publications accepted by rooms on this node.
    pub publications_in: u64,
    /// Publication, join and leave pushes queued to connections.
    pub publications_out: u64,
    /// Pushes encoded by rooms for fan-out: at most one per wire encoding in use per push,
    /// however many subscribers receive it.
    pub push_encodings: u64,
    /// Connections closed because their outbound queue overflowed.
    pub slow_consumer_disconnects: u64,
    /// Error replies and error disconnects sent.
    pub errors: u64,
}

impl Metrics {
    /// Reads every counter.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            connections: self.connections.load(Relaxed),
            connections_total: self.connections_total.load(Relaxed),
            subscriptions: self.subscriptions.load(Relaxed),
            rooms: self.rooms.load(Relaxed),
            channels: self.channels.load(Relaxed),
            publications_in: self.publications_in.load(Relaxed),
            publications_out: self.publications_out.load(Relaxed),
            push_encodings: self.push_encodings.load(Relaxed),
            slow_consumer_disconnects: self.slow_consumer_disconnects.load(Relaxed),
            errors: self.errors.load(Relaxed),
        }
    }

    pub(crate) fn connection_opened(&self) {
        self.connections.fetch_add(1, Relaxed);
        self.connections_total.fetch_add(1, Relaxed);
    }

    pub(crate) fn connection_closed(&self) {
        self.connections.fetch_sub(1, Relaxed);
    }

    pub(crate) fn subscriptions_added(&self, n: u64) {
        self.subscriptions.fetch_add(n, Relaxed);
    }

    pub(crate) fn subscriptions_removed(&self, n: u64) {
        self.subscriptions.fetch_sub(n, Relaxed);
    }

    pub(crate) fn rooms_started(&self) {
        self.rooms.fetch_add(1, Relaxed);
    }

    pub(crate) fn rooms_stopped(&self) {
        self.rooms.fetch_sub(1, Relaxed);
    }

    /// A room gained its first subscriber (`true`) or lost its last one (`false`).
    pub(crate) fn channel_active(&self, active: bool) {
        if active {
            self.channels.fetch_add(1, Relaxed);
        } else {
            self.channels.fetch_sub(1, Relaxed);
        }
    }

    pub(crate) fn publication_in(&self) {
        self.publications_in.fetch_add(1, Relaxed);
    }

    pub(crate) fn publications_out(&self, n: u64) {
        self.publications_out.fetch_add(n, Relaxed);
    }

    pub(crate) fn push_encoded(&self) {
        self.push_encodings.fetch_add(1, Relaxed);
    }

    pub(crate) fn slow_consumer_disconnect(&self) {
        self.slow_consumer_disconnects.fetch_add(1, Relaxed);
    }

    pub(crate) fn error_code(&self, _code: u32) {
        self.errors.fetch_add(1, Relaxed);
    }
}

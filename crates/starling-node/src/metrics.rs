//! Node counters. Plain atomics on hot paths, read by `/metrics` (Prometheus text format,
//! [`Metrics::render_prometheus`]) and by tests ([`Metrics::snapshot`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use starling_protocol::Method;

/// Upper bounds (seconds) of the command latency histogram buckets. Commands answered by the
/// connection alone take microseconds; those that call a room take one actor round trip.
const LATENCY_BUCKETS: [f64; 12] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
];

/// The methods that get a latency histogram, in exposition order.
const METHODS: [Method; 12] = [
    Method::Connect,
    Method::Subscribe,
    Method::Unsubscribe,
    Method::Publish,
    Method::Presence,
    Method::PresenceStats,
    Method::History,
    Method::Ping,
    Method::Refresh,
    Method::SubRefresh,
    Method::Rpc,
    Method::Send,
];

/// A fixed-bucket latency histogram with atomic counters.
#[derive(Debug, Default)]
struct Histogram {
    /// Cumulative-free counts per bucket; the last slot is `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let slot = LATENCY_BUCKETS
            .iter()
            .position(|bound| secs <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[slot].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Relaxed);
    }
}

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
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    origin_rejections: AtomicU64,
    cluster_copies: AtomicU64,
    relay_gap_fills: AtomicU64,
    forwarded_calls: AtomicU64,
    handoff_rooms_sent: AtomicU64,
    handoff_rooms_received: AtomicU64,
    handoffs_completed: AtomicU64,
    handoffs_incomplete: AtomicU64,
    handoff_last_millis: AtomicU64,
    relay_follows: AtomicU64,
    replicated: AtomicU64,
    unreplicated: AtomicU64,
    unreplicated_rooms: AtomicU64,
    replica_rooms: AtomicU64,
    /// Error replies and disconnects by code. Not a hot path: only failures take the lock.
    errors_by_code: Mutex<BTreeMap<u32, u64>>,
    command_latency: [Histogram; METHODS.len()],
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
    /// Bytes of client messages received (all transports).
    pub bytes_in: u64,
    /// Bytes handed to client transports for writing (all transports).
    pub bytes_out: u64,
    /// Handshakes refused by the `client.allowed_origins` check.
    pub origin_rejections: u64,
    /// Publication frames rooms owned here sent to other nodes: one per other node with
    /// subscribers of the room, never one per subscriber.
    pub cluster_copies: u64,
    /// Gaps in a room's offsets that a relay here filled from the owner's history.
    pub relay_gap_fills: u64,
    /// Calls (publish, history, presence, ...) this node forwarded to a room's owner.
    pub forwarded_calls: u64,
    /// Rooms this node shipped to a shard's new owner.
    pub handoff_rooms_sent: u64,
    /// Rooms this node took over from a shard's old owner.
    pub handoff_rooms_received: u64,
    /// Shards this node took over with every room.
    pub handoffs_completed: u64,
    /// Shards this node took over without the old owner's rooms (it went silent).
    pub handoffs_incomplete: u64,
    /// Milliseconds the last shard taken over here waited for its rooms.
    pub handoff_last_millis: u64,
    /// Relays here that followed their room to a new owner without their subscribers
    /// resubscribing.
    pub relay_follows: u64,
    /// Publications (or whole room states) the shard's replica confirmed before the ack.
    pub replicated: u64,
    /// Publishes refused (and taken back) because the shard's replica did not confirm them:
    /// it did not answer in time, or was down.
    pub unreplicated: u64,
    /// Rooms owned here whose replica does not hold their state yet.
    pub unreplicated_rooms: u64,
    /// Copies held here as the replica of other nodes' rooms.
    pub replica_rooms: u64,
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
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            origin_rejections: self.origin_rejections.load(Relaxed),
            cluster_copies: self.cluster_copies.load(Relaxed),
            relay_gap_fills: self.relay_gap_fills.load(Relaxed),
            forwarded_calls: self.forwarded_calls.load(Relaxed),
            handoff_rooms_sent: self.handoff_rooms_sent.load(Relaxed),
            handoff_rooms_received: self.handoff_rooms_received.load(Relaxed),
            handoffs_completed: self.handoffs_completed.load(Relaxed),
            handoffs_incomplete: self.handoffs_incomplete.load(Relaxed),
            handoff_last_millis: self.handoff_last_millis.load(Relaxed),
            relay_follows: self.relay_follows.load(Relaxed),
            replicated: self.replicated.load(Relaxed),
            unreplicated: self.unreplicated.load(Relaxed),
            unreplicated_rooms: self.unreplicated_rooms.load(Relaxed),
            replica_rooms: self.replica_rooms.load(Relaxed),
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

    pub(crate) fn cluster_copies(&self, n: u64) {
        self.cluster_copies.fetch_add(n, Relaxed);
    }

    pub(crate) fn relay_gap_filled(&self) {
        self.relay_gap_fills.fetch_add(1, Relaxed);
    }

    pub(crate) fn handoff_room_sent(&self) {
        self.handoff_rooms_sent.fetch_add(1, Relaxed);
    }

    pub(crate) fn handoff_room_received(&self) {
        self.handoff_rooms_received.fetch_add(1, Relaxed);
    }

    pub(crate) fn handoff_finished(&self, complete: bool, millis: u64) {
        if complete {
            self.handoffs_completed.fetch_add(1, Relaxed);
        } else {
            self.handoffs_incomplete.fetch_add(1, Relaxed);
        }
        self.handoff_last_millis.store(millis, Relaxed);
    }

    pub(crate) fn replicated(&self) {
        self.replicated.fetch_add(1, Relaxed);
    }

    pub(crate) fn set_replica_rooms(&self, rooms: u64) {
        self.replica_rooms.store(rooms, Relaxed);
    }

    pub(crate) fn set_unreplicated_rooms(&self, rooms: u64) {
        self.unreplicated_rooms.store(rooms, Relaxed);
    }

    pub(crate) fn unreplicated(&self) {
        self.unreplicated.fetch_add(1, Relaxed);
    }

    pub(crate) fn relay_followed(&self) {
        self.relay_follows.fetch_add(1, Relaxed);
    }

    pub(crate) fn forwarded_call(&self) {
        self.forwarded_calls.fetch_add(1, Relaxed);
    }

    pub(crate) fn push_encoded(&self) {
        self.push_encodings.fetch_add(1, Relaxed);
    }

    pub(crate) fn slow_consumer_disconnect(&self) {
        self.slow_consumer_disconnects.fetch_add(1, Relaxed);
    }

    pub(crate) fn error_code(&self, code: u32) {
        self.errors.fetch_add(1, Relaxed);
        let mut by_code = self
            .errors_by_code
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *by_code.entry(code).or_insert(0) += 1;
    }

    pub(crate) fn bytes_in(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Relaxed);
    }

    pub(crate) fn bytes_out(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Relaxed);
    }

    /// Counts a close a transport sends on its own, outside the protocol session (for example
    /// WebSocket 1009 for an oversized message), under `starling_errors_total{code}`.
    pub fn count_close(&self, code: u16) {
        self.error_code(u32::from(code));
    }

    /// Counts a handshake refused by the origin check (called by the gateway).
    pub fn origin_rejected(&self) {
        self.origin_rejections.fetch_add(1, Relaxed);
    }

    pub(crate) fn command_done(&self, method: Method, elapsed: Duration) {
        if let Some(i) = METHODS.iter().position(|m| *m == method) {
            self.command_latency[i].observe(elapsed);
        }
    }

    /// Error replies and disconnects sent, by protocol code.
    pub fn errors_by_code(&self) -> BTreeMap<u32, u64> {
        self.errors_by_code
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// All metrics in the Prometheus text exposition format (version 0.0.4).
    pub fn render_prometheus(&self) -> String {
        let s = self.snapshot();
        let mut out = String::with_capacity(4096);
        let gauges = [
            (
                "starling_connections",
                "Open client connections.",
                s.connections,
            ),
            (
                "starling_subscriptions",
                "Live subscriptions (connection x room).",
                s.subscriptions,
            ),
            ("starling_rooms", "Live room actors on this node.", s.rooms),
            (
                "starling_channels",
                "Rooms with at least one subscriber.",
                s.channels,
            ),
            (
                "starling_rooms_unreplicated",
                "Rooms owned here whose shard's replica does not hold their state yet.",
                s.unreplicated_rooms,
            ),
            (
                "starling_replica_rooms",
                "Copies held here as the replica of other nodes' rooms.",
                s.replica_rooms,
            ),
            (
                "starling_handoff_last_duration_milliseconds",
                "How long the last shard taken over by this node waited for its rooms.",
                s.handoff_last_millis,
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        let counters = [
            (
                "starling_connections_total",
                "Client connections opened.",
                s.connections_total,
            ),
            (
                "starling_publications_in_total",
                "Publications accepted by rooms.",
                s.publications_in,
            ),
            (
                "starling_publications_out_total",
                "Publication, join and leave pushes queued to connections.",
                s.publications_out,
            ),
            (
                "starling_push_encodings_total",
                "Pushes encoded for fan-out (one per encoding in use).",
                s.push_encodings,
            ),
            (
                "starling_slow_consumer_disconnects_total",
                "Connections closed because their outbound queue overflowed (3008).",
                s.slow_consumer_disconnects,
            ),
            (
                "starling_cluster_publication_copies_total",
                "Publications sent to other nodes by rooms owned here (one copy per other node with subscribers).",
                s.cluster_copies,
            ),
            (
                "starling_relay_gap_fills_total",
                "Offset gaps a relay on this node filled from the owner's history.",
                s.relay_gap_fills,
            ),
            (
                "starling_forwarded_calls_total",
                "Publish, history and presence calls forwarded to a room's owner.",
                s.forwarded_calls,
            ),
            (
                "starling_handoff_rooms_sent_total",
                "Rooms shipped to a shard's new owner.",
                s.handoff_rooms_sent,
            ),
            (
                "starling_handoff_rooms_received_total",
                "Rooms taken over from a shard's old owner.",
                s.handoff_rooms_received,
            ),
            (
                "starling_handoffs_completed_total",
                "Shards taken over with every room.",
                s.handoffs_completed,
            ),
            (
                "starling_handoffs_incomplete_total",
                "Shards taken over without the old owner's rooms (it went silent; the rooms restarted).",
                s.handoffs_incomplete,
            ),
            (
                "starling_replicated_total",
                "Publications and room states the shard's replica confirmed before the publish was acknowledged.",
                s.replicated,
            ),
            (
                "starling_unreplicated_total",
                "Publishes refused because the shard's replica did not confirm them (replica down or late).",
                s.unreplicated,
            ),
            (
                "starling_relay_follows_total",
                "Relays that followed their room to a new owner, subscribers kept.",
                s.relay_follows,
            ),
            (
                "starling_bytes_in_total",
                "Bytes of client messages received.",
                s.bytes_in,
            ),
            (
                "starling_bytes_out_total",
                "Bytes handed to client transports.",
                s.bytes_out,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP starling_errors_total Error replies and disconnects sent, by protocol code.\n# TYPE starling_errors_total counter"
        );
        for (code, count) in self.errors_by_code() {
            let _ = writeln!(out, "starling_errors_total{{code=\"{code}\"}} {count}");
        }
        let name = "starling_command_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from decoding a client command to its reply being queued.\n# TYPE {name} histogram"
        );
        for (method, histogram) in METHODS.iter().zip(&self.command_latency) {
            let method = method.as_str();
            let mut cumulative = 0;
            for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
                cumulative += histogram.buckets[i].load(Relaxed);
                let _ = writeln!(
                    out,
                    "{name}_bucket{{method=\"{method}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let count = histogram.count.load(Relaxed);
            let sum = histogram.sum_nanos.load(Relaxed) as f64 / 1e9;
            let _ = writeln!(
                out,
                "{name}_bucket{{method=\"{method}\",le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(out, "{name}_sum{{method=\"{method}\"}} {sum}");
            let _ = writeln!(out, "{name}_count{{method=\"{method}\"}} {count}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_gauges_errors_and_cumulative_histograms() {
        let metrics = Metrics::default();
        metrics.connection_opened();
        metrics.error_code(103);
        metrics.error_code(103);
        metrics.error_code(3501);
        metrics.command_done(Method::Publish, Duration::from_micros(80));
        metrics.command_done(Method::Publish, Duration::from_millis(3));
        metrics.command_done(Method::Publish, Duration::from_secs(2));
        let text = metrics.render_prometheus();
        assert!(text.contains("starling_connections 1\n"));
        assert!(text.contains("starling_errors_total{code=\"103\"} 2\n"));
        assert!(text.contains("starling_errors_total{code=\"3501\"} 1\n"));
        assert!(text.contains(
            "starling_command_duration_seconds_bucket{method=\"publish\",le=\"0.0001\"} 1\n"
        ));
        assert!(text.contains(
            "starling_command_duration_seconds_bucket{method=\"publish\",le=\"0.005\"} 2\n"
        ));
        assert!(text.contains(
            "starling_command_duration_seconds_bucket{method=\"publish\",le=\"+Inf\"} 3\n"
        ));
        assert!(text.contains("starling_command_duration_seconds_count{method=\"publish\"} 3\n"));
        // Every non-comment line is `name{labels} value` with a numeric value.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap_or_default();
            assert!(value.parse::<f64>().is_ok(), "bad sample line: {line}");
        }
    }
}

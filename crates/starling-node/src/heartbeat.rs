//! One timer for every connection's heartbeat: when to send the next server ping, and when the
//! pong for it is due.
//!
//! A ractor timer (`send_after`) is a tokio task, ≈ 0.4 KiB, and every connection always has
//! one heartbeat pending — for an idle connection that task was the largest thing after the
//! actor itself. Here a connection's pending beat is one entry in a shared ordered map (tens
//! of bytes), and one task per node sleeps until the earliest entry is due and sends the beats
//! that are.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use ractor::ActorRef;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::connection::ConnectionMsg;

/// What a due beat tells the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Beat {
    /// Time to send the server ping.
    Ping,
    /// The pong for ping number `.0` is due by now.
    PongDeadline(u64),
}

impl Beat {
    fn message(self) -> ConnectionMsg {
        match self {
            Beat::Ping => ConnectionMsg::Ping,
            Beat::PongDeadline(seq) => ConnectionMsg::PongDeadline(seq),
        }
    }
}

/// Identifies a scheduled beat, for [`Heartbeats::cancel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct BeatKey {
    at: Instant,
    /// Tells apart beats due at the same instant.
    id: u64,
}

type Pending = BTreeMap<BeatKey, (ActorRef<ConnectionMsg>, Beat)>;

/// The node's heartbeat timer; see the module docs.
pub(crate) struct Heartbeats {
    pending: Arc<Mutex<Pending>>,
    /// Wakes the timer task when an earlier beat is scheduled, or when the node is gone.
    wake: Arc<Notify>,
    next_id: AtomicU64,
    /// The timer task starts with the first beat (a node may be built outside a runtime).
    started: std::sync::Once,
}

impl Heartbeats {
    pub(crate) fn new() -> Heartbeats {
        Heartbeats {
            pending: Arc::new(Mutex::new(BTreeMap::new())),
            wake: Arc::new(Notify::new()),
            next_id: AtomicU64::new(0),
            started: std::sync::Once::new(),
        }
    }

    /// Sends `beat` to `target` at `at`, unless cancelled first.
    pub(crate) fn schedule(
        &self,
        at: Instant,
        target: &ActorRef<ConnectionMsg>,
        beat: Beat,
    ) -> BeatKey {
        self.started.call_once(|| {
            tokio::spawn(run(Arc::downgrade(&self.pending), Arc::clone(&self.wake)));
        });
        let key = BeatKey {
            at,
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
        };
        let first = {
            let mut pending = self.lock();
            pending.insert(key, (target.clone(), beat));
            pending
                .first_key_value()
                .is_some_and(|(first, _)| *first == key)
        };
        if first {
            self.wake.notify_one();
        }
        key
    }

    /// Drops a beat that has not been sent; a no-op for one already sent.
    pub(crate) fn cancel(&self, key: BeatKey) {
        self.lock().remove(&key);
    }

    /// Beats waiting to be sent (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Heartbeats {
    fn drop(&mut self) {
        // The task holds only a weak reference to the map: waking it lets it see the node is
        // gone and end.
        self.wake.notify_one();
    }
}

/// The timer task: sleeps until the earliest beat is due, sends every due beat, repeats; ends
/// once the node has dropped its [`Heartbeats`].
async fn run(pending: Weak<Mutex<Pending>>, wake: Arc<Notify>) {
    let mut due = Vec::new();
    loop {
        let next = {
            let Some(pending) = pending.upgrade() else {
                return;
            };
            let mut pending = pending.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            while let Some(entry) = pending.first_entry() {
                if entry.key().at > now {
                    break;
                }
                due.push(entry.remove());
            }
            pending.first_key_value().map(|(key, _)| key.at)
        };
        // Sent outside the lock: a connection handling its beat schedules the next one.
        for (target, beat) in due.drain(..) {
            // Fails only for a connection that stopped meanwhile.
            let _ = target.send_message(beat.message());
        }
        match next {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = wake.notified() => {}
                }
            }
            None => wake.notified().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ractor::{Actor, ActorProcessingErr};
    use tokio::sync::mpsc;

    use super::*;

    /// Forwards what it receives to a channel, as a connection would handle it.
    struct Probe;

    impl Actor for Probe {
        type Msg = ConnectionMsg;
        type State = mpsc::UnboundedSender<&'static str>;
        type Arguments = mpsc::UnboundedSender<&'static str>;

        async fn pre_start(
            &self,
            _myself: ActorRef<ConnectionMsg>,
            tx: Self::Arguments,
        ) -> Result<Self::State, ActorProcessingErr> {
            Ok(tx)
        }

        async fn handle(
            &self,
            _myself: ActorRef<ConnectionMsg>,
            msg: ConnectionMsg,
            tx: &mut Self::State,
        ) -> Result<(), ActorProcessingErr> {
            let name = match msg {
                ConnectionMsg::Ping => "ping",
                ConnectionMsg::PongDeadline(1) => "deadline 1",
                ConnectionMsg::PongDeadline(2) => "deadline 2",
                _ => "other",
            };
            let _ = tx.send(name);
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn beats_arrive_in_deadline_order_and_cancelled_ones_never() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (probe, _join) = Actor::spawn(None, Probe, tx).await.unwrap();
        let heartbeats = Heartbeats::new();
        let now = Instant::now();
        heartbeats.schedule(now + Duration::from_secs(3), &probe, Beat::PongDeadline(2));
        let cancelled = heartbeats.schedule(now + Duration::from_secs(1), &probe, Beat::Ping);
        heartbeats.schedule(now + Duration::from_secs(2), &probe, Beat::PongDeadline(1));
        heartbeats.cancel(cancelled);
        // A beat due at once: once it has arrived, the timer is asleep until the next one (2 s).
        heartbeats.schedule(now, &probe, Beat::Ping);
        assert_eq!(rx.recv().await, Some("ping"));
        // A later schedule of an earlier beat wakes the sleeping timer.
        heartbeats.schedule(now + Duration::from_millis(500), &probe, Beat::Ping);
        assert_eq!(rx.recv().await, Some("ping"));
        assert!(Instant::now() >= now + Duration::from_millis(500));
        assert_eq!(rx.recv().await, Some("deadline 1"));
        assert!(Instant::now() >= now + Duration::from_secs(2));
        assert_eq!(rx.recv().await, Some("deadline 2"));
        assert!(Instant::now() >= now + Duration::from_secs(3));
        assert_eq!(heartbeats.len(), 0);
        probe.stop(None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_timer_task_ends_with_the_node() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let (probe, _join) = Actor::spawn(None, Probe, tx).await.unwrap();
        let tasks = || {
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks()
        };
        let before = tasks();
        let heartbeats = Heartbeats::new();
        heartbeats.schedule(Instant::now() + Duration::from_secs(60), &probe, Beat::Ping);
        assert_eq!(tasks(), before + 1, "the first beat starts the timer task");
        drop(heartbeats);
        let ended = tokio::time::timeout(Duration::from_secs(1), async {
            while tasks() != before {
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert!(ended.is_ok(), "the timer task ended with its node");
        probe.stop(None);
    }
}

//! The bounded outbound queue of one connection.
//!
//! Rooms push already-encoded frames straight into a subscriber's queue, so a publication costs
//! one `Bytes` clone per recipient and never passes through the connection actor's mailbox. The
//! bound is in bytes (`client.queue_max_size`): a consumer that falls that far behind is closed
//! with `slow` (3008), which tells its SDK to reconnect and recover from history (design.md,
//! promise 8). The transport's writer drains everything queued in one go, so writes coalesce.
//!
//! The queue is on the fan-out path of every publication, so a push is one uncontended lock,
//! one `VecDeque` slot and, when the writer is waiting, one wake-up of its task (the waker is
//! kept in the locked state: no second lock or atomic list as a `Notify` would take). A writer
//! that polls with [`Outbound::poll_take`] reuses its own vector for every batch, so writing
//! allocates nothing per message.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use starling_protocol::{Disconnect, DisconnectCode, disconnect_reconnects};

use crate::metrics::Metrics;

/// Why a connection's transport is being closed, with the code the client sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// The Centrifugo disconnect code (3000..=4999), or a WebSocket code such as 1009.
    pub code: u16,
    /// Short human-readable reason, sent in the close frame. Owned only for custom
    /// disconnects from the server API; the built-in codes borrow their static text.
    pub reason: Cow<'static, str>,
    /// Whether the SDK is expected to reconnect (by Centrifugo's code ranges).
    pub reconnect: bool,
}

impl From<DisconnectCode> for Close {
    fn from(code: DisconnectCode) -> Self {
        Close {
            code: code.code(),
            reason: Cow::Borrowed(code.reason()),
            reconnect: code.reconnect(),
        }
    }
}

impl From<&Disconnect> for Close {
    /// A custom disconnect (server API `disconnect`) as a close frame can carry it: codes a
    /// close frame cannot hold become 3011 or 3503 and the reason is cut to 123 bytes (see
    /// [`Disconnect::close_frame`]), so the SDK's reconnect decision survives.
    fn from(disconnect: &Disconnect) -> Self {
        let (code, reason) = disconnect.close_frame();
        Close {
            code,
            reason: Cow::Owned(reason.to_owned()),
            reconnect: disconnect_reconnects(u32::from(code)),
        }
    }
}

/// A push into the queue failed because the connection is over its byte budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

/// What the transport writer gets from [`Outbound::next_batch`].
#[derive(Debug, Default)]
pub struct Batch {
    /// Frames to write now, in order. Already encoded for the connection's encoding.
    pub frames: Vec<Bytes>,
    /// Set when the transport must close after writing `frames`.
    pub close: Option<Close>,
}

/// Frames in order, the first one kept inline: most batches in fan-out are one frame, and then
/// neither the queue nor the writer touches (or keeps, while idle) a separate buffer.
#[derive(Debug, Default)]
pub struct Frames {
    first: Option<Bytes>,
    rest: VecDeque<Bytes>,
}

impl Frames {
    /// Whether there is no frame.
    pub fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    /// How many frames there are.
    pub fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    /// Takes the first frame.
    pub fn pop_front(&mut self) -> Option<Bytes> {
        let first = self.first.take();
        self.first = self.rest.pop_front();
        first
    }

    /// Takes every frame, in order.
    pub fn drain(&mut self) -> impl Iterator<Item = Bytes> + '_ {
        self.first.take().into_iter().chain(self.rest.drain(..))
    }

    fn push_back(&mut self, frame: Bytes) {
        if self.first.is_none() {
            self.first = Some(frame);
        } else {
            self.rest.push_back(frame);
        }
    }

    fn push_front(&mut self, frame: Bytes) {
        if let Some(old) = self.first.replace(frame) {
            self.rest.push_front(old);
        }
    }

    fn clear(&mut self) {
        self.first = None;
        self.rest.clear();
    }

    /// Moves every frame to the end of `to`.
    fn move_to(&mut self, to: &mut Frames) {
        if let Some(first) = self.first.take() {
            to.push_back(first);
        }
        to.rest.extend(self.rest.drain(..));
    }

    /// Releases the buffer once a burst is written: an idle connection should hold no write
    /// memory.
    pub fn shrink(&mut self) {
        if self.rest.capacity() > 16 {
            self.rest.shrink_to(0);
        }
    }
}

/// Handle to one connection's outbound queue; cheap to clone (rooms keep one per subscriber).
#[derive(Clone, Debug)]
pub struct Outbound {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    max_bytes: usize,
    /// Where written bytes are counted; `None` in unit tests.
    metrics: Option<Arc<Metrics>>,
}

#[derive(Debug, Default)]
struct State {
    frames: Frames,
    bytes: usize,
    /// Until the connect reply is released the writer sends nothing, so that no push (for a
    /// server-side subscription made during connect) can overtake the connect reply.
    held: bool,
    /// Boxed: set once per connection at most, and the state every push locks stays smaller.
    close: Option<Box<Close>>,
    /// The close has been handed to the writer; later pushes are dropped.
    closed: bool,
    /// The writer's task, while it waits for something to write.
    writer: Option<Waker>,
}

impl State {
    /// The waiting writer, if there is one and it may write now: wake it after the lock is
    /// released.
    fn wake_writer(&mut self) -> Option<Waker> {
        if self.held { None } else { self.writer.take() }
    }
}

impl Outbound {
    /// A queue that holds at most `max_bytes` of unwritten frames. It starts held: nothing is
    /// written until [`Outbound::release`] puts the connect reply first.
    pub fn new(max_bytes: usize) -> Self {
        Self::build(max_bytes, None)
    }

    /// Like [`Outbound::new`], counting the bytes handed to the transport in `metrics`.
    pub(crate) fn with_metrics(max_bytes: usize, metrics: Arc<Metrics>) -> Self {
        Self::build(max_bytes, Some(metrics))
    }

    fn build(max_bytes: usize, metrics: Option<Arc<Metrics>>) -> Self {
        Outbound {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    held: true,
                    ..State::default()
                }),
                max_bytes,
                metrics,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a panic while holding it; the queue's data is plain values that
        // stay consistent, so carrying on is safe.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues one encoded frame. Past the byte budget the queue is dropped and the connection is
    /// closed as a slow consumer; the caller learns it from the `Err`.
    pub fn push(&self, frame: Bytes) -> Result<(), Overflow> {
        let mut state = self.state();
        if state.close.is_some() || state.closed {
            return Ok(());
        }
        if state.bytes + frame.len() > self.inner.max_bytes {
            state.frames.clear();
            state.bytes = 0;
            state.close = Some(Box::new(DisconnectCode::Slow.into()));
            let writer = state.writer.take();
            drop(state);
            wake(writer);
            return Err(Overflow);
        }
        state.bytes += frame.len();
        state.frames.push_back(frame);
        let writer = state.wake_writer();
        drop(state);
        wake(writer);
        Ok(())
    }

    /// Puts `first` (the connect reply) at the head of the queue and lets the writer run.
    pub fn release(&self, first: Bytes) {
        let mut state = self.state();
        state.bytes += first.len();
        state.frames.push_front(first);
        state.held = false;
        let writer = state.wake_writer();
        drop(state);
        wake(writer);
    }

    /// Asks the writer to close the transport: after what is queued when `flush` is true, at
    /// once (dropping the queue) otherwise. The first close wins.
    pub fn close(&self, close: Close, flush: bool) {
        let mut state = self.state();
        if state.close.is_some() || state.closed {
            return;
        }
        if !flush {
            state.frames.clear();
            state.bytes = 0;
        }
        state.held = false;
        state.close = Some(Box::new(close));
        let writer = state.wake_writer();
        drop(state);
        wake(writer);
    }

    /// Whether a close has been requested (the connection is going away).
    pub fn is_closing(&self) -> bool {
        let state = self.state();
        state.close.is_some() || state.closed
    }

    /// Bytes queued and not yet taken by the writer.
    pub fn queued_bytes(&self) -> usize {
        self.state().bytes
    }

    /// Waits until there is something to write or a close to perform, and takes all of it.
    ///
    /// Cancel-safe: nothing is taken from the queue unless the call returns.
    pub async fn next_batch(&self) -> Batch {
        let mut frames = Frames::default();
        let close = poll_fn(|cx| self.poll_take(cx, &mut frames)).await;
        Batch {
            frames: frames.drain().collect(),
            close,
        }
    }

    /// The polling form of [`Outbound::next_batch`] for a transport that drives its own future:
    /// when there is something to write or a close to perform, moves every queued frame to the
    /// end of `frames` (which the caller reuses from batch to batch) and returns the close, if any;
    /// otherwise registers the task to be woken by the next push, release or close.
    ///
    /// One writer per queue: a second one polling at the same time would take the first one's
    /// place in line. Nothing is taken unless this returns `Ready`.
    pub fn poll_take(&self, cx: &mut Context<'_>, frames: &mut Frames) -> Poll<Option<Close>> {
        let mut state = self.state();
        if state.held || (state.frames.is_empty() && state.close.is_none()) {
            match &mut state.writer {
                Some(waker) => waker.clone_from(cx.waker()),
                None => state.writer = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
        state.frames.move_to(frames);
        if let Some(metrics) = &self.inner.metrics {
            metrics.bytes_out(state.bytes);
        }
        state.bytes = 0;
        let close = state.close.take().map(|close| *close);
        if close.is_some() {
            state.closed = true;
        }
        state.frames.shrink();
        Poll::Ready(close)
    }
}

fn wake(writer: Option<Waker>) {
    if let Some(waker) = writer {
        waker.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn nothing_is_written_before_release_and_connect_reply_goes_first() {
        let out = Outbound::new(1024);
        out.push(Bytes::from_static(b"push")).unwrap();
        let early = tokio::time::timeout(std::time::Duration::from_millis(20), out.next_batch());
        assert!(early.await.is_err(), "held queue must not yield");
        out.release(Bytes::from_static(b"connect"));
        let batch = out.next_batch().await;
        assert_eq!(
            batch.frames,
            vec![Bytes::from_static(b"connect"), Bytes::from_static(b"push")]
        );
        assert!(batch.close.is_none());
    }

    #[tokio::test]
    async fn frames_keep_their_order_across_release_and_reused_writer_frames() {
        let out = Outbound::new(1024);
        out.push(Bytes::from_static(b"a")).unwrap();
        out.push(Bytes::from_static(b"b")).unwrap();
        out.release(Bytes::from_static(b"connect"));
        out.push(Bytes::from_static(b"c")).unwrap();
        let mut frames = Frames::default();
        let close = poll_fn(|cx| out.poll_take(cx, &mut frames)).await;
        assert!(close.is_none());
        assert_eq!(frames.len(), 4);
        let taken: Vec<Bytes> = frames.drain().collect();
        assert_eq!(taken, [&b"connect"[..], b"a", b"b", b"c"]);
        assert!(frames.is_empty());
        // The writer's frames are reused: a single frame comes back inline.
        out.push(Bytes::from_static(b"d")).unwrap();
        let close = poll_fn(|cx| out.poll_take(cx, &mut frames)).await;
        assert!(close.is_none());
        assert_eq!(frames.pop_front(), Some(Bytes::from_static(b"d")));
        assert!(frames.pop_front().is_none());
        assert_eq!(out.queued_bytes(), 0);
    }

    #[tokio::test]
    async fn overflow_drops_queue_and_closes_as_slow() {
        let out = Outbound::new(10);
        out.release(Bytes::new());
        out.push(Bytes::from_static(b"12345")).unwrap();
        assert_eq!(out.push(Bytes::from_static(b"123456")), Err(Overflow));
        let batch = out.next_batch().await;
        assert!(batch.frames.is_empty());
        assert_eq!(batch.close, Some(DisconnectCode::Slow.into()));
        // After the close, pushes are silently dropped and never grow memory.
        out.push(Bytes::from_static(b"late")).unwrap();
        assert_eq!(out.queued_bytes(), 0);
    }

    #[test]
    fn custom_disconnect_keeps_code_reason_and_reconnect_rule() {
        let close = Close::from(&Disconnect::new(4000, "custom"));
        assert_eq!((close.code, close.reason.as_ref()), (4000, "custom"));
        assert!(close.reconnect);
        let close = Close::from(&Disconnect::new(4500, "gone"));
        assert!(!close.reconnect);
        // A code a close frame cannot carry keeps its reconnect meaning.
        let close = Close::from(&Disconnect::new(2999, "odd"));
        assert_eq!(close.code, DisconnectCode::ForceReconnect.code());
        assert!(close.reconnect);
    }

    #[tokio::test]
    async fn flushing_close_writes_queued_frames_first() {
        let out = Outbound::new(100);
        out.release(Bytes::from_static(b"a"));
        out.push(Bytes::from_static(b"b")).unwrap();
        out.close(DisconnectCode::Shutdown.into(), true);
        let batch = out.next_batch().await;
        assert_eq!(batch.frames.len(), 2);
        assert_eq!(batch.close, Some(DisconnectCode::Shutdown.into()));
    }
}

//! [`Room`]: offsets, epoch, history, presence and subscribers of one room.

use bytes::Bytes;
use starling_protocol::{ClientInfo, Publication, StreamPosition};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use crate::error::RoomError;
use crate::history::{HistoryPage, HistoryQuery, HistoryRing, Recovery};
use crate::options::RoomOptions;
use crate::presence::{Presence, PresenceStats};

/// The state of one room on its owner node.
///
/// `S` is whatever the actor uses to reach a subscriber (a connection
/// handle, a relay node's link); the room only stores it, keyed by the
/// subscriber's client id.
///
/// Time is passed in as `now_ms` (Unix milliseconds) wherever history TTLs
/// matter; the room never reads a clock.
#[derive(Debug)]
pub struct Room<S> {
    options: RoomOptions,
    epoch: Box<str>,
    history: HistoryRing,
    subscribers: HashMap<Box<str>, S>,
    /// Allocated on the first join, so rooms without presence pay one word.
    presence: Option<Box<Presence>>,
}

impl<S> Room<S> {
    /// A fresh room at offset 0 in `epoch`, with no history, presence or
    /// subscribers. `epoch` should be unique per offset sequence and non-empty
    /// (clients send an empty epoch when they have none).
    pub fn new(options: RoomOptions, epoch: String) -> Self {
        Self {
            options,
            epoch: epoch.into_boxed_str(),
            history: HistoryRing::new(0),
            subscribers: HashMap::new(),
            presence: None,
        }
    }

    /// Continues a room whose state was shipped from another node (shard
    /// hand-off): same epoch and offsets, with `history` as the retained
    /// publications, oldest first. History beyond `options.history_size` is
    /// dropped from the front; expired entries go on the next call that takes
    /// `now_ms`.
    ///
    /// Fails when `history` is not a contiguous run of offsets ending at
    /// `position.offset`, since recovery relies on exactly that.
    pub fn resume(
        options: RoomOptions,
        position: StreamPosition,
        history: impl IntoIterator<Item = Arc<Publication>>,
    ) -> Result<Self, RoomError> {
        let entries: VecDeque<Arc<Publication>> = history.into_iter().collect();
        if let Some(first) = entries.front() {
            for (expected, publication) in (first.offset..).zip(&entries) {
                if publication.offset != expected {
                    return Err(RoomError::HistoryNotContiguous {
                        expected,
                        found: publication.offset,
                    });
                }
            }
        }
        if let Some(last) = entries.back()
            && last.offset != position.offset
        {
            return Err(RoomError::HistoryTopMismatch {
                history_top: last.offset,
                position_offset: position.offset,
            });
        }
        let mut history = HistoryRing::from_parts(position.offset, entries);
        history.trim_to_size(options.history_size);
        Ok(Self {
            options,
            epoch: position.epoch.into_boxed_str(),
            history,
            subscribers: HashMap::new(),
            presence: None,
        })
    }

    /// The settings the room runs with.
    pub fn options(&self) -> &RoomOptions {
        &self.options
    }

    /// Applies new settings (config reload). A smaller `history_size` trims
    /// the ring at once, a shorter TTL on the next call that takes `now_ms`;
    /// turning presence off forgets all presence entries.
    pub fn set_options(&mut self, options: RoomOptions) {
        self.options = options;
        self.history.trim_to_size(options.history_size);
        if !options.presence {
            self.presence = None;
        }
    }

    /// The room's epoch.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The current top of the stream: the last offset assigned and the epoch.
    pub fn position(&self) -> StreamPosition {
        StreamPosition {
            offset: self.history.top(),
            epoch: self.epoch.as_ref().into(),
        }
    }

    // --- publications

    /// Assigns the next offset to a publication, stamps it with `now_ms`,
    /// keeps it in history when `history_size > 0` (trimming to size and TTL)
    /// and returns it for fan-out. The returned offset is the publish ack.
    /// History and the caller share the one `Arc`, so keeping a publication
    /// costs no copy of it, and history or recovery answers are reference
    /// bumps.
    ///
    /// The publication's `channel` is left empty: the room does not know its
    /// own name, and Centrifugo only fills it for wildcard subscriptions.
    pub fn publish(
        &mut self,
        data: Bytes,
        info: Option<ClientInfo>,
        tags: BTreeMap<String, String>,
        now_ms: i64,
    ) -> Arc<Publication> {
        self.history.trim_expired(self.options.ttl(), now_ms);
        let publication = Arc::new(Publication {
            data,
            info,
            offset: self.history.next_offset(),
            tags,
            delta: false,
            time: now_ms,
            channel: String::new(),
        });
        self.history.push(&publication, self.options.history_size);
        publication
    }

    /// Appends a publication another node sequenced (a replica following its shard's owner):
    /// kept as given, offset and time included. Refused unless it is the next offset, so a
    /// replica never holds a history with a hole; the caller then asks for the whole state.
    pub fn append(&mut self, publication: Arc<Publication>, now_ms: i64) -> Result<(), RoomError> {
        let expected = self.history.next_offset();
        if publication.offset != expected {
            return Err(RoomError::HistoryNotContiguous {
                expected,
                found: publication.offset,
            });
        }
        self.history.trim_expired(self.options.ttl(), now_ms);
        self.history.push(&publication, self.options.history_size);
        Ok(())
    }

    /// Takes back `publication`, the last one [`publish`](Self::publish) made, when it cannot
    /// be acknowledged (the shard's replica did not confirm it): its offset goes to the next
    /// publication. Only the top can be taken back, so the stream never has a hole; `false`
    /// when `publication` is not the top.
    pub fn retract(&mut self, publication: &Publication) -> bool {
        self.history.pop_top(publication.offset)
    }

    /// A publication that bypasses the stream (the server API's `skip_history`): no offset
    /// (0), not kept in history, stamped with `now_ms`. Centrifugo publishes these without a
    /// stream position too, so SDKs leave their recovery position alone when they see one.
    /// Giving it an offset instead would either leave a hole in history (breaking the
    /// contiguity recovery relies on) or force dropping everything older.
    pub fn ephemeral(
        &self,
        data: Bytes,
        info: Option<ClientInfo>,
        tags: BTreeMap<String, String>,
        now_ms: i64,
    ) -> Arc<Publication> {
        Arc::new(Publication {
            data,
            info,
            offset: 0,
            tags,
            delta: false,
            time: now_ms,
            channel: String::new(),
        })
    }

    /// Drops every retained publication (the server API's `history_remove`). The stream
    /// position stays: the next publication continues the same offsets in the same epoch, so
    /// subscribers see no gap and are not disconnected, as in Centrifugo. Recovery from a
    /// position older than the top is then impossible (`recovered: false`).
    pub fn remove_history(&mut self) {
        self.history.clear();
    }

    /// Answers a history query with Centrifugo's semantics (see
    /// [`HistoryQuery`]); `max` caps the number of publications returned
    /// (Centrifugo's `client_history_max_publication_limit`).
    ///
    /// Fails when `since` names another epoch, or asks for a reverse page
    /// before offset 0.
    pub fn history(
        &mut self,
        query: HistoryQuery,
        max: usize,
        now_ms: i64,
    ) -> Result<HistoryPage, RoomError> {
        self.trim(now_ms);
        if let Some(since) = &query.since {
            if query.reverse && since.offset == 0 {
                return Err(RoomError::ReverseFromOffsetZero);
            }
            if !since.epoch.is_empty() && *since.epoch != *self.epoch {
                return Err(RoomError::UnrecoverablePosition {
                    requested_epoch: since.epoch.clone(),
                    current_epoch: self.epoch.as_ref().into(),
                });
            }
        }
        let limit = usize::try_from(query.limit).map_or(max, |limit| limit.min(max));
        let publications = self
            .history
            .page(query.since.map(|s| s.offset), limit, query.reverse);
        Ok(HistoryPage {
            publications,
            position: self.position(),
        })
    }

    /// Recovery for a subscriber coming back with the position it last saw:
    /// either every publication after `since.offset`, oldest first
    /// (`recovered: true`), or none (`recovered: false`) — never a partial
    /// replay.
    ///
    /// Not recovered when the epoch differs (an empty epoch differs too: a
    /// position without an epoch cannot be trusted to belong to this
    /// sequence), when `since.offset` is ahead of the room, when history no
    /// longer reaches back to `since.offset + 1` (trimmed by size or TTL), or
    /// when more than `max` publications were missed (Centrifugo's
    /// `client_recovery_max_publication_limit`).
    pub fn recover(&mut self, since: &StreamPosition, max: usize, now_ms: i64) -> Recovery {
        self.trim(now_ms);
        let missed = if *since.epoch == *self.epoch {
            self.history.after(since.offset, max)
        } else {
            None
        };
        Recovery {
            recovered: missed.is_some(),
            publications: missed.unwrap_or_default(),
            position: self.position(),
        }
    }

    /// Drops history entries that expired at `now_ms`; returns when the next
    /// one expires, for the actor's timer (`None`: nothing will expire).
    pub fn trim(&mut self, now_ms: i64) -> Option<i64> {
        self.history.trim_expired(self.options.ttl(), now_ms)
    }

    /// The retained publications, oldest first (what a shard hand-off ships
    /// along with [`position`](Self::position)). Entries past their TTL may
    /// still be here until the next [`trim`](Self::trim).
    pub fn retained(&self) -> impl DoubleEndedIterator<Item = &Arc<Publication>> + '_ {
        self.history.iter()
    }

    /// How many publications history holds.
    pub fn retained_count(&self) -> usize {
        self.history.len()
    }

    // --- subscribers

    /// Adds a subscriber under its client id; returns the handle it replaced,
    /// if that client was already subscribed.
    pub fn subscribe(&mut self, client_id: &str, handle: S) -> Option<S> {
        self.subscribers.insert(client_id.into(), handle)
    }

    /// Removes a subscriber and returns its handle.
    pub fn unsubscribe(&mut self, client_id: &str) -> Option<S> {
        let handle = self.subscribers.remove(client_id);
        if self.subscribers.is_empty() {
            // A busy room that empties should not keep its peak-size table.
            self.subscribers.shrink_to_fit();
        }
        handle
    }

    /// All subscribers with their client ids, in no particular order.
    pub fn subscribers(&self) -> impl Iterator<Item = (&str, &S)> + '_ {
        self.subscribers.iter().map(|(id, s)| (&**id, s))
    }

    /// All subscriber handles, mutable (e.g. to update per-subscriber state).
    pub fn subscribers_mut(&mut self) -> impl Iterator<Item = (&str, &mut S)> + '_ {
        self.subscribers.iter_mut().map(|(id, s)| (&**id, s))
    }

    /// How many subscribers the room has.
    pub fn subscriber_count(&self) -> usize {
        self.subscribers.len()
    }

    /// The handle of one subscriber.
    pub fn subscriber(&self, client_id: &str) -> Option<&S> {
        self.subscribers.get(client_id)
    }

    /// The handle of one subscriber, mutable.
    pub fn subscriber_mut(&mut self, client_id: &str) -> Option<&mut S> {
        self.subscribers.get_mut(client_id)
    }

    // --- presence

    /// Records `info` as present, keyed by `info.client`. Returns `true` when
    /// that client was not present before (the actor then pushes a join);
    /// a repeated join refreshes the entry and returns `false`. Stores nothing
    /// and returns `false` when the room keeps no presence.
    pub fn join(&mut self, info: ClientInfo) -> bool {
        if !self.options.presence {
            return false;
        }
        self.presence.get_or_insert_default().join(info)
    }

    /// Removes a client from presence; `Some` (the actor then pushes a leave)
    /// when it was present.
    pub fn leave(&mut self, client_id: &str) -> Option<ClientInfo> {
        let presence = self.presence.as_mut()?;
        let info = presence.leave(client_id);
        if presence.is_empty() {
            self.presence = None;
        }
        info
    }

    /// Everyone present, in no particular order.
    pub fn presence(&self) -> impl Iterator<Item = &ClientInfo> + '_ {
        self.presence.iter().flat_map(|p| p.iter())
    }

    /// Client and distinct-user counts of presence.
    pub fn presence_stats(&self) -> PresenceStats {
        self.presence
            .as_ref()
            .map(|p| p.stats())
            .unwrap_or_default()
    }

    // --- lifetime

    /// Whether the actor may drop the room: no subscribers, nobody present and
    /// no history left after trimming at `now_ms`. Dropping it loses only the
    /// offset and epoch, which a new room replaces with a new epoch.
    pub fn is_idle(&mut self, now_ms: i64) -> bool {
        self.trim(now_ms);
        self.subscribers.is_empty() && self.presence.is_none() && self.history.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    use proptest::prelude::*;

    const EPOCH: &str = "ep1";

    fn opts(history_size: usize, history_ttl_ms: i64) -> RoomOptions {
        RoomOptions {
            history_size,
            history_ttl_ms,
            presence: true,
        }
    }

    fn room(history_size: usize, history_ttl_ms: i64) -> Room<u32> {
        Room::new(opts(history_size, history_ttl_ms), EPOCH.to_owned())
    }

    #[test]
    fn a_replica_appends_only_the_next_offset_and_keeps_it_as_sequenced() {
        let mut owner = room(3, 0);
        let mut replica = room(3, 0);
        for now in 1..=5 {
            publish(&mut owner, now);
        }
        let shipped: Vec<Arc<Publication>> = owner.retained().cloned().collect();
        assert!(
            replica.append(Arc::clone(&shipped[1]), 10).is_err(),
            "offset 4 before 3"
        );
        let mut replica = Room::<u32>::resume(
            opts(3, 0),
            StreamPosition {
                offset: 2,
                epoch: EPOCH.into(),
            },
            [],
        )
        .unwrap();
        for publication in &shipped {
            replica.append(Arc::clone(publication), 10).unwrap();
        }
        assert_eq!(replica.position(), owner.position());
        let times: Vec<i64> = replica.retained().map(|p| p.time).collect();
        assert_eq!(times, vec![3, 4, 5], "kept as the owner stamped them");
        assert!(
            replica.append(Arc::clone(&shipped[2]), 10).is_err(),
            "no duplicate"
        );
    }

    #[test]
    fn a_retracted_publication_leaves_no_trace_and_its_offset_is_reused() {
        let mut room = room(3, 0);
        publish(&mut room, 1);
        let second = room.publish(Bytes::from_static(b"{}"), None, BTreeMap::new(), 2);
        let third = room.publish(Bytes::from_static(b"{}"), None, BTreeMap::new(), 3);
        assert!(!room.retract(&second), "only the top can be taken back");
        assert!(room.retract(&third));
        assert_eq!(room.position().offset, 2);
        let kept: Vec<u64> = room.retained().map(|p| p.offset).collect();
        assert_eq!(kept, vec![1, 2]);
        assert_eq!(
            publish(&mut room, 4),
            3,
            "the next publication takes its offset"
        );
        // Without history the offset still goes back.
        let mut bare = super::tests::room(0, 0);
        let first = bare.publish(Bytes::from_static(b"{}"), None, BTreeMap::new(), 1);
        assert!(bare.retract(&first));
        assert_eq!(bare.position().offset, 0);
        assert!(!bare.retract(&first), "nothing left to take back");
    }

    fn publish(room: &mut Room<u32>, now_ms: i64) -> u64 {
        room.publish(Bytes::from_static(b"{}"), None, BTreeMap::new(), now_ms)
            .offset
    }

    fn pos(offset: u64, epoch: &str) -> StreamPosition {
        StreamPosition {
            offset,
            epoch: epoch.to_owned(),
        }
    }

    fn offsets(pubs: &[Arc<Publication>]) -> Vec<u64> {
        pubs.iter().map(|p| p.offset).collect()
    }

    fn info(user: &str, client: &str) -> ClientInfo {
        ClientInfo {
            user: user.into(),
            client: client.into(),
            ..ClientInfo::default()
        }
    }

    fn query(since: Option<StreamPosition>, limit: i32, reverse: bool) -> HistoryQuery {
        HistoryQuery {
            since,
            limit,
            reverse,
        }
    }

    #[test]
    fn new_room_starts_at_offset_zero_in_its_epoch() {
        let r = room(10, 0);
        assert_eq!(r.position(), pos(0, EPOCH));
        assert_eq!(r.retained_count(), 0);
    }

    #[test]
    fn offsets_increase_by_one() {
        let mut r = room(10, 0);
        let got: Vec<u64> = (0..5).map(|t| publish(&mut r, t)).collect();
        assert_eq!(got, [1, 2, 3, 4, 5]);
        assert_eq!(r.position(), pos(5, EPOCH));
    }

    #[test]
    fn publish_stamps_time_and_keeps_payload() {
        let mut r = room(10, 0);
        let tags = BTreeMap::from([("k".to_owned(), "v".to_owned())]);
        let p = r.publish(
            Bytes::from_static(b"1"),
            Some(info("u", "c")),
            tags.clone(),
            1234,
        );
        assert_eq!(p.time, 1234);
        assert_eq!(p.tags, tags);
        assert_eq!(p.data, Bytes::from_static(b"1"));
        assert_eq!(p.info.as_ref().map(|i| i.client.as_str()), Some("c"));
        assert!(
            r.retained()
                .next()
                .is_some_and(|kept| Arc::ptr_eq(kept, &p))
        );
    }

    #[test]
    fn history_size_zero_keeps_nothing_but_offsets_still_increase() {
        let mut r = room(0, 0);
        assert_eq!(publish(&mut r, 0), 1);
        assert_eq!(publish(&mut r, 0), 2);
        assert_eq!(r.retained_count(), 0);
        assert_eq!(r.position(), pos(2, EPOCH));
        assert!(r.is_idle(0));
    }

    #[test]
    fn history_is_trimmed_by_size() {
        let mut r = room(3, 0);
        for t in 0..10 {
            publish(&mut r, t);
        }
        assert_eq!(
            offsets(&r.retained().cloned().collect::<Vec<_>>()),
            [8, 9, 10]
        );
    }

    #[test]
    fn history_is_trimmed_by_ttl_per_entry() {
        let mut r = room(100, 1_000);
        publish(&mut r, 0); // expires at 1000
        publish(&mut r, 500); // expires at 1500
        assert_eq!(r.trim(999), Some(1_000));
        assert_eq!(r.retained_count(), 2);
        assert_eq!(r.trim(1_000), Some(1_500));
        assert_eq!(r.retained_count(), 1);
        assert_eq!(r.trim(1_500), None);
        assert_eq!(r.retained_count(), 0);
        // The position survives an empty history.
        assert_eq!(r.position(), pos(2, EPOCH));
    }

    #[test]
    fn publish_trims_expired_entries() {
        let mut r = room(100, 1_000);
        publish(&mut r, 0);
        publish(&mut r, 2_000);
        assert_eq!(offsets(&r.retained().cloned().collect::<Vec<_>>()), [2]);
    }

    #[test]
    fn zero_ttl_means_size_only() {
        let mut r = room(2, 0);
        publish(&mut r, 0);
        assert_eq!(r.trim(i64::MAX), None);
        assert_eq!(r.retained_count(), 1);
    }

    #[test]
    fn shrinking_history_size_on_reload_trims_at_once() {
        let mut r = room(10, 0);
        for t in 0..5 {
            publish(&mut r, t);
        }
        r.set_options(opts(2, 0));
        assert_eq!(offsets(&r.retained().cloned().collect::<Vec<_>>()), [4, 5]);
        r.set_options(opts(0, 0));
        assert_eq!(r.retained_count(), 0);
        assert_eq!(publish(&mut r, 6), 6);
    }

    #[test]
    fn removing_history_keeps_the_position() {
        let mut r = room(10, 0);
        publish(&mut r, 1);
        publish(&mut r, 2);
        r.remove_history();
        assert_eq!(r.retained_count(), 0);
        assert_eq!(r.position(), pos(2, EPOCH));
        let page = r.history(query(None, -1, false), 10, 3).unwrap();
        assert!(page.publications.is_empty());
        assert_eq!(page.position, pos(2, EPOCH));
        // The stream goes on where it was; a subscriber at the top still recovers.
        assert_eq!(publish(&mut r, 4), 3);
        let rec = r.recover(&pos(2, EPOCH), 10, 5);
        assert!(rec.recovered);
        assert_eq!(offsets(&rec.publications), vec![3]);
        // One that was further behind lost what was removed, and is told so.
        assert!(!r.recover(&pos(1, EPOCH), 10, 5).recovered);
    }

    #[test]
    fn ephemeral_publication_has_no_offset_and_is_not_kept() {
        let mut r = room(10, 0);
        publish(&mut r, 1);
        let p = r.ephemeral(Bytes::from_static(b"1"), None, BTreeMap::new(), 2);
        assert_eq!(p.offset, 0);
        assert_eq!(p.time, 2);
        assert_eq!(r.position(), pos(1, EPOCH));
        assert_eq!(r.retained_count(), 1);
        assert_eq!(publish(&mut r, 3), 2);
    }

    #[test]
    fn recovery_replays_everything_missed() {
        let mut r = room(10, 0);
        for t in 0..5 {
            publish(&mut r, t);
        }
        let rec = r.recover(&pos(2, EPOCH), 300, 10);
        assert!(rec.recovered);
        assert_eq!(offsets(&rec.publications), [3, 4, 5]);
        assert_eq!(rec.position, pos(5, EPOCH));
    }

    #[test]
    fn recovery_with_nothing_missed_is_recovered_and_empty() {
        let mut r = room(10, 0);
        publish(&mut r, 0);
        let rec = r.recover(&pos(1, EPOCH), 300, 0);
        assert!(rec.recovered);
        assert!(rec.publications.is_empty());
        // Also without history at all.
        let mut r = room(0, 0);
        publish(&mut r, 0);
        assert!(r.recover(&pos(1, EPOCH), 300, 0).recovered);
    }

    #[test]
    fn recovery_from_another_epoch_is_not_recovered() {
        let mut r = room(10, 0);
        publish(&mut r, 0);
        let rec = r.recover(&pos(0, "other"), 300, 0);
        assert!(!rec.recovered);
        assert!(rec.publications.is_empty());
        assert_eq!(rec.position, pos(1, EPOCH));
        assert!(!r.recover(&pos(0, ""), 300, 0).recovered);
    }

    #[test]
    fn recovery_past_trimmed_history_is_not_partial() {
        let mut r = room(3, 0);
        for t in 0..6 {
            publish(&mut r, t);
        }
        // 4..=6 retained; a client at 2 missed 3, which is gone.
        let rec = r.recover(&pos(2, EPOCH), 300, 0);
        assert!(!rec.recovered);
        assert!(rec.publications.is_empty());
        assert!(r.recover(&pos(3, EPOCH), 300, 0).recovered);
    }

    #[test]
    fn recovery_past_expired_history_is_not_recovered() {
        let mut r = room(10, 1_000);
        publish(&mut r, 0);
        publish(&mut r, 900);
        assert!(r.recover(&pos(0, EPOCH), 300, 999).recovered);
        let rec = r.recover(&pos(0, EPOCH), 300, 1_000);
        assert!(!rec.recovered);
        assert!(r.recover(&pos(1, EPOCH), 300, 1_000).recovered);
    }

    #[test]
    fn recovery_from_a_future_offset_is_not_recovered() {
        let mut r = room(10, 0);
        publish(&mut r, 0);
        let rec = r.recover(&pos(2, EPOCH), 300, 0);
        assert!(!rec.recovered);
        assert_eq!(rec.position, pos(1, EPOCH));
    }

    #[test]
    fn recovery_needing_more_than_max_is_not_recovered() {
        let mut r = room(10, 0);
        for t in 0..5 {
            publish(&mut r, t);
        }
        assert!(!r.recover(&pos(0, EPOCH), 4, 0).recovered);
        assert_eq!(
            offsets(&r.recover(&pos(1, EPOCH), 4, 0).publications),
            [2, 3, 4, 5]
        );
    }

    #[test]
    fn history_limit_zero_returns_only_the_position() {
        let mut r = room(10, 0);
        publish(&mut r, 0);
        let page = r.history(query(None, 0, false), 300, 0).unwrap();
        assert!(page.publications.is_empty());
        assert_eq!(page.position, pos(1, EPOCH));
    }

    #[test]
    fn history_negative_or_large_limit_is_capped_at_max() {
        let mut r = room(10, 0);
        for t in 0..5 {
            publish(&mut r, t);
        }
        let all = r.history(query(None, -1, false), 300, 0).unwrap();
        assert_eq!(offsets(&all.publications), [1, 2, 3, 4, 5]);
        let capped = r.history(query(None, -1, false), 2, 0).unwrap();
        assert_eq!(offsets(&capped.publications), [1, 2]);
        let capped = r.history(query(None, 100, true), 2, 0).unwrap();
        assert_eq!(offsets(&capped.publications), [5, 4]);
    }

    #[test]
    fn history_since_is_exclusive_in_both_directions() {
        let mut r = room(10, 0);
        for t in 0..5 {
            publish(&mut r, t);
        }
        let fwd = r
            .history(query(Some(pos(2, EPOCH)), 2, false), 300, 0)
            .unwrap();
        assert_eq!(offsets(&fwd.publications), [3, 4]);
        let back = r
            .history(query(Some(pos(4, EPOCH)), 10, true), 300, 0)
            .unwrap();
        assert_eq!(offsets(&back.publications), [3, 2, 1]);
        let top = r
            .history(query(Some(pos(5, EPOCH)), 10, false), 300, 0)
            .unwrap();
        assert!(top.publications.is_empty());
        assert_eq!(top.position, pos(5, EPOCH));
    }

    #[test]
    fn history_since_with_empty_epoch_matches_current_epoch() {
        let mut r = room(10, 0);
        publish(&mut r, 0);
        let page = r
            .history(query(Some(pos(0, "")), 10, false), 300, 0)
            .unwrap();
        assert_eq!(offsets(&page.publications), [1]);
    }

    #[test]
    fn history_since_from_another_epoch_is_unrecoverable() {
        let mut r = room(10, 0);
        publish(&mut r, 0);
        let err = r
            .history(query(Some(pos(0, "old")), 10, false), 300, 0)
            .unwrap_err();
        assert_eq!(
            err,
            RoomError::UnrecoverablePosition {
                requested_epoch: "old".to_owned(),
                current_epoch: EPOCH.to_owned(),
            }
        );
    }

    #[test]
    fn reverse_history_since_offset_zero_is_rejected() {
        let mut r = room(10, 0);
        let err = r
            .history(query(Some(pos(0, EPOCH)), 10, true), 300, 0)
            .unwrap_err();
        assert_eq!(err, RoomError::ReverseFromOffsetZero);
    }

    #[test]
    fn history_skips_expired_entries() {
        let mut r = room(10, 1_000);
        publish(&mut r, 0);
        publish(&mut r, 500);
        let page = r.history(query(None, -1, false), 300, 1_200).unwrap();
        assert_eq!(offsets(&page.publications), [2]);
    }

    #[test]
    fn subscribers_are_keyed_by_client_id() {
        let mut r = room(0, 0);
        assert_eq!(r.subscribe("c1", 1), None);
        assert_eq!(r.subscribe("c2", 2), None);
        assert_eq!(r.subscribe("c1", 3), Some(1));
        assert_eq!(r.subscriber_count(), 2);
        assert_eq!(r.subscriber("c1"), Some(&3));
        if let Some(h) = r.subscriber_mut("c2") {
            *h = 4;
        }
        let mut all: Vec<(&str, &u32)> = r.subscribers().collect();
        all.sort();
        assert_eq!(all, [("c1", &3), ("c2", &4)]);
        assert_eq!(r.unsubscribe("c1"), Some(3));
        assert_eq!(r.unsubscribe("c1"), None);
        assert_eq!(r.subscriber_count(), 1);
    }

    #[test]
    fn presence_counts_two_connections_of_one_user_once() {
        let mut r = room(0, 0);
        assert!(r.join(info("alice", "c1")));
        assert!(r.join(info("alice", "c2")));
        assert!(r.join(info("bob", "c3")));
        assert!(!r.join(info("alice", "c1")));
        assert_eq!(
            r.presence_stats(),
            PresenceStats {
                num_clients: 3,
                num_users: 2
            }
        );
        assert_eq!(r.leave("c1").map(|i| i.client), Some("c1".to_owned()));
        assert_eq!(r.leave("c1"), None);
        assert_eq!(
            r.presence_stats(),
            PresenceStats {
                num_clients: 2,
                num_users: 2
            }
        );
        assert!(r.leave("c2").is_some());
        assert_eq!(
            r.presence_stats(),
            PresenceStats {
                num_clients: 1,
                num_users: 1
            }
        );
        let present: Vec<&str> = r.presence().map(|i| i.client.as_str()).collect();
        assert_eq!(present, ["c3"]);
    }

    #[test]
    fn presence_is_not_kept_when_disabled() {
        let mut r: Room<u32> = Room::new(
            RoomOptions {
                presence: false,
                ..RoomOptions::default()
            },
            EPOCH.to_owned(),
        );
        assert!(!r.join(info("alice", "c1")));
        assert_eq!(r.presence().count(), 0);
        assert_eq!(r.leave("c1"), None);
        assert_eq!(r.presence_stats(), PresenceStats::default());
    }

    #[test]
    fn turning_presence_off_forgets_entries() {
        let mut r = room(0, 0);
        r.join(info("alice", "c1"));
        r.set_options(RoomOptions {
            presence: false,
            ..opts(0, 0)
        });
        assert_eq!(r.presence().count(), 0);
        assert!(r.is_idle(0));
    }

    #[test]
    fn room_is_idle_without_subscribers_presence_or_history() {
        let mut r = room(10, 1_000);
        assert!(r.is_idle(0));
        r.subscribe("c1", 1);
        r.join(info("alice", "c1"));
        publish(&mut r, 0);
        assert!(!r.is_idle(0));
        r.unsubscribe("c1");
        assert!(!r.is_idle(0), "presence still holds c1");
        r.leave("c1");
        assert!(!r.is_idle(999), "history still retained");
        assert!(r.is_idle(1_000));
    }

    #[test]
    fn resume_continues_offsets_and_epoch() {
        let mut a = room(10, 0);
        for t in 0..4 {
            publish(&mut a, t);
        }
        let mut b: Room<u32> =
            Room::resume(opts(2, 0), a.position(), a.retained().cloned()).unwrap();
        assert_eq!(b.position(), pos(4, EPOCH));
        assert_eq!(offsets(&b.retained().cloned().collect::<Vec<_>>()), [3, 4]);
        assert_eq!(publish(&mut b, 5), 5);
        assert!(b.recover(&pos(3, EPOCH), 300, 5).recovered);
        assert!(!b.recover(&pos(2, EPOCH), 300, 5).recovered);
    }

    #[test]
    fn resume_rejects_history_with_gaps_or_wrong_top() {
        let p = |offset| {
            Arc::new(Publication {
                offset,
                ..Publication::default()
            })
        };
        let gap = Room::<u32>::resume(opts(10, 0), pos(3, EPOCH), [p(1), p(3)]);
        assert_eq!(
            gap.unwrap_err(),
            RoomError::HistoryNotContiguous {
                expected: 2,
                found: 3
            }
        );
        let top = Room::<u32>::resume(opts(10, 0), pos(5, EPOCH), [p(1), p(2)]);
        assert_eq!(
            top.unwrap_err(),
            RoomError::HistoryTopMismatch {
                history_top: 2,
                position_offset: 5
            }
        );
    }

    #[test]
    fn empty_room_is_a_few_hundred_bytes() {
        assert!(std::mem::size_of::<Room<u64>>() <= 256);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Publish { dt: i64 },
        Trim { dt: i64 },
        Reload { size: usize },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0i64..400).prop_map(|dt| Op::Publish { dt }),
            2 => (0i64..1_500).prop_map(|dt| Op::Trim { dt }),
            1 => (0usize..12).prop_map(|size| Op::Reload { size }),
        ]
    }

    proptest! {
        #[test]
        fn recover_is_all_or_nothing(
            size in 0usize..12,
            ttl in prop_oneof![Just(0i64), 1i64..2_000],
            ops in proptest::collection::vec(op(), 0..60),
            since in 0u64..70,
            max in 0usize..20,
            late in 0i64..2_000,
        ) {
            let mut r = room(size, ttl);
            let mut now = 0i64;
            for op in ops {
                match op {
                    Op::Publish { dt } => {
                        now += dt;
                        publish(&mut r, now);
                    }
                    Op::Trim { dt } => {
                        now += dt;
                        r.trim(now);
                    }
                    Op::Reload { size } => r.set_options(opts(size, ttl)),
                }
            }
            let top = r.position().offset;
            let rec = r.recover(&pos(since, EPOCH), max, now + late);
            prop_assert_eq!(rec.position.offset, top);
            if rec.recovered {
                let expected: Vec<u64> = (since + 1..=top).collect();
                prop_assert_eq!(offsets(&rec.publications), expected);
                prop_assert!(rec.publications.len() <= max);
            } else {
                prop_assert!(rec.publications.is_empty());
            }
            if since == top {
                prop_assert!(rec.recovered, "nothing missed must always recover");
            }
        }
    }
}

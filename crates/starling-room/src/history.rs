//! The history ring and the shapes of history and recovery answers.
//!
//! The ring holds a contiguous run of offsets ending at the room's top offset:
//! entries only ever leave from the front (size or TTL) and enter at the back
//! with the next offset. That invariant is what lets every lookup be offset
//! arithmetic on a `VecDeque` index, and what makes "the ring reaches back to
//! offset `n`" mean "every publication after `n` is here".

use starling_protocol::{Publication, StreamPosition};
use std::collections::VecDeque;
use std::sync::Arc;

/// A history request as a client or the HTTP API sends it (Centrifugo's
/// `HistoryRequest` without the room name).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HistoryQuery {
    /// Start after this stream position (exclusive, in the query's direction).
    /// `None` starts at the oldest retained entry, or at the newest when
    /// `reverse`. An empty epoch matches any epoch, as in Centrifugo.
    pub since: Option<StreamPosition>,
    /// `0` returns no publications, only the current position; a negative
    /// value or anything above the caller's maximum means "up to the maximum".
    pub limit: i32,
    /// Newest first.
    pub reverse: bool,
}

/// The answer to a history query.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPage {
    /// The publications found, in the query's direction.
    pub publications: Vec<Arc<Publication>>,
    /// The room's current top: last offset and epoch.
    pub position: StreamPosition,
}

/// The answer to a recovery attempt: all missed publications, or none.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovery {
    /// `true` when `publications` is exactly what the subscriber missed (it may
    /// be empty when it missed nothing); `false` when the room cannot tell it
    /// what it missed — then `publications` is empty and the client must
    /// reload its state.
    pub recovered: bool,
    /// Every publication after the subscriber's offset, oldest first, when
    /// `recovered`; empty otherwise.
    pub publications: Vec<Arc<Publication>>,
    /// The room's current top, which the subscriber continues from.
    pub position: StreamPosition,
}

/// The retained publications of one room and its top offset.
#[derive(Debug, Default)]
pub(crate) struct HistoryRing {
    /// The offset of the last publication ever assigned (0 before the first).
    top: u64,
    /// Contiguous offsets `top - len + 1 ..= top`, oldest at the front.
    entries: VecDeque<Arc<Publication>>,
}

impl HistoryRing {
    /// An empty ring whose next publication gets `top + 1`.
    pub(crate) fn new(top: u64) -> Self {
        Self {
            top,
            entries: VecDeque::new(),
        }
    }

    /// The offset of the last publication assigned.
    pub(crate) fn top(&self) -> u64 {
        self.top
    }

    /// The offset the next publication gets.
    pub(crate) fn next_offset(&self) -> u64 {
        // Cannot overflow in practice: 2^64 publications at a billion a second
        // take 584 years.
        self.top + 1
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = &Arc<Publication>> {
        self.entries.iter()
    }

    /// The offset of the oldest retained entry; `top + 1` when empty, so that
    /// "reaches back to `n`" is always `first_offset() <= n`.
    fn first_offset(&self) -> u64 {
        self.entries.front().map_or(self.top + 1, |p| p.offset)
    }

    /// Records that `publication` (whose offset must be `next_offset()`) was
    /// assigned; keeps it when `size > 0`, then trims to `size`.
    pub(crate) fn push(&mut self, publication: &Arc<Publication>, size: usize) {
        debug_assert_eq!(publication.offset, self.next_offset());
        self.top = publication.offset;
        if size == 0 {
            // Nothing kept: drop whatever an earlier, larger size left behind
            // so that the ring stays contiguous up to the new top.
            self.entries.clear();
            return;
        }
        self.entries.push_back(Arc::clone(publication));
        self.trim_to_size(size);
    }

    /// Takes back the last assigned offset, if it is `offset`: the ring ends one earlier, as
    /// if that publication had never been made.
    pub(crate) fn pop_top(&mut self, offset: u64) -> bool {
        if offset == 0 || offset != self.top {
            return false;
        }
        if self.entries.back().is_some_and(|p| p.offset == offset) {
            self.entries.pop_back();
        }
        self.top -= 1;
        true
    }

    /// Adopts an already validated contiguous run ending at `top`.
    pub(crate) fn from_parts(top: u64, entries: VecDeque<Arc<Publication>>) -> Self {
        Self { top, entries }
    }

    /// Drops every entry and keeps `top`: an empty ring is trivially contiguous.
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.entries.shrink_to_fit();
    }

    pub(crate) fn trim_to_size(&mut self, size: usize) {
        if self.entries.len() > size {
            let excess = self.entries.len() - size;
            self.entries.drain(..excess);
        }
    }

    /// Drops entries whose TTL has run out at `now_ms` (an entry published at
    /// `t` lives while `now_ms < t + ttl`) and returns when the oldest kept
    /// entry expires.
    ///
    /// Only the front is ever dropped, even if a later entry carries an
    /// earlier time (the publisher's clock went back): dropping from the
    /// middle would break contiguity, and keeping an entry a little longer
    /// harms nobody.
    pub(crate) fn trim_expired(&mut self, ttl: Option<i64>, now_ms: i64) -> Option<i64> {
        let ttl = ttl?;
        while let Some(front) = self.entries.front() {
            let expires_at = front.time.saturating_add(ttl);
            if expires_at > now_ms {
                return Some(expires_at);
            }
            self.entries.pop_front();
        }
        None
    }

    /// Centrifugo's history iteration over the retained entries: at most
    /// `limit` publications starting after `since` (exclusive) in the chosen
    /// direction. A forward start older than the ring begins at the oldest
    /// entry; a reverse start outside the ring finds nothing.
    pub(crate) fn page(
        &self,
        since: Option<u64>,
        limit: usize,
        reverse: bool,
    ) -> Vec<Arc<Publication>> {
        let len = self.entries.len();
        if limit == 0 || len == 0 {
            return Vec::new();
        }
        let first = self.first_offset();
        match (since, reverse) {
            (None, false) => self.collect(0, limit.min(len), false),
            (None, true) => self.collect(len - limit.min(len), len, true),
            (Some(since), false) => {
                let start = since.saturating_add(1);
                if start > self.top {
                    return Vec::new();
                }
                let from = self.index_of(start.max(first));
                self.collect(from, from.saturating_add(limit).min(len), false)
            }
            (Some(since), true) => {
                let Some(start) = since.checked_sub(1) else {
                    return Vec::new();
                };
                if start > self.top || start < first {
                    return Vec::new();
                }
                let to = self.index_of(start) + 1;
                self.collect(to.saturating_sub(limit), to, true)
            }
        }
    }

    /// Every publication after `since`, if the ring still holds all of them
    /// and there are at most `max`; `None` otherwise. `since == top` yields an
    /// empty list: nothing was missed.
    pub(crate) fn after(&self, since: u64, max: usize) -> Option<Vec<Arc<Publication>>> {
        let missed = self.top.checked_sub(since)?;
        if missed == 0 {
            return Some(Vec::new());
        }
        if missed > u64::try_from(max).unwrap_or(u64::MAX) || since + 1 < self.first_offset() {
            return None;
        }
        Some(self.collect(self.index_of(since + 1), self.entries.len(), false))
    }

    /// The ring index of `offset`, which must lie in `first_offset()..=top`.
    fn index_of(&self, offset: u64) -> usize {
        // Fits: the difference is below `entries.len()`, itself a usize.
        usize::try_from(offset - self.first_offset()).unwrap_or(usize::MAX)
    }

    fn collect(&self, from: usize, to: usize, reverse: bool) -> Vec<Arc<Publication>> {
        let range = self.entries.range(from..to);
        if reverse {
            range.rev().cloned().collect()
        } else {
            range.cloned().collect()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    use proptest::prelude::*;

    fn ring(top: u64, retained: u64) -> HistoryRing {
        let entries = (top - retained + 1..=top)
            .map(|offset| {
                Arc::new(Publication {
                    offset,
                    ..Publication::default()
                })
            })
            .collect();
        HistoryRing::from_parts(top, entries)
    }

    fn offsets(pubs: &[Arc<Publication>]) -> Vec<u64> {
        pubs.iter().map(|p| p.offset).collect()
    }

    #[test]
    fn page_without_since_reads_from_either_end() {
        let r = ring(10, 5); // 6..=10
        assert_eq!(offsets(&r.page(None, 3, false)), [6, 7, 8]);
        assert_eq!(offsets(&r.page(None, 3, true)), [10, 9, 8]);
        assert_eq!(offsets(&r.page(None, 100, false)), [6, 7, 8, 9, 10]);
        assert_eq!(offsets(&r.page(None, 100, true)), [10, 9, 8, 7, 6]);
        assert!(r.page(None, 0, false).is_empty());
    }

    #[test]
    fn forward_page_since_older_than_ring_starts_at_oldest() {
        let r = ring(10, 5);
        assert_eq!(offsets(&r.page(Some(2), 2, false)), [6, 7]);
        assert_eq!(offsets(&r.page(Some(7), 10, false)), [8, 9, 10]);
        assert!(r.page(Some(10), 10, false).is_empty());
        assert!(r.page(Some(50), 10, false).is_empty());
    }

    #[test]
    fn reverse_page_since_is_exclusive_and_stays_inside_ring() {
        let r = ring(10, 5);
        assert_eq!(offsets(&r.page(Some(11), 2, true)), [10, 9]);
        assert_eq!(offsets(&r.page(Some(9), 10, true)), [8, 7, 6]);
        assert!(r.page(Some(6), 10, true).is_empty());
        assert!(r.page(Some(12), 10, true).is_empty());
        assert!(r.page(Some(0), 10, true).is_empty());
    }

    #[test]
    fn after_is_all_or_nothing() {
        let r = ring(10, 5);
        assert_eq!(r.after(10, 100).map(|p| offsets(&p)), Some(vec![]));
        assert_eq!(
            r.after(5, 100).map(|p| offsets(&p)),
            Some(vec![6, 7, 8, 9, 10])
        );
        assert_eq!(r.after(4, 100), None);
        assert_eq!(r.after(11, 100), None);
        assert_eq!(r.after(5, 4), None);
        assert_eq!(r.after(6, 4).map(|p| p.len()), Some(4));
    }

    /// The history semantics written out naively over the retained range.
    fn model(first: u64, top: u64, since: Option<u64>, limit: usize, reverse: bool) -> Vec<u64> {
        let retained = first..=top;
        let mut found: Vec<u64> = match (since, reverse) {
            (None, _) => retained.collect(),
            (Some(s), false) => retained.filter(|&o| o > s).collect(),
            (Some(s), true) if s >= 1 && (first..=top).contains(&(s - 1)) => {
                retained.filter(|&o| o < s).collect()
            }
            (Some(_), true) => Vec::new(),
        };
        if reverse {
            found.reverse();
        }
        found.truncate(limit);
        found
    }

    proptest! {
        #[test]
        fn page_matches_the_naive_model(
            top in 0u64..40,
            retained in 0u64..40,
            since in proptest::option::of(0u64..45),
            limit in 0usize..50,
            reverse: bool,
        ) {
            let retained = retained.min(top);
            let r = ring(top, retained);
            let got = offsets(&r.page(since, limit, reverse));
            prop_assert_eq!(got, model(top - retained + 1, top, since, limit, reverse));
        }
    }
}

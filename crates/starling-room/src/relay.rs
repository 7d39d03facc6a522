//! [`RelayCursor`]: the order in which a relay passes on what a room's owner sends it, across
//! shard hand-offs.
//!
//! A relay (a node with local subscribers of a room owned elsewhere) gets the room's frames on
//! the owner's link, in the owner's order. When the room's shard moves, the old owner sends a
//! last frame, [`Frame::Moved`], and the new owner continues the same offsets — but on *its*
//! link, which may deliver earlier than the old one. So a relay takes frames from its current
//! owner only; frames from any other node are held, in arrival order, and taken up when a
//! `Moved` names that node. Offsets then come out strictly increasing, each once, and a gap
//! (a copy dropped on a full link) is reported so the caller can fill it from history before
//! going on.
//!
//! Subscribe answers travel in the same stream ([`Frame::Answer`]) because their position
//! only means something in the owner's order: "everything up to this offset is covered, the
//! next frames are not".

use std::collections::VecDeque;

/// One frame about a room, from the node that sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<N, T> {
    /// A publication at `offset`, or, with offset 0, something outside the offset sequence
    /// (a join, a leave, a publication that skipped history).
    Item {
        /// The offset (0: unsequenced).
        offset: u64,
        /// What to pass on.
        item: T,
    },
    /// A subscribe answer: the room stood at `offset` when it was made.
    Answer {
        /// The room's last offset at the answer.
        offset: u64,
        /// The answer.
        item: T,
    },
    /// The sender handed the room to `to`; nothing more comes from the sender about it.
    Moved {
        /// The new owner.
        to: N,
    },
}

/// What the caller does next, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<T> {
    /// Pass the item on to the local subscribers.
    Deliver(T),
    /// Complete the subscribe this answer belongs to.
    Answer(T),
    /// Fetch the publications after offset `after` and before `upto` from the owner's history
    /// and pass them on before the steps that follow.
    Fill {
        /// The last offset passed on.
        after: u64,
        /// The offset that arrived (exclusive bound).
        upto: u64,
    },
}

/// More frames from other nodes were held than the bound allows: the hand-off they wait for
/// is not coming in time, and the caller starts over (its subscribers resubscribe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

/// A relay's position in its room's stream, and the frames it holds for a later owner.
#[derive(Debug)]
pub struct RelayCursor<N, T> {
    owner: N,
    /// The last offset passed on (or covered by an answer); `None` before the first answer,
    /// when nobody here wants publications.
    last: Option<u64>,
    held: VecDeque<(N, Frame<N, T>)>,
    max_held: usize,
}

impl<N: Copy + Eq, T> RelayCursor<N, T> {
    /// A cursor following `owner`, holding at most `max_held` frames from other nodes.
    pub fn new(owner: N, max_held: usize) -> Self {
        RelayCursor {
            owner,
            last: None,
            held: VecDeque::new(),
            max_held,
        }
    }

    /// A cursor following `owner` that has passed on everything up to `last` (a relay made
    /// from the local subscribers of a room just handed to `owner`).
    pub fn at(owner: N, last: u64, max_held: usize) -> Self {
        RelayCursor {
            last: Some(last),
            ..RelayCursor::new(owner, max_held)
        }
    }

    /// The node whose frames are taken now.
    pub fn owner(&self) -> N {
        self.owner
    }

    /// The last offset passed on.
    pub fn last(&self) -> Option<u64> {
        self.last
    }

    /// How many frames are held for a later owner.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Follows `owner` without a hand-off (the old owner died, or the room restarted): what
    /// was held and the position are dropped.
    pub fn reset(&mut self, owner: N) {
        self.owner = owner;
        self.last = None;
        self.held.clear();
    }

    /// Takes `frame` from node `from` and appends what to do to `out`.
    pub fn receive(
        &mut self,
        from: N,
        frame: Frame<N, T>,
        out: &mut Vec<Step<T>>,
    ) -> Result<(), Overflow> {
        if from != self.owner {
            if self.held.len() >= self.max_held {
                return Err(Overflow);
            }
            self.held.push_back((from, frame));
            return Ok(());
        }
        self.take(frame, out);
        // A `Moved` may have made a node whose frames are held the owner: take them up, in
        // the order they came, until none of the (possibly new) owner's are left.
        while let Some(index) = self.held.iter().position(|(n, _)| *n == self.owner) {
            if let Some((_, frame)) = self.held.remove(index) {
                self.take(frame, out);
            }
        }
        Ok(())
    }

    fn take(&mut self, frame: Frame<N, T>, out: &mut Vec<Step<T>>) {
        match frame {
            Frame::Item { offset: 0, item } => out.push(Step::Deliver(item)),
            Frame::Item { offset, item } => match self.last {
                // No subscriber here has been answered yet: nobody wants it.
                None => {}
                Some(last) if offset <= last => {}
                Some(last) => {
                    if offset > last + 1 {
                        out.push(Step::Fill {
                            after: last,
                            upto: offset,
                        });
                    }
                    self.last = Some(offset);
                    out.push(Step::Deliver(item));
                }
            },
            Frame::Answer { offset, item } => {
                // In the owner's order every answer is at or past the last offset passed on.
                self.last = Some(self.last.map_or(offset, |last| last.max(offset)));
                out.push(Step::Answer(item));
            }
            Frame::Moved { to } => self.owner = to,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Cursor = RelayCursor<u8, u64>;

    fn item(offset: u64) -> Frame<u8, u64> {
        Frame::Item {
            offset,
            item: offset,
        }
    }

    fn run(cursor: &mut Cursor, frames: Vec<(u8, Frame<u8, u64>)>) -> Vec<Step<u64>> {
        let mut out = Vec::new();
        for (from, frame) in frames {
            cursor.receive(from, frame, &mut out).expect("within bound");
        }
        out
    }

    #[test]
    fn the_new_owners_frames_wait_for_the_old_owners_last() {
        let mut cursor = Cursor::at(1, 2, 16);
        let out = run(
            &mut cursor,
            vec![
                (2, item(4)),
                (2, item(5)),
                (1, item(3)),
                (1, Frame::Moved { to: 2 }),
                (2, item(6)),
            ],
        );
        let delivered: Vec<Step<u64>> = (3..=6).map(Step::Deliver).collect();
        assert_eq!(out, delivered);
        assert_eq!(cursor.owner(), 2);
        assert_eq!(cursor.held(), 0);
    }

    #[test]
    fn a_gap_asks_for_a_fill_and_duplicates_are_dropped() {
        let mut cursor = Cursor::at(1, 2, 16);
        let out = run(&mut cursor, vec![(1, item(5)), (1, item(4)), (1, item(6))]);
        assert_eq!(
            out,
            vec![
                Step::Fill { after: 2, upto: 5 },
                Step::Deliver(5),
                Step::Deliver(6)
            ]
        );
    }

    #[test]
    fn nothing_is_passed_on_before_the_first_answer() {
        let mut cursor = Cursor::new(1, 16);
        let out = run(
            &mut cursor,
            vec![
                (1, item(1)),
                (
                    1,
                    Frame::Answer {
                        offset: 1,
                        item: 100,
                    },
                ),
                (1, item(2)),
                (1, Frame::Item { offset: 0, item: 7 }),
            ],
        );
        assert_eq!(
            out,
            vec![Step::Answer(100), Step::Deliver(2), Step::Deliver(7)]
        );
    }

    #[test]
    fn holding_past_the_bound_is_an_overflow() {
        let mut cursor = Cursor::at(1, 0, 2);
        let mut out = Vec::new();
        assert_eq!(cursor.receive(2, item(1), &mut out), Ok(()));
        assert_eq!(cursor.receive(2, item(2), &mut out), Ok(()));
        assert_eq!(cursor.receive(2, item(3), &mut out), Err(Overflow));
        cursor.reset(2);
        assert_eq!((cursor.owner(), cursor.last(), cursor.held()), (2, None, 0));
    }

    /// The streams of a room that moves from owner 1 to 2 to 3 (owners are 1-based), with
    /// `counts[i]` publications sequenced by owner `i + 1`, a subscribe answered at
    /// publication `answer_at` (0: before the first), and the publications in `dropped`
    /// lost on their link. Returns one stream per owner; each owner's last frame is `Moved`
    /// except the last owner's.
    fn streams(counts: [u64; 3], answer_at: u64, dropped: &[u64]) -> Vec<Vec<Frame<u8, u64>>> {
        let mut streams = vec![Vec::new(), Vec::new(), Vec::new()];
        let mut offset = 0;
        let mut answered = false;
        for (owner, &count) in counts.iter().enumerate() {
            for _ in 0..count {
                if !answered && offset == answer_at {
                    streams[owner].push(Frame::Answer {
                        offset,
                        item: u64::MAX,
                    });
                    answered = true;
                }
                offset += 1;
                if !dropped.contains(&offset) {
                    streams[owner].push(item(offset));
                }
            }
            if !answered && offset == answer_at {
                streams[owner].push(Frame::Answer {
                    offset,
                    item: u64::MAX,
                });
                answered = true;
            }
            if owner < 2 {
                streams[owner].push(Frame::Moved {
                    to: u8::try_from(owner + 2).expect("small"),
                });
            }
        }
        streams
    }

    /// Merges the owners' streams in the order `picks` names (each pick takes the next frame
    /// of stream `pick % 3`, or of the first non-empty one).
    fn interleave(
        mut streams: Vec<Vec<Frame<u8, u64>>>,
        picks: &[usize],
    ) -> Vec<(u8, Frame<u8, u64>)> {
        for stream in &mut streams {
            stream.reverse();
        }
        let mut merged = Vec::new();
        let mut picks = picks.iter().copied().cycle();
        while streams.iter().any(|s| !s.is_empty()) {
            let wanted = picks.next().unwrap_or(0) % 3;
            let from = if streams[wanted].is_empty() {
                streams
                    .iter()
                    .position(|s| !s.is_empty())
                    .expect("one left")
            } else {
                wanted
            };
            if let Some(frame) = streams[from].pop() {
                merged.push((u8::try_from(from + 1).expect("small"), frame));
            }
        }
        merged
    }

    /// What the subscriber ends up with: the answer, then publications, where a fill passes on
    /// the offsets it names from the room's full sequence.
    fn delivered(steps: Vec<Step<u64>>) -> (bool, Vec<u64>) {
        let mut answered = false;
        let mut offsets = Vec::new();
        for step in steps {
            match step {
                Step::Answer(_) => answered = true,
                Step::Deliver(offset) => offsets.push(offset),
                Step::Fill { after, upto } => offsets.extend(after + 1..upto),
            }
        }
        (answered, offsets)
    }

    proptest! {
        /// Every interleaving of two hand-offs and a subscribe: the subscriber gets exactly the
        /// publications after its answer, once each, in offset order.
        #[test]
        fn every_interleaving_of_moves_publications_and_a_subscribe(
            counts in proptest::array::uniform3(0u64..6),
            answer_pick in any::<prop::sample::Index>(),
            picks in proptest::collection::vec(0usize..3, 1..40),
        ) {
            let total: u64 = counts.iter().sum();
            let answer_at = answer_pick.index(usize::try_from(total + 1).unwrap_or(1)) as u64;
            let merged = interleave(streams(counts, answer_at, &[]), &picks);
            let mut cursor = Cursor::new(1, 64);
            let (answered, offsets) = delivered(run(&mut cursor, merged));
            prop_assert!(answered);
            let expected: Vec<u64> = (answer_at + 1..=total).collect();
            prop_assert_eq!(offsets, expected);
            prop_assert_eq!(cursor.owner(), 3);
            prop_assert_eq!(cursor.held(), 0);
        }

        /// Copies lost on the way are filled: the subscriber's offsets stay strictly +1 and
        /// reach at least the last one that arrived.
        #[test]
        fn lost_copies_are_filled_without_gaps_or_duplicates(
            counts in proptest::array::uniform3(0u64..6),
            dropped in proptest::collection::vec(1u64..19, 0..6),
            picks in proptest::collection::vec(0usize..3, 1..40),
        ) {
            let total: u64 = counts.iter().sum();
            let merged = interleave(streams(counts, 0, &dropped), &picks);
            let mut cursor = Cursor::new(1, 64);
            let (_, offsets) = delivered(run(&mut cursor, merged));
            let last_arrived = (1..=total).rev().find(|o| !dropped.contains(o)).unwrap_or(0);
            let expected: Vec<u64> = (1..=offsets.len() as u64).collect();
            prop_assert_eq!(&offsets, &expected);
            prop_assert!(offsets.len() as u64 >= last_arrived);
        }
    }
}

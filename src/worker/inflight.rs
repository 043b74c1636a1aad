//! Events read but not yet committed, per partition, in offset order. This
//! is where the delivery rules live: which events may run now (one per key,
//! none whose retry is not yet due, none behind an unfinished event of the
//! same key), and how far each partition's commit watermark may move (up to
//! the first event that is not fully handled, carrying along the dead
//! letters it passes and the attempt state of events still retrying).

use std::collections::{BTreeMap, HashSet, VecDeque};
use tokio::time::Instant;

use crate::bus::{AttemptState, Commit, DeadLetterWrite, Delivery, TopicPartition};

use crate::event::Record;

#[derive(Debug)]
pub enum SlotState {
    /// Not yet run, or waiting for its retry to come due.
    Waiting { due: Option<Instant> },
    /// Fully handled: its result accepted, or dead-lettered (the dead letter
    /// is written in the commit that moves past it).
    Done { dead_letter: Option<(String, Record)> },
}

#[derive(Debug)]
pub struct Slot {
    pub delivery: Delivery,
    pub state: SlotState,
    /// Attempts made so far and when failures happened (persisted).
    pub attempts: Option<AttemptState>,
    /// The attempt state changed and must go out with the next commit.
    pub attempts_dirty: bool,
    pub received: Instant,
}

/// One partition's events in offset order. A bus hands out offsets in
/// increasing order, so an add pushes at the back and a commit pops from the
/// front; a lookup indexes by the distance from the first offset, and
/// searches only when offsets have gaps. (A `BTreeMap` moved these slots of
/// about 250 bytes around its nodes on every insert and removal: about
/// 1,500 instructions per event under callgrind.)
#[derive(Default)]
struct Slots(VecDeque<(u64, Slot)>);

impl Slots {
    fn position(&self, offset: u64) -> Result<usize, usize> {
        // Offsets are usually contiguous, so the slot is usually at its
        // distance from the front; search only when there are gaps.
        if let Some(at) = self.0.front().and_then(|(first, _)| offset.checked_sub(*first)) {
            if self.0.get(at as usize).is_some_and(|(o, _)| *o == offset) {
                return Ok(at as usize);
            }
        }
        self.0.binary_search_by_key(&offset, |(o, _)| *o)
    }

    /// Adds a slot unless its offset is already here.
    fn insert(&mut self, offset: u64, slot: Slot) -> bool {
        match self.0.back() {
            Some((last, _)) if *last >= offset => match self.position(offset) {
                Ok(_) => false,
                Err(at) => {
                    self.0.insert(at, (offset, slot));
                    true
                }
            },
            _ => {
                self.0.push_back((offset, slot));
                true
            }
        }
    }

    fn get(&self, offset: u64) -> Option<&Slot> {
        self.position(offset).ok().map(|at| &self.0[at].1)
    }

    fn get_mut(&mut self, offset: u64) -> Option<&mut Slot> {
        self.position(offset).ok().map(|at| &mut self.0[at].1)
    }

    fn iter(&self) -> impl Iterator<Item = (u64, &Slot)> {
        self.0.iter().map(|(o, s)| (*o, s))
    }
}

#[derive(Default)]
pub struct InFlight {
    parts: BTreeMap<TopicPartition, Slots>,
    len: usize,
    /// A commit that failed transiently; it goes out again with the next.
    carry: Option<Commit>,
}

impl InFlight {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn add(&mut self, d: Delivery, now: Instant) {
        let attempts = d.attempts;
        let slots = match self.parts.get_mut(&d.tp) {
            Some(s) => s,
            None => self.parts.entry(d.tp.clone()).or_default(),
        };
        let offset = d.offset;
        let slot = Slot {
            delivery: d,
            state: SlotState::Waiting { due: None },
            attempts,
            attempts_dirty: false,
            received: now,
        };
        // A re-fetch after a seek may repeat what is already here.
        if slots.insert(offset, slot) {
            self.len += 1;
        }
    }

    pub fn get(&self, tp: &TopicPartition, offset: u64) -> Option<&Slot> {
        self.parts.get(tp).and_then(|s| s.get(offset))
    }

    pub fn get_mut(&mut self, tp: &TopicPartition, offset: u64) -> Option<&mut Slot> {
        self.parts.get_mut(tp).and_then(|s| s.get_mut(offset))
    }

    /// Moves the first failure of every waiting event that has one forward
    /// by `by`: time a circuit breaker was open does not count toward an
    /// event's retry horizon. The change goes out with the next commit.
    pub fn forgive(&mut self, by: std::time::Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        for slots in self.parts.values_mut() {
            for (_, slot) in slots.0.iter_mut() {
                if let (SlotState::Waiting { .. }, Some(a)) = (&slot.state, slot.attempts.as_mut()) {
                    a.first_failure_ms = a.first_failure_ms.saturating_add(ms);
                    slot.attempts_dirty = true;
                }
            }
        }
    }

    /// Forgets a partition this member no longer owns; its uncommitted
    /// events will be redelivered to the new owner.
    pub fn drop_partition(&mut self, tp: &TopicPartition) {
        if let Some(slots) = self.parts.remove(tp) {
            self.len -= slots.0.len();
        }
    }

    /// Visits up to `max` events that may run at `now`, oldest first per
    /// partition, at most one per key, never overtaking an unfinished
    /// earlier event of the same key. The worker asks this several times per
    /// batch over thousands of slots, so it allocates only the key set.
    fn runnable<'a>(&'a self, max: usize, now: Instant, mut visit: impl FnMut(&'a TopicPartition, u64, &'a Slot)) {
        let mut n = 0;
        // Sized up front: growing it from empty rehashed ten times a call.
        let mut blocked: HashSet<&[u8], foldhash::fast::RandomState> =
            HashSet::with_capacity_and_hasher(max.min(self.len), Default::default());
        for (tp, slots) in &self.parts {
            blocked.clear();
            for (off, slot) in slots.iter() {
                if n >= max {
                    return;
                }
                let SlotState::Waiting { due } = &slot.state else { continue };
                if let Some(k) = slot.delivery.record.key.as_deref() {
                    if !blocked.insert(k) {
                        continue;
                    }
                }
                if due.is_none_or(|d| d <= now) {
                    visit(tp, off, slot);
                    n += 1;
                }
            }
        }
    }

    /// The events [`InFlight::runnable`] allows now, up to `max`.
    pub fn select(&self, max: usize, now: Instant) -> Vec<(TopicPartition, u64)> {
        let mut out = Vec::with_capacity(max.min(self.len));
        self.runnable(max, now, |tp, off, _| out.push((tp.clone(), off)));
        out
    }

    /// How many events could run now (bounded by `max`), and when the
    /// oldest of them arrived: the batch's max-wait clock.
    pub fn ready(&self, max: usize, now: Instant) -> (usize, Option<Instant>) {
        let (mut n, mut oldest) = (0, None::<Instant>);
        self.runnable(max, now, |_, _, slot| {
            n += 1;
            oldest = Some(oldest.map_or(slot.received, |o| o.min(slot.received)));
        });
        (n, oldest)
    }

    /// The earliest time a waiting retry comes due.
    pub fn next_due(&self) -> Option<Instant> {
        self.parts
            .values()
            .flat_map(|s| s.0.iter().map(|(_, slot)| slot))
            .filter_map(|s| match s.state {
                SlotState::Waiting { due } => due,
                _ => None,
            })
            .min()
    }

    /// Moves each partition's watermark past its fully handled prefix and
    /// returns what must be committed together.
    pub fn take_commit(&mut self) -> Commit {
        let mut commit = self.carry.take().unwrap_or_default();
        for (tp, slots) in self.parts.iter_mut() {
            let mut next = None;
            while slots.0.front().is_some_and(|(_, s)| matches!(s.state, SlotState::Done { .. })) {
                let Some((off, slot)) = slots.0.pop_front() else { break };
                self.len -= 1;
                next = Some(off + 1);
                if let SlotState::Done { dead_letter: Some((topic, record)) } = slot.state {
                    commit.dead_letters.push(DeadLetterWrite {
                        origin: slot.delivery.tp.clone(),
                        offset: off,
                        topic,
                        record,
                    });
                }
            }
            if let Some(n) = next {
                commit.offsets.push((tp.clone(), n));
            }
            for (off, slot) in slots.0.iter_mut() {
                if slot.attempts_dirty {
                    if let Some(a) = slot.attempts {
                        commit.attempts.push((tp.clone(), *off, a));
                    }
                    slot.attempts_dirty = false;
                }
            }
        }
        commit
    }

    /// Whether a commit now would move some partition's watermark: the
    /// oldest event of a partition is fully handled.
    pub fn committable(&self) -> bool {
        self.parts.values().any(|slots| slots.0.front().is_some_and(|(_, s)| matches!(s.state, SlotState::Done { .. })))
    }

    /// Per partition, the offset after the contiguous prefix of events whose
    /// results are out and that need nothing more written with the commit
    /// (no dead letter). A bus may commit these at any moment, e.g. when a
    /// rebalance takes the partition away between two regular commits.
    /// A partition with a dead letter still unwritten (in a commit that
    /// failed and waits to be retried) offers nothing: its events have left
    /// the table, but no position may pass the dead letter until it is
    /// written, or the event would end with neither result nor dead letter.
    pub fn safe_watermarks(&self) -> Vec<(TopicPartition, u64)> {
        let mut out = Vec::new();
        let unwritten =
            |tp: &TopicPartition| self.carry.as_ref().is_some_and(|c| c.dead_letters.iter().any(|d| &d.origin == tp));
        for (tp, slots) in &self.parts {
            let mut next = None;
            for (off, slot) in slots.iter() {
                match &slot.state {
                    SlotState::Done { dead_letter: None } => next = Some(off + 1),
                    _ => break,
                }
            }
            if let Some(n) = next.filter(|_| !unwritten(tp)) {
                out.push((tp.clone(), n));
            }
        }
        out
    }

    /// Whether a failed commit is waiting to be retried.
    pub fn has_carry(&self) -> bool {
        self.carry.is_some()
    }

    /// Gives back the room a burst left behind: a partition's queue keeps
    /// the capacity of its longest backlog (megabytes at a few thousand
    /// events in flight). For an idle worker, not the hot path.
    pub fn shrink(&mut self) {
        self.parts.retain(|_, slots| !slots.0.is_empty());
        for slots in self.parts.values_mut() {
            slots.0.shrink_to_fit();
        }
    }

    /// Keeps a commit that failed transiently so that its dead letters,
    /// offsets and attempt state go out with the next one; nothing is lost.
    pub fn restore(&mut self, commit: Commit) {
        self.carry = Some(commit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(p: u32, off: u64, key: &str) -> Delivery {
        Delivery {
            tp: TopicPartition { topic: "t".into(), partition: p },
            offset: off,
            timestamp_ms: 0,
            record: Record { key: Some(key.as_bytes().to_vec()), headers: Default::default(), value: vec![] },
            attempts: None,
        }
    }

    #[test]
    fn one_per_key_and_retry_blocks_only_its_key() {
        let now = Instant::now();
        let mut f = InFlight::default();
        for (o, k) in [(0, "a"), (1, "b"), (2, "a"), (3, "c")] {
            f.add(d(0, o, k), now);
        }
        let sel: Vec<u64> = f.select(10, now).into_iter().map(|(_, o)| o).collect();
        assert_eq!(sel, vec![0, 1, 3]);
        let tp = TopicPartition { topic: "t".into(), partition: 0 };
        f.get_mut(&tp, 0).unwrap().state = SlotState::Waiting { due: Some(now + std::time::Duration::from_secs(1)) };
        f.get_mut(&tp, 1).unwrap().state = SlotState::Done { dead_letter: None };
        f.get_mut(&tp, 3).unwrap().state = SlotState::Done { dead_letter: None };
        // Key `a` waits for its retry; offset 2 must not overtake it.
        assert!(f.select(10, now).is_empty());
        // The watermark waits at the retrying offset 0.
        let c = f.take_commit();
        assert!(c.offsets.is_empty());
        f.get_mut(&tp, 0).unwrap().state = SlotState::Done { dead_letter: None };
        let c = f.take_commit();
        assert_eq!(c.offsets, vec![(tp.clone(), 2)]);
        assert_eq!(f.len(), 2, "offset 2 waits, offset 3 is done but behind it");
    }

    #[test]
    fn slots_stay_in_offset_order_and_repeats_are_ignored() {
        let now = Instant::now();
        let mut f = InFlight::default();
        // Gaps (compacted offsets), a late lower offset and a repeat after a seek.
        for o in [5, 7, 9, 6, 7] {
            f.add(d(0, o, &format!("k{o}")), now);
        }
        assert_eq!(f.len(), 4);
        let tp = TopicPartition { topic: "t".into(), partition: 0 };
        let order: Vec<u64> = f.select(10, now).into_iter().map(|(_, o)| o).collect();
        assert_eq!(order, vec![5, 6, 7, 9]);
        assert!(f.get(&tp, 8).is_none());
        for o in [5, 6, 9] {
            f.get_mut(&tp, o).unwrap().state = SlotState::Done { dead_letter: None };
        }
        assert_eq!(f.take_commit().offsets, vec![(tp.clone(), 7)]);
        f.get_mut(&tp, 7).unwrap().state = SlotState::Done { dead_letter: None };
        assert_eq!(f.take_commit().offsets, vec![(tp.clone(), 10)]);
        assert!(f.is_empty());
    }

    #[test]
    fn safe_watermarks_stop_before_dead_letters_and_unfinished_events() {
        let now = Instant::now();
        let mut f = InFlight::default();
        for o in 0..4 {
            f.add(d(0, o, &format!("k{o}")), now);
        }
        let tp = TopicPartition { topic: "t".into(), partition: 0 };
        assert!(f.safe_watermarks().is_empty(), "nothing handled yet");
        assert!(!f.committable());
        f.get_mut(&tp, 0).unwrap().state = SlotState::Done { dead_letter: None };
        f.get_mut(&tp, 1).unwrap().state = SlotState::Done { dead_letter: Some(("dlq".into(), Record::default())) };
        f.get_mut(&tp, 2).unwrap().state = SlotState::Done { dead_letter: None };
        // The dead letter at 1 must be written before anything passes it.
        assert_eq!(f.safe_watermarks(), vec![(tp.clone(), 1)]);
        assert!(f.committable(), "offset 0 is handled");
        f.take_commit();
        // Committed through 2; offset 3 is unfinished.
        assert!(f.safe_watermarks().is_empty());
        assert!(!f.committable(), "only an unfinished event is left");
    }

    #[test]
    fn nothing_is_staged_past_a_dead_letter_whose_write_failed() {
        let now = Instant::now();
        let mut f = InFlight::default();
        for o in 0..4 {
            f.add(d(0, o, &format!("k{o}")), now);
        }
        let tp = TopicPartition { topic: "t".into(), partition: 0 };
        f.get_mut(&tp, 0).unwrap().state = SlotState::Done { dead_letter: Some(("dlq".into(), Record::default())) };
        f.get_mut(&tp, 1).unwrap().state = SlotState::Done { dead_letter: None };
        let c = f.take_commit();
        assert_eq!((c.offsets.clone(), c.dead_letters.len(), c.dead_letters[0].offset), (vec![(tp.clone(), 2)], 1, 0));
        // The commit failed: it is carried, its dead letter still unwritten.
        f.restore(c);
        f.get_mut(&tp, 2).unwrap().state = SlotState::Done { dead_letter: None };
        assert!(f.safe_watermarks().is_empty(), "offset 3 would skip the unwritten dead letter at 0");
        // The retried commit carries the dead letter and moves past it.
        let c = f.take_commit();
        assert_eq!(c.dead_letters.len(), 1);
        assert_eq!(c.offsets.last(), Some(&(tp.clone(), 3)));
        assert!(!f.has_carry());
    }
}

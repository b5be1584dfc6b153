//! The newest events of an SQLite log, kept in memory by the process that
//! wrote them, so that its own followers of `$all` (the projectors) read
//! them from memory instead of from the file.

use std::collections::VecDeque;

use crate::RecordedEvent;

/// How many of the newest events the tail keeps. A follower further behind
/// reads the file, as it would without a tail.
pub(crate) const TAIL_CAPACITY: usize = 8192;

/// Every event with a position in `(start, start + events.len()]`, in order.
///
/// SQLite positions are rowids, and each insert takes the largest rowid so
/// far plus one, so the events one writer commits form a gapless run that
/// follows on from whatever was last in the file. When a commit does not
/// follow on from the tail, another process wrote in between: the tail then
/// starts over at that commit, and readers before it go to the file.
pub(crate) struct Tail {
    start: u64,
    events: VecDeque<RecordedEvent>,
    capacity: usize,
}

impl Tail {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            start: 0,
            events: VecDeque::new(),
            capacity,
        }
    }

    /// The position of the newest event the tail holds (or its start).
    fn end(&self) -> u64 {
        self.start + self.events.len() as u64
    }

    /// Adds events that have just been committed, in position order.
    pub(crate) fn extend(&mut self, committed: impl IntoIterator<Item = RecordedEvent>) {
        for event in committed {
            let position = event.position.commit;
            if position != self.end() + 1 {
                self.events.clear();
                self.start = position.saturating_sub(1);
            }
            self.events.push_back(event);
        }
        while self.events.len() > self.capacity {
            self.events.pop_front();
            self.start += 1;
        }
    }

    /// Up to `limit` events after position `after` (none when `after` is
    /// the newest event held), or `None` when the tail does not hold
    /// `after` and everything that follows it.
    pub(crate) fn read(&self, after: u64, limit: usize) -> Option<Vec<RecordedEvent>> {
        if after < self.start || after > self.end() {
            return None;
        }
        let from = usize::try_from(after - self.start).ok()?;
        Some(self.events.range(from..).take(limit).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Position;

    fn event(position: u64) -> RecordedEvent {
        RecordedEvent::at(Position::new(position, position))
    }

    fn positions(events: Option<Vec<RecordedEvent>>) -> Option<Vec<u64>> {
        events.map(|events| events.iter().map(|e| e.position.commit).collect())
    }

    #[test]
    fn serves_only_what_follows_on_from_a_position_it_holds() {
        let mut tail = Tail::new(100);
        // The file held 10 events before this process wrote.
        tail.extend((11..=14).map(event));
        assert_eq!(positions(tail.read(10, 100)), Some(vec![11, 12, 13, 14]));
        assert_eq!(positions(tail.read(12, 1)), Some(vec![13]));
        // At its end: nothing newer from this process.
        assert_eq!(positions(tail.read(14, 100)), Some(vec![]));
        // Before it, or beyond it.
        assert_eq!(positions(tail.read(9, 100)), None);
        assert_eq!(positions(tail.read(15, 100)), None);
    }

    #[test]
    fn starts_over_when_another_writer_committed_in_between() {
        let mut tail = Tail::new(100);
        tail.extend((1..=3).map(event));
        // Positions 4 and 5 were written by another process.
        tail.extend((6..=7).map(event));
        assert_eq!(positions(tail.read(3, 100)), None);
        assert_eq!(positions(tail.read(2, 100)), None);
        assert_eq!(positions(tail.read(5, 100)), Some(vec![6, 7]));
        assert_eq!(positions(tail.read(7, 100)), Some(vec![]));
    }

    #[test]
    fn keeps_only_the_newest_events() {
        let mut tail = Tail::new(3);
        tail.extend((1..=5).map(event));
        assert_eq!(positions(tail.read(1, 100)), None);
        assert_eq!(positions(tail.read(2, 100)), Some(vec![3, 4, 5]));
    }
}

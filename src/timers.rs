//! Main-thread timers: a clock-free queue the host side drives.
//!
//! `xxnet_timer_start` adds an entry; `xxnet_poll_recv` fires the due ones
//! as `XXNET_EVENT_TIMER` events on the polling thread and ends its wait
//! when the next one is due. A binary heap orders deadlines; stopping a
//! timer only forgets it (its heap entry is skipped when it surfaces, and
//! the heap is rebuilt when stale entries outnumber live ones), so start,
//! stop and fire cost O(log n) at most with 100 000 live timers.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
struct Entry {
    due: Instant,
    interval: Duration,
    user_data: u64,
}

/// Timers by id (ids start at 1, never reused).
#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    live: HashMap<u64, Entry>,
    next_id: u64,
}

impl Timers {
    /// Schedules a timer `delay` from `now`, repeating every `interval` (zero: once). Returns its id.
    pub fn start(
        &mut self,
        now: Instant,
        delay: Duration,
        interval: Duration,
        user_data: u64,
    ) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        let due = now + delay;
        self.live.insert(
            id,
            Entry {
                due,
                interval,
                user_data,
            },
        );
        self.heap.push(Reverse((due, id)));
        id
    }

    /// Cancels a timer. False if it is not live (unknown, stopped, or a one-shot that fired).
    pub fn stop(&mut self, id: u64) -> bool {
        let found = self.live.remove(&id).is_some();
        if found && self.heap.len() > 64 && self.heap.len() > 2 * self.live.len() {
            self.compact();
        }
        found
    }

    fn compact(&mut self) {
        let live = &self.live;
        let entries: Vec<_> = self
            .heap
            .drain()
            .filter(|Reverse((due, id))| live.get(id).is_some_and(|e| e.due == *due))
            .collect();
        self.heap = entries.into();
    }

    /// Live timers.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// True when no timer is live.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// When the next live timer is due.
    pub fn next_due(&mut self) -> Option<Instant> {
        while let Some(&Reverse((due, id))) = self.heap.peek() {
            if self.live.get(&id).is_some_and(|e| e.due == due) {
                return Some(due);
            }
            self.heap.pop();
        }
        None
    }

    /// Fires every timer due at `now` (never one that is not), at most
    /// `max`, calling `f(id, user_data)`. A repeating timer is rescheduled
    /// one interval after its due time, or one interval after `now` if the
    /// host fell that far behind (missed periods are skipped, not bunched).
    pub fn fire(&mut self, now: Instant, max: usize, mut f: impl FnMut(u64, u64)) -> usize {
        let mut n = 0;
        while n < max {
            let Some(&Reverse((due, id))) = self.heap.peek() else {
                break;
            };
            if due > now {
                break;
            }
            self.heap.pop();
            let Some(e) = self.live.get_mut(&id) else {
                continue;
            };
            if e.due != due {
                continue;
            }
            f(id, e.user_data);
            n += 1;
            if e.interval.is_zero() {
                self.live.remove(&id);
            } else {
                let mut next = due + e.interval;
                if next <= now {
                    next = now + e.interval;
                }
                e.due = next;
                self.heap.push(Reverse((next, id)));
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn fires_in_order_never_early() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        let a = t.start(t0, ms(30), Duration::ZERO, 1);
        let b = t.start(t0, ms(10), Duration::ZERO, 2);
        assert_eq!(t.next_due(), Some(t0 + ms(10)));
        let mut got = Vec::new();
        assert_eq!(t.fire(t0 + ms(9), 10, |id, u| got.push((id, u))), 0);
        t.fire(t0 + ms(30), 10, |id, u| got.push((id, u)));
        assert_eq!(got, vec![(b, 2), (a, 1)]);
        assert!(t.is_empty());
        assert_eq!(t.next_due(), None);
    }

    #[test]
    fn repeating_timers_keep_their_phase_and_skip_missed_periods() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        let id = t.start(t0, ms(10), ms(10), 7);
        let mut n = 0;
        t.fire(t0 + ms(12), 10, |_, _| n += 1);
        assert_eq!(t.next_due(), Some(t0 + ms(20)), "no drift");
        t.fire(t0 + ms(55), 10, |_, _| n += 1);
        assert_eq!(n, 2, "a late host gets one firing, not a burst");
        assert_eq!(t.next_due(), Some(t0 + ms(65)));
        assert!(t.stop(id));
        assert!(!t.stop(id));
        assert_eq!(t.next_due(), None);
    }

    #[test]
    fn stop_before_fire_and_max_per_call() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        let ids: Vec<u64> = (0..10)
            .map(|i| t.start(t0, ms(i), Duration::ZERO, i))
            .collect();
        t.stop(ids[0]);
        let mut got = Vec::new();
        assert_eq!(t.fire(t0 + ms(100), 4, |_, u| got.push(u)), 4);
        assert_eq!(got, vec![1, 2, 3, 4]);
        t.fire(t0 + ms(100), 100, |_, u| got.push(u));
        assert_eq!(got.len(), 9);
    }

    #[test]
    fn stale_entries_are_compacted() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        let ids: Vec<u64> = (0..10_000)
            .map(|i| t.start(t0, ms(i), Duration::ZERO, i))
            .collect();
        for id in &ids[..9_900] {
            t.stop(*id);
        }
        assert_eq!(t.len(), 100);
        assert!(
            t.heap.len() <= 2 * 100 + 64,
            "heap {} entries",
            t.heap.len()
        );
    }
}

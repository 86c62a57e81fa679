//! The jobs a worker process has cleared for delivery and not yet started, one queue per
//! action kind shared by all the kind's consumers, so whichever lane frees up takes the
//! oldest job that may go, whoever read it.
//!
//! A job waits here while the process has no place among its deliveries in flight, or
//! while its target has its share in flight. A job whose target stays busy for long (a slow
//! target) goes back to the retry set once the queue is full, so it never keeps out the jobs
//! of other targets; a job whose target is merely busy at this instant (a fast target at its
//! share) stays, since a place frees within moments.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::targets::{Slot, Targets};

/// A job that goes to a target whose share is counted.
pub(crate) trait Addressed {
    /// The target's key (see [`crate::targets::target_of`]); `None` is never counted.
    fn target(&self) -> Option<&str>;
}

/// How the queue stands, as a consumer decides whether to read more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Look {
    pub queued: usize,
    /// Whether some job waiting has room at its target.
    pub runnable: bool,
    /// When the oldest job turns stale, while the queue is full and nothing may go.
    pub stale_at: Option<Instant>,
}

struct Entry<T> {
    since: Instant,
    job: T,
}

pub(crate) struct Waiting<T> {
    jobs: Mutex<VecDeque<Entry<T>>>,
    /// Below this many jobs, consumers read more.
    low: usize,
    /// At this many, consumers stop reading, and stale jobs go back to the retry set.
    full: usize,
    /// How long a job waits for its target before it counts as stale.
    stale: Duration,
    /// Marked each time taking a job brings the queue below `low` or below `full`: a
    /// consumer that stopped reading looks again.
    room: watch::Sender<()>,
}

impl<T: Addressed> Waiting<T> {
    pub fn new(low: usize, full: usize, stale: Duration) -> Self {
        Self { jobs: Mutex::default(), low, full: full.max(low), stale, room: watch::Sender::new(()) }
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, VecDeque<Entry<T>>> {
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks that the queue gained room (see [`Waiting::room`]).
    pub fn room(&self) -> watch::Receiver<()> {
        self.room.subscribe()
    }

    pub fn push(&self, jobs: impl IntoIterator<Item = T>) {
        let since = Instant::now();
        self.jobs().extend(jobs.into_iter().map(|job| Entry { since, job }));
    }

    pub fn look(&self, targets: &Targets) -> Look {
        let jobs = self.jobs();
        let runnable = targets.first_with_room(jobs.iter().map(|e| e.job.target())).is_some();
        let stale_at =
            (jobs.len() >= self.full && !runnable).then(|| jobs.front().map(|e| e.since + self.stale)).flatten();
        Look { queued: jobs.len(), runnable, stale_at }
    }

    /// Whether a consumer that stands as `look` should read more: when the queue runs low,
    /// or when nothing waiting may go and the queue has room.
    pub fn wants_more(&self, look: Look) -> bool {
        look.queued < self.low || (!look.runnable && look.queued < self.full)
    }

    /// The oldest job whose target has room, with its place in the target's share.
    pub fn next(&self, targets: &Targets) -> Option<(T, Slot)> {
        let mut jobs = self.jobs();
        let (at, slot) = targets.take_first(jobs.iter().map(|e| e.job.target()))?;
        let job = jobs.remove(at)?.job;
        let left = jobs.len();
        drop(jobs);
        if left + 1 == self.low || left + 1 == self.full {
            self.room.send_replace(());
        }
        Some((job, slot))
    }

    /// When the queue is full: takes out the jobs that have waited at least the stale time
    /// for a target that still has no room, to come back later through the retry set.
    pub fn evict_stale(&self, targets: &Targets, now: Instant) -> Vec<T> {
        let mut jobs = self.jobs();
        if jobs.len() < self.full {
            return Vec::new();
        }
        let mut evicted = Vec::new();
        let mut kept = VecDeque::with_capacity(jobs.len());
        for entry in jobs.drain(..) {
            if now.duration_since(entry.since) >= self.stale && !targets.has_room(entry.job.target()) {
                evicted.push(entry.job);
            } else {
                kept.push_back(entry);
            }
        }
        *jobs = kept;
        evicted
    }

    /// Takes out every job (the process is stopping).
    pub fn drain(&self) -> Vec<T> {
        self.jobs().drain(..).map(|e| e.job).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Job(&'static str, u32);

    impl Addressed for Job {
        fn target(&self) -> Option<&str> {
            Some(self.0)
        }
    }

    fn queue(full: usize) -> Waiting<Job> {
        Waiting::new(2, full, Duration::from_secs(1))
    }

    #[test]
    fn the_oldest_job_with_room_goes_first() {
        let targets = Targets::new(1);
        let waiting = queue(8);
        waiting.push([Job("a", 1), Job("a", 2), Job("b", 3)]);
        let (first, _slot_a) = waiting.next(&targets).unwrap();
        assert_eq!(first.1, 1);
        // "a" has its share in flight: the job of "b" passes the second of "a".
        let (second, _slot_b) = waiting.next(&targets).unwrap();
        assert_eq!(second.1, 3);
        assert!(waiting.next(&targets).is_none());
        let look = waiting.look(&targets);
        assert_eq!((look.queued, look.runnable), (1, false));
    }

    #[test]
    fn a_full_queue_of_a_busy_target_stops_reading_until_its_oldest_is_stale() {
        let targets = Targets::new(1);
        let waiting = queue(4);
        let _slot = targets.take(Some("a")).unwrap();
        waiting.push((0..4).map(|i| Job("a", i)));
        let look = waiting.look(&targets);
        assert!(!look.runnable);
        assert!(!waiting.wants_more(look), "full, and nothing may go: no more reading");
        let stale_at = look.stale_at.unwrap();
        // Not stale yet: a busy target's jobs stay; they are not parked for a moment's wait.
        assert!(waiting.evict_stale(&targets, stale_at - Duration::from_millis(1)).is_empty());
        assert_eq!(waiting.look(&targets).queued, 4);
        // Stale, while their target is still busy: they go back.
        let evicted = waiting.evict_stale(&targets, stale_at);
        assert_eq!(evicted.len(), 4);
        assert!(waiting.wants_more(waiting.look(&targets)));
    }

    #[test]
    fn stale_jobs_of_a_target_with_room_stay() {
        let targets = Targets::new(1);
        let waiting = queue(2);
        waiting.push([Job("a", 1), Job("b", 2)]);
        let _busy = targets.take(Some("b")).unwrap();
        let later = Instant::now() + Duration::from_secs(5);
        let evicted = waiting.evict_stale(&targets, later);
        assert_eq!(evicted.iter().map(|j| j.1).collect::<Vec<_>>(), vec![2]);
        assert_eq!(waiting.look(&targets).queued, 1);
    }

    #[test]
    fn a_queue_below_full_evicts_nothing() {
        let targets = Targets::new(1);
        let waiting = queue(4);
        let _busy = targets.take(Some("a")).unwrap();
        waiting.push([Job("a", 1)]);
        assert!(waiting.evict_stale(&targets, Instant::now() + Duration::from_secs(60)).is_empty());
        let look = waiting.look(&targets);
        assert!(waiting.wants_more(look), "nothing may go and there is room: read more");
        assert_eq!(look.stale_at, None);
    }

    #[test]
    fn taking_jobs_marks_room_when_the_queue_falls_below_its_marks() {
        let targets = Targets::new(100);
        let waiting = queue(4);
        let mut room = waiting.room();
        room.borrow_and_update();
        waiting.push((0..5).map(|i| Job("a", i)));
        let mut slots = Vec::new();
        slots.push(waiting.next(&targets).unwrap().1); // 4 left: still full
        assert!(!room.has_changed().unwrap());
        slots.push(waiting.next(&targets).unwrap().1); // 3 left: below full
        assert!(room.has_changed().unwrap());
        room.borrow_and_update();
        slots.push(waiting.next(&targets).unwrap().1); // 2 left: not yet low
        assert!(!room.has_changed().unwrap());
        slots.push(waiting.next(&targets).unwrap().1); // 1 left: low
        assert!(room.has_changed().unwrap());
    }
}

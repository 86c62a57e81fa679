//! The jobs a worker process has cleared for delivery and not yet started, one queue per
//! action kind shared by all the kind's consumers, so whichever lane frees up takes the
//! oldest job that may go, whoever read it.
//!
//! A job waits here while the process has no place among its deliveries in flight, or
//! while its target has its share in flight. Once the queue is full of jobs that may not go,
//! the jobs of slow targets (at their share, and nothing landed for a while) go back to the
//! retry set, so they never keep out the jobs of other targets; the jobs of a target that is
//! merely busy (a fast target at its share, landing deliveries all the time) stay, since a
//! place frees within moments.

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
    /// When the first target of a waiting job turns slow, while the queue is full and
    /// nothing may go.
    pub stale_at: Option<Instant>,
}

pub(crate) struct Waiting<T> {
    jobs: Mutex<VecDeque<T>>,
    /// Below this many jobs, consumers read more.
    low: usize,
    /// At this many, consumers stop reading, and the jobs of slow targets go back to the
    /// retry set.
    full: usize,
    /// How long a target at its share may land nothing before it counts as slow.
    patience: Duration,
    /// Marked each time taking a job brings the queue below `low` or below `full`: a
    /// consumer that stopped reading looks again.
    room: watch::Sender<()>,
}

impl<T: Addressed> Waiting<T> {
    pub fn new(low: usize, full: usize, patience: Duration) -> Self {
        Self { jobs: Mutex::default(), low, full: full.max(low), patience, room: watch::Sender::new(()) }
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, VecDeque<T>> {
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks that the queue gained room (see [`Waiting::room`]).
    pub fn room(&self) -> watch::Receiver<()> {
        self.room.subscribe()
    }

    pub fn push(&self, jobs: impl IntoIterator<Item = T>) {
        self.jobs().extend(jobs);
    }

    pub fn look(&self, targets: &Targets) -> Look {
        let jobs = self.jobs();
        let runnable = targets.first_with_room(jobs.iter().map(Addressed::target)).is_some();
        let stale_at = if jobs.len() >= self.full && !runnable {
            targets.turns_slow_at(jobs.iter().map(Addressed::target), self.patience)
        } else {
            None
        };
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
        let (at, slot) = targets.take_first(jobs.iter().map(Addressed::target))?;
        let job = jobs.remove(at)?;
        let left = jobs.len();
        drop(jobs);
        if left + 1 == self.low || left + 1 == self.full {
            self.room.send_replace(());
        }
        Some((job, slot))
    }

    /// When the queue is full: takes out the jobs of slow targets (see [`Targets::slow`]), to
    /// come back later through the retry set.
    pub fn evict_slow(&self, targets: &Targets, now: Instant) -> Vec<T> {
        let mut jobs = self.jobs();
        if jobs.len() < self.full {
            return Vec::new();
        }
        let slow = targets.slow(jobs.iter().map(Addressed::target), now, self.patience);
        if !slow.contains(&true) {
            return Vec::new();
        }
        let mut evicted = Vec::new();
        let mut kept = VecDeque::with_capacity(jobs.len());
        for (job, slow) in jobs.drain(..).zip(slow) {
            if slow { evicted.push(job) } else { kept.push_back(job) }
        }
        *jobs = kept;
        drop(jobs);
        self.room.send_replace(());
        evicted
    }

    /// Takes out every job (the process is stopping).
    pub fn drain(&self) -> Vec<T> {
        self.jobs().drain(..).collect()
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
    fn a_full_queue_of_a_target_landing_nothing_goes_back_once_it_turns_slow() {
        let targets = Targets::new(1);
        let waiting = queue(4);
        let _slot = targets.take(Some("a")).unwrap();
        waiting.push((0..4).map(|i| Job("a", i)));
        let look = waiting.look(&targets);
        assert!(!look.runnable);
        assert!(!waiting.wants_more(look), "full, and nothing may go: no more reading");
        let slow_at = look.stale_at.unwrap();
        // Not slow yet: a busy target's jobs stay; they are not parked for a moment's wait.
        assert!(waiting.evict_slow(&targets, slow_at - Duration::from_millis(1)).is_empty());
        assert_eq!(waiting.look(&targets).queued, 4);
        // Nothing landed for the whole patience: its jobs go back.
        let evicted = waiting.evict_slow(&targets, slow_at);
        assert_eq!(evicted.len(), 4);
        assert!(waiting.wants_more(waiting.look(&targets)));
    }

    #[test]
    fn the_jobs_of_a_target_that_lands_deliveries_stay_however_long_they_wait() {
        let targets = Targets::new(1);
        let waiting = queue(4);
        waiting.push((0..4).map(|i| Job("a", i)));
        let start = Instant::now();
        // One delivery after the other lands; the queue stays full of the target's jobs.
        for i in 4..20 {
            let (_job, slot) = waiting.next(&targets).unwrap();
            waiting.push([Job("a", i)]);
            let look = waiting.look(&targets);
            let slow_at = look.stale_at.unwrap();
            assert!(slow_at >= start + Duration::from_secs(1), "the patience counts from the last landing");
            // Long after the jobs were queued, but the target landed a delivery a moment ago.
            drop(slot);
            let _next = targets.take(Some("a")).unwrap();
            assert!(waiting.evict_slow(&targets, Instant::now()).is_empty());
        }
    }

    #[test]
    fn only_the_jobs_of_slow_targets_go_back() {
        let targets = Targets::new(1);
        let waiting = queue(2);
        waiting.push([Job("a", 1), Job("b", 2)]);
        let _busy = targets.take(Some("b")).unwrap();
        let later = Instant::now() + Duration::from_secs(5);
        let evicted = waiting.evict_slow(&targets, later);
        assert_eq!(evicted.iter().map(|j| j.1).collect::<Vec<_>>(), vec![2]);
        assert_eq!(waiting.look(&targets).queued, 1);
    }

    #[test]
    fn a_queue_below_full_evicts_nothing() {
        let targets = Targets::new(1);
        let waiting = queue(4);
        let _busy = targets.take(Some("a")).unwrap();
        waiting.push([Job("a", 1)]);
        assert!(waiting.evict_slow(&targets, Instant::now() + Duration::from_secs(60)).is_empty());
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

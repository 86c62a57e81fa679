//! Fair shares of the deliveries in flight: at most a set number at once per target (the
//! origin of a webhook URL or an MCP server), so that one slow host holds at most its own
//! share of a process's deliveries, never the others'.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use shared::trigger::Action;

/// One target's deliveries in flight.
#[derive(Debug, Clone, Copy)]
struct Share {
    in_flight: usize,
    /// When its last delivery landed (or its first started): a target at its share that
    /// lands nothing for long is slow, not merely busy.
    landed: Instant,
}

/// Deliveries in flight per target, shared by the consumers of a process.
#[derive(Clone)]
pub struct Targets {
    cap: usize,
    busy: Arc<Mutex<HashMap<String, Share>>>,
}

type Busy = HashMap<String, Share>;

impl Targets {
    pub fn new(cap: usize) -> Self {
        Self { cap: cap.max(1), busy: Arc::default() }
    }

    fn busy(&self) -> std::sync::MutexGuard<'_, Busy> {
        self.busy.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for one delivery to `target` (see [`target_of`]), or `None` when it already has
    /// its share in flight. Deliveries without a target of their own (Telegram, paced by the
    /// Bot API's own limits, or an action that does not parse and fails at once) always get
    /// one.
    pub fn take(&self, target: Option<&str>) -> Option<Slot> {
        self.take_first([target]).map(|(_, slot)| slot)
    }

    /// Whether [`Targets::take`] would give `target` a slot now.
    pub fn has_room(&self, target: Option<&str>) -> bool {
        self.first_with_room([target]).is_some()
    }

    /// The place among `targets` of the first one with room, under one lock, each busy
    /// target looked up once however often it comes back (a queue of jobs mostly for one
    /// busy target is scanned at the cost of string comparisons).
    pub fn first_with_room<'a>(&self, targets: impl IntoIterator<Item = Option<&'a str>>) -> Option<usize> {
        let busy = self.busy();
        self.scan(&busy, targets).map(|(at, _)| at)
    }

    /// Like [`Targets::first_with_room`], and takes a slot for the target found.
    pub fn take_first<'a>(&self, targets: impl IntoIterator<Item = Option<&'a str>>) -> Option<(usize, Slot)> {
        let mut busy = self.busy();
        let (at, key) = self.scan(&busy, targets)?;
        if let Some(key) = key {
            match busy.get_mut(key) {
                Some(share) => share.in_flight += 1,
                None => {
                    busy.insert(key.to_owned(), Share { in_flight: 1, landed: Instant::now() });
                }
            }
        }
        Some((at, Slot { targets: self.clone(), key: key.map(str::to_owned) }))
    }

    fn scan<'a>(
        &self,
        busy: &Busy,
        targets: impl IntoIterator<Item = Option<&'a str>>,
    ) -> Option<(usize, Option<&'a str>)> {
        let mut full = Seen::default();
        for (at, target) in targets.into_iter().enumerate() {
            let Some(key) = target else { return Some((at, None)) };
            if full.contains(key) {
                continue;
            }
            if busy.get(key).is_none_or(|share| share.in_flight < self.cap) {
                return Some((at, Some(key)));
            }
            full.insert(key);
        }
        None
    }

    /// For each of `targets`, whether it is slow: at its share with nothing landed for
    /// `patience`. Under one lock.
    pub fn slow<'a>(
        &self,
        targets: impl IntoIterator<Item = Option<&'a str>>,
        now: Instant,
        patience: Duration,
    ) -> Vec<bool> {
        let busy = self.busy();
        targets
            .into_iter()
            .map(|target| {
                target.and_then(|key| busy.get(key)).is_some_and(|share| {
                    share.in_flight >= self.cap && now.saturating_duration_since(share.landed) >= patience
                })
            })
            .collect()
    }

    /// The earliest time one of `targets` that is at its share turns slow (see
    /// [`Targets::slow`]), if it lands nothing before.
    pub fn turns_slow_at<'a>(
        &self,
        targets: impl IntoIterator<Item = Option<&'a str>>,
        patience: Duration,
    ) -> Option<Instant> {
        let busy = self.busy();
        let mut seen = Seen::default();
        let mut earliest: Option<Instant> = None;
        for key in targets.into_iter().flatten() {
            if seen.contains(key) {
                continue;
            }
            seen.insert(key);
            if let Some(share) = busy.get(key).filter(|share| share.in_flight >= self.cap) {
                let at = share.landed + patience;
                earliest = Some(earliest.map_or(at, |e| e.min(at)));
            }
        }
        earliest
    }

    /// Deliveries in flight to `target` (an origin such as `http://127.0.0.1:8080`).
    pub fn in_flight(&self, target: &str) -> usize {
        self.busy().get(target).map_or(0, |share| share.in_flight)
    }
}

/// Targets already met in one scan: the last one compared first (a queue mostly holds runs
/// of one target), then a set.
#[derive(Default)]
struct Seen<'a> {
    last: Option<&'a str>,
    others: HashSet<&'a str>,
}

impl<'a> Seen<'a> {
    fn contains(&self, key: &str) -> bool {
        self.last == Some(key) || self.others.contains(key)
    }

    fn insert(&mut self, key: &'a str) {
        if let Some(last) = self.last.replace(key) {
            self.others.insert(last);
        }
    }
}

/// One delivery's place in its target's share; given back when dropped.
pub struct Slot {
    targets: Targets,
    key: Option<String>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(key) = &self.key else { return };
        let mut busy = self.targets.busy();
        if let Some(share) = busy.get_mut(key) {
            share.in_flight = share.in_flight.saturating_sub(1);
            share.landed = Instant::now();
            if share.in_flight == 0 {
                busy.remove(key);
            }
        }
    }
}

/// The target an action delivers to (its origin), `None` for Telegram: what
/// [`Targets::take`] counts by.
pub fn target_of(action: &Action) -> Option<String> {
    let url = match action {
        Action::Webhook(webhook) => &webhook.url,
        Action::Mcp(mcp) => &mcp.server_url,
        Action::Telegram(_) => return None,
    };
    // A URL that does not parse fails its own attempt; its text stands for the target.
    Some(reqwest::Url::parse(url).map_or_else(|_| url.clone(), |u| u.origin().ascii_serialization()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook(url: &str) -> Option<String> {
        let action: Action = serde_json::from_value(
            serde_json::json!({"type": "webhook", "url": url, "method": "POST", "timeout_ms": 1000}),
        )
        .expect("action");
        target_of(&action)
    }

    #[test]
    fn each_origin_has_its_own_share() {
        let targets = Targets::new(2);
        let slow = webhook("https://slow.example/a");
        let first = targets.take(slow.as_deref()).expect("one");
        let _second = targets.take(webhook("https://slow.example/b?x=1").as_deref()).expect("two");
        assert!(targets.take(slow.as_deref()).is_none(), "the third waits");
        assert!(targets.take(webhook("https://fast.example/a").as_deref()).is_some(), "another origin is not held up");
        assert!(
            targets.take(webhook("https://slow.example:8443/a").as_deref()).is_some(),
            "another port is another origin"
        );
        drop(first);
        let _third = targets.take(slow.as_deref()).expect("a slot given back is taken again");
        assert_eq!(targets.in_flight("https://slow.example"), 2);
        assert_eq!(targets.in_flight("https://fast.example"), 0, "slots dropped are given back");
    }
}

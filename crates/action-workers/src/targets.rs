//! Fair shares of the deliveries in flight: at most a set number at once per target (the
//! origin of a webhook URL or an MCP server), so that one slow host holds at most its own
//! share of a process's deliveries, never the others'.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use shared::trigger::Action;

/// Deliveries in flight per target, shared by the consumers of a process.
#[derive(Clone)]
pub struct Targets {
    cap: usize,
    busy: Arc<Mutex<HashMap<String, usize>>>,
}

impl Targets {
    pub fn new(cap: usize) -> Self {
        Self { cap: cap.max(1), busy: Arc::default() }
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
        let busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        self.scan(&busy, targets).map(|(at, _)| at)
    }

    /// Like [`Targets::first_with_room`], and takes a slot for the target found.
    pub fn take_first<'a>(&self, targets: impl IntoIterator<Item = Option<&'a str>>) -> Option<(usize, Slot)> {
        let mut busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        let (at, key) = self.scan(&busy, targets)?;
        if let Some(key) = key {
            match busy.get_mut(key) {
                Some(count) => *count += 1,
                None => {
                    busy.insert(key.to_owned(), 1);
                }
            }
        }
        Some((at, Slot { targets: self.clone(), key: key.map(str::to_owned) }))
    }

    fn scan<'a>(
        &self,
        busy: &HashMap<String, usize>,
        targets: impl IntoIterator<Item = Option<&'a str>>,
    ) -> Option<(usize, Option<&'a str>)> {
        // Targets seen at their share in this scan; few, since each holds `cap` in flight.
        let mut full: Vec<&str> = Vec::new();
        for (at, target) in targets.into_iter().enumerate() {
            let Some(key) = target else { return Some((at, None)) };
            if full.contains(&key) {
                continue;
            }
            if busy.get(key).copied().unwrap_or(0) < self.cap {
                return Some((at, Some(key)));
            }
            full.push(key);
        }
        None
    }

    /// Deliveries in flight to `target` (an origin such as `http://127.0.0.1:8080`).
    pub fn in_flight(&self, target: &str) -> usize {
        self.busy.lock().unwrap_or_else(PoisonError::into_inner).get(target).copied().unwrap_or(0)
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
        let mut busy = self.targets.busy.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = busy.get_mut(key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
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

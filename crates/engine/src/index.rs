//! Finds the triggers an event can concern without looking at the others.
//!
//! Each trigger is filed under the most selective part of its scope, and only there:
//! - a scope that lists agents, under each of its agents;
//! - else one that narrows the event types (a registry stands for its event types) and lists
//!   chains, under each (chain, event type) pair: at most nine per chain;
//! - else one that narrows the event types, under each of its types;
//! - else one that lists chains, under each of its chains;
//! - else with the catch-all triggers.
//!
//! Memory is therefore linear in the lengths of the scope lists (a trigger listing 1,000
//! chains and 1,000 agents takes 1,000 slots and a sorted list of 1,000 chains), never in
//! their product. An event is looked up under five keys (its agent, its chain and type, its
//! type, its chain, the catch-all) whatever the number of triggers, and the triggers found
//! there are checked for what the key does not prove. Every trigger found under the last
//! four keys matches; one found under the agent may not (it lists other chains or types), so
//! the cost per event is the triggers it matches plus those naming its agent id for another
//! chain or event type, never the unrelated ones.

use std::collections::HashMap;
use std::sync::Arc;

use shared::domain::{AgentId, ChainId, EventType, StoredEvent, TriggerId};
use shared::trigger::Scope;

use crate::trigger::LoadedTrigger;

/// Where a trigger is filed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Agent(AgentId),
    ChainType(ChainId, EventType),
    Type(EventType),
    Chain(ChainId),
    Any,
}

/// A set of event types: one bit per position in [`EventType::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TypeSet(u16);

impl TypeSet {
    const ALL: TypeSet = TypeSet((1u16 << EventType::ALL.len()) - 1);

    fn bit(event_type: EventType) -> u16 {
        // Declaration order, which is the order of `EventType::ALL`.
        1 << (event_type as usize)
    }

    /// The event types `scope` admits.
    fn of(scope: &Scope) -> Self {
        let listed = if scope.event_types.is_empty() {
            Self::ALL.0
        } else {
            scope.event_types.iter().fold(0, |set, t| set | Self::bit(*t))
        };
        let registry = scope.registry.map_or(Self::ALL.0, |r| r.event_types().fold(0, |set, t| set | Self::bit(t)));
        TypeSet(listed & registry)
    }

    fn contains(self, event_type: EventType) -> bool {
        self.0 & Self::bit(event_type) != 0
    }

    fn iter(self) -> impl Iterator<Item = EventType> {
        EventType::ALL.into_iter().filter(move |t| self.contains(*t))
    }
}

/// A trigger as the index holds it, with what its keys do not prove.
#[derive(Debug)]
struct Entry {
    trigger: Arc<LoadedTrigger>,
    /// The scope's chains, sorted, when its key does not name the chain (empty: any chain).
    chains: Box<[ChainId]>,
    types: TypeSet,
}

impl Entry {
    fn new(trigger: Arc<LoadedTrigger>) -> Self {
        let scope = &trigger.rule.scope;
        // Only a trigger filed by agent needs its chains checked at lookup: the other keys
        // name the chain, or the scope lists none.
        let chains = if scope.agent_ids.is_empty() {
            Box::default()
        } else {
            let mut chains = scope.chain_ids.clone();
            chains.sort_unstable();
            chains.dedup();
            chains.into_boxed_slice()
        };
        let types = TypeSet::of(scope);
        Self { trigger, chains, types }
    }

    /// The keys the trigger is filed under: those of the most selective part of its scope.
    fn keys(&self) -> Vec<Key> {
        let scope = &self.trigger.rule.scope;
        let narrowed = self.types != TypeSet::ALL;
        if !scope.agent_ids.is_empty() {
            scope.agent_ids.iter().map(|a| Key::Agent(*a)).collect()
        } else if narrowed && !scope.chain_ids.is_empty() {
            scope.chain_ids.iter().flat_map(|c| self.types.iter().map(move |t| Key::ChainType(*c, t))).collect()
        } else if narrowed {
            self.types.iter().map(Key::Type).collect()
        } else if !scope.chain_ids.is_empty() {
            scope.chain_ids.iter().map(|c| Key::Chain(*c)).collect()
        } else {
            vec![Key::Any]
        }
    }

    /// Whether an event of `chain` and `event_type`, found under one of this trigger's keys,
    /// is in its scope. (Found under an agent key, the agent is the scope's; found under any
    /// other key, the scope lists no agents.)
    fn admits(&self, chain: ChainId, event_type: EventType) -> bool {
        self.types.contains(event_type) && (self.chains.is_empty() || self.chains.binary_search(&chain).is_ok())
    }
}

/// The enabled triggers, filed so that an event finds the ones whose scope it matches.
/// Triggers are filed and unfiled one by one ([`TriggerIndex::insert`],
/// [`TriggerIndex::remove`]), so a refresh touches only the triggers that changed.
#[derive(Debug, Default, Clone)]
pub struct TriggerIndex {
    /// Each bucket sorted by trigger id.
    buckets: HashMap<Key, Vec<Arc<Entry>>>,
    by_id: HashMap<TriggerId, Arc<Entry>>,
}

impl TriggerIndex {
    pub fn build<'a>(triggers: impl IntoIterator<Item = &'a Arc<LoadedTrigger>>) -> Self {
        let mut triggers: Vec<_> = triggers.into_iter().collect();
        // In id order, every insertion lands at the end of its buckets.
        triggers.sort_by_key(|t| t.id);
        let mut index = Self::default();
        for trigger in triggers {
            index.insert(trigger.clone());
        }
        for bucket in index.buckets.values_mut() {
            bucket.shrink_to_fit();
        }
        index
    }

    /// Files `trigger`, in place of the trigger with the same id if there is one. Costs the
    /// length of its scope lists, plus the size of the buckets it goes into.
    pub fn insert(&mut self, trigger: Arc<LoadedTrigger>) {
        let id = trigger.id;
        self.remove(id);
        let entry = Arc::new(Entry::new(trigger));
        for key in entry.keys() {
            let bucket = self.buckets.entry(key).or_default();
            // A stable order, so that the same events produce outbox rows in the same order.
            let at = bucket.partition_point(|e| e.trigger.id < id);
            // A value listed twice files the trigger once.
            if bucket.get(at).is_none_or(|e| e.trigger.id != id) {
                bucket.insert(at, entry.clone());
            }
        }
        self.by_id.insert(id, entry);
    }

    /// Unfiles the trigger `id`; `false` when it was not filed.
    pub fn remove(&mut self, id: TriggerId) -> bool {
        let Some(entry) = self.by_id.remove(&id) else { return false };
        for key in entry.keys() {
            let Some(bucket) = self.buckets.get_mut(&key) else { continue };
            if let Ok(at) = bucket.binary_search_by(|e| e.trigger.id.cmp(&id)) {
                bucket.remove(at);
            }
            if bucket.is_empty() {
                self.buckets.remove(&key);
            }
        }
        true
    }

    /// The number of triggers filed.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The number of items the index holds for its triggers: one per bucket slot, and one per
    /// chain kept for checking at lookup. Linear in the lengths of the scope lists.
    pub fn entries(&self) -> usize {
        let slots: usize = self.buckets.values().map(Vec::len).sum();
        let chains: usize = self.by_id.values().map(|e| e.chains.len()).sum();
        slots + chains
    }

    /// An estimate of the heap the index takes: its hash tables (at their capacity), bucket
    /// vectors (at their capacity) and per-trigger entries. The triggers themselves are
    /// shared with the trigger set and not counted.
    pub fn approx_heap_bytes(&self) -> usize {
        let tables = table_bytes(self.buckets.capacity(), size_of::<(Key, Vec<Arc<Entry>>)>())
            + table_bytes(self.by_id.capacity(), size_of::<(TriggerId, Arc<Entry>)>());
        let slots: usize = self.buckets.values().map(|b| b.capacity() * size_of::<Arc<Entry>>()).sum();
        // Each entry's allocation: the Arc's two counters, the entry, and its chains.
        let entries: usize = self
            .by_id
            .values()
            .map(|e| 2 * size_of::<usize>() + size_of::<Entry>() + e.chains.len() * size_of::<ChainId>())
            .sum();
        tables + slots + entries
    }

    /// The triggers whose scope matches `event`, each once, in trigger id order: a trigger
    /// sits in at most one of the five buckets an event is looked up in, and each bucket is
    /// sorted by id.
    pub fn candidates<'a>(&'a self, event: &StoredEvent) -> impl Iterator<Item = &'a Arc<LoadedTrigger>> + 'a {
        let e = &event.event;
        let (chain, event_type) = (e.log.chain_id, e.event_type());
        let keys = [
            Key::Agent(e.agent_id),
            Key::ChainType(chain, event_type),
            Key::Type(event_type),
            Key::Chain(chain),
            Key::Any,
        ];
        let lists = keys.map(|key| self.buckets.get(&key).map_or(&[][..], Vec::as_slice));
        Candidates { lists, chain, event_type }
    }
}

/// hashbrown's allocation for a table of `capacity` (as `HashMap::capacity` reports it) of
/// `item`-byte items: a power-of-two number of buckets, seven eighths usable from eight on,
/// each with its item and a control byte, plus a group of trailing control bytes.
fn table_bytes(capacity: usize, item: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    let buckets = if capacity < 8 { capacity + 1 } else { (capacity / 7 * 8).next_power_of_two() };
    buckets * (item + 1) + 16
}

/// The merge of the sorted buckets an event was looked up in, keeping what matches.
struct Candidates<'a> {
    lists: [&'a [Arc<Entry>]; 5],
    chain: ChainId,
    event_type: EventType,
}

impl<'a> Iterator for Candidates<'a> {
    type Item = &'a Arc<LoadedTrigger>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            // The list whose first trigger has the smallest id.
            let mut first: Option<(usize, TriggerId)> = None;
            for (i, list) in self.lists.iter().enumerate() {
                if let Some(head) = list.first()
                    && first.is_none_or(|(_, id)| head.trigger.id < id)
                {
                    first = Some((i, head.trigger.id));
                }
            }
            let (i, _) = first?;
            let list: &'a [Arc<Entry>] = self.lists[i];
            let (head, rest) = list.split_first()?;
            self.lists[i] = rest;
            if head.admits(self.chain, self.event_type) {
                return Some(&head.trigger);
            }
        }
    }
}

//! The enabled triggers, loaded from PostgreSQL and kept current by version.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use engine::LoadedTrigger;
use shared::domain::TriggerId;
use shared::store::aggregate_state::WindowedAggregate;
use shared::store::triggers;
use sqlx::PgPool;

/// The set of enabled triggers by id.
#[derive(Default)]
pub struct TriggerSet {
    triggers: HashMap<TriggerId, Arc<LoadedTrigger>>,
    /// A digest of (id, version) over the enabled triggers when last read: a refresh that
    /// finds it unchanged reads nothing more.
    fingerprint: Option<(i64, i64, i64)>,
}

/// What a refresh changed.
#[derive(Debug, Default)]
pub struct Refresh {
    /// New or changed triggers (their aggregates may need warming).
    pub changed: Vec<Arc<LoadedTrigger>>,
    /// Triggers no longer enabled: deleted, disabled, or (edited by hand) unreadable.
    pub removed: Vec<TriggerId>,
}

impl Refresh {
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.removed.is_empty()
    }
}

impl TriggerSet {
    pub fn len(&self) -> usize {
        self.triggers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.triggers.is_empty()
    }

    /// Whether `trigger` is the set's current version of it.
    pub fn holds(&self, trigger: &LoadedTrigger) -> bool {
        self.triggers.get(&trigger.id).is_some_and(|t| t.version == trigger.version)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<LoadedTrigger>> {
        self.triggers.values()
    }

    /// Brings the set up to date: only triggers whose version changed are read again. The
    /// set changes only once everything is read, so a failed refresh leaves it as it was
    /// (and the next one tries again).
    pub async fn refresh(&mut self, pool: &PgPool) -> Result<Refresh, sqlx::Error> {
        // Every change to a trigger or its actions bumps its version.
        let fingerprint = triggers::enabled_fingerprint(pool).await?;
        if self.fingerprint == Some(fingerprint) {
            return Ok(Refresh::default());
        }
        let versions = triggers::enabled_versions(pool).await?;
        let current: HashMap<TriggerId, i64> = versions.into_iter().collect();
        let stale: Vec<TriggerId> = current
            .iter()
            .filter(|(id, version)| self.triggers.get(*id).is_none_or(|t| t.version != **version))
            .map(|(id, _)| *id)
            .collect();
        let rows = triggers::enabled_rules(pool, &stale).await?;

        self.fingerprint = Some(fingerprint);
        let mut refresh = Refresh::default();
        let gone: Vec<TriggerId> = self.triggers.keys().filter(|id| !current.contains_key(id)).copied().collect();
        for id in gone {
            self.triggers.remove(&id);
            refresh.removed.push(id);
        }
        let mut read = HashSet::with_capacity(rows.len());
        for row in rows {
            let id = row.id;
            read.insert(id);
            match LoadedTrigger::try_from(row) {
                Ok(trigger) => {
                    let trigger = Arc::new(trigger);
                    self.triggers.insert(id, trigger.clone());
                    refresh.changed.push(trigger);
                }
                Err(reason) => {
                    // Saved triggers were validated by the same parser; this only happens
                    // when a row was edited by hand. Skip it, keep the others running.
                    tracing::error!(trigger.id = %id, %reason, "stored trigger does not parse; skipped");
                    metrics::counter!("processor_invalid_triggers_total").increment(1);
                    if self.triggers.remove(&id).is_some() {
                        refresh.removed.push(id);
                    }
                }
            }
        }
        // Disabled or deleted between the two reads: gone as well (the next refresh sees a
        // new fingerprint and reads again).
        for id in stale.into_iter().filter(|id| !read.contains(id)) {
            if self.triggers.remove(&id).is_some() {
                refresh.removed.push(id);
            }
        }
        Ok(refresh)
    }
}

/// The windowed aggregates of up to `limit` triggers with a condition, enabled or not (a
/// disabled trigger keeps its state for when it is enabled again), whose ids come after
/// `after`; and the id of the last trigger read, `None` when there was none. A trigger that
/// does not parse contributes nothing.
pub async fn windowed_aggregates(
    pool: &PgPool,
    after: Option<TriggerId>,
    limit: usize,
) -> Result<(Vec<WindowedAggregate>, Option<TriggerId>), sqlx::Error> {
    let rows = triggers::conditions_after(pool, after, limit).await?;
    let last = rows.last().map(|(id, _, _)| *id);
    let windows = rows
        .iter()
        .flat_map(|(id, scope, condition)| engine::trigger::windowed_aggregates(*id, scope, condition))
        .collect();
    Ok((windows, last))
}

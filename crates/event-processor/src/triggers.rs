//! The enabled triggers, loaded from PostgreSQL and kept current by version.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;
use shared::domain::{TriggerId, UserId};
use shared::trigger::{Rule, StoredAction};
use sqlx::PgPool;

use crate::state::WindowedAggregate;

/// A trigger as the processor evaluates it.
#[derive(Debug)]
pub struct LoadedTrigger {
    pub id: TriggerId,
    pub user_id: UserId,
    pub name: String,
    pub version: i64,
    pub rule: Rule,
    pub cooldown_secs: u64,
    /// Events with an earlier block time feed aggregates but never fire.
    pub fires_from: DateTime<Utc>,
    pub actions: Vec<StoredAction>,
}

#[derive(sqlx::FromRow)]
struct TriggerRow {
    id: TriggerId,
    user_id: UserId,
    name: String,
    version: i64,
    scope: Value,
    condition: Option<Value>,
    cooldown_secs: i64,
    fires_from: DateTime<Utc>,
    actions: Value,
}

impl TriggerRow {
    fn parse(self) -> Result<LoadedTrigger, String> {
        let rule = Rule::parse(Some(&self.scope), self.condition.as_ref()).map_err(|e| e.to_string())?;
        let actions: Vec<StoredAction> = serde_json::from_value(self.actions).map_err(|e| format!("actions: {e}"))?;
        Ok(LoadedTrigger {
            id: self.id,
            user_id: self.user_id,
            name: self.name,
            version: self.version,
            rule,
            cooldown_secs: u64::try_from(self.cooldown_secs).unwrap_or(0),
            fires_from: self.fires_from,
            actions,
        })
    }
}

const SELECT_TRIGGERS: &str =
    "SELECT t.id, t.user_id, t.name, t.version, t.scope, t.condition, t.cooldown_secs, t.fires_from,
            COALESCE(jsonb_agg(jsonb_build_object('id', a.id, 'kind', a.kind, 'config', a.config)
                               ORDER BY a.position) FILTER (WHERE a.id IS NOT NULL), '[]'::jsonb) AS actions
     FROM triggers t LEFT JOIN trigger_actions a ON a.trigger_id = t.id";

/// Why a single trigger could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("the stored trigger does not parse: {0}")]
    Unreadable(String),
}

/// One of `user`'s triggers as the processor would evaluate it, enabled or not; `None` when
/// the user has no such trigger.
pub async fn load(pool: &PgPool, user: UserId, id: TriggerId) -> Result<Option<LoadedTrigger>, LoadError> {
    let row: Option<TriggerRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT_TRIGGERS} WHERE t.id = $1 AND t.user_id = $2 GROUP BY t.id"
    )))
    .bind(id)
    .bind(user)
    .fetch_optional(pool)
    .await?;
    row.map(|row| row.parse().map_err(LoadError::Unreadable)).transpose()
}

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
        let fingerprint: (i64, i64, i64) = sqlx::query_as(
            "SELECT count(*), COALESCE(sum(version), 0)::int8, COALESCE(sum(hashtext(id::text)), 0)::int8
             FROM triggers WHERE enabled",
        )
        .fetch_one(pool)
        .await?;
        if self.fingerprint == Some(fingerprint) {
            return Ok(Refresh::default());
        }
        let versions: Vec<(TriggerId, i64)> =
            sqlx::query_as("SELECT id, version FROM triggers WHERE enabled").fetch_all(pool).await?;
        let current: HashMap<TriggerId, i64> = versions.into_iter().collect();
        let stale: Vec<TriggerId> = current
            .iter()
            .filter(|(id, version)| self.triggers.get(*id).is_none_or(|t| t.version != **version))
            .map(|(id, _)| *id)
            .collect();
        let rows: Vec<TriggerRow> = if stale.is_empty() {
            Vec::new()
        } else {
            let ids: Vec<uuid::Uuid> = stale.iter().map(|id| id.0).collect();
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "{SELECT_TRIGGERS} WHERE t.enabled AND t.id = ANY($1) GROUP BY t.id"
            )))
            .bind(&ids)
            .fetch_all(pool)
            .await?
        };

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
            match row.parse() {
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
    // Trigger ids are random UUIDs, never the nil one.
    let after = after.map_or(uuid::Uuid::nil(), |id| id.0);
    let rows: Vec<(TriggerId, Value, Value)> = sqlx::query_as(
        "SELECT id, scope, condition FROM triggers WHERE id > $1 AND condition IS NOT NULL ORDER BY id LIMIT $2",
    )
    .bind(after)
    .bind(i64::try_from(limit.max(1)).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await?;
    let last = rows.last().map(|(id, _, _)| *id);
    let mut windows = Vec::new();
    for (id, scope, condition) in rows {
        let rule = match Rule::parse(Some(&scope), Some(&condition)) {
            Ok(rule) => rule,
            Err(err) => {
                tracing::debug!(trigger.id = %id, error = %err, "stored trigger does not parse; its state is kept");
                continue;
            }
        };
        let mut seen = HashSet::new();
        for aggregate in rule.aggregates {
            if let Some(window_secs) = aggregate.kind.window_secs()
                && seen.insert(aggregate.id.clone())
            {
                windows.push(WindowedAggregate { trigger: id, aggregate: aggregate.id, window_secs });
            }
        }
    }
    Ok((windows, last))
}

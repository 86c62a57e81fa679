//! `cooldowns`: when each trigger last fired for each agent, and how many firings its
//! cooldown suppressed since.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use super::aggregate_state::retain_by;
use crate::domain::TriggerId;

/// (trigger, `chain:agent`).
pub type CooldownKey = (TriggerId, String);

/// One stored cooldown, as read.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CooldownRow {
    pub trigger_id: TriggerId,
    pub agent_key: String,
    pub last_fired_at: DateTime<Utc>,
    pub last_event_id: i64,
    pub suppressed_count: i64,
}

/// The stored rows of `keys` (absent keys have none), in one query.
pub async fn fetch<'e>(db: impl sqlx::PgExecutor<'e>, keys: &[CooldownKey]) -> Result<Vec<CooldownRow>, sqlx::Error> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let triggers: Vec<uuid::Uuid> = keys.iter().map(|k| k.0.0).collect();
    let agents: Vec<&str> = keys.iter().map(|k| k.1.as_str()).collect();
    sqlx::query_as(
        "SELECT c.trigger_id, c.agent_key, c.last_fired_at, c.last_event_id, c.suppressed_count
         FROM cooldowns c
         JOIN UNNEST($1::uuid[], $2::text[]) AS k(trigger_id, agent_key)
           ON c.trigger_id = k.trigger_id AND c.agent_key = k.agent_key",
    )
    .bind(&triggers)
    .bind(&agents)
    .fetch_all(db)
    .await
}

/// Cooldowns to write, column by column.
#[derive(Debug, Default)]
pub struct CooldownRows {
    triggers: Vec<uuid::Uuid>,
    agents: Vec<String>,
    fired: Vec<DateTime<Utc>>,
    events: Vec<i64>,
    suppressed: Vec<i64>,
}

impl CooldownRows {
    pub fn push(&mut self, key: CooldownKey, last_fired_at: DateTime<Utc>, last_event_id: i64, suppressed: i64) {
        let (trigger, agent) = key;
        self.triggers.push(trigger.0);
        self.agents.push(agent);
        self.fired.push(last_fired_at);
        self.events.push(last_event_id);
        self.suppressed.push(suppressed);
    }

    pub fn len(&self) -> usize {
        self.triggers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.triggers.is_empty()
    }

    /// The trigger of every row.
    pub fn triggers(&self) -> impl Iterator<Item = uuid::Uuid> + '_ {
        self.triggers.iter().copied()
    }

    /// Keeps the rows of `live` triggers only.
    pub fn retain_triggers(&mut self, live: &std::collections::HashSet<uuid::Uuid>) {
        let keep: Vec<bool> = self.triggers.iter().map(|t| live.contains(t)).collect();
        retain_by(&mut self.triggers, &keep);
        retain_by(&mut self.agents, &keep);
        retain_by(&mut self.fired, &keep);
        retain_by(&mut self.events, &keep);
        retain_by(&mut self.suppressed, &keep);
    }

    /// Inserts or replaces the rows, all in one statement.
    pub async fn write(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        if self.triggers.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO cooldowns (trigger_id, agent_key, last_fired_at, last_event_id, suppressed_count)
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[], $4::int8[], $5::int8[])
             ON CONFLICT (trigger_id, agent_key) DO UPDATE
                SET last_fired_at = EXCLUDED.last_fired_at, last_event_id = EXCLUDED.last_event_id,
                    suppressed_count = EXCLUDED.suppressed_count",
        )
        .bind(&self.triggers)
        .bind(&self.agents)
        .bind(&self.fired)
        .bind(&self.events)
        .bind(&self.suppressed)
        .execute(conn)
        .await?;
        Ok(())
    }
}

/// Deletes the cooldowns that ended before block time `horizon` (`last_fired_at +
/// cooldown_secs` of the trigger as it is now), at most `batch` per statement, and returns
/// how many went. `horizon` is a block time no event still to be processed is older than, so
/// every later event finds the cooldown over, as it finds an absent one. What is lost is the
/// row's count of suppressed firings. Rows a transaction holds are skipped, never waited for.
pub async fn prune_expired(pool: &PgPool, horizon: DateTime<Utc>, batch: usize) -> Result<u64, sqlx::Error> {
    let limit = i64::try_from(batch.max(1)).unwrap_or(i64::MAX);
    let mut total = 0_u64;
    loop {
        let deleted = sqlx::query(
            "WITH doomed AS (
                SELECT c.trigger_id, c.agent_key
                FROM cooldowns c JOIN triggers t ON t.id = c.trigger_id
                WHERE c.last_fired_at < $1::timestamptz - t.cooldown_secs * interval '1 second'
                LIMIT $2
                FOR UPDATE OF c SKIP LOCKED)
             DELETE FROM cooldowns c USING doomed d, triggers t
             WHERE c.trigger_id = d.trigger_id AND c.agent_key = d.agent_key AND t.id = c.trigger_id
               AND c.last_fired_at < $1::timestamptz - t.cooldown_secs * interval '1 second'",
        )
        .bind(horizon)
        .bind(limit)
        .execute(pool)
        .await?
        .rows_affected();
        total += deleted;
        if deleted < limit.unsigned_abs() {
            return Ok(total);
        }
        tokio::task::yield_now().await;
    }
}

//! A circuit breaker per action (SPEC 3). After a number of consecutive failures the action
//! opens: its jobs wait, without spending attempts, until a single half-open probe succeeds.
//! The open period doubles with each trip, within bounds. The state lives in PostgreSQL,
//! where every worker and the API see it.

use std::collections::HashMap;
use std::time::Duration;

use shared::domain::ActionId;
use sqlx::PgPool;

#[derive(Debug, Clone)]
pub struct BreakerSettings {
    /// Consecutive failures that open the breaker.
    pub threshold: u32,
    /// The first open period; each further trip doubles it.
    pub open_for: Duration,
    /// The longest open period.
    pub max_open_for: Duration,
    /// A probe that has not reported back in this long is presumed lost; another may go.
    pub probe_timeout: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            threshold: 5,
            open_for: Duration::from_secs(30),
            max_open_for: Duration::from_secs(3_600),
            probe_timeout: Duration::from_secs(60),
        }
    }
}

/// A breaker's state as read for a batch of jobs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Status {
    /// Closed; `clean` when there is no failure to forget on the next success.
    Closed { clean: bool },
    /// Open for this much longer.
    Open(Duration),
    /// Open and due for a probe, or half-open.
    Probing,
}

/// The breakers of `actions` (absent ones are closed and clean), in one query.
pub async fn statuses(pool: &PgPool, actions: &[ActionId]) -> Result<HashMap<ActionId, Status>, sqlx::Error> {
    let ids: Vec<uuid::Uuid> = actions.iter().map(|a| a.0).collect();
    let rows: Vec<(ActionId, String, i32, Option<f64>)> = sqlx::query_as(
        "SELECT action_id, state, consecutive_failures, EXTRACT(EPOCH FROM (open_until - now()))::float8
         FROM action_breakers WHERE action_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let mut statuses: HashMap<ActionId, Status> =
        actions.iter().map(|a| (*a, Status::Closed { clean: true })).collect();
    for (action, state, failures, remaining) in rows {
        let status = match (state.as_str(), remaining) {
            ("closed", _) => Status::Closed { clean: failures == 0 },
            ("open", Some(secs)) if secs > 0.0 => Status::Open(Duration::from_secs_f64(secs)),
            _ => Status::Probing,
        };
        statuses.insert(action, status);
    }
    Ok(statuses)
}

/// Tries to become the one half-open probe of `action`.
pub async fn try_probe(pool: &PgPool, action: ActionId, settings: &BreakerSettings) -> Result<bool, sqlx::Error> {
    let probe: Option<i32> = sqlx::query_scalar(
        "UPDATE action_breakers SET state = 'half_open', updated_at = now()
         WHERE action_id = $1
           AND ((state = 'open' AND open_until <= now())
             OR (state = 'half_open' AND updated_at < now() - make_interval(secs => $2)))
         RETURNING 1",
    )
    .bind(action)
    .bind(settings.probe_timeout.as_secs_f64())
    .fetch_optional(pool)
    .await?;
    Ok(probe.is_some())
}

/// A delivery reached the target: the breaker closes.
pub async fn succeeded(pool: &PgPool, action: ActionId) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE action_breakers
         SET state = 'closed', consecutive_failures = 0, opened_at = NULL, open_until = NULL, updated_at = now()
         WHERE action_id = $1 AND (state <> 'closed' OR consecutive_failures > 0)",
    )
    .bind(action)
    .execute(pool)
    .await?;
    Ok(())
}

/// A delivery failed in a way that says the target is unwell (timeouts, 5xx, 429). Returns
/// whether the breaker opened.
pub async fn failed(
    pool: &PgPool,
    action: ActionId,
    was_probe: bool,
    settings: &BreakerSettings,
) -> Result<bool, sqlx::Error> {
    let failures: i32 = sqlx::query_scalar(
        "INSERT INTO action_breakers (action_id, consecutive_failures) VALUES ($1, 1)
         ON CONFLICT (action_id) DO UPDATE
            SET consecutive_failures = action_breakers.consecutive_failures + 1, updated_at = now()
         RETURNING consecutive_failures",
    )
    .bind(action)
    .fetch_one(pool)
    .await?;
    if !was_probe && u32::try_from(failures).unwrap_or(0) < settings.threshold {
        return Ok(false);
    }
    let opened = sqlx::query(
        "UPDATE action_breakers
         SET state = 'open', trips = trips + 1, opened_at = now(),
             open_until = now() + make_interval(secs => LEAST($2 * power(2, LEAST(trips, 30)), $3)),
             updated_at = now()
         WHERE action_id = $1 AND state <> 'open'",
    )
    .bind(action)
    .bind(settings.open_for.as_secs_f64())
    .bind(settings.max_open_for.as_secs_f64())
    .execute(pool)
    .await?;
    let opened = opened.rows_affected() == 1;
    if opened {
        metrics::counter!("worker_breaker_opened_total").increment(1);
        tracing::warn!(action.id = %action, failures, "circuit breaker opened");
    }
    Ok(opened)
}

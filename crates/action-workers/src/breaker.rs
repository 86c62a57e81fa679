//! A circuit breaker per action (SPEC 3). After a number of consecutive failures the action
//! opens: its jobs wait, without spending attempts, until a single half-open probe succeeds.
//! The open period doubles with each trip, within bounds. The state lives in PostgreSQL,
//! where every worker and the API see it.

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

/// Whether a job of the action may be attempted now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Closed: go ahead.
    Pass,
    /// Half-open and this job is the one probe.
    Probe,
    /// Open: come back after this long.
    Wait(Duration),
}

pub async fn gate(pool: &PgPool, action: ActionId, settings: &BreakerSettings) -> Result<Gate, sqlx::Error> {
    let row: Option<(String, Option<f64>)> = sqlx::query_as(
        "SELECT state, EXTRACT(EPOCH FROM (open_until - now()))::float8 FROM action_breakers WHERE action_id = $1",
    )
    .bind(action)
    .fetch_optional(pool)
    .await?;
    let Some((state, remaining)) = row else { return Ok(Gate::Pass) };
    if state == "closed" {
        return Ok(Gate::Pass);
    }
    if state == "open"
        && let Some(secs) = remaining.filter(|s| *s > 0.0)
    {
        return Ok(Gate::Wait(Duration::from_secs_f64(secs)));
    }
    // Open and due, or half-open with a probe that never reported: one job may probe.
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
    Ok(match probe {
        Some(_) => Gate::Probe,
        None => Gate::Wait(settings.open_for.min(Duration::from_secs(1))),
    })
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
             open_until = now() + make_interval(secs => LEAST($2 * power(2, trips), $3)),
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

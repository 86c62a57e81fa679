//! Writing triggers and their actions. Every function takes the owner's id, so a query can
//! never reach another user's trigger by accident.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{Connection, PgConnection};

use crate::domain::{ActionId, TriggerId, UserId};
use crate::trigger::{Action, ActionKind, TriggerDefinition};

/// Creates a trigger with its actions, in one transaction (a savepoint inside the caller's),
/// returning their ids in order. `fires_from` defaults to the second of creation (block
/// times are whole seconds, so an event mined in that very second fires it): events
/// with an earlier block time never fire it.
pub async fn insert(
    conn: &mut PgConnection,
    user: UserId,
    definition: &TriggerDefinition,
    fires_from: Option<DateTime<Utc>>,
) -> Result<(TriggerId, Vec<ActionId>), sqlx::Error> {
    let mut tx = conn.begin().await?;
    let id = TriggerId::new_random();
    let condition: Option<Value> = definition.rule.condition.as_ref().map(|_| definition.rule_json().1);
    sqlx::query(
        "INSERT INTO triggers (id, user_id, name, description, enabled, scope, condition, cooldown_secs, fires_from)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, COALESCE($9, date_trunc('second', now())))",
    )
    .bind(id)
    .bind(user)
    .bind(&definition.name)
    .bind(&definition.description)
    .bind(definition.enabled)
    .bind(definition.rule_json().0)
    .bind(condition)
    .bind(i64::try_from(definition.cooldown_secs).unwrap_or(i64::MAX))
    .bind(fires_from)
    .execute(&mut *tx)
    .await?;
    let mut action_ids = Vec::with_capacity(definition.actions.len());
    for (position, action) in definition.actions.iter().enumerate() {
        action_ids.push(insert_action(&mut tx, id, i32::try_from(position).unwrap_or(i32::MAX), action).await?);
    }
    tx.commit().await?;
    Ok((id, action_ids))
}

/// Creates a trigger as [`insert`] does, unless the user already has `max` triggers: then
/// `None`, and nothing is written. The owner's row stays locked until the caller's
/// transaction ends, so two creations racing for the last place are decided one after the
/// other, and the second one counts the first.
pub async fn insert_within_quota(
    conn: &mut PgConnection,
    user: UserId,
    definition: &TriggerDefinition,
    max: u32,
) -> Result<Option<(TriggerId, Vec<ActionId>)>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    lock_owner(&mut tx, user).await?;
    if count(&mut tx, user).await? >= i64::from(max) {
        return Ok(None);
    }
    let created = insert(&mut tx, user, definition, None).await?;
    tx.commit().await?;
    Ok(Some(created))
}

/// How many triggers `user` has.
pub async fn count(conn: &mut PgConnection, user: UserId) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM triggers WHERE user_id = $1").bind(user).fetch_one(conn).await
}

/// Locks the owner's row against other quota checks (`FOR NO KEY UPDATE` conflicts with
/// itself, not with the key-share locks that inserting a row referencing the user takes).
async fn lock_owner(conn: &mut PgConnection, user: UserId) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE").bind(user).execute(conn).await?;
    Ok(())
}

/// Of `triggers` and `actions`, the ones that still exist, each locked (`FOR KEY SHARE`) until
/// the caller's transaction ends: rows written in it for those cannot lose their trigger or
/// action before the commit, while a deletion meanwhile waits. Writers of rows that refer
/// to triggers call it first, so a trigger deleted since they read it drops their rows for it
/// instead of failing everyone's.
pub async fn lock_existing(
    conn: &mut PgConnection,
    triggers: &[uuid::Uuid],
    actions: &[uuid::Uuid],
) -> Result<(HashSet<uuid::Uuid>, HashSet<uuid::Uuid>), sqlx::Error> {
    let live_triggers: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM triggers WHERE id = ANY($1) ORDER BY id FOR KEY SHARE")
            .bind(triggers)
            .fetch_all(&mut *conn)
            .await?;
    let live_actions: Vec<uuid::Uuid> = if actions.is_empty() {
        Vec::new()
    } else {
        sqlx::query_scalar("SELECT id FROM trigger_actions WHERE id = ANY($1) ORDER BY id FOR KEY SHARE")
            .bind(actions)
            .fetch_all(&mut *conn)
            .await?
    };
    Ok((live_triggers.into_iter().collect(), live_actions.into_iter().collect()))
}

/// Enables or disables a trigger. Enabling moves `fires_from` to now (or the given time), so
/// events from while it was disabled never fire it. Returns `false` when the user has no
/// such trigger.
pub async fn set_enabled(
    conn: &mut PgConnection,
    user: UserId,
    trigger: TriggerId,
    enabled: bool,
    fires_from: Option<DateTime<Utc>>,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "UPDATE triggers
         SET enabled = $3,
             fires_from = CASE WHEN $3 AND NOT enabled THEN COALESCE($4, date_trunc('second', now())) ELSE fires_from END,
             version = version + 1, updated_at = now()
         WHERE id = $2 AND user_id = $1",
    )
    .bind(user)
    .bind(trigger)
    .bind(enabled)
    .bind(fires_from)
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Replaces a trigger's scope, condition, cooldown, name and description (its actions stay).
pub async fn update_rule(
    conn: &mut PgConnection,
    user: UserId,
    trigger: TriggerId,
    definition: &TriggerDefinition,
) -> Result<bool, sqlx::Error> {
    let (scope, condition) = definition.rule_json();
    let condition = definition.rule.condition.as_ref().map(|_| condition);
    let result = sqlx::query(
        "UPDATE triggers
         SET name = $3, description = $4, scope = $5, condition = $6, cooldown_secs = $7,
             version = version + 1, updated_at = now()
         WHERE id = $2 AND user_id = $1",
    )
    .bind(user)
    .bind(trigger)
    .bind(&definition.name)
    .bind(&definition.description)
    .bind(scope)
    .bind(condition)
    .bind(i64::try_from(definition.cooldown_secs).unwrap_or(i64::MAX))
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Deletes a trigger with everything that hangs off it.
pub async fn delete(conn: &mut PgConnection, user: UserId, trigger: TriggerId) -> Result<bool, sqlx::Error> {
    let result = sqlx::query("DELETE FROM triggers WHERE id = $2 AND user_id = $1")
        .bind(user)
        .bind(trigger)
        .execute(conn)
        .await?;
    Ok(result.rows_affected() == 1)
}

/// Stores one action, with its secrets (a new signing secret for a webhook).
async fn insert_action(
    conn: &mut PgConnection,
    trigger: TriggerId,
    position: i32,
    action: &Action,
) -> Result<ActionId, sqlx::Error> {
    let id = ActionId::new_random();
    sqlx::query(
        "INSERT INTO trigger_actions (id, trigger_id, position, kind, config, secrets)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(trigger)
    .bind(position)
    .bind(action.kind().as_str())
    .bind(action.public_config())
    .bind(secrets_to_store(action))
    .execute(conn)
    .await?;
    Ok(id)
}

/// What is stored as an action's write-only secrets: for a webhook, a new signing secret.
fn secrets_to_store(action: &Action) -> serde_json::Value {
    let mut secrets = action.secrets();
    if let (Action::Webhook(_), Some(map)) = (action, secrets.as_object_mut()) {
        map.insert("signing_secret".into(), serde_json::Value::String(new_signing_secret()));
    }
    secrets
}

/// A Standard Webhooks secret: `whsec_` and 32 random bytes in base64.
pub fn new_signing_secret() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(key))
}

/// What rotating an action's signing secret did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The new secret: shown once, used for every request signed from now on.
    Rotated(String),
    /// The action exists but is not a webhook: it has no signing secret.
    NotWebhook,
    /// The user has no such action on that trigger.
    Missing,
}

/// The kind of one of the user's actions on that trigger, `None` when there is no such action.
async fn owned_action_kind(
    conn: &mut PgConnection,
    user: UserId,
    trigger: TriggerId,
    action: ActionId,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT a.kind FROM trigger_actions a JOIN triggers t ON t.id = a.trigger_id
         WHERE a.id = $3 AND t.id = $2 AND t.user_id = $1",
    )
    .bind(user)
    .bind(trigger)
    .bind(action)
    .fetch_optional(conn)
    .await
}

/// Gives one of the user's webhook actions a new signing secret.
pub async fn rotate_signing_secret(
    conn: &mut PgConnection,
    user: UserId,
    trigger: TriggerId,
    action: ActionId,
) -> Result<Rotation, sqlx::Error> {
    match owned_action_kind(conn, user, trigger, action).await?.as_deref() {
        None => return Ok(Rotation::Missing),
        Some(kind) if kind != ActionKind::Webhook.as_str() => return Ok(Rotation::NotWebhook),
        Some(_) => {}
    }
    let secret = new_signing_secret();
    sqlx::query(
        "UPDATE trigger_actions SET secrets = secrets || jsonb_build_object('signing_secret', $2::text) WHERE id = $1",
    )
    .bind(action)
    .bind(&secret)
    .execute(conn)
    .await?;
    Ok(Rotation::Rotated(secret))
}

/// The write-only secrets of one of the user's actions (to show a new signing secret once).
pub async fn action_secrets(
    conn: &mut PgConnection,
    user: UserId,
    action: ActionId,
) -> Result<Option<serde_json::Value>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT a.secrets FROM trigger_actions a JOIN triggers t ON t.id = a.trigger_id
         WHERE a.id = $2 AND t.user_id = $1",
    )
    .bind(user)
    .bind(action)
    .fetch_optional(conn)
    .await
}

/// A trigger as the API shows it (no secrets).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TriggerRow {
    pub id: TriggerId,
    pub name: String,
    pub description: Option<String>,
    pub enabled: bool,
    pub scope: serde_json::Value,
    pub condition: Option<serde_json::Value>,
    pub cooldown_secs: i64,
    pub version: i64,
    pub fires_from: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// `[{id, type, ...config}]` in order.
    pub actions: serde_json::Value,
}

const TRIGGER_COLUMNS: &str =
    "t.id, t.name, t.description, t.enabled, t.scope, t.condition, t.cooldown_secs, t.version,
     t.fires_from, t.created_at, t.updated_at,
     COALESCE((SELECT jsonb_agg(a.config || jsonb_build_object(
                   'id', a.id,
                   'breaker', COALESCE(
                       (SELECT jsonb_build_object('state', b.state, 'consecutive_failures', b.consecutive_failures,
                                                  'trips', b.trips, 'open_until', b.open_until)
                        FROM action_breakers b WHERE b.action_id = a.id),
                       '{\"state\": \"closed\", \"consecutive_failures\": 0, \"trips\": 0, \"open_until\": null}'::jsonb),
                   'last_delivery',
                       (SELECT jsonb_build_object('outcome', d.outcome, 'status_code', d.status_code, 'error', d.error,
                                                  'attempt', d.attempt, 'at', d.created_at)
                        FROM deliveries d WHERE d.action_id = a.id ORDER BY d.id DESC LIMIT 1))
               ORDER BY a.position)
               FROM trigger_actions a WHERE a.trigger_id = t.id), '[]'::jsonb) AS actions";

/// One of the user's triggers.
pub async fn get<'e>(
    db: impl sqlx::PgExecutor<'e>,
    user: UserId,
    trigger: TriggerId,
) -> Result<Option<TriggerRow>, sqlx::Error> {
    let sql = format!("SELECT {TRIGGER_COLUMNS} FROM triggers t WHERE t.id = $2 AND t.user_id = $1");
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(user).bind(trigger).fetch_optional(db).await
}

/// The user's triggers in creation order, `limit` of them after `after` (created_at, id).
pub async fn list<'e>(
    db: impl sqlx::PgExecutor<'e>,
    user: UserId,
    after: Option<(DateTime<Utc>, TriggerId)>,
    limit: i64,
) -> Result<Vec<TriggerRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {TRIGGER_COLUMNS} FROM triggers t
         WHERE t.user_id = $1 AND ($2::timestamptz IS NULL OR (t.created_at, t.id) > ($2, $3))
         ORDER BY t.created_at, t.id LIMIT $4"
    );
    let (at, id) = after.map_or((None, None), |(at, id)| (Some(at), Some(id)));
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(user).bind(at).bind(id).bind(limit).fetch_all(db).await
}

/// Closes the breaker of one of the user's actions and forgets its trips, so its next open
/// period starts short again. `false` when the user has no such
/// action on that trigger.
pub async fn reset_breaker(
    conn: &mut PgConnection,
    user: UserId,
    trigger: TriggerId,
    action: ActionId,
) -> Result<bool, sqlx::Error> {
    if owned_action_kind(conn, user, trigger, action).await?.is_none() {
        return Ok(false);
    }
    sqlx::query(
        "UPDATE action_breakers
         SET state = 'closed', consecutive_failures = 0, trips = 0, opened_at = NULL, open_until = NULL,
             updated_at = now()
         WHERE action_id = $1",
    )
    .bind(action)
    .execute(conn)
    .await?;
    Ok(true)
}

/// Replaces one of the user's triggers with `definition`, in one transaction. An action
/// that keeps its position and kind keeps its id, its breaker, its delivery history and its
/// signing secret (secrets given anew, a bot token or MCP headers, replace the old ones);
/// other actions are created afresh. Returns the ids of the actions created afresh, or
/// `None` when the user has no such trigger.
pub async fn replace(
    conn: &mut PgConnection,
    user: UserId,
    trigger: TriggerId,
    definition: &TriggerDefinition,
) -> Result<Option<Vec<ActionId>>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    if !update_rule(&mut tx, user, trigger, definition).await? {
        return Ok(None);
    }
    set_enabled(&mut tx, user, trigger, definition.enabled, None).await?;
    let existing: Vec<(ActionId, i32, String, serde_json::Value)> = sqlx::query_as(
        "SELECT id, position, kind, secrets FROM trigger_actions WHERE trigger_id = $1 ORDER BY position",
    )
    .bind(trigger)
    .fetch_all(&mut *tx)
    .await?;
    let mut created = Vec::new();
    for (position, action) in definition.actions.iter().enumerate() {
        let position = i32::try_from(position).unwrap_or(i32::MAX);
        let kept = existing.iter().find(|(_, p, kind, _)| *p == position && kind == action.kind().as_str());
        match kept {
            Some((id, _, _, old_secrets)) => {
                let mut secrets = old_secrets.clone();
                if let (Some(merged), serde_json::Value::Object(new)) = (secrets.as_object_mut(), action.secrets()) {
                    for (key, value) in new {
                        let empty = value.as_object().is_some_and(serde_json::Map::is_empty);
                        if !empty {
                            merged.insert(key, value);
                        }
                    }
                }
                sqlx::query("UPDATE trigger_actions SET config = $2, secrets = $3, updated_at = now() WHERE id = $1")
                    .bind(id)
                    .bind(action.public_config())
                    .bind(secrets)
                    .execute(&mut *tx)
                    .await?;
            }
            None => {
                sqlx::query("DELETE FROM trigger_actions WHERE trigger_id = $1 AND position = $2")
                    .bind(trigger)
                    .bind(position)
                    .execute(&mut *tx)
                    .await?;
                created.push(insert_action(&mut tx, trigger, position, action).await?);
            }
        }
    }
    sqlx::query("DELETE FROM trigger_actions WHERE trigger_id = $1 AND position >= $2")
        .bind(trigger)
        .bind(i32::try_from(definition.actions.len()).unwrap_or(i32::MAX))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(created))
}

//! Writing triggers and their actions. Every function takes the owner's id, so a query can
//! never reach another user's trigger by accident.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{Connection, PgConnection};

use crate::domain::{ActionId, TriggerId, UserId};
use crate::secrets::{Keyring, Sealed, SecretsError};
use crate::trigger::{Action, ActionKind, TriggerDefinition};

/// Why writing a trigger failed: the database, or sealing its secrets (no key configured).
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
}

/// Creates a trigger with its actions, in one transaction (a savepoint inside the caller's),
/// returning their ids in order. `fires_from` defaults to the second of creation (block
/// times are whole seconds, so an event mined in that very second fires it): events
/// with an earlier block time never fire it.
pub async fn insert(
    conn: &mut PgConnection,
    keyring: &Keyring,
    user: UserId,
    definition: &TriggerDefinition,
    fires_from: Option<DateTime<Utc>>,
) -> Result<(TriggerId, Vec<ActionId>), WriteError> {
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
        let position = i32::try_from(position).unwrap_or(i32::MAX);
        action_ids.push(insert_action(&mut tx, keyring, id, position, action).await?);
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
    keyring: &Keyring,
    user: UserId,
    definition: &TriggerDefinition,
    max: u32,
) -> Result<Option<(TriggerId, Vec<ActionId>)>, WriteError> {
    let mut tx = conn.begin().await?;
    lock_owner(&mut tx, user).await?;
    if count(&mut tx, user).await? >= i64::from(max) {
        return Ok(None);
    }
    let created = insert(&mut tx, keyring, user, definition, None).await?;
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

/// Stores one action, with its secrets sealed (a new signing secret for a webhook).
async fn insert_action(
    conn: &mut PgConnection,
    keyring: &Keyring,
    trigger: TriggerId,
    position: i32,
    action: &Action,
) -> Result<ActionId, WriteError> {
    let id = ActionId::new_random();
    let mut secrets = action.secrets();
    if let (Action::Webhook(_), Some(map)) = (action, secrets.as_object_mut()) {
        map.insert("signing_secret".into(), Value::String(new_signing_secret()));
    }
    let sealed = keyring.seal_json(id.0, &secrets)?;
    sqlx::query(
        "INSERT INTO trigger_actions (id, trigger_id, position, kind, config, sealed_secrets, secrets_key_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(trigger)
    .bind(position)
    .bind(action.kind().as_str())
    .bind(with_secret_markers(action.public_config(), &secrets))
    .bind(&sealed.bytes)
    .bind(&sealed.key_id)
    .execute(conn)
    .await?;
    Ok(id)
}

/// The public config with what it may say of the stored secrets: the names (never the
/// values) of the secret headers, and whether a Telegram action has a bot of its own.
fn with_secret_markers(mut config: Value, secrets: &Value) -> Value {
    let mut names: Vec<Value> = secrets
        .get("headers")
        .and_then(Value::as_object)
        .map(|h| h.keys().map(|k| Value::String(k.clone())).collect())
        .unwrap_or_default();
    if let Some(map) = config.as_object_mut() {
        if names.is_empty() {
            map.remove("secret_header_names");
        } else {
            names.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            map.insert("secret_header_names".into(), Value::Array(names));
        }
        if secrets.get("bot_token").is_some() {
            map.insert("own_bot".into(), Value::Bool(true));
        } else {
            map.remove("own_bot");
        }
    }
    config
}

/// An action's secrets as stored: sealed, or (written before sealing) still plain.
#[derive(Clone, sqlx::FromRow)]
pub struct StoredSecrets {
    pub sealed_secrets: Option<Vec<u8>>,
    pub secrets_key_id: Option<String>,
    pub plain_secrets: Option<Value>,
}

impl std::fmt::Debug for StoredSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSecrets")
            .field("sealed", &self.sealed_secrets.as_ref().map(Vec::len))
            .field("key_id", &self.secrets_key_id)
            .field("plain", &self.plain_secrets.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl StoredSecrets {
    /// The secrets of action `action` in clear, for the moment they are used.
    pub fn open(&self, keyring: &Keyring, action: ActionId) -> Result<Value, SecretsError> {
        match (&self.sealed_secrets, &self.secrets_key_id) {
            (Some(bytes), Some(key_id)) => {
                keyring.open_json(action.0, &Sealed { key_id: key_id.clone(), bytes: bytes.clone() })
            }
            _ => Ok(self.plain_secrets.clone().unwrap_or_else(|| Value::Object(serde_json::Map::new()))),
        }
    }
}

/// Seals `secrets` for `action` and stores them (the plain column emptied).
async fn store_secrets(
    conn: &mut PgConnection,
    keyring: &Keyring,
    action: ActionId,
    secrets: &Value,
) -> Result<(), WriteError> {
    let sealed = keyring.seal_json(action.0, secrets)?;
    sqlx::query(
        "UPDATE trigger_actions SET sealed_secrets = $2, secrets_key_id = $3, plain_secrets = NULL WHERE id = $1",
    )
    .bind(action)
    .bind(&sealed.bytes)
    .bind(&sealed.key_id)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct ActionSecrets {
    id: ActionId,
    kind: String,
    config: Value,
    #[sqlx(flatten)]
    stored: StoredSecrets,
}

/// An action stored before sealing, as it is stored now: a webhook's credential headers
/// (then public config) join its secrets, and the config says what the secrets hold.
fn upgrade_legacy(kind: &str, mut config: Value, mut secrets: Value) -> (Value, Value) {
    if kind == ActionKind::Webhook.as_str()
        && let Some(headers) = config.get_mut("headers").and_then(Value::as_object_mut)
    {
        let sensitive: Vec<String> = headers
            .keys()
            .filter(|name| crate::trigger::SENSITIVE_HEADERS.contains(&name.to_ascii_lowercase().as_str()))
            .cloned()
            .collect();
        let mut moved = serde_json::Map::new();
        for name in sensitive {
            if let Some(value) = headers.remove(&name) {
                moved.insert(name, value);
            }
        }
        let empty = headers.is_empty();
        if empty && let Some(map) = config.as_object_mut() {
            map.remove("headers");
        }
        if !moved.is_empty()
            && let Some(map) = secrets.as_object_mut()
        {
            let stored = map.entry("headers").or_insert_with(|| Value::Object(serde_json::Map::new()));
            if let Some(stored) = stored.as_object_mut() {
                stored.extend(moved);
            }
        }
    }
    (with_secret_markers(config, &secrets), secrets)
}

/// Which actions [`reseal`] rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reseal {
    /// Those whose secrets were stored before sealing (the gateway seals them at its start).
    Plain,
    /// Every one not under the current key (after a key rotation).
    NotCurrent,
}

/// Actions sealed anew in one transaction.
const RESEAL_BATCH: i64 = 500;

/// Seals anew, under the keyring's current key, every action `which` names, a batch per
/// transaction; returns how many. Rows another re-seal holds are skipped.
pub async fn reseal(conn: &mut PgConnection, keyring: &Keyring, which: Reseal) -> Result<usize, WriteError> {
    let mut sealed = 0;
    loop {
        let done = reseal_batch(conn, keyring, which, RESEAL_BATCH).await?;
        if done == 0 {
            return Ok(sealed);
        }
        sealed += done;
    }
}

/// Seals anew up to `batch` of the actions `which` names, in one transaction.
async fn reseal_batch(
    conn: &mut PgConnection,
    keyring: &Keyring,
    which: Reseal,
    batch: i64,
) -> Result<usize, WriteError> {
    let Some(current) = keyring.current_id() else {
        return Err(SecretsError::NoKey.into());
    };
    let mut tx = conn.begin().await?;
    let rows: Vec<ActionSecrets> = sqlx::query_as(
        "SELECT id, kind, config, sealed_secrets, secrets_key_id, plain_secrets FROM trigger_actions
         WHERE CASE WHEN $3 THEN plain_secrets IS NOT NULL ELSE secrets_key_id IS DISTINCT FROM $1 END
         LIMIT $2 FOR NO KEY UPDATE SKIP LOCKED",
    )
    .bind(current)
    .bind(batch)
    .bind(which == Reseal::Plain)
    .fetch_all(&mut *tx)
    .await?;
    for row in &rows {
        let mut secrets = row.stored.open(keyring, row.id)?;
        if row.stored.sealed_secrets.is_none() {
            let (config, upgraded) = upgrade_legacy(&row.kind, row.config.clone(), secrets);
            secrets = upgraded;
            sqlx::query("UPDATE trigger_actions SET config = $2 WHERE id = $1")
                .bind(row.id)
                .bind(config)
                .execute(&mut *tx)
                .await?;
        }
        store_secrets(&mut tx, keyring, row.id, &secrets).await?;
    }
    tx.commit().await?;
    Ok(rows.len())
}

/// How many actions' secrets are not under the keyring's current key (plain ones included).
pub async fn count_not_under(conn: &mut PgConnection, keyring: &Keyring) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM trigger_actions WHERE secrets_key_id IS DISTINCT FROM $1")
        .bind(keyring.current_id())
        .fetch_one(conn)
        .await
}

/// The stored secrets of an action, its row locked until the caller's transaction ends.
async fn secrets_for_update(conn: &mut PgConnection, action: ActionId) -> Result<StoredSecrets, sqlx::Error> {
    sqlx::query_as(
        "SELECT sealed_secrets, secrets_key_id, plain_secrets FROM trigger_actions WHERE id = $1 FOR NO KEY UPDATE",
    )
    .bind(action)
    .fetch_one(conn)
    .await
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
    keyring: &Keyring,
    user: UserId,
    trigger: TriggerId,
    action: ActionId,
) -> Result<Rotation, WriteError> {
    match owned_action_kind(conn, user, trigger, action).await?.as_deref() {
        None => return Ok(Rotation::Missing),
        Some(kind) if kind != ActionKind::Webhook.as_str() => return Ok(Rotation::NotWebhook),
        Some(_) => {}
    }
    let secret = new_signing_secret();
    let mut tx = conn.begin().await?;
    let mut secrets = secrets_for_update(&mut tx, action).await?.open(keyring, action)?;
    if let Some(map) = secrets.as_object_mut() {
        map.insert("signing_secret".into(), Value::String(secret.clone()));
    }
    store_secrets(&mut tx, keyring, action, &secrets).await?;
    tx.commit().await?;
    Ok(Rotation::Rotated(secret))
}

/// The write-only secrets of one of the user's actions (to show a new signing secret once).
pub async fn action_secrets(
    conn: &mut PgConnection,
    keyring: &Keyring,
    user: UserId,
    action: ActionId,
) -> Result<Option<Value>, WriteError> {
    let stored: Option<StoredSecrets> = sqlx::query_as(
        "SELECT a.sealed_secrets, a.secrets_key_id, a.plain_secrets FROM trigger_actions a
         JOIN triggers t ON t.id = a.trigger_id
         WHERE a.id = $2 AND t.user_id = $1",
    )
    .bind(user)
    .bind(action)
    .fetch_optional(conn)
    .await?;
    Ok(stored.map(|s| s.open(keyring, action)).transpose()?)
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

/// What replacing a trigger did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replaced {
    /// The ids of the actions created afresh.
    Done(Vec<ActionId>),
    /// The user has no such trigger.
    Missing,
    /// Nothing was written: these actions (paths like `actions[0].headers`) would send
    /// their stored credentials to a new origin; they must be sent again.
    CredentialsStay(Vec<String>),
}

/// Replaces one of the user's triggers with `definition`, in one transaction. An action
/// that keeps its position and kind keeps its id, its breaker, its delivery history and its
/// signing secret; each secret sent anew (a bot token, headers) replaces the stored one.
/// Stored credential headers never follow an action to another origin: such a change
/// without the headers sent again writes nothing ([`Replaced::CredentialsStay`]).
pub async fn replace(
    conn: &mut PgConnection,
    keyring: &Keyring,
    user: UserId,
    trigger: TriggerId,
    definition: &TriggerDefinition,
) -> Result<Replaced, WriteError> {
    let mut tx = conn.begin().await?;
    if !update_rule(&mut tx, user, trigger, definition).await? {
        return Ok(Replaced::Missing);
    }
    set_enabled(&mut tx, user, trigger, definition.enabled, None).await?;
    let existing: Vec<(ActionId, i32, String, Value)> = sqlx::query_as(
        "SELECT id, position, kind, config FROM trigger_actions WHERE trigger_id = $1 ORDER BY position FOR NO KEY UPDATE",
    )
    .bind(trigger)
    .fetch_all(&mut *tx)
    .await?;
    let mut created = Vec::new();
    let mut stay = Vec::new();
    for (position, action) in definition.actions.iter().enumerate() {
        let position = i32::try_from(position).unwrap_or(i32::MAX);
        let kept = existing.iter().find(|(_, p, kind, _)| *p == position && kind == action.kind().as_str());
        match kept {
            Some((id, _, _, old_config)) => {
                let mut secrets = secrets_for_update(&mut tx, *id).await?.open(keyring, *id)?;
                let new = action.secrets();
                let old_origin =
                    serde_json::from_value::<Action>(old_config.clone()).ok().and_then(|old| old.credential_origin());
                let has_credentials = secrets.get("headers").and_then(Value::as_object).is_some_and(|h| !h.is_empty());
                if has_credentials && new.get("headers").is_none() && old_origin != action.credential_origin() {
                    stay.push(format!("actions[{position}].headers"));
                    continue;
                }
                if let (Some(merged), Value::Object(new)) = (secrets.as_object_mut(), new) {
                    merged.extend(new);
                }
                sqlx::query("UPDATE trigger_actions SET config = $2, updated_at = now() WHERE id = $1")
                    .bind(id)
                    .bind(with_secret_markers(action.public_config(), &secrets))
                    .execute(&mut *tx)
                    .await?;
                store_secrets(&mut tx, keyring, *id, &secrets).await?;
            }
            None => {
                sqlx::query("DELETE FROM trigger_actions WHERE trigger_id = $1 AND position = $2")
                    .bind(trigger)
                    .bind(position)
                    .execute(&mut *tx)
                    .await?;
                created.push(insert_action(&mut tx, keyring, trigger, position, action).await?);
            }
        }
    }
    if !stay.is_empty() {
        return Ok(Replaced::CredentialsStay(stay));
    }
    sqlx::query("DELETE FROM trigger_actions WHERE trigger_id = $1 AND position >= $2")
        .bind(trigger)
        .bind(i32::try_from(definition.actions.len()).unwrap_or(i32::MAX))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Replaced::Done(created))
}

/// A trigger with its rule and actions, as the engine evaluates it (`actions` is
/// `[{id, kind, config}]` in order; secrets stay in their own column).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RuleRow {
    pub id: TriggerId,
    pub user_id: UserId,
    pub name: String,
    pub enabled: bool,
    pub version: i64,
    pub scope: Value,
    pub condition: Option<Value>,
    pub cooldown_secs: i64,
    pub fires_from: DateTime<Utc>,
    pub actions: Value,
}

const SELECT_RULES: &str =
    "SELECT t.id, t.user_id, t.name, t.enabled, t.version, t.scope, t.condition, t.cooldown_secs, t.fires_from,
            COALESCE(jsonb_agg(jsonb_build_object('id', a.id, 'kind', a.kind, 'config', a.config)
                               ORDER BY a.position) FILTER (WHERE a.id IS NOT NULL), '[]'::jsonb) AS actions
     FROM triggers t LEFT JOIN trigger_actions a ON a.trigger_id = t.id";

/// One of `user`'s triggers with its rule, enabled or not.
pub async fn rule<'e>(
    db: impl sqlx::PgExecutor<'e>,
    user: UserId,
    trigger: TriggerId,
) -> Result<Option<RuleRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT_RULES} WHERE t.id = $1 AND t.user_id = $2 GROUP BY t.id")))
        .bind(trigger)
        .bind(user)
        .fetch_optional(db)
        .await
}

/// The enabled triggers among `ids`, with their rules.
pub async fn enabled_rules<'e>(db: impl sqlx::PgExecutor<'e>, ids: &[TriggerId]) -> Result<Vec<RuleRow>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<uuid::Uuid> = ids.iter().map(|id| id.0).collect();
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT_RULES} WHERE t.enabled AND t.id = ANY($1) GROUP BY t.id")))
        .bind(&ids)
        .fetch_all(db)
        .await
}

/// A digest of (id, version) over the enabled triggers: it changes whenever one is created,
/// deleted, enabled, disabled or edited (every change bumps the version).
pub async fn enabled_fingerprint<'e>(db: impl sqlx::PgExecutor<'e>) -> Result<(i64, i64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT count(*), COALESCE(sum(version), 0)::int8, COALESCE(sum(hashtext(id::text)), 0)::int8
         FROM triggers WHERE enabled",
    )
    .fetch_one(db)
    .await
}

/// The id and version of every enabled trigger.
pub async fn enabled_versions<'e>(db: impl sqlx::PgExecutor<'e>) -> Result<Vec<(TriggerId, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT id, version FROM triggers WHERE enabled").fetch_all(db).await
}

/// Up to `limit` triggers with a condition, enabled or not, whose ids come after `after`, in
/// id order: (id, scope, condition).
pub async fn conditions_after<'e>(
    db: impl sqlx::PgExecutor<'e>,
    after: Option<TriggerId>,
    limit: usize,
) -> Result<Vec<(TriggerId, Value, Value)>, sqlx::Error> {
    // Trigger ids are random UUIDs, never the nil one.
    let after = after.map_or(uuid::Uuid::nil(), |id| id.0);
    sqlx::query_as(
        "SELECT id, scope, condition FROM triggers WHERE id > $1 AND condition IS NOT NULL ORDER BY id LIMIT $2",
    )
    .bind(after)
    .bind(i64::try_from(limit.max(1)).unwrap_or(i64::MAX))
    .fetch_all(db)
    .await
}

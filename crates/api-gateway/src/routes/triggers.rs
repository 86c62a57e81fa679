use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use shared::domain::TriggerId;
use shared::store;
use shared::store::triggers::{self, Replaced, TriggerRow};
use shared::trigger::{Action, TriggerDefinition};

use crate::auth::AuthUser;
use crate::error::{ApiError, ErrorDetail};
use crate::routes::pagination;
use crate::state::AppState;

fn view(row: TriggerRow) -> Value {
    json!({
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "enabled": row.enabled,
        "scope": row.scope,
        "condition": row.condition,
        "cooldown_secs": row.cooldown_secs,
        "actions": row.actions,
        "version": row.version,
        "fires_from": row.fires_from,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    })
}

fn not_found() -> ApiError {
    ApiError::not_found("no such trigger")
}

fn trigger_id(raw: &str) -> Result<TriggerId, ApiError> {
    raw.parse().map_err(|_| not_found())
}

/// Parses a trigger with the processor's own parser: every fault with its JSON path. Its
/// templates are tried on sample events, so parsing runs on a thread of its own.
pub(crate) async fn parse(body: &Value) -> Result<TriggerDefinition, ApiError> {
    let body = body.clone();
    shared::render::off_thread(move || TriggerDefinition::parse(&body)).await.map_err(|errors| {
        ApiError::new(StatusCode::BAD_REQUEST, "validation_failed", "the trigger is not valid")
            .with_details(errors.0.into_iter().map(|e| ErrorDetail { path: e.path, message: e.message }).collect())
    })
}

/// `POST /api/v1/triggers`. Each webhook action's signing secret is in this answer, and
/// only here. Over a quota: 409 (`triggers_per_user`) or 422 (`actions_per_trigger`,
/// `scope_list_length`).
#[utoipa::path(
    post, path = "/api/v1/triggers", tag = "triggers", operation_id = "createTrigger",
    security(("bearer" = [])),
    request_body = crate::openapi::schemas::TriggerInput,
    responses(
        (status = 201, description = "the trigger; webhook actions show their signing secret here only", body = crate::openapi::schemas::Trigger),
        (status = 400, description = "the request is not valid", body = crate::openapi::schemas::ErrorBody),
        (status = 401, description = "no valid token or API key", body = crate::openapi::schemas::ErrorBody),
        (status = 409, description = "quota_exceeded: the user already has as many triggers as the quota triggers_per_user allows", body = crate::openapi::schemas::ErrorBody),
        (status = 413, description = "the body is over 256 KiB", body = crate::openapi::schemas::ErrorBody),
        (status = 422, description = "quota_exceeded: more actions (actions_per_trigger) or a longer scope list (scope_list_length) than the quotas allow; chat_not_linked: a Telegram action for the shared bot names a chat not linked to the user; details name the path", body = crate::openapi::schemas::ErrorBody),
        (status = 429, description = "rate limited; see Retry-After", body = crate::openapi::schemas::ErrorBody),
    ),
)]
pub async fn create(
    state: web::Data<AppState>,
    user: AuthUser,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    // Refused at once when the account is full, before the templates are tried (the count
    // is checked again, under a lock, when the trigger is stored).
    let mut conn = state.db.acquire().await?;
    let held = triggers::count(&mut conn, user.0).await?;
    drop(conn);
    if held >= i64::from(state.quotas.triggers_per_user) {
        return Err(state.quotas.triggers_reached());
    }
    let definition = parse(&body).await?;
    state.quotas.check_trigger(&definition)?;
    check_chats(&state, user, &definition, None).await?;
    let mut tx = state.db.begin().await?;
    let created =
        triggers::insert_within_quota(&mut tx, &state.keyring, user.0, &definition, state.quotas.triggers_per_user)
            .await?;
    let (id, actions) = created.ok_or_else(|| state.quotas.triggers_reached())?;
    let body = with_new_secrets(&mut tx, &state, user, id, &actions).await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(body))
}

/// `PUT /api/v1/triggers/{id}`: replaces the trigger. Actions that keep their position and
/// kind keep their id and signing secret; new webhook actions show theirs in this answer.
/// Over a quota on its size: 422 (`actions_per_trigger`, `scope_list_length`).
#[utoipa::path(
    put, path = "/api/v1/triggers/{id}", tag = "triggers", operation_id = "replaceTrigger",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "the trigger's id")),
    request_body = crate::openapi::schemas::TriggerInput,
    responses(
        (status = 200, description = "the trigger; new webhook actions show their signing secret here only", body = crate::openapi::schemas::Trigger),
        (status = 400, description = "the request is not valid", body = crate::openapi::schemas::ErrorBody),
        (status = 401, description = "no valid token or API key", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "not found (or another user's)", body = crate::openapi::schemas::ErrorBody),
        (status = 413, description = "the body is over 256 KiB", body = crate::openapi::schemas::ErrorBody),
        (status = 422, description = "quota_exceeded: more actions (actions_per_trigger) or a longer scope list (scope_list_length) than the quotas allow; credentials_stay: an action with stored credential headers moves to another origin without sending them again; chat_not_linked: a Telegram action for the shared bot names a chat not linked to the user; details name the path", body = crate::openapi::schemas::ErrorBody),
        (status = 429, description = "rate limited; see Retry-After", body = crate::openapi::schemas::ErrorBody),
    ),
)]
pub async fn replace(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<String>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let id = trigger_id(&id)?;
    let definition = parse(&body).await?;
    state.quotas.check_trigger(&definition)?;
    let current = triggers::get(&state.db, user.0, id).await?.ok_or_else(not_found)?;
    check_chats(&state, user, &definition, Some(&current.actions)).await?;
    let mut tx = state.db.begin().await?;
    let created = match triggers::replace(&mut tx, &state.keyring, user.0, id, &definition).await? {
        Replaced::Done(created) => created,
        Replaced::Missing => return Err(not_found()),
        Replaced::CredentialsStay(paths) => return Err(credentials_stay(paths)),
    };
    let body = with_new_secrets(&mut tx, &state, user, id, &created).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(body))
}

/// Refuses (422 `chat_not_linked`) a Telegram action for the server's shared bot whose chat
/// the user has not linked. An action with a bot of its own (sent now, or stored on the
/// action kept at that position of `current`) may name any chat.
async fn check_chats(
    state: &AppState,
    user: AuthUser,
    definition: &TriggerDefinition,
    current: Option<&Value>,
) -> Result<(), ApiError> {
    let mut details = Vec::new();
    for (position, action) in definition.actions.iter().enumerate() {
        let Action::Telegram(telegram) = action else { continue };
        let kept = current.and_then(|actions| actions.get(position));
        let own_bot_kept = kept.is_some_and(|a| a["type"] == "telegram" && a["own_bot"] == true);
        if telegram.bot_token.is_some() || own_bot_kept {
            continue;
        }
        let linked = store::telegram::is_linked(&state.db, user.0, &telegram.chat_id).await?;
        if !linked {
            details.push(ErrorDetail {
                path: format!("actions[{position}].chat_id"),
                message: "the shared bot sends only to chats linked to your account: send it /start <code> \
                          from the chat (POST /api/v1/telegram/link-codes), or give the action a bot_token"
                    .to_owned(),
            });
        }
    }
    if details.is_empty() {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "chat_not_linked",
        "a Telegram chat is not linked to your account",
    )
    .with_details(details))
}

/// 422 `credentials_stay`: stored credential headers never follow an action to a new origin.
fn credentials_stay(paths: Vec<String>) -> ApiError {
    let details = paths
        .into_iter()
        .map(|path| ErrorDetail {
            path,
            message: "the URL moves to another origin: send the credential headers for it again \
                      (or an empty secret_headers / headers object to store none)"
                .to_owned(),
        })
        .collect();
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "credentials_stay",
        "stored credentials never follow an action to a new origin",
    )
    .with_details(details)
}

/// The trigger's view, with the signing secrets of the actions just created (the only time
/// they are shown).
async fn with_new_secrets(
    tx: &mut sqlx::PgConnection,
    state: &AppState,
    user: AuthUser,
    id: TriggerId,
    created: &[shared::domain::ActionId],
) -> Result<Value, ApiError> {
    let mut secrets = serde_json::Map::new();
    for action in created {
        let stored = triggers::action_secrets(&mut *tx, &state.keyring, user.0, *action).await?;
        if let Some(secret) = stored.as_ref().and_then(|s| s.get("signing_secret")) {
            secrets.insert(action.to_string(), secret.clone());
        }
    }
    let row = triggers::get(&mut *tx, user.0, id).await?.ok_or_else(not_found)?;
    let mut body = view(row);
    if let Some(actions) = body["actions"].as_array_mut() {
        for action in actions {
            let id = action["id"].as_str().unwrap_or_default().to_owned();
            if let Some(secret) = secrets.get(&id) {
                action["signing_secret"] = secret.clone();
            }
        }
    }
    Ok(body)
}

/// `GET /api/v1/triggers/{id}`
#[utoipa::path(
    get, path = "/api/v1/triggers/{id}", tag = "triggers", operation_id = "getTrigger",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "the trigger's id")),
    responses(
        (status = 200, description = "the trigger, with each action's breaker and last delivery", body = crate::openapi::schemas::Trigger),
        (status = 401, description = "no valid token or API key", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "not found (or another user's)", body = crate::openapi::schemas::ErrorBody),
        (status = 429, description = "rate limited; see Retry-After", body = crate::openapi::schemas::ErrorBody),
    ),
)]
pub async fn get(state: web::Data<AppState>, user: AuthUser, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = trigger_id(&id)?;
    let row = triggers::get(&state.db, user.0, id).await?.ok_or_else(not_found)?;
    Ok(HttpResponse::Ok().json(view(row)))
}

#[derive(Deserialize)]
pub struct Page {
    limit: Option<i64>,
    cursor: Option<String>,
}

#[derive(Serialize)]
struct Listed {
    items: Vec<Value>,
    next_cursor: Option<String>,
}

/// `GET /api/v1/triggers`: the user's triggers, oldest first, a page at a time.
#[utoipa::path(
    get, path = "/api/v1/triggers", tag = "triggers", operation_id = "listTriggers",
    security(("bearer" = [])),
    params(
        ("limit" = Option<u32>, Query, description = "1 to 100, default 50"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "the user's triggers, oldest first", body = crate::openapi::schemas::TriggerPage),
        (status = 400, description = "the request is not valid", body = crate::openapi::schemas::ErrorBody),
        (status = 401, description = "no valid token or API key", body = crate::openapi::schemas::ErrorBody),
        (status = 429, description = "rate limited; see Retry-After", body = crate::openapi::schemas::ErrorBody),
    ),
)]
pub async fn list(
    state: web::Data<AppState>,
    user: AuthUser,
    page: web::Query<Page>,
) -> Result<HttpResponse, ApiError> {
    let limit = pagination::limit(page.limit)?;
    let after = pagination::decode(page.cursor.as_deref())?;
    let rows = triggers::list(&state.db, user.0, after, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    let rows: Vec<TriggerRow> = rows.into_iter().take(usize::try_from(limit).unwrap_or(50)).collect();
    let next_cursor = if more { rows.last().map(|r| pagination::encode(r.created_at, r.id)) } else { None };
    Ok(HttpResponse::Ok().json(Listed { items: rows.into_iter().map(view).collect(), next_cursor }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Patch {
    enabled: Option<bool>,
}

/// `PATCH /api/v1/triggers/{id}`: enable or disable. Enabling starts firing from now.
#[utoipa::path(
    patch, path = "/api/v1/triggers/{id}", tag = "triggers", operation_id = "patchTrigger",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "the trigger's id")),
    request_body = crate::openapi::schemas::TriggerPatch,
    responses(
        (status = 200, description = "the trigger", body = crate::openapi::schemas::Trigger),
        (status = 400, description = "the request is not valid", body = crate::openapi::schemas::ErrorBody),
        (status = 401, description = "no valid token or API key", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "not found (or another user's)", body = crate::openapi::schemas::ErrorBody),
        (status = 429, description = "rate limited; see Retry-After", body = crate::openapi::schemas::ErrorBody),
    ),
)]
pub async fn patch(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<String>,
    body: web::Json<Patch>,
) -> Result<HttpResponse, ApiError> {
    let id = trigger_id(&id)?;
    let mut conn = state.db.acquire().await?;
    if let Some(enabled) = body.enabled
        && !triggers::set_enabled(&mut conn, user.0, id, enabled, None).await?
    {
        return Err(not_found());
    }
    let row = triggers::get(&mut *conn, user.0, id).await?.ok_or_else(not_found)?;
    Ok(HttpResponse::Ok().json(view(row)))
}

/// `DELETE /api/v1/triggers/{id}`
#[utoipa::path(
    delete, path = "/api/v1/triggers/{id}", tag = "triggers", operation_id = "deleteTrigger",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "the trigger's id")),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, description = "no valid token or API key", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "not found (or another user's)", body = crate::openapi::schemas::ErrorBody),
        (status = 429, description = "rate limited; see Retry-After", body = crate::openapi::schemas::ErrorBody),
    ),
)]
pub async fn delete(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = trigger_id(&id)?;
    let mut conn = state.db.acquire().await?;
    if triggers::delete(&mut conn, user.0, id).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(not_found())
    }
}

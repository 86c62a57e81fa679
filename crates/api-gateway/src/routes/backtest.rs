//! `POST /api/v1/triggers/backtest`: how a trigger (saved, or a draft) would have behaved
//! over a period of stored history. Nothing is written, sent or changed.

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use engine::LoadedTrigger;
use engine::backtest::{Finished, Report};
use serde::Deserialize;
use serde_json::Value;
use shared::render;
use shared::store::events::history::{self, ScopeFilter};
use tokio::sync::mpsc;

use crate::auth::AuthUser;
use crate::backtest::{self, Period, Refused, Running};
use crate::error::{ApiError, ErrorDetail};
use crate::routes::{trigger_test, triggers};
use crate::state::AppState;

/// The period when none is given: the last 7 days.
const DEFAULT_DAYS: i64 = 7;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BacktestRequest {
    trigger: Option<Value>,
    trigger_id: Option<String>,
    from: Option<String>,
    to: Option<String>,
    warm: Option<bool>,
}

fn invalid(path: &str, message: impl Into<String>) -> ApiError {
    let message = message.into();
    ApiError::new(StatusCode::BAD_REQUEST, "validation_failed", message.clone())
        .with_details(vec![ErrorDetail { path: path.to_owned(), message }])
}

fn time(path: &str, given: Option<&str>, default: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    match given {
        None => Ok(default),
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| invalid(path, format!("{path} must be an RFC 3339 time such as 2026-11-01T00:00:00Z"))),
    }
}

/// `POST /api/v1/triggers/backtest` with `{"trigger": {...}}` or `{"trigger_id": "..."}`, and
/// optional `from`, `to` and `warm`.
#[utoipa::path(
    post, path = "/api/v1/triggers/backtest", tag = "triggers", operation_id = "backtestTrigger",
    security(("bearer" = [])),
    request_body = crate::openapi::schemas::BacktestRequest,
    responses(
        (status = 200, description = "how the trigger would have behaved; nothing is written or sent. While it runs, blanks precede the JSON document", body = Answer),
        (status = 400, description = "the request or the trigger definition is not valid; details name each path", body = crate::openapi::schemas::ErrorBody),
        (status = 401, description = "no valid token or API key", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "no such trigger (or another user's)", body = crate::openapi::schemas::ErrorBody),
        (status = 409, description = "trigger_unreadable: the stored trigger no longer reads (a row edited by hand)", body = crate::openapi::schemas::ErrorBody),
        (status = 422, description = "too_many_events: the period holds more events of the scope than BACKTEST_MAX_EVENTS; quota_exceeded: the definition is over a quota", body = crate::openapi::schemas::ErrorBody),
        (status = 429, description = "another backtest of the user is running, or rate limited; see Retry-After", body = crate::openapi::schemas::ErrorBody),
    ),
)]
pub async fn backtest(
    state: web::Data<AppState>,
    user: AuthUser,
    body: web::Json<BacktestRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let now = Utc::now();
    let to = time("to", body.to.as_deref(), now)?;
    let from = time("from", body.from.as_deref(), to - Duration::days(DEFAULT_DAYS))?;
    if from >= to {
        return Err(invalid("from", "from must be before to"));
    }
    let period = Period { from, to, warm: body.warm.unwrap_or(true) };
    let trigger = match (body.trigger, body.trigger_id) {
        (Some(definition), None) => draft(&state, user, &definition).await?,
        (None, Some(id)) => {
            let missing = || ApiError::not_found("no such trigger");
            let id = id.parse().map_err(|_| missing())?;
            trigger_test::load(&state, user.0, id).await?.ok_or_else(missing)?
        }
        _ => return Err(invalid("trigger", "give either trigger (a definition) or trigger_id (a saved trigger)")),
    };

    let running = Running::start(&state.backtests, &state.redis, user.0).await.map_err(|refused| match refused {
        Refused::UserBusy => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "backtest_running",
            "another backtest of this account is running",
        )
        .with_retry_after(1),
        Refused::GatewayBusy => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "backtests_busy",
            "the server runs as many backtests as it may at once; try again shortly",
        )
        .with_retry_after(5),
    })?;
    let limits = state.backtest;
    let filter = ScopeFilter::of(&trigger.rule.scope);
    let mut conn = state.db.acquire().await?;
    // Counting stops one past the limit: refusing costs no more than the limit.
    let count = history::count_in_period(&mut conn, &filter, period.from, period.to, limits.max_events + 1).await?;
    drop(conn);
    if count > limits.max_events {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_many_events",
            format!(
                "the period holds more than {} events of the trigger's scope, the most a backtest may scan; \
                 narrow the period or the scope",
                limits.max_events
            ),
        ));
    }

    // The answer streams: blanks while the backtest runs, then the document. A client that
    // goes away drops the stream, which stops the backtest and frees the user's place.
    let (sender, receiver) = mpsc::channel::<Chunk>(4);
    let pool = state.db.clone();
    let task = tokio::spawn(async move {
        let keep_alive = sender.clone();
        let mut last = tokio::time::Instant::now();
        let tick = || {
            if last.elapsed() >= limits.keep_alive {
                last = tokio::time::Instant::now();
                let _ = keep_alive.try_send(Chunk::Blank);
            }
        };
        let result = backtest::run(&pool, trigger, &period, limits, tick).await;
        running.release().await;
        let chunk = match result {
            Ok(finished) => match serde_json::to_vec(&answer(finished, &period).await) {
                Ok(document) => Chunk::Document(Bytes::from(document)),
                Err(err) => {
                    tracing::error!(error = %err, "a backtest's answer did not serialize");
                    Chunk::Failed
                }
            },
            Err(err) => {
                tracing::warn!(error = %err, "a backtest stopped");
                Chunk::Failed
            }
        };
        let _ = sender.send(chunk).await;
    });
    Ok(HttpResponse::Ok().content_type("application/json").streaming(Streamed {
        receiver,
        ended: false,
        _task: crate::backtest::AbortOnDrop(task),
    }))
}

/// A trigger defined in the request, validated as `POST /triggers` validates it (paths
/// under `trigger.`).
async fn draft(state: &AppState, user: AuthUser, definition: &Value) -> Result<LoadedTrigger, ApiError> {
    let under = |err: ApiError| {
        let details = err
            .details()
            .iter()
            .map(|d| ErrorDetail { path: format!("trigger.{}", d.path), message: d.message.clone() });
        let details: Vec<_> = details.collect();
        err.with_details(details)
    };
    let definition = triggers::parse(definition).await.map_err(under)?;
    state.quotas.check_trigger(&definition).map_err(under)?;
    Ok(LoadedTrigger::draft(user.0, &definition))
}

// The answer and its schema in the OpenAPI document are this one type.
/// How the trigger would have behaved over the period: the report, the period as applied,
/// and what each action would have sent for the first firing.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = BacktestResult)]
pub struct Answer {
    #[serde(flatten)]
    report: Report,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    warm: bool,
    /// For the first firing, per action: `id`, `type` and what it would send, as
    /// `POST /triggers/{id}/test` shows it.
    first_fire_actions: Vec<Value>,
}

async fn answer(finished: Finished, period: &Period) -> Answer {
    let Finished { report, first_fire, trigger } = finished;
    let first_fire_actions: Vec<Value> = match first_fire {
        Some((event, aggregates)) => {
            let jobs: Vec<_> = trigger
                .actions
                .iter()
                .map(|action| engine::evaluate::job(&trigger, action, &event, aggregates.clone()))
                .collect();
            render::off_thread(move || jobs.iter().map(trigger_test::rendered).collect()).await
        }
        None => Vec::new(),
    };
    Answer { report, from: period.from, to: period.to, warm: period.warm, first_fire_actions }
}

/// A backtest that failed after its answer began: the connection is cut, so the client
/// never takes a partial document for a result.
#[derive(Debug, thiserror::Error)]
#[error("the backtest failed")]
struct BacktestFailed;

impl actix_web::ResponseError for BacktestFailed {}

/// What the backtest's task hands its answer.
enum Chunk {
    /// A blank: the backtest runs on.
    Blank,
    /// The whole document: the backtest ended.
    Document(Bytes),
    /// The backtest stopped short.
    Failed,
}

/// The streamed answer; dropping it stops the backtest. Unless it ends with the document,
/// it ends with an error, which cuts the connection: a task that died (or failed) never
/// leaves a well-formed empty answer.
struct Streamed {
    receiver: mpsc::Receiver<Chunk>,
    ended: bool,
    _task: crate::backtest::AbortOnDrop,
}

impl futures_core::Stream for Streamed {
    type Item = Result<Bytes, BacktestFailed>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let chunk = match self.receiver.poll_recv(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(chunk) => chunk,
        };
        Poll::Ready(Some(match chunk {
            Some(Chunk::Blank) => Ok(Bytes::from_static(b" ")),
            Some(Chunk::Document(document)) => {
                self.ended = true;
                Ok(document)
            }
            Some(Chunk::Failed) | None => {
                self.ended = true;
                Err(BacktestFailed)
            }
        }))
    }
}

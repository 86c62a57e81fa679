//! The one way errors leave the API: `{"error": {"code", "message", "details"}}` (SPEC 4).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// One fault inside a request body, located by its JSON path.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ErrorDetail {
    #[schema(example = "condition.all[1].op")]
    pub path: String,
    pub message: String,
}

/// An error answer. Only this type reaches clients; anything unexpected becomes an
/// `internal` error whose cause is logged under the request's id, never sent.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Vec<ErrorDetail>,
    /// Seconds for a `Retry-After` header (429).
    retry_after: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    details: &'a [ErrorDetail],
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), details: Vec::new(), retry_after: None }
    }

    pub fn with_details(mut self, details: Vec<ErrorDetail>) -> Self {
        self.details = details;
        self
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409 `quota_exceeded`: the user already has as many of `what` as quota `quota` allows,
    /// e.g. `quota "triggers_per_user" reached: at most 100 triggers per account`.
    pub fn quota_reached(quota: &str, limit: u32, what: &str) -> Self {
        Self::new(StatusCode::CONFLICT, "quota_exceeded", format!("quota \"{quota}\" reached: at most {limit} {what}"))
    }

    /// 422 `quota_exceeded`: the request goes beyond quota `quota` on its own, e.g.
    /// `quota "actions_per_trigger" exceeded: at most 10 actions per trigger`; `details`
    /// locate each excess by its JSON path.
    pub fn quota_exceeded(quota: &str, limit: u32, what: &str, details: Vec<ErrorDetail>) -> Self {
        let message = format!("quota \"{quota}\" exceeded: at most {limit} {what}");
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "quota_exceeded", message).with_details(details)
    }

    /// Logs the cause and answers 500 without it. A value PostgreSQL refuses to store (a NUL
    /// character, a number out of range: SQLSTATE class 22) came from the request and is
    /// answered 400 instead.
    pub fn internal(cause: &(dyn std::error::Error + 'static)) -> Self {
        if refused_data(cause) {
            return Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_value",
                "the request holds a value that cannot be stored (for example a NUL character)",
            );
        }
        tracing::error!(error = %cause, "request failed");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "an internal error occurred")
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The faults located in the request body, if any.
    pub fn details(&self) -> &[ErrorDetail] {
        &self.details
    }
}

/// The failures of the store and the engine that a handler passes on with `?`: each is an
/// internal error (logged, answered 500 without its cause), or a 400 for a value PostgreSQL
/// refused (see [`ApiError::internal`]).
macro_rules! internal_from {
    ($($error:ty),* $(,)?) => {$(
        impl From<$error> for ApiError {
            fn from(err: $error) -> Self {
                ApiError::internal(&err)
            }
        }
    )*};
}

internal_from!(
    sqlx::Error,
    shared::store::events::StoreError,
    shared::store::triggers::WriteError,
    jsonwebtoken::errors::Error,
);

/// A stored trigger that no longer reads (a row edited by hand): said as it is, not as a
/// failure of the server.
impl From<engine::trigger::Unreadable> for ApiError {
    fn from(err: engine::trigger::Unreadable) -> Self {
        ApiError::new(StatusCode::CONFLICT, "trigger_unreadable", err.to_string())
    }
}

/// Whether `cause`, or an error under it, is PostgreSQL refusing a value (SQLSTATE 22xxx).
fn refused_data(cause: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(cause);
    while let Some(error) = next {
        if let Some(sqlx::Error::Database(db)) = error.downcast_ref::<sqlx::Error>()
            && db.code().is_some_and(|code| code.starts_with("22"))
        {
            return true;
        }
        next = error.source();
    }
    false
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(seconds) = self.retry_after {
            response.insert_header(("retry-after", seconds.to_string()));
        }
        response.json(Body { error: Inner { code: self.code, message: &self.message, details: &self.details } })
    }
}

/// Largest JSON body accepted.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Malformed or oversized JSON bodies answer the error JSON too (400 / 413), never a bare
/// text page.
pub fn json_config() -> actix_web::web::JsonConfig {
    actix_web::web::JsonConfig::default().limit(MAX_BODY_BYTES).error_handler(|err, _req| {
        use actix_web::error::JsonPayloadError;
        let api = match &err {
            JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body is larger than {MAX_BODY_BYTES} bytes"),
            ),
            JsonPayloadError::ContentType => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_content_type",
                "expected Content-Type: application/json",
            ),
            JsonPayloadError::Deserialize(inner) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("the body is not valid JSON for this request: {inner}"),
            ),
            other => ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", other.to_string()),
        };
        api.into()
    })
}

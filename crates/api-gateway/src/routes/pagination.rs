//! Cursor pagination shared by the list endpoints: `limit` (1 to 100, default 50) and an
//! opaque `cursor` naming the last item of the previous page.

use actix_web::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

use crate::error::{ApiError, ErrorDetail};

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 100;

pub fn invalid(path: &str, message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "validation_failed", "the query is not valid")
        .with_details(vec![ErrorDetail { path: path.into(), message: message.into() }])
}

/// The page size asked for, checked.
pub fn limit(asked: Option<i64>) -> Result<i64, ApiError> {
    let limit = asked.unwrap_or(DEFAULT_LIMIT);
    if (1..=MAX_LIMIT).contains(&limit) { Ok(limit) } else { Err(invalid("limit", "must be between 1 and 100")) }
}

/// A cursor for a position in an order by (time, id).
pub fn encode(at: DateTime<Utc>, id: impl std::fmt::Display) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}|{id}", at.timestamp_micros()))
}

/// The position a cursor names; a cursor that is not ours is a 400 on `cursor`.
pub fn decode<T: std::str::FromStr>(cursor: Option<&str>) -> Result<Option<(DateTime<Utc>, T)>, ApiError> {
    let Some(cursor) = cursor else { return Ok(None) };
    let parse = || {
        let text = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
        let (micros, id) = text.split_once('|')?;
        Some((DateTime::from_timestamp_micros(micros.parse().ok()?)?, id.parse().ok()?))
    };
    parse().map(Some).ok_or_else(|| invalid("cursor", "not a cursor from this API"))
}

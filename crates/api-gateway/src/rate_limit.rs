//! Rate limits per user (or API key's user) and, stricter, per client address on the auth
//! routes. Counters live in Redis, so every gateway instance shares them. When Redis is
//! away the limits are not enforced rather than the API refusing everyone.

use actix_web::http::StatusCode;

use crate::error::ApiError;
use crate::state::AppState;

/// Requests allowed per minute.
#[derive(Debug, Clone)]
pub struct RateLimits {
    /// Per client address on register and login.
    pub auth_per_minute: u32,
    /// Per authenticated user on every other route.
    pub per_minute: u32,
    /// Proxies whose `X-Forwarded-For` names the client (`TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self { auth_per_minute: 10, per_minute: 600, trusted_proxies: Vec::new() }
    }
}

const WINDOW_SECS: i64 = 60;

/// Counts one request of `who` in `scope`; 429 with Retry-After once over `limit`.
pub async fn check(state: &AppState, scope: &str, who: &str, limit: u32) -> Result<(), ApiError> {
    let now = chrono::Utc::now().timestamp();
    let window = now - now.rem_euclid(WINDOW_SECS);
    let key = state.redis.config().key(&format!("rate:{scope}:{who}:{window}"));
    let counted: redis::RedisResult<i64> = async {
        let mut conn = state.redis.connection().await?;
        let (count, _): (i64, bool) =
            redis::pipe().atomic().incr(&key, 1).expire(&key, WINDOW_SECS * 2).query_async(&mut conn).await?;
        Ok(count)
    }
    .await;
    match counted {
        Ok(count) if count > i64::from(limit) => {
            let retry_after = u64::try_from(window + WINDOW_SECS - now).unwrap_or(1).max(1);
            Err(ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many requests; slow down")
                .with_retry_after(retry_after))
        }
        Ok(_) => Ok(()),
        Err(err) => {
            tracing::warn!(error = %err, "rate limits not enforced: Redis unavailable");
            Ok(())
        }
    }
}

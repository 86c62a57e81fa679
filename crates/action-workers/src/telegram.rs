//! Telegram messages through the Bot API's `sendMessage`, with values escaped for the parse
//! mode, `retry_after` honoured, and pacing shared by every worker through Redis (one
//! message a second per chat, thirty a second per bot, and on the server's shared bot a
//! share per user, so no one user spends the bot's limit).

use std::time::{Duration, Instant};

use redis::AsyncCommands;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sha2::{Digest, Sha256};
use shared::domain::UserId;
use shared::redis::RedisHandle;
use shared::trigger::{ParseMode, TelegramAction};

use crate::config::TelegramSettings;
use crate::outcome::{Attempt, Verdict};

const PER_BOT_PER_SECOND: i64 = 30;

#[derive(Clone)]
pub struct TelegramClient {
    http: reqwest::Client,
    api_url: String,
    default_token: Option<SecretString>,
    redis: RedisHandle,
    /// Messages a second one user may send through the shared bot.
    per_user: i64,
}

/// What the pacer says about sending now.
pub enum Pace {
    Go,
    /// Come back after this long; no attempt is spent.
    Wait(Duration),
}

impl TelegramClient {
    pub fn new(settings: &TelegramSettings, redis: RedisHandle) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        Ok(Self {
            http,
            api_url: settings.api_url.trim_end_matches('/').to_owned(),
            default_token: settings.bot_token.clone(),
            redis,
            per_user: i64::from(settings.shared_per_user_per_second.max(1)),
        })
    }

    /// The token to use: the action's own, else the server's.
    pub fn token<'a>(&'a self, own: Option<&'a SecretString>) -> Option<&'a SecretString> {
        own.or(self.default_token.as_ref())
    }

    /// Takes a sending slot for `chat` of the bot `token`, shared by every worker; on the
    /// shared bot, `user` is the one sending, within its share.
    pub async fn pace(&self, token: &SecretString, chat: &str, user: Option<UserId>) -> redis::RedisResult<Pace> {
        let bot = hex_digest(token.expose_secret());
        let mut conn = self.redis.connection().await?;
        let chat_key = self.redis.config().key(&format!("telegram:chat:{bot}:{chat}"));
        let taken: Option<String> =
            redis::cmd("SET").arg(&chat_key).arg(1).arg("NX").arg("PX").arg(1_000).query_async(&mut conn).await?;
        if taken.is_none() {
            let ttl: i64 = conn.pttl(&chat_key).await?;
            return Ok(Pace::Wait(Duration::from_millis(u64::try_from(ttl.max(50)).unwrap_or(1_000))));
        }
        let second = chrono::Utc::now().timestamp();
        let bot_key = self.redis.config().key(&format!("telegram:bot:{bot}:{second}"));
        let sent: i64 = conn.incr(&bot_key, 1).await?;
        let _: bool = conn.expire(&bot_key, 2).await?;
        let over_share = match user {
            Some(user) if sent <= PER_BOT_PER_SECOND => {
                let user_key = self.redis.config().key(&format!("telegram:user:{bot}:{user}:{second}"));
                let by_user: i64 = conn.incr(&user_key, 1).await?;
                let _: bool = conn.expire(&user_key, 2).await?;
                if by_user > self.per_user {
                    metrics::counter!("telegram_paced_per_user_total").increment(1);
                }
                by_user > self.per_user
            }
            _ => false,
        };
        if sent > PER_BOT_PER_SECOND || over_share {
            // Give the slots back; the bot (or this user's share of it) is at its limit
            // this second.
            let _: i64 = conn.del(&chat_key).await?;
            let _: i64 = conn.decr(&bot_key, 1).await?;
            return Ok(Pace::Wait(Duration::from_millis(
                1_000 - u64::from(chrono::Utc::now().timestamp_subsec_millis().min(999)),
            )));
        }
        Ok(Pace::Go)
    }

    /// One `sendMessage`.
    pub async fn send(&self, token: &SecretString, action: &TelegramAction, text: String) -> Attempt {
        let url = format!("{}/bot{}/sendMessage", self.api_url, token.expose_secret());
        let mut body = json!({"chat_id": action.chat_id, "text": text, "link_preview_options": {"is_disabled": true}});
        match action.parse_mode {
            ParseMode::Html => body["parse_mode"] = json!("HTML"),
            ParseMode::MarkdownV2 => body["parse_mode"] = json!("MarkdownV2"),
            ParseMode::Plain => {}
        }
        let started = Instant::now();
        let response = match self.http.post(url).json(&body).send().await {
            Ok(response) => response,
            // The URL holds the token: it never goes into an error message.
            Err(err) => {
                return Attempt {
                    verdict: Verdict::Retry { after: None },
                    status: None,
                    error: Some(shared::startup::error_chain(&err.without_url())),
                    latency: started.elapsed(),
                    excerpt: None,
                };
            }
        };
        let status = response.status().as_u16();
        let reply: serde_json::Value = response.json().await.unwrap_or(serde_json::Value::Null);
        let latency = started.elapsed();
        let description = reply["description"].as_str().map(str::to_owned);
        let verdict = match status {
            200..=299 if reply["ok"] == json!(true) => Verdict::Delivered,
            429 => Verdict::Retry { after: reply["parameters"]["retry_after"].as_u64().map(Duration::from_secs) },
            500..=599 => Verdict::Retry { after: None },
            _ => Verdict::Permanent,
        };
        Attempt {
            error: (verdict != Verdict::Delivered).then(|| description.unwrap_or_else(|| format!("HTTP {status}"))),
            verdict,
            status: Some(status),
            latency,
            excerpt: Some(reply.to_string().chars().take(crate::webhook::EXCERPT_BYTES).collect()),
        }
    }
}

fn hex_digest(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

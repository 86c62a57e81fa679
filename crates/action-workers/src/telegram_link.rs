//! Linking chats to users for the server's shared bot: the bot's updates are read with
//! `getUpdates` (long polling), and a `/start <code>` sent from a chat links that chat to the
//! user the API issued the code to. One process reads a bot's updates at a time (a
//! PostgreSQL advisory lock, held on a connection of its own); how far it read is stored, so
//! a restart neither loses nor repeats an update (redeeming a code is idempotent anyway).

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use shared::store::telegram::{self, Chat, Redeemed};
use sqlx::PgPool;
use tokio::sync::watch;

use crate::config::TelegramSettings;

/// The advisory lock key of the update reader of a bot: this tag with the bot's id.
const LOCK_TAG: i64 = 0x7e1e_6a00_0000_0000;
/// Largest `getUpdates` answer read; an answer beyond it is treated as garbage.
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;
/// Updates asked for at once.
const BATCH: u32 = 100;
/// How long a process that does not hold the lock waits before trying again.
const STANDBY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("getUpdates failed: {0}")]
    Updates(String),
}

/// The bot's numeric id: the part of its token before the colon.
pub fn bot_id(token: &SecretString) -> Option<i64> {
    token.expose_secret().split_once(':').and_then(|(id, _)| id.parse().ok())
}

/// Reads the shared bot's updates until `stop` turns true; nothing to do without a bot.
pub async fn run(pool: PgPool, settings: TelegramSettings, mut stop: watch::Receiver<bool>) {
    let Some(token) = settings.bot_token.clone() else { return };
    let Some(bot) = bot_id(&token) else {
        tracing::warn!("TELEGRAM_BOT_TOKEN does not start with the bot's id: chats cannot be linked");
        return;
    };
    let http = match reqwest::Client::builder().timeout(settings.long_poll + Duration::from_secs(10)).build() {
        Ok(http) => http,
        Err(err) => {
            tracing::error!(error = %err, "no HTTP client for the Telegram updates");
            return;
        }
    };
    let reader =
        Reader { pool, http, api_url: settings.api_url.trim_end_matches('/').to_owned(), token, bot, settings };
    let first_pause = Duration::from_millis(125);
    let mut pause = first_pause;
    while !*stop.borrow() {
        let watching = stop.clone();
        let wait = tokio::select! {
            read = reader.lead(&watching) => match read {
                Ok(()) => { pause = first_pause; STANDBY }
                Err(err) => {
                    tracing::warn!(error = %shared::startup::error_chain(&err), "reading the Telegram updates paused");
                    pause = (pause * 2).min(Duration::from_secs(60));
                    pause
                }
            },
            _ = stop.changed() => return,
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

struct Reader {
    pool: PgPool,
    http: reqwest::Client,
    api_url: String,
    token: SecretString,
    bot: i64,
    settings: TelegramSettings,
}

impl Reader {
    /// Takes the bot's lock and reads updates while holding it; returns at once when
    /// another process holds it.
    async fn lead(&self, stop: &watch::Receiver<bool>) -> Result<(), LinkError> {
        // The lock goes with the connection: detached from the pool, it closes (and the lock
        // is released) when this returns, whatever the way.
        let mut lock = self.pool.acquire().await?.detach();
        let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(LOCK_TAG ^ self.bot)
            .fetch_one(&mut lock)
            .await?;
        if !held {
            return Ok(());
        }
        let mut offset = telegram::next_offset(&self.pool, self.bot).await?.unwrap_or(0);
        while !*stop.borrow() {
            // The lock is ours as long as its connection lives.
            sqlx::query("SELECT 1").execute(&mut lock).await?;
            let updates = self.updates(offset).await?;
            if let Some(next) = self.handle(&updates).await? {
                offset = next;
                telegram::set_next_offset(&self.pool, self.bot, offset).await?;
            }
        }
        Ok(())
    }

    /// One `getUpdates` from `offset`, waiting up to the long-poll time for some.
    async fn updates(&self, offset: i64) -> Result<Vec<Value>, LinkError> {
        let url = format!("{}/bot{}/getUpdates", self.api_url, self.token.expose_secret());
        let body = json!({
            "offset": offset,
            "limit": BATCH,
            "timeout": self.settings.long_poll.as_secs(),
            "allowed_updates": ["message", "channel_post"],
        });
        // The URL holds the token: errors are reported without it.
        let failed = |err: reqwest::Error| LinkError::Updates(shared::startup::error_chain(&err.without_url()));
        let mut response = self.http.post(url).json(&body).send().await.map_err(failed)?;
        let status = response.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(LinkError::Updates(format!("an answer over {MAX_ANSWER_BYTES} bytes")));
            }
            bytes.extend_from_slice(&chunk);
        }
        let answer: Value = serde_json::from_slice(&bytes)
            .map_err(|_| LinkError::Updates(format!("HTTP {status} with an answer that is not JSON")))?;
        match (answer["ok"].as_bool(), answer["result"].as_array()) {
            (Some(true), Some(updates)) => Ok(updates.clone()),
            _ => {
                let description: String =
                    answer["description"].as_str().unwrap_or("no description").chars().take(200).collect();
                Err(LinkError::Updates(format!("HTTP {status}: {description}")))
            }
        }
    }

    /// Links the chats of the `/start <code>` messages among `updates`; returns the next
    /// offset, `None` when there were no updates.
    async fn handle(&self, updates: &[Value]) -> Result<Option<i64>, LinkError> {
        let mut next = None;
        for update in updates {
            let Some(id) = update["update_id"].as_i64() else { continue };
            next = Some(next.unwrap_or(i64::MIN).max(id.saturating_add(1)));
            let Some((code, chat)) = start_command(update) else { continue };
            let mut conn = self.pool.acquire().await?;
            match telegram::redeem(&mut conn, &code, &chat).await? {
                Redeemed::Linked(user) => {
                    metrics::counter!("telegram_chats_linked_total").increment(1);
                    tracing::info!(user.id = %user, chat.id = chat.id, "Telegram chat linked");
                    self.reply(chat.id, "This chat is linked: alerts of the triggers that name it will arrive here.")
                        .await;
                }
                Redeemed::Full => {
                    self.reply(chat.id, "Not linked: the account already has as many chats as it may link.").await;
                }
                // Unknown codes get no answer: the bot is not made to talk by strangers.
                Redeemed::Unknown => {}
            }
        }
        Ok(next)
    }

    /// A best-effort answer in the chat.
    async fn reply(&self, chat: i64, text: &str) {
        let url = format!("{}/bot{}/sendMessage", self.api_url, self.token.expose_secret());
        let sent = self.http.post(url).json(&json!({"chat_id": chat, "text": text})).send().await;
        if let Err(err) = sent {
            tracing::debug!(error = %err.without_url(), "the link confirmation was not sent");
        }
    }
}

/// The code and chat of an update that is a `/start <code>` (also `/start@bot <code>`, in a
/// message or a channel post); `None` for anything else.
fn start_command(update: &Value) -> Option<(String, Chat)> {
    let message = update.get("message").or_else(|| update.get("channel_post"))?;
    let text = message["text"].as_str()?;
    if text.len() > 256 {
        return None;
    }
    let mut words = text.split_whitespace();
    let command = words.next()?;
    if command != "/start" && !command.starts_with("/start@") {
        return None;
    }
    let code = words.next()?;
    let plausible =
        (16..=64).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !plausible {
        return None;
    }
    let chat = &message["chat"];
    let id = chat["id"].as_i64()?;
    let title = match chat["title"].as_str() {
        Some(title) => title.to_owned(),
        None => [chat["first_name"].as_str(), chat["last_name"].as_str()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" "),
    };
    let username = chat["username"].as_str().filter(|u| telegram::is_username(u)).map(str::to_owned);
    Some((code.to_owned(), Chat { id, username, title }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_start_with_a_plausible_code_is_read() {
        let code = "AbCdEfGhIjKlMnOpQrStUv";
        let update = |text: &str| json!({"update_id": 1, "message": {"text": text, "chat": {"id": -5, "title": "Ops", "username": "ops_room"}}});
        let (read, chat) = start_command(&update(&format!("/start {code}"))).expect("a start");
        assert_eq!(read, code);
        assert_eq!(chat, Chat { id: -5, username: Some("ops_room".into()), title: "Ops".into() });
        assert!(start_command(&update(&format!("/start@alerts_bot {code}"))).is_some());
        for text in [
            "/start",
            "hello",
            "/stop x",
            "/start short",
            &format!("/start {code}\u{0}"),
            &format!("/start {}", "a".repeat(70)),
        ] {
            assert!(start_command(&update(text)).is_none(), "{text:?}");
        }
        assert!(
            start_command(&json!({"update_id": 2, "edited_message": {"text": format!("/start {code}")}})).is_none()
        );
        assert!(
            start_command(&json!({"update_id": 3, "message": {"text": format!("/start {code}"), "chat": {"id": "x"}}}))
                .is_none()
        );
        let private = json!({"update_id": 4, "message": {"text": format!("/start {code}"), "chat": {"id": 7, "first_name": "Ada", "last_name": "L", "username": "no way!"}}});
        let (_, chat) = start_command(&private).expect("a start");
        assert_eq!(chat, Chat { id: 7, username: None, title: "Ada L".into() });
    }
}

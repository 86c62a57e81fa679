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

/// What one `getUpdates` gave.
enum Fetched {
    Updates(Vec<Value>),
    /// An answer over [`MAX_ANSWER_BYTES`], with the id of its first update when it could be
    /// read from the beginning.
    TooBig {
        first: Option<i64>,
    },
}

/// The first `"update_id":<digits>` of an answer too big to parse whole.
fn first_update_id(bytes: &[u8]) -> Option<i64> {
    let key = b"\"update_id\":";
    let at = bytes.windows(key.len()).position(|w| w == key)? + key.len();
    let digits: String = bytes[at..]
        .iter()
        .skip_while(|b| b.is_ascii_whitespace())
        .take_while(|b| b.is_ascii_digit())
        .map(|&b| char::from(b))
        .collect();
    digits.parse().ok()
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
        let mut limit = BATCH;
        while !*stop.borrow() {
            // The lock is ours as long as its connection lives.
            sqlx::query("SELECT 1").execute(&mut lock).await?;
            let next = match self.updates(offset, limit).await? {
                Fetched::Updates(updates) => {
                    limit = BATCH;
                    self.handle(&updates).await?
                }
                // Too big to read at once: one at a time, and one too big alone is skipped,
                // so no message anyone sends the bot can stop the linking of others.
                Fetched::TooBig { .. } if limit > 1 => {
                    limit = 1;
                    None
                }
                Fetched::TooBig { first: Some(id) } => {
                    tracing::warn!(update.id = id, "skipping a Telegram update too big to read");
                    Some(id.saturating_add(1))
                }
                Fetched::TooBig { first: None } => {
                    return Err(LinkError::Updates(format!("an answer over {MAX_ANSWER_BYTES} bytes")));
                }
            };
            if let Some(next) = next {
                offset = next;
                telegram::set_next_offset(&self.pool, self.bot, offset).await?;
            }
        }
        Ok(())
    }

    /// One `getUpdates` of up to `limit` updates from `offset`, waiting up to the long-poll
    /// time for some.
    async fn updates(&self, offset: i64, limit: u32) -> Result<Fetched, LinkError> {
        let url = format!("{}/bot{}/getUpdates", self.api_url, self.token.expose_secret());
        let body = json!({
            "offset": offset,
            "limit": limit,
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
                bytes.extend_from_slice(&chunk);
                return Ok(Fetched::TooBig { first: first_update_id(&bytes) });
            }
            bytes.extend_from_slice(&chunk);
        }
        let answer: Value = serde_json::from_slice(&bytes)
            .map_err(|_| LinkError::Updates(format!("HTTP {status} with an answer that is not JSON")))?;
        match (answer["ok"].as_bool(), answer["result"].as_array()) {
            (Some(true), Some(updates)) => Ok(Fetched::Updates(updates.clone())),
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
            let Some(start) = start_command(update) else { continue };
            // In a group, only its administrators may link it: an ordinary member could
            // otherwise have the bot post their alerts to everyone there.
            if let Some(sender) = start.sender
                && !self.is_admin(start.chat.id, sender).await
            {
                tracing::info!(chat.id = start.chat.id, "a link code from a group member who is not an administrator");
                continue;
            }
            let (code, chat) = (start.code, start.chat);
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

    /// Whether `user` is an administrator (or the creator) of `chat`, as `getChatMember` says;
    /// `false` when it cannot be told.
    async fn is_admin(&self, chat: i64, user: i64) -> bool {
        let url = format!("{}/bot{}/getChatMember", self.api_url, self.token.expose_secret());
        let answer = async {
            let response = self.http.post(url).json(&json!({"chat_id": chat, "user_id": user})).send().await.ok()?;
            let bytes = response.bytes().await.ok()?;
            if bytes.len() > 64 * 1024 {
                return None;
            }
            serde_json::from_slice::<Value>(&bytes).ok()
        }
        .await;
        answer.is_some_and(|a| {
            a["ok"] == json!(true) && matches!(a["result"]["status"].as_str(), Some("creator" | "administrator"))
        })
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

/// A `/start <code>` read from an update.
#[derive(Debug, PartialEq, Eq)]
struct Start {
    code: String,
    chat: Chat,
    /// In a group, who sent it (they must be an administrator); `None` in a private chat or
    /// a channel (where only administrators post).
    sender: Option<i64>,
}

/// The `/start <code>` an update holds (also `/start@bot <code>`, in a message or a channel
/// post); `None` for anything else.
fn start_command(update: &Value) -> Option<Start> {
    let (message, in_channel) = match (update.get("message"), update.get("channel_post")) {
        (Some(message), _) => (message, false),
        (None, Some(post)) => (post, true),
        (None, None) => return None,
    };
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
    let sender = match (in_channel, chat["type"].as_str()) {
        (true, _) | (false, Some("private")) => None,
        (false, _) => Some(message["from"]["id"].as_i64()?),
    };
    let title = match chat["title"].as_str() {
        Some(title) => title.to_owned(),
        None => [chat["first_name"].as_str(), chat["last_name"].as_str()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" "),
    };
    let username = chat["username"].as_str().filter(|u| telegram::is_username(u)).map(str::to_owned);
    Some(Start { code: code.to_owned(), chat: Chat { id, username, title }, sender })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_start_with_a_plausible_code_is_read() {
        let code = "AbCdEfGhIjKlMnOpQrStUv";
        let update = |text: &str| {
            json!({"update_id": 1, "message": {"text": text, "from": {"id": 9},
                   "chat": {"id": -5, "type": "supergroup", "title": "Ops", "username": "ops_room"}}})
        };
        let start = start_command(&update(&format!("/start {code}"))).expect("a start");
        assert_eq!(start.code, code);
        assert_eq!(start.chat, Chat { id: -5, username: Some("ops_room".into()), title: "Ops".into() });
        assert_eq!(start.sender, Some(9), "in a group, the sender must be an administrator");
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
        let bad_id = json!({"update_id": 3, "message": {"text": format!("/start {code}"), "chat": {"id": "x"}}});
        assert!(start_command(&bad_id).is_none());
        let anonymous =
            json!({"update_id": 3, "message": {"text": format!("/start {code}"), "chat": {"id": -5, "type": "group"}}});
        assert!(start_command(&anonymous).is_none(), "a group message without a sender links nothing");
        let private = json!({"update_id": 4, "message": {"text": format!("/start {code}"),
            "chat": {"id": 7, "type": "private", "first_name": "Ada", "last_name": "L", "username": "no way!"}}});
        let start = start_command(&private).expect("a start");
        assert_eq!(start.chat, Chat { id: 7, username: None, title: "Ada L".into() });
        assert_eq!(start.sender, None);
        let post = json!({"update_id": 5, "channel_post": {"text": format!("/start {code}"), "chat": {"id": -9, "type": "channel", "title": "News"}}});
        assert_eq!(start_command(&post).expect("a start").sender, None);
    }

    #[test]
    fn the_first_update_id_is_read_from_a_cut_answer() {
        assert_eq!(first_update_id(br#"{"ok":true,"result":[{"update_id": 4711,"message":{"text":"xxxx"#), Some(4711));
        assert_eq!(first_update_id(b"garbage"), None);
    }
}

//! A server speaking the Telegram Bot API's `sendMessage` and `getUpdates`: records each
//! message (token, body, time) and answers what the test scripts (`{"ok": true}` once the
//! script is used up); serves the updates the test pushes, long polling like Telegram.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

/// A message the fake Bot API got: the token in its path, its JSON, when.
#[derive(Debug, Clone)]
pub struct Sent {
    pub token: String,
    pub body: Value,
    pub at: Instant,
}

#[derive(Clone, Default)]
pub struct BotApi {
    sent: Arc<Mutex<Vec<Sent>>>,
    pub answers: Arc<Mutex<VecDeque<(u16, Value)>>>,
    /// Updates pushed so far, each with its `update_id` (from 1).
    updates: Arc<Mutex<Vec<Value>>>,
    /// Raw answers (status, body) given to the next `getUpdates` calls, before any update.
    pub update_answers: Arc<Mutex<VecDeque<(u16, String)>>>,
    /// The `offset` of every `getUpdates` call, in order.
    offsets: Arc<Mutex<Vec<i64>>>,
    /// Wakes the long polls waiting for an update.
    pushed: Arc<tokio::sync::Notify>,
    /// What `getChatMember` answers for (chat, user); `administrator` when not set.
    members: Arc<Mutex<std::collections::HashMap<(i64, i64), String>>>,
}

async fn get_chat_member(body: web::Json<Value>, api: web::Data<BotApi>) -> HttpResponse {
    let key = (body["chat_id"].as_i64().unwrap_or(0), body["user_id"].as_i64().unwrap_or(0));
    let status = api.members.lock().expect("bot api").get(&key).cloned().unwrap_or_else(|| "administrator".to_owned());
    HttpResponse::Ok().json(json!({"ok": true, "result": {"status": status, "user": {"id": key.1}}}))
}

async fn get_updates(body: web::Json<Value>, api: web::Data<BotApi>) -> HttpResponse {
    let offset = body["offset"].as_i64().unwrap_or(0);
    api.offsets.lock().expect("bot api").push(offset);
    if let Some((status, raw)) = api.update_answers.lock().expect("bot api").pop_front() {
        return HttpResponse::build(actix_web::http::StatusCode::from_u16(status).expect("bot api")).body(raw);
    }
    let wait = std::time::Duration::from_secs(body["timeout"].as_u64().unwrap_or(0).min(5));
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        // Registered before looking, so a push between the look and the wait is not missed.
        let pushed = api.pushed.notified();
        let ready: Vec<Value> = api
            .updates
            .lock()
            .expect("bot api")
            .iter()
            .filter(|u| u["update_id"].as_i64().unwrap_or(0) >= offset)
            .take(usize::try_from(body["limit"].as_u64().unwrap_or(100)).unwrap_or(100))
            .cloned()
            .collect();
        if !ready.is_empty() || tokio::time::Instant::now() >= deadline {
            // As Telegram writes it: each update's id first.
            let updates: Vec<String> = ready
                .into_iter()
                .map(|mut update| {
                    let id = update.as_object_mut().and_then(|u| u.remove("update_id")).unwrap_or(Value::Null);
                    let rest = update.to_string();
                    let rest = rest.strip_prefix('{').unwrap_or("}");
                    if rest == "}" { format!("{{\"update_id\":{id}}}") } else { format!("{{\"update_id\":{id},{rest}") }
                })
                .collect();
            let body = format!("{{\"ok\":true,\"result\":[{}]}}", updates.join(","));
            return HttpResponse::Ok().content_type("application/json").body(body);
        }
        let _ = tokio::time::timeout_at(deadline, pushed).await;
    }
}

async fn send_message(req: HttpRequest, body: web::Json<Value>, api: web::Data<BotApi>) -> HttpResponse {
    let path = req.path().trim_start_matches("/bot");
    let token = path.split('/').next().unwrap_or("").to_owned();
    api.sent.lock().expect("bot api").push(Sent { token, body: body.into_inner(), at: Instant::now() });
    let (status, reply) = api
        .answers
        .lock()
        .expect("bot api")
        .pop_front()
        .unwrap_or((200, json!({"ok": true, "result": {"message_id": 1}})));
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).expect("bot api")).json(reply)
}

impl BotApi {
    pub async fn start() -> (Self, String) {
        let api = Self::default();
        let listener = crate::net::listener();
        let url = format!("http://127.0.0.1:{}", listener.local_addr().expect("bot api").port());
        let data = web::Data::new(api.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/{bot}/sendMessage", web::post().to(send_message))
                .route("/{bot}/getUpdates", web::post().to(get_updates))
                .route("/{bot}/getChatMember", web::post().to(get_chat_member))
        })
        .workers(2)
        .listen(listener)
        .expect("bot api")
        .run();
        tokio::spawn(server);
        (api, url)
    }

    pub fn sent(&self) -> Vec<Sent> {
        self.sent.lock().expect("bot api").clone()
    }

    /// Makes `update` (without its id) the next update; returns its `update_id`.
    pub fn push_update(&self, mut update: Value) -> i64 {
        let mut updates = self.updates.lock().expect("bot api");
        let id = i64::try_from(updates.len()).unwrap_or(i64::MAX) + 1;
        update["update_id"] = json!(id);
        updates.push(update);
        self.pushed.notify_waiters();
        id
    }

    /// A message with `text` from user 1 in group `chat` (with `title`).
    pub fn push_message(&self, chat: i64, title: &str, text: &str) -> i64 {
        self.push_message_from(chat, title, 1, text)
    }

    /// A message with `text` from user `from` in group `chat` (with `title`).
    pub fn push_message_from(&self, chat: i64, title: &str, from: i64, text: &str) -> i64 {
        self.push_update(json!({"message": {"message_id": 1, "text": text, "from": {"id": from},
                                            "chat": {"id": chat, "type": "group", "title": title}}}))
    }

    /// Makes `getChatMember` answer `status` (`member`, `administrator`, ...) for `user` in
    /// `chat`.
    pub fn set_member_status(&self, chat: i64, user: i64, status: &str) {
        self.members.lock().expect("bot api").insert((chat, user), status.to_owned());
    }

    /// The `offset` of every `getUpdates` call so far.
    pub fn offsets(&self) -> Vec<i64> {
        self.offsets.lock().expect("bot api").clone()
    }
}

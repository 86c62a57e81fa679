//! A server speaking the Telegram Bot API's `sendMessage`: records each message (token,
//! body, time) and answers what the test scripts (`{"ok": true}` once the script is used up).

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
            App::new().app_data(data.clone()).route("/{bot}/sendMessage", web::post().to(send_message))
        })
        .workers(1)
        .listen(listener)
        .expect("bot api")
        .run();
        tokio::spawn(server);
        (api, url)
    }

    pub fn sent(&self) -> Vec<Sent> {
        self.sent.lock().expect("bot api").clone()
    }
}

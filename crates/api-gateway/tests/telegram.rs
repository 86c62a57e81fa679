//! Telegram chats through the API: link codes, linked chats per user, and the rule that a
//! trigger on the server's shared bot names only chats its owner linked.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Client, user};
use reqwest::Method;
use serde_json::{Value, json};
use shared::store::telegram::{self, Chat, Redeemed};
use testkit::TestDb;

const BOT_TOKEN: &str = "123456:ABCdefGHIjklMNOpqrSTUvwxYZ012345";

fn telegram_trigger(chat: &str, own_bot: bool) -> Value {
    let mut action = json!({"type": "telegram", "chat_id": chat});
    if own_bot {
        action["bot_token"] = json!(BOT_TOKEN);
    }
    json!({"name": "tg", "actions": [action]})
}

/// Sends the code the API issues for `client` from `chat`, as the bot's reader would redeem it.
async fn link(db: &TestDb, client: &Client<'_>, chat: Chat) {
    let issued = client.send(Method::POST, "/api/v1/telegram/link-codes", None).await;
    assert_eq!(issued.status(), 201);
    let issued: Value = issued.json().await.unwrap();
    let code = issued["code"].as_str().unwrap();
    assert_eq!(issued["command"], format!("/start {code}"));
    assert!(issued["expires_at"].is_string());
    let mut conn = db.pool.acquire().await.unwrap();
    assert!(matches!(telegram::redeem(&mut conn, code, &chat).await.unwrap(), Redeemed::Linked(_)));
    assert_eq!(telegram::redeem(&mut conn, code, &chat).await.unwrap(), Redeemed::Unknown, "a code links once");
}

fn chat(id: i64, username: Option<&str>) -> Chat {
    Chat { id, username: username.map(str::to_owned), title: format!("chat {id}") }
}

#[tokio::test]
async fn the_shared_bot_names_only_chats_the_user_linked() {
    let db = TestDb::new().await;
    let app = common::start(&db);
    let alice = user(&app, "alice@example.com").await;
    let bob = user(&app, "bob@example.com").await;

    let refused = alice.send(Method::POST, "/api/v1/triggers", Some(telegram_trigger("-500", false))).await;
    assert_eq!(refused.status(), 422);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(refused["error"]["code"], "chat_not_linked");
    assert_eq!(refused["error"]["details"][0]["path"], "actions[0].chat_id");
    // A bot of one's own may write anywhere.
    let own = alice.send(Method::POST, "/api/v1/triggers", Some(telegram_trigger("-900", true))).await;
    assert_eq!(own.status(), 201);

    link(&db, &alice, chat(-500, None)).await;
    link(&db, &alice, chat(-600, Some("Ops_Channel"))).await;
    let created = alice.send(Method::POST, "/api/v1/triggers", Some(telegram_trigger("-500", false))).await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let by_name = alice.send(Method::POST, "/api/v1/triggers", Some(telegram_trigger("@ops_channel", false))).await;
    assert_eq!(by_name.status(), 201, "a channel is named by its @username, in any case");

    // Alice's chats are hers alone.
    let listed: Value = alice.send(Method::GET, "/api/v1/telegram/chats", None).await.json().await.unwrap();
    let ids: Vec<i64> = listed["items"].as_array().unwrap().iter().map(|c| c["chat_id"].as_i64().unwrap()).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&-500) && ids.contains(&-600));
    let bobs: Value = bob.send(Method::GET, "/api/v1/telegram/chats", None).await.json().await.unwrap();
    assert_eq!(bobs["items"], json!([]));
    let stolen = bob.send(Method::POST, "/api/v1/triggers", Some(telegram_trigger("-500", false))).await;
    assert_eq!(stolen.status(), 422, "linked to alice is not linked to bob");
    assert_eq!(bob.send(Method::DELETE, "/api/v1/telegram/chats/-500", None).await.status(), 404);
    for hostile in ["not-a-number", "99999999999999999999999", "%00", "-0x1f"] {
        let response = alice.send(Method::DELETE, &format!("/api/v1/telegram/chats/{hostile}"), None).await;
        assert_eq!(response.status(), 404, "{hostile}");
    }

    // Unlinked, the chat can no longer be named anew.
    assert_eq!(alice.send(Method::DELETE, "/api/v1/telegram/chats/-500", None).await.status(), 204);
    let path = format!("/api/v1/triggers/{}", created["id"].as_str().unwrap());
    let replaced = alice.send(Method::PUT, &path, Some(telegram_trigger("-500", false))).await;
    assert_eq!(replaced.status(), 422);
}

#[tokio::test]
async fn an_action_keeps_its_own_bot_when_replaced_without_the_token() {
    let db = TestDb::new().await;
    let app = common::start(&db);
    let alice = user(&app, "alice@example.com").await;
    let created: Value =
        alice.send(Method::POST, "/api/v1/triggers", Some(telegram_trigger("-900", true))).await.json().await.unwrap();
    assert_eq!(created["actions"][0]["own_bot"], true);
    assert!(!created.to_string().contains("ABCdefGHI"));
    let path = format!("/api/v1/triggers/{}", created["id"].as_str().unwrap());
    // Its stored token stays, so the unlinked chat is still its to write to.
    let mut body = telegram_trigger("-901", false);
    body["actions"][0]["own_bot"] = json!(true);
    let replaced = alice.send(Method::PUT, &path, Some(body)).await;
    assert_eq!(replaced.status(), 200);
    let replaced: Value = replaced.json().await.unwrap();
    assert_eq!(replaced["actions"][0]["own_bot"], true);
    assert_eq!(replaced["actions"][0]["chat_id"], "-901");
}

#[tokio::test]
async fn an_own_bot_marker_sent_by_the_user_counts_for_nothing() {
    let db = TestDb::new().await;
    let app = common::start(&db);
    let alice = user(&app, "alice@example.com").await;
    let mut body = telegram_trigger("-902", false);
    body["actions"][0]["own_bot"] = json!(true);
    let refused = alice.send(Method::POST, "/api/v1/triggers", Some(body)).await;
    assert_eq!(refused.status(), 422, "no token is stored: the chat must be linked");
}

#[tokio::test]
async fn link_codes_expire_are_few_per_user_and_stored_as_digests() {
    let db = TestDb::new().await;
    let app = common::start(&db);
    let alice = user(&app, "alice@example.com").await;
    let mut codes = Vec::new();
    for _ in 0..7 {
        let issued: Value = alice.send(Method::POST, "/api/v1/telegram/link-codes", None).await.json().await.unwrap();
        codes.push(issued["code"].as_str().unwrap().to_owned());
    }
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM telegram_link_codes").fetch_one(&db.pool).await.unwrap();
    assert_eq!(held, telegram::MAX_CODES_PER_USER);
    let everything = db.dump().await;
    for code in &codes {
        assert!(!everything.contains(code.as_str()), "a code is stored as its digest only");
    }
    let mut conn = db.pool.acquire().await.unwrap();
    // The oldest were forgotten; an expired one links nothing.
    assert_eq!(telegram::redeem(&mut conn, &codes[0], &chat(-1, None)).await.unwrap(), Redeemed::Unknown);
    sqlx::query("UPDATE telegram_link_codes SET expires_at = now() - interval '1 second'")
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(telegram::redeem(&mut conn, &codes[6], &chat(-1, None)).await.unwrap(), Redeemed::Unknown);
    let chats: Value = alice.send(Method::GET, "/api/v1/telegram/chats", None).await.json().await.unwrap();
    assert_eq!(chats["items"], json!([]));
}

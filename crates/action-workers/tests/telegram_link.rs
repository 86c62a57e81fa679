//! The server's shared bot and the chats linked to users: a `/start <code>` read from the
//! bot's updates links a chat, the shared bot sends only to linked chats, one user cannot
//! spend the bot's limit, and garbage from the Bot API pauses the reader without losing a
//! link.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::Bench;
use secrecy::SecretString;
use serde_json::json;
use shared::store;
use testkit::fixtures::feedback;
use testkit::outside::bot_api::BotApi;
use testkit::wait;

const SERVER_TOKEN: &str = "111111:SERVERtokenSERVERtokenSERVER";
const DEADLINE: Duration = Duration::from_secs(30);

fn settings(api_url: &str) -> action_workers::Settings {
    let mut settings = Bench::settings(true);
    settings.concurrency = 16;
    settings.telegram.api_url = api_url.to_owned();
    settings.telegram.bot_token = Some(SecretString::from(SERVER_TOKEN.to_owned()));
    settings.telegram.long_poll = Duration::from_secs(1);
    settings
}

async fn code(bench: &Bench) -> String {
    let mut conn = bench.db.pool.acquire().await.unwrap();
    store::telegram::issue_code(&mut conn, bench.user).await.unwrap().0
}

async fn linked(bench: &Bench) -> Vec<i64> {
    store::telegram::list(&bench.db.pool, bench.user).await.unwrap().into_iter().map(|c| c.chat_id).collect()
}

#[tokio::test]
async fn a_start_code_links_its_chat_and_the_shared_bot_sends_to_linked_chats_only() {
    let bench = Bench::new().await;
    let (api, url) = BotApi::start().await;
    let code = code(&bench).await;
    // Noise first: updates that are not a start, a start with a code no one issued, an edited
    // message, a chat id that is not a number, a megabyte of text.
    api.push_update(json!({"edited_message": {"text": format!("/start {code}"), "chat": {"id": -1}}}));
    api.push_message(-2, "strangers", "/start AAAAAAAAAAAAAAAAAAAAAA");
    api.push_update(json!({"message": {"text": format!("/start {code}"), "chat": {"id": "-3"}}}));
    api.push_message(-4, "noise", &"x".repeat(1 << 20));
    api.push_update(json!({"message": {"text": 42, "chat": {"id": -5}}}));
    api.push_update(json!({"callback_query": {"data": "/start"}}));
    // A member of a group who is not one of its administrators links nothing, even with a
    // good code (one of their own).
    api.set_member_status(-666, 13, "member");
    let members_code = self::code(&bench).await;
    api.push_message_from(-666, "someone else's group", 13, &format!("/start {members_code}"));
    let last = api.push_message(-777, "Ops \u{0} room", &format!("/start@alerts_bot {code}"));
    let workers = bench.start_workers(settings(&url));

    wait::until("the chat to be linked", DEADLINE, || async { (linked(&bench).await == [-777]).then_some(()) }).await;
    let chats = store::telegram::list(&bench.db.pool, bench.user).await.unwrap();
    assert_eq!(chats[0].title, "Ops \u{FFFD} room", "a NUL in a title is made storable");
    // The code is used up: sent again from another chat, it links nothing.
    api.push_message(-778, "late", &format!("/start {code}"));
    wait::until("the offset to pass the late message", DEADLINE, || async {
        let next = store::telegram::next_offset(&bench.db.pool, 111111).await.unwrap();
        (next >= Some(last + 2)).then_some(())
    })
    .await;
    assert_eq!(linked(&bench).await, [-777]);
    // The bot answered the chat it linked, and no one else.
    let replies: Vec<_> = api.sent().into_iter().map(|s| s.body["chat_id"].clone()).collect();
    assert_eq!(replies, [json!(-777)]);

    // A trigger for a linked chat is delivered; one for a chat never linked (written past the
    // API's check) fails with the reason, and nothing reaches that chat.
    bench.trigger("linked", json!({"type": "telegram", "chat_id": "-777"})).await;
    bench.trigger("stranger", json!({"type": "telegram", "chat_id": "-2"})).await;
    bench.fire(&[feedback(1, 0, 7, 1, 0, "x")]).await;
    wait::until("both jobs to finish", DEADLINE, || async {
        let statuses = bench.job_status().await;
        (statuses.len() == 2 && statuses.iter().all(|s| s == "delivered" || s == "failed")).then_some(())
    })
    .await;
    let sent_to: Vec<_> = api.sent().into_iter().map(|s| s.body["chat_id"].clone()).collect();
    assert_eq!(sent_to, [json!(-777), json!("-777")], "one confirmation, one alert");
    let error: String = sqlx::query_scalar("SELECT error FROM deliveries WHERE outcome = 'failed'")
        .fetch_one(&bench.db.pool)
        .await
        .unwrap();
    assert!(error.contains("not linked"), "{error}");
    workers.abort();
    let _ = workers.await;
    let calls_before_restart = api.offsets().len();

    // Unlinked since: the next alert fails too.
    assert!(store::telegram::unlink(&bench.db.pool, bench.user, -777).await.unwrap());
    bench.fire(&[feedback(2, 0, 7, 1, 0, "x")]).await;
    let workers = bench.start_workers(settings(&url));
    wait::until("the alerts after unlinking to fail", DEADLINE, || async {
        let failed: i64 = sqlx::query_scalar("SELECT count(*) FROM action_outbox WHERE status = 'failed'")
            .fetch_one(&bench.db.pool)
            .await
            .unwrap();
        (failed == 3).then_some(())
    })
    .await;
    assert_eq!(api.sent().len(), 2, "nothing more was sent");
    // The restarted reader went on from where the first one stopped.
    wait::until("the restarted reader to ask", DEADLINE, || async {
        (api.offsets().len() > calls_before_restart).then_some(())
    })
    .await;
    let first_after_restart = api.offsets()[calls_before_restart];
    assert!(first_after_restart >= last + 2, "{:?}", api.offsets());
    workers.abort();
}

#[tokio::test]
async fn a_chat_named_by_its_username_gets_messages_at_its_linked_id() {
    let bench = Bench::new().await;
    let (api, url) = BotApi::start().await;
    let code = code(&bench).await;
    api.push_update(json!({"channel_post": {"text": format!("/start {code}"),
                                            "chat": {"id": -4242, "type": "channel", "title": "News", "username": "news_room"}}}));
    let workers = bench.start_workers(settings(&url));
    wait::until("the channel to be linked", DEADLINE, || async { (linked(&bench).await == [-4242]).then_some(()) })
        .await;
    // The name may pass to another chat later: the message goes to the chat linked, by id.
    bench.trigger("by name", json!({"type": "telegram", "chat_id": "@News_Room"})).await;
    bench.fire(&[feedback(1, 0, 7, 1, 0, "x")]).await;
    wait::until("the alert", DEADLINE, || async { (bench.job_status().await == ["delivered"]).then_some(()) }).await;
    let alert =
        api.sent().into_iter().find(|s| s.body["text"].as_str().is_some_and(|t| !t.contains("linked"))).unwrap();
    assert_eq!(alert.body["chat_id"], "-4242");
    workers.abort();
}

#[tokio::test]
async fn garbage_from_the_bot_api_pauses_the_reader_and_loses_no_link() {
    let bench = Bench::new().await;
    let (api, url) = BotApi::start().await;
    {
        let mut answers = api.update_answers.lock().unwrap();
        answers.push_back((200, "not json at all".to_owned()));
        answers.push_back((502, "<html>bad gateway</html>".to_owned()));
        answers.push_back((200, json!({"ok": true, "result": "not a list"}).to_string()));
        answers.push_back((200, format!("{{\"ok\": true, \"result\": [\"{}\"]}}", "y".repeat(5 << 20))));
        answers.push_back((
            409,
            json!({"ok": false, "description": "Conflict: terminated by other getUpdates"}).to_string(),
        ));
    }
    let code = code(&bench).await;
    // An update too big to read, even alone, is skipped; the one after it is read.
    api.push_message(-41, "flood", &"z".repeat(5 << 20));
    api.push_message(-42, "ops", &format!("/start {code}"));
    let workers = bench.start_workers(settings(&url));
    wait::until("the chat to be linked after the garbage", Duration::from_secs(90), || async {
        (linked(&bench).await == [-42]).then_some(())
    })
    .await;
    assert!(api.update_answers.lock().unwrap().is_empty(), "every bad answer was read");
    workers.abort();
}

#[tokio::test]
async fn one_user_cannot_spend_the_shared_bot_and_others_still_get_through() {
    let bench = Bench::new().await;
    let (api, url) = BotApi::start().await;
    // A noisy user with ten linked chats and a trigger writing to all of them...
    let chats: Vec<i64> = (1..=10).map(|c| -1000 - c).collect();
    for chat in &chats {
        bench.link_chat(*chat).await;
    }
    let actions = chats.iter().map(|c| json!({"type": "telegram", "chat_id": c.to_string()})).collect();
    bench.trigger_of(bench.user, "noisy", actions).await;
    // ... and a quiet one with one.
    let mut conn = bench.db.pool.acquire().await.unwrap();
    let quiet = store::users::insert(&mut conn, "quiet@example.com", "x").await.unwrap();
    drop(conn);
    testkit::fixtures::link_telegram_chat(&bench.db.pool, quiet, -2000).await;
    bench.trigger_of(quiet, "quiet", vec![json!({"type": "telegram", "chat_id": "-2000"})]).await;
    bench.fire(&[feedback(1, 0, 7, 1, 0, "x")]).await;

    let share = 2;
    let mut settings = settings(&url);
    settings.telegram.shared_per_user_per_second = share;
    let workers = bench.start_workers(settings);
    wait::until("every message", Duration::from_secs(60), || async { (api.sent().len() == 11).then_some(()) }).await;
    let sent = api.sent();
    let noisy: Vec<_> = sent.iter().filter(|s| s.body["chat_id"] != "-2000").map(|s| s.at).collect();
    // Paced per second of the clock: at most a share at the end of one second and a share at
    // the start of the next fall within any one second.
    for (i, start) in noisy.iter().enumerate() {
        let within = noisy[i..].iter().filter(|at| at.duration_since(*start) < Duration::from_secs(1)).count();
        assert!(within <= 2 * share as usize, "{within} messages of one user within a second");
    }
    let quiet_at = sent.iter().find(|s| s.body["chat_id"] == "-2000").unwrap().at;
    assert!(quiet_at < *noisy.last().unwrap(), "the quiet user's message did not wait for the noisy one's");
    workers.abort();
}

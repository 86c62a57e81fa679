//! Telegram deliveries to a local server speaking the Bot API.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::Bench;
use secrecy::SecretString;
use serde_json::json;
use shared::render::escape_markdown_v2;
use testkit::fixtures::feedback;
use testkit::outside::bot_api::BotApi;
use testkit::wait;

const HOSTILE: &str = "<b>&_*[]()~>#+-=|{}.!";
const SERVER_TOKEN: &str = "111111:SERVERtokenSERVERtokenSERVER";
const OWN_TOKEN: &str = "222222:OWNtokenOWNtokenOWNtokenOWN";

fn settings(api_url: &str) -> action_workers::Settings {
    let mut settings = Bench::settings(true);
    settings.telegram.api_url = api_url.to_owned();
    settings.telegram.bot_token = Some(SecretString::from(SERVER_TOKEN.to_owned()));
    settings
}

#[tokio::test]
async fn hostile_values_are_escaped_for_html_and_markdown_v2() {
    let bench = Bench::new().await;
    let (api, url) = BotApi::start().await;
    bench
        .trigger(
            "tg",
            json!({"type": "telegram", "chat_id": "-100", "template": "<b>{{ event.tag1 }}</b> {{ trigger.name }}"}),
        )
        .await;
    bench.link_chat(-100).await;
    bench.trigger("tg",
        json!({"type": "telegram", "chat_id": "-200", "parse_mode": "MarkdownV2", "template": "*{{ event.tag1 }}*", "bot_token": OWN_TOKEN}),
    )
    .await;
    bench.fire(&[feedback(1, 0, 7, 1, 0, HOSTILE)]).await;
    let workers = bench.start_workers(settings(&url));

    let sent = wait::until("two messages", Duration::from_secs(30), || async {
        let sent = api.sent();
        (sent.len() == 2).then_some(sent)
    })
    .await;
    let html = sent.iter().find(|s| s.body["chat_id"] == "-100").unwrap();
    assert_eq!(html.body["parse_mode"], "HTML");
    assert_eq!(html.body["text"], "<b>&lt;b&gt;&amp;_*[]()~&gt;#+-=|{}.!</b> tg");
    assert_eq!(html.token, SERVER_TOKEN, "the server's bot when the action has none");
    let markdown = sent.iter().find(|s| s.body["chat_id"] == "-200").unwrap();
    assert_eq!(markdown.body["parse_mode"], "MarkdownV2");
    assert_eq!(markdown.body["text"], format!("*{}*", escape_markdown_v2(HOSTILE)));
    assert_eq!(markdown.body["text"], "*<b\\>&\\_\\*\\[\\]\\(\\)\\~\\>\\#\\+\\-\\=\\|\\{\\}\\.\\!*");
    assert_eq!(markdown.token, OWN_TOKEN, "the action's own bot");
    wait::until("both delivered", Duration::from_secs(30), || async {
        (bench.job_status().await == ["delivered", "delivered"]).then_some(())
    })
    .await;
    // The token is part of the URL; it never reaches the delivery log.
    let logged: Vec<Option<String>> =
        sqlx::query_scalar("SELECT coalesce(error, '') || coalesce(response_excerpt, '') FROM deliveries")
            .fetch_all(&bench.db.pool)
            .await
            .unwrap();
    assert!(logged.iter().flatten().all(|l| !l.contains("tokenSERVER") && !l.contains("OWNtoken")));
    workers.abort();
}

#[tokio::test]
async fn a_429_is_retried_after_the_time_telegram_asks_for() {
    let bench = Bench::new().await;
    let (api, url) = BotApi::start().await;
    api.answers.lock().unwrap().push_back((
        429,
        json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 2", "parameters": {"retry_after": 2}}),
    ));
    bench.trigger("tg", json!({"type": "telegram", "chat_id": "-100"})).await;
    bench.link_chat(-100).await;
    bench.fire(&[feedback(1, 0, 7, 9977, 2, "uptime")]).await;
    let workers = bench.start_workers(settings(&url));

    wait::until("delivery after the 429", Duration::from_secs(30), || async {
        (bench.job_status().await == ["delivered"]).then_some(())
    })
    .await;
    let sent = api.sent();
    assert_eq!(sent.len(), 2);
    let waited = sent[1].at.duration_since(sent[0].at);
    assert!(waited >= Duration::from_millis(1_900), "retry_after 2 was not honoured: {waited:?}");
    let outcomes: Vec<(String, Option<i32>)> =
        sqlx::query_as("SELECT outcome, status_code FROM deliveries ORDER BY id")
            .fetch_all(&bench.db.pool)
            .await
            .unwrap();
    assert_eq!(outcomes, vec![("retry".to_owned(), Some(429)), ("success".to_owned(), Some(200))]);
    // The default message is readable.
    let text = sent[1].body["text"].as_str().unwrap();
    assert_eq!(text, "tg: NewFeedback for agent 7 on Anvil, value 99.77 (uptime) at block 1");
    workers.abort();
}

#[tokio::test]
async fn a_403_fails_for_good() {
    let bench = Bench::new().await;
    let (api, url) = BotApi::start().await;
    api.answers.lock().unwrap().push_back((
        403,
        json!({"ok": false, "error_code": 403, "description": "Forbidden: bot was blocked by the user"}),
    ));
    bench.trigger("tg", json!({"type": "telegram", "chat_id": "-100"})).await;
    bench.link_chat(-100).await;
    bench.fire(&[feedback(1, 0, 7, 1, 0, "x")]).await;
    let workers = bench.start_workers(settings(&url));

    wait::until("the permanent failure", Duration::from_secs(30), || async {
        (bench.job_status().await == ["failed"]).then_some(())
    })
    .await;
    let error: String = sqlx::query_scalar("SELECT error FROM deliveries").fetch_one(&bench.db.pool).await.unwrap();
    assert_eq!(error, "Forbidden: bot was blocked by the user");
    assert_eq!(api.sent().len(), 1);
    workers.abort();
}

#[tokio::test]
async fn one_chat_gets_at_most_one_message_a_second() {
    let bench = Bench::new().await;
    let (api, url) = BotApi::start().await;
    bench.trigger("tg", json!({"type": "telegram", "chat_id": "-100"})).await;
    bench.link_chat(-100).await;
    bench.fire(&(0..3).map(|i| feedback(1, i, 7, 1, 0, "x")).collect::<Vec<_>>()).await;
    let workers = bench.start_workers(settings(&url));

    wait::until("three messages", Duration::from_secs(30), || async { (api.sent().len() == 3).then_some(()) }).await;
    let sent = api.sent();
    for pair in sent.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(gap >= Duration::from_millis(950), "two messages to one chat {gap:?} apart");
    }
    workers.abort();
}

//! Templates are bounded: a bomb is refused when the trigger is saved, at the template's
//! JSON path; one that only explodes on a hostile event fails that render alone in
//! `POST /triggers/{id}/test`, and the API keeps serving everyone meanwhile and after.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use common::user;
use reqwest::Method;
use serde_json::{Value, json};
use testkit::TestDb;
use testkit::fixtures::feedback;

fn trigger(action: Value) -> Value {
    json!({"name": "bounded", "scope": {"registry": "reputation"}, "actions": [action]})
}

#[tokio::test]
async fn template_bombs_are_refused_when_saved() {
    let db = TestDb::new().await;
    let app = common::start(&db);
    let mallory = user(&app, "mallory@example.com").await;
    let alice = user(&app, "alice@example.com").await;
    let bombs = [
        (
            json!({"type": "telegram", "chat_id": "1",
                "template": "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}"}),
            "actions[0].template",
        ),
        (
            json!({"type": "webhook", "url": "https://example.com/h",
                "body_template": "{% for i in [1] recursive %}{{ loop([i]) }}{% endfor %}"}),
            "actions[0].body_template",
        ),
        (
            json!({"type": "webhook", "url": "https://example.com/h", "body_template": "{{ 'x' * 100000000 }}"}),
            "actions[0].body_template",
        ),
        (
            json!({"type": "mcp", "server_url": "https://agent.example/mcp", "tool": "t",
                "arguments": {"deep": {"er": ["{{ 'y' * 300000 }}"]}}}),
            "actions[0].arguments",
        ),
    ];
    // While bombs keep arriving, someone else is served all along.
    let bombarding = async {
        for _ in 0..3 {
            for (action, _) in &bombs {
                let response = mallory.send(Method::POST, "/api/v1/triggers", Some(trigger(action.clone()))).await;
                assert_eq!(response.status().as_u16(), 400);
            }
        }
    };
    let serving = async {
        for _ in 0..20 {
            assert_eq!(alice.send(Method::GET, "/api/v1/triggers", None).await.status().as_u16(), 200);
        }
    };
    tokio::join!(bombarding, serving);
    for (action, path) in bombs {
        let response = mallory.send(Method::POST, "/api/v1/triggers", Some(trigger(action))).await;
        assert_eq!(response.status().as_u16(), 400);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "validation_failed", "{body}");
        assert_eq!(body["error"]["details"][0]["path"], path, "{body}");
        let message = body["error"]["details"][0]["message"].as_str().unwrap();
        assert!(message.contains("exceeds its budget"), "{message}");
        // Someone else is served at once, between the bombs.
        assert_eq!(alice.send(Method::GET, "/api/v1/triggers", None).await.status().as_u16(), 200);
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM triggers").fetch_one(&db.pool).await.unwrap();
    assert_eq!(stored, 0);
}

#[tokio::test]
async fn a_template_that_explodes_on_a_hostile_event_fails_only_that_render() {
    let db = TestDb::new().await;
    let app = common::start(&db);
    let alice = user(&app, "alice@example.com").await;
    // Fine on an ordinary tag (a few KB), far over the cap on a long one.
    let body = json!({"type": "webhook", "url": "https://example.com/h", "body_template": "{{ event.tag1 * 500 }}"});
    let created: Value = alice.send(Method::POST, "/api/v1/triggers", Some(trigger(body))).await.json().await.unwrap();
    let id = created["id"].as_str().unwrap_or_else(|| panic!("{created}")).to_owned();
    let mut conn = db.pool.acquire().await.unwrap();
    let hostile = feedback(1, 0, 7, 1, 0, &"\u{FFFD}".repeat(10_000));
    shared::store::events::insert(&mut conn, &[hostile, feedback(2, 0, 7, 1, 0, "ok")]).await.unwrap();
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM events ORDER BY id").fetch_all(&db.pool).await.unwrap();

    let path = format!("/api/v1/triggers/{id}/test");
    let response = alice.send(Method::POST, &path, Some(json!({"event_id": ids[0]}))).await;
    assert_eq!(response.status().as_u16(), 200);
    let verdict: Value = response.json().await.unwrap();
    let error = verdict["actions"][0]["error"].as_str().unwrap_or_else(|| panic!("{verdict}"));
    assert!(error.contains("exceeds its budget"), "{error}");

    let ordinary: Value =
        alice.send(Method::POST, &path, Some(json!({"event_id": ids[1]}))).await.json().await.unwrap();
    // Inserted values are written as JSON in a webhook body.
    assert_eq!(ordinary["actions"][0]["body"], format!("\"{}\"", "ok".repeat(500)), "{ordinary}");
    assert_eq!(alice.send(Method::GET, "/api/v1/health", None).await.status().as_u16(), 200);
}

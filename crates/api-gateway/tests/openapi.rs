//! The OpenAPI document: served with Swagger UI, committed copy in step with the code, and
//! every operation it lists answered by a real route.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use serde_json::Value;
use testkit::TestDb;

#[test]
fn the_committed_document_is_the_generated_one() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json"))
        .expect("docs/openapi.json is committed");
    assert!(
        committed == api_gateway::openapi::document(),
        "docs/openapi.json differs from the document the code generates: run `make openapi` and commit it"
    );
}

#[tokio::test]
async fn the_document_and_swagger_ui_are_served_and_every_operation_has_a_route() {
    let db = TestDb::new().await;
    let app = common::start(&db);
    let served = app.get("/api-docs/openapi.json").await;
    assert_eq!(served.status(), 200);
    let served: Value = served.json().await.unwrap();
    let generated: Value = serde_json::from_str(&api_gateway::openapi::document()).unwrap();
    assert_eq!(served, generated);
    assert_eq!(served["openapi"], "3.1.0");

    let ui = app.get("/api-docs/").await;
    assert_eq!(ui.status(), 200);
    assert!(ui.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(ui.text().await.unwrap().contains("swagger-ui"));

    let paths = served["paths"].as_object().unwrap();
    assert!(paths.len() >= 14, "{}", paths.len());
    let mut operations = 0;
    for (path, methods) in paths {
        for method in methods.as_object().unwrap().keys() {
            operations += 1;
            let url = format!(
                "{}{}",
                app.base,
                path.replace("{id}", "1").replace("{action_id}", "1").replace("{chat_id}", "1")
            );
            let method: reqwest::Method = method.to_uppercase().parse().unwrap();
            let response = app.client.request(method.clone(), url).send().await.unwrap();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let unrouted = body["error"]["message"].as_str().is_some_and(|m| m.starts_with("no route"));
            assert!(!unrouted, "{method} {path} is documented but has no route");
        }
    }
    assert_eq!(operations, 25, "every operation of the API is documented");
}

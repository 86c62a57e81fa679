//! The OpenAPI 3 document of the API, generated from the handlers' annotations and served at
//! `/api-docs/openapi.json`, with Swagger UI at `/api-docs/`. A copy is committed as
//! `docs/openapi.json`; a test fails when the two differ.

pub mod schemas;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ERC-8004 backend API",
        description = "Events of the ERC-8004 Identity, Reputation and Validation registries, \
                       triggers over them, and the delivery of their actions.",
        license(name = "Apache-2.0")
    ),
    paths(
        routes::health::health,
        routes::auth::register,
        routes::auth::login,
        routes::auth::me,
        routes::api_keys::create,
        routes::api_keys::list,
        routes::api_keys::revoke,
        routes::events::list,
        routes::events::get,
        routes::triggers::create,
        routes::triggers::list,
        routes::triggers::get,
        routes::triggers::replace,
        routes::triggers::patch,
        routes::triggers::delete,
        routes::trigger_test::test,
        routes::backtest::backtest,
        routes::actions::reset_breaker,
        routes::actions::rotate_secret,
        routes::deliveries::for_trigger,
        routes::deliveries::by_status,
        routes::deliveries::replay,
        routes::telegram::create_code,
        routes::telegram::list,
        routes::telegram::unlink,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "health", description = "Whether the API and its dependencies answer"),
        (name = "auth", description = "Accounts and tokens"),
        (name = "api-keys", description = "Long-lived keys for scripts"),
        (name = "events", description = "The indexed registry events (public chain data)"),
        (name = "triggers", description = "Conditions over events and the actions they run"),
        (name = "deliveries", description = "What was delivered, what died, and replays"),
        (name = "telegram", description = "Chats linked to the user for the server's shared bot"),
    )
)]
pub struct ApiDoc;

/// `Authorization: Bearer <JWT or API key>`.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("a JWT from /auth/login or an API key from /api-keys"))
                    .build(),
            ),
        );
    }
}

/// The document as committed: pretty JSON with a final newline.
pub fn document() -> String {
    let mut text = ApiDoc::openapi().to_pretty_json().unwrap_or_default();
    text.push('\n');
    text
}

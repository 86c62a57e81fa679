pub(crate) mod actions;
pub(crate) mod api_keys;
pub(crate) mod auth;
pub(crate) mod backtest;
pub(crate) mod deliveries;
pub(crate) mod events;
pub(crate) mod health;
mod metrics;
mod pagination;
pub(crate) mod telegram;
pub(crate) mod trigger_test;
pub(crate) mod triggers;

use actix_web::{HttpRequest, HttpResponse, ResponseError, web};

use crate::error::ApiError;

/// Every route of the API.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
            .route("/health", web::get().to(health::health))
            .route("/auth/register", web::post().to(auth::register))
            .route("/auth/login", web::post().to(auth::login))
            .route("/auth/me", web::get().to(auth::me))
            .route("/api-keys", web::post().to(api_keys::create))
            .route("/api-keys", web::get().to(api_keys::list))
            .route("/api-keys/{id}", web::delete().to(api_keys::revoke))
            .route("/events", web::get().to(events::list))
            .route("/events/{id}", web::get().to(events::get))
            .route("/triggers", web::post().to(triggers::create))
            .route("/triggers", web::get().to(triggers::list))
            .route("/triggers/backtest", web::post().to(backtest::backtest))
            .route("/triggers/{id}", web::get().to(triggers::get))
            .route("/triggers/{id}", web::put().to(triggers::replace))
            .route("/triggers/{id}", web::patch().to(triggers::patch))
            .route("/triggers/{id}", web::delete().to(triggers::delete))
            .route("/triggers/{id}/test", web::post().to(trigger_test::test))
            .route("/triggers/{id}/deliveries", web::get().to(deliveries::for_trigger))
            .route("/triggers/{id}/actions/{action_id}/breaker/reset", web::post().to(actions::reset_breaker))
            .route("/triggers/{id}/actions/{action_id}/secret/rotate", web::post().to(actions::rotate_secret))
            .route("/telegram/link-codes", web::post().to(telegram::create_code))
            .route("/telegram/chats", web::get().to(telegram::list))
            .route("/telegram/chats/{chat_id}", web::delete().to(telegram::unlink))
            .route("/deliveries", web::get().to(deliveries::by_status))
            .route("/deliveries/{id}/replay", web::post().to(deliveries::replay)),
    )
    .route("/metrics", web::get().to(metrics::metrics))
    .service(
        utoipa_swagger_ui::SwaggerUi::new("/api-docs/{_:.*}")
            .url("/api-docs/openapi.json", <crate::openapi::ApiDoc as utoipa::OpenApi>::openapi()),
    );
}

/// Unknown routes answer the error JSON, not an empty 404.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    ApiError::not_found(format!("no route for {} {}", req.method(), req.path())).error_response()
}

use actix_web::{HttpResponse, web};

use crate::state::AppState;

/// Prometheus text exposition of this process's metrics.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(state.metrics.render())
}

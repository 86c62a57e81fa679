//! Logging and tracing set-up, the same for every binary and for tests.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global subscriber: `filter` in `RUST_LOG` syntax, human-readable lines or JSON
/// lines. A second call (tests) leaves the first subscriber in place.
pub fn init_telemetry(filter: &str, json: bool) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = if json {
        registry.with(tracing_subscriber::fmt::layer().json().with_current_span(true).with_span_list(false)).try_init()
    } else {
        registry.with(tracing_subscriber::fmt::layer().with_target(false)).try_init()
    };
    // Already installed (several tests in one process): keep the existing one.
    drop(result);
}

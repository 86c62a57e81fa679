//! The template context of SPEC 3 and the rendering of webhook bodies.

use minijinja::{AutoEscape, Environment};
use serde_json::{Value, json};
use shared::job::Job;

#[derive(Debug, thiserror::Error)]
#[error("the template cannot be rendered: {0}")]
pub struct RenderError(String);

/// A readable name for the chains the project knows.
pub fn chain_name(chain_id: u64) -> String {
    match chain_id {
        1 => "Ethereum".into(),
        10 => "OP Mainnet".into(),
        137 => "Polygon".into(),
        8453 => "Base".into(),
        42161 => "Arbitrum One".into(),
        11155111 => "Ethereum Sepolia".into(),
        84532 => "Base Sepolia".into(),
        31337 => "Anvil".into(),
        other => format!("chain {other}"),
    }
}

/// What templates see: `event`, `trigger`, `aggregates`, `chain`, `fired_at`, `job_id`.
pub fn context(job: &Job) -> Value {
    let chain_id = job.event.event.log.chain_id.0;
    json!({
        "event": job.event,
        "trigger": {"id": job.trigger.id, "name": job.trigger.name},
        "aggregates": job.aggregates,
        "chain": {"id": chain_id, "name": chain_name(chain_id)},
        "fired_at": job.fired_at,
        "job_id": job.job_id,
    })
}

/// The body of a webhook: the rendered template, with every inserted value written as JSON
/// (so a hostile string cannot break out of the document), or by default a JSON document
/// with the job, the trigger, the event and the aggregates.
pub fn webhook_body(job: &Job, template: Option<&str>) -> Result<String, RenderError> {
    let context = context(job);
    let Some(source) = template else {
        return Ok(context.to_string());
    };
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::Json);
    let template = env.template_from_str(source).map_err(|e| RenderError(e.to_string()))?;
    template.render(minijinja::value::Serde(&context)).map_err(|e| RenderError(e.to_string()))
}

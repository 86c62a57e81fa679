//! Templates (SPEC 3): the context every action's template sees, compiled once per
//! process, with inserted values escaped for where they go.

mod actions;
mod samples;

pub use self::actions::{
    MAX_BODY_BYTES, MAX_MCP_ARGUMENTS_BYTES, MAX_MCP_TEMPLATES, MAX_MESSAGE_CHARS, mcp_arguments, telegram_message,
    template_count, truncate,
};
pub use self::samples::{sample_event, trial_errors};

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, Utc};
use minijinja::{AutoEscape, Environment, Output, State};
use serde::Serialize;
use serde_json::Value;

use crate::domain::{Decimal, JobId, StoredEvent, Text, TriggerId};
use crate::job::Job;

/// The work one render may do (minijinja's fuel): every instruction costs one, and every 64
/// bytes a template produces or handles one more. An ordinary template uses a few hundred;
/// a loop or a string that grows without end runs out long before it costs memory or time.
pub const TEMPLATE_FUEL: u64 = 100_000;

/// How deep loops and blocks may nest while rendering (a recursive loop that calls itself).
pub const TEMPLATE_RECURSION_LIMIT: usize = 64;

/// Why a template gave no output. Either way only the job at hand fails, permanently.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("the template cannot be rendered: {0}")]
    Template(String),
    /// The template ran out of fuel, nested too deep, or wrote more than its action sends.
    #[error("the template exceeds its budget: {0}")]
    Budget(String),
}

impl RenderError {
    pub fn is_budget(&self) -> bool {
        matches!(self, RenderError::Budget(_))
    }

    fn of(error: &minijinja::Error, fuel: u64) -> Self {
        match error.kind() {
            minijinja::ErrorKind::OutOfFuel => {
                RenderError::Budget(format!("it ran out of fuel (at most {fuel} units of work)"))
            }
            minijinja::ErrorKind::InvalidOperation if error.to_string().contains("recursion limit") => {
                RenderError::Budget(format!("it nests deeper than {TEMPLATE_RECURSION_LIMIT} levels"))
            }
            _ => RenderError::Template(error.to_string()),
        }
    }
}
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

/// What templates see, borrowed from the job: `event`, `trigger`, `aggregates`, `chain`,
/// `fired_at`, `job_id`.
#[derive(Serialize)]
struct Context<'a> {
    event: Cow<'a, StoredEvent>,
    trigger: TriggerView<'a>,
    aggregates: &'a BTreeMap<String, Option<Decimal>>,
    chain: ChainView,
    fired_at: &'a DateTime<Utc>,
    job_id: &'a JobId,
}

#[derive(Serialize)]
struct TriggerView<'a> {
    id: &'a TriggerId,
    name: &'a str,
}

#[derive(Serialize)]
struct ChainView {
    id: u64,
    name: String,
}

/// Longest text of an event field that templates and default bodies see, in characters:
/// a chain may put a megabyte in a tag, and what is rendered is bounded (the whole text is
/// in the store and `GET /events/{id}`).
pub const MAX_RENDERED_TEXT_CHARS: usize = 16 * 1024;

/// `event` with every text field cut to [`MAX_RENDERED_TEXT_CHARS`] (ending with `…`);
/// borrowed as it is when no field is that long.
fn rendered_event(event: &StoredEvent) -> Cow<'_, StoredEvent> {
    let too_long =
        |text: &str| text.len() > MAX_RENDERED_TEXT_CHARS && text.chars().nth(MAX_RENDERED_TEXT_CHARS).is_some();
    if !event.event.data.texts().into_iter().any(|text| too_long(text)) {
        return Cow::Borrowed(event);
    }
    let mut cut = event.clone();
    for text in cut.event.data.texts_mut() {
        if too_long(text) {
            let mut short: String = text.chars().take(MAX_RENDERED_TEXT_CHARS).collect();
            short.push('…');
            *text = Text::new(short);
        }
    }
    Cow::Owned(cut)
}

fn borrowed(job: &Job) -> Context<'_> {
    let chain_id = job.event.event.log.chain_id.0;
    Context {
        event: rendered_event(&job.event),
        trigger: TriggerView { id: &job.trigger.id, name: &job.trigger.name },
        aggregates: &job.aggregates,
        chain: ChainView { id: chain_id, name: chain_name(chain_id) },
        fired_at: &job.fired_at,
        job_id: &job.job_id,
    }
}

/// What templates see: `event`, `trigger`, `aggregates`, `chain`, `fired_at`, `job_id`.
pub fn context(job: &Job) -> Value {
    serde_json::to_value(borrowed(job)).unwrap_or(Value::Null)
}

/// The body of a webhook: the rendered template, with every inserted value written as JSON
/// (so a hostile string cannot break out of the document), or by default a JSON document
/// with the job, the trigger, the event and the aggregates (written straight from the job).
pub fn webhook_body(job: &Job, template: Option<&str>) -> Result<String, RenderError> {
    match template {
        None => serde_json::to_string(&borrowed(job)).map_err(|e| RenderError::Template(e.to_string())),
        Some(source) => render(Escape::Json, source, &context(job), MAX_BODY_BYTES),
    }
}

/// How inserted values are escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Escape {
    /// As JSON values (webhook bodies).
    Json,
    /// For Telegram's HTML.
    Html,
    /// For Telegram's MarkdownV2.
    MarkdownV2,
    /// Not at all, for a plain Telegram message.
    Message,
    /// Not at all (MCP arguments).
    Plain,
}

impl Escape {
    /// Whether the output is a Telegram message, cut to [`MAX_MESSAGE_CHARS`] in the end:
    /// then no inserted value needs more than that many characters either.
    fn is_message(self) -> bool {
        matches!(self, Escape::Html | Escape::MarkdownV2 | Escape::Message)
    }
}

/// Templates compiled so far, per escape style, fuel and source: each is compiled once per
/// process, not once per delivery.
type Compiled = HashMap<(Escape, u64, String), Arc<Environment<'static>>>;

/// Past this many distinct templates the cache starts over.
const MAX_CACHED_TEMPLATES: usize = 10_000;

fn compiled() -> &'static Mutex<Compiled> {
    static COMPILED: OnceLock<Mutex<Compiled>> = OnceLock::new();
    COMPILED.get_or_init(Mutex::default)
}

/// Renders `source` with `context`, escaping inserted values as `escape` says, within
/// [`TEMPLATE_FUEL`] and at most `max_bytes` of output.
pub fn render(escape: Escape, source: &str, context: &Value, max_bytes: usize) -> Result<String, RenderError> {
    render_with_fuel(escape, source, context, max_bytes, TEMPLATE_FUEL)
}

/// [`render`] with `fuel` instead of the whole [`TEMPLATE_FUEL`] (the templates of one MCP
/// call share it).
fn render_with_fuel(
    escape: Escape,
    source: &str,
    context: &Value,
    max_bytes: usize,
    fuel: u64,
) -> Result<String, RenderError> {
    let key = (escape, fuel, source.to_owned());
    let cached = compiled().lock().ok().and_then(|cache| cache.get(&key).cloned());
    let env = match cached {
        Some(env) => env,
        None => {
            let mut env = Environment::new();
            configure(&mut env, escape);
            env.set_fuel(Some(fuel));
            env.set_recursion_limit(TEMPLATE_RECURSION_LIMIT);
            env.add_template_owned("template", source.to_owned()).map_err(|e| RenderError::of(&e, fuel))?;
            let env = Arc::new(env);
            if let Ok(mut cache) = compiled().lock() {
                if cache.len() >= MAX_CACHED_TEMPLATES {
                    cache.clear();
                }
                cache.insert(key, env.clone());
            }
            env
        }
    };
    let template = env.get_template("template").map_err(|e| RenderError::of(&e, fuel))?;
    let output = template.render(minijinja::value::Serde(context)).map_err(|e| RenderError::of(&e, fuel))?;
    if output.len() > max_bytes {
        return Err(RenderError::Budget(format!(
            "it wrote {} bytes, over the {max_bytes} this action sends",
            output.len()
        )));
    }
    Ok(output)
}

/// Runs `render` (one of the functions of this module, given what it needs by value) on a
/// thread of its own, so that even a render at the edge of its budget does not hold up the
/// tasks of an async worker thread.
///
/// At most as many renders as the machine has cores run at once in a process: a user who
/// sends costly templates in parallel waits for a turn rather than taking every core.
pub async fn off_thread<T: Send + 'static>(render: impl FnOnce() -> T + Send + 'static) -> T {
    static TURNS: OnceLock<Arc<tokio::sync::Semaphore>> = OnceLock::new();
    let turns = TURNS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        Arc::new(tokio::sync::Semaphore::new(cores))
    });
    // The semaphore is never closed, so a turn always comes. The turn goes with the render:
    // a caller that gives up (a client gone) does not free it before the render ends.
    let turn = turns.clone().acquire_owned().await;
    let render = move || {
        let _turn = turn;
        render()
    };
    match tokio::task::spawn_blocking(render).await {
        Ok(output) => output,
        Err(join) => std::panic::resume_unwind(join.into_panic()),
    }
}

fn configure(env: &mut Environment<'static>, escape: Escape) {
    match escape {
        Escape::Json => env.set_auto_escape_callback(|_| AutoEscape::Json),
        Escape::Plain => env.set_auto_escape_callback(|_| AutoEscape::None),
        Escape::Html | Escape::MarkdownV2 | Escape::Message => {
            env.set_auto_escape_callback(|_| AutoEscape::Custom("telegram".into()));
            env.set_formatter(move |out: &mut Output, state: &mut State, value: &minijinja::Value| {
                if *state.auto_escape() == AutoEscape::None || value.is_safe() {
                    return minijinja::escape_formatter(out, state, value);
                }
                let text = value_text(value, escape.is_message());
                let escaped = match escape {
                    Escape::MarkdownV2 => escape_markdown_v2(&text),
                    Escape::Html => escape_html(&text),
                    _ => text,
                };
                out.write_str(&escaped)
                    .map_err(|_| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, "write failed"))
            });
        }
    }
}

/// The text of an inserted value. In a Telegram message, which is cut in the end, at most
/// [`MAX_MESSAGE_CHARS`] characters of it are made, however long the value (a megabyte tag
/// from the chain, or the whole event): the work stays in proportion to what is sent.
fn value_text(value: &minijinja::Value, in_message: bool) -> String {
    if value.is_none() || value.is_undefined() {
        return String::new();
    }
    if !in_message {
        return value.to_string();
    }
    if let Some(text) = value.as_str() {
        return text.chars().take(MAX_MESSAGE_CHARS).collect();
    }
    let mut capped = Capped { text: String::new(), left: MAX_MESSAGE_CHARS };
    // Writing stops with an error once the text is full: what was written is the text.
    let _ = fmt::Write::write_fmt(&mut capped, format_args!("{value}"));
    capped.text
}

/// A writer that takes at most `left` more characters, then refuses.
struct Capped {
    text: String,
    left: usize,
}

impl fmt::Write for Capped {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            if self.left == 0 {
                return Err(fmt::Error);
            }
            self.text.push(c);
            self.left -= 1;
        }
        Ok(())
    }
}

/// The characters MarkdownV2 reads as marks unless escaped.
pub const MARKDOWN_V2_SPECIAL: &str = "_*[]()~`>#+-=|{}.!\\";

/// Escapes text for MarkdownV2: every special character gets a backslash.
pub fn escape_markdown_v2(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if MARKDOWN_V2_SPECIAL.contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Escapes text for Telegram's HTML.
pub fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests;

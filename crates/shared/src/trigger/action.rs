//! Actions (SPEC 3): what a trigger does when it fires. Parsed from the API's JSON; the
//! public part is stored in `trigger_actions.config`, the write-only secrets apart.

use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::MAX_ACTIONS;
use super::errors::{Errors, Path};
use super::parse::{parse_uint, reject_unknown_keys, type_name};

/// Longest template, in bytes.
pub const MAX_TEMPLATE_BYTES: usize = 16 * 1024;
/// Longest URL, in bytes.
const MAX_URL_BYTES: usize = 2_048;
/// Webhook timeout bounds, in milliseconds.
const MIN_TIMEOUT_MS: u64 = 100;
const MAX_TIMEOUT_MS: u64 = 60_000;
const DEFAULT_TIMEOUT_MS: u64 = 10_000;
const DEFAULT_MCP_TIMEOUT_MS: u64 = 30_000;
/// Most headers on one action.
const MAX_HEADERS: usize = 32;

/// Webhook headers that carry credentials: whatever their place in the request, they are
/// kept write-only with the action's secrets (as is every header in `secret_headers`).
pub const SENSITIVE_HEADERS: &[&str] = &["authorization", "proxy-authorization", "cookie", "x-api-key"];

/// Headers the webhook signer sets, or that HTTP itself owns; users cannot set them.
const RESERVED_HEADERS: &[&str] = &[
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    Telegram,
    Webhook,
    Mcp,
}

impl ActionKind {
    pub const ALL: [ActionKind; 3] = [ActionKind::Telegram, ActionKind::Webhook, ActionKind::Mcp];

    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Telegram => "telegram",
            ActionKind::Webhook => "webhook",
            ActionKind::Mcp => "mcp",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        ActionKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ParseMode {
    #[default]
    #[serde(rename = "HTML")]
    Html,
    MarkdownV2,
    #[serde(rename = "plain")]
    Plain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Get,
    #[default]
    Post,
    Put,
    Patch,
    Delete,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TelegramAction {
    pub chat_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    pub parse_mode: ParseMode,
    /// Write-only; the server's token is used when absent.
    #[serde(skip)]
    pub bot_token: Option<SecretString>,
    /// Whether a bot token of its own is stored. Set by the store; ignored on input.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub own_bot: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhookAction {
    pub url: String,
    pub method: HttpMethod,
    /// The public headers; credentials go to `secret_headers`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Write-only: headers named in [`SENSITIVE_HEADERS`] and those sent in `secret_headers`.
    /// `None` when none were sent: the stored ones stay.
    #[serde(skip)]
    pub secret_headers: Option<BTreeMap<String, SecretString>>,
    /// The names of the stored secret headers, shown in place of their values. Set by the
    /// store; ignored on input.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_header_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_template: Option<String>,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct McpAction {
    pub server_url: String,
    pub tool: String,
    pub arguments: Map<String, Value>,
    /// Write-only (e.g. Authorization). `None` when `headers` was not sent: the stored ones
    /// stay.
    #[serde(skip)]
    pub headers: Option<BTreeMap<String, SecretString>>,
    /// The names of the stored headers, shown in place of their values. Set by the store;
    /// ignored on input.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_header_names: Vec<String>,
    /// Bounds the initialize handshake and the tool call, each.
    #[serde(default = "default_mcp_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_mcp_timeout_ms() -> u64 {
    DEFAULT_MCP_TIMEOUT_MS
}

/// One action of a trigger. Deserializing reads the public config back (secrets empty).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Action {
    Telegram(TelegramAction),
    Webhook(WebhookAction),
    Mcp(McpAction),
}

impl Action {
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::Telegram(_) => ActionKind::Telegram,
            Action::Webhook(_) => ActionKind::Webhook,
            Action::Mcp(_) => ActionKind::Mcp,
        }
    }

    /// What may be shown back to the user and put in jobs: everything but secrets.
    pub fn public_config(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The write-only part that was sent, for storage apart from the config: each key
    /// present replaces the stored one, the others stay.
    pub fn secrets(&self) -> Value {
        let headers = |headers: &BTreeMap<String, SecretString>| -> Value {
            headers.iter().map(|(k, v)| (k.clone(), Value::String(v.expose_secret().to_owned()))).collect()
        };
        match self {
            Action::Telegram(t) => match &t.bot_token {
                Some(token) => json!({ "bot_token": token.expose_secret() }),
                None => json!({}),
            },
            Action::Webhook(WebhookAction { secret_headers: Some(h), .. })
            | Action::Mcp(McpAction { headers: Some(h), .. }) => json!({ "headers": headers(h) }),
            Action::Webhook(_) | Action::Mcp(_) => json!({}),
        }
    }

    /// The origin (scheme, host and port) that receives the action's credentials, for
    /// webhooks and MCP servers.
    pub fn credential_origin(&self) -> Option<String> {
        let url = match self {
            Action::Webhook(w) => &w.url,
            Action::Mcp(m) => &m.server_url,
            Action::Telegram(_) => return None,
        };
        url::Url::parse(url).ok().map(|u| u.origin().ascii_serialization())
    }
}

/// An action's write-only secrets as the store opens them: what a worker needs to deliver.
/// The stored layout (`signing_secret`, `bot_token`, `headers`) is read here only.
#[derive(Default)]
pub struct ActionSecrets {
    /// A webhook's signing secret (`whsec_...`).
    pub signing_secret: Option<SecretString>,
    /// A Telegram action's own bot token.
    pub bot_token: Option<SecretString>,
    /// Credential headers of a webhook or an MCP server.
    pub headers: BTreeMap<String, SecretString>,
}

impl ActionSecrets {
    /// Reads the opened secrets of an action; what is not text is left out.
    pub fn read(opened: &Value) -> Self {
        let text = |name: &str| opened.get(name).and_then(Value::as_str).map(|s| SecretString::from(s.to_owned()));
        let headers = opened
            .get("headers")
            .and_then(Value::as_object)
            .map(|headers| {
                headers
                    .iter()
                    .filter_map(|(name, value)| Some((name.clone(), SecretString::from(value.as_str()?.to_owned()))))
                    .collect()
            })
            .unwrap_or_default();
        Self { signing_secret: text("signing_secret"), bot_token: text("bot_token"), headers }
    }
}

impl std::fmt::Debug for ActionSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionSecrets")
            .field("signing_secret", &self.signing_secret.as_ref().map(|_| "[redacted]"))
            .field("bot_token", &self.bot_token.as_ref().map(|_| "[redacted]"))
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// An action as stored, and as a job carries it: its id and its parsed configuration, with
/// no secrets (workers read those by the id). In JSON it keeps the stored layout,
/// `{"id", "kind", "config"}`; a config that does not parse, or names another kind, is an
/// error when it is read, never a job.
#[derive(Debug, Clone)]
pub struct StoredAction {
    pub id: crate::domain::ActionId,
    pub action: Action,
}

impl StoredAction {
    pub fn kind(&self) -> ActionKind {
        self.action.kind()
    }
}

/// Equal when the ids and the public configurations are: secrets are not compared.
impl PartialEq for StoredAction {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.action.public_config() == other.action.public_config()
    }
}

#[derive(Deserialize)]
struct StoredLayout {
    id: crate::domain::ActionId,
    kind: ActionKind,
    config: Value,
}

impl Serialize for StoredAction {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Written<'a> {
            id: crate::domain::ActionId,
            kind: ActionKind,
            /// The public configuration: secrets are never serialized.
            config: &'a Action,
        }
        Written { id: self.id, kind: self.kind(), config: &self.action }.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for StoredAction {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let stored = StoredLayout::deserialize(deserializer)?;
        let action: Action = serde_json::from_value(stored.config)
            .map_err(|err| D::Error::custom(format!("action {}: its configuration does not read: {err}", stored.id)))?;
        if action.kind() != stored.kind {
            return Err(D::Error::custom(format!(
                "action {}: stored as {} but configured as {}",
                stored.id,
                stored.kind.as_str(),
                action.kind().as_str()
            )));
        }
        Ok(Self { id: stored.id, action })
    }
}

pub(crate) fn parse_actions(value: Option<&Value>, path: &Path, errors: &mut Errors) -> Option<Vec<Action>> {
    let Some(value) = value else {
        errors.add(path, "missing: a trigger needs at least one action");
        return None;
    };
    let Some(items) = value.as_array() else {
        errors.add(path, format!("expected a list of actions, got {}", type_name(value)));
        return None;
    };
    if items.is_empty() || items.len() > MAX_ACTIONS {
        errors.add(path, format!("a trigger needs 1 to {MAX_ACTIONS} actions"));
        return None;
    }
    let parsed: Vec<_> = items.iter().enumerate().map(|(i, item)| parse_action(item, &path.index(i), errors)).collect();
    parsed.into_iter().collect()
}

fn parse_action(value: &Value, path: &Path, errors: &mut Errors) -> Option<Action> {
    let Some(object) = value.as_object() else {
        errors.add(path, format!("expected an action object, got {}", type_name(value)));
        return None;
    };
    let kind = match object.get("type").and_then(Value::as_str) {
        Some("telegram") => ActionKind::Telegram,
        Some("webhook" | "rest") => ActionKind::Webhook,
        Some("mcp") => ActionKind::Mcp,
        Some(other) => {
            errors.add(
                &path.key("type"),
                format!("unknown action type {other:?} (expected telegram, webhook, rest or mcp)"),
            );
            return None;
        }
        None => {
            errors.add(&path.key("type"), "missing (telegram, webhook, rest or mcp)");
            return None;
        }
    };
    let before = errors.len();
    let action = match kind {
        ActionKind::Telegram => {
            reject_unknown_keys(
                object,
                &["type", "chat_id", "template", "parse_mode", "bot_token", "own_bot"],
                path,
                errors,
            );
            telegram(object, path, errors).map(Action::Telegram)
        }
        ActionKind::Webhook => {
            reject_unknown_keys(
                object,
                &[
                    "type",
                    "url",
                    "method",
                    "headers",
                    "secret_headers",
                    "secret_header_names",
                    "body_template",
                    "timeout_ms",
                ],
                path,
                errors,
            );
            webhook(object, path, errors).map(Action::Webhook)
        }
        ActionKind::Mcp => {
            reject_unknown_keys(
                object,
                &["type", "server_url", "tool", "arguments", "headers", "secret_header_names", "timeout_ms"],
                path,
                errors,
            );
            mcp(object, path, errors).map(Action::Mcp)
        }
    };
    if errors.len() > before { None } else { action }
}

fn telegram(object: &Map<String, Value>, path: &Path, errors: &mut Errors) -> Option<TelegramAction> {
    let chat_path = path.key("chat_id");
    let chat_id = match object.get("chat_id") {
        Some(Value::String(s)) => Some(s.trim().to_owned()),
        Some(Value::Number(n)) if n.is_i64() => Some(n.to_string()),
        Some(other) => {
            errors.add(&chat_path, format!("expected a chat id, got {}", type_name(other)));
            None
        }
        None => {
            errors.add(&chat_path, "missing");
            None
        }
    };
    let chat_id = chat_id.filter(|id| {
        let numeric = {
            let digits = id.strip_prefix('-').unwrap_or(id);
            !digits.is_empty() && digits.len() <= 20 && digits.bytes().all(|b| b.is_ascii_digit())
        };
        let username = id.strip_prefix('@').is_some_and(|name| {
            (5..=32).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        });
        if !(numeric || username) {
            errors.add(&chat_path, "expected a numeric chat id (e.g. -1001234) or a channel @username");
        }
        numeric || username
    });
    let template = optional_template(object.get("template"), &path.key("template"), errors);
    let parse_mode = match object.get("parse_mode") {
        None | Some(Value::Null) => ParseMode::Html,
        Some(v) => match serde_json::from_value::<ParseMode>(v.clone()) {
            Ok(mode) => mode,
            Err(_) => {
                errors.add(&path.key("parse_mode"), "expected HTML, MarkdownV2 or plain");
                ParseMode::Html
            }
        },
    };
    let bot_token = match object.get("bot_token") {
        None | Some(Value::Null) => None,
        Some(Value::String(token)) if is_bot_token(token) => Some(SecretString::from(token.clone())),
        Some(_) => {
            // Never echo what was sent: it may be a real token with a typo.
            errors.add(
                &path.key("bot_token"),
                "expected a Telegram bot token (<digits>:<20 to 100 letters, digits, _ or ->)",
            );
            None
        }
    };
    Some(TelegramAction { chat_id: chat_id?, template, parse_mode, bot_token, own_bot: false })
}

fn is_bot_token(token: &str) -> bool {
    match token.split_once(':') {
        Some((id, secret)) => {
            !id.is_empty()
                && id.bytes().all(|b| b.is_ascii_digit())
                && (20..=100).contains(&secret.len())
                && secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        }
        None => false,
    }
}

fn webhook(object: &Map<String, Value>, path: &Path, errors: &mut Errors) -> Option<WebhookAction> {
    let url = http_url(object.get("url"), &path.key("url"), errors);
    let method = match object.get("method") {
        None | Some(Value::Null) => HttpMethod::Post,
        Some(Value::String(m)) => match serde_json::from_value::<HttpMethod>(Value::String(m.to_ascii_uppercase())) {
            Ok(method) => method,
            Err(_) => {
                errors.add(
                    &path.key("method"),
                    format!("unsupported method {m:?} (expected GET, POST, PUT, PATCH or DELETE)"),
                );
                HttpMethod::Post
            }
        },
        Some(other) => {
            errors.add(&path.key("method"), format!("expected a string, got {}", type_name(other)));
            HttpMethod::Post
        }
    };
    let (headers, secret_headers) = webhook_headers(object, path, errors);
    let body_template = optional_template(object.get("body_template"), &path.key("body_template"), errors);
    let timeout_ms = timeout_ms(object, path, errors, DEFAULT_TIMEOUT_MS);
    Some(WebhookAction {
        url: url?,
        method,
        headers,
        secret_headers,
        secret_header_names: Vec::new(),
        body_template,
        timeout_ms,
    })
}

/// A webhook's public headers and, when any were sent, its secret ones: the sensitive names
/// among `headers` and everything in `secret_headers` (which, even empty, replaces what is
/// stored).
type SplitHeaders = (BTreeMap<String, String>, Option<BTreeMap<String, SecretString>>);

fn webhook_headers(object: &Map<String, Value>, path: &Path, errors: &mut Errors) -> SplitHeaders {
    let given = headers(object.get("headers"), &path.key("headers"), errors);
    let marked = headers(object.get("secret_headers"), &path.key("secret_headers"), errors);
    let mut public = BTreeMap::new();
    let mut secret: BTreeMap<String, SecretString> = BTreeMap::new();
    for (name, value) in given {
        if SENSITIVE_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            secret.insert(name, SecretString::from(value));
        } else {
            public.insert(name, value);
        }
    }
    for (name, value) in marked {
        let lower = name.to_ascii_lowercase();
        if public.keys().chain(secret.keys()).any(|n| n.to_ascii_lowercase() == lower) {
            errors.add(&path.key("secret_headers").key(&name), "also sent in headers: send each header once");
            continue;
        }
        secret.insert(name, SecretString::from(value));
    }
    if public.len() + secret.len() > MAX_HEADERS {
        errors.add(&path.key("headers"), format!("at most {MAX_HEADERS} headers in all"));
    }
    let sent = !secret.is_empty() || matches!(object.get("secret_headers"), Some(Value::Object(_)));
    (public, sent.then_some(secret))
}

/// The action's `timeout_ms`, `default` when absent.
fn timeout_ms(object: &Map<String, Value>, path: &Path, errors: &mut Errors, default: u64) -> u64 {
    match object.get("timeout_ms") {
        None | Some(Value::Null) => default,
        Some(v) => match parse_uint(v, MAX_TIMEOUT_MS, &path.key("timeout_ms"), errors) {
            Some(ms) if ms >= MIN_TIMEOUT_MS => ms,
            Some(_) => {
                errors.add(&path.key("timeout_ms"), format!("must be at least {MIN_TIMEOUT_MS}"));
                default
            }
            None => default,
        },
    }
}

fn mcp(object: &Map<String, Value>, path: &Path, errors: &mut Errors) -> Option<McpAction> {
    let server_url = http_url(object.get("server_url"), &path.key("server_url"), errors);
    let tool = match object.get("tool") {
        Some(Value::String(t)) if !t.is_empty() && t.len() <= 128 && !t.chars().any(char::is_control) => {
            Some(t.clone())
        }
        Some(Value::String(_)) => {
            errors.add(&path.key("tool"), "must be a tool name of 1 to 128 characters");
            None
        }
        Some(other) => {
            errors.add(&path.key("tool"), format!("expected a string, got {}", type_name(other)));
            None
        }
        None => {
            errors.add(&path.key("tool"), "missing");
            None
        }
    };
    let arguments = match object.get("arguments") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => {
            check_argument_templates(&Value::Object(map.clone()), &path.key("arguments"), errors);
            let templates: usize = map.values().map(crate::render::template_count).sum();
            if templates > crate::render::MAX_MCP_TEMPLATES {
                errors.add(
                    &path.key("arguments"),
                    format!("at most {} strings (templates) in all", crate::render::MAX_MCP_TEMPLATES),
                );
            }
            if Value::Object(map.clone()).to_string().len() > 4 * MAX_TEMPLATE_BYTES {
                errors.add(&path.key("arguments"), format!("at most {} bytes", 4 * MAX_TEMPLATE_BYTES));
            }
            map.clone()
        }
        Some(other) => {
            errors.add(&path.key("arguments"), format!("expected an object, got {}", type_name(other)));
            Map::new()
        }
    };
    let sent = matches!(object.get("headers"), Some(Value::Object(_)));
    let headers = headers(object.get("headers"), &path.key("headers"), errors)
        .into_iter()
        .map(|(k, v)| (k, SecretString::from(v)))
        .collect();
    let timeout_ms = timeout_ms(object, path, errors, DEFAULT_MCP_TIMEOUT_MS);
    Some(McpAction {
        server_url: server_url?,
        tool: tool?,
        arguments,
        headers: sent.then_some(headers),
        secret_header_names: Vec::new(),
        timeout_ms,
    })
}

fn check_argument_templates(value: &Value, path: &Path, errors: &mut Errors) {
    match value {
        Value::String(s) => {
            check_template(s, path, errors);
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check_argument_templates(item, &path.index(i), errors);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                check_argument_templates(v, &path.key(k), errors);
            }
        }
        _ => {}
    }
}

fn optional_template(value: Option<&Value>, path: &Path, errors: &mut Errors) -> Option<String> {
    match value {
        None | Some(Value::Null) => None,
        Some(Value::String(source)) => check_template(source, path, errors).then(|| source.clone()),
        Some(other) => {
            errors.add(path, format!("expected a template string, got {}", type_name(other)));
            None
        }
    }
}

/// Compiles a template once to reject syntax errors at save time.
fn check_template(source: &str, path: &Path, errors: &mut Errors) -> bool {
    if source.len() > MAX_TEMPLATE_BYTES {
        errors.add(path, format!("templates are at most {MAX_TEMPLATE_BYTES} bytes"));
        return false;
    }
    let env = minijinja::Environment::new();
    match env.template_from_str(source) {
        Ok(_) => true,
        Err(err) => {
            errors.add(path, format!("template does not parse: {}", err.detail().unwrap_or("syntax error")));
            false
        }
    }
}

fn http_url(value: Option<&Value>, path: &Path, errors: &mut Errors) -> Option<String> {
    let raw = match value {
        Some(Value::String(s)) => s.trim(),
        Some(other) => {
            errors.add(path, format!("expected a URL, got {}", type_name(other)));
            return None;
        }
        None => {
            errors.add(path, "missing");
            return None;
        }
    };
    if raw.len() > MAX_URL_BYTES {
        errors.add(path, format!("at most {MAX_URL_BYTES} bytes"));
        return None;
    }
    let url = match url::Url::parse(raw) {
        Ok(url) => url,
        Err(err) => {
            errors.add(path, format!("not a valid URL: {err}"));
            return None;
        }
    };
    if !matches!(url.scheme(), "http" | "https") {
        errors.add(path, format!("scheme {:?} is not allowed (use http or https)", url.scheme()));
        return None;
    }
    if url.host_str().is_none_or(str::is_empty) {
        errors.add(path, "the URL has no host");
        return None;
    }
    if !url.username().is_empty() || url.password().is_some() {
        errors.add(path, "credentials in the URL are not allowed; send them in headers");
        return None;
    }
    Some(url.to_string())
}

fn headers(value: Option<&Value>, path: &Path, errors: &mut Errors) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let map = match value {
        None | Some(Value::Null) => return out,
        Some(Value::Object(map)) => map,
        Some(other) => {
            errors.add(path, format!("expected an object of header names to values, got {}", type_name(other)));
            return out;
        }
    };
    if map.len() > MAX_HEADERS {
        errors.add(path, format!("at most {MAX_HEADERS} headers"));
        return out;
    }
    for (name, value) in map {
        let header_path = path.key(name);
        let valid_name = !name.is_empty()
            && name.len() <= 128
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !valid_name {
            errors.add(&header_path, "not a valid HTTP header name");
            continue;
        }
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            errors.add(&header_path, "this header is set by the server and cannot be overridden");
            continue;
        }
        match value {
            Value::String(v) if v.len() <= 4096 && !v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) => {
                out.insert(name.clone(), v.clone());
            }
            Value::String(_) => errors.add(&header_path, "header values are at most 4096 bytes with no line breaks"),
            other => errors.add(&header_path, format!("expected a string, got {}", type_name(other))),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn id() -> Value {
        json!("0b7f4bd6-4a43-4e6d-9d41-3b8a1e5b8a11")
    }

    #[test]
    fn a_stored_action_reads_back_parsed_in_the_stored_layout() {
        let stored = json!({"id": id(), "kind": "webhook",
                            "config": {"type": "webhook", "url": "https://example.com/hook", "method": "POST", "timeout_ms": 1000}});
        let action: StoredAction = serde_json::from_value(stored).expect("reads");
        let Action::Webhook(webhook) = &action.action else { panic!("a webhook: {action:?}") };
        assert_eq!(webhook.url, "https://example.com/hook");
        let written = serde_json::to_value(&action).expect("writes");
        assert_eq!((written["kind"].clone(), written["config"]["url"].clone()), (json!("webhook"), json!(webhook.url)));
        assert_eq!(serde_json::from_value::<StoredAction>(written).expect("round trip"), action);
    }

    #[test]
    fn an_unknown_kind_or_a_config_that_does_not_read_is_an_error_never_a_default() {
        let hook = json!({"type": "webhook", "url": "https://example.com/hook", "method": "POST", "timeout_ms": 1000});
        for (stored, says) in [
            (json!({"id": id(), "kind": "pigeon", "config": hook}), "unknown variant"),
            (json!({"id": id(), "kind": "telegram", "config": hook}), "stored as telegram but configured as webhook"),
            (json!({"id": id(), "kind": "webhook", "config": {"type": "webhook"}}), "does not read"),
            (json!({"id": id(), "kind": "webhook", "config": "\u{0}"}), "does not read"),
        ] {
            let err = serde_json::from_value::<StoredAction>(stored.clone()).expect_err("refused");
            assert!(err.to_string().contains(says), "{stored}: {err}");
        }
    }

    #[test]
    fn opened_secrets_are_typed_and_never_printed() {
        let opened = json!({"signing_secret": "whsec_abc", "bot_token": "123:tok",
                            "headers": {"Authorization": "Bearer s3cret", "X-Bad": 7}});
        let secrets = ActionSecrets::read(&opened);
        assert_eq!(secrets.signing_secret.as_ref().map(|s| s.expose_secret().to_owned()), Some("whsec_abc".into()));
        assert_eq!(secrets.headers.keys().collect::<Vec<_>>(), vec!["Authorization"], "what is not text is left out");
        let printed = format!("{secrets:?}");
        for secret in ["whsec_abc", "123:tok", "s3cret"] {
            assert!(!printed.contains(secret), "{printed}");
        }
        let none = ActionSecrets::read(&json!("not an object"));
        assert!(none.signing_secret.is_none() && none.bot_token.is_none() && none.headers.is_empty());
    }
}

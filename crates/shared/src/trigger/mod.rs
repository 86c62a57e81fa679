//! Triggers (SPEC 2): the JSON a user saves, parsed once into types that the processor
//! evaluates per event and the API stores. Every fault is reported with its JSON path.

mod action;
mod condition;
mod errors;
mod field;
mod parse;
mod scope;

use serde_json::Value;

pub use self::action::{
    Action, ActionKind, ActionSecrets, HttpMethod, McpAction, ParseMode, SENSITIVE_HEADERS, StoredAction,
    TelegramAction, WebhookAction,
};
pub use self::condition::{Aggregate, AggregateKind, Comparison, Condition, Literal, Op, Per};
pub use self::errors::{FieldError, ValidationErrors};
pub use self::field::{Field, FieldKind, FieldValue};
pub use self::scope::Scope;

use self::errors::{Errors, Path};
use self::parse::{ConditionParser, parse_scope, parse_uint, reject_unknown_keys, type_name};

/// Longest trigger name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 2_000;
/// Most actions on one trigger.
pub const MAX_ACTIONS: usize = 10;
/// Longest cooldown: 30 days.
pub const MAX_COOLDOWN_SECS: u64 = 30 * 24 * 3600;

/// What decides whether a trigger fires: its scope, its condition, and the aggregates that
/// condition uses. This is all the processor needs to evaluate events.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub scope: Scope,
    pub condition: Option<Condition>,
    pub aggregates: Vec<Aggregate>,
}

impl Rule {
    /// Parses a scope and a condition as stored (`triggers.scope`, `triggers.condition`).
    pub fn parse(scope: Option<&Value>, condition: Option<&Value>) -> Result<Self, ValidationErrors> {
        let mut errors = Errors::default();
        let rule = parse_rule(scope, condition, &Path::root(), &mut errors);
        errors.finish(rule)
    }

    /// Updates nothing: evaluates the condition with the given aggregate values.
    pub fn condition_holds(
        &self,
        event: &crate::domain::StoredEvent,
        aggregates: &[Option<crate::domain::Decimal>],
    ) -> bool {
        self.condition.as_ref().is_none_or(|c| c.eval(event, aggregates))
    }
}

fn parse_rule(scope: Option<&Value>, condition: Option<&Value>, root: &Path, errors: &mut Errors) -> Option<Rule> {
    let scope = parse_scope(scope, &root.key("scope"), errors);
    let mut parser = ConditionParser::new(errors, &scope);
    let condition = match condition.filter(|c| !c.is_null()) {
        None => None,
        Some(value) => Some(parser.node(value, &root.key("condition"), 0, false)?),
    };
    let aggregates = std::mem::take(&mut parser.aggregates);
    Some(Rule { scope, condition, aggregates })
}

/// A whole trigger as a user defines it (`POST /triggers`).
#[derive(Debug, Clone)]
pub struct TriggerDefinition {
    pub name: String,
    pub description: Option<String>,
    pub enabled: bool,
    pub rule: Rule,
    pub cooldown_secs: u64,
    pub actions: Vec<Action>,
    /// The condition as the user wrote it (already validated), for storage.
    condition_source: Option<Value>,
}

impl TriggerDefinition {
    /// The scope (normalized) and the condition (as written) to store; parsing them again
    /// gives this definition's rule.
    pub fn rule_json(&self) -> (Value, Value) {
        (self.rule.scope.to_json(), self.condition_source.clone().unwrap_or(Value::Null))
    }

    pub fn parse(value: &Value) -> Result<Self, ValidationErrors> {
        let mut errors = Errors::default();
        let root = Path::root();
        let Some(object) = value.as_object() else {
            errors.add(&root, format!("expected a trigger object, got {}", type_name(value)));
            return errors.finish(None);
        };
        reject_nul_characters(value, &root, &mut errors);
        reject_unknown_keys(
            object,
            &["name", "description", "enabled", "scope", "condition", "cooldown_secs", "actions"],
            &root,
            &mut errors,
        );
        let name = match object.get("name") {
            Some(Value::String(name)) if !name.trim().is_empty() && name.chars().count() <= MAX_NAME_CHARS => {
                Some(name.trim().to_owned())
            }
            Some(Value::String(_)) => {
                errors.add(&root.key("name"), format!("must be 1 to {MAX_NAME_CHARS} characters"));
                None
            }
            Some(other) => {
                errors.add(&root.key("name"), format!("expected a string, got {}", type_name(other)));
                None
            }
            None => {
                errors.add(&root.key("name"), "missing");
                None
            }
        };
        let description = match object.get("description") {
            None | Some(Value::Null) => None,
            Some(Value::String(d)) if d.chars().count() <= MAX_DESCRIPTION_CHARS => Some(d.clone()),
            Some(Value::String(_)) => {
                errors.add(&root.key("description"), format!("at most {MAX_DESCRIPTION_CHARS} characters"));
                None
            }
            Some(other) => {
                errors.add(&root.key("description"), format!("expected a string, got {}", type_name(other)));
                None
            }
        };
        let enabled = match object.get("enabled") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                errors.add(&root.key("enabled"), format!("expected true or false, got {}", type_name(other)));
                true
            }
        };
        let cooldown_secs = match object.get("cooldown_secs") {
            None | Some(Value::Null) => Some(0),
            Some(v) => parse_uint(v, MAX_COOLDOWN_SECS, &root.key("cooldown_secs"), &mut errors),
        };
        let rule = parse_rule(object.get("scope"), object.get("condition"), &root, &mut errors);
        let actions = action::parse_actions(object.get("actions"), &root.key("actions"), &mut errors);
        if !errors.is_empty() {
            return errors.finish(None);
        }
        let definition = match (name, rule, cooldown_secs, actions) {
            (Some(name), Some(rule), Some(cooldown_secs), Some(actions)) => {
                let condition_source = object.get("condition").filter(|c| !c.is_null()).cloned();
                Some(TriggerDefinition { name, description, enabled, rule, cooldown_secs, actions, condition_source })
            }
            _ => None,
        };
        // Templates that cannot stay within their budget on an ordinary event of the scope.
        for (index, key, error) in definition.iter().flat_map(crate::render::trial_errors) {
            errors.add(&root.key("actions").index(index).key(key), error.to_string());
        }
        errors.finish(definition)
    }
}

/// PostgreSQL cannot store a NUL character in text or JSONB: name every string that holds one.
fn reject_nul_characters(value: &Value, path: &Path, errors: &mut Errors) {
    match value {
        Value::String(text) if text.contains('\0') => errors.add(path, "must not contain a NUL character"),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                reject_nul_characters(item, &path.index(i), errors);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                if key.contains('\0') {
                    errors.add(path, "a key must not contain a NUL character");
                }
                reject_nul_characters(item, &path.key(key), errors);
            }
        }
        _ => {}
    }
}

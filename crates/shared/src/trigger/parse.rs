//! From the JSON a user saves to the parsed scope and condition tree, reporting every fault
//! with its JSON path.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::condition::{Aggregate, AggregateKind, Comparison, Condition, Literal, Op, Per};
use super::errors::{Errors, Path};
use super::field::{Field, FieldKind};
use super::scope::Scope;
use crate::domain::{ChainId, Decimal, EventType, Registry};

/// Deepest nesting of `all`/`any`/`not` accepted.
const MAX_DEPTH: usize = 16;
/// Most condition nodes in one trigger.
const MAX_NODES: usize = 256;
/// Most items in one scope list or `in` list.
const MAX_LIST: usize = 1_000;
/// Most aggregates in one trigger.
const MAX_AGGREGATES: usize = 16;
/// Longest EMA window, in samples.
const MAX_EMA_WINDOW: u64 = 100_000;
/// Longest sliding window: one year of block time.
const MAX_WINDOW_SECS: u64 = 366 * 24 * 3600;

const AGGREGATE_KINDS: [&str; 6] = ["ema", "count", "avg", "sum", "min", "max"];

pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Reports keys of `object` that are not in `known`.
pub(crate) fn reject_unknown_keys(object: &Map<String, Value>, known: &[&str], path: &Path, errors: &mut Errors) {
    for key in object.keys() {
        if !known.contains(&key.as_str()) {
            errors.add(&path.key(key), format!("unknown field (expected one of {})", known.join(", ")));
        }
    }
}

/// A non-negative integer no larger than `max`.
pub(crate) fn parse_uint(value: &Value, max: u64, path: &Path, errors: &mut Errors) -> Option<u64> {
    match value.as_u64() {
        Some(n) if n <= max => Some(n),
        _ => {
            errors.add(path, format!("expected a whole number from 0 to {max}, got {}", describe(value)));
            None
        }
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) if s.chars().count() <= 40 => format!("{s:?}"),
        other => type_name(other).to_owned(),
    }
}

pub(crate) fn parse_scope(value: Option<&Value>, path: &Path, errors: &mut Errors) -> Scope {
    let mut scope = Scope::default();
    let Some(value) = value else { return scope };
    if value.is_null() {
        return scope;
    }
    let Some(object) = value.as_object() else {
        errors.add(path, format!("expected an object, got {}", type_name(value)));
        return scope;
    };
    reject_unknown_keys(object, &["chain_ids", "registry", "event_types", "agent_ids"], path, errors);
    if let Some(v) = object.get("registry").filter(|v| !v.is_null()) {
        match v.as_str().map(str::parse::<Registry>) {
            Some(Ok(registry)) => scope.registry = Some(registry),
            Some(Err(err)) => errors.add(&path.key("registry"), err.to_string()),
            None => errors.add(&path.key("registry"), format!("expected a string, got {}", type_name(v))),
        }
    }
    scope.chain_ids = parse_list(object.get("chain_ids"), &path.key("chain_ids"), errors, |item, p, errors| match item
        .as_u64()
        .filter(|n| *n > 0 && i64::try_from(*n).is_ok())
    {
        Some(id) => Some(ChainId(id)),
        None => {
            errors.add(p, format!("expected a positive chain id, got {}", describe(item)));
            None
        }
    });
    let types_path = path.key("event_types");
    scope.event_types = parse_list(object.get("event_types"), &types_path, errors, |item, p, errors| {
        match item.as_str().map(str::parse::<EventType>) {
            Some(Ok(t)) => Some(t),
            Some(Err(err)) => {
                errors.add(p, err.to_string());
                None
            }
            None => {
                errors.add(p, format!("expected an event type name, got {}", type_name(item)));
                None
            }
        }
    });
    if let Some(registry) = scope.registry {
        for (i, t) in scope.event_types.iter().enumerate() {
            if t.registry() != registry {
                errors
                    .add(&types_path.index(i), format!("{t} belongs to the {} registry, not {registry}", t.registry()));
            }
        }
    }
    scope.agent_ids = parse_list(object.get("agent_ids"), &path.key("agent_ids"), errors, |item, p, errors| {
        let parsed = match item {
            Value::String(s) => s.parse().ok(),
            Value::Number(n) => n.as_u64().map(Into::into),
            _ => None,
        };
        if parsed.is_none() {
            errors.add(p, format!("expected an agent id (a decimal string), got {}", describe(item)));
        }
        parsed
    });
    scope
}

fn parse_list<T: PartialEq>(
    value: Option<&Value>,
    path: &Path,
    errors: &mut Errors,
    mut item: impl FnMut(&Value, &Path, &mut Errors) -> Option<T>,
) -> Vec<T> {
    let Some(value) = value.filter(|v| !v.is_null()) else { return Vec::new() };
    let Some(items) = value.as_array() else {
        errors.add(path, format!("expected a list, got {}", type_name(value)));
        return Vec::new();
    };
    if items.len() > MAX_LIST {
        errors.add(path, format!("at most {MAX_LIST} items"));
        return Vec::new();
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, v) in items.iter().enumerate() {
        if let Some(parsed) = item(v, &path.index(i), errors)
            && !out.contains(&parsed)
        {
            out.push(parsed);
        }
    }
    out
}

/// Parses condition trees for one trigger, collecting its aggregates as it goes.
pub(crate) struct ConditionParser<'a> {
    pub errors: &'a mut Errors,
    pub event_types: Vec<EventType>,
    pub aggregates: Vec<Aggregate>,
    /// Scope JSON folded into every aggregate's id: a new scope means new state.
    pub scope_fingerprint: String,
    nodes: usize,
}

impl<'a> ConditionParser<'a> {
    pub fn new(errors: &'a mut Errors, scope: &Scope) -> Self {
        Self {
            errors,
            event_types: scope.event_types_in_scope(),
            aggregates: Vec::new(),
            scope_fingerprint: scope.to_json().to_string(),
            nodes: 0,
        }
    }

    /// A condition node; `stateless` forbids aggregates (inside a `where`).
    pub fn node(&mut self, value: &Value, path: &Path, depth: usize, stateless: bool) -> Option<Condition> {
        self.nodes += 1;
        if self.nodes == MAX_NODES + 1 {
            self.errors.add(path, format!("a condition may have at most {MAX_NODES} nodes"));
        }
        if depth > MAX_DEPTH {
            self.errors.add(path, format!("conditions may nest at most {MAX_DEPTH} levels deep"));
            return None;
        }
        let Some(object) = value.as_object() else {
            self.errors.add(path, format!("expected a condition object, got {}", type_name(value)));
            return None;
        };
        if let Some(items) = object.get("all") {
            reject_unknown_keys(object, &["all"], path, self.errors);
            return self.group(items, &path.key("all"), depth, stateless).map(Condition::All);
        }
        if let Some(items) = object.get("any") {
            reject_unknown_keys(object, &["any"], path, self.errors);
            return self.group(items, &path.key("any"), depth, stateless).map(Condition::Any);
        }
        if let Some(inner) = object.get("not") {
            reject_unknown_keys(object, &["not"], path, self.errors);
            return self.node(inner, &path.key("not"), depth + 1, stateless).map(|c| Condition::Not(Box::new(c)));
        }
        if object.contains_key("field") {
            reject_unknown_keys(object, &["field", "op", "value"], path, self.errors);
            return self.comparison(object, path).map(Condition::Compare);
        }
        if let Some(kind) = AGGREGATE_KINDS.iter().find(|k| object.contains_key(**k)) {
            if stateless {
                self.errors.add(&path.key(kind), "aggregates cannot be used inside `where`");
                return None;
            }
            reject_unknown_keys(object, &[kind, "op", "value"], path, self.errors);
            return self.aggregate_comparison(kind, object, path, depth);
        }
        self.errors.add(
            path,
            "expected one of `all`, `any`, `not`, a comparison (`field`, `op`, `value`) or an aggregate (`ema`, `count`, `avg`, `sum`, `min`, `max`)",
        );
        None
    }

    fn group(&mut self, items: &Value, path: &Path, depth: usize, stateless: bool) -> Option<Vec<Condition>> {
        let Some(items) = items.as_array() else {
            self.errors.add(path, format!("expected a list of conditions, got {}", type_name(items)));
            return None;
        };
        if items.is_empty() {
            self.errors.add(path, "expected at least one condition");
            return None;
        }
        let parsed: Vec<_> =
            items.iter().enumerate().map(|(i, v)| self.node(v, &path.index(i), depth + 1, stateless)).collect();
        parsed.into_iter().collect()
    }

    fn op(&mut self, object: &Map<String, Value>, path: &Path) -> Option<Op> {
        let path = path.key("op");
        match object.get("op") {
            None => {
                self.errors.add(&path, "missing");
                None
            }
            Some(Value::String(name)) => {
                let op = Op::parse(name);
                if op.is_none() {
                    let names: Vec<_> = Op::ALL.iter().map(|op| op.name()).collect();
                    self.errors.add(&path, format!("unknown operator {name:?} (expected one of {})", names.join(", ")));
                }
                op
            }
            Some(other) => {
                self.errors.add(&path, format!("expected an operator name, got {}", type_name(other)));
                None
            }
        }
    }

    /// A field name that events in scope carry.
    fn field(&mut self, value: Option<&Value>, path: &Path) -> Option<Field> {
        let name = match value {
            Some(Value::String(name)) => name,
            Some(other) => {
                self.errors.add(path, format!("expected a field name, got {}", type_name(other)));
                return None;
            }
            None => {
                self.errors.add(path, "missing");
                return None;
            }
        };
        let field = match name.parse::<Field>() {
            Ok(field) => field,
            Err(err) => {
                self.errors.add(path, err.to_string());
                return None;
            }
        };
        if !self.event_types.iter().any(|t| field.carried_by(*t)) {
            let names: Vec<_> = self.event_types.iter().map(|t| t.as_str()).collect();
            self.errors.add(path, format!("{field} is not carried by any event type in scope ({})", names.join(", ")));
            return None;
        }
        Some(field)
    }

    fn comparison(&mut self, object: &Map<String, Value>, path: &Path) -> Option<Comparison> {
        let field = self.field(object.get("field"), &path.key("field"));
        let op = self.op(object, path);
        let (field, op) = (field?, op?);
        let kind = field.kind();
        let allowed = match op {
            Op::Lt | Op::Lte | Op::Gt | Op::Gte => matches!(kind, FieldKind::Number | FieldKind::Timestamp),
            Op::Contains | Op::StartsWith | Op::EndsWith => matches!(kind, FieldKind::Text | FieldKind::Hex),
            Op::Eq | Op::Ne | Op::In | Op::NotIn | Op::Exists => true,
        };
        if !allowed {
            self.errors.add(
                &path.key("op"),
                format!("{} cannot be applied to {field}, which is {}", op.name(), kind.describe()),
            );
            return None;
        }
        let value_path = path.key("value");
        let Some(value) = object.get("value") else {
            self.errors.add(&value_path, "missing");
            return None;
        };
        let literal = match op {
            Op::Exists => match value {
                Value::Bool(b) => Some(Literal::Bool(*b)),
                other => {
                    self.errors.add(&value_path, format!("exists takes true or false, got {}", type_name(other)));
                    None
                }
            },
            Op::In | Op::NotIn => self.list_literal(kind, op, value, &value_path),
            Op::Contains | Op::StartsWith | Op::EndsWith => self.fragment_literal(kind, value, &value_path),
            _ => self.literal(kind, value, &value_path),
        }?;
        Some(Comparison { field, op, value: literal })
    }

    fn list_literal(&mut self, kind: FieldKind, op: Op, value: &Value, path: &Path) -> Option<Literal> {
        let Some(items) = value.as_array() else {
            self.errors.add(path, format!("{} takes a list, got {}", op.name(), type_name(value)));
            return None;
        };
        if items.is_empty() || items.len() > MAX_LIST {
            self.errors.add(path, format!("{} takes a list of 1 to {MAX_LIST} values", op.name()));
            return None;
        }
        let parsed: Vec<_> = items.iter().enumerate().map(|(i, v)| self.literal(kind, v, &path.index(i))).collect();
        parsed.into_iter().collect::<Option<Vec<_>>>().map(Literal::List)
    }

    /// A whole value of the field's kind.
    fn literal(&mut self, kind: FieldKind, value: &Value, path: &Path) -> Option<Literal> {
        let parsed = match (kind, value) {
            (FieldKind::Number, Value::Number(n)) => n.to_string().parse().ok().map(Literal::Number),
            (FieldKind::Number, Value::String(s)) => s.parse::<Decimal>().ok().map(Literal::Number),
            (FieldKind::Hex, Value::String(s)) => is_prefixed_hex(s).then(|| Literal::Hex(s.to_ascii_lowercase())),
            (FieldKind::Text, Value::String(s)) => Some(Literal::Text(s.clone())),
            (FieldKind::Bool, Value::Bool(b)) => Some(Literal::Bool(*b)),
            (FieldKind::Timestamp, Value::String(s)) => {
                DateTime::parse_from_rfc3339(s).ok().map(|t| Literal::Timestamp(t.with_timezone(&Utc)))
            }
            (FieldKind::Timestamp, Value::Number(n)) => {
                n.as_i64().and_then(|secs| DateTime::from_timestamp(secs, 0)).map(Literal::Timestamp)
            }
            _ => None,
        };
        if parsed.is_none() {
            let expected = match kind {
                FieldKind::Number => "a number (a JSON number or a decimal string such as \"99.77\")",
                FieldKind::Hex => "0x-prefixed hex",
                FieldKind::Text => "a string",
                FieldKind::Bool => "true or false",
                FieldKind::Timestamp => "an RFC 3339 time or unix seconds",
            };
            self.errors.add(path, format!("expected {expected}, got {}", describe(value)));
        }
        parsed
    }

    /// A fragment for contains/starts_with/ends_with.
    fn fragment_literal(&mut self, kind: FieldKind, value: &Value, path: &Path) -> Option<Literal> {
        match (kind, value) {
            (FieldKind::Text, Value::String(s)) => Some(Literal::Text(s.clone())),
            (FieldKind::Hex, Value::String(s))
                if s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'x' || b == b'X') =>
            {
                Some(Literal::Hex(s.to_ascii_lowercase()))
            }
            _ => {
                self.errors.add(path, format!("expected a string, got {}", describe(value)));
                None
            }
        }
    }

    fn aggregate_comparison(
        &mut self,
        kind_name: &str,
        object: &Map<String, Value>,
        path: &Path,
        depth: usize,
    ) -> Option<Condition> {
        let spec_path = path.key(kind_name);
        let aggregate = object.get(kind_name).and_then(|spec| self.aggregate(kind_name, spec, &spec_path, depth));
        let op = self.op(object, path);
        let value_path = path.key("value");
        let value = match object.get("value") {
            Some(Value::Number(n)) => n.to_string().parse::<Decimal>().ok(),
            Some(Value::String(s)) => s.parse::<Decimal>().ok(),
            _ => None,
        };
        if value.is_none() {
            let got = object.get("value").map(describe).unwrap_or_else(|| "nothing".to_owned());
            self.errors.add(&value_path, format!("expected a number to compare the {kind_name} with, got {got}"));
        }
        let op = op?;
        if !matches!(op, Op::Eq | Op::Ne | Op::Lt | Op::Lte | Op::Gt | Op::Gte) {
            self.errors.add(
                &path.key("op"),
                format!("{} cannot compare an aggregate; use eq, ne, lt, lte, gt or gte", op.name()),
            );
            return None;
        }
        let aggregate = aggregate?;
        Some(Condition::Aggregate { aggregate, op, value: value? })
    }

    /// Parses an aggregate spec, registers it, and returns its index.
    fn aggregate(&mut self, kind_name: &str, spec: &Value, path: &Path, depth: usize) -> Option<usize> {
        let Some(object) = spec.as_object() else {
            self.errors.add(path, format!("expected an object, got {}", type_name(spec)));
            return None;
        };
        let own_keys: &[&str] = match kind_name {
            "ema" => &["field", "window", "alpha", "min_samples", "per", "where", "as"],
            "count" => &["window_secs", "per", "where", "as"],
            _ => &["field", "window_secs", "per", "where", "as"],
        };
        reject_unknown_keys(object, own_keys, path, self.errors);
        let errors_before = self.errors_len();

        let field = if kind_name == "count" {
            None
        } else {
            let field = self.field(object.get("field"), &path.key("field"));
            if let Some(f) = field.filter(|f| f.kind() != FieldKind::Number) {
                self.errors.add(
                    &path.key("field"),
                    format!("{kind_name} needs a numeric field; {f} is {}", f.kind().describe()),
                );
            }
            field
        };
        let window_secs = |parser: &mut Self| match object.get("window_secs") {
            Some(v) => parse_uint(v, MAX_WINDOW_SECS, &path.key("window_secs"), parser.errors).filter(|n| {
                if *n == 0 {
                    parser.errors.add(&path.key("window_secs"), "must be at least 1");
                }
                *n > 0
            }),
            None => {
                parser.errors.add(&path.key("window_secs"), "missing");
                None
            }
        };
        let kind = match kind_name {
            "ema" => self.ema(object, field, path),
            "count" => window_secs(self).map(|window_secs| AggregateKind::Count { window_secs }),
            _ => {
                let window_secs = window_secs(self);
                match (field, window_secs) {
                    (Some(field), Some(window_secs)) => Some(match kind_name {
                        "avg" => AggregateKind::Avg { field, window_secs },
                        "sum" => AggregateKind::Sum { field, window_secs },
                        "min" => AggregateKind::Min { field, window_secs },
                        _ => AggregateKind::Max { field, window_secs },
                    }),
                    _ => None,
                }
            }
        };
        let per = match object.get("per") {
            None => Some(Per::Agent),
            Some(Value::String(s)) if s == "agent" => Some(Per::Agent),
            Some(Value::String(s)) if s == "trigger" => Some(Per::Trigger),
            Some(Value::String(s)) if s == "agent_client" => Some(Per::AgentClient),
            Some(other) => {
                self.errors
                    .add(&path.key("per"), format!("expected agent, trigger or agent_client, got {}", describe(other)));
                None
            }
        };
        if per == Some(Per::AgentClient) && !self.event_types.iter().any(|t| Field::ClientAddress.carried_by(*t)) {
            self.errors.add(&path.key("per"), "agent_client needs event types that carry client_address");
        }
        let filter = match object.get("where") {
            None => None,
            Some(w) => Some(Box::new(self.node(w, &path.key("where"), depth + 1, true)?)),
        };
        let alias = match object.get("as") {
            None => None,
            Some(Value::String(name)) if is_identifier(name) => {
                if self.aggregates.iter().any(|a| a.alias.as_deref() == Some(name)) {
                    self.errors.add(&path.key("as"), format!("another aggregate is already named {name:?}"));
                }
                Some(name.clone())
            }
            Some(other) => {
                self.errors.add(
                    &path.key("as"),
                    format!(
                        "expected a name of letters, digits and _ (at most 64, not starting with a digit), got {}",
                        describe(other)
                    ),
                );
                None
            }
        };
        if self.errors_len() > errors_before {
            return None;
        }
        let (kind, per) = (kind?, per?);
        if self.aggregates.len() == MAX_AGGREGATES {
            self.errors.add(path, format!("a trigger may have at most {MAX_AGGREGATES} aggregates"));
            return None;
        }
        let index = self.aggregates.len();
        let id = format!("{index}:{:016x}", fingerprint(&[&self.scope_fingerprint, kind_name, &spec.to_string()]));
        self.aggregates.push(Aggregate { index, id, kind, per, filter, alias });
        Some(index)
    }

    fn ema(&mut self, object: &Map<String, Value>, field: Option<Field>, path: &Path) -> Option<AggregateKind> {
        let window = match object.get("window") {
            Some(v) => parse_uint(v, MAX_EMA_WINDOW, &path.key("window"), self.errors).filter(|n| {
                if *n == 0 {
                    self.errors.add(&path.key("window"), "must be at least 1");
                }
                *n > 0
            }),
            None => {
                self.errors.add(&path.key("window"), "missing");
                None
            }
        };
        let alpha = match object.get("alpha") {
            None => None,
            Some(v) => {
                let parsed = match v {
                    Value::Number(n) => n.to_string().parse::<Decimal>().ok(),
                    Value::String(s) => s.parse::<Decimal>().ok(),
                    _ => None,
                };
                let zero = Decimal::from(0);
                let one = Decimal::from(1);
                match parsed {
                    Some(a) if a > zero && a <= one => Some(a),
                    _ => {
                        self.errors.add(
                            &path.key("alpha"),
                            format!("expected a number above 0 and at most 1, got {}", describe(v)),
                        );
                        return None;
                    }
                }
            }
        };
        let min_samples = match object.get("min_samples") {
            None => Some(1),
            Some(v) => parse_uint(v, MAX_EMA_WINDOW, &path.key("min_samples"), self.errors).map(|n| n.max(1)),
        };
        let window = u32::try_from(window?).ok()?;
        let alpha = alpha.unwrap_or_else(|| Decimal::ratio(2, i64::from(window) + 1));
        Some(AggregateKind::Ema { field: field?, window, alpha, min_samples: u32::try_from(min_samples?).ok()? })
    }

    fn errors_len(&self) -> usize {
        self.errors.len()
    }
}

fn is_prefixed_hex(s: &str) -> bool {
    s.len() > 2 && (s.starts_with("0x") || s.starts_with("0X")) && s[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && s.len() <= 64
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// FNV-1a over the parts, separated so that ("ab","c") and ("a","bc") differ.
pub(crate) fn fingerprint(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain(std::iter::once(0xff)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

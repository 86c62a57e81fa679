//! The parsed condition tree and its evaluation against one event.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};

use super::field::{Field, FieldValue};
use crate::domain::{Decimal, StoredEvent};

/// The comparison operators of SPEC 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Lte,
    Gt,
    Gte,
    In,
    NotIn,
    Contains,
    StartsWith,
    EndsWith,
    Exists,
}

impl Op {
    pub const ALL: [Op; 12] = [
        Op::Eq,
        Op::Ne,
        Op::Lt,
        Op::Lte,
        Op::Gt,
        Op::Gte,
        Op::In,
        Op::NotIn,
        Op::Contains,
        Op::StartsWith,
        Op::EndsWith,
        Op::Exists,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::Ne => "ne",
            Op::Lt => "lt",
            Op::Lte => "lte",
            Op::Gt => "gt",
            Op::Gte => "gte",
            Op::In => "in",
            Op::NotIn => "not_in",
            Op::Contains => "contains",
            Op::StartsWith => "starts_with",
            Op::EndsWith => "ends_with",
            Op::Exists => "exists",
        }
    }

    pub fn parse(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.name() == name)
    }

    /// Whether `ordering` (of the field against the literal) satisfies an ordering operator.
    fn accepts(self, ordering: Ordering) -> bool {
        match self {
            Op::Eq => ordering == Ordering::Equal,
            Op::Ne => ordering != Ordering::Equal,
            Op::Lt => ordering == Ordering::Less,
            Op::Lte => ordering != Ordering::Greater,
            Op::Gt => ordering == Ordering::Greater,
            Op::Gte => ordering != Ordering::Less,
            _ => false,
        }
    }
}

/// A literal on the right of a comparison, already converted to the field's type.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Number(Decimal),
    /// Lower-cased.
    Hex(String),
    Text(String),
    Bool(bool),
    Timestamp(DateTime<Utc>),
    List(Vec<Literal>),
}

/// `field op literal`, type-checked when parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub field: Field,
    pub op: Op,
    pub value: Literal,
}

impl Comparison {
    pub fn eval(&self, event: &StoredEvent) -> bool {
        let actual = self.field.read(event);
        if self.op == Op::Exists {
            return matches!(self.value, Literal::Bool(want) if want == actual.is_some());
        }
        // A field the event does not carry makes every other comparison false.
        let Some(actual) = actual else { return false };
        match (&self.op, &self.value) {
            (Op::In, Literal::List(items)) => items.iter().any(|item| equal(&actual, item)),
            (Op::NotIn, Literal::List(items)) => !items.iter().any(|item| equal(&actual, item)),
            (Op::Contains | Op::StartsWith | Op::EndsWith, literal) => text_match(self.op, &actual, literal),
            (op, literal) => order(&actual, literal).is_some_and(|ordering| op.accepts(ordering)),
        }
    }
}

fn order(actual: &FieldValue<'_>, literal: &Literal) -> Option<Ordering> {
    match (actual, literal) {
        (FieldValue::Number(a), Literal::Number(b)) => Some(a.cmp(b)),
        (FieldValue::Timestamp(a), Literal::Timestamp(b)) => Some(a.cmp(b)),
        (FieldValue::Hex(a), Literal::Hex(b)) => Some(a.as_str().cmp(b.as_str())),
        (FieldValue::Text(a), Literal::Text(b)) => Some((*a).cmp(b.as_str())),
        (FieldValue::Bool(a), Literal::Bool(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

fn equal(actual: &FieldValue<'_>, literal: &Literal) -> bool {
    order(actual, literal) == Some(Ordering::Equal)
}

fn text_match(op: Op, actual: &FieldValue<'_>, literal: &Literal) -> bool {
    let (haystack, needle) = match (actual, literal) {
        (FieldValue::Text(a), Literal::Text(b)) => (*a, b.as_str()),
        (FieldValue::Hex(a), Literal::Hex(b)) => (a.as_str(), b.as_str()),
        _ => return false,
    };
    match op {
        Op::Contains => haystack.contains(needle),
        Op::StartsWith => haystack.starts_with(needle),
        Op::EndsWith => haystack.ends_with(needle),
        _ => false,
    }
}

/// The stateful functions of SPEC 2.
#[derive(Debug, Clone, PartialEq)]
pub enum AggregateKind {
    /// Exponential moving average; the first sample initializes it.
    Ema {
        field: Field,
        window: u32,
        alpha: Decimal,
        min_samples: u32,
    },
    Count {
        window_secs: u64,
    },
    Avg {
        field: Field,
        window_secs: u64,
    },
    Sum {
        field: Field,
        window_secs: u64,
    },
    Min {
        field: Field,
        window_secs: u64,
    },
    Max {
        field: Field,
        window_secs: u64,
    },
}

impl AggregateKind {
    pub fn name(&self) -> &'static str {
        match self {
            AggregateKind::Ema { .. } => "ema",
            AggregateKind::Count { .. } => "count",
            AggregateKind::Avg { .. } => "avg",
            AggregateKind::Sum { .. } => "sum",
            AggregateKind::Min { .. } => "min",
            AggregateKind::Max { .. } => "max",
        }
    }

    /// The field whose value feeds the aggregate (`count` has none).
    pub fn field(&self) -> Option<Field> {
        match self {
            AggregateKind::Ema { field, .. }
            | AggregateKind::Avg { field, .. }
            | AggregateKind::Sum { field, .. }
            | AggregateKind::Min { field, .. }
            | AggregateKind::Max { field, .. } => Some(*field),
            AggregateKind::Count { .. } => None,
        }
    }

    /// The sliding window on block time, for the windowed kinds.
    pub fn window_secs(&self) -> Option<u64> {
        match self {
            AggregateKind::Ema { .. } => None,
            AggregateKind::Count { window_secs }
            | AggregateKind::Avg { window_secs, .. }
            | AggregateKind::Sum { window_secs, .. }
            | AggregateKind::Min { window_secs, .. }
            | AggregateKind::Max { window_secs, .. } => Some(*window_secs),
        }
    }
}

/// Whose events share one aggregate state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Per {
    Agent,
    Trigger,
    AgentClient,
}

impl Per {
    pub fn name(self) -> &'static str {
        match self {
            Per::Agent => "agent",
            Per::Trigger => "trigger",
            Per::AgentClient => "agent_client",
        }
    }

    /// The state key of `event` under this grouping: `chain:agent`, `chain:agent:client`,
    /// or `*` for the whole trigger.
    pub fn key(self, event: &StoredEvent) -> String {
        let e = &event.event;
        match self {
            Per::Trigger => "*".to_owned(),
            Per::Agent => format!("{}:{}", e.log.chain_id, e.agent_id),
            Per::AgentClient => {
                let client = Field::ClientAddress.read(event);
                let client = match client {
                    Some(FieldValue::Hex(c)) => c,
                    _ => String::new(),
                };
                format!("{}:{}:{client}", e.log.chain_id, e.agent_id)
            }
        }
    }
}

/// One aggregate of a trigger. `index` is its position in the trigger's list of aggregates
/// (tree order), under which evaluation finds its value; `id` names its state in storage and
/// changes whenever anything that shapes the state changes.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    pub index: usize,
    pub id: String,
    pub kind: AggregateKind,
    pub per: Per,
    pub filter: Option<Box<Condition>>,
    pub alias: Option<String>,
}

impl Aggregate {
    /// The name templates see it under: its `as`, or `<kind>_<index>`.
    pub fn display_name(&self) -> String {
        self.alias.clone().unwrap_or_else(|| format!("{}_{}", self.kind.name(), self.index))
    }

    /// Whether `event` feeds this aggregate (its `where`, when it has one).
    pub fn feeds(&self, event: &StoredEvent) -> bool {
        self.filter.as_ref().is_none_or(|c| c.eval(event, &[]))
    }

    /// The minimum number of samples before the aggregate's comparison can be true.
    pub fn min_samples(&self) -> u32 {
        match self.kind {
            AggregateKind::Ema { min_samples, .. } => min_samples,
            _ => 1,
        }
    }
}

/// A node of the condition tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    All(Vec<Condition>),
    Any(Vec<Condition>),
    Not(Box<Condition>),
    Compare(Comparison),
    /// `aggregate op value`; `aggregate` indexes the trigger's aggregates.
    Aggregate {
        aggregate: usize,
        op: Op,
        value: Decimal,
    },
}

impl Condition {
    /// Evaluates the tree. `aggregates[i]` is the current value of aggregate `i`, or `None`
    /// while it has no value (no samples, or fewer than `min_samples`): its comparisons are
    /// then false.
    pub fn eval(&self, event: &StoredEvent, aggregates: &[Option<Decimal>]) -> bool {
        match self {
            Condition::All(nodes) => nodes.iter().all(|n| n.eval(event, aggregates)),
            Condition::Any(nodes) => nodes.iter().any(|n| n.eval(event, aggregates)),
            Condition::Not(node) => !node.eval(event, aggregates),
            Condition::Compare(comparison) => comparison.eval(event),
            Condition::Aggregate { aggregate, op, value } => aggregates
                .get(*aggregate)
                .and_then(Option::as_ref)
                .is_some_and(|current| op.accepts(current.cmp(value))),
        }
    }
}

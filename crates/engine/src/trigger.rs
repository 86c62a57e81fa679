//! A trigger as the engine evaluates it: its rule parsed, its actions typed.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde_json::Value;
use shared::domain::{ActionId, TriggerId, UserId};
use shared::store::aggregate_state::WindowedAggregate;
use shared::store::triggers::RuleRow;
use shared::trigger::{Rule, StoredAction, TriggerDefinition};

#[derive(Debug)]
pub struct LoadedTrigger {
    pub id: TriggerId,
    pub user_id: UserId,
    pub name: String,
    pub enabled: bool,
    pub version: i64,
    pub rule: Rule,
    pub cooldown_secs: u64,
    /// Events with an earlier block time feed aggregates but never fire.
    pub fires_from: DateTime<Utc>,
    pub actions: Vec<StoredAction>,
}

/// Why a stored trigger cannot be evaluated (saved triggers were validated by the same
/// parser: only a row edited by hand gets here).
#[derive(Debug, thiserror::Error)]
#[error("the stored trigger does not parse: {0}")]
pub struct Unreadable(String);

impl TryFrom<RuleRow> for LoadedTrigger {
    type Error = Unreadable;

    fn try_from(row: RuleRow) -> Result<Self, Unreadable> {
        let rule = Rule::parse(Some(&row.scope), row.condition.as_ref()).map_err(|e| Unreadable(e.to_string()))?;
        let actions: Vec<StoredAction> =
            serde_json::from_value(row.actions).map_err(|e| Unreadable(format!("actions: {e}")))?;
        Ok(LoadedTrigger {
            id: row.id,
            user_id: row.user_id,
            name: row.name,
            enabled: row.enabled,
            version: row.version,
            rule,
            cooldown_secs: u64::try_from(row.cooldown_secs).unwrap_or(0),
            fires_from: row.fires_from,
            actions,
        })
    }
}

impl LoadedTrigger {
    /// A trigger that was never saved, as `user` defined it: fresh ids, version 0, every
    /// event of its history may fire it. What a backtest of a draft evaluates.
    pub fn draft(user: UserId, definition: &TriggerDefinition) -> Self {
        let actions = definition
            .actions
            .iter()
            .map(|action| StoredAction { id: ActionId::new_random(), action: action.clone() })
            .collect();
        LoadedTrigger {
            id: TriggerId::new_random(),
            user_id: user,
            name: definition.name.clone(),
            enabled: definition.enabled,
            version: 0,
            rule: definition.rule.clone(),
            cooldown_secs: definition.cooldown_secs,
            fires_from: DateTime::<Utc>::MIN_UTC,
            actions,
        }
    }
}

/// The windowed aggregates of a stored trigger's condition, each once; none when it does not
/// parse.
pub fn windowed_aggregates(id: TriggerId, scope: &Value, condition: &Value) -> Vec<WindowedAggregate> {
    let rule = match Rule::parse(Some(scope), Some(condition)) {
        Ok(rule) => rule,
        Err(err) => {
            tracing::debug!(trigger.id = %id, error = %err, "stored trigger does not parse; its state is kept");
            return Vec::new();
        }
    };
    let mut seen = HashSet::new();
    rule.aggregates
        .into_iter()
        .filter_map(|aggregate| {
            let window_secs = aggregate.kind.window_secs()?;
            seen.insert(aggregate.id.clone()).then_some(WindowedAggregate {
                trigger: id,
                aggregate: aggregate.id,
                window_secs,
            })
        })
        .collect()
}

//! Per-user quotas (SPEC 4): how many triggers and API keys one user may keep, and how large
//! one trigger may be. A count of stored rows is checked where the row is made, under a lock
//! on the owner, and answers 409 once used up; a limit on one request answers 422 before
//! anything is written. Errors (`quota_exceeded`) name the quota; `QUOTA_` and its name in
//! capitals is the variable that sets it.

use shared::trigger::TriggerDefinition;

use crate::error::{ApiError, ErrorDetail};

/// Triggers one user may keep.
pub const TRIGGERS_PER_USER: &str = "triggers_per_user";
/// Actions on one trigger.
pub const ACTIONS_PER_TRIGGER: &str = "actions_per_trigger";
/// API keys, not revoked, one user may hold.
pub const API_KEYS_PER_USER: &str = "api_keys_per_user";
/// Entries in each list of a trigger's scope.
pub const SCOPE_LIST_LENGTH: &str = "scope_list_length";

/// The most actions the trigger parser accepts: a larger quota would change nothing.
pub const MAX_ACTIONS_PER_TRIGGER: u32 = shared::trigger::MAX_ACTIONS as u32;
/// The most entries the trigger parser accepts in a scope list: a larger quota would change
/// nothing.
pub const MAX_SCOPE_LIST_LEN: u32 = 1_000;

/// What one user may have (`QUOTA_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// Triggers one user may keep (`QUOTA_TRIGGERS_PER_USER`).
    pub triggers_per_user: u32,
    /// Actions on one trigger (`QUOTA_ACTIONS_PER_TRIGGER`), at most [`MAX_ACTIONS_PER_TRIGGER`].
    pub actions_per_trigger: u32,
    /// API keys, not revoked, one user may hold (`QUOTA_API_KEYS_PER_USER`).
    pub api_keys_per_user: u32,
    /// Distinct entries in each of `scope.chain_ids`, `scope.event_types` and
    /// `scope.agent_ids` (`QUOTA_SCOPE_LIST_LENGTH`), at most [`MAX_SCOPE_LIST_LEN`].
    pub scope_list_len: u32,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            triggers_per_user: 100,
            actions_per_trigger: MAX_ACTIONS_PER_TRIGGER,
            api_keys_per_user: 20,
            scope_list_len: MAX_SCOPE_LIST_LEN,
        }
    }
}

impl Quotas {
    /// Refuses (422) a trigger with more actions, or a longer scope list, than the quotas
    /// allow; each excess is a detail located by its JSON path.
    pub fn check_trigger(&self, definition: &TriggerDefinition) -> Result<(), ApiError> {
        let limit = self.actions_per_trigger;
        if let Some(detail) = excess("actions", definition.actions.len(), limit) {
            return Err(ApiError::quota_exceeded(ACTIONS_PER_TRIGGER, limit, "actions per trigger", vec![detail]));
        }
        let scope = &definition.rule.scope;
        let lists = [
            ("scope.chain_ids", scope.chain_ids.len()),
            ("scope.event_types", scope.event_types.len()),
            ("scope.agent_ids", scope.agent_ids.len()),
        ];
        let limit = self.scope_list_len;
        let details: Vec<ErrorDetail> = lists.into_iter().filter_map(|(path, len)| excess(path, len, limit)).collect();
        if details.is_empty() {
            Ok(())
        } else {
            Err(ApiError::quota_exceeded(SCOPE_LIST_LENGTH, limit, "entries in each scope list", details))
        }
    }

    /// 409: the user already keeps as many triggers as the quota allows.
    pub fn triggers_reached(&self) -> ApiError {
        ApiError::quota_reached(TRIGGERS_PER_USER, self.triggers_per_user, "triggers per account")
    }

    /// 409: the user already holds as many live API keys as the quota allows.
    pub fn api_keys_reached(&self) -> ApiError {
        ApiError::quota_reached(API_KEYS_PER_USER, self.api_keys_per_user, "API keys per account (revoke one first)")
    }
}

/// A detail for the list at `path` when its `len` entries go beyond `limit`.
fn excess(path: &str, len: usize, limit: u32) -> Option<ErrorDetail> {
    if u32::try_from(len).is_ok_and(|n| n <= limit) {
        return None;
    }
    Some(ErrorDetail { path: path.to_owned(), message: format!("{len} given, over the quota of {limit}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid trigger with `actions` webhook actions and `agents` agents in its scope.
    fn trigger(actions: usize, agents: usize) -> TriggerDefinition {
        let webhook = serde_json::json!({"type": "webhook", "url": "https://example.com/h"});
        let webhooks: Vec<serde_json::Value> = vec![webhook; actions];
        let agent_ids: Vec<String> = (0..agents).map(|i| i.to_string()).collect();
        let body = serde_json::json!({"name": "t", "scope": {"agent_ids": agent_ids}, "actions": webhooks});
        TriggerDefinition::parse(&body).unwrap()
    }

    fn small() -> Quotas {
        Quotas { triggers_per_user: 3, actions_per_trigger: 2, api_keys_per_user: 2, scope_list_len: 5 }
    }

    #[test]
    fn a_trigger_within_the_quotas_passes() {
        assert!(small().check_trigger(&trigger(2, 5)).is_ok());
        assert!(Quotas::default().check_trigger(&trigger(10, 1_000)).is_ok());
    }

    #[test]
    fn too_many_actions_or_scope_entries_are_refused_with_their_path() {
        let error = small().check_trigger(&trigger(3, 1)).unwrap_err();
        assert_eq!(error.code(), "quota_exceeded");
        assert!(error.to_string().contains("\"actions_per_trigger\""), "{error}");
        let error = small().check_trigger(&trigger(1, 6)).unwrap_err();
        assert!(error.to_string().contains("\"scope_list_length\""), "{error}");
        assert_eq!(error.details()[0].path, "scope.agent_ids");
    }
}

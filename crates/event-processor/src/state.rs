//! Loading the stored aggregate states and cooldowns that a batch will touch into the
//! engine's caches.

use std::collections::HashSet;

use engine::state::{CooldownCache, CooldownKey, StateCache, StateKey};
use shared::store::{aggregate_state, cooldowns};
use sqlx::PgPool;

/// Loads every key not cached yet: one query for states, one for cooldowns.
pub async fn load(
    pool: &PgPool,
    states: &mut StateCache,
    cooldown_cache: &mut CooldownCache,
    state_keys: HashSet<StateKey>,
    cooldown_keys: HashSet<CooldownKey>,
) -> Result<(), sqlx::Error> {
    let missing = states.missing(state_keys);
    if !missing.is_empty() {
        let rows = aggregate_state::fetch(pool, &missing).await?;
        states.fill(missing, rows);
    }
    let missing = cooldown_cache.missing(cooldown_keys);
    if !missing.is_empty() {
        let rows = cooldowns::fetch(pool, &missing).await?;
        cooldown_cache.fill(missing, rows);
    }
    Ok(())
}
